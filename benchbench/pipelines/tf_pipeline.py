"""The tf.data input pipeline (imports tensorflow and keras, never torch).

    file paths → shuffle → repeat → map(read, decode, resize or random resized crop;
    ``num_parallel_calls`` = num_workers, or inline with 0) → [cache] → batch
    (drop_remainder) → map(Keras preprocessing layers, AUTOTUNE) → clip, × 1/255,
    normalise → prefetch(prefetch batches; none with 0 workers)

``num_workers: 0`` is the synchronous case, as in torch: the caller's thread reads each
batch when asked (no parallel map, no prefetch). ``cache: true`` keeps decoded images
in memory after the first epoch (presets that crop randomly cache the full decoded
images before the crop). ``.repeat()`` makes the epochs seamless.

Corrupt images are found in an untimed pre-scan (every file decoded once, errors
ignored per element): with ``on_corrupt: skip`` they are counted, warned about and left
out; with ``fail`` the pipeline raises :class:`CorruptImage`.
"""

from __future__ import annotations

import time
import warnings

import tensorflow as tf

from benchbench.pipelines import presets
from benchbench.pipelines.generate import list_images


class CorruptImage(RuntimeError):
    """An image the decoder cannot read, with ``on_corrupt: fail``."""


def _decode(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def prescan(paths: list[str]) -> list[str]:
    """The paths tf.io cannot decode (each file decoded once)."""
    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(lambda p: (p, tf.shape(_decode(p))), num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = {p.decode() for p, _ in ds.as_numpy_iterator()}
    return [p for p in paths if p not in good]


class TfPipeline:
    framework = "tensorflow"

    def __init__(self, cfg, folder: str, batch_size: int, input_shape, device_type: str = "cpu", seed: int = 0):
        self.cfg = cfg
        paths, labels, self.classes = list_images(folder)
        t0 = time.perf_counter()
        bad = set(prescan(paths))
        self.prescan_s = time.perf_counter() - t0
        if bad and cfg.on_corrupt == "fail":
            raise CorruptImage(f"{len(bad)} corrupt image(s), e.g. {sorted(bad)[0]}")
        for path in sorted(bad):
            warnings.warn(f"corrupt image skipped (left out of the set): {path}", stacklevel=2)
        self.corrupt_files = sorted(bad)
        keep = [(p, y) for p, y in zip(paths, labels) if p not in bad]
        if len(keep) < batch_size:
            raise ValueError(f"{folder}: {len(keep)} readable images, fewer than one batch of {batch_size}")
        self.images = len(keep)
        h, w = (int(v) for v in input_shape[-2:])
        preset, workers = cfg.preset, cfg.num_workers
        parallel = workers if workers > 0 else None
        augment = presets.tf_augment(preset, seed)
        area = presets.CROPS.get(preset)

        def load(path, label):
            img = _decode(path)
            if area is None or cfg.cache:  # cached images are cropped after the cache
                img = tf.image.resize(img, (h, w)) if area is None else tf.cast(img, tf.float32)
            return img, label

        def crop(img, label):
            box_start, box_size, _ = tf.image.sample_distorted_bounding_box(
                tf.shape(img), tf.zeros((1, 0, 4)), area_range=area, aspect_ratio_range=(3 / 4, 4 / 3),
                min_object_covered=0.0, use_image_if_no_bounding_boxes=True)  # fmt: skip
            img = tf.slice(img, box_start, box_size)
            return tf.image.resize(img, (h, w)), label

        def finish(x, y):
            if augment is not None:
                x = augment(x, training=True)
            x = tf.clip_by_value(x, 0.0, 255.0) / 255.0
            if preset == "heavy":
                x = (x - presets.IMAGENET_MEAN) / presets.IMAGENET_STD
            return tf.cast(x, tf.float32), y

        ds = tf.data.Dataset.from_tensor_slices(([p for p, _ in keep], [y for _, y in keep]))
        if cfg.cache:
            ds = ds.map(load, num_parallel_calls=parallel).cache()
            ds = ds.shuffle(min(self.images, 256), seed=seed, reshuffle_each_iteration=True).repeat()
            if area is not None:
                ds = ds.map(crop, num_parallel_calls=parallel)
        else:
            ds = ds.shuffle(self.images, seed=seed, reshuffle_each_iteration=True).repeat()
            ds = ds.map(load, num_parallel_calls=parallel)
            if area is not None:
                ds = ds.map(crop, num_parallel_calls=parallel)
        ds = ds.batch(batch_size, drop_remainder=True)
        ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE if workers > 0 else None)
        if workers > 0:
            ds = ds.prefetch(cfg.prefetch)
        self.dataset = ds
        self._it = iter(ds)
        self.batches = 0

    def next(self):
        """One batch (images float32 N×H×W×C, labels int32 N) as host tensors."""
        self.batches += 1
        return next(self._it)

    def copier(self, x, y):
        """fn(batch) assigning a host batch to the model's input variables ``x`` (and the
        targets ``y`` in the loss's dtype and shape): the host→device copy of a real step."""

        def copy(batch):
            xb, yb = batch
            x.assign(xb)
            if y is not None:
                y.assign(tf.reshape(tf.cast(yb, y.dtype), y.shape))

        return copy

    def describe(self) -> dict:
        from benchbench.data_spec import PRESETS

        w = self.cfg.num_workers
        return {
            "loader": "tf.data",
            "decode": "tf.io.decode_image (RGB)",
            "transforms": f"tf.image + keras preprocessing layers: {self.cfg.preset} ({PRESETS[self.cfg.preset]})",
            "images": self.images, "classes": len(self.classes),
            "num_parallel_calls": w if w > 0 else "none (inline)",
            "prefetch_batches": self.cfg.prefetch if w > 0 else None,
            "cache": self.cfg.cache, "prescan_s": self.prescan_s,
            "epoch_restarts": "seamless: Dataset.repeat() reshuffles each epoch inside the pipeline",
        }  # fmt: skip

    def counters(self) -> dict:
        return {
            "batches": self.batches,
            "corrupt_skipped": len(self.corrupt_files),
            "corrupt_files": self.corrupt_files[:20],
        }

    def close(self) -> None:
        self._it = None
