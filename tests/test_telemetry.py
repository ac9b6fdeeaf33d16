"""Telemetry: the sampler's lifecycle and rate (a fake clock, ticks counted exactly), the
energy arithmetic through the source interface (power integration, counter deltas,
RAPL wrap on a fixture powercap tree, NVML through a fake pynvml), the inventory, the
cool-down, and real runs through the CLI (CPU here; CUDA where there is a GPU)."""

from __future__ import annotations

import shutil
import sys
import threading
from types import SimpleNamespace

import pytest

from benchbench import probe, results, runner
from benchbench.case import Case, Settings
from benchbench.framework.base import Prepared
from benchbench.hardware import inventory as devices
from benchbench.measure import telemetry as tm
from benchbench.measure.sources import Channel, Unavailable, nvml, rapl
from benchbench.measure.telemetry import (
    Reading,
    Sampler,
    Telemetry,
    counter_delta,
    domain_energy,
    integrate,
    series_and_summary,
    unwrap,
)
from benchbench.results import Record
from conftest import FIXTURES, bb, run_dir_of, write

POWERCAP = FIXTURES / "powercap"


# ------------------------------------------------------------------ fakes


class FakeTime:
    """A clock that moves only when the sampler sleeps (or a source's poll costs time).
    After ``until`` seconds the sampler's sleep blocks until stop() is called, so the
    number of ticks is exact."""

    def __init__(self, until: float | None = None):
        self.now = 0.0
        self.until = until

    def clock(self) -> float:
        return self.now

    def sleep(self, timeout: float, stop: threading.Event) -> bool:
        if self.until is not None and self.now + timeout > self.until + 1e-9:
            stop.wait()
            return True
        self.now += timeout
        return stop.is_set()


class FakeSource:
    """A source whose readings come from a function of the (fake) time."""

    def __init__(self, name="fake", domain="cpu", channels=(Channel("power_w", role="power"),),
                 read=lambda t: (100.0,), fake: FakeTime | None = None, cost: float = 0.0,
                 energy_label="fake-counter", power_label="fake-power-integral", counter_period_s=None):  # fmt: skip
        self.name, self.domain, self.channels = name, domain, tuple(channels)
        self.energy_label, self.power_label, self.counter_period_s = energy_label, power_label, counter_period_s
        self.read, self.fake, self.cost = read, fake, cost
        self.polls, self.closed = 0, False

    def poll(self):
        self.polls += 1
        t = self.fake.now if self.fake else 0.0
        if self.fake:
            self.fake.now += self.cost
        return self.read(t)

    def info(self):
        return {"fake": True}

    def close(self):
        self.closed = True


def telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == tm.THREAD_NAME]


# ------------------------------------------------------------------ the sampler


def test_sampler_ticks_at_the_rate_exactly_with_a_fake_clock():
    fake = FakeTime(until=1.0)
    src = FakeSource(fake=fake)
    s = Sampler([src], hz=10, clock=fake.clock, sleep=fake.sleep).start()
    while len(s.times) < 11:  # the thread runs on the fake clock as fast as it can
        threading.Event().wait(0.001)
    s.stop()
    # one reading at start, one per 100 ms deadline up to 1.0 s, one at stop
    assert len(s.times) == 12 and src.polls == 12
    assert s.times[:11] == pytest.approx([i / 10 for i in range(11)])
    assert s.times[-1] == pytest.approx(1.0)
    assert s.missed == 0 and not s.running and telemetry_threads() == []


def test_sampler_keeps_its_schedule_when_polls_cost_time():
    fake = FakeTime(until=1.0)
    src = FakeSource(fake=fake, cost=0.03)  # 30 ms of a 50 ms period
    s = Sampler([src], hz=20, clock=fake.clock, sleep=fake.sleep).start()
    while len(s.times) < 20:
        threading.Event().wait(0.001)
    s.stop()
    assert len(s.times) == 1 + 20 + 1  # start, the 20 deadlines in 1 s (no drift), stop
    assert s.times[1:21] == pytest.approx([i * 0.05 for i in range(1, 21)])  # a tick's time is taken before its polls
    assert s.times[-1] == pytest.approx(1.03) and s.missed == 0


def test_a_late_tick_skips_the_deadlines_already_past():
    fake = FakeTime(until=1.0)
    src = FakeSource(fake=fake, cost=0.23)  # each poll overruns the 100 ms period
    s = Sampler([src], hz=10, clock=fake.clock, sleep=fake.sleep).start()
    while len(s.times) < 4:
        threading.Event().wait(0.001)
    s.stop()
    # start at 0 (poll ends 0.23); deadline 0.1 served late at 0.23 (ends 0.46): 0.2-0.4 skipped;
    # 0.5 on time (ends 0.73): 0.6, 0.7 skipped; 0.8 on time (ends 1.03): 0.9, 1.0 skipped; stop
    assert s.times == pytest.approx([0.0, 0.23, 0.5, 0.8, 1.03])
    assert s.missed == 7


def test_a_failing_poll_is_counted_and_sampling_goes_on():
    fake = FakeTime(until=0.5)

    def read(t):
        if 0.15 < t < 0.35:
            raise OSError("sensor hiccup")
        return (50.0,)

    src = FakeSource(fake=fake, read=read)
    s = Sampler([src], hz=10, clock=fake.clock, sleep=fake.sleep).start()
    while len(s.times) < 6:
        threading.Event().wait(0.001)
    s.stop()
    assert s.errors == {"fake": {"count": 2, "first": "OSError: sensor hiccup"}}
    assert [r is None for r in s.rows[0]] == [False, False, True, True, False, False, False]


def test_rate_is_checked():
    for bad in (0, -1, 101):
        with pytest.raises(ValueError, match="rate"):
            Sampler([], hz=bad)


def test_the_window_stops_the_sampler_and_the_session_closes_sources_when_the_body_raises():
    src = FakeSource()
    tel = Telemetry([src], {}, hz=100)
    with pytest.raises(ZeroDivisionError):
        with tel:
            with tel.window():
                assert tel.sampler.running and len(telemetry_threads()) == 1
                1 / 0
    assert not tel.sampler.running and tel.sampler.stopped and telemetry_threads() == []
    assert src.closed and src.polls >= 2  # the opening and the closing reading


def test_telemetry_off_starts_nothing():
    src = FakeSource()
    tel = Telemetry([src], {}, hz=0)
    with tel, tel.window() as clock:
        clock()
        assert telemetry_threads() == []
    t, e = tel.report(samples=10, timed_wall_s=1.0)
    assert t == {"enabled": False, "reason": "telemetry off (telemetry.hz: 0)"}
    assert e["cpu"]["source"] == "unavailable" and e["cpu"]["energy_j"] is None
    assert src.polls == 0


# ------------------------------------------------------ the worker: always stopped


class FakeBackend:
    name = "fake"

    def __init__(self, fail_at: int | None):
        self.fail_at, self.calls = fail_at, 0

    def prepare(self, case):
        def step():
            self.calls += 1
            if self.fail_at is not None and self.calls >= self.fail_at:
                raise RuntimeError("boom in the timed loop")

        return Prepared(step=step, cold_start={"build_s": 0.0}, runtime={"device_type": "cpu"},
                        reset_peak_memory=lambda: None, device_memory=lambda: {},
                        model_facts=lambda: {})  # fmt: skip


def _fake_case(**settings) -> Case:
    s = Settings(**{"warmup_iters": 1, "min_time": 0.02, "max_time": 0.05, "min_iters": 5, "telemetry_hz": 100,
                    **settings})  # fmt: skip
    return Case("torch", "seed_mlp", 4, "cpu", "inference", "fp32", (10,), settings=s)


@pytest.fixture
def fake_worker(monkeypatch):
    from benchbench import backends

    made = {}

    def use(fail_at=None, source=None):
        made["backend"] = FakeBackend(fail_at)
        made["source"] = source or FakeSource(read=lambda t: (50.0,))
        monkeypatch.setattr(backends, "get", lambda name: made["backend"])
        monkeypatch.setattr(tm, "open_sources", lambda kind, runtime: ([made["source"]], {"rapl": "no RAPL here"}))
        return made

    return use


def test_worker_stops_the_sampler_and_closes_sources_when_the_timed_step_raises(fake_worker):
    from benchbench.worker import run

    made = fake_worker(fail_at=20_000)  # warm-up takes a few calls; the timed blocks reach 20 000
    rec = run(_fake_case(min_time=30, max_time=60))
    assert rec.status == "failed" and "boom in the timed loop" in rec.reason
    assert made["backend"].calls == 20_000
    assert telemetry_threads() == []
    assert made["source"].closed and made["source"].polls >= 2


def test_worker_records_energy_over_exactly_the_timed_window(fake_worker):
    from benchbench.worker import run

    fake_worker()  # a constant 50 W, labelled as the fake source's power integral
    rec = run(_fake_case())
    assert rec.status == "ok", rec.reason
    e, t = rec.energy, rec.telemetry
    window = rec.timing["timed_wall_s"]
    samples = 4 * rec.timing["iterations"]
    assert e["window_s"] == window and e["samples"] == samples and e["primary"] == "cpu"
    cpu = e["cpu"]
    assert cpu["source"] == "fake-power-integral"
    assert cpu["energy_j"] == pytest.approx(50 * window, rel=1e-9)
    assert cpu["avg_w"] == pytest.approx(50.0)
    assert cpu["j_per_sample"] == pytest.approx(50 * window / samples)
    assert cpu["samples_per_j"] == pytest.approx(samples / (50 * window))
    assert cpu["idle_w"] is None and "idle_baseline_s" in cpu["idle_reason"]
    assert t["enabled"] and t["hz"] == 100 and 0 <= t["sampler_cpu_s"] <= t["sampler_span_s"]
    assert t["sources"]["rapl"] == {"status": "unavailable", "reason": "no RAPL here"}
    assert t["summary"]["fake.power_w"] == {"mean": 50.0, "min": 50.0, "max": 50.0}
    assert len(t["series"]["t_s"]) == len(t["series"]["fake.power_w"]) <= tm.MAX_POINTS


def test_idle_baseline_gives_above_idle_energy():
    fake = FakeTime()
    # 20 W while idle (t < 10), 70 W from then on
    src = FakeSource(read=lambda t: (20.0 if t < 10 else 70.0,), fake=fake)

    def pause(seconds):  # the worker's idle wait, on the fake clock
        fake.now += seconds

    tel = Telemetry([src], {}, hz=10, idle_baseline_s=2.0, clock=fake.clock,
                    sleep=lambda timeout, stop: stop.wait(), pause=pause)  # fmt: skip
    with tel:
        tel.idle_baseline()
        fake.now = 10.0
        with tel.window() as clock:
            fake.now = 14.0
            clock()  # the timing loop's last reading: the window ends here
        _, energy = tel.report(samples=400, timed_wall_s=4.0)
    cpu = energy["cpu"]
    assert cpu["idle_w"] == pytest.approx(20.0) and cpu["idle_source"] == "fake-power-integral"
    assert cpu["energy_j"] == pytest.approx(280.0)
    assert cpu["above_idle_energy_j"] == pytest.approx(200.0)
    assert cpu["above_idle_j_per_sample"] == pytest.approx(0.5)
    assert cpu["above_idle_samples_per_j"] == pytest.approx(2.0)


# ------------------------------------------------------------------ the arithmetic


def test_integration_of_known_power_samples():
    times, watts = [0.0, 1.0, 2.0, 3.0], [0.0, 100.0, 100.0, 40.0]
    assert integrate(times, watts, 0.0, 3.0) == pytest.approx(50 + 100 + 70)
    assert integrate(times, watts, 0.5, 1.5) == pytest.approx(37.5 + 50)  # edges interpolated
    assert integrate(times, [0.0, None, 100.0, 40.0], 0.0, 2.0) == pytest.approx(100.0)  # a gap is bridged
    assert integrate(times, watts, -0.1, 2.0) is None  # the readings do not cover the window
    assert integrate([0.0], [5.0], 0.0, 0.0) is None


def test_counter_deltas_and_wrap():
    assert unwrap([10, 15, None, 30]) == ([0.0, 5.0, None, 20.0], None)
    assert unwrap([90, 95, 5, 20], wrap=100) == ([0.0, 5.0, 15.0, 30.0], None)
    assert unwrap([90, 5], wrap=None) == ([None, None], "the counter went backwards (reset?) during the window")
    cum, _ = unwrap([1000, 1100, 1300, 1600])
    assert counter_delta([0, 1, 2, 3], cum, 1.0, 3.0) == pytest.approx(500)
    assert counter_delta([0, 1, 2, 3], cum, 0.5, 2.5) == pytest.approx(400)  # 50 + 200 + 150


def _energy_of(source, times, rows, t0, t1, samples=100):
    return domain_energy(Reading.of(source, times, rows), t0, t1, samples)


COUNTER_AND_POWER = (Channel("energy_j", kind="counter", scale=1e-3, role="energy"),
                     Channel("power_w", scale=1e-3, role="power"))  # fmt: skip


def test_counter_preferred_over_power_and_never_zero_for_unknown():
    src = FakeSource(channels=COUNTER_AND_POWER, counter_period_s=0.1)
    times = [0.0, 1.0, 2.0]
    e = _energy_of(src, times, [(5_000, 100_000), (105_000, 100_000), (205_000, 100_000)], 0.0, 2.0)
    assert (e["source"], e["energy_j"], e["avg_w"], e["j_per_sample"], e["samples_per_j"]) == (
        "fake-counter",
        pytest.approx(200.0),
        pytest.approx(100.0),
        pytest.approx(2.0),
        pytest.approx(0.5),
    )
    assert e["warnings"] == []
    # a counter that did not move: the power integral, with the reason
    e = _energy_of(src, times, [(5_000, 90_000), (5_000, 90_000), (5_000, 90_000)], 0.0, 2.0)
    assert e["source"] == "fake-power-integral" and e["energy_j"] == pytest.approx(180.0)
    assert e["warnings"] == ["fake-counter not used: the energy counter did not move during the window"]
    # nothing usable: unavailable with the reasons, every figure None
    e = _energy_of(src, times, [(5_000, None), (5_000, None), (5_000, None)], 0.0, 2.0)
    assert e["source"] == "unavailable" and e["energy_j"] is None and e["avg_w"] is None
    assert e["j_per_sample"] is None and e["samples_per_j"] is None
    assert e["reason"] == ("the energy counter did not move during the window; "
                           "the power readings do not cover the window")  # fmt: skip


def test_window_shorter_than_the_counter_period_uses_power_with_a_warning():
    src = FakeSource(channels=COUNTER_AND_POWER, counter_period_s=0.1)
    times = [0.0, 0.02, 0.04, 0.06]
    rows = [(0, 200_000), (0, 200_000), (10_000, 200_000), (10_000, 200_000)]
    e = _energy_of(src, times, rows, 0.0, 0.06)
    assert e["source"] == "fake-power-integral" and e["energy_j"] == pytest.approx(12.0)
    assert "shorter than the energy counter's update period (~100 ms assumed)" in e["warnings"][0]


def test_series_downsampled_to_at_most_300_points_keeping_means_and_flags():
    chans = (Channel("power_w", role="power"), Channel("reasons", reduce="or", flags={1: "idle", 4: "power_cap"}),
             Channel("mem", reduce="max"))  # fmt: skip
    src = FakeSource(channels=chans)
    times = [i * 0.01 for i in range(1001)]
    rows = [(float(i % 10), 4 if i == 500 else 0, i) for i in range(1001)]
    series, summary = series_and_summary([Reading.of(src, times, rows)], times, 0.0, 10.0)
    n = len(series["t_s"])
    assert n <= tm.MAX_POINTS and all(len(v) == n for v in series.values())
    assert summary["fake.power_w"]["mean"] == pytest.approx(sum(i % 10 for i in range(1001)) / 1001)
    assert summary["fake.reasons"] == {"seen": ["power_cap"], "fraction_of_ticks": {"power_cap": 1 / 1001}}
    assert max(series["fake.mem"]) == 1000 and 4 in series["fake.reasons"]


def test_cpu_source_reads_the_machine_counters_at_most_ten_times_a_second(monkeypatch):
    from benchbench.measure.sources import cpu

    now = {"t": 100.0}
    monkeypatch.setattr(cpu.os, "times", lambda: SimpleNamespace(user=1.0, system=0.5, elapsed=now["t"]))
    monkeypatch.setattr(cpu, "_busy_and_total_s", lambda: (30.0, 80.0))
    src = cpu.open_cpu()
    got = []
    for t in (100.0, 100.05, 100.1, 100.12, 100.25):
        now["t"] = t
        got.append(src.poll())
    assert got == [(1.5, 30.0, 80.0), (1.5, None, None), (1.5, 30.0, 80.0), (1.5, None, None), (1.5, 30.0, 80.0)]
    assert src.poll_edge() == (1.5, 30.0, 80.0)  # the sampler's first and last reading: all of it


def test_counter_rates_bridge_ticks_without_a_reading():
    src = FakeSource(name="cpu", domain=None, channels=(
        Channel("busy_s", kind="counter", rate="busy_pct", rate_scale=100.0, per="total_s"),
        Channel("total_s", kind="counter")))  # fmt: skip
    times = [i * 0.01 for i in range(41)]  # 100 Hz, the machine's counters read every 10th tick
    rows = [(i * 0.005, i * 0.02) if i % 10 == 0 else (None, None) for i in range(41)]
    series, summary = series_and_summary([Reading.of(src, times, rows)], times, 0.0, 0.4, max_points=4)
    assert summary["cpu.busy_pct"] == {"mean": pytest.approx(25.0)}
    assert series["cpu.busy_pct"] == pytest.approx([25.0] * 4) and "cpu.total_s" not in series


def test_a_fully_busy_machine_is_100_percent_not_a_rounding_error_above():
    src = FakeSource(name="cpu", domain=None, channels=(
        Channel("busy_s", kind="counter", rate="busy_pct", rate_scale=100.0, per="total_s"),
        Channel("total_s", kind="counter")))  # fmt: skip
    times = [0.0, 0.1, 0.2, 0.3]
    # every CPU second busy; the sums of /proc/stat's fields round differently (seen in CI: 100.00000000003)
    rows = [(1000.1 * i + 0.3, 1000.1 * i + 0.3 - 1e-7 * i) for i in range(4)]  # busy 1e-10 over
    _, summary = series_and_summary([Reading.of(src, times, rows)], times, 0.05, 0.25, max_points=4)
    assert summary["cpu.busy_pct"]["mean"] == 100.0
    # a real excess is not hidden: busy above its whole by more than rounding stays visible
    rows = [(1.1 * i, 1.0 * i) for i in range(4)]
    _, summary = series_and_summary([Reading.of(src, times, rows)], times, 0.05, 0.25, max_points=4)
    assert summary["cpu.busy_pct"]["mean"] == pytest.approx(110.0)


# ------------------------------------------------------------------ RAPL on the fixture tree


@pytest.fixture
def powercap(tmp_path):
    root = tmp_path / "powercap"
    shutil.copytree(POWERCAP, root)
    return root


def set_uj(root, zone, value):
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_rapl_reads_package_domains_only(powercap):
    src = rapl.open_rapl(str(powercap))
    assert [p.zone for p in src.packages] == ["intel-rapl:0", "intel-rapl:1"]
    assert [c.name for c in src.channels] == ["package-0.energy_j", "package-1.energy_j"]
    assert src.poll() == (262143000000, 5000000)


def test_rapl_energy_over_a_wrap_without_counting_subdomains(powercap):
    src = rapl.open_rapl(str(powercap))
    rows = [src.poll()]
    for pkg0, pkg1, core in ((262143300000, 6000000, 99000000), (200000, 7000000, 500000000)):
        set_uj(powercap, "intel-rapl:0", pkg0)  # wraps at max_energy_range_uj 262143328850
        set_uj(powercap, "intel-rapl:1", pkg1)
        set_uj(powercap, "intel-rapl:0:0", core)  # a subdomain: must not change the result
        set_uj(powercap, "intel-rapl-mmio:0", pkg0)  # a duplicate of package 0: neither
        rows.append(src.poll())
    e = _energy_of(src, [0.0, 1.0, 2.0], rows, 0.0, 2.0, samples=1000)
    package0 = (262143300000 - 262143000000) + (200000 + 262143328850 - 262143300000)  # µJ
    package1 = 7000000 - 5000000
    assert e["source"] == "rapl"
    assert e["energy_j"] == pytest.approx((package0 + package1) * 1e-6)
    assert e["avg_w"] == pytest.approx((package0 + package1) * 1e-6 / 2)


@pytest.mark.parametrize(
    "setup, reason",
    [
        (lambda root: shutil.rmtree(root), "no RAPL: {root} does not exist"),
        (
            lambda root: [shutil.rmtree(root / z) for z in ("intel-rapl:0", "intel-rapl:1")],
            "no RAPL package domain under {root}",
        ),
    ],
    ids=["no powercap", "no package zone"],
)
def test_rapl_unavailable_with_the_reason(powercap, setup, reason):
    setup(powercap)
    with pytest.raises(Unavailable) as info:
        rapl.open_rapl(str(powercap))
    assert str(info.value).startswith(reason.format(root=powercap))


def test_rapl_root_only_counters_are_unavailable_with_the_reason(powercap):
    def read(path):  # as on Linux >= 5.10 for a non-root user (tests run as root, so faked)
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", path)
        return open(path, "rb").read()

    with pytest.raises(Unavailable, match=r"readable by root only .*intel-rapl:0/energy_uj: permission denied"):
        rapl.open_rapl(str(powercap), read=read)


# ------------------------------------------------------------------ NVML through a fake pynvml


class FakeNvml:
    """The part of pynvml the NVML source uses, over scripted GPUs."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, gpus):
        self.gpus = gpus
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.inits -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, h):
        return h["uuid"]

    def nvmlDeviceGetName(self, h):
        return h["name"]

    def nvmlDeviceGetPciInfo(self, h):
        return SimpleNamespace(busId=h["pci"].encode())

    def nvmlDeviceGetPowerUsage(self, h):
        return h["power_mw"]()

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if "energy_mj" not in h:
            raise self.NVMLError("Not Supported")
        return h["energy_mj"]()

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=97, memory=41)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=3 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 61

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0x4

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700_000

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12040


def _gpu(uuid, pci, watts, energy=True, name="NVIDIA H100 80GB HBM3"):
    state = {"mj": 1_000_000}

    def energy_mj():
        state["mj"] += watts * 10  # 10 ms of `watts` per read
        return state["mj"]

    g = {"uuid": uuid, "name": name, "pci": pci, "power_mw": lambda: watts * 1000}
    if energy:
        g["energy_mj"] = energy_mj
    return g


A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
B = "GPU-bbbbbbbb-5555-6666-7777-888888888888"


def test_nvml_matches_the_case_gpu_by_uuid_never_by_index(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # cuda:0 of the case is NVML's device 1
    fake = FakeNvml([_gpu(A, "00000000:1B:00.0", 90), _gpu(B, "00000000:3B:00.0", 400, energy=False)])
    src = nvml.open_nvml(B[len("GPU-") :], nvml=fake)  # torch prints the UUID without "GPU-"
    info = src.info()
    assert (info["uuid"], info["matched_by"], info["pci_bus_id"]) == (B, "uuid", "00000000:3B:00.0")
    assert info["unsupported"] == {"energy_j": "Not Supported"} and info["energy_counter"] is False
    assert info["power_limit_w"] == 700 and info["driver"] == "550.54.15"
    names = [c.name for c in src.channels]
    assert names == ["power_w", "gpu_util_pct", "mem_util_pct", "memory_used_bytes", "sm_clock_hz",
                     "temperature_c", "clock_event_reasons"]  # fmt: skip
    assert src.poll() == (400_000, 97, 41, 3 * 2**30, 1980, 61, 0x4)
    e = _energy_of(src, [0.0, 1.0, 2.0], [src.poll(), src.poll(), src.poll()], 0.0, 2.0, samples=1600)
    assert (e["source"], e["energy_j"], e["j_per_sample"]) == ("nvml-power-integral", 800.0, 0.5)
    times = [0.0, 1.0, 2.0]
    _, summary = series_and_summary([Reading.of(src, times, [src.poll()] * 3)], times, 0.0, 2.0)
    assert summary["nvml.sm_clock_hz"]["mean"] == pytest.approx(1.98e9)
    assert summary["nvml.clock_event_reasons"]["seen"] == ["sw_power_cap"]
    src.close()
    src.close()
    assert fake.inits == 0


def test_nvml_energy_counter_deltas():
    fake = FakeNvml([_gpu(A, "00000000:1B:00.0", 250)])
    src = nvml.open_nvml(A, nvml=fake)
    assert [c.name for c in src.channels][:2] == ["power_w", "energy_j"]
    rows = [src.poll() for _ in range(3)]  # the counter moves 2 500 mJ per read
    e = _energy_of(src, [0.0, 1.0, 2.0], rows, 0.0, 2.0, samples=100)
    assert (e["source"], e["energy_j"], e["avg_w"]) == ("nvml-energy-counter", pytest.approx(5.0), pytest.approx(2.5))
    assert "short window" not in " ".join(e["warnings"])
    e = _energy_of(src, [0.0, 0.2, 0.4], rows, 0.0, 0.4, samples=100)
    assert e["source"] == "nvml-energy-counter" and "uncertain by up to ±50%" in e["warnings"][0]
    src.close()


@pytest.mark.parametrize("field_ok", [True, False])
def test_nvml_prefers_instantaneous_power_where_the_driver_has_it(field_ok):
    class WithField(FakeNvml):
        NVML_FI_DEV_POWER_INSTANT = 186

        def nvmlDeviceGetFieldValues(self, h, ids):
            assert ids == [186]
            value = SimpleNamespace(uiVal=321_000)
            return [SimpleNamespace(nvmlReturn=0 if field_ok else 3, valueType=1, value=value)]

    src = nvml.open_nvml(A, nvml=WithField([_gpu(A, "00000000:1B:00.0", 250)]))
    assert src.poll()[0] == (321_000 if field_ok else 250_000)
    assert src.info()["power_reading"].startswith("instantaneous" if field_ok else "nvmlDeviceGetPowerUsage")
    src.close()


@pytest.mark.parametrize(
    "uuid, pci, reason",
    [
        (None, None, "the case's runtime has no GPU UUID or PCI bus id (NVML is never matched by index)"),
        ("GPU-cccccccc", None, "no GPU seen by NVML has UUID 'GPU-cccccccc'"),
    ],
)
def test_nvml_without_a_match_is_unavailable(uuid, pci, reason):
    fake = FakeNvml([_gpu(A, "00000000:1B:00.0", 90)])
    with pytest.raises(Unavailable) as info:
        nvml.open_nvml(uuid, pci, nvml=fake)
    assert str(info.value).startswith(reason)
    assert fake.inits == 0  # NVML shut down again


def test_nvml_not_installed_is_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    with pytest.raises(Unavailable, match=r"^nvidia-ml-py not installed \(pip install 'benchbench\[gpu\]'\)$"):
        nvml.open_nvml(A)
    inv = devices.gpu_inventory(env={})
    assert inv["available"] is False and inv["reason"].startswith("nvidia-ml-py not installed")


# ------------------------------------------------------------------ inventory


@pytest.mark.parametrize(
    "env, visible",
    [
        ({}, [True, True, True]),
        ({"CUDA_VISIBLE_DEVICES": ""}, [False, False, False]),
        ({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, [False, True, False]),
        ({"CUDA_VISIBLE_DEVICES": "2,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, [False, True, True]),
        ({"CUDA_VISIBLE_DEVICES": "0,7,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, [False, True, False]),  # stops at 7
        ({"CUDA_VISIBLE_DEVICES": "1"}, [None, None, None]),  # fastest first: unknown without CUDA
    ],
)
def test_cuda_visibility(env, visible):
    # NVML order ≠ PCI order on purpose: A is on bus 1B, B on 07, C on 5E
    gpus = [{"uuid": A, "pci_bus_id": "00000000:1B:00.0"}, {"uuid": B, "pci_bus_id": "00000000:07:00.0"},
            {"uuid": "GPU-cccc", "pci_bus_id": "00000000:5E:00.0"}]  # fmt: skip
    note = devices.cuda_visibility(gpus, env)
    assert [g["cuda_visible"] for g in gpus] == visible
    assert (note is not None) == (visible[0] is None)


def test_inventory_of_gpus_and_its_text(monkeypatch):
    fake = FakeNvml([_gpu(A, "00000000:1B:00.0", 90), _gpu(B, "00000000:3B:00.0", 90, energy=False, name="Tesla T4")])
    inv = {"cpu": devices.cpu_inventory(str(POWERCAP)), "gpu": devices.gpu_inventory(fake, env={}),
           "tpu": {"available": False, "reason": "no TPU here"}}  # fmt: skip
    assert inv["cpu"]["rapl"] == {
        "readable": True,
        "packages": [{"zone": "intel-rapl:0", "name": "package-0"}, {"zone": "intel-rapl:1", "name": "package-1"}],
    }
    g = inv["gpu"]
    assert g["available"] and g["driver"] == "550.54.15" and g["cuda_driver"] == "12.4"
    assert [(x["nvml_index"], x["name"], x["energy_counter"]) for x in g["gpus"]] == [
        (0, "NVIDIA H100 80GB HBM3", True),
        (1, "Tesla T4", False),
    ]
    text = devices.format_inventory(inv)
    assert "RAPL energy: readable (package-0, package-1)" in text
    assert "[0] NVIDIA H100 80GB HBM3: 80.0 GiB, power limit 700 W, energy counter yes, CUDA visible yes" in text
    assert "[1] Tesla T4: 80.0 GiB, power limit 700 W, energy counter no" in text
    assert f"uuid {B}  pci 00000000:3B:00.0" in text
    assert "TPU   unavailable: no TPU here" in text
    assert fake.inits == 0


def test_tpu_inventory_from_pci_vendor(tmp_path):
    for name, vendor in (("0000:00:04.0", "0x1ae0"), ("0000:00:05.0", "0x8086")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "vendor").write_text(vendor + "\n")
        (tmp_path / name / "device").write_text("0x0063\n")
    env = {"TPU_ACCELERATOR_TYPE": "v5litepod-1"}
    inv = devices.tpu_inventory(str(tmp_path), dev_root=str(tmp_path / "dev"), env=env)
    assert inv["available"] and inv["count"] == 1
    assert inv["chips"] == [{"pci": "0000:00:04.0", "device_id": "0x0063"}]
    assert "TPU   1 chip(s) (v5litepod-1): 0000:00:04.0" in devices.format_inventory(
        {"cpu": devices.cpu_inventory(str(tmp_path / "none")), "gpu": {"available": False, "reason": "-"}, "tpu": inv}
    )
    none = devices.tpu_inventory(str(tmp_path / "nothing"), dev_root=str(tmp_path / "dev"), env={})
    assert none["available"] is False and "no Google TPU PCI device" in none["reason"]


def test_devices_inventory_runs_here():
    inv = devices.inventory()
    assert set(inv) == {"cpu", "gpu", "tpu"}
    text = devices.format_inventory(inv)
    assert text.startswith("CPU ") and "\nGPU " in text and "\nTPU " in text
    assert inv["cpu"]["rapl"]["readable"] or inv["cpu"]["rapl"]["reason"]


# ------------------------------------------------------------------ records and the runner


def test_old_records_load_with_empty_telemetry_and_energy():
    d = Record(case={"case_id": "x"}, status="ok").to_dict()
    del d["telemetry"], d["energy"]
    rec = Record.from_dict(d)
    assert rec.telemetry == {} and rec.energy == {}


def test_cooldown_between_cases_only(monkeypatch, tmp_path):
    from benchbench.executors.local import LocalExecutor
    from benchbench.suite.schema import parse_suite

    suite = parse_suite("name: c\nmatrix: {model: [seed_mlp, seed_cnn], batch_size: [1, 2], device: [cpu, cuda]}\n"
                        "defaults: {cooldown_s: 2.5}\n", "c.yaml")  # fmt: skip
    slept, ran = [], []
    monkeypatch.setattr(runner, "_probes_for_environment", lambda fws: {})

    def run_case(case, work, log, paths):
        ran.append((case.label, len(slept)))
        return Record(case=case.to_dict(), status="ok")

    executor = LocalExecutor(
        run_case=run_case, sleep=slept.append, skip_reason=lambda case: "no GPU" if case.device == "cuda" else None
    )
    runner.run(suite, list(suite.cases), tmp_path / "run", executor=executor)
    assert [n for _, n in ran] == [0, 1, 2, 3]  # no rest before the first case, one before each other
    assert slept == [2.5, 2.5, 2.5]  # skipped (cuda) cases are not waited for


# ------------------------------------------------------------------ real runs


TINY = """\
name: tel
matrix:
  model: [seed_cnn, seed_mlp]
  batch_size: [4]
defaults:
  input_shape: [3, 32, 32]
  warmup_iters: 1
  min_time: 0.3
  max_time: 1
  min_iters: 8
  telemetry: {hz: 50}
models:
  seed_mlp: {telemetry: {hz: 0}}
"""


@pytest.mark.slow
def test_a_real_cpu_run_records_energy_honestly_and_cpu_utilisation(tmp_path):
    proc = bb("run", write(tmp_path / "tel.yaml", TINY), "--out", tmp_path / "out", "--strict", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cnn, mlp = results.read_records(run_dir_of(tmp_path / "out"))
    e, t = cnn.energy, cnn.telemetry
    assert e["primary"] == "cpu" and e["window_s"] == cnn.timing["timed_wall_s"]
    assert e["samples"] == 4 * cnn.timing["iterations"]
    cpu = e["cpu"]
    if cpu["source"] == "unavailable":  # no RAPL here (a VM), or root-only counters
        assert cpu["reason"] and t["sources"]["rapl"]["reason"] == cpu["reason"]
        assert [cpu[k] for k in ("energy_j", "avg_w", "j_per_sample", "samples_per_j")] == [None] * 4
    else:
        assert cpu["source"] == "rapl" and cpu["energy_j"] > 0 and cpu["samples_per_j"] > 0
    # process 1's sampler (its window is its share of the case's time): at least half its rate there
    assert t["enabled"] and t["hz"] == 50 and t["ticks_in_window"] >= max(3, 0.5 * 50 * t["window_s"])
    assert t["summary"]["cpu.process_cpu_pct"]["mean"] > 0
    assert 0 < t["summary"]["cpu.system_cpu_pct"]["mean"] <= 100
    assert 0 < len(t["series"]["t_s"]) == len(t["series"]["cpu.process_cpu_pct"]) <= tm.MAX_POINTS
    assert telemetry_threads() == []
    # telemetry off for one model: said so, and no energy figure
    assert mlp.telemetry == {"enabled": False, "reason": "telemetry off (telemetry.hz: 0)"}
    assert mlp.energy["cpu"]["source"] == "unavailable" and mlp.energy["cpu"]["energy_j"] is None


# ------------------------------------------------------------------ on a GPU

CUDA_SKIP = probe.device_skip_reason("torch", "cuda")

GPU_SUITE = """\
name: gpu-energy
matrix:
  model: [resnet50]
  batch_size: [64]
  device: [cuda]
defaults:
  warmup_iters: 3
  min_time: 3
  max_time: 6
  min_iters: 10
  telemetry: {hz: 20, idle_baseline_s: 2}
"""


@pytest.mark.gpu
@pytest.mark.skipif(CUDA_SKIP is not None, reason=f"no GPU: {CUDA_SKIP}")
def test_a_cuda_run_records_gpu_energy_from_nvml(tmp_path):
    proc = bb("run", write(tmp_path / "g.yaml", GPU_SUITE), "--out", tmp_path / "out", "--strict", "--json")
    assert proc.returncode == 0, proc.stderr
    (rec,) = results.read_records(run_dir_of(tmp_path / "out"))
    gpu, nv = rec.energy["gpu"], rec.telemetry["sources"]["nvml"]
    assert rec.energy["primary"] == "gpu" and "cpu" in rec.energy
    try:
        nvml.load()
    except Unavailable:
        assert gpu["source"] == "unavailable" and gpu["reason"].startswith("nvidia-ml-py not installed")
        return
    assert nv["status"] == "ok", nv
    assert nvml.bare_uuid(nv["uuid"]) == nvml.bare_uuid(rec.runtime["device_uuid"])
    assert gpu["source"] in ("nvml-energy-counter", "nvml-power-integral"), gpu
    assert gpu["avg_w"] > 10 and gpu["j_per_sample"] > 0 and gpu["samples_per_j"] > 0
    assert gpu["idle_w"] is None or 0 < gpu["idle_w"] < gpu["avg_w"]
    summary = rec.telemetry["summary"]
    assert summary["nvml.gpu_util_pct"]["mean"] > 50 and summary["nvml.memory_used_bytes"]["max"] > 0
    print(
        f"\nresnet50 bs64 fp32 on {rec.runtime['device_name']}: {gpu['avg_w']:.0f} W, "
        f"{gpu['j_per_sample'] * 1e3:.2f} mJ/sample ({gpu['source']}), idle {gpu['idle_w']} W"
    )


def test_a_fault_in_the_telemetry_never_fails_the_case(fake_worker):
    from benchbench.worker import run

    broken = FakeSource(read=lambda t: (50.0,))
    broken.channels = (Channel("power_w", role="power"),) * 2  # two readings expected, one given
    fake_worker(source=broken)
    rec = run(_fake_case())
    assert rec.status == "ok", rec.reason
    assert rec.telemetry["enabled"] is False and rec.telemetry["reason"].startswith("telemetry failed: IndexError")
    assert rec.energy["cpu"]["source"] == "unavailable" and rec.energy["cpu"]["energy_j"] is None


def test_devices_command_prints_the_inventory():
    proc = bb("devices")
    if "invalid choice: 'devices'" in proc.stderr:
        pytest.skip("cli.py has no `devices` command yet (its lines are in the issue 4 report)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("CPU ") and "\nGPU " in proc.stdout and "\nTPU " in proc.stdout


def test_worker_samples_the_timed_window_not_the_warm_up(fake_worker):
    from benchbench.worker import run

    calls_at_poll = []
    made = {}

    def read(t):
        calls_at_poll.append(made["backend"].calls)
        return (50.0,)

    made.update(fake_worker(source=FakeSource(read=read)))
    rec = run(_fake_case(warmup_iters=3))
    assert rec.status == "ok", rec.reason
    untimed = 1 + rec.timing["warmup_iters"]  # the cold call and the warm-up
    assert rec.timing["warmup_iters"] >= 3
    assert calls_at_poll[0] == untimed  # the opening reading: after warm-up, before the first timed step
    assert calls_at_poll[-1] == untimed + rec.timing["iterations"]  # the closing one: after the last


# ------------------------------------------------------- issue 17: every device, settled idle


class TimedNvml(FakeNvml):
    """FakeNvml whose GPUs draw constant power on a fake clock (the energy counter is
    watts × time), found by UUID, PCI bus id, or as MIG slices of a parent GPU."""

    def __init__(self, gpus, migs=None):
        super().__init__(gpus)
        self.migs = migs or {}  # "MIG-…" uuid -> index of the parent GPU

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        for g in self.gpus:
            if g["pci"] == bus:
                return g
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid in self.migs:
            return {"mig_of": self.migs[uuid]}
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h):
        return self.gpus[h["mig_of"]]


def _timed_gpu(uuid, pci, watts, fake: FakeTime):
    return {"uuid": uuid, "name": "NVIDIA H100 80GB HBM3", "pci": pci, "power_mw": lambda: watts * 1000,
            "energy_mj": lambda: 1_000_000 + watts * fake.now * 1000}  # fmt: skip


def _window_energy(sources, missing, fake: FakeTime, t0=10.0, t1=14.0, samples=400):
    tel = Telemetry(sources, missing, hz=10, device_kind="cuda", clock=fake.clock,
                    sleep=lambda timeout, stop: stop.wait())  # fmt: skip
    with tel:
        fake.now = t0
        with tel.window() as clock:
            fake.now = t1
            clock()
        return tel.report(samples=samples, timed_wall_s=t1 - t0)


C = "GPU-cccccccc-9999-0000-1111-222222222222"


def test_a_case_on_several_gpus_reads_every_rank_gpu_and_sums_them(monkeypatch):
    fake = FakeTime()
    gpus = TimedNvml([_timed_gpu(A, "00000000:1B:00.0", 100, fake), _timed_gpu(B, "00000000:3B:00.0", 300, fake),
                      _timed_gpu(C, "00000000:5E:00.0", 999, fake)])  # fmt: skip
    monkeypatch.setattr(nvml, "load", lambda: gpus)
    # torch: rank 0 records every rank's GPU UUID (runtime.device_uuids); the third GPU is not the case's
    sources, missing = tm.open_sources("cuda", {"device_uuid": A[4:], "device_uuids": [A[4:], B[4:]]})
    assert sorted(s.name for s in sources if s.domain == "gpu") == ["nvml[0]", "nvml[1]"]
    telemetry, energy = _window_energy(sources, missing, fake)
    gpu = energy["gpu"]
    assert gpu["source"] == "nvml-energy-counter" and gpu["energy_j"] == pytest.approx(400 * 4.0)
    assert gpu["avg_w"] == pytest.approx(400.0) and gpu["j_per_sample"] == pytest.approx(4.0)
    assert [(d["name"], d["device_id"], d["energy_j"]) for d in gpu["devices"]] == [
        ("nvml[0]", A, pytest.approx(400.0)), ("nvml[1]", B, pytest.approx(1200.0))]  # fmt: skip
    assert "the sum over 2 devices" in gpu["note"]
    assert telemetry["summary"]["nvml[1].power_w"]["mean"] == pytest.approx(300.0)
    assert gpus.inits == 0  # every source closed


def test_mirrored_strategy_gpus_are_found_by_pci_bus_id(monkeypatch):
    fake = FakeTime()
    gpus = TimedNvml([_timed_gpu(A, "00000000:1B:00.0", 100, fake), _timed_gpu(B, "00000000:3B:00.0", 300, fake)])
    monkeypatch.setattr(nvml, "load", lambda: gpus)
    # TensorFlow: no UUIDs, the PCI bus ids of GPU:0…N-1 (runtime.device_pci_bus_ids)
    runtime = {"device_pci_bus_id": "00000000:1B:00.0", "device_pci_bus_ids": ["00000000:1B:00.0", "00000000:3B:00.0"]}
    sources, missing = tm.open_sources("cuda", runtime)
    _, energy = _window_energy(sources, missing, fake)
    assert energy["gpu"]["energy_j"] == pytest.approx(1600.0) and len(energy["gpu"]["devices"]) == 2


def test_a_gpu_of_several_that_cannot_be_read_leaves_the_sum_unavailable_naming_it(monkeypatch):
    fake = FakeTime()
    gpus = TimedNvml([_timed_gpu(A, "00000000:1B:00.0", 100, fake)])
    monkeypatch.setattr(nvml, "load", lambda: gpus)
    sources, missing = tm.open_sources("cuda", {"device_uuids": [A, B]})
    assert set(missing) == {"nvml[1]", "rapl"} or set(missing) == {"nvml[1]"}
    _, energy = _window_energy(sources, missing, fake)
    gpu = energy["gpu"]
    assert gpu["source"] == "unavailable" and gpu["energy_j"] is None
    assert gpu["reason"].startswith("nvml[1]: no GPU seen by NVML has UUID")
    assert gpu["devices"][0]["energy_j"] == pytest.approx(400.0)  # the one read stays listed


def test_a_mig_slice_says_its_energy_is_the_whole_gpus_and_two_slices_count_once(monkeypatch):
    fake = FakeTime()
    gpus = TimedNvml([_timed_gpu(A, "00000000:1B:00.0", 250, fake)],
                     migs={"MIG-1111": 0, "MIG-2222": 0})  # fmt: skip
    monkeypatch.setattr(nvml, "load", lambda: gpus)
    sources, missing = tm.open_sources("cuda", {"device_uuid": "MIG-1111"})
    _, energy = _window_energy(sources, missing, fake)
    assert energy["gpu"]["energy_j"] == pytest.approx(1000.0)
    assert "MIG instance" in energy["gpu"]["note"] and "whole GPU" in energy["gpu"]["note"]
    # a two-device case on two slices of one GPU: the GPU's counter once, not twice
    sources, missing = tm.open_sources("cuda", {"device_uuids": ["MIG-1111", "MIG-2222"]})
    assert [s.name for s in sources if s.domain == "gpu"] == ["nvml[0]"]
    _, energy = _window_energy(sources, missing, fake)
    assert energy["gpu"]["energy_j"] == pytest.approx(1000.0)
    assert "nvml[1] is on the same GPU" in energy["gpu"]["note"] and "whole GPU" in energy["gpu"]["note"]
    assert gpus.inits == 0


def test_idle_baseline_waits_for_power_to_settle_after_the_build():
    fake = FakeTime()
    # clocks still raised right after the build: 120 W for 4 s, then 30 W at idle
    src = FakeSource(read=lambda t: (120.0 if t < 4 else 30.0,), fake=fake)

    def pause(seconds):
        fake.now += seconds

    tel = Telemetry([src], {}, hz=10, idle_baseline_s=1.0, clock=fake.clock,
                    sleep=lambda timeout, stop: stop.wait(), pause=pause)  # fmt: skip
    with tel:
        tel.idle_baseline()
        fake.now = 20.0
        with tel.window() as clock:
            fake.now = 22.0
            clock()
        telemetry, energy = tel.report(samples=10, timed_wall_s=2.0)
    assert energy["cpu"]["idle_w"] == pytest.approx(30.0)  # not the 120 W of the first windows
    settle = telemetry["idle_settle"]
    assert settle["settled"] is True and settle["settle_s"] == pytest.approx(5.0)
    assert settle["windows_w"][:3] == [pytest.approx(120.0)] * 3 and settle["windows_w"][-1] == pytest.approx(30.0)
    assert telemetry["idle_baseline_s"] == pytest.approx(1.0)


def test_idle_baseline_that_never_settles_says_so():
    fake = FakeTime()
    src = FakeSource(read=lambda t: (100.0 + 20.0 * (int(t) % 2),), fake=fake)  # 100 / 120 W, alternating

    tel = Telemetry([src], {}, hz=5, idle_baseline_s=1.0, clock=fake.clock,
                    sleep=lambda timeout, stop: stop.wait(), pause=lambda s: setattr(fake, "now", fake.now + s))  # fmt: skip
    tel.idle_baseline()
    assert tel.idle_settle["settled"] is False
    assert tel.idle_settle["settle_s"] + 1.0 == pytest.approx(tm.IDLE_SETTLE_MAX_S, abs=1.0)


def test_xla_cpu_device_energy_is_the_cpus():
    # device: xla is XLA's CPU device: its work's energy is the CPU domain's, not an "xla"
    # domain no source can ever measure (which made every xla case's J/sample unavailable)
    tel = Telemetry([], {}, hz=0, device_kind="xla")
    assert tel.primary == "cpu" and tel.domains == ["cpu"]
    assert Telemetry([], {}, hz=0, device_kind="cuda").domains == ["gpu", "cpu"]
