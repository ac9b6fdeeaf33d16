"""Keras 3 (TensorFlow backend) models by name: the seed models, keras.applications, a
user's callable. All random weights (``weights=None``): nothing is downloaded.

benchbench's input shapes are channels first, (C, H, W); Keras is channels last, so every
image model here is built for (H, W, C) — :func:`keras_input_shape` — and fed NHWC
batches. Imported only inside a worker or probe process, after
:mod:`benchbench.backends.tensorflow` has set up TensorFlow's environment.
"""

from __future__ import annotations

import importlib
import inspect
import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # Keras 3 picks its backend on first import

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchbench.registry import SEED_MODELS, TORCHVISION_TO_KERAS, model_kind  # noqa: E402

if keras.backend.backend() != "tensorflow":  # keras was imported elsewhere with another backend
    raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; benchbench's tensorflow backend "
                       "needs KERAS_BACKEND=tensorflow")  # fmt: skip


def keras_input_shape(input_shape) -> tuple[int, ...]:
    """(C, H, W) -> (H, W, C); a feature shape such as (10,) is unchanged."""
    shape = tuple(int(d) for d in input_shape)
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


def data_layout(input_shape) -> str:
    return "NHWC" if len(tuple(input_shape)) == 3 else "NC"


# ---------------------------------------------------------------- seed models


def _after_blocks(size: int, blocks: int) -> int:
    for _ in range(blocks):
        size = (size - 2) // 2  # 3×3 'valid' conv, then 2×2 max-pool
    return size


def seed_cnn(input_shape=(224, 224, 3), blocks: int = 3) -> keras.Model:
    """DESIGN.md's seed_cnn (blocks=3) and seed_cnn4 (blocks=4), channels last: 'valid'
    3×3 convolutions with ReLU, 2×2 max-pools, Dense 512 ReLU, Dense 1 sigmoid. The same
    layers and parameter count as ``torch_models.seed_cnn`` (Flatten's order differs:
    H, W, C here, C, H, W there; the count does not)."""
    h, w, _ = input_shape
    if _after_blocks(h, blocks) < 1 or _after_blocks(w, blocks) < 1:
        raise ValueError(f"input {h}×{w} is too small for {blocks} conv+pool blocks")
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for width in [32, 64, 128, 128][:blocks]:
        x = keras.layers.Conv2D(width, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="seed_cnn" if blocks == 3 else f"seed_cnn{blocks}")


def seed_mlp(input_shape=(10,)) -> keras.Model:
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Dense(128, activation="relu")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="seed_mlp")


def _seed(name: str, shape) -> keras.Model:
    if name == "seed_cnn":
        return seed_cnn(shape, 3)
    if name == "seed_cnn4":
        return seed_cnn(shape, 4)
    if name == "seed_mlp":
        return seed_mlp(shape)
    raise KeyError(name)


# ------------------------------------------------------------ zoo and user


def application_names() -> list[str]:
    """The model builders of keras.applications (ResNet50, MobileNetV2, …)."""
    apps = keras.applications
    return sorted(n for n in dir(apps) if n[:1].isupper() and callable(getattr(apps, n)))


def keras_name(name: str) -> str | None:
    """The keras.applications builder for a zoo name: a torchvision alias or a Keras name."""
    name = TORCHVISION_TO_KERAS.get(name, name)
    return name if name in application_names() else None


def zoo_kwargs(app_name: str) -> dict:
    """How benchbench calls a keras.applications builder: random weights; logits out, as
    torchvision's models give (the loss applies the softmax); no built-in input rescaling
    where the builder has that switch (torchvision's models have none; the inputs are
    synthetic)."""
    params = inspect.signature(getattr(keras.applications, app_name)).parameters
    kwargs: dict = {"weights": None}
    if "classifier_activation" in params:
        kwargs["classifier_activation"] = None
    if "include_preprocessing" in params:
        kwargs["include_preprocessing"] = False
    return kwargs


def _user(spec: str, shape) -> keras.Model:
    module_name, attr = spec.split(":", 1)
    factory = getattr(importlib.import_module(module_name), attr)
    try:
        model = factory(input_shape=tuple(shape))
    except TypeError:
        model = factory()
    if not isinstance(model, keras.Model):
        raise TypeError(f"{spec} returned {type(model).__name__}, not a keras.Model")
    return model


def build(name: str, input_shape) -> keras.Model:
    """A model with random weights in fp32, built for the channels-last form of the case's
    channels-first ``input_shape``. A user's callable gets that (H, W, C) shape as
    ``input_shape=`` when it accepts the keyword."""
    shape = keras_input_shape(input_shape)
    kind = model_kind(name)
    if kind == "seed":
        return _seed(name, shape)
    if kind == "user":
        return _user(name, shape)
    if kind == "timm":
        raise ValueError(f"{name}: timm models are PyTorch models; the tensorflow backend cannot build them")
    app = keras_name(name)
    if app is None:
        raise ValueError(f"unknown model {name!r} for tensorflow: not in keras.applications "
                         f"and not one of the torchvision aliases ({', '.join(TORCHVISION_TO_KERAS)})")  # fmt: skip
    return getattr(keras.applications, app)(input_shape=shape, **zoo_kwargs(app))


def loss_for(name: str):
    """(loss name, keras loss, target maker(output shape, numpy Generator) -> array) for train mode."""
    seed = SEED_MODELS.get(name)
    if seed and seed.loss == "binary cross-entropy":

        def targets(out_shape, rng):
            return rng.integers(0, 2, size=tuple(out_shape)).astype("float32")

        return "binary cross-entropy", keras.losses.BinaryCrossentropy(), targets
    if seed and seed.loss == "sparse categorical cross-entropy":

        def targets(out_shape, rng):  # the model ends in softmax: probabilities in
            return rng.integers(0, out_shape[-1], size=tuple(out_shape[:1])).astype("int32")

        return "sparse categorical cross-entropy", keras.losses.SparseCategoricalCrossentropy(), targets

    def targets(out_shape, rng):
        if len(out_shape) != 2:
            raise ValueError(f"train mode needs (batch, classes) outputs; got {tuple(out_shape)}")
        return rng.integers(0, out_shape[-1], size=tuple(out_shape[:1])).astype("int32")

    # outputs are logits (classifier_activation=None), as torch.nn.CrossEntropyLoss takes them
    return "cross-entropy", keras.losses.SparseCategoricalCrossentropy(from_logits=True), targets


def param_counts(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) weights. Trainable ones are what torch counts as
    parameters; the rest (batch-norm moving statistics, normalisation constants) are what
    torch keeps as buffers."""

    def count(weights) -> int:
        return int(sum(np.prod(w.shape) for w in weights))

    return count(model.trainable_weights), count(model.non_trainable_weights)


def zoo_names() -> list[str]:
    """keras.applications names and the torchvision-style aliases, for the suite validator."""
    return sorted(set(application_names()) | set(TORCHVISION_TO_KERAS))


__all__ = ["build", "loss_for", "zoo_names", "keras_name", "keras_input_shape", "param_counts",
           "seed_cnn", "seed_mlp"]  # fmt: skip
