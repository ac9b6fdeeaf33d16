"""AMD GPUs through AMD SMI (the ``amdsmi`` Python package that ships with ROCm, imported lazily).

PyTorch's ROCm build runs AMD GPUs through the same ``torch.cuda`` API and ``cuda`` device as
NVIDIA's; the backend records ``versions.hip`` (``torch.version.hip``) for such a case, and
telemetry then opens this source for it instead of NVML (:func:`is_rocm`).

The case's GPU is found by its PCI address (``runtime["device_pci_bus_id"]``, from the
framework's device properties) compared with ``amdsmi_get_gpu_device_bdf`` of every GPU AMD
SMI sees, or by the HIP UUID (``amdsmi_get_gpu_enumeration_info``'s ``hip_uuid``, newer AMD
SMI) — never by index: HIP numbers the GPUs it may see (after ``HIP_VISIBLE_DEVICES`` /
``ROCR_VISIBLE_DEVICES``), AMD SMI numbers every GPU on the machine.

Read at every tick, where the GPU supports it: the socket power (W), the energy accumulator,
GFX and memory-controller activity (%), VRAM used (bytes), the edge temperature (°C).

What AMD SMI's reference says, and what is assumed here:

* ``amdsmi_get_energy_count``: an accumulator of ticks since the driver loaded, with
  ``counter_resolution`` µJ per tick (``energy_accumulator``; ``power`` in older releases,
  which named the field wrongly). Joules = ticks × resolution × 1e-6. How often it moves is not
  documented: :data:`ENERGY_COUNTER_PERIOD_S` assumes 100 ms as for NVML, so a shorter window,
  or one in which it did not move (a virtual-machine guest has no counter), falls back to the
  power samples, with a warning.
* ``amdsmi_get_power_info``: ``socket_power`` (ROCm 7 and later), else ``current_socket_power``
  (MI300 and later), else ``average_socket_power``, in W; a field the GPU lacks reads
  ``"N/A"``. The record says which field was sampled.
* Both are of the whole device: every process on it, not only the worker.

An unreadable value is ``None`` (never 0); a source that cannot open is :class:`Unavailable`
with the reason.
"""

from __future__ import annotations

from benchbench.measure.sources import Channel, Unavailable

ENERGY_COUNTER_PERIOD_S = 0.1  # assumed update period of the energy accumulator (see above)
INSTALL_HINT = "it ships with ROCm: pip install the amdsmi matching your ROCm, e.g. from /opt/rocm/share/amd_smi"
NOT_INSTALLED = f"amdsmi not installed ({INSTALL_HINT})"
NA = "N/A"
POWER_FIELDS = ("socket_power", "current_socket_power", "average_socket_power")  # preferred first
MIB = 2**20


def is_rocm(runtime: dict | None) -> bool:
    """Whether a case's runtime says it ran on PyTorch's ROCm build (AMD GPU, ``cuda`` device)."""
    return bool(((runtime or {}).get("versions") or {}).get("hip"))


def load():
    """The ``amdsmi`` module, or :class:`Unavailable` when it is not installed."""
    try:
        import amdsmi
    except ImportError:
        raise Unavailable(NOT_INSTALLED) from None
    except Exception as e:  # the package imports but cannot find libamd_smi.so
        raise Unavailable(f"amdsmi could not be imported: {_err(e)}") from None
    return amdsmi


def _err(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _number(value) -> float | None:
    """A reading as a number; ``"N/A"``, ``None`` and anything non-numeric are None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def normal_bdf(bdf) -> str:
    """``0000:03:00.0`` / ``00000000:03:00.0`` / ``03:00.0`` → ``0000:03:00.0`` (lower case),
    so AMD SMI's and the framework's spellings compare equal."""
    text = str(bdf).strip().lower()
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0000", *parts]
    if len(parts) == 3:
        parts[0] = parts[0][-4:].rjust(4, "0")
    return ":".join(parts)


def init(smi) -> None:
    try:
        smi.amdsmi_init()
    except Exception as e:  # AmdSmiLibraryException: no driver, no permission …
        raise Unavailable(f"AMD SMI could not start: {_err(e)} (no amdgpu driver on this machine?)") from None


def shut_down(smi) -> None:
    try:
        smi.amdsmi_shut_down()
    except Exception:
        pass


def match(smi, uuid: str | None = None, pci_bus_id: str | None = None) -> tuple[object, dict]:
    """(handle, how it was matched) of the GPU at this PCI address or with this HIP UUID."""
    if not uuid and not pci_bus_id:
        raise Unavailable("the case's runtime has no GPU PCI bus id or UUID (AMD SMI is never matched by index)")
    try:
        handles = list(smi.amdsmi_get_processor_handles())
    except Exception as e:
        raise Unavailable(f"AMD SMI lists no GPUs: {_err(e)}") from None
    if pci_bus_id:
        want = normal_bdf(pci_bus_id)
        for h in handles:
            try:
                if normal_bdf(smi.amdsmi_get_gpu_device_bdf(h)) == want:
                    return h, {"matched_by": "pci_bus_id"}
            except Exception:
                continue
    if uuid:
        want = str(uuid).strip().lower().removeprefix("gpu-")
        enumeration = getattr(smi, "amdsmi_get_gpu_enumeration_info", None)
        for h in handles:
            try:
                hip = enumeration(h).get("hip_uuid") if enumeration else None
            except Exception:
                hip = None
            if hip and str(hip).strip().lower().removeprefix("gpu-") == want:
                return h, {"matched_by": "hip_uuid"}
    raise Unavailable(f"no GPU seen by AMD SMI has PCI bus id {pci_bus_id!r} / HIP UUID {uuid!r}")


def device_facts(smi, h) -> dict:
    """Name, PCI address, VRAM, driver and power cap of one GPU (None where unreadable)."""

    def get(fn_name, *args, convert=lambda x: x):
        fn = getattr(smi, fn_name, None)
        if fn is None:
            return None
        try:
            return convert(fn(h, *args))
        except Exception:
            return None

    facts: dict = {}
    facts["name"] = get("amdsmi_get_gpu_asic_info", convert=lambda d: d.get("market_name"))
    facts["pci_bus_id"] = get("amdsmi_get_gpu_device_bdf", convert=normal_bdf)
    facts["uuid"] = get("amdsmi_get_gpu_device_uuid", convert=str)
    total = get("amdsmi_get_gpu_vram_usage", convert=lambda d: _number(d.get("vram_total")))
    facts["memory_bytes"] = int(total * MIB) if total is not None else None
    facts["driver"] = get("amdsmi_get_gpu_driver_info", convert=lambda d: d.get("driver_version"))
    return facts


class AmdSmiSource:
    """One AMD GPU's readings. Every reading is tried once when the source opens; one the GPU
    does not support (an exception, or ``"N/A"``) is left out and ``info()["unsupported"]``
    says why."""

    name = "amdsmi"
    domain = "gpu"
    energy_label = "amdsmi-energy-counter"
    power_label = "amdsmi-power-integral"
    counter_period_s = ENERGY_COUNTER_PERIOD_S

    def __init__(self, smi, handle, matched: dict, name: str = "amdsmi"):
        self.smi, self.h, self.matched, self.name = smi, handle, matched, name
        self._open = True
        self.unsupported: dict[str, str] = {}
        self.power_reading: str | None = None
        self.counter_resolution_uj: float | None = None
        readers: list = []
        h = handle

        def offer(channels: tuple[Channel, ...], fn) -> None:
            try:
                values = fn()
                if any(v is None for v in values):
                    raise ValueError(f"reads {NA}")
            except Exception as e:
                for c in channels:
                    self.unsupported[c.name] = _err(e)
                return
            readers.append((fn, channels))

        # power: the first field this GPU fills in
        try:
            info = smi.amdsmi_get_power_info(h)
            field = next((f for f in POWER_FIELDS if _number(info.get(f)) is not None), None)
            why = f"amdsmi_get_power_info gives none of {list(POWER_FIELDS)} (all {NA})"
        except Exception as e:
            field, why = None, _err(e)
        if field is None:
            self.unsupported["power_w"] = why
        else:
            offer((Channel("power_w", role="power"),), lambda: (_number(smi.amdsmi_get_power_info(h).get(field)),))
            if "power_w" not in self.unsupported:
                self.power_reading = f"amdsmi_get_power_info()['{field}'] (W)"

        # energy: ticks × counter_resolution µJ
        try:
            first = smi.amdsmi_get_energy_count(h)
            key = "energy_accumulator" if "energy_accumulator" in first else "power"
            resolution = _number(first.get("counter_resolution"))
            if resolution is None or resolution <= 0 or _number(first.get(key)) is None:
                raise ValueError(f"no counter resolution or accumulator in {sorted(first)}")
            self.counter_resolution_uj = resolution
            offer((Channel("energy_j", kind="counter", scale=resolution * 1e-6, role="energy", rate="counter_power_w"),),
                  lambda: (_number(smi.amdsmi_get_energy_count(h).get(key)),))  # fmt: skip
        except Exception as e:
            self.unsupported["energy_j"] = _err(e)

        def activity():
            a = smi.amdsmi_get_gpu_activity(h)
            return (_number(a.get("gfx_activity")), _number(a.get("umc_activity")))

        offer((Channel("gpu_util_pct"), Channel("mem_util_pct")), activity)
        offer((Channel("memory_used_bytes", scale=MIB, reduce="max"),),
              lambda: (_number(smi.amdsmi_get_gpu_vram_usage(h).get("vram_used")),))  # fmt: skip
        temp_type = getattr(getattr(smi, "AmdSmiTemperatureType", None), "EDGE", None)
        temp_metric = getattr(getattr(smi, "AmdSmiTemperatureMetric", None), "CURRENT", None)
        if temp_type is None or temp_metric is None:
            self.unsupported["temperature_c"] = "this amdsmi has no AmdSmiTemperatureType.EDGE / Metric.CURRENT"
        else:
            offer((Channel("temperature_c", reduce="max"),),
                  lambda: (_number(smi.amdsmi_get_temp_metric(h, temp_type, temp_metric)),))  # fmt: skip

        self._readers = [(fn, len(chs)) for fn, chs in readers]
        self.channels = tuple(c for _, chs in readers for c in chs)
        self.facts = device_facts(smi, handle)
        self.device_id = self.facts.get("pci_bus_id")

    def poll(self) -> tuple:
        out: list = []
        for fn, n in self._readers:
            try:
                out.extend(fn())
            except Exception:  # AmdSmiException on one tick: that reading is missing, not 0
                out.extend((None,) * n)
        return tuple(out)

    def info(self) -> dict:
        d = {**self.facts, **self.matched}
        d["power_reading"] = self.power_reading
        if any(c.role == "energy" for c in self.channels):
            d["energy_counter_resolution_uj"] = self.counter_resolution_uj
            d["energy_counter_period_assumed_s"] = ENERGY_COUNTER_PERIOD_S
        d["unsupported"] = dict(self.unsupported)
        d["note"] = "the whole GPU: every process on it, not only the worker"
        return d

    def close(self) -> None:
        if self._open:
            self._open = False
            shut_down(self.smi)


def open_amdsmi(uuid: str | None, pci_bus_id: str | None = None, smi=None, name: str = "amdsmi") -> AmdSmiSource:
    """The source for the AMD GPU at this PCI address / with this HIP UUID; ``smi`` replaces
    the ``amdsmi`` module in tests."""
    smi = smi or load()
    init(smi)
    try:
        handle, matched = match(smi, uuid, pci_bus_id)
        return AmdSmiSource(smi, handle, matched, name=name)
    except BaseException:
        shut_down(smi)
        raise


def inventory(smi=None) -> dict:
    """Every GPU AMD SMI sees, for ``benchbench devices``; ``available: False`` with the reason
    when there is none to see."""
    try:
        smi = smi or load()
        init(smi)
    except Unavailable as e:
        return {"available": False, "reason": str(e), "gpus": []}
    try:
        try:
            handles = list(smi.amdsmi_get_processor_handles())
        except Exception as e:
            return {"available": False, "reason": f"AMD SMI lists no GPUs: {_err(e)}", "gpus": []}
        gpus = [device_facts(smi, h) for h in handles]
        out: dict = {"available": bool(gpus), "gpus": gpus}
        if not gpus:
            out["reason"] = "AMD SMI started but sees no GPU"
        return out
    finally:
        shut_down(smi)
