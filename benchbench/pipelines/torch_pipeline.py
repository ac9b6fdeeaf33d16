"""The torch input pipeline: a DataLoader over an ImageFolder-like tree, decoded by
torchvision.io and augmented by a transforms.v2 preset (:mod:`presets`).

Epochs are real: when the loader is exhausted, :meth:`TorchPipeline.next` starts the
next epoch (a new iterator; new worker processes unless ``persistent_workers``) inside
the step that asked, so a timed rate includes epoch restarts as training does; the
count is reported. Batches are full (``drop_last``): every batch has the case's shape.

A corrupt image (one the decoder refuses) is, with ``on_corrupt: skip``, counted, warned
about once, and replaced by the next image of the set; with ``fail`` it raises
:class:`CorruptImage`, which fails the case (the rest of the suite goes on).
"""

from __future__ import annotations

import warnings

import torch
from torch.utils.data import DataLoader, Dataset

from benchbench.pipelines import presets
from benchbench.pipelines.generate import list_images


class CorruptImage(RuntimeError):
    """An image the decoder cannot read, with ``on_corrupt: fail``."""


class ImageFolderSet(Dataset):
    """(image, label, [paths of corrupt images skipped to get it]) per index."""

    def __init__(self, paths: list[str], labels: list[int], transform, on_corrupt: str = "skip"):
        self.paths, self.labels, self.transform, self.on_corrupt = paths, labels, transform, on_corrupt

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from torchvision.io import ImageReadMode, decode_image, read_file

        skipped = []
        for k in range(len(self.paths)):
            j = (i + k) % len(self.paths)
            try:
                img = decode_image(read_file(self.paths[j]), mode=ImageReadMode.RGB)
            except Exception as e:  # the decoder's refusal: corrupt or not an image
                if self.on_corrupt == "fail":
                    raise CorruptImage(f"corrupt image {self.paths[j]}: {type(e).__name__}: {e}") from None
                skipped.append(self.paths[j])
                continue
            return self.transform(img), self.labels[j], skipped
        raise CorruptImage(f"every image of the set is corrupt ({len(self.paths)} files)")


def collate(items):
    xs, ys, skipped = zip(*items)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64), [p for s in skipped for p in s]


class TorchPipeline:
    framework = "torch"

    def __init__(self, cfg, folder: str, batch_size: int, input_shape, device_type: str = "cpu", seed: int = 0):
        self.cfg = cfg
        paths, labels, self.classes = list_images(folder)
        if len(paths) < batch_size:
            raise ValueError(f"{folder}: {len(paths)} images, fewer than one batch of {batch_size}")
        hw = tuple(int(v) for v in input_shape[-2:])
        self.dataset = ImageFolderSet(paths, labels, presets.torch_transform(cfg.preset, hw), cfg.on_corrupt)
        workers = cfg.num_workers
        self.pin = cfg.pin(device_type)
        self.loader = DataLoader(
            self.dataset, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collate,
            num_workers=workers, pin_memory=self.pin,
            prefetch_factor=cfg.prefetch if workers > 0 else None,
            persistent_workers=cfg.persistent_workers and workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        self._it = None
        self.batches = self.epochs = 0
        self.corrupt_events = 0
        self.corrupt_files: dict[str, None] = {}

    def next(self):
        """One batch (images float32 N×C×H×W on the host, labels int64 N)."""
        if self._it is None:
            self._it = iter(self.loader)
            self.epochs += 1
        try:
            x, y, skipped = next(self._it)
        except StopIteration:  # the next epoch starts here, inside the step that asked
            self._it = iter(self.loader)
            self.epochs += 1
            x, y, skipped = next(self._it)
        self.batches += 1
        if skipped:
            self._count(skipped)
        return x, y

    def _count(self, skipped: list[str]) -> None:
        self.corrupt_events += len(skipped)
        for path in skipped:
            if path not in self.corrupt_files:
                self.corrupt_files[path] = None
                warnings.warn(f"corrupt image skipped (the next image takes its place): {path}", stacklevel=3)

    def copier(self, x, y):
        """fn(batch) copying a host batch into the model's input tensors ``x`` (and the
        targets ``y`` in the loss's dtype and shape): the host→device copy of a real step."""
        non_blocking = self.pin and x.device.type == "cuda"

        def copy(batch):
            xb, yb = batch
            x.copy_(xb, non_blocking=non_blocking)
            if y is not None:
                y.copy_(yb.to(y.dtype).view(y.shape), non_blocking=non_blocking)

        return copy

    def describe(self) -> dict:
        return {
            "loader": "torch.utils.data.DataLoader",
            "decode": "torchvision.io.decode_image (RGB)",
            "transforms": "torchvision.transforms.v2: " + presets_doc(self.cfg.preset),
            "images": len(self.dataset), "classes": len(self.classes),
            "num_workers": self.cfg.num_workers, "pin_memory": self.pin,
            "prefetch_factor": self.cfg.prefetch if self.cfg.num_workers > 0 else None,
            "persistent_workers": self.cfg.persistent_workers and self.cfg.num_workers > 0,
            "cache": "not applicable to the torch DataLoader (ignored)" if self.cfg.cache else False,
            "epoch_restarts": "counted in the rate: a new epoch's iterator starts inside the step that needs it",
        }  # fmt: skip

    def counters(self) -> dict:
        return {
            "batches": self.batches,
            "epochs_started": self.epochs,
            "corrupt_skipped": self.corrupt_events,
            "corrupt_files": list(self.corrupt_files)[:20],
        }

    def close(self) -> None:
        self._it = None


def presets_doc(preset: str) -> str:
    from benchbench.data_spec import PRESETS

    return f"{preset} ({PRESETS[preset]})"
