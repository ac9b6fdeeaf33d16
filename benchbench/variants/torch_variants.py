"""PyTorch variants: one small function per variant, and :func:`apply`, the backend's hook.

Imported only in worker processes. ``apply`` takes the fp32 model with its seeded weights
and the timed input, computes the fp32 reference outputs on a fixed seeded batch, turns
the model into the variant, and (outside the timed window) measures the variant's
fidelity and, for compiling variants, the first call (``compile_s``).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from benchbench.framework.base import Skip
from benchbench.registry import split_variant, variant_param
from benchbench.variants import fidelity

CALIBRATION_BATCHES = 4  # int8_static: seeded batches the observers see (at least)
CALIBRATION_SAMPLES = 16  # × this many samples at least, in batches of the case's batch size
UNCHANGED = ("fp32", "finetune", "frozen_backbone")  # forward = the fp32 forward before training


@dataclass
class Applied:
    """The variant, ready for the timed step: ``call(x)`` runs the model on the prepared
    timed input ``x``; ``prep`` turns a raw fp32 batch into the variant's input."""

    model: nn.Module  # the float module (counted: params, FLOPs, state dict) — not always what runs
    x: torch.Tensor
    call: Callable[[torch.Tensor], torch.Tensor]
    prep: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    runtime: dict = field(default_factory=dict)  # merged into record.runtime
    cold_start: dict = field(default_factory=dict)  # transform_s, compile_s
    facts: dict = field(default_factory=dict)  # merged into record.model
    runnable: nn.Module | None = None  # what runs, when it is another module (int8: its state dict is saved)
    serialized_format: str | None = None
    scaler: object = None  # torch.amp.GradScaler (amp on CUDA, train)
    compiled: bool = False  # the first call compiles: timed into cold_start.compile_s
    fidelity: dict = field(default_factory=dict)

    def params(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def backward(self, loss: torch.Tensor, opt) -> None:
        if self.scaler is None:
            loss.backward()
            opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()

    def model_facts(self) -> dict:
        """nonzero_params always; the saved size of what runs where that is not ``model``."""
        out = dict(self.facts)
        out["nonzero_params"] = int(sum(int(torch.count_nonzero(p.detach())) for p in self.model.parameters()))
        if self.runnable is not None:
            try:
                out["serialized_bytes"] = _saved_bytes(self.runnable)
            except Exception as e:  # a tensor subclass torch.save cannot write
                out["serialized_bytes"] = None
                out["serialized_reason"] = f"torch.save failed: {type(e).__name__}: {e}"[:300]
        if self.serialized_format:
            out["serialized_format"] = self.serialized_format
        return out


def _saved_bytes(module: nn.Module) -> int:
    import io

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def _autocast(device: torch.device, dtype: torch.dtype):
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _plain(model, x) -> Applied:
    return Applied(model=model, x=x, call=model)


def _cast(model, x, dtype) -> Applied:
    model = model.to(dtype)
    return Applied(
        model=model,
        x=x.to(dtype),
        call=model,
        prep=lambda t: t.to(dtype),
        runtime={"dtype": str(dtype).removeprefix("torch.")},
    )


def _amp(model, x, device, mode, dtype) -> Applied:
    ctx = _autocast(device, dtype)

    def call(t):
        with ctx():
            return model(t)

    scaler = None
    if device.type == "cuda" and dtype == torch.float16 and mode == "train":
        scaler = torch.amp.GradScaler("cuda")
    name = str(dtype).removeprefix("torch.")
    return Applied(
        model=model,
        x=x,
        call=call,
        scaler=scaler,
        runtime={"dtype": f"float32 weights, autocast {name}", "autocast": name, "grad_scaler": scaler is not None},
    )


def _tf32(model, x, device) -> Applied:
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise Skip(
            f"variant tf32: {torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; "
            "TF32 needs >= 8.0 (Ampere or newer)"
        )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    modes = {
        "cuda.matmul.allow_tf32": True,
        "cudnn.allow_tf32": True,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "reduced_precision_reduction": False,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
    }
    return Applied(model=model, x=x, call=model, runtime={"math_modes": modes})


def _channels_last(model, x) -> Applied:
    if x.dim() != 4:
        raise Skip(f"variant channels_last needs image input (N, C, H, W); this model takes {x.dim()}-D input")
    fmt = torch.channels_last
    model = model.to(memory_format=fmt)
    return Applied(
        model=model,
        x=x.contiguous(memory_format=fmt),
        call=model,
        prep=lambda t: t.contiguous(memory_format=fmt),
        runtime={"data_layout": "NHWC (channels_last)"},
    )


def _compile(model, x, mode) -> Applied:
    compiled = torch.compile(model, mode=mode)
    return Applied(
        model=model, x=x, call=compiled, compiled=True, runtime={"compile": {"backend": "inductor", "mode": mode}}
    )


def _torchscript(model, x, mode) -> Applied:
    if mode == "inference":
        model.eval()
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(model, x))
    else:
        traced = torch.jit.trace(model, x)
    return Applied(
        model=model,
        x=x,
        call=traced,
        compiled=True,
        runtime={"torchscript": "torch.jit.trace" + (" + torch.jit.freeze" if mode == "inference" else "")},
    )


def _int8_dynamic(model, x) -> Applied:
    from torch.ao.quantization import quantize_dynamic

    torch.backends.quantized.engine = "x86"
    model.eval()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    q = quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    return Applied(
        model=model,
        x=x,
        call=q,
        runnable=q,
        serialized_format="torch.save(state_dict) of the quantized model (int8 Linear weights)",
        runtime={
            "quantization": {
                "flow": "torch.ao.quantization.quantize_dynamic",
                "layers": "nn.Linear",
                "engine": "x86",
                "dtype": "qint8",
            }
        },
        facts={"quantized_layers": n_linear, "params_note": "counted on the float model before quantization"},
    )


def _calibration(x, seed: int) -> tuple[list[torch.Tensor], str]:
    """Seeded standard-normal batches the observers see: at least CALIBRATION_BATCHES ×
    CALIBRATION_SAMPLES samples, in batches of the timed input's size (an exported graph is
    specialised to it)."""
    gen = torch.Generator().manual_seed(seed + 2 * fidelity.SEED_OFFSET)  # not the fidelity batch
    b = x.shape[0]
    k = max(CALIBRATION_BATCHES, -(-CALIBRATION_BATCHES * CALIBRATION_SAMPLES // b))
    batches = [torch.randn((b, *x.shape[1:]), generator=gen).to(x.device) for _ in range(k)]
    return batches, f"{k} seeded batches of {b} standard-normal samples"


def _drop_unused_attrs(gm) -> None:
    """The float weights a converted PT2E graph no longer reads (its int8 copies replaced them):
    removed, so that the saved size is that of what runs."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [k for k, _ in gm.named_parameters()] + [k for k, _ in gm.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, leaf)


def _int8_static_pt2e(model, x, batches) -> tuple[nn.Module, nn.Module]:
    """torchao's PT2E flow: export, X86InductorQuantizer annotation, calibration, convert; then
    torch.compile, whose inductor lowering (weights frozen) runs the int8 oneDNN kernels. (The
    converted graph run eagerly is a float reference of the int8 math, slower than fp32: never timed.)"""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    exported = torch.export.export(copy.deepcopy(model), (x,)).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for b in batches:
            prepared(b)
    converted = convert_pt2e(prepared)
    _drop_unused_attrs(converted)
    allow_exported_model_train_eval(converted)  # .eval()/.train() as on any module (inference only here)
    torch._inductor.config.freezing = True  # this worker's inductor: constant weights, prepacked for oneDNN
    return converted, torch.compile(converted)


def _int8_static(model, x, seed: int) -> Applied:
    """Post-training static int8 on the CPU, calibrated on seeded batches: torchao's PT2E flow
    (X86InductorQuantizer, lowered by torch.compile to oneDNN int8 kernels) where its quantizer
    can annotate the model; FX graph mode (torch.ao.quantization, deprecated, eager fbgemm/oneDNN
    int8 kernels) where it cannot — with torch 2.14 + torchao 0.18 that is ResNet's conv + add +
    ReLU ("Input partition has more than one output node"). The record says which flow ran, and why."""
    import torchao

    model.eval()
    batches, calibration = _calibration(x, seed)
    try:
        runnable, call = _int8_static_pt2e(model, x, batches)
    except Exception as e:  # the quantizer cannot annotate (or export cannot trace) this model
        fallback = f"torchao PT2E could not quantize it: {type(e).__name__}: {e}"[:300]
    else:
        return Applied(
            model=model,
            x=x,
            call=call,
            runnable=runnable,
            compiled=True,
            serialized_format="torch.save(state_dict) of the converted PT2E graph (int8 weights)",
            runtime={
                "quantization": {
                    "flow": f"torchao {torchao.__version__} PT2E (prepare_pt2e/convert_pt2e), lowered by torch.compile",
                    "quantizer": "X86InductorQuantizer, default config (static int8 activations and weights)",
                    "engine": "x86",
                    "inductor_freezing": True,
                    "calibration": calibration,
                }
            },
            facts={"params_note": "counted on the float model before quantization"},
        )
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
    with torch.no_grad():
        for b in batches:
            prepared(b)
    q = convert_fx(prepared)
    return Applied(
        model=model,
        x=x,
        call=q,
        runnable=q,
        serialized_format="torch.save(state_dict) of the quantized model (int8 weights, packed)",
        runtime={
            "quantization": {
                "flow": "FX graph mode (prepare_fx/convert_fx), torch.ao.quantization",
                "qconfig": "x86",
                "engine": "x86",
                "calibration": calibration,
                "fallback": fallback,
            }
        },
        facts={"params_note": "counted on the float model before quantization"},
    )


def _prunable(model) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def _prune(model, x, sparsity: float) -> Applied:
    from torch.nn.utils import prune

    layers = _prunable(model)
    for m in layers:
        prune.l1_unstructured(m, "weight", amount=sparsity)
        prune.remove(m, "weight")  # permanent: a plain weight with zeros
    total = sum(m.weight.numel() for m in layers)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return Applied(
        model=model,
        x=x,
        call=model,
        runtime={
            "pruning": {
                "method": "torch.nn.utils.prune.l1_unstructured per layer, then prune.remove",
                "layers": "conv and linear weights",
                "sparsity": sparsity,
            }
        },
        facts={
            "sparsity_target": sparsity,
            "prunable_params": total,
            "prunable_zero_fraction": zeros / total if total else None,
        },
    )


def _classifier_head(model) -> nn.Module | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _channel_prune(model, x, fraction: float) -> Applied:
    import torch_pruning as tp

    before = sum(p.numel() for p in model.parameters())
    head = _classifier_head(model)
    model.eval()
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=x[:1],
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=fraction,
        ignored_layers=[head] if head is not None else [],
    )
    pruner.step()
    after = sum(p.numel() for p in model.parameters())
    return Applied(
        model=model,
        x=x,
        call=model,
        runtime={
            "pruning": {
                "method": f"torch-pruning {tp.__version__} MetaPruner, L1 magnitude "
                "importance, channel groups across dependent layers",
                "channel_fraction": fraction,
                "kept": "the classifier head's outputs",
            }
        },
        facts={"params_before_pruning": before, "params_removed_fraction": 1 - after / before},
    )


def _sparse24(model, x, device) -> Applied:
    from torch.sparse import to_sparse_semi_structured

    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        raise Skip(f"variant sparse24: compute capability {major}.{minor}; 2:4 sparse tensor cores need >= 8.0")
    model = model.half()  # counted: dense fp16 weights with the 2:4 zeros
    done = 0
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.weight.shape[0] % 64 == 0 and m.weight.shape[1] % 64 == 0:
            w = m.weight.detach()
            keep = w.abs().reshape(-1, 4).topk(2, dim=1).indices
            mask = torch.zeros_like(w).reshape(-1, 4).scatter_(1, keep, 1).reshape(w.shape).bool()
            m.weight.data.mul_(mask)
            done += 1
    if not done:
        raise Skip("variant sparse24: no Linear layer with both dimensions a multiple of 64")
    sparse = copy.deepcopy(model)  # what runs: the same weights in the 2:4 compressed format
    for m in sparse.modules():
        if isinstance(m, nn.Linear) and m.weight.shape[0] % 64 == 0 and m.weight.shape[1] % 64 == 0:
            m.weight = nn.Parameter(to_sparse_semi_structured(m.weight.detach()), requires_grad=False)
    return Applied(
        model=model,
        x=x.half(),
        call=sparse,
        runnable=sparse,
        prep=lambda t: t.half(),
        serialized_format="torch.save(state_dict) of the 2:4 compressed model",
        runtime={
            "dtype": "float16",
            "sparsity": {"method": "2:4 by magnitude, to_sparse_semi_structured", "layers": done},
        },
        facts={"sparse24_layers": done},
    )


def _frozen_backbone(model, x) -> Applied:
    head = _classifier_head(model)
    if head is None:
        raise Skip("variant frozen_backbone: no nn.Linear classifier head found to train")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    trainable = sum(p.numel() for p in head.parameters())
    return Applied(
        model=model,
        x=x,
        call=model,
        runtime={"transfer": "frozen backbone: only the last nn.Linear trains"},
        facts={"trainable_params": trainable},
    )


def _make(case, model, x, device) -> Applied:
    base, _ = split_variant(case.variant)
    param = variant_param(case.variant)
    if base in ("fp32", "finetune"):
        return _plain(model, x)
    makers = {
        "fp16": lambda: _cast(model, x, torch.float16),
        "bf16": lambda: _cast(model, x, torch.bfloat16),
        "amp": lambda: _amp(model, x, device, case.mode, torch.float16 if device.type == "cuda" else torch.bfloat16),
        "amp_bf16": lambda: _amp(model, x, device, case.mode, torch.bfloat16),
        "tf32": lambda: _tf32(model, x, device),
        "channels_last": lambda: _channels_last(model, x),
        "compile": lambda: _compile(model, x, param),
        "torchscript": lambda: _torchscript(model, x, case.mode),
        "int8_dynamic": lambda: _int8_dynamic(model, x),
        "int8_static": lambda: _int8_static(model, x, case.settings.seed),
        "prune": lambda: _prune(model, x, param),
        "channel_prune": lambda: _channel_prune(model, x, param),
        "sparse24": lambda: _sparse24(model, x, device),
        "frozen_backbone": lambda: _frozen_backbone(model, x),
    }
    if base not in makers:
        raise Skip(f"variant {case.variant!r} is not implemented for torch")
    return makers[base]()


def _outputs(call, batches, train: bool, modules) -> np.ndarray:  # noqa: F821
    import numpy as np

    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.inference_mode() if not train else torch.no_grad():
            outs = [call(b).float().cpu() for b in batches]
    finally:
        for m, w in zip(modules, was):
            m.train(w)
    return np.concatenate([o.reshape(o.shape[0], -1).numpy() for o in outs])


def apply(case, model: nn.Module, x: torch.Tensor, device: torch.device, sync: Callable[[], None]) -> Applied:
    """Turn the fp32 ``model`` (seeded weights, on ``device``) into ``case.variant``; fidelity
    against fp32 and the first compiling call happen here, before the timed window."""
    seed = case.settings.seed
    train = case.mode == "train"
    base, _ = split_variant(case.variant)
    batches, ref = [], None
    if base not in UNCHANGED:
        n = fidelity.samples_for(case.batch_size)
        gen = torch.Generator().manual_seed(seed + fidelity.SEED_OFFSET)
        raw = torch.randn((n, *x.shape[1:]), generator=gen)
        batches = [b.to(device) for b in raw.split(case.batch_size)]
        ref = _outputs(model, batches, train, [model])
    t0 = time.perf_counter()
    v = _make(case, model, x, device)
    sync()
    v.cold_start["transform_s"] = time.perf_counter() - t0
    for m in [v.model] + ([v.runnable] if v.runnable is not None else []):
        m.train(train)
    if base in UNCHANGED:
        v.fidelity = fidelity.identical(
            seed, f"the {base} forward pass is the fp32 one (same seeded weights, nothing changed before training)"
        )
        return v

    def first_call():
        grad = torch.inference_mode() if not train else contextlib.nullcontext()
        t1 = time.perf_counter()
        with grad:
            v.call(v.x)
        sync()
        v.cold_start["compile_s"] = time.perf_counter() - t1

    def measure_fidelity():
        runs = [v.model] + ([v.runnable] if v.runnable is not None else [])
        cand = _outputs(v.call, [v.prep(b) for b in batches], train, runs)
        v.fidelity = fidelity.compare(
            ref, cand, seed=seed + fidelity.SEED_OFFSET, method=fidelity.method(len(ref), "torch")
        )

    # inference: compile on the timed shape and grad mode first (the fidelity pass then hits
    # the cache); train: fidelity before any training step changes the weights or BN statistics
    order = [first_call, measure_fidelity] if not train else [measure_fidelity, first_call]
    for fn in order:
        if fn is first_call and not v.compiled:
            continue
        fn()
    return v
