"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``, lazily).

The case's GPU is found by its UUID (from the backend's ``runtime["device_uuid"]``) or
its PCI bus id — never by index: CUDA numbers the GPUs it can see (after
``CUDA_VISIBLE_DEVICES``, fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``) and
NVML numbers every GPU on the machine, so ``cuda:0`` is often not NVML's device 0. The
UUID the framework reports is of the device the case really used, so
``CUDA_VISIBLE_DEVICES`` is respected without parsing it.

Read at every tick: power (W), GPU and memory utilisation (%), memory used (bytes), SM
clock (Hz), temperature (°C), clock event ("throttle") reasons, and the total-energy
counter where the GPU has one.

What the NVML documentation says, and what is assumed here:

* ``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver was last
  reloaded, on Volta and newer. How often the counter moves is not documented; PETSc's
  manual (``PetscLogGpuEnergyMeter``) gives "every 20-100 ms for newer GPUs" and a
  pynvml review thread saw ~10 ms. :data:`ENERGY_COUNTER_PERIOD_S` assumes the slow end,
  100 ms: a window shorter than that, or one in which the counter did not move, is not
  trusted — the energy is then integrated from power samples, with a warning.
* ``nvmlDeviceGetPowerUsage``: "On Ampere (except GA100) or newer GPUs, the API returns
  power averaged over 1 sec interval". Where the driver offers the instantaneous reading
  (field ``NVML_FI_DEV_POWER_INSTANT``) that one is sampled instead; the record says
  which was used.
* Both figures are of the whole board: every process on the GPU, not only the worker.
"""

from __future__ import annotations

import warnings

from benchbench.measure.sources import Channel, Unavailable

ENERGY_COUNTER_PERIOD_S = 0.1  # assumed update period of the total-energy counter (see above)
MIG_ENERGY_NOTE = (
    "a MIG instance: NVML gives power and energy for the whole GPU only, so this is the whole GPU's "
    "(every MIG slice and process on it), not the slice's"
)
INSTALL_HINT = "pip install 'benchbench[gpu]'"
NOT_INSTALLED = f"nvidia-ml-py not installed ({INSTALL_HINT})"

# nvmlClocksEventReason* bits (the same values as the older nvmlClocksThrottleReason*)
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def load():
    """The ``pynvml`` module, or :class:`Unavailable` when nvidia-ml-py is not installed."""
    try:
        with warnings.catch_warnings():  # the old `pynvml` wrapper package warns on import
            warnings.simplefilter("ignore")
            import pynvml
    except ImportError:
        raise Unavailable(NOT_INSTALLED) from None
    return pynvml


def init(nvml) -> None:
    try:
        nvml.nvmlInit()
    except Exception as e:  # NVMLError: library not found, driver not loaded …
        raise Unavailable(f"NVML could not start: {_err(e)} (no NVIDIA driver on this machine?)") from None


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if not str(e) else str(e)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def bare_uuid(uuid) -> str:
    """``GPU-1a2b…`` / ``MIG-1a2b…`` / ``1a2b…`` → ``1a2b…`` (lower case): the forms
    NVML and the frameworks print differ only in the prefix."""
    text = _text(uuid).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _handles(nvml) -> list[tuple[int, object]]:
    """(NVML index, handle) of every GPU NVML sees: enumerated to compare UUIDs, never
    to pick one by its position."""
    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        try:
            out.append((i, nvml.nvmlDeviceGetHandleByIndex(i)))
        except nvml.NVMLError:  # a GPU this process may not query
            continue
    return out


def match(nvml, uuid: str | None = None, pci_bus_id: str | None = None) -> tuple[object, dict]:
    """(handle, how it was matched) for the GPU with this UUID or PCI bus id."""
    if uuid:
        want = bare_uuid(uuid)
        for _, h in _handles(nvml):
            try:
                if bare_uuid(nvml.nvmlDeviceGetUUID(h)) == want:
                    return h, {"matched_by": "uuid"}
            except nvml.NVMLError:
                continue
        try:  # a MIG instance: power and energy exist only for the whole GPU
            mig = nvml.nvmlDeviceGetHandleByUUID("MIG-" + want)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
            return parent, {"matched_by": "uuid", "mig": True,
                            "note": "a MIG instance: every figure is of the whole GPU"}  # fmt: skip
        except (nvml.NVMLError, AttributeError):
            pass
    if pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id), {"matched_by": "pci_bus_id"}
        except nvml.NVMLError:
            pass
    if not uuid and not pci_bus_id:
        raise Unavailable("the case's runtime has no GPU UUID or PCI bus id (NVML is never matched by index)")
    raise Unavailable(f"no GPU seen by NVML has UUID {uuid!r} / PCI bus id {pci_bus_id!r}")


def _field_value(v):
    """The number in an nvmlFieldValue_t, by its valueType."""
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
    return getattr(v.value, attr.get(int(v.valueType), "uiVal"))


def device_facts(nvml, h) -> dict:
    """Name, UUID, PCI bus id, memory, power limits and energy-counter support of one GPU."""

    def get(fn, *args, convert=lambda x: x):
        try:
            return convert(fn(h, *args)), None
        except Exception as e:  # NotSupported, NoPermission, an old driver's missing symbol
            return None, _err(e)

    facts: dict = {}
    facts["name"] = get(nvml.nvmlDeviceGetName, convert=_text)[0]
    facts["uuid"] = get(nvml.nvmlDeviceGetUUID, convert=_text)[0]
    facts["pci_bus_id"] = get(nvml.nvmlDeviceGetPciInfo, convert=lambda p: _text(p.busId))[0]
    facts["memory_bytes"] = get(nvml.nvmlDeviceGetMemoryInfo, convert=lambda m: int(m.total))[0]
    facts["power_limit_w"] = get(nvml.nvmlDeviceGetEnforcedPowerLimit, convert=lambda mw: mw / 1000)[0]
    energy, why = get(nvml.nvmlDeviceGetTotalEnergyConsumption)
    facts["energy_counter"] = energy is not None
    if why:
        facts["energy_counter_reason"] = why
    return facts


class NvmlSource:
    """One GPU's NVML readings. Every reading is tried once when the source opens; one the
    GPU does not support is left out (``info()["unsupported"]`` says why)."""

    name = "nvml"
    domain = "gpu"
    energy_label = "nvml-energy-counter"
    power_label = "nvml-power-integral"
    counter_period_s = ENERGY_COUNTER_PERIOD_S

    def __init__(self, nvml, handle, matched: dict, name: str = "nvml"):
        self.nvml, self.h, self.matched = nvml, handle, matched
        self.name = name  # "nvml"; "nvml[i]" for device i of a case on several GPUs
        # what every energy figure from this source must say about its scope (a MIG slice)
        self.energy_note = MIG_ENERGY_NOTE if matched.get("mig") else None
        self._open = True
        self.unsupported: dict[str, str] = {}
        self.power_reading = None
        readers: list = []  # (function returning a tuple, its channels)
        h = handle

        def offer(channels: tuple[Channel, ...], fn) -> None:
            try:
                values = fn()
                if any(v is None for v in values):
                    raise ValueError("no value")
            except Exception as e:
                for c in channels:
                    self.unsupported[c.name] = _err(e)
                return
            readers.append((fn, channels))

        instant = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        power = Channel("power_w", scale=1e-3, role="power")
        if instant is not None:

            def instant_power():
                v = nvml.nvmlDeviceGetFieldValues(h, [instant])[0]
                return (_field_value(v) if int(v.nvmlReturn) == 0 else None,)

            offer((power,), instant_power)
            if "power_w" not in self.unsupported:
                self.power_reading = "instantaneous (NVML field NVML_FI_DEV_POWER_INSTANT)"
            self.unsupported.pop("power_w", None)
        if self.power_reading is None:
            offer((power,), lambda: (nvml.nvmlDeviceGetPowerUsage(h),))
            if "power_w" not in self.unsupported:
                self.power_reading = "nvmlDeviceGetPowerUsage (a 1 s average on Ampere, except GA100, and newer)"
        offer((Channel("energy_j", kind="counter", scale=1e-3, role="energy", rate="counter_power_w"),),
              lambda: (nvml.nvmlDeviceGetTotalEnergyConsumption(h),))  # fmt: skip

        def util():
            u = nvml.nvmlDeviceGetUtilizationRates(h)
            return (u.gpu, u.memory)

        offer((Channel("gpu_util_pct"), Channel("mem_util_pct")), util)
        offer((Channel("memory_used_bytes", reduce="max"),), lambda: (int(nvml.nvmlDeviceGetMemoryInfo(h).used),))
        sm = getattr(nvml, "NVML_CLOCK_SM", 1)
        offer((Channel("sm_clock_hz", scale=1e6),), lambda: (nvml.nvmlDeviceGetClockInfo(h, sm),))
        gpu_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        offer((Channel("temperature_c", reduce="max"),), lambda: (nvml.nvmlDeviceGetTemperature(h, gpu_sensor),))
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        if reasons is not None:
            offer((Channel("clock_event_reasons", reduce="or", flags=CLOCK_EVENT_REASONS),), lambda: (reasons(h),))
        else:
            self.unsupported["clock_event_reasons"] = "this nvidia-ml-py has no clock event reasons"

        self._readers = [(fn, len(chs)) for fn, chs in readers]
        self.channels = tuple(c for _, chs in readers for c in chs)
        self.facts = device_facts(nvml, handle)

    @property
    def device_id(self) -> str | None:
        """The physical GPU's UUID (a MIG slice's parent): two sources with the same one
        read the same counters."""
        return self.facts.get("uuid")

    def poll(self) -> tuple:
        out: list = []
        error = self.nvml.NVMLError
        for fn, n in self._readers:
            try:
                out.extend(fn())
            except error:
                out.extend((None,) * n)
        return tuple(out)

    def info(self) -> dict:
        d = {**self.facts, **self.matched}
        try:
            d["driver"] = _text(self.nvml.nvmlSystemGetDriverVersion())
        except Exception:
            d["driver"] = None
        d["power_reading"] = self.power_reading
        if any(c.role == "energy" for c in self.channels):
            d["energy_counter_period_assumed_s"] = ENERGY_COUNTER_PERIOD_S
        d["unsupported"] = dict(self.unsupported)
        d["note"] = "the whole GPU board: every process on it, not only the worker"
        return d

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


def open_nvml(uuid: str | None, pci_bus_id: str | None = None, nvml=None, name: str = "nvml") -> NvmlSource:
    """The source for the GPU with this UUID / PCI bus id; ``nvml`` replaces pynvml in tests;
    ``name`` prefixes its series (``nvml[i]`` for device i of a multi-GPU case)."""
    nvml = nvml or load()
    init(nvml)
    try:
        handle, matched = match(nvml, uuid, pci_bus_id)
        return NvmlSource(nvml, handle, matched, name=name)
    except BaseException:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
        raise


def inventory(nvml=None) -> dict:
    """Every GPU NVML sees, for ``benchbench devices``; ``available: False`` with the reason
    when there is none to see."""
    try:
        nvml = nvml or load()
        init(nvml)
    except Unavailable as e:
        return {"available": False, "reason": str(e), "gpus": []}
    try:
        out: dict = {"available": True}
        try:
            out["driver"] = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            out["driver"] = None
        try:
            v = int(nvml.nvmlSystemGetCudaDriverVersion())
            out["cuda_driver"] = f"{v // 1000}.{v % 1000 // 10}"
        except Exception:
            out["cuda_driver"] = None
        out["gpus"] = [{"nvml_index": i, **device_facts(nvml, h)} for i, h in _handles(nvml)]
        if not out["gpus"]:
            out.update(available=False, reason="NVML started but sees no GPU")
        return out
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
