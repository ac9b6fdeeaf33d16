"""Augmentation presets, the same four in each framework (imports happen inside each
builder: :func:`torch_transform` imports torchvision only, :func:`tf_augment` keras only).

- ``none``: resize to the input size, scale to [0, 1].
- ``light``: random resized crop (area 0.5–1), horizontal flip, [0, 1].
- ``seed``: the seed articles' ``ImageDataGenerator(rescale=1./255, shear_range=0.2,
  zoom_range=0.2, horizontal_flip=True)``: resize, shear up to 0.2° (Keras's shear_range
  is in degrees), zoom 0.8–1.2, flip, × 1/255.
- ``heavy``: random resized crop (area 0.25–1), flip, rotation ±15°, shear ±10°, zoom
  0.9–1.1, colour jitter (brightness, contrast 0.4), [0, 1], then ImageNet mean/std normalisation.

Each yields float32 images of the case's input size, channels first for torch (C, H, W),
channels last for tf.data (H, W, C).
"""

from __future__ import annotations

import math

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEED_SHEAR_DEG = 0.2  # ImageDataGenerator shear_range: degrees
SEED_ZOOM = 0.2
HEAVY_SHEAR_DEG = 10.0
HEAVY_ROTATION_DEG = 15.0
CROPS = {"light": (0.5, 1.0), "heavy": (0.25, 1.0)}  # random resized crop: area fraction


def value_range(preset: str) -> tuple[float, float]:
    """The closed range every output value lies in."""
    if preset == "heavy":
        lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        return lo, hi
    return 0.0, 1.0


def crops(preset: str) -> bool:
    """Whether the preset crops from the full image (else it resizes first)."""
    return preset in CROPS


def torch_transform(preset: str, hw: tuple[int, int]):
    """torchvision.transforms.v2 pipeline: uint8 (C, H, W) tensor in, float32 out."""
    import torch
    from torchvision.transforms import v2

    to_float = v2.ToDtype(torch.float32, scale=True)
    if preset == "none":
        ops = [v2.Resize(hw, antialias=True), to_float]
    elif preset == "light":
        ops = [v2.RandomResizedCrop(hw, scale=CROPS["light"], antialias=True), v2.RandomHorizontalFlip(), to_float]
    elif preset == "seed":
        ops = [v2.Resize(hw, antialias=True),
               v2.RandomAffine(degrees=0, shear=SEED_SHEAR_DEG, scale=(1 - SEED_ZOOM, 1 + SEED_ZOOM)),
               v2.RandomHorizontalFlip(), to_float]  # fmt: skip
    elif preset == "heavy":
        ops = [v2.RandomResizedCrop(hw, scale=CROPS["heavy"], antialias=True), v2.RandomHorizontalFlip(),
               v2.RandomRotation(HEAVY_ROTATION_DEG),
               v2.RandomAffine(degrees=0, shear=HEAVY_SHEAR_DEG, scale=(0.9, 1.1)),
               v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
               to_float, v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]  # fmt: skip
    else:
        raise ValueError(f"unknown preset {preset!r}")
    return v2.Compose(ops)


def tf_augment(preset: str, seed: int = 0):
    """The random batch-level part for tf.data: a Keras Sequential of preprocessing layers
    on a float32 (N, H, W, C) batch of values in [0, 255], or None (``none``). Resizing
    or the random resized crop happens per image before batching; clipping to [0, 255],
    × 1/255 and normalisation after (:mod:`tf_pipeline`)."""
    import keras

    L = keras.layers
    if preset == "none":
        return None
    if preset == "light":
        layers = [L.RandomFlip("horizontal", seed=seed)]
    elif preset == "seed":
        shear = math.tan(math.radians(SEED_SHEAR_DEG))
        layers = [L.RandomShear(x_factor=shear, y_factor=shear, seed=seed),
                  L.RandomZoom(SEED_ZOOM, SEED_ZOOM, seed=seed + 1),
                  L.RandomFlip("horizontal", seed=seed + 2)]  # fmt: skip
    elif preset == "heavy":
        shear = math.tan(math.radians(HEAVY_SHEAR_DEG))
        layers = [L.RandomFlip("horizontal", seed=seed), L.RandomRotation(HEAVY_ROTATION_DEG / 360, seed=seed + 1),
                  L.RandomShear(x_factor=shear, y_factor=shear, seed=seed + 2),
                  L.RandomZoom(0.1, 0.1, seed=seed + 3),
                  L.RandomBrightness(0.4, value_range=(0, 255), seed=seed + 4),
                  L.RandomContrast(0.4, value_range=(0, 255), seed=seed + 5)]  # fmt: skip
    else:
        raise ValueError(f"unknown preset {preset!r}")
    return keras.Sequential(layers)
