"""The PyTorch backend. Imported only in worker and probe processes."""

from __future__ import annotations

import contextlib
import io
import os
import time

import torch

from benchbench.case import Case
from benchbench.framework.base import Prepared, Skip
from benchbench.hardware.environment import cpu_model
from benchbench.models import torch_models

FLOPS_NOTE = (
    "forward pass per sample; FLOPs = 2 × multiply-accumulates; counted by "
    "torch.utils.flop_counter.FlopCounterMode (convolutions and matmuls, attention's included: "
    "counted with the fused attention kernels off)"
)


def _versions() -> dict:
    out = {"torch": torch.__version__}
    for pkg in ("torchvision", "timm", "numpy"):
        try:
            out[pkg] = __import__(pkg).__version__
        except Exception:  # not installed: not a version
            out[pkg] = None
    out["cuda"] = torch.version.cuda
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return out


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


def _sync_fn(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    if device.type == "xla":
        import torch_xla

        return torch_xla.sync
    return lambda: None  # eager CPU ops have finished when they return


def _set_fp32_math() -> dict:
    """fp32 means fp32: TF32 and reduced-precision reductions off; say which modes were on."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False
    return {
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "reduced_precision_reduction": False,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
    }


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
        forward(v.x)  # compiles, as the variant's own first call did (forward, gradients on)
        sync()
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

    def profile(self, prepared: Prepared, trace_path) -> dict:
        with prepared.context():
            return profile_window(prepared.step, prepared.runtime.get("device_type", "cpu"), trace_path)

    def probe(self) -> dict:
        return {
            "framework": "torch",
            "versions": _versions(),
            "devices": {"cpu": {"available": True, "name": cpu_model()}, "cuda": _cuda_devices(), "tpu": _tpu()},
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
        if kind == "tpu":
            info = _tpu()
            if not info["available"]:
                raise Skip(info["reason"])
            import torch_xla

            return torch_xla.device()
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
        math_modes = _set_fp32_math()
        torch.manual_seed(case.settings.seed)
        gen = torch.Generator().manual_seed(case.settings.seed)

        t0 = time.perf_counter()
        model = torch_models.build(case.model, case.input_shape).to(device)
        sync = _sync_fn(device)
        sync()
        build_s = time.perf_counter() - t0

        x = torch.randn((case.batch_size, *case.input_shape), generator=gen).to(device)
        runtime = {
            "framework": "torch",
            "versions": _versions(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
            "device_type": device.type,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "math_modes": math_modes,
            "dtype": "float32",
            "input_shape": [case.batch_size, *case.input_shape],
            "data_layout": "NCHW" if len(case.input_shape) == 3 else "NC",
        }
        if device.type == "cuda":
            runtime["device_uuid"] = str(torch.cuda.get_device_properties(device).uuid)
        v = torch_variants.apply(case, model, x, device, sync)  # the variant; fidelity and compile_s, untimed
        model, x = v.model, v.x
        runtime.update(v.runtime)

        if case.mode == "inference":
            model.eval()

            def step():
                v.call(x)
                sync()

            context = torch.inference_mode
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

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(forward(x).float(), y)
                v.backward(loss, opt)  # with a GradScaler for amp on CUDA
                sync()

            context = contextlib.nullcontext

        def reset_peak():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

        def device_memory() -> dict:
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
            try:
                was_training = model.training
                model.eval()
                facts["flops_per_sample"] = _flops_per_sample(model, x[:1])
                facts["flops_note"] = FLOPS_NOTE
                model.train(was_training)
            except Exception as e:  # an op FlopCounterMode cannot trace
                facts["flops_per_sample"] = None
                facts["flops_note"] = f"unavailable: {type(e).__name__}: {e}"
            facts.update(v.model_facts())  # nonzero_params; an int8 model's own saved size
            return facts

        return Prepared(
            step=step,
            cold_start={"build_s": build_s, "compile_s": None, **v.cold_start},
            runtime=runtime,
            reset_peak_memory=reset_peak,
            device_memory=device_memory,
            model_facts=model_facts,
            context=context,
            fidelity=lambda: v.fidelity,
            inputs=(x, y if case.mode == "train" else None),  # a data: pipeline copies batches in
        )


BACKEND = TorchBackend()
