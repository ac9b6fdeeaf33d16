"""Seeded synthetic image sets: JPEGs in class folders, written with Pillow, so suites run
offline. The same arguments (and the same Pillow/libjpeg) give the same bytes.

    DIR/class_000/img_00000.jpg …  DIR/manifest.json (arguments, per-file SHA-256)

Each image is a smooth two-colour gradient with a few filled shapes whose hue leans
towards its class, so it compresses and decodes like a photograph more than noise does.

Learnable by construction: class ``k`` of ``K`` takes its colours around hue
``(k + 0.5) / K`` (plus ``hue_shift``), with noise on every colour, so the label is in the
picture and a small CNN separates the classes within a few epochs (mode ``fit``;
tests/test_quality_data.py trains seed_cnn on a small set to a validation accuracy
target). ``hue_shift`` moves every class to other colours: a set with the same classes
and other colours, the second task of a transfer-learning pair. Shift 0 gives the same
bytes as before the parameter existed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "jpeg-v1"
QUALITY = 90
EXTENSIONS = (".jpg", ".jpeg", ".png")


def class_hue(label: int, classes: int, hue_shift: float = 0.0) -> float:
    """The hue (0..1) class ``label`` of ``classes`` leans to."""
    hue = (label + 0.5) / classes
    return (hue + hue_shift) % 1.0 if hue_shift else hue


def _image(rng: np.random.Generator, size: int, label: int, classes: int, hue_shift: float = 0.0):
    from PIL import Image, ImageDraw

    hue = class_hue(label, classes, hue_shift)
    base = np.array([hue, 1 - hue, 0.5 + 0.5 * np.sin(6.28 * hue)]) * 255
    a = np.clip(base + rng.normal(0, 40, 3), 0, 255)
    b = np.clip(255 - base + rng.normal(0, 40, 3), 0, 255)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = np.clip(np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None], 0, 1)[..., None]
    pixels = (a * (1 - ramp) + b * ramp).astype(np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        fill = tuple(int(v) for v in np.clip(base + rng.normal(0, 60, 3), 0, 255))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=fill)
    return img


def generate(
    out: str | os.PathLike, images: int, size: int = 256, classes: int = 2, seed: int = 0, hue_shift: float = 0.0
) -> dict:
    """Write ``images`` JPEGs of ``size``×``size`` into ``classes`` folders under ``out``
    (which must not exist or be empty) and return the manifest. ``hue_shift`` (0..1) moves
    every class's colours round the hue circle."""
    if images < 1 or size < 8 or classes < 1:
        raise ValueError("need images >= 1, size >= 8, classes >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    rng = np.random.default_rng(seed)
    files = {}
    for i in range(images):
        label = i % classes
        rel = f"class_{label:03d}/img_{i:05d}.jpg"
        path = out / rel
        path.parent.mkdir(exist_ok=True)
        _image(rng, size, label, classes, hue_shift).save(path, "JPEG", quality=QUALITY)
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "format": FORMAT,
        "images": images,
        "size": size,
        "classes": classes,
        "seed": seed,
        "quality": QUALITY,
        "files": files,
    }
    if hue_shift:  # only then: the manifests of unshifted sets stay as they were
        manifest["hue_shift"] = hue_shift
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def ensure(
    folder: str | os.PathLike, images: int, size: int, classes: int, seed: int, hue_shift: float = 0.0
) -> tuple[str, float | None]:
    """The generated set at ``folder``, made once: written to a temporary sibling, then
    renamed into place (two workers at once cannot leave a half-written set). Returns
    (folder, seconds spent generating, or None when it was already there)."""
    import time

    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return str(folder), None
    folder.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        generate(tmp, images, size, classes, seed, hue_shift)
        try:
            os.rename(tmp, folder)
        except OSError:  # another worker finished first: keep theirs
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(folder), time.perf_counter() - t0


def list_images(folder: str | os.PathLike) -> tuple[list[str], list[int], list[str]]:
    """(paths, labels, class names) of an ImageFolder-like tree: one subfolder per class,
    sorted; files with an image extension, sorted."""
    folder = Path(folder)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()):
            if f.suffix.lower() in EXTENSIONS and f.is_file():
                paths.append(str(f))
                labels.append(label)
    if not paths:
        raise FileNotFoundError(f"{folder}: no images (expected class subfolders of .jpg/.jpeg/.png files)")
    return paths, labels, classes
