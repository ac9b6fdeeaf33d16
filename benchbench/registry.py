"""Names a suite may use, known without importing any framework.

Zoo model names (torchvision, timm) are listed by the framework's probe, which runs in
a subprocess: see :mod:`benchbench.probe`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAMEWORKS = {
    "torch": "PyTorch (torchvision, timm, or your own nn.Module)",
    "tensorflow": "TensorFlow with Keras 3 (keras.applications, or your own keras.Model)",
}
MODES = {
    "inference": "eval mode, no autograd: forward only",
    "train": "forward, loss, backward, optimizer step",
}
VARIANTS = {
    "fp32": "full fp32; TF32 and reduced-precision reductions off (torch: eager; tensorflow: a tf.function)",
    "eager": "fp32, Keras called eagerly, no tf.function (tensorflow only)",
    "xla": "fp32, tf.function(jit_compile=True): XLA-compiled (tensorflow only)",
}
OPTIMIZERS = {
    "adam": "Adam, lr 1e-3 (default; torch.optim / keras.optimizers)",
    "sgd": "SGD, lr 1e-3, momentum 0.9 (torch.optim / keras.optimizers)",
}
DEVICES = {
    "cpu": "the host CPU",
    "cuda": "the first visible NVIDIA GPU (cuda:N for another)",
    "tpu": "a TPU (torch: torch_xla; tensorflow: TPUClusterResolver + TPUStrategy)",
}
DEVICE_RE = re.compile(r"^(cpu|tpu|cuda(:\d+)?)$")
USER_MODEL_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
TIMM_PREFIX = "timm:"

# torchvision name -> keras.applications name, where the architecture is the same (the
# trainable parameter counts agree within 1%: tests/test_tensorflow.py), so one suite line
# runs on both frameworks. The tensorflow backend also takes the Keras names themselves.
# One known difference: Keras's ResNets are v1 (stride 2 in a block's first 1×1 conv),
# torchvision's v1.5 (stride 2 in the 3×3): same layers, +0.1% parameters (Keras's convs
# have biases), about 6% fewer FLOPs on the Keras side. Each record carries both figures.
TORCHVISION_TO_KERAS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b1": "EfficientNetB1",
    "efficientnet_b2": "EfficientNetB2",
    "efficientnet_b3": "EfficientNetB3",
    "efficientnet_b4": "EfficientNetB4",
    "efficientnet_v2_s": "EfficientNetV2S",
    "efficientnet_v2_m": "EfficientNetV2M",
    "convnext_tiny": "ConvNeXtTiny",
    "convnext_small": "ConvNeXtSmall",
    "convnext_base": "ConvNeXtBase",
    "densenet121": "DenseNet121",
    "densenet169": "DenseNet169",
    "densenet201": "DenseNet201",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
}
KERAS_TO_TORCHVISION = {k: t for t, k in TORCHVISION_TO_KERAS.items()}


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
    """"seed", "timm", "user" or "zoo" (a torchvision or keras.applications name), by the name's form."""
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
