"""A seeded, stable train/validation split (mode ``fit``). Framework-free.

Which side an item falls on depends only on its key (an image's path inside its set, a
row's index), the split's seed and its class: within each class the items are ranked by
``sha256(seed:key)`` and the lowest ``round(val_fraction × n)`` go to validation (at least
one, and never the whole class, when it has two items or more). So the split

- is the same in every run, process and framework (no random state, no file order),
- is stratified: each class keeps its share in both parts,
- is disjoint, and together the two parts are the whole set.

An image set's split is a pair of folders of symbolic links (``train/CLASS/FILE``,
``val/CLASS/FILE``) made once in the data cache, so the input pipelines read each part
as the class-folder set they already read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchbench.pipelines.generate import list_images

METHOD = (
    "per class, items ranked by sha256(seed:key) (key: the image's path in its set, or the row index); "
    "the lowest round(val_fraction × n) are the validation part (at least 1 of a class of 2 or more)"
)
INFO = "split.json"


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def val_count(n: int, val_fraction: float) -> int:
    """How many of a class of ``n`` items go to validation."""
    if n < 2:
        return 0
    return min(n - 1, max(1, round(val_fraction * n)))


def assign(keys: Sequence[str], labels: Sequence[int], val_fraction: float, seed: int) -> list[bool]:
    """For each item, True when it is in the validation part."""
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    out = [False] * len(keys)
    for items in by_class.values():
        ranked = sorted(items, key=lambda i: _rank(seed, keys[i]))
        for i in ranked[: val_count(len(items), val_fraction)]:
            out[i] = True
    return out


@dataclass(frozen=True)
class FolderSplit:
    train: str  # a class-folder tree of links to the training images
    val: str  # the same for the validation images
    info: dict  # sizes, per class counts, the method


def _key(folder: str, rel: list[str], val_fraction: float, seed: int) -> str:
    blob = json.dumps({"folder": folder, "files": rel, "val_fraction": val_fraction, "seed": seed, "v": 1})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_folder(
    folder: str | os.PathLike, val_fraction: float, seed: int, cache_dir: str | os.PathLike
) -> FolderSplit:
    """The split of the class-folder set at ``folder``, made once under ``cache_dir/splits/``
    (written to a temporary sibling, then renamed into place). Its key covers the folder,
    the list of its images, the fraction and the seed: a set that changes gets a new split."""
    folder = os.path.abspath(folder)
    paths, labels, classes = list_images(folder)
    rel = [os.path.relpath(p, folder) for p in paths]
    root = Path(cache_dir) / "splits" / _key(folder, rel, val_fraction, seed)
    if (root / INFO).is_file():
        info = json.loads((root / INFO).read_text(encoding="utf-8"))
        return FolderSplit(str(root / "train"), str(root / "val"), info)
    is_val = assign(rel, labels, val_fraction, seed)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
    try:
        for path, r, label, v in zip(paths, rel, labels, is_val):
            link = tmp / ("val" if v else "train") / classes[label] / Path(r).name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)
        for part in ("train", "val"):  # a class with no item on one side still has its folder
            for name in classes:
                (tmp / part / name).mkdir(parents=True, exist_ok=True)
        per_class = {
            name: {
                "train": sum(1 for lab, v in zip(labels, is_val) if lab == k and not v),
                "val": sum(1 for lab, v in zip(labels, is_val) if lab == k and v),
            }
            for k, name in enumerate(classes)
        }
        info = {
            "folder": folder,
            "val_fraction": val_fraction,
            "seed": seed,
            "train": sum(1 for v in is_val if not v),
            "val": sum(1 for v in is_val if v),
            "classes": list(classes),
            "per_class": per_class,
            "method": METHOD,
        }
        (tmp / INFO).write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
        try:
            os.rename(tmp, root)
        except OSError:  # another worker finished first: keep theirs
            if not (root / INFO).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    info = json.loads((root / INFO).read_text(encoding="utf-8"))
    return FolderSplit(str(root / "train"), str(root / "val"), info)


def image_split(cfg, val_fraction: float, seed: int) -> tuple[FolderSplit, float | None]:
    """The split of a ``data:`` image set (a DataConfig: generated, made once into the data
    cache, or a folder), and the seconds spent generating it (None: it was there)."""
    from benchbench.data_spec import DEFAULT_CACHE
    from benchbench.pipelines.generate import ensure

    if cfg.source == "folder":
        folder, gen_s = cfg.folder(), None
    else:
        folder, gen_s = ensure(cfg.folder(), cfg.images, cfg.size, cfg.classes, cfg.seed, cfg.hue_shift)
    cache = cfg.cache_dir or os.path.abspath(DEFAULT_CACHE)
    return split_folder(folder, val_fraction, seed, cache), gen_s
