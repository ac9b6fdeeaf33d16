"""Names a suite may use, known without importing any framework.

Zoo model names (torchvision, timm) are listed by the framework's probe, which runs in
a subprocess: see :mod:`benchbench.probe`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAMEWORKS = {"torch": "PyTorch (torchvision, timm, or your own nn.Module)"}
MODES = {
    "inference": "eval mode, no autograd: forward only",
    "train": "forward, loss, backward, optimizer step",
}
VARIANTS = {"fp32": "full fp32; TF32 and reduced-precision reductions off"}
OPTIMIZERS = {"adam": "torch.optim.Adam (default)", "sgd": "torch.optim.SGD, momentum 0.9"}
DEVICES = {
    "cpu": "the host CPU",
    "cuda": "the first visible NVIDIA GPU (cuda:N for another)",
    "tpu": "a TPU through torch_xla",
}
DEVICE_RE = re.compile(r"^(cpu|tpu|cuda(:\d+)?)$")
USER_MODEL_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class SeedModel:
    name: str
    input_shape: tuple[int, ...]  # per sample, channels first for images
    kind: str  # "image" or "features": a suite's image input_shape applies to images only
    loss: str
    description: str


SEED_MODELS = {
    m.name: m
    for m in (
        SeedModel(
            "seed_cnn",
            (3, 224, 224),
            "image",
            "binary cross-entropy",
            "3×(Conv3x3 32/64/128 ReLU, MaxPool2), Flatten, Dense 512 ReLU, Dense 1 sigmoid",
        ),
        SeedModel(
            "seed_cnn4",
            (3, 224, 224),
            "image",
            "binary cross-entropy",
            "seed_cnn with a fourth Conv 128 block before Flatten",
        ),
        SeedModel(
            "seed_mlp",
            (10,),
            "features",
            "sparse categorical cross-entropy",
            "Dense 128 ReLU, Dense 10 softmax on 10 features",
        ),
    )
}
DEFAULT_IMAGE_SHAPE = (3, 224, 224)


def model_kind(name: str) -> str:
    """"seed", "timm", "user" or "zoo" (a torchvision name), by the name's form."""
    if name in SEED_MODELS:
        return "seed"
    if name.startswith(TIMM_PREFIX):
        return "timm"
    if ":" in name:
        return "user"
    return "zoo"


def default_input_shape(model: str) -> tuple[int, ...]:
    seed = SEED_MODELS.get(model)
    return seed.input_shape if seed else DEFAULT_IMAGE_SHAPE


def takes_image_shape(model: str) -> bool:
    """Whether a suite-wide ``input_shape`` applies to this model (image models only)."""
    seed = SEED_MODELS.get(model)
    return seed is None or seed.kind == "image"
