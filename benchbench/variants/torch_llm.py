"""PyTorch variants of token models (transformers): precision, forced attention backend,
compile, and torchao weight-only quantization. Imported only in worker processes.

:func:`apply` turns the fp32 model (seeded weights, on its device) into the variant in place
and says what changed; the backend (:mod:`benchbench.backends.torch_tokens`) computes the fp32
reference before it and the variant's fidelity after it, outside the timed window.

* ``fp32``, ``bf16``, ``fp16``: the model cast; torch chooses the attention backend and the
  record says which ran (:func:`observed_sdpa`).
* ``sdpa:BACKEND``: bfloat16 (the precision every backend runs: flash needs 16-bit on CUDA)
  with ``torch.nn.attention.sdpa_kernel([BACKEND])`` around every step.
* ``compile[:MODE]``: ``torch.compile``; in generate mode the decode step only, against a
  static KV cache (a fixed shape, as transformers' own compiled generation does), the
  prefill eager.
* ``int8_weight``, ``int4_weight``: bfloat16, then torchao's weight-only quantization of the
  Linear layers (GPT-2's ``Conv1D`` layers, transposed Linears, are swapped for equal
  ``nn.Linear`` layers first so that torchao sees them): int8 per channel
  (``Int8WeightOnlyConfig``); int4 in groups of 128 (CPU: ``PrototypeInt4WeightOnlyConfig``,
  the tinygemm CPU kernel; CUDA: ``Int4WeightOnlyConfig`` with the tile_packed_to_4d format).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from benchbench.framework.base import Skip
from benchbench.registry import split_variant, variant_param

INT4_GROUP = 128
SUPPORTED = ("fp32", "bf16", "fp16", "sdpa", "compile", "int8_weight", "int4_weight")
SDPA_BACKENDS = {
    "math": "MATH",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
}
# the aten op each backend runs (as torch.profiler names it): how a record says which one ran
SDPA_OPS = {
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


@dataclass
class Variant:
    """What the variant made of the model."""

    model: nn.Module  # the model that runs (cast / quantized in place)
    dtype: torch.dtype
    runtime: dict = field(default_factory=dict)  # merged into record.runtime
    cold_start: dict = field(default_factory=dict)  # transform_s
    facts: dict = field(default_factory=dict)  # merged into record.model
    compile_mode: str | None = None  # compile: torch.compile's mode (the backend compiles what it runs)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # around every step


def _sdpa_context(name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, SDPA_BACKENDS[name])
    return lambda: sdpa_kernel([backend])


def _conv1d_to_linear(model: nn.Module) -> int:
    """transformers' ``Conv1D`` (GPT-2: ``y = x @ W + b`` with W as (in, out)) → the equal
    ``nn.Linear`` (W transposed), so that quantizers that look for Linear layers see them."""
    from transformers.pytorch_utils import Conv1D

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                w = child.weight.detach()
                lin = nn.Linear(w.shape[0], w.shape[1], bias=child.bias is not None, device=w.device, dtype=w.dtype)
                with torch.no_grad():
                    lin.weight.copy_(w.t())
                    if child.bias is not None:
                        lin.bias.copy_(child.bias.detach())
                setattr(parent, name, lin)
                swapped += 1
    return swapped


def quantized_linears(model: nn.Module) -> int:
    """Linear layers whose weight is a torchao tensor subclass."""
    from torchao.utils import TorchAOBaseTensor

    return sum(isinstance(m, nn.Linear) and isinstance(m.weight, TorchAOBaseTensor) for m in model.modules())


def _weight_only(model: nn.Module, bits: int, device: torch.device) -> tuple[dict, dict]:
    import torchao
    from torchao.quantization import quantize_

    swapped = _conv1d_to_linear(model)
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    if bits == 8:
        from torchao.quantization import Int8WeightOnlyConfig

        config = Int8WeightOnlyConfig()
        how = "Int8WeightOnlyConfig (int8 per output channel, symmetric)"
    elif device.type == "cpu":
        from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

        config = PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP)
        how = f"PrototypeInt4WeightOnlyConfig(group_size={INT4_GROUP}): Int4OpaqueTensor, tinygemm CPU kernel"
    else:
        from torchao.quantization import Int4WeightOnlyConfig

        config = Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d")
        how = f"Int4WeightOnlyConfig(group_size={INT4_GROUP}, tile_packed_to_4d): tinygemm"
    quantize_(model, config)
    done = quantized_linears(model)
    if done == 0:
        raise Skip(
            f"int{bits}_weight: no Linear layer torchao could quantize (int4 needs in_features divisible by {INT4_GROUP})"
        )
    runtime = {
        "quantization": {
            "library": f"torchao {torchao.__version__}",
            "config": how,
            "weights": f"int{bits}",
            "activations": "bfloat16",
            "layers": f"{done} of {linears} nn.Linear"
            + (f" ({swapped} GPT-2 Conv1D swapped for nn.Linear)" if swapped else ""),
        }
    }
    facts = {"quantized_layers": done, "params_note": "counted on the float model before quantization"}
    return runtime, facts


def apply(case, model: nn.Module, device: torch.device) -> Variant:
    """The variant of ``case`` made of ``model`` in place (see the module docstring)."""
    base, _ = split_variant(case.variant)
    if base not in SUPPORTED:
        raise Skip(f"variant {case.variant!r} is not implemented for token models (they run: {', '.join(SUPPORTED)})")
    t0 = time.perf_counter()
    v = Variant(model=model, dtype=torch.float32)
    if base in ("bf16", "sdpa", "int8_weight", "int4_weight"):
        v.dtype = torch.bfloat16
    elif base == "fp16":
        v.dtype = torch.float16
    if v.dtype != torch.float32:
        model.to(v.dtype)
    v.runtime["dtype"] = str(v.dtype).removeprefix("torch.")
    if base == "sdpa":
        name = variant_param(case.variant)
        if device.type == "cpu" and name in ("efficient", "cudnn"):
            raise Skip(f"variant sdpa:{name} on cpu: PyTorch's CPU attention kernels are math and flash only")
        v.context = _sdpa_context(name)
        v.runtime["sdpa_forced"] = name
    elif base == "compile":
        v.compile_mode = variant_param(case.variant)
        v.runtime["compile"] = {"backend": "inductor", "mode": v.compile_mode}
    elif base in ("int8_weight", "int4_weight"):
        runtime, facts = _weight_only(model, 8 if base == "int8_weight" else 4, device)
        v.runtime.update(runtime)
        v.facts.update(facts)
    v.cold_start["transform_s"] = time.perf_counter() - t0
    return v


def observed_sdpa(fn: Callable[[], object]) -> dict:
    """Which scaled-dot-product-attention backend ``fn`` ran, from torch.profiler's op names:
    {"backends": [...], "ops": [...]}; none when the model calls no SDPA."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    ops = sorted({e.key for e in prof.key_averages() if e.key in SDPA_OPS})
    return {"backends": sorted({SDPA_OPS[o] for o in ops}), "ops": ops}


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds; a torchao tensor subclass: the sum of its inner tensors (packed
    int8/int4 data, scales, zero points)."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


__all__ = ["SUPPORTED", "Variant", "apply", "observed_sdpa", "quantized_linears", "tensor_bytes"]
