"""The PyTorch backend. Imported only in worker and probe processes."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import sys
import time

import torch

from benchbench import registry
from benchbench.case import Case
from benchbench.framework.base import Prepared, Skip
from benchbench.hardware.environment import cpu_model
from benchbench.models import torch_models

FLOPS_NOTE = (
    "forward pass per sample; FLOPs = 2 × multiply-accumulates; counted by "
    "torch.utils.flop_counter.FlopCounterMode (convolutions and matmuls, attention's included: "
    "counted with the fused attention kernels off)"
)


def _version_of(pkg: str) -> str | None:
    """An installed package's version, without importing it (timm alone takes ~0.5–1.5 s to
    import, which every worker would pay for a version string); None when not installed."""
    module = sys.modules.get(pkg)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:  # not installed: not a version
        return None


def _versions() -> dict:
    out = {"torch": torch.__version__}
    for pkg in ("torchvision", "timm", "numpy"):
        out[pkg] = _version_of(pkg)
    out["cuda"] = torch.version.cuda
    # ROCm build: AMD GPUs through the same torch.cuda API and `cuda` device (telemetry: AMD SMI)
    out["hip"] = getattr(torch.version, "hip", None)
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return out


def _pci_bus_id(props) -> str | None:
    """``DDDD:BB:DD.0`` of a GPU from its device properties (what NVML and AMD SMI match on)."""
    try:
        return f"{int(props.pci_domain_id):04x}:{int(props.pci_bus_id):02x}:{int(props.pci_device_id):02x}.0"
    except (AttributeError, TypeError, ValueError):
        return None


def _cuda_devices() -> dict:
    if not torch.cuda.is_available():
        return {"available": False, "reason": "no CUDA GPU visible to PyTorch"}
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append(
            {
                "index": i,
                "name": p.name,
                "memory_bytes": p.total_memory,
                "uuid": str(getattr(p, "uuid", "")) or None,
                "pci_bus_id": _pci_bus_id(p),
                "capability": f"{p.major}.{p.minor}",
            }
        )
    return {"available": True, "count": len(gpus), "gpus": gpus}


def _tpu() -> dict:
    try:
        import torch_xla  # noqa: F401
    except ImportError:
        return {"available": False, "reason": "torch_xla is not installed (no TPU path for PyTorch here)"}
    try:
        import torch_xla.runtime as xr

        if xr.device_type() != "TPU":
            return {"available": False, "reason": f"torch_xla sees {xr.device_type()}, not a TPU"}
    except Exception as e:  # runtime cannot start: no TPU
        return {"available": False, "reason": f"no TPU visible to torch_xla ({e})"}
    return {"available": True}


def _xla_device(kind: str):
    """torch_xla's device for ``tpu`` (a TPU) or ``xla`` (XLA's CPU device: ``PJRT_DEVICE=CPU``,
    set here before torch_xla's runtime starts); Skip with the reason where there is none."""
    if kind == "xla":
        os.environ["PJRT_DEVICE"] = "CPU"
        want = "CPU"
    else:
        want = "TPU"
    try:
        import torch_xla
        import torch_xla.runtime as xr
    except ImportError:
        raise Skip(
            f"device {kind}: torch_xla is not installed (pip install torch-xla, with its matching torch)"
        ) from None
    have = xr.device_type()
    if have != want:
        raise Skip(f"device {kind}: torch_xla's runtime runs on {have}, not {want} (PJRT_DEVICE)")
    return torch_xla.device()


def _xla_cpu() -> dict:
    """XLA's CPU device (``device: xla``): there wherever torch_xla is installed."""
    import importlib.util

    if importlib.util.find_spec("torch_xla") is None:
        return {"available": False, "reason": "torch_xla is not installed (device xla is XLA's CPU device through it)"}
    return {"available": True, "name": f"XLA CPU device on {cpu_model()}"}


def _sync_fn(device: torch.device, xla=None, xm=None):
    """A function that returns once ``device`` has finished the work queued so far. Its
    arguments are the values the step computed: they stay referenced through the call, which
    torch_xla needs — its tensors are lazy, and ``torch_xla.sync`` runs the pending graph only
    for values something still holds (a discarded output would never be computed). Its default
    ``wait=False`` returns as soon as the graph is launched; and even ``wait=True`` returned
    before XLA's CPU device had run the graph (torch_xla 2.9, 4 Linear 512 layers: 0.12 ms a
    step at batch 256 and at 1024 alike, against 4.8 and 16.4 ms with the wait below), so
    ``xm.wait_device_ops()`` follows: it returns when the device's queue is empty.
    ``xla``, ``xm``: torch_xla and torch_xla.core.xla_model (fakes in tests)."""
    if device.type == "cuda":
        return lambda *keep: torch.cuda.synchronize(device)
    if device.type == "mps":
        return lambda *keep: torch.mps.synchronize()
    if device.type == "xla":
        if xla is None:
            import torch_xla as xla
        if xm is None:
            import torch_xla.core.xla_model as xm

        def xla_sync(*keep) -> None:
            xla.sync(wait=True)  # ``keep`` is alive here: its graph is cut and launched...
            xm.wait_device_ops()  # ...and this returns once the device has run it

        return xla_sync
    return lambda *keep: None  # eager CPU ops have finished when they return


def xla_memory(device, on_tpu: bool, xm=None) -> dict:
    """Device memory of a torch_xla case: the allocator's peak where torch_xla reports one (a
    TPU's HBM, which host RSS does not include); on XLA's CPU device the buffers are host memory,
    which the host RSS covers. ``xm``: torch_xla.core.xla_model (a fake in tests)."""
    out: dict = {"device_peak_allocated_bytes": None, "device_peak_reserved_bytes": None}
    try:
        if xm is None:
            import torch_xla.core.xla_model as xm
        info = xm.get_memory_info(device)
        peak = info.get("peak_bytes_used")
        if peak is None:
            raise KeyError("peak_bytes_used")
    except Exception as e:  # XLA's CPU device: UNIMPLEMENTED (GetAllocatorStats)
        why = f"torch_xla reports no allocator statistics ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        if on_tpu:
            out["device_memory_reason"] = f"{why}: the TPU's HBM is not in the host RSS, so its peak is unknown"
        else:
            out["device_memory_reason"] = (
                f"{why}; XLA's CPU device keeps its buffers in host memory: host RSS covers them"
            )
        return out
    out["device_peak_allocated_bytes"] = int(peak)
    out["device_memory_source"] = (
        "torch_xla.core.xla_model.get_memory_info peak_bytes_used: the allocator's peak since the runtime "
        "started (model build included: torch_xla cannot reset it)"
    )
    return out


AUTOTUNE_NOTE = (
    "cudnn.benchmark: cuDNN times its convolution algorithms for each new input shape on first use "
    "— in the first iteration and warm-up, never in the timed window"
)


def _set_math(variant: str, autotune: bool, device: torch.device, xla_backends=None) -> None:
    """Precision and speed settings before the model is built. fp32 means fp32 (DESIGN.md):
    TF32 off and float32 matmuls at ``highest`` for every variant but ``tf32`` (which sets its
    own), and for ``fp32`` the fp16/bf16 reduced-precision reductions off too. Every other
    variant keeps PyTorch's default for those reductions (on): it is measured as users run it.
    ``cudnn.benchmark`` follows the case's ``autotune`` setting (default on) for every variant.
    On XLA, fp32 matmuls and convolutions at ``highest`` precision for ``fp32`` (torch_xla's
    default on a TPU computes them in bf16 passes); other variants keep torch_xla's default."""
    from benchbench.registry import split_variant

    base = split_variant(variant)[0]
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    strict = base == "fp32"
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = not strict
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = not strict
    torch.backends.cudnn.benchmark = bool(autotune)
    if device.type == "xla" and strict:
        if xla_backends is None:
            import torch_xla.backends as xla_backends
        xla_backends.set_mat_mul_precision("highest")


def _math_modes(autotune: bool, device: torch.device, xla_backends=None) -> dict:
    """The math modes as they are now (read back, not as intended): after the variant applied."""
    fp16 = torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
    bf16 = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    modes = {
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda.matmul.allow_fp16_reduced_precision_reduction": bool(fp16),
        "cuda.matmul.allow_bf16_reduced_precision_reduction": bool(bf16),
        "reduced_precision_reduction": bool(fp16 or bf16),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "autotune": bool(autotune),
        "autotune_note": AUTOTUNE_NOTE,
    }
    if device.type == "xla":
        if xla_backends is None:
            import torch_xla.backends as xla_backends
        modes["xla.mat_mul_precision"] = xla_backends.get_mat_mul_precision()
    return modes


def _serialized_bytes(model: torch.nn.Module) -> int:
    class Counter(io.RawIOBase):
        n = 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            return len(b)

    sink = Counter()
    torch.save(model.state_dict(), sink)
    return sink.n


def _flops_per_sample(model, x_one) -> int:
    """Attention counted too: FlopCounterMode sees neither nn.MultiheadAttention's fused
    inference fast path (``_native_multi_head_attention``: vit_b_16 would lose its in/out
    projections, 11.27 instead of 17.56 GMACs) nor CPU's fused scaled-dot-product kernel,
    so both run as their plain matmuls while counting; the fast-path switch is restored."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), counter:
            model(x_one)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


TRAIN_FLOPS_NOTE = (
    "forward + backward per sample of a train step, counted by torch.utils.flop_counter.FlopCounterMode on a "
    "real forward and backward in train mode (convolutions and matmuls, FLOPs = 2 × multiply-accumulates); the "
    "backward differentiates only the parameters that require grad, as the step does (a frozen backbone's is "
    "the head's alone); the optimizer's element-wise update is not counted"
)
TRAIN_COUNT_SAMPLES = 2  # samples the train count runs (FLOPs are linear in the batch; 2 keeps batch norm valid)


def _train_flops_per_sample(model, xs, loss_fn, ys, params) -> int:
    """FLOPs per sample of what one train step computes: a real forward in train mode and the
    backward to ``params`` (the ones the optimizer trains), counted by FlopCounterMode.
    ``torch.autograd.grad`` leaves ``.grad`` alone (and fires no DistributedDataParallel hook);
    the buffers the forward moves (batch-norm statistics) are put back."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.train()
    try:
        with sdpa_kernel([SDPBackend.MATH]), counter:
            loss = loss_fn(model(xs).float(), ys)
            torch.autograd.grad(loss, params)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    return round(counter.get_total_flops() / xs.shape[0])


PROFILE_ITERS = 5  # iterations in the profiled window (after, never inside, the timed one)
PROFILE_TOP = 15  # operators kept per table in the record


def _op_rows(events, attr: str, top: int) -> list[dict]:
    rows = [e for e in events if getattr(e, attr, 0) > 0]
    rows.sort(key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in rows) or 1
    return [{"op": e.key, "calls": e.count, "self_s": getattr(e, attr) / 1e6,
             "share": getattr(e, attr) / total} for e in rows[:top]]  # fmt: skip


def profile_window(step, device_type: str, trace_path, iters: int = PROFILE_ITERS, top: int = PROFILE_TOP) -> dict:
    """Run ``step`` ``iters`` times under torch.profiler: top operators by self time on the
    host (and on the device for CUDA) and a Chrome trace at ``trace_path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            step()
    prof.export_chrome_trace(str(trace_path))
    events = prof.key_averages()
    out = {"tool": "torch.profiler", "iterations": iters, "trace": str(trace_path),
           "top_host_ops": _op_rows(events, "self_cpu_time_total", top)}  # fmt: skip
    if device_type == "cuda":
        attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
        out["top_device_ops"] = _op_rows(events, attr, top)
    else:
        out["top_device_ops"] = None
        out["device_ops_reason"] = f"{device_type} case: the host ops are the device ops"
    return out


def compile_backward(v, loss, opt, sync, clock=time.perf_counter) -> None:
    """A compiling variant in train mode (torch.compile, TorchScript): its first call compiled the
    forward (``cold_start.compile_s``); the backward graph compiles at the first backward. One
    forward + backward here, untimed by the loop, adds that compile to ``compile_s`` (the time of
    one execution included: the record says so); the gradients are dropped, no update is made."""
    t0 = clock()
    value = loss()
    value.backward()
    sync(value)
    backward_s = clock() - t0
    opt.zero_grad(set_to_none=True)
    forward_s = v.cold_start.get("compile_s") or 0.0
    v.cold_start["compile_forward_s"] = forward_s
    v.cold_start["compile_backward_s"] = backward_s
    v.cold_start["compile_s"] = forward_s + backward_s
    v.cold_start["compile_note"] = (
        v.cold_start.get("compile_note") or "the first forward call"
    ) + " + the first forward and backward (the backward graph compiles there; one execution of each included)"


class _VariantCall(torch.nn.Module):
    """A module whose forward is a variant's call (amp: autocast around the model), so that
    DistributedDataParallel can wrap it; the model is a submodule: its parameters are DDP's."""

    def __init__(self, model: torch.nn.Module, call):
        super().__init__()
        self.model, self._call = model, call

    def forward(self, x):
        return self._call(x)


def wrap_ddp(case: Case, v, device: torch.device, runtime: dict, sync):
    """The train step's forward: the variant's ``call`` — under DistributedDataParallel when
    this process is a rank of a process group with more than one member (``devices: N``:
    a torchrun rank, ``benchbench.worker.rank``). DDP must wrap the module whose backward makes
    the gradients of the parameters the optimizer updates (``v.params()``), and the step
    must still run the variant, so how the two compose depends on what the variant's call is:

    - ``compile``: ``torch.compile(DDP(model))``, DDP first. Dynamo then sees DDP and splits
      the graph at its gradient buckets (DDPOptimizer), so each bucket's all-reduce overlaps
      the rest of backward, as torch's DDP + compile notes prescribe; DDP around the compiled
      module would all-reduce only after the whole compiled backward. The compile the variant
      timed (without DDP) is not the one that runs: the first call of the DDP module is timed
      again as ``cold_start.compile_s``.
    - the call *is* the model (fp32, finetune, fp16/bf16 casts, channels_last, tf32, prune,
      channel_prune, frozen_backbone): the variant changed the module itself; DDP wraps it.
    - the call is another module sharing the model's parameters (torchscript's traced graph;
      a trace cannot contain DDP, whose forward is Python with collectives): DDP wraps it.
    - the call is a function around the model (amp, amp_bf16: autocast): DDP wraps a module
      whose forward is that very call, so autocast covers the forward exactly as on one device,
      while DDP's gradient all-reduce runs in backward, outside autocast (torch's AMP notes).

    Fidelity was measured by the variant on its own call: DDP does not change the forward."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return v.call
    from torch.nn.parallel import DistributedDataParallel

    from benchbench.registry import split_variant

    def ddp(module):
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    if split_variant(case.variant)[0] == "compile":
        forward = torch.compile(ddp(v.model), mode=v.runtime["compile"]["mode"])
        how = "torch.compile(DistributedDataParallel(model)): DDP first, so dynamo splits the graph at its buckets"
        t0 = time.perf_counter()
        sync(forward(v.x))  # compiles, as the variant's own first call did (forward, gradients on)
        v.cold_start["compile_s"] = time.perf_counter() - t0
        v.cold_start["compile_note"] = "first call of torch.compile(DistributedDataParallel(model)) in this rank"
    elif v.call is v.model:
        forward, how = ddp(v.model), "DistributedDataParallel(model): the variant changed the module itself"
    elif isinstance(v.call, torch.nn.Module):
        trained = {id(p) for p in v.params()}
        if not trained <= {id(p) for p in v.call.parameters()}:
            raise Skip(
                f"variant {case.variant!r} with devices: {case.devices} (train): the module it runs "
                "does not hold the parameters the optimizer trains, so DDP cannot all-reduce them"
            )
        forward = ddp(v.call)
        how = f"DistributedDataParallel({type(v.call).__name__}): the variant's module, sharing the model's parameters"
    else:
        forward = ddp(_VariantCall(v.model, v.call))
        how = "DistributedDataParallel(module running the variant's call" + (
            f": autocast {v.runtime['autocast']} around the model)" if v.runtime.get("autocast") else ")"
        )
    runtime["ddp"] = {"world_size": dist.get_world_size(), "backend": dist.get_backend(), "wraps": how}
    return forward


class TorchBackend:
    name = "torch"

    def imports(self, model: str | None = None) -> None:
        """Import what the case's prepare imports anyway (torchvision for every model, timm for
        a ``timm:`` one) before the worker marks the build's start: a zoo's import is the
        framework's footprint, not the case's (``memory.host_peak_above_build_start_bytes``).
        The fork server calls it without a model: torchvision only."""
        import torchvision  # noqa: F401

        if model is not None and registry.model_kind(model) == "timm":
            import timm  # noqa: F401

    def profile(self, prepared: Prepared, trace_path) -> dict:
        with prepared.context():
            return profile_window(prepared.step, prepared.runtime.get("device_type", "cpu"), trace_path)

    def probe(self) -> dict:
        return {
            "framework": "torch",
            "versions": _versions(),
            "devices": {
                "cpu": {"available": True, "name": cpu_model()},
                "cuda": _cuda_devices(),
                "tpu": _tpu(),
                "xla": _xla_cpu(),
            },
            "models": torch_models.zoo_names(),
            "timm_models": torch_models.timm_names(),
        }

    def _device(self, case: Case) -> torch.device:
        kind = case.device.split(":")[0]
        if kind == "cpu":
            return torch.device("cpu")
        if kind == "cuda":
            info = _cuda_devices()
            if not info["available"]:
                raise Skip(info["reason"])
            dev = torch.device(case.device)
            index = dev.index or 0
            if index >= info["count"]:
                raise Skip(f"{case.device}: only {info['count']} CUDA GPU(s) visible")
            return torch.device("cuda", index)
        if kind in ("tpu", "xla"):
            return _xla_device(kind)
        raise Skip(f"device {case.device!r} is not supported by the torch backend")

    def prepare(self, case: Case) -> Prepared:
        from benchbench.registry import variant_support
        from benchbench.variants import torch_variants

        reason = variant_support("torch", case.variant, case.device, case.mode)
        if reason:
            raise Skip(reason)
        device = self._device(case)
        threads = case.threads or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        _set_math(case.variant, case.settings.autotune, device)
        torch.manual_seed(case.settings.seed)
        gen = torch.Generator().manual_seed(case.settings.seed)

        runtime = {
            "framework": "torch",
            "versions": _versions(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
            "device_type": device.type,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "math_modes": {},  # read back once the variant has applied (below)
            "dtype": "float32",
            "input_shape": [case.batch_size, *case.input_shape],
            "data_layout": "NCHW" if len(case.input_shape) == 3 else "NC",
        }
        if device.type == "cuda":
            runtime["device_uuid"] = str(torch.cuda.get_device_properties(device).uuid)
            runtime["device_pci_bus_id"] = _pci_bus_id(torch.cuda.get_device_properties(device))
            if case.devices > 1:  # every rank's GPU (rank r on cuda:r): telemetry reads each of them
                runtime["device_uuids"] = [str(torch.cuda.get_device_properties(i).uuid) for i in range(case.devices)]
                runtime["device_pci_bus_ids"] = [_pci_bus_id(torch.cuda.get_device_properties(i))
                                                 for i in range(case.devices)]  # fmt: skip
        if case.seq_len or case.prompt_len or case.mode == "generate":  # token models: benchbench.backends.torch_tokens
            from benchbench.backends import torch_tokens

            runtime["math_modes"] = _math_modes(case.settings.autotune, device)
            return torch_tokens.prepare(case, device, _sync_fn(device), runtime, _serialized_bytes)

        t0 = time.perf_counter()
        model = torch_models.build(case.model, case.input_shape).to(device)
        sync = _sync_fn(device)
        sync(model)
        build_s = time.perf_counter() - t0

        x = torch.randn((case.batch_size, *case.input_shape), generator=gen).to(device)
        v = torch_variants.apply(case, model, x, device, sync)  # the variant; fidelity and compile_s, untimed
        model, x = v.model, v.x
        runtime.update(v.runtime)
        runtime["math_modes"] = _math_modes(case.settings.autotune, device)  # as set, the variant's included
        if device.type == "xla":  # a TPU, or XLA's CPU device on this host's CPU
            runtime["device_name"] = "TPU" if case.device.startswith("tpu") else f"XLA CPU device on {cpu_model()}"
            runtime["xla_device"] = str(device)

        if case.mode == "inference":
            model.eval()

            def step():
                out = v.call(x)
                sync(out)  # the output stays alive until the device has computed it (torch_xla)

            # torch_xla's lazy tensors cannot be inference tensors ("Cannot set version_counter
            # for inference tensor"): no_grad there, inference_mode elsewhere
            context = torch.no_grad if device.type == "xla" else torch.inference_mode
        else:
            model.train()
            loss_name, loss_fn, make_targets = torch_models.loss_for(case.model)
            with torch.no_grad():
                out_shape = v.call(x).shape
            y = make_targets(out_shape, gen, device)
            if case.optimizer == "sgd":
                opt = torch.optim.SGD(v.params(), lr=1e-3, momentum=0.9)
            else:
                opt = torch.optim.Adam(v.params(), lr=1e-3)
            runtime["loss"] = loss_name
            runtime["optimizer"] = type(opt).__name__
            forward = wrap_ddp(case, v, device, runtime, sync)  # devices: N: DDP in a torchrun rank
            if v.compiled:  # the backward compiles on its first use: timed here, not left in first_iter_s
                compile_backward(v, lambda: loss_fn(forward(x).float(), y), opt, sync)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(forward(x).float(), y)
                v.backward(loss, opt)  # with a GradScaler for amp on CUDA
                sync(loss)  # the loss and the updated parameters stay alive until computed (torch_xla)

            context = contextlib.nullcontext

        def reset_peak():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

        def device_memory() -> dict:
            if device.type == "xla":
                return xla_memory(device, on_tpu=case.device.startswith("tpu"))
            if device.type != "cuda":
                return {
                    "device_peak_allocated_bytes": None,
                    "device_peak_reserved_bytes": None,
                    "device_memory_reason": f"{device.type} case: no device allocator (host RSS covers it)",
                }
            return {
                "device_peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
                "device_peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
                "device_memory_source": "torch.cuda.max_memory_allocated/reserved over warm-up and timed window",
            }

        def model_facts() -> dict:
            facts = {
                "params": sum(p.numel() for p in model.parameters()),
                "serialized_bytes": _serialized_bytes(model),
                "serialized_format": "torch.save(state_dict)",
            }
            was_training = model.training
            try:
                model.eval()
                facts["flops_per_sample"] = _flops_per_sample(model, x[:1])
                facts["flops_note"] = FLOPS_NOTE
            except Exception as e:  # an op FlopCounterMode cannot trace
                facts["flops_per_sample"] = None
                facts["flops_note"] = f"unavailable: {type(e).__name__}: {e}"
            finally:
                model.train(was_training)
            if case.mode == "train":  # what a train step really computes (hardware MFU uses it)
                n = min(case.batch_size, TRAIN_COUNT_SAMPLES)
                try:
                    facts["train_flops_per_sample"] = _train_flops_per_sample(model, x[:n], loss_fn, y[:n], v.params())
                    facts["train_flops_note"] = TRAIN_FLOPS_NOTE
                except Exception as e:  # an op FlopCounterMode cannot trace
                    facts["train_flops_per_sample"] = None
                    facts["train_flops_note"] = f"unavailable: {type(e).__name__}: {e}"
            facts.update(v.model_facts())  # nonzero_params; an int8 model's own saved size
            return facts

        cold_start = {"build_s": build_s, "compile_s": None, **v.cold_start}
        if device.type == "xla" and cold_start["compile_s"] is None:
            cold_start["compile_note"] = (
                "XLA compiles each new graph at its first execution: the first iteration's (first_iter_s)"
            )
        return Prepared(
            step=step,
            cold_start=cold_start,
            runtime=runtime,
            reset_peak_memory=reset_peak,
            device_memory=device_memory,
            model_facts=model_facts,
            context=context,
            fidelity=lambda: v.fidelity,
            inputs=(x, y if case.mode == "train" else None),  # a data: pipeline copies batches in
        )


BACKEND = TorchBackend()
