"""AMD GPUs: PyTorch's ROCm build recorded (``versions.hip``) and AMD SMI as one more telemetry
source behind the source interface, tested through a fake ``amdsmi`` module (no AMD GPU here):
matching by PCI address or HIP UUID, never by index; the power field the GPU fills in; the
energy accumulator in joules through the real telemetry arithmetic (fake clock); "N/A" and
failed readings are None, never 0; amdsmi absent is unavailable with the reason."""

from __future__ import annotations

import sys
import threading

import pytest

from benchbench.measure import telemetry as tm
from benchbench.measure.sources import Unavailable, amd
from benchbench.measure.telemetry import Reading, Telemetry, domain_energy

RESOLUTION_UJ = 15.0  # µJ per accumulator tick


class AmdSmiLibraryException(Exception):
    pass


class FakeAmdSmi:
    """The few ``amdsmi`` calls the source makes, with the shapes AMD SMI's Python API returns
    (dicts; ``"N/A"`` for a field the GPU lacks). Energy and power follow ``watts`` over the
    fake time ``now``."""

    class AmdSmiTemperatureType:
        EDGE = 0

    class AmdSmiTemperatureMetric:
        CURRENT = 0

    def __init__(self, gpus=None, watts=300.0, power_info=None, energy_key="energy_accumulator"):
        self.gpus = gpus or [{"bdf": "0000:03:00.0", "hip_uuid": "GPU-aaaa", "name": "AMD Instinct MI300X"},
                             {"bdf": "0000:83:00.0", "hip_uuid": "GPU-bbbb", "name": "AMD Instinct MI300X"}]  # fmt: skip
        self.watts, self.now, self.energy_key = watts, 0.0, energy_key
        self.power_info = power_info
        self.inits = self.shutdowns = 0
        self.fail_polls = False

    def amdsmi_init(self, *flags):
        self.inits += 1

    def amdsmi_shut_down(self):
        self.shutdowns += 1

    def amdsmi_get_processor_handles(self):
        return list(range(len(self.gpus)))

    def amdsmi_get_gpu_device_bdf(self, h):
        return self.gpus[h]["bdf"]

    def amdsmi_get_gpu_enumeration_info(self, h):
        return {"hip_id": h, "hip_uuid": self.gpus[h]["hip_uuid"]}

    def amdsmi_get_gpu_device_uuid(self, h):
        return f"smi-uuid-{h}"

    def amdsmi_get_gpu_asic_info(self, h):
        return {"market_name": self.gpus[h]["name"]}

    def amdsmi_get_gpu_driver_info(self, h):
        return {"driver_name": "amdgpu", "driver_version": "6.10.5"}

    def _check(self):
        if self.fail_polls:
            raise AmdSmiLibraryException("AMDSMI_STATUS_BUSY")

    def amdsmi_get_power_info(self, h):
        self._check()
        if self.power_info is not None:
            return dict(self.power_info)
        return {"socket_power": self.watts, "current_socket_power": "N/A", "average_socket_power": "N/A",
                "power_limit": 750_000_000}  # fmt: skip

    def amdsmi_get_energy_count(self, h):
        self._check()
        ticks = int(round(self.watts * self.now / (RESOLUTION_UJ * 1e-6)))
        return {self.energy_key: ticks, "counter_resolution": RESOLUTION_UJ, "timestamp": int(self.now * 1e9)}

    def amdsmi_get_gpu_activity(self, h):
        self._check()
        return {"gfx_activity": 97, "umc_activity": 41, "mm_activity": "N/A"}

    def amdsmi_get_gpu_vram_usage(self, h):
        self._check()
        return {"vram_total": 196_592, "vram_used": 1024}  # MiB

    def amdsmi_get_temp_metric(self, h, sensor, metric):
        self._check()
        return 55


# ------------------------------------------------------------------ ROCm detection


def test_rocm_is_recognised_from_the_runtime_versions():
    assert amd.is_rocm({"versions": {"torch": "2.6.0+rocm6.2", "cuda": None, "hip": "6.2.41133"}})
    assert not amd.is_rocm({"versions": {"torch": "2.6.0+cu124", "cuda": "12.4", "hip": None}})
    assert not amd.is_rocm({}) and not amd.is_rocm(None)


def test_the_torch_backend_records_hip_and_the_pci_address():
    torch_backend = pytest.importorskip("benchbench.backends.torch")
    import torch

    assert torch_backend._versions()["hip"] == torch.version.hip  # None on this CUDA/CPU build

    class Props:
        pci_domain_id, pci_bus_id, pci_device_id = 0, 0x83, 0

    assert torch_backend._pci_bus_id(Props()) == "0000:83:00.0"
    assert torch_backend._pci_bus_id(object()) is None  # an old torch without the fields: unknown


# ------------------------------------------------------------------ matching


@pytest.mark.parametrize("pci", ["0000:83:00.0", "00000000:83:00.0", "83:00.0", "0000:83:00.0".upper()])
def test_the_gpu_is_matched_by_its_pci_address_in_any_spelling(pci):
    smi = FakeAmdSmi()
    src = amd.open_amdsmi(None, pci, smi=smi)
    assert src.h == 1 and src.matched == {"matched_by": "pci_bus_id"}
    assert src.info()["pci_bus_id"] == "0000:83:00.0" and src.device_id == "0000:83:00.0"


def test_the_gpu_is_matched_by_hip_uuid_without_a_pci_address():
    src = amd.open_amdsmi("GPU-bbbb", None, smi=FakeAmdSmi())
    assert src.h == 1 and src.matched == {"matched_by": "hip_uuid"}


def test_never_by_index():
    smi = FakeAmdSmi()
    with pytest.raises(Unavailable, match="never matched by index"):
        amd.open_amdsmi(None, None, smi=smi)
    with pytest.raises(Unavailable, match="no GPU seen by AMD SMI has PCI bus id '0000:99:00.0'"):
        amd.open_amdsmi("GPU-zzzz", "0000:99:00.0", smi=smi)
    assert smi.inits == smi.shutdowns == 2  # what was opened is released


# ------------------------------------------------------------------ readings


def test_readings_in_si_units_with_the_power_field_the_gpu_fills_in():
    smi = FakeAmdSmi()
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    names = [c.name for c in src.channels]
    assert names == ["power_w", "energy_j", "gpu_util_pct", "mem_util_pct", "memory_used_bytes", "temperature_c"]
    smi.now = 2.0
    row = dict(zip(names, src.poll()))
    energy = next(c for c in src.channels if c.name == "energy_j")
    assert row["power_w"] == 300.0 and row["gpu_util_pct"] == 97 and row["temperature_c"] == 55
    assert row["energy_j"] * energy.scale == pytest.approx(600.0)  # ticks × 15 µJ = 300 W × 2 s
    mem = next(c for c in src.channels if c.name == "memory_used_bytes")
    assert row["memory_used_bytes"] * mem.scale == 1024 * 2**20
    info = src.info()
    assert info["power_reading"] == "amdsmi_get_power_info()['socket_power'] (W)"
    assert info["energy_counter_resolution_uj"] == RESOLUTION_UJ and info["name"] == "AMD Instinct MI300X"
    assert info["memory_bytes"] == 196_592 * 2**20 and info["unsupported"] == {}


def test_an_older_amdsmi_with_other_field_names_still_reads():
    # ROCm 6 on MI300: socket_power absent, current_socket_power filled; the accumulator named 'power'
    smi = FakeAmdSmi(power_info={"current_socket_power": 412, "average_socket_power": "N/A"}, energy_key="power")
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    assert src.info()["power_reading"] == "amdsmi_get_power_info()['current_socket_power'] (W)"
    smi.now = 1.0
    row = dict(zip([c.name for c in src.channels], src.poll()))
    assert row["power_w"] == 412.0 and row["energy_j"] == pytest.approx(300.0 / (RESOLUTION_UJ * 1e-6))


def test_power_the_gpu_does_not_report_is_left_out_never_zero():
    smi = FakeAmdSmi(power_info={"socket_power": "N/A", "current_socket_power": "N/A", "average_socket_power": "N/A"})
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    assert "power_w" not in [c.name for c in src.channels]
    assert "N/A" in src.info()["unsupported"]["power_w"] and src.info()["power_reading"] is None


def test_a_failed_poll_is_none_not_zero():
    smi = FakeAmdSmi()
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    smi.fail_polls = True
    assert src.poll() == (None,) * len(src.channels)


def test_close_shuts_amdsmi_down_once():
    smi = FakeAmdSmi()
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    src.close()
    src.close()
    assert smi.inits == smi.shutdowns == 1


# ------------------------------------------------------------------ energy through the telemetry arithmetic


class FakeTime:
    """A clock that moves only when the sampler sleeps; past ``until`` the sleep blocks until
    stop(), so the ticks are exact. Moves the fake AMD SMI's time with it."""

    def __init__(self, smi: FakeAmdSmi, until: float):
        self.smi, self.until = smi, until

    def clock(self) -> float:
        return self.smi.now

    def sleep(self, timeout: float, stop: threading.Event) -> bool:
        if self.smi.now + timeout > self.until + 1e-9:
            stop.wait()
            return True
        self.smi.now += timeout
        return stop.is_set()


def test_energy_over_the_timed_window_comes_from_the_accumulator():
    smi = FakeAmdSmi(watts=250.0)
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    fake = FakeTime(smi, until=2.0)
    tel = Telemetry([src], {"rapl": "no RAPL here"}, hz=10, device_kind="cuda", clock=fake.clock, sleep=fake.sleep)
    with tel, tel.window() as clock:
        while len(tel.sampler.times) < 21:
            threading.Event().wait(0.001)
        clock()  # the timing loop's last reading: the end of the timed window (t = 2.0)
    telemetry, energy = tel.report(samples=1000, timed_wall_s=2.0)
    gpu = energy["gpu"]
    assert gpu["source"] == "amdsmi-energy-counter"
    assert gpu["energy_j"] == pytest.approx(500.0) and gpu["avg_w"] == pytest.approx(250.0)
    assert gpu["j_per_sample"] == pytest.approx(0.5)
    assert telemetry["summary"]["amdsmi.power_w"]["mean"] == pytest.approx(250.0)
    assert telemetry["sources"]["amdsmi"]["matched_by"] == "pci_bus_id"
    assert energy["cpu"]["energy_j"] is None and energy["cpu"]["reason"] == "no RAPL here"
    assert smi.shutdowns == 1  # leaving the session closed the source


def test_a_counter_that_does_not_move_falls_back_to_the_power_samples():
    smi = FakeAmdSmi(watts=200.0)
    src = amd.open_amdsmi(None, "0000:03:00.0", smi=smi)
    times, rows = [], []
    for i in range(11):  # a virtual-machine guest: the accumulator stays put, power is read
        smi.now = i * 0.1
        row = list(src.poll())
        row[1] = 1234  # energy_j column frozen
        times.append(smi.now)
        rows.append(tuple(row))
    e = domain_energy(Reading.of(src, times, rows), 0.0, 1.0, samples=10)
    assert e["source"] == "amdsmi-power-integral" and e["energy_j"] == pytest.approx(200.0)
    assert any("did not move" in w for w in e["warnings"])


# ------------------------------------------------------------------ choosing the source; amdsmi absent


ROCM_RUNTIME = {"versions": {"hip": "6.2.41133", "cuda": None}, "device_pci_bus_id": "0000:03:00.0",
                "device_uuid": "GPU-aaaa"}  # fmt: skip


def test_a_rocm_case_opens_amdsmi_not_nvml(monkeypatch):
    smi = FakeAmdSmi()
    monkeypatch.setattr(amd, "load", lambda: smi)
    sources, missing = tm.open_sources("cuda", ROCM_RUNTIME)
    try:
        names = [s.name for s in sources]
        assert "amdsmi" in names and "nvml" not in names and "nvml" not in missing
    finally:
        for s in sources:
            s.close()


def test_amdsmi_absent_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi raises ImportError
    with pytest.raises(Unavailable, match="amdsmi not installed"):
        amd.load()
    sources, missing = tm.open_sources("cuda", ROCM_RUNTIME)
    for s in sources:
        s.close()
    assert missing["amdsmi"] == amd.NOT_INSTALLED
    tel = Telemetry([], missing, hz=10, device_kind="cuda")
    telemetry, energy = tel.report(samples=10, timed_wall_s=1.0)
    assert energy["gpu"]["source"] == "unavailable" and energy["gpu"]["energy_j"] is None
    assert energy["gpu"]["reason"] == amd.NOT_INSTALLED  # the reason, never 0
    assert amd.inventory() == {"available": False, "reason": amd.NOT_INSTALLED, "gpus": []}


def test_inventory_lists_every_gpu_amdsmi_sees():
    inv = amd.inventory(FakeAmdSmi())
    assert inv["available"] and [g["pci_bus_id"] for g in inv["gpus"]] == ["0000:03:00.0", "0000:83:00.0"]
    assert inv["gpus"][0]["name"] == "AMD Instinct MI300X" and inv["gpus"][0]["driver"] == "6.10.5"
