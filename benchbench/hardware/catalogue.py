"""Hardware figures for a stored record: the device catalogue, its peaks, and what a
record's throughput means against them (achieved FLOP/s, MFU, samples/J, samples/$).

Pure: reads records, ``environment.json`` data and the catalogue file; imports no
framework. Every derived figure is ``None`` with a reason beside it when an input is
missing, never a guess.

The catalogue (``benchbench/hardware/devices.yaml``) lists accelerators with DENSE vendor
peaks per precision (not the 2:4-sparse figures), memory bandwidth, TDP and optional
prices. ``BENCHBENCH_DEVICES`` (a path, or several joined with ``os.pathsep``) adds or
replaces entries by ``id``. CPUs are not in it: :func:`estimate_cpu_peak` computes a peak
from ``/proc/cpuinfo`` (cores × clock × SIMD FMA width) and labels it as an estimate.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from benchbench import yamlsrc
from benchbench.errors import UserError

ENV_VAR = "BENCHBENCH_DEVICES"
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8")
TRAIN_FLOPS_FACTOR = 3  # forward + backward (≈ 2 × forward): the usual MFU convention
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


def _entry(d: dict, origin: str, basis: str) -> DeviceSpec:
    if not isinstance(d, dict):
        raise UserError(f"{origin}: each device must be a mapping, got {d!r}")
    for key in ("id", "name", "match", "peak_tflops"):
        if key not in d:
            raise UserError(f"{origin}: device {d.get('id', '?')!r}: missing key {key!r}")
    where = f"{origin}: device {d['id']!r}"
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
        id=str(d["id"]), name=str(d["name"]), kind=str(d.get("kind", "gpu")), match=tuple(match),
        peak_flops=peak, memory_bandwidth_bps=None if bw is None else bw * 1e9,
        tdp_w=_num(d.get("tdp_w"), f"{where}: tdp_w"), price_usd=_num(d.get("price_usd"), f"{where}: price_usd"),
        cloud_usd_per_hour=_num(d.get("cloud_usd_per_hour"), f"{where}: cloud_usd_per_hour"),
        source=d.get("source"), verified=d.get("verified"), basis=basis, note=d.get("note"),
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


def estimate_cpu_peak(cpuinfo: str, cores: int | None, max_mhz: float | None = None,
                      fma_units: int = 2) -> tuple[dict | None, str]:  # fmt: skip
    """An fp32 peak for ``cores`` cores from the text of ``/proc/cpuinfo``: cores × clock ×
    lanes × 2 (an FMA is two FLOPs) × ``fma_units``. The number of FMA pipes per core is
    not in the flags: 2 is assumed, which makes this an UPPER bound (many cores issue
    AVX-512 at half rate). ``max_mhz`` (cpufreq's cpuinfo_max_freq) beats the current
    ``cpu MHz``. With ``avx512_bf16`` (VDPBF16PS: two bf16 products per fp32 lane, four
    FLOPs per lane) the bf16 peak is twice the fp32 one, on the same assumptions; a CPU
    with AMX has no bf16 estimate (its tile unit is not a SIMD lane count), nor does
    one without either. Returns (peaks or None, the basis or the reason)."""
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
    peak = cores * mhz * 1e6 * per_cycle
    basis = (f"estimated from /proc/cpuinfo: {cores} cores × {mhz / 1000:.2f} GHz ({clock_src}) × {per_cycle} "
             f"fp32 FLOP/cycle ({isa}{' FMA' if has_fma else ''}, {lanes} lanes, {fma_units} units assumed): "
             f"an upper bound")  # fmt: skip
    peaks = {p: None for p in PRECISIONS}
    peaks["fp32"] = peak
    if "avx512_bf16" in flags and "amx_bf16" not in flags and isa == "AVX-512":
        peaks["bf16"] = 2 * peak
        basis += "; bf16 = 2 × fp32 (AVX512_BF16 VDPBF16PS, same assumptions)"
    return peaks, basis


def local_cpu_spec(cores: int | None = None) -> tuple[DeviceSpec | None, str]:
    """This machine's CPU as an estimated DeviceSpec (see :func:`estimate_cpu_peak`)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError as e:
        return None, f"/proc/cpuinfo unreadable ({e})"
    max_mhz = None
    try:
        max_mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    peaks, basis = estimate_cpu_peak(text, cores, max_mhz)
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


def precision(record: dict) -> tuple[str | None, str | None]:
    """The precision whose peak a record is held against: the variant, with fp32 turned into
    tf32 when the record says TF32 math was on."""
    variant = (record.get("case") or {}).get("variant")
    runtime = record.get("runtime") or {}
    modes = runtime.get("math_modes") or {}
    if variant == "fp32":
        if modes.get("cuda.matmul.allow_tf32") or modes.get("cudnn.allow_tf32"):
            return "tf32", None
        return "fp32", None
    if variant in ("bf16", "fp16", "int8", "tf32"):
        return variant, None
    if variant == "amp":
        dtype = str(runtime.get("autocast_dtype") or runtime.get("dtype") or "")
        if "bfloat16" in dtype or "bf16" in dtype:
            return "bf16", None
        if "float16" in dtype or "fp16" in dtype:
            return "fp16", None
        return None, "amp case without its autocast dtype in the record"
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
    case = record.get("case") or {}
    throughput = _get(record, "stats", "throughput")
    flops = _get(record, "model", "flops_per_sample")
    factor = TRAIN_FLOPS_FACTOR if case.get("mode") == "train" else 1
    out["throughput"] = throughput
    out["flops_factor"] = factor
    # achieved FLOP/s
    if not flops:
        out["achieved_flops"], out["achieved_flops_reason"] = None, "no FLOPs per sample in the record"
    elif not throughput:
        out["achieved_flops"], out["achieved_flops_reason"] = None, "no throughput in the record"
    else:
        out["achieved_flops"] = flops * factor * throughput
    # MFU
    prec, prec_reason = precision(record)
    out["precision"] = prec
    peak = spec.peak_flops.get(prec) if (spec and prec) else None
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
        if spec.basis == "estimated":
            out["mfu_note"] = f"against an estimated peak ({spec.note})"
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
    else:
        why = (dom or {}).get("reason") if isinstance(dom, dict) else None
        out["samples_per_j"] = None
        out["samples_per_j_reason"] = why or "no energy reading for the case's device in the record"
        out["avg_w"] = None
    # samples/$
    out.update(_samples_per_usd(throughput, out.get("avg_w"), spec, pricing))
    return out


def _samples_per_usd(throughput, avg_w, spec: DeviceSpec | None, pricing: Pricing) -> dict:
    if not throughput:
        return {"samples_per_usd": None, "samples_per_usd_reason": "no throughput"}
    if spec is None:
        return {"samples_per_usd": None, "samples_per_usd_reason": f"device {UNKNOWN}: no price"}
    prices = {"price_usd": spec.price_usd, "cloud_usd_per_hour": spec.cloud_usd_per_hour,
              **pricing.overrides.get(spec.id, {})}  # fmt: skip
    if prices.get("cloud_usd_per_hour"):
        usd_per_s = prices["cloud_usd_per_hour"] / 3600
        return {"samples_per_usd": throughput / usd_per_s,
                "samples_per_usd_basis": f"cloud ${prices['cloud_usd_per_hour']:g}/hour"}  # fmt: skip
    if prices.get("price_usd"):
        watts, wsrc = (avg_w, "measured") if avg_w else (spec.tdp_w, "TDP")
        if not watts:
            return {"samples_per_usd": None, "samples_per_usd_reason": "no measured power and no TDP"}
        lifetime_s = pricing.lifetime_years * 365.25 * 86400 * pricing.utilisation
        usd_per_s = prices["price_usd"] / lifetime_s + watts * pricing.usd_per_kwh / 3.6e6
        return {"samples_per_usd": throughput / usd_per_s,
                "samples_per_usd_basis": f"${prices['price_usd']:g} over {pricing.lifetime_years:g} years at "
                                         f"{pricing.utilisation:.0%} use + {watts:.0f} W ({wsrc}) at "
                                         f"${pricing.usd_per_kwh:g}/kWh"}  # fmt: skip
    return {"samples_per_usd": None, "samples_per_usd_reason": f"{spec.name}: no price in the catalogue"}


def ridge_point(spec: DeviceSpec, prec: str) -> float | None:
    """FLOPs per byte where the roofline turns from memory- to compute-bound."""
    peak = spec.peak_flops.get(prec)
    if not peak or not spec.memory_bandwidth_bps:
        return None
    return peak / spec.memory_bandwidth_bps


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
            row["run"] = Path(run.path).name
            row["host"] = (run.environment or {}).get("host")
            row.update(derive(d, spec, why, pricing))
            rows.append(row)
    return rows
