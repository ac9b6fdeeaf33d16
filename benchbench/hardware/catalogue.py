"""Hardware figures for a stored record: the device catalogue, its peaks, and what a
record's throughput means against them (achieved FLOP/s, MFU, samples/J, samples/$).

Pure: reads records, ``environment.json`` data and the catalogue file; imports no
framework. Every derived figure is ``None`` with a reason beside it when an input is
missing, never a guess.

The catalogue (``benchbench/hardware/devices.yaml``) lists accelerators with DENSE vendor
peaks per precision (not the 2:4-sparse figures), memory bandwidth, TDP and optional
prices. ``BENCHBENCH_DEVICES`` (a path, or several joined with ``os.pathsep``) adds or
replaces entries by ``id``. CPUs are not in it: :func:`estimate_cpu_peak` computes peaks
from ``/proc/cpuinfo`` (physical cores × clock × FLOP per cycle by the ISA flags: fp32 FMAs,
AMX tiles, AVX512_BF16/FP16, VNNI) and labels them as estimates. A ``devices: N`` case on
GPUs or TPUs is held against N × one device's peak and price.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from benchbench import yamlsrc
from benchbench.case import Case, case_label
from benchbench.errors import UserError

ENV_VAR = "BENCHBENCH_DEVICES"
# fp8 and fp4: the vendors' dense 8-bit and 4-bit float tensor rates (FP8 E4M3/E5M2; FP4 as
# NVFP4 on NVIDIA, MXFP4 on AMD), where they publish one
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8", "fp8", "fp4")
# train FLOPs ≈ 3 × forward: only a labelled fallback, where they were not counted (TensorFlow)
TRAIN_FLOPS_FACTOR = 3
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DeviceSpec:
    """One catalogue entry, in SI units (FLOP/s, bytes/s, W, USD)."""

    id: str
    name: str
    kind: str  # gpu | tpu | cpu
    match: tuple[str, ...]
    peak_flops: dict  # precision -> FLOP/s or None
    memory_bandwidth_bps: float | None
    tdp_w: float | None
    price_usd: float | None = None
    cloud_usd_per_hour: float | None = None
    source: str | None = None
    verified: object = None
    basis: str = "catalogue"  # catalogue | estimated (CPU from /proc/cpuinfo) | user file path
    note: str | None = None
    memory_bytes: float | None = None  # device memory capacity (memory_gb × 1e9 or memory_gib × 2**30)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _num(v, where: str):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserError(f"{where}: expected a number or null, got {v!r}")
    if v < 0:
        raise UserError(f"{where}: must not be negative, got {v!r}")
    return float(v)


# the keys an entry may have; anything else is a mistake (a misspelt key would be a silent null)
ENTRY_KEYS = ("id", "name", "kind", "match", "peak_tflops", "memory_bandwidth_gbs", "memory_gb", "memory_gib",
              "tdp_w", "price_usd", "cloud_usd_per_hour", "source", "verified", "note")  # fmt: skip
KINDS = ("gpu", "tpu", "cpu")


def _checked_fields(d: dict, where: str) -> dict:
    """The entry's keys, kind, memory capacity and ``verified``, checked: ``memory_gb`` (10^9
    bytes) or ``memory_gib`` (2^30 bytes), as the vendor prints it, not both; ``verified`` a
    sentence saying what was checked (or true/false in a user file), never a number or list."""
    unknown = sorted(set(d) - set(ENTRY_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; allowed: {list(ENTRY_KEYS)}")
    kind = str(d.get("kind", "gpu"))
    if kind not in KINDS:
        raise UserError(f"{where}: kind: {kind!r} is not one of {list(KINDS)}")
    if d.get("memory_gb") is not None and d.get("memory_gib") is not None:
        raise UserError(f"{where}: give memory_gb or memory_gib (the unit the vendor prints), not both")
    gb, gib = _num(d.get("memory_gb"), f"{where}: memory_gb"), _num(d.get("memory_gib"), f"{where}: memory_gib")
    memory = gb * 1e9 if gb is not None else gib * 2**30 if gib is not None else None
    verified = d.get("verified")
    if verified is not None and not isinstance(verified, (str, bool)):
        raise UserError(f"{where}: verified: expected a sentence saying what was checked, got {verified!r}")
    if isinstance(verified, str) and not verified.strip():
        raise UserError(f"{where}: verified: empty; say what was checked against the vendor's table, or 'no'")
    return {"kind": kind, "memory_bytes": memory, "verified": verified}


def _entry(d: dict, origin: str, basis: str) -> DeviceSpec:
    if not isinstance(d, dict):
        raise UserError(f"{origin}: each device must be a mapping, got {d!r}")
    for key in ("id", "name", "match", "peak_tflops"):
        if key not in d:
            raise UserError(f"{origin}: device {d.get('id', '?')!r}: missing key {key!r}")
    where = f"{origin}: device {d['id']!r}"
    checked = _checked_fields(d, where)
    match = d["match"] if isinstance(d["match"], list) else [d["match"]]
    for pattern in match:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise UserError(f"{where}: match {pattern!r} is not a regular expression ({e})") from None
    peaks = d["peak_tflops"] or {}
    unknown = set(peaks) - set(PRECISIONS)
    if unknown:
        raise UserError(f"{where}: peak_tflops: unknown precision(s) {sorted(unknown)}; allowed: {list(PRECISIONS)}")
    peak = {p: (None if peaks.get(p) is None else _num(peaks[p], f"{where}: peak_tflops.{p}") * 1e12)
            for p in PRECISIONS}  # fmt: skip
    bw = _num(d.get("memory_bandwidth_gbs"), f"{where}: memory_bandwidth_gbs")
    return DeviceSpec(
        id=str(d["id"]), name=str(d["name"]), kind=checked["kind"], match=tuple(match),
        peak_flops=peak, memory_bandwidth_bps=None if bw is None else bw * 1e9,
        tdp_w=_num(d.get("tdp_w"), f"{where}: tdp_w"), price_usd=_num(d.get("price_usd"), f"{where}: price_usd"),
        cloud_usd_per_hour=_num(d.get("cloud_usd_per_hour"), f"{where}: cloud_usd_per_hour"),
        source=d.get("source"), verified=checked["verified"], basis=basis, note=d.get("note"),
        memory_bytes=checked["memory_bytes"],
    )  # fmt: skip


def _parse(text: str, origin: str, basis: str) -> list[DeviceSpec]:
    """A catalogue file's entries; a mistake is a UserError naming ``origin:LINE`` (YAML)."""
    src = None
    try:
        if origin.endswith(".json"):
            data = json.loads(text)
        else:  # yamlsrc: safe, and each entry's line for the error
            src = yamlsrc.load(text)
            data = src.data
    except json.JSONDecodeError as e:
        raise UserError(f"{origin}:{e.lineno}: not a valid device catalogue ({e.msg})") from None
    except yamlsrc.YamlSyntaxError as e:
        raise UserError(f"{origin}:{e.line or 1}: not a valid device catalogue ({e})") from None
    if src is not None and src.problems:
        raise UserError(f"{origin}:{src.problems[0].line}: {src.problems[0].message}")
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        line = f":{src.line_of(('devices',))}" if src is not None else ""
        raise UserError(f"{origin}{line}: a device catalogue is a mapping with a 'devices:' list")
    return [_entry(d, f"{origin}:{src.line_of(('devices', i))}" if src is not None else origin, basis)
            for i, d in enumerate(data["devices"])]  # fmt: skip


def builtin_catalogue_text() -> str:
    return resources.files("benchbench").joinpath("hardware/devices.yaml").read_text(encoding="utf-8")


def load_catalogue(extra: list[str | os.PathLike] | None = None, env: dict | None = None) -> list[DeviceSpec]:
    """The built-in catalogue, then the files named by ``BENCHBENCH_DEVICES`` and ``extra``
    in order; a later entry with the same ``id`` replaces an earlier one."""
    env = os.environ if env is None else env
    devices = {d.id: d for d in _parse(builtin_catalogue_text(), "benchbench/hardware/devices.yaml", "catalogue")}
    paths = [p for p in (env.get(ENV_VAR) or "").split(os.pathsep) if p] + [str(p) for p in extra or []]
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{path}: device catalogue file not found ({ENV_VAR} or --devices)")
        for d in _parse(p.read_text(encoding="utf-8"), str(p), f"user file {p}"):
            devices[d.id] = d
    return list(devices.values())


def match_device(name: str | None, catalogue: list[DeviceSpec]) -> tuple[DeviceSpec | None, str | None]:
    """The catalogue entry whose ``match`` patterns find ``name``; (None, reason) when none
    or more than one does — an ambiguous name is "unknown", never a pick."""
    if not name:
        return None, "no device name in the record"
    hits = [d for d in catalogue if any(re.search(p, name, re.IGNORECASE) for p in d.match)]
    if not hits:
        return None, f"{name!r} is not in the device catalogue ({UNKNOWN}); add it via {ENV_VAR}"
    if len(hits) > 1:
        return None, f"{name!r} matches several catalogue entries ({', '.join(d.id for d in hits)}): {UNKNOWN}"
    return hits[0], None


# --- CPUs: an estimate, labelled as one ----------------------------------------------------------

# fp32 lanes of one FMA instruction by the widest FMA-capable ISA in the flags.
_SIMD = (("avx512f", 16, "AVX-512"), ("avx2", 8, "AVX2"), ("sse2", 4, "SSE2"))
# AMX: one tile unit (TMUL) per core. Intel's stated rate: 1024 bf16/fp16 FLOP and 2048 int8 OP
# per cycle per core (a TDPBF16PS is 16×16×32 multiply-adds, a TDPBSSD 16×16×64, each issued
# once every 16 cycles).
AMX_PER_CYCLE = {"bf16": 1024, "fp16": 1024, "int8": 2048}


def _lower_precisions(flags: set[str], isa: str, lanes: int, fp32_cycle: float, fma_units: int) -> dict:
    """(per-core per-cycle rate, how) for bf16, fp16 and int8 from the ISA flags, on the same
    assumptions as the fp32 figure (``fma_units`` vector pipes, max clock)."""
    out: dict = {}
    avx512 = isa == "AVX-512"
    # bf16
    if "amx_bf16" in flags:
        out["bf16"] = (AMX_PER_CYCLE["bf16"], "AMX-BF16 tiles: 1024 FLOP/cycle/core (TDPBF16PS, 16×16×32 "
                                              "multiply-adds per 16 cycles, one tile unit per core)")  # fmt: skip
    elif "avx512_bf16" in flags and avx512:
        out["bf16"] = (2 * fp32_cycle, f"AVX512_BF16 VDPBF16PS: two bf16 products per fp32 lane, "
                                       f"2 × fp32 = {2 * fp32_cycle:g} FLOP/cycle/core")  # fmt: skip
    else:
        out["bf16"] = (fp32_cycle, f"no bf16 arithmetic in the ISA: bf16 is converted and computed by the fp32 "
                                   f"FMAs ({fp32_cycle:g} FLOP/cycle/core)")  # fmt: skip
    # fp16
    if "amx_fp16" in flags:
        out["fp16"] = (AMX_PER_CYCLE["fp16"], "AMX-FP16 tiles: 1024 FLOP/cycle/core (TDPFP16PS)")
    elif "avx512_fp16" in flags and avx512:
        out["fp16"] = (2 * fp32_cycle, f"AVX512-FP16 FMAs: 32 fp16 lanes, 2 × fp32 = {2 * fp32_cycle:g} "
                                       f"FLOP/cycle/core")  # fmt: skip
    else:
        out["fp16"] = (fp32_cycle, f"no fp16 arithmetic in the ISA: fp16 is converted and computed by the fp32 "
                                   f"FMAs ({fp32_cycle:g} FLOP/cycle/core)")  # fmt: skip
    # int8 (an OP is one multiply or one add, as for the FLOP figures)
    if "amx_int8" in flags:
        out["int8"] = (AMX_PER_CYCLE["int8"], "AMX-INT8 tiles: 2048 OP/cycle/core (TDPBSSD, 16×16×64 "
                                              "multiply-adds per 16 cycles, one tile unit per core)")  # fmt: skip
    elif "avx512_vnni" in flags and avx512:
        rate = 16 * 4 * 2 * fma_units
        out["int8"] = (rate, f"AVX512-VNNI VPDPBUSD: 64 int8 multiply-adds per instruction × {fma_units} units "
                             f"= {rate} OP/cycle/core")  # fmt: skip
    elif "avx_vnni" in flags:
        rate = 8 * 4 * 2 * fma_units
        out["int8"] = (rate, f"AVX-VNNI VPDPBUSD (256-bit): 32 int8 multiply-adds per instruction × {fma_units} "
                             f"units = {rate} OP/cycle/core")  # fmt: skip
    elif lanes >= 8 and ("avx2" in flags or "avx512bw" in flags):
        width = 16 if ("avx512bw" in flags and avx512) else 8
        rate = width * 4 * 2 * fma_units / 3
        out["int8"] = (rate, f"no VNNI: VPMADDUBSW + VPMADDWD + VPADDD, {width * 4} int8 multiply-adds per three "
                             f"instructions × {fma_units} units = {rate:.1f} OP/cycle/core")  # fmt: skip
    return out


def estimate_cpu_peak(cpuinfo: str, cores: int | None, max_mhz: float | None = None,
                      fma_units: int = 2, cores_basis: str | None = None) -> tuple[dict | None, str]:  # fmt: skip
    """Peaks for ``cores`` physical cores from the text of ``/proc/cpuinfo``: cores × clock ×
    FLOP per cycle and core. fp32: lanes × 2 (an FMA is two FLOPs) × ``fma_units``. The
    number of FMA pipes per core is not in the flags: 2 is assumed, which makes this an
    UPPER bound (many cores issue AVX-512 at half rate, and AVX-512/AMX code runs below the
    maximum clock). bf16, fp16 and int8 from the ISA flags, on the same assumptions: AMX
    tiles (Intel's stated 1024 bf16/fp16 FLOP and 2048 int8 OP per cycle per core),
    AVX512_BF16 / AVX512-FP16 (2 × fp32), AVX512-VNNI / AVX-VNNI (VPDPBUSD), else AVX2's
    three-instruction int8 multiply-add; a precision the ISA has no arithmetic for runs at
    the fp32 rate (converted). ``max_mhz`` (cpufreq's cpuinfo_max_freq) beats the current
    ``cpu MHz``. Returns (peaks or None, the basis or the reason)."""
    flags: set[str] = set()
    mhz = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
    if not cores:
        return None, "CPU core count unknown"
    clock_src = "cpufreq max" if max_mhz else "current 'cpu MHz' in /proc/cpuinfo"
    mhz = max_mhz or mhz
    if not mhz:
        return None, "CPU clock unknown (no cpufreq and no 'cpu MHz' in /proc/cpuinfo)"
    has_fma = "fma" in flags or "avx512f" in flags
    simd = next(((lanes, isa) for flag, lanes, isa in _SIMD if flag in flags and (has_fma or flag == "sse2")), None)
    if simd is None:
        return None, "no x86 SIMD flags in /proc/cpuinfo (non-x86 CPU): peak unknown"
    lanes, isa = simd
    per_cycle = lanes * (2 if has_fma else 1) * fma_units
    hz = cores * mhz * 1e6
    cores_text = cores_basis or f"{cores} cores"
    basis = (f"estimated from /proc/cpuinfo: {cores_text} × {mhz / 1000:.2f} GHz ({clock_src}) × {per_cycle} "
             f"fp32 FLOP/cycle ({isa}{' FMA' if has_fma else ''}, {lanes} lanes, {fma_units} units assumed)")  # fmt: skip
    peaks = {p: None for p in PRECISIONS}
    peaks["fp32"] = hz * per_cycle
    for prec, (rate, how) in _lower_precisions(flags, isa, lanes, per_cycle, fma_units).items():
        peaks[prec] = hz * rate
        basis += f"; {prec}: {how}"
    basis += "; every figure an upper bound (estimates from the ISA flags, at that clock)"
    return peaks, basis


def physical_cores(cpus=None, sysfs: str = "/sys/devices/system/cpu") -> tuple[int | None, str]:
    """The physical cores among ``cpus`` (default: the CPUs this process may run on): SMT
    siblings (hyperthreads) of one core count once. From sysfs topology (each CPU's
    ``core_cpus_list``, or ``thread_siblings_list`` on older kernels); else psutil's
    physical count scaled to the usable share. Returns (count or None, how it was counted)."""
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 0)
    cpus = sorted(cpus)
    if not cpus:
        return None, "no usable CPU"
    cores = set()
    for c in cpus:
        siblings = None
        for name in ("core_cpus_list", "thread_siblings_list"):
            try:
                siblings = Path(sysfs, f"cpu{c}", "topology", name).read_text().strip()
                break
            except OSError:
                continue
        if siblings is None:
            break
        cores.add(siblings)
    else:
        n = len(cores)
        return n, (f"{n} physical core{'s' if n != 1 else ''} of the {len(cpus)} logical CPUs this process may use "
                   f"(SMT siblings counted once; sysfs topology)")  # fmt: skip
    import psutil

    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    if not physical or not logical:
        return None, "physical core count unknown (no sysfs topology, psutil gives none)"
    n = max(1, round(len(cpus) * physical / logical))
    return n, (f"{n} physical cores: the {len(cpus)} usable logical CPUs × {physical} physical / {logical} logical "
               f"(psutil; no sysfs topology)")  # fmt: skip


def local_cpu_spec(cores: int | None = None, cpuinfo_path: str = "/proc/cpuinfo",
                   sysfs: str = "/sys/devices/system/cpu", cpus=None) -> tuple[DeviceSpec | None, str]:  # fmt: skip
    """This machine's CPU as an estimated DeviceSpec (see :func:`estimate_cpu_peak`), for its
    physical cores that this process may use (:func:`physical_cores`) unless ``cores`` is given."""
    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8")
    except OSError as e:
        return None, f"{cpuinfo_path} unreadable ({e})"
    max_mhz = None
    try:
        max_mhz = int(Path(sysfs, "cpu0", "cpufreq", "cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    how = None
    if cores is None:
        cores, how = physical_cores(cpus, sysfs)
        if cores is None:
            return None, how
    peaks, basis = estimate_cpu_peak(text, cores, max_mhz, cores_basis=how)
    if peaks is None:
        return None, basis
    from benchbench.hardware.environment import cpu_model

    return DeviceSpec(id="cpu-estimated", name=f"{cpu_model() or 'CPU'} (estimated peak)", kind="cpu", match=(), peak_flops=peaks,
                      memory_bandwidth_bps=None, tdp_w=None, source="/proc/cpuinfo", verified=False,
                      basis="estimated", note=basis), basis  # fmt: skip


# --- resolving a record's device ------------------------------------------------------------------


def device_kind(record: dict) -> str:
    """gpu, tpu or cpu: which catalogue entries a record may match."""
    dev = str((record.get("case") or {}).get("device", "cpu"))
    return "gpu" if dev.startswith("cuda") else "tpu" if dev.startswith("tpu") else "cpu"


def device_name(record: dict, environment: dict | None = None) -> str | None:
    """The name to match: the framework's device name; for a TPU case the accelerator
    type (``v5litepod-8`` …) from the record's runtime or environment.json, if stored."""
    runtime = record.get("runtime") or {}
    if device_kind(record) == "tpu":  # the torch backend records the host CPU's model there
        return runtime.get("tpu_accelerator_type") or ((environment or {}).get("tpu") or {}).get("tpu_accelerator_type")
    return runtime.get("device_name")


def resolve(record: dict, catalogue: list[DeviceSpec], environment: dict | None = None,
            local_cpu: DeviceSpec | None = None, local_host: str | None = None) -> tuple[DeviceSpec | None, str | None]:  # fmt: skip
    """The device a record ran on: a catalogue entry by name (CPUs may be added to the
    catalogue by a user file), else for a CPU case the local estimate ``local_cpu`` when the
    run's ``environment`` says it ran on this host with this CPU model, else (None, why)."""
    name = device_name(record, environment)
    kind = device_kind(record)
    spec, why = match_device(name, [d for d in catalogue if d.kind == kind])
    if spec is not None:
        return spec, None
    if kind != "cpu":
        return None, why
    if local_cpu is None:
        return None, f"CPU {name!r}: not in the catalogue and no CPU estimate given ({UNKNOWN})"
    env = environment or {}
    same = (env.get("host") is not None and env.get("host") == local_host
            and (env.get("cpu") or {}).get("model") == name)  # fmt: skip
    if not same:
        return None, f"CPU {name!r}: not in the catalogue; ran on another host, so its peak cannot be estimated here"
    return local_cpu, None


# variants whose arithmetic is the fp32 one (the layout, the compiler, which weights train or
# how many of them are non-zero change; the precision does not)
FP32_VARIANTS = ("fp32", "channels_last", "compile", "torchscript", "eager", "xla", "prune", "channel_prune",
                 "frozen_backbone", "finetune")  # fmt: skip
INT8_VARIANTS = ("int8", "int8_static", "tflite_int8")  # every convolution and matmul in int8
NO_SINGLE_PRECISION = {
    "int8_dynamic": "int8_dynamic quantizes only the Linear layers (the rest runs in fp32): no single peak applies",
    "tflite_dynamic": "tflite_dynamic keeps activations in float (int8 weights, float compute): no single peak applies",
    "sparse24": "sparse24 runs 2:4-sparse fp16 kernels: the catalogue's dense peaks do not apply",
}


def precision(record: dict) -> tuple[str | None, str | None]:
    """The precision whose peak a record is held against: fp32 for every variant whose
    arithmetic is fp32 (the transfer variants, layouts, compilers, pruning), turned into tf32
    when the record says TF32 math was on; the cast or autocast dtype; int8 for fully
    quantized models."""
    variant = str((record.get("case") or {}).get("variant"))
    base = variant.partition(":")[0]
    runtime = record.get("runtime") or {}
    modes = runtime.get("math_modes") or {}
    if base in FP32_VARIANTS:
        if (modes.get("cuda.matmul.allow_tf32") or modes.get("cudnn.allow_tf32")
                or modes.get("tensor_float_32_execution")) and runtime.get("device_type") not in (None, "cpu"):  # fmt: skip
            return "tf32", None
        return "fp32", None
    if base in ("bf16", "fp16", "tf32", "fp8", "fp4"):
        return base, None
    if base in INT8_VARIANTS:
        return "int8", None
    if base in ("amp", "amp_bf16"):
        dtype = str(runtime.get("autocast") or runtime.get("autocast_dtype") or runtime.get("dtype") or "")
        if "bfloat16" in dtype or "bf16" in dtype:
            return "bf16", None
        if "float16" in dtype or "fp16" in dtype:
            return "fp16", None
        if base == "amp_bf16":
            return "bf16", None
        return None, "amp case without its autocast dtype in the record"
    if base in NO_SINGLE_PRECISION:
        return None, NO_SINGLE_PRECISION[base]
    return None, f"no peak precision known for variant {variant!r}"


# --- derived figures ------------------------------------------------------------------------------


@dataclass
class Pricing:
    """How a sample is priced: the purchase amortised over ``lifetime_years`` of use at
    ``utilisation`` plus energy at ``usd_per_kwh``; or the cloud's $/hour when known."""

    lifetime_years: float = 3.0
    usd_per_kwh: float = 0.15
    utilisation: float = 1.0  # share of the lifetime spent running this workload
    overrides: dict = field(default_factory=dict)  # device id -> {price_usd, cloud_usd_per_hour}

    def describe(self) -> str:
        return (f"purchase over {self.lifetime_years:g} years at {self.utilisation:.0%} use + energy at "
                f"${self.usd_per_kwh:g}/kWh; or cloud $/hour")  # fmt: skip


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def derive(record: dict, spec: DeviceSpec | None, device_reason: str | None = None,
           pricing: Pricing | None = None) -> dict:  # fmt: skip
    """Per-record hardware figures; each is None with ``<name>_reason`` when an input is
    missing. ``record`` is a Record as a dict (``Record.to_dict()``)."""
    pricing = pricing or Pricing()
    out: dict = {"device_id": spec.id if spec else None, "device": spec.name if spec else UNKNOWN,
                 "device_basis": spec.basis if spec else None,
                 "device_reason": None if spec else (device_reason or UNKNOWN)}  # fmt: skip
    if record.get("status") != "ok":
        reason = f"case {record.get('status')}"
        for k in ("achieved_flops", "mfu", "samples_per_j", "samples_per_usd", "arithmetic_intensity"):
            out[k], out[f"{k}_reason"] = None, reason
        return out
    throughput = _get(record, "stats", "throughput")
    flops, flops_basis, flops_why = train_aware_flops(record)
    forward = _get(record, "model", "flops_per_sample")
    out["throughput"] = throughput
    out["flops_per_sample"] = flops
    out["flops_basis"] = flops_basis
    out["flops_factor"] = flops / forward if (flops and forward) else None
    count, count_note = device_count(record)
    out["device_count"] = count
    if count_note:
        out["device_count_note"] = count_note
    # achieved FLOP/s
    if not flops:
        out["achieved_flops"], out["achieved_flops_reason"] = None, flops_why
    elif not throughput:
        out["achieved_flops"], out["achieved_flops_reason"] = None, "no throughput in the record"
    else:
        out["achieved_flops"] = flops * throughput
    # MFU: against the peak of every device the case ran on
    prec, prec_reason = precision(record)
    out["precision"] = prec
    one = spec.peak_flops.get(prec) if (spec and prec) else None
    peak = one * count if one else None
    out["peak_flops"] = peak
    if out["achieved_flops"] is None:
        out["mfu"], out["mfu_reason"] = None, out["achieved_flops_reason"]
    elif spec is None:
        out["mfu"], out["mfu_reason"] = None, f"device {UNKNOWN}: {device_reason}"
    elif prec is None:
        out["mfu"], out["mfu_reason"] = None, prec_reason
    elif not peak:
        out["mfu"], out["mfu_reason"] = None, f"{spec.name}: no {prec} peak in the catalogue"
    else:
        out["mfu"] = out["achieved_flops"] / peak
        notes = [f"{count} × {spec.name}'s {prec} peak"] if count > 1 else []
        if spec.basis == "estimated":
            notes.append(f"against an estimated peak ({spec.note})")
        if notes:
            out["mfu_note"] = "; ".join(notes)
    # arithmetic intensity: FLOPs per byte of the device's memory traffic is not measured;
    # the roofline uses the ridge point only. Kept None with the reason.
    out["arithmetic_intensity"] = None
    out["arithmetic_intensity_reason"] = "memory traffic is not measured (no profiler counters in the record)"
    # samples/J
    energy = record.get("energy") or {}
    primary = energy.get("primary")
    dom = energy.get(primary) if primary else None
    if isinstance(dom, dict) and dom.get("samples_per_j"):
        out["samples_per_j"], out["energy_source"] = dom["samples_per_j"], dom.get("source")
        out["avg_w"] = dom.get("avg_w")
        if dom.get("note"):  # a MIG slice: the whole GPU's energy; N GPUs: their sum
            out["energy_note"] = dom["note"]
    else:
        why = (dom or {}).get("reason") if isinstance(dom, dict) else None
        out["samples_per_j"] = None
        out["samples_per_j_reason"] = why or "no energy reading for the case's device in the record"
        out["avg_w"] = None
    # samples/$: every device's price (and TDP, where no power was measured)
    out.update(_samples_per_usd(throughput, out.get("avg_w"), spec, pricing, count))
    return out


def device_count(record: dict) -> tuple[int, str | None]:
    """How many catalogue devices a record ran on: ``devices: N`` on GPUs or TPUs is N
    devices (N × the peak, the price, the TDP); on a CPU the N ranks or replicas share the
    one CPU whose peak is already all its cores'."""
    n = int((record.get("case") or {}).get("devices") or 1)
    if n <= 1:
        return 1, None
    if device_kind(record) == "cpu":
        return 1, f"devices: {n} on one CPU: the ranks share its cores, so its peak and price count once"
    return n, f"devices: {n}: {n} × one device's peak and price"


def train_aware_flops(record: dict) -> tuple[float | None, str | None, str | None]:
    """(FLOPs per sample of what one step really computes, its basis, why none). Inference:
    the forward count. Train: the counted forward + backward (``model.train_flops_per_sample``,
    only the parameters that require grad are differentiated); where the backend did not count
    it (TensorFlow), the convention 3 × forward as a labelled fallback — except for a frozen
    backbone, whose backward is the head's alone: no figure rather than a 3× wrong one."""
    model = record.get("model") or {}
    case = record.get("case") or {}
    forward = model.get("flops_per_sample")
    if not forward:
        return None, None, "no FLOPs per sample in the record"
    if case.get("mode") != "train":
        return forward, "forward FLOPs per sample (counted)", None
    counted = model.get("train_flops_per_sample")
    if counted:
        return counted, model.get("train_flops_note") or "forward + backward FLOPs per sample (counted)", None
    base = str(case.get("variant") or "").partition(":")[0]
    if base == "frozen_backbone":
        why = model.get("train_flops_note") or "the backend did not count them"
        return None, None, (f"frozen_backbone: only the head runs backward, so 3 × forward would overstate the "
                            f"train FLOPs, and forward + backward were not counted ({why})")  # fmt: skip
    return forward * TRAIN_FLOPS_FACTOR, (
        f"fallback: {TRAIN_FLOPS_FACTOR} × forward FLOPs (backward ≈ 2 × forward, the usual convention), "
        f"not counted for this record"), None  # fmt: skip


def _samples_per_usd(throughput, avg_w, spec: DeviceSpec | None, pricing: Pricing, count: int = 1) -> dict:
    if not throughput:
        return {"samples_per_usd": None, "samples_per_usd_reason": "no throughput"}
    if spec is None:
        return {"samples_per_usd": None, "samples_per_usd_reason": f"device {UNKNOWN}: no price"}
    prices = {"price_usd": spec.price_usd, "cloud_usd_per_hour": spec.cloud_usd_per_hour,
              **pricing.overrides.get(spec.id, {})}  # fmt: skip
    times = f"{count} × " if count > 1 else ""
    if prices.get("cloud_usd_per_hour"):
        usd_per_s = count * prices["cloud_usd_per_hour"] / 3600
        return {"samples_per_usd": throughput / usd_per_s,
                "samples_per_usd_basis": f"{times}cloud ${prices['cloud_usd_per_hour']:g}/hour"}  # fmt: skip
    if prices.get("price_usd"):
        # measured power is already every device's (summed); the TDP is one device's
        watts, wsrc = (avg_w, "measured") if avg_w else ((spec.tdp_w or 0) * count, f"{times}TDP")
        if not watts:
            return {"samples_per_usd": None, "samples_per_usd_reason": "no measured power and no TDP"}
        lifetime_s = pricing.lifetime_years * 365.25 * 86400 * pricing.utilisation
        usd_per_s = count * prices["price_usd"] / lifetime_s + watts * pricing.usd_per_kwh / 3.6e6
        return {"samples_per_usd": throughput / usd_per_s,
                "samples_per_usd_basis": f"{times}${prices['price_usd']:g} over {pricing.lifetime_years:g} years at "
                                         f"{pricing.utilisation:.0%} use + {watts:.0f} W ({wsrc}) at "
                                         f"${pricing.usd_per_kwh:g}/kWh"}  # fmt: skip
    return {"samples_per_usd": None, "samples_per_usd_reason": f"{spec.name}: no price in the catalogue"}


def ridge_point(spec: DeviceSpec, prec: str) -> float | None:
    """FLOPs per byte where the roofline turns from memory- to compute-bound."""
    peak = spec.peak_flops.get(prec)
    if not peak or not spec.memory_bandwidth_bps:
        return None
    return peak / spec.memory_bandwidth_bps


def pair_key(case: dict) -> str:
    """Everything that defines a case except the device it ran on (its axes, input shape,
    threads, optimizer, device count, data pipeline: ``Case.identity`` without ``device``):
    how the same case is found on another machine."""
    try:
        ident = Case.from_dict(case).identity()
    except (KeyError, TypeError, ValueError):  # a hand-made or partial record: its own fields
        ident = {k: v for k, v in case.items() if k not in ("settings", "case_id")}
    ident.pop("device", None)
    return json.dumps(ident, sort_keys=True, default=str)


def derive_runs(runs, catalogue: list[DeviceSpec] | None = None, pricing: Pricing | None = None,
                local_cpu: DeviceSpec | None = None, local_host: str | None = None) -> list[dict]:  # fmt: skip
    """``derive`` for every record of ``runs`` (report.data.Run-like: ``records``,
    ``environment``, ``path``): a flat dict per record with the case axes and run name."""
    catalogue = load_catalogue() if catalogue is None else catalogue
    rows = []
    for run in runs:
        for rec in run.records:
            d = rec.to_dict() if hasattr(rec, "to_dict") else rec
            spec, why = resolve(d, catalogue, run.environment, local_cpu, local_host)
            row = {k: v for k, v in (d.get("case") or {}).items() if k != "settings"}
            row["status"] = d.get("status")
            row["case_key"] = pair_key(d.get("case") or {})
            row["case_label"] = case_label(d.get("case") or {})  # "device" below is the catalogue's name
            row["run"] = Path(run.path).name
            row["host"] = (run.environment or {}).get("host")
            row.update(derive(d, spec, why, pricing))
            rows.append(row)
    return rows
