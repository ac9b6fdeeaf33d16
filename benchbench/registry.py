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
    "data": "the input pipeline alone (needs a data: pipeline): images/s, CPU use, per-worker rate",
    "generate": "decoders: greedy generation with the KV cache, prefill timed apart from every single decode "
    "token (prompt_len, new_tokens; batch_size = concurrent sequences): TTFT, time per output token, tokens/s",
    "fit": "train on a data set (data:) to a validation target (fit:): learning curve, time and energy to "
    "target; a compression variant's accuracy/F1 on the trained weights (benchbench.fit_spec)",
}
# Variants: a suite's ``variant:`` axis. A name may carry one parameter after a colon
# (``prune:0.7``, ``compile:max-autotune``); the whole text is the variant (and so part of
# the case_id). Per framework: the devices and modes it runs on, or None with the reason.
# ``variant_support`` turns this table into a skip reason; the backends check what only the
# machine can tell (a GPU's compute capability) and skip with the reason themselves.
_ALL = ["cpu", "cuda", "tpu"]
_HOST_GPU = ["cpu", "cuda"]
_BOTH = ["inference", "train"]
_INF = ["inference"]
_TRAIN = ["train"]
_GEN = ["generate"]  # decoders' generate mode (benchbench.measure.generate)


def _fw(devices, modes, why=None):
    return {"devices": list(devices), "modes": list(modes), "why": dict(why or {})}


_FP16_CPU = "PyTorch's CPU fp16 convolution kernels are missing or slow reference paths; use bf16"
_CPU_INT8 = "int8 kernels (fbgemm/oneDNN) run on the CPU only"
_PRUNED_INF = "the pruned model is measured for inference (training would refill the zeros)"
_TRANSFER = "a transfer-learning variant: it only changes what trains (train mode only)"
_TF_GEN = "generate mode runs on torch only (no per-token timed loop for keras_hub yet)"
_TORCHAO = "torchao is PyTorch only"
_TF_XLA = "device xla is XLA's CPU device through torch_xla (torch only); TensorFlow's XLA is the variant xla"
VARIANTS = {
    "fp32": {
        "description": "full fp32; TF32 and reduced-precision reductions off (torch: eager; tensorflow: a tf.function)",
        "torch": _fw([*_ALL, "xla"], _BOTH + _GEN),
        "tensorflow": _fw(_ALL, _BOTH, {"xla": _TF_XLA, "generate": _TF_GEN}),
    },
    "fp16": {
        "description": "the model and its inputs cast to float16 (Keras: the 'float16' dtype policy)",
        "torch": _fw(["cuda"], _BOTH + _GEN, {"cpu": _FP16_CPU}),
        "tensorflow": _fw(["cuda"], _BOTH, {"cpu": "TensorFlow's CPU float16 kernels are slow emulation; use bf16"}),
    },
    "bf16": {
        "description": "the model and its inputs cast to bfloat16 (Keras: the 'bfloat16' dtype policy)",
        "torch": _fw(_HOST_GPU, _BOTH + _GEN),
        "tensorflow": _fw(_ALL, _BOTH),
    },
    "amp": {
        "description": "automatic mixed precision: torch.autocast (CUDA float16 + GradScaler in training; CPU "
        "bfloat16); Keras mixed_float16 on GPU, mixed_bfloat16 on CPU/TPU",
        "torch": _fw(_HOST_GPU, _BOTH),
        "tensorflow": _fw(_ALL, _BOTH),
    },
    "amp_bf16": {
        "description": "mixed precision in bfloat16: torch.autocast(bfloat16); Keras mixed_bfloat16",
        "torch": _fw(_HOST_GPU, _BOTH),
        "tensorflow": _fw(_ALL, _BOTH),
    },
    "tf32": {
        "description": "fp32 with TF32 tensor-core matmuls/convolutions (NVIDIA compute capability >= 8.0)",
        "torch": _fw(["cuda"], _BOTH, {"cpu": "TF32 is an NVIDIA tensor-core mode: CUDA only"}),
        "tensorflow": None,
        "why_not": {"tensorflow": "not offered for tensorflow: it turns TF32 off for fp32 and has no TF32 variant yet"},
    },
    "channels_last": {
        "description": "NHWC memory format on the model and the inputs (image models only)",
        "torch": _fw(_HOST_GPU, _BOTH),
        "tensorflow": None,
        "why_not": {"tensorflow": "Keras is channels-last already"},
    },
    "compile": {
        "description": "torch.compile(mode=MODE); compile:MODE, MODE in default, reduce-overhead, "
        "max-autotune; compile time in cold_start.compile_s",
        "param": {"choices": ["default", "reduce-overhead", "max-autotune"], "default": "default"},
        "torch": _fw(_HOST_GPU, _BOTH + _GEN),
        "tensorflow": None,
        "why_not": {"tensorflow": "use xla (tf.function(jit_compile=True))"},
    },
    "torchscript": {
        "description": "torch.jit.trace (frozen in inference)",
        "torch": _fw(_HOST_GPU, _BOTH),
        "tensorflow": None,
        "why_not": {"tensorflow": "PyTorch only"},
    },
    "eager": {
        "description": "fp32, Keras called eagerly, no tf.function",
        "torch": None,
        "tensorflow": _fw(["cpu", "cuda"], _BOTH, {"tpu": "TPU programs are compiled"}),
        "why_not": {"torch": "torch's fp32 variant already runs eagerly"},
    },
    "xla": {
        "description": "fp32, tf.function(jit_compile=True): XLA-compiled",
        "torch": None,
        "tensorflow": _fw(_ALL, _BOTH),
        "why_not": {"torch": "use compile (torch.compile), or device: tpu / xla for torch_xla"},
    },
    "int8_dynamic": {
        "description": "dynamic int8 quantization of the Linear layers "
        "(torch.ao.quantization.quantize_dynamic; weights int8, activations per batch)",
        "torch": _fw(
            ["cpu"], _INF, {"cuda": _CPU_INT8, "tpu": _CPU_INT8, "train": "post-training quantization: inference only"}
        ),
        "tensorflow": None,
        "why_not": {"tensorflow": "use tflite_dynamic"},
    },
    "int8_static": {
        "description": "static post-training int8, calibrated on seeded batches: torchao PT2E (X86InductorQuantizer, "
        "lowered by torch.compile) where it can annotate the model, else FX graph mode (x86 qconfig); the record says which",
        "torch": _fw(
            ["cpu"], _INF, {"cuda": _CPU_INT8, "tpu": _CPU_INT8, "train": "post-training quantization: inference only"}
        ),
        "tensorflow": None,
        "why_not": {"tensorflow": "use tflite_int8"},
    },
    "tflite_dynamic": {
        "description": "TensorFlow Lite dynamic-range quantization, run through the LiteRT interpreter",
        "torch": None,
        "why_not": {"torch": "TensorFlow Lite converts Keras models only"},
        "tensorflow": _fw(
            ["cpu"],
            _INF,
            {
                "cuda": "the LiteRT interpreter runs on the CPU",
                "tpu": "the LiteRT interpreter runs on the CPU",
                "train": "a TensorFlow Lite model is inference only",
            },
        ),
    },
    "tflite_int8": {
        "description": "TensorFlow Lite full-integer int8 (representative dataset), LiteRT interpreter",
        "torch": None,
        "why_not": {"torch": "TensorFlow Lite converts Keras models only"},
        "tensorflow": _fw(
            ["cpu"],
            _INF,
            {
                "cuda": "TFLite int8 runs on the CPU interpreter",
                "tpu": "TFLite int8 runs on the CPU interpreter",
                "train": "a TensorFlow Lite model is inference only",
            },
        ),
    },
    "prune": {
        "description": "unstructured magnitude pruning of conv/linear weights at SPARSITY (prune:SPARSITY, "
        "default 0.5), made permanent (torch.nn.utils.prune; tensorflow: the kernels prune_low_magnitude + strip would prune, zeroed directly — tfmot cannot wrap Keras 3 models)",
        "param": {"fraction": True, "default": "0.5"},
        "torch": _fw(_HOST_GPU, _INF, {"train": _PRUNED_INF}),
        "tensorflow": _fw(_HOST_GPU, _INF, {"train": _PRUNED_INF}),
    },
    "channel_prune": {
        "description": "structured channel pruning (torch-pruning, L1 magnitude) removing FRACTION of the "
        "channels (channel_prune:FRACTION, default 0.25): the layers really shrink",
        "param": {"fraction": True, "default": "0.25"},
        "torch": _fw(_HOST_GPU, _BOTH),
        "tensorflow": None,
        "why_not": {"tensorflow": "no structured channel pruning for Keras here"},
    },
    "sparse24": {
        "description": "2:4 semi-structured sparsity on the Linear weights, model in float16 "
        "(to_sparse_semi_structured; CUDA compute capability >= 8.0)",
        "torch": _fw(["cuda"], _INF, {"cpu": "2:4 sparse kernels are CUDA-only (cuSPARSELt/CUTLASS)"}),
        "tensorflow": None,
        "why_not": {"tensorflow": "PyTorch only"},
    },
    "int8_weight": {
        "description": "int8 weight-only quantization of the Linear layers through torchao (Int8WeightOnlyConfig, "
        "per channel); the rest of the model and the activations in bfloat16",
        "torch": _fw(_HOST_GPU, _INF + _GEN, {"train": "post-training quantization: inference and generate only"}),
        "tensorflow": None,
        "why_not": {"tensorflow": _TORCHAO},
    },
    "int4_weight": {
        "description": "int4 weight-only quantization (groups of 128) of the Linear layers through torchao, activations "
        "in bfloat16: CPU Int4OpaqueTensor (PrototypeInt4WeightOnlyConfig, tinygemm CPU kernel); CUDA "
        "Int4WeightOnlyConfig tile_packed_to_4d (tinygemm)",
        "torch": _fw(_HOST_GPU, _INF + _GEN, {"train": "post-training quantization: inference and generate only"}),
        "tensorflow": None,
        "why_not": {"tensorflow": _TORCHAO},
    },
    "sdpa": {
        "description": "bfloat16 (as bf16) with attention forced to one scaled-dot-product backend: sdpa:BACKEND, "
        "BACKEND in math, flash, efficient, cudnn (torch.nn.attention.sdpa_kernel); without it torch chooses, "
        "and every token-model record says which ran (runtime.sdpa)",
        "param": {"choices": ["math", "flash", "efficient", "cudnn"], "default": "math"},
        "torch": _fw(_HOST_GPU, _BOTH + _GEN),
        "tensorflow": None,
        "why_not": {"tensorflow": "PyTorch's scaled_dot_product_attention backends"},
    },
    "frozen_backbone": {
        "description": "transfer learning: only the classifier head trains, the backbone is frozen",
        "torch": _fw(_ALL, _TRAIN, {"inference": _TRANSFER}),
        "tensorflow": _fw(_ALL, _TRAIN, {"inference": _TRANSFER}),
    },
    "finetune": {
        "description": "transfer learning: every layer trains (the pair of frozen_backbone)",
        "torch": _fw(_ALL, _TRAIN, {"inference": _TRANSFER}),
        "tensorflow": _fw(_ALL, _TRAIN, {"inference": _TRANSFER}),
    },
}
VARIANT_FRAMEWORKS = ("torch", "tensorflow")


def split_variant(name: str) -> tuple[str, str | None]:
    """``"prune:0.7"`` -> ``("prune", "0.7")``; ``"fp32"`` -> ``("fp32", None)``."""
    base, sep, param = name.partition(":")
    return base, (param if sep else None)


def variant_param(name: str):
    """The variant's parameter with its default filled in: a float for fractions, a str for
    choices, None for variants without one. Assumes ``variant_problem(name)`` is None."""
    base, param = split_variant(name)
    spec = VARIANTS[base].get("param")
    if spec is None:
        return None
    value = param if param is not None else spec["default"]
    return float(value) if spec.get("fraction") else value


def variant_problem(name: str) -> str | None:
    """Why ``name`` is not a variant (unknown, or a bad parameter); None when it is one."""
    base, param = split_variant(name)
    if base not in VARIANTS:
        return f"unknown variant {name!r}"
    spec = VARIANTS[base].get("param")
    if param is None:
        return None
    if spec is None:
        return f"variant {base!r} takes no parameter (write {base!r})"
    if spec.get("fraction"):
        try:
            value = float(param)
        except ValueError:
            value = None
        if value is None or not 0 < value < 1:
            return f"variant {name!r}: {base}:FRACTION needs a number between 0 and 1 (exclusive), e.g. {base}:{spec['default']}"
        return None
    if param not in spec["choices"]:
        return f"variant {name!r}: {base}:MODE, MODE in {', '.join(spec['choices'])}"
    return None


def variant_support(framework: str, variant: str, device: str, mode: str) -> str | None:
    """Why ``variant`` cannot run for this framework, device and mode (a skip reason), or
    None when the table allows it (the backend may still skip on what only the machine knows)."""
    if mode == "data" and variant == "fp32":  # the loader alone: no model, no variant (benchbench.pipelines)
        return None
    if mode == "fit":  # fp32 and the transfer pair train; any other variant is applied to the trained fp32 model
        base = split_variant(variant)[0]
        trains = base in ("fp32", "frozen_backbone", "finetune")
        why = variant_support(framework, variant, device, "train" if trains else "inference")
        return f"mode fit: {why}" if why else None
    problem = variant_problem(variant)
    if problem:
        return problem
    base, _ = split_variant(variant)
    entry = VARIANTS[base]
    col = entry.get(framework)
    if col is None:
        why = entry.get("why_not", {}).get(framework, "not implemented")
        return f"variant {base} is not available for {framework}: {why}"
    kind = device.split(":")[0]
    if kind not in col["devices"]:
        why = col["why"].get(kind) or f"{framework} runs it on {', '.join(col['devices'])} only"
        return f"variant {base} on {kind}: {why}"
    if mode not in col["modes"]:
        why = col["why"].get(mode) or f"{mode} mode is not supported ({', '.join(col['modes'])} only)"
        return f"variant {base} in {mode} mode: {why}"
    return None


OPTIMIZERS = {
    "adam": "Adam, lr 1e-3 (default; torch.optim / keras.optimizers)",
    "sgd": "SGD, lr 1e-3, momentum 0.9 (torch.optim / keras.optimizers)",
}
DEVICES = {
    "cpu": "the host CPU",
    "cuda": "the first visible NVIDIA GPU (cuda:N for another)",
    "tpu": "a TPU (torch: torch_xla; tensorflow: TPUClusterResolver + TPUStrategy)",
    "xla": "XLA's CPU device through torch_xla (PJRT_DEVICE=CPU; torch only): the torch_xla path without a TPU",
}
DEVICE_RE = re.compile(r"^(cpu|tpu|xla|cuda(:\d+)?)$")
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


@dataclass(frozen=True)
class TransformerModel:
    """A transformer preset: a published architecture with random weights, fed seeded token ids
    (hyperparameters: ``benchbench.models.transformers_presets``)."""

    name: str
    kind: str  # "encoder" | "decoder" (only decoders generate)
    published_params: int  # as its authors state it (tests hold the built model to it)
    description: str


TRANSFORMER_MODELS = {
    m.name: m
    for m in (
        TransformerModel("tiny_encoder", "encoder", 202_688, "a 2-layer BERT-shaped encoder for tests (hidden 64)"),
        TransformerModel("tiny_decoder", "decoder", 656_000, "a 2-layer Llama-shaped decoder for tests (hidden 128, GQA)"),
        TransformerModel("bert_base", "encoder", 110_000_000, "BERT-base-like encoder: 12 layers, hidden 768, 12 heads (110M)"),
        TransformerModel("gpt2_small", "decoder", 124_000_000, "GPT-2-small-like decoder: 12 layers, hidden 768 (124M)"),
        TransformerModel("llama_1b", "decoder", 1_230_000_000, "Llama-3.2-1B-like decoder: 16 layers, hidden 2048, "
                         "32 query / 8 KV heads, vocabulary 128256 (1.23B)"),
    )
}  # fmt: skip
DEFAULT_SEQ_LEN = 128  # token models in inference and train
DEFAULT_PROMPT_LEN = 128  # generate
DEFAULT_NEW_TOKENS = 32  # generate


def token_axes(model: str, mode: str, seq_len: int | None, prompt_len: int | None, new_tokens: int | None):
    """The token axes a case keeps, ``(seq_len, prompt_len, new_tokens)``, or None when the case
    takes no token ids. A transformer preset always does; a user's ``module:callable`` does in
    generate mode or when the case names a ``seq_len``; nothing else does (a vision model drops
    the axes). Generate keeps prompt_len and new_tokens, the other modes seq_len, each with its
    default where the suite gives none."""
    kind = model_kind(model)
    if not (kind == "transformer" or (kind == "user" and (mode == "generate" or seq_len is not None))):
        return None
    if mode == "generate":
        return None, prompt_len or DEFAULT_PROMPT_LEN, new_tokens or DEFAULT_NEW_TOKENS
    return seq_len or DEFAULT_SEQ_LEN, None, None


def model_kind(name: str) -> str:
    """ "seed", "transformer", "timm", "user" or "zoo" (a torchvision or keras.applications name), by the name's form."""
    if name in SEED_MODELS:
        return "seed"
    if name in TRANSFORMER_MODELS:
        return "transformer"
    if name.startswith(TIMM_PREFIX):
        return "timm"
    if ":" in name:
        return "user"
    return "zoo"


def default_input_shape(model: str) -> tuple[int, ...]:
    seed = SEED_MODELS.get(model)
    if model in TRANSFORMER_MODELS:  # token ids: (seq_len,)
        return (DEFAULT_SEQ_LEN,)
    return seed.input_shape if seed else DEFAULT_IMAGE_SHAPE


def takes_image_shape(model: str) -> bool:
    """Whether a suite-wide ``input_shape`` applies to this model (image models only)."""
    seed = SEED_MODELS.get(model)
    return (seed is None or seed.kind == "image") and model not in TRANSFORMER_MODELS
