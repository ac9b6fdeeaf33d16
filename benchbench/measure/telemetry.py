"""Telemetry over the timed window: a sampler thread that polls power, energy and
utilisation sources, and the arithmetic that turns its readings into the record's
``telemetry`` (what was seen, as a time series of at most 300 points) and ``energy``
(joules, watts, joules per sample, samples per joule — each with its source).

How the window is found. The worker starts the sampler just before
:func:`benchbench.measure.timing.measure` and stops it (in a ``finally``) just after,
and gives ``measure`` an :class:`EdgeClock`: the loop reads its clock last to compute
``timed_wall_s``, so that reading is the end of the timed window and ``end -
timed_wall_s`` its start — exactly, in the sampler's own clock. The readings taken
during the first iteration and warm-up are only there to bracket the window: every
figure covers the timed window alone, with each counter and power reading interpolated
linearly at the two edges (ticks are ≤ 100 ms apart, and the warm-up runs the same step,
so the power there is the power of the window).

Energy, per domain (``gpu``: NVML, or AMD SMI on PyTorch's ROCm build; ``cpu``: the RAPL
package counters):

1. the source's energy counter, differenced over the window (``nvml-energy-counter``,
   ``rapl``), unless the window is shorter than the counter's update period or the
   counter did not move — then, with a warning,
2. its power samples integrated over the window by the trapezoidal rule
   (``nvml-power-integral``), else
3. ``unavailable``, with the reason. An unknown figure is ``None``, never 0.

Counters are read at every tick and unwrapped between ticks (RAPL's ``energy_uj``
wraps at ``max_energy_range_uj``), so a wrap inside the window costs nothing.

Everything here takes its clock and its sleep as arguments: the tests drive the
sampler with a fake clock and count its ticks exactly.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from benchbench.measure.sources import Source, Unavailable

MAX_HZ = 100.0
MAX_POINTS = 300  # the record's time series is downsampled to at most this many points
THREAD_NAME = "benchbench-telemetry"
UNAVAILABLE = "unavailable"
DOMAIN_SOURCE = {"gpu": ("nvml", "amdsmi"), "cpu": ("rapl",)}  # whose counters measure each domain's energy

NAP_S = 0.05  # the sampler sleeps in naps of at most this: how long stop() may wait for it
# the idle baseline waits for power to settle after the build (clocks may still be raised):
IDLE_SETTLE_S = 5.0  # at least this long idle before the baseline window ends
IDLE_SETTLE_MAX_S = 60.0  # at most this long; the record says whether it settled
IDLE_STABLE_REL = 0.05  # settled: the last window's power within this of the one before

Clock = Callable[[], float]
Sleep = Callable[[float, threading.Event], bool]  # (timeout, stop event) -> stop requested


def nap(timeout: float, stop: threading.Event) -> bool:
    """Sleep ``timeout`` seconds in naps of at most ``NAP_S``; True once ``stop`` is set.
    A plain ``time.sleep`` wake-up costs the sampler thread about half the CPU time of an
    ``Event.wait`` one (measured here: ~50 vs ~80 µs on a busy 2-core VM), which matters
    at 100 Hz; the price is that stopping takes up to one nap."""
    end = time.perf_counter() + timeout
    while not stop.is_set():
        left = end - time.perf_counter()
        if left <= 0:
            return False
        time.sleep(min(left, NAP_S))
    return True


# --------------------------------------------------------------------- the sampler


class Sampler:
    """Polls every source once per tick on its own thread, at ``hz`` ticks per second
    (on a fixed schedule: a late tick does not shift the ones after it; deadlines already
    past are skipped and counted in ``missed``). :meth:`start` and :meth:`stop` each take
    a reading themselves, so the readings always bracket what happened in between.

    ``sleep(timeout, stop)`` waits up to ``timeout`` seconds and returns True once
    ``stop`` is set; tests pass one that advances a fake ``clock`` instead.
    """

    def __init__(self, sources: Sequence[Source], hz: float, *, clock: Clock = time.perf_counter,
                 sleep: Sleep = nap):  # fmt: skip
        if not 0 < hz <= MAX_HZ:
            raise ValueError(f"telemetry rate must be in (0, {MAX_HZ:g}] Hz, got {hz}")
        self.sources = list(sources)
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self.clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.times: list[float] = []
        self.rows: list[list[tuple | None]] = [[] for _ in self.sources]
        self.missed = 0
        self.thread_cpu_s: float | None = None  # CPU time the sampler thread itself used
        self.errors: dict[str, dict] = {}  # source name -> {"count": n, "first": message}
        self.stopped = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Sampler:
        if self._thread is not None:
            raise RuntimeError("a Sampler is started once")
        self._tick(edge=True)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then take the closing reading. Safe to call twice."""
        if self._thread is None or self.stopped:
            return
        self._stop.set()
        self._thread.join()
        self.stopped = True
        self._tick(edge=True)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def tick(self, edge: bool = False) -> None:
        """One reading now, from the calling thread (the idle baseline samples this way,
        with nothing else running; never while the sampler's thread runs)."""
        self._tick(edge)

    def _tick(self, edge: bool = False) -> None:
        self.times.append(self.clock())
        for i, source in enumerate(self.sources):
            try:
                row = getattr(source, "poll_edge", source.poll)() if edge else source.poll()
            except Exception as e:  # one bad reading must not end the sampling
                row = None
                err = self.errors.setdefault(source.name, {"count": 0, "first": f"{type(e).__name__}: {e}"})
                err["count"] += 1
            self.rows[i].append(row)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        period = self.period
        deadline = self.times[0] + period
        try:
            while not self._sleep(max(0.0, deadline - self.clock()), self._stop):
                self._tick()
                deadline += period
                now = self.clock()
                if now > deadline:  # fell behind: skip the deadlines already past
                    behind = math.floor((now - deadline) / period) + 1
                    self.missed += behind
                    deadline += behind * period
        finally:
            self.thread_cpu_s = time.thread_time() - cpu0


class EdgeClock:
    """``measure()``'s clock, remembering its last reading (the end of the timed window)."""

    __slots__ = ("_clock", "last")

    def __init__(self, clock: Clock = time.perf_counter):
        self._clock = clock
        self.last: float | None = None

    def __call__(self) -> float:
        self.last = value = self._clock()
        return value


# ------------------------------------------------------------- the arithmetic (pure)


def unwrap(values: Sequence[float | None], wrap: float | None = None) -> tuple[list[float | None], str | None]:
    """A counter's increase since its first reading, at each reading (None stays None).

    A reading below the previous one is a wrap when ``wrap`` (the counter's range) is
    known: the increase is ``wrap - previous + reading``. Without a range it is a reset
    nobody can account for: the result is all None with the reason.
    """
    out: list[float | None] = []
    total, prev = 0.0, None
    for v in values:
        if v is None:
            out.append(None)
            continue
        if prev is not None:
            step = v - prev
            if step < 0:
                if wrap is None:
                    return [None] * len(values), "the counter went backwards (reset?) during the window"
                step += wrap
            total += step
        prev = v
        out.append(total)
    return out, None


def _valid(times: Sequence[float], values: Sequence[float | None]) -> tuple[list[float], list[float]]:
    ts, vs = [], []
    for t, v in zip(times, values):
        if v is not None:
            ts.append(t)
            vs.append(float(v))
    return ts, vs


def value_at(ts: Sequence[float], vs: Sequence[float], t: float) -> float | None:
    """Linear interpolation at ``t`` between the readings around it; None outside them."""
    if not ts or t < ts[0] or t > ts[-1]:
        return None
    i = bisect.bisect_left(ts, t)
    if ts[i] == t:
        return vs[i]
    t_a, t_b, v_a, v_b = ts[i - 1], ts[i], vs[i - 1], vs[i]
    return v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)


def integrate(times: Sequence[float], watts: Sequence[float | None], t0: float, t1: float) -> float | None:
    """Joules: the trapezoidal integral of power readings over [t0, t1], the power at the
    two edges interpolated. None when the readings do not cover the window."""
    ts, vs = _valid(times, watts)
    if len(ts) < 2 or t1 <= t0 or t0 < ts[0] or t1 > ts[-1]:
        return None
    points = [(t0, value_at(ts, vs, t0))]
    points += [(t, v) for t, v in zip(ts, vs) if t0 < t < t1]
    points.append((t1, value_at(ts, vs, t1)))
    return sum((tb - ta) * (va + vb) / 2 for (ta, va), (tb, vb) in zip(points, points[1:]))


def counter_delta(times: Sequence[float], cumulative: Sequence[float | None], t0: float, t1: float) -> float | None:
    """The increase of an (unwrapped) counter over [t0, t1]; None when not covered."""
    ts, vs = _valid(times, cumulative)
    a, b = value_at(ts, vs, t0), value_at(ts, vs, t1)
    return None if a is None or b is None else b - a


def _column(rows: Sequence[tuple | None], j: int) -> list:
    return [None if r is None else r[j] for r in rows]


def _scaled(values: Sequence, scale: float) -> list[float | None]:
    return [None if v is None else v * scale for v in values]


@dataclass
class Reading:
    """One source's readings: scaled columns per channel, counters already unwrapped."""

    source: Source
    times: list[float]
    columns: dict[str, list[float | None]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # channel -> why its counter is unusable

    @classmethod
    def of(cls, source: Source, times: list[float], rows: list[tuple | None]) -> Reading:
        r = cls(source, times)
        for j, ch in enumerate(source.channels):
            raw = _column(rows, j)
            if ch.kind == "counter":
                raw, problem = unwrap(raw, ch.wrap)
                if problem:
                    r.problems[ch.name] = problem
            r.columns[ch.name] = raw if ch.reduce == "or" else _scaled(raw, ch.scale)
        return r


def _figures(label: str, joules: float, window_s: float, samples: int) -> dict:
    return {
        "source": label,
        "energy_j": joules,
        "avg_w": joules / window_s,
        "j_per_sample": joules / samples if samples else None,
        "samples_per_j": samples / joules if samples else None,
    }


def unavailable(reason: str) -> dict:
    return {"source": UNAVAILABLE, "reason": reason, "energy_j": None, "avg_w": None,
            "j_per_sample": None, "samples_per_j": None}  # fmt: skip


def domain_energy(reading: Reading, t0: float, t1: float, samples: int) -> dict:
    """Energy over [t0, t1] from one source: its counter, else its power integral, else
    unavailable — each with its ``source`` label, ``warnings`` for what was passed over, and
    the source's ``note`` on what the figure covers (a MIG slice: the whole GPU)."""
    entry = _domain_energy(reading, t0, t1, samples)
    note = getattr(reading.source, "energy_note", None)
    if note:
        entry["note"] = note
    return entry


def sum_devices(entries: list[tuple[str, str | None, dict]], window_s: float, samples: int) -> dict:
    """One domain's figure over several devices (a case on N GPUs): (source name, device id,
    entry) each. The energies add up; a device without one makes the sum unavailable (a part
    is not the whole), naming it. Every device's own entry stays in ``devices``."""
    lacking = [(name, e) for name, _, e in entries if e.get("energy_j") is None]
    if lacking:
        out = unavailable("; ".join(f"{name}: {e.get('reason') or 'no energy'}" for name, e in lacking))
    elif window_s <= 0:
        out = unavailable("empty timed window")
    else:
        labels = sorted({str(e["source"]) for _, _, e in entries})
        out = _figures(" + ".join(labels), sum(e["energy_j"] for _, _, e in entries), window_s, samples)
    out["warnings"] = [f"{name}: {w}" for name, _, e in entries for w in e.get("warnings") or []]
    out["devices"] = [{"name": name, "device_id": dev, **e} for name, dev, e in entries]
    notes = sorted({e["note"] for _, _, e in entries if e.get("note")})
    out["note"] = "; ".join([f"the sum over {len(entries)} devices (each in devices)"] + notes)
    return out


def _domain_energy(reading: Reading, t0: float, t1: float, samples: int) -> dict:
    src, window = reading.source, t1 - t0
    warnings: list[str] = []
    if window <= 0:
        return unavailable("empty timed window")
    counters = [c for c in src.channels if c.role == "energy"]
    if counters:
        deltas = [None if c.name in reading.problems else counter_delta(reading.times, reading.columns[c.name], t0, t1)
                  for c in counters]  # fmt: skip
        period = src.counter_period_s
        why = next((reading.problems[c.name] for c in counters if c.name in reading.problems), None)
        if why is None and any(d is None for d in deltas):
            why = "the energy counter has no readings around the window"
        if why is None and period is not None and window < period:
            why = (f"the window ({window * 1e3:.0f} ms) is shorter than the energy counter's update "
                   f"period (~{period * 1e3:.0f} ms assumed)")  # fmt: skip
        if why is None and sum(deltas) <= 0:
            why = "the energy counter did not move during the window"
        if why is None:
            entry = _figures(src.energy_label, sum(deltas), window, samples)
            if period is not None and window < 10 * period:
                bound = 200 * period / window  # one update period of error at each edge, in %
                warnings.append(f"short window ({window:.2f} s): the counter's ~{period * 1e3:.0f} ms "
                                f"updates make this figure uncertain by up to ±{bound:.0f}%")  # fmt: skip
            entry["warnings"] = warnings
            return entry
        warnings.append(f"{src.energy_label} not used: {why}")
    power = next((c for c in src.channels if c.role == "power"), None)
    if power is not None and src.power_label:
        joules = integrate(reading.times, reading.columns[power.name], t0, t1)
        if joules is not None and joules > 0:
            entry = _figures(src.power_label, joules, window, samples)
            entry["warnings"] = warnings
            return entry
        why_power = "the power readings do not cover the window" if joules is None else "the power readings were 0"
        warnings.append(f"{src.power_label} not used: {why_power}")
    entry = unavailable("; ".join(w.split(" not used: ", 1)[1] for w in warnings) or f"{src.name} gives no energy")
    entry["warnings"] = warnings
    return entry


def _reduce(values: list, how: str):
    present = [v for v in values if v is not None]
    if not present:
        return None
    if how == "max":
        return max(present)
    if how == "or":
        out = 0
        for v in present:
            out |= int(v)
        return out
    return sum(present) / len(present)


def _round(v):
    return v if v is None or isinstance(v, int) else float(f"{v:.5g}")


def _buckets(n: int, max_points: int) -> list[range]:
    size = max(1, math.ceil(n / max_points))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _flag_summary(values: list, flags: dict[int, str]) -> dict:
    present = [int(v) for v in values if v is not None]
    seen = {}
    for bit, name in flags.items():
        hits = sum(1 for v in present if v & bit)
        if hits:
            seen[name] = hits / len(present)
    return {"seen": sorted(seen), "fraction_of_ticks": seen}


def series_and_summary(readings: list[Reading], times: list[float], t0: float, t1: float,
                       max_points: int = MAX_POINTS) -> tuple[dict, dict]:  # fmt: skip
    """The time series (ticks inside the window, downsampled to ``max_points``; ``t_s``
    from the window's start) and per-channel figures over the window: gauges' mean, min
    and max over the ticks inside; counters' rate (from the edges); flags seen and how often."""
    inside = [k for k, t in enumerate(times) if t0 <= t <= t1]
    groups = _buckets(len(inside), max_points)
    series: dict[str, list] = {"t_s": [_round(sum(times[inside[i]] for i in g) / len(g) - t0) for g in groups]}
    summary: dict[str, dict] = {}
    for r in readings:
        for ch in r.source.channels:
            col = r.columns[ch.name]
            key = f"{r.source.name}.{ch.name}"
            if ch.kind == "counter":
                if ch.rate is None:
                    continue
                key = f"{r.source.name}.{ch.rate}"

                # its rate per second, or per the increase of the `per` counter, over each
                # bucket (from the tick before it to its last tick) and over the window
                def rate(ta: float, tb: float) -> float | None:
                    if ch.name in r.problems:
                        return None
                    delta = counter_delta(times, col, ta, tb)
                    span = counter_delta(times, r.columns[ch.per], ta, tb) if ch.per else tb - ta
                    if delta is None or span is None or span <= 0:
                        return None
                    value = delta / span
                    if ch.per and 1.0 < value <= 1.0 + 1e-9:  # a part of its whole (busy of all CPU
                        value = 1.0  # time), over only by float rounding on a fully busy machine
                    return value * ch.rate_scale

                series[key] = [_round(rate(times[max(inside[g[0]] - 1, 0)], times[inside[g[-1]]])) for g in groups]
                summary[key] = {"mean": rate(t0, t1)}
                continue
            window_values = [col[k] for k in inside]
            series[key] = [_round(_reduce([window_values[i] for i in g], ch.reduce)) for g in groups]
            if ch.reduce == "or":
                summary[key] = _flag_summary(window_values, ch.flags)
                continue
            present = [v for v in window_values if v is not None]
            if not present:  # a window shorter than a tick: the readings interpolated at its edges
                ts, vs = _valid(times, col)
                present = [v for v in (value_at(ts, vs, t0), value_at(ts, vs, t1)) if v is not None]
            summary[key] = (
                {"mean": sum(present) / len(present), "min": min(present), "max": max(present)}
                if present else {"mean": None, "min": None, "max": None}
            )  # fmt: skip
    return series, summary


# ------------------------------------------------------------------ opening sources


def gpu_ids(runtime: dict) -> list[tuple[str | None, str | None]]:
    """(UUID, PCI bus id) of every GPU a case ran on: ``device_uuids`` /
    ``device_pci_bus_ids`` for a case on several (every rank's GPU, every replica's), else
    the one ``device_uuid`` / ``device_pci_bus_id``."""
    uuids = list(runtime.get("device_uuids") or [])
    pcis = list(runtime.get("device_pci_bus_ids") or [])
    n = max(len(uuids), len(pcis))
    if n == 0:
        return [(runtime.get("device_uuid"), runtime.get("device_pci_bus_id"))]
    uuids += [None] * (n - len(uuids))
    pcis += [None] * (n - len(pcis))
    return list(zip(uuids, pcis))


def open_sources(device_kind: str, runtime: dict) -> tuple[list[Source], dict[str, str]]:
    """The sources for a case on ``device_kind`` (cpu, cuda, tpu …): the worker's and the
    machine's CPU use, the CPU packages' energy (RAPL), and for CUDA every GPU the case ran
    on (NVML, matched by the UUIDs or PCI bus ids in ``runtime``: ``nvml`` for one,
    ``nvml[i]`` for device i of several; two that are slices of one GPU are read once; on
    PyTorch's ROCm build, ``versions.hip`` in ``runtime``, AMD SMI instead: ``amdsmi``).
    Returns (opened, {name: why not})."""
    from benchbench.measure.sources import amd, cpu, nvml, rapl

    openers: dict[str, Callable[[], Source]] = {"cpu": cpu.open_cpu, "rapl": rapl.open_rapl}
    if device_kind == "cuda":
        ids = gpu_ids(runtime)
        prefix, open_gpu = ("amdsmi", amd.open_amdsmi) if amd.is_rocm(runtime) else ("nvml", nvml.open_nvml)
        for i, (uuid, pci) in enumerate(ids):
            name = prefix if len(ids) == 1 else f"{prefix}[{i}]"
            openers[name] = lambda uuid=uuid, pci=pci, name=name: open_gpu(uuid, pci, name=name)
    sources: list[Source] = []
    missing: dict[str, str] = {}
    for name, opener in openers.items():
        try:
            sources.append(opener())
        except Unavailable as e:
            missing[name] = str(e)
        except Exception as e:  # a source must never fail the case
            missing[name] = f"could not open: {type(e).__name__}: {e}"
    return _one_per_device(sources), missing


def _one_per_device(sources: list[Source]) -> list[Source]:
    """Drop a source that reads the same physical device as one before it (N MIG slices of one
    GPU: NVML's counters are the whole GPU's), so its energy is counted once; the kept source
    says which it stands for."""
    kept: list[Source] = []
    seen: dict[str, Source] = {}
    for s in sources:
        dev = getattr(s, "device_id", None)
        first = seen.get(dev) if dev else None
        if first is None:
            if dev:
                seen[dev] = s
            kept.append(s)
            continue
        s.close()
        note = f"{s.name} is on the same GPU ({dev}) as {first.name}: counted once"
        prior = getattr(first, "energy_note", None)
        first.energy_note = f"{prior}; {note}" if prior else note  # type: ignore[attr-defined]
    return kept


# ------------------------------------------------------------------ one case's telemetry


def _domain_of(device_kind: str) -> str:
    """The energy domain a case's work runs in: ``xla`` is XLA's CPU device (torch_xla with
    PJRT_DEVICE=CPU), so its energy is the CPU's; a TPU's is its own (no source yet)."""
    return {"cuda": "gpu", "xla": "cpu"}.get(device_kind, device_kind)


class Telemetry:
    """One case's telemetry: the opened sources, an optional idle baseline, the sampler
    around the timed window, and the record's ``telemetry`` and ``energy`` afterwards.

        with Telemetry.for_case(case, runtime) as tel:
            tel.idle_baseline()
            timing = measure(step, settings, clock=tel.edge_clock(), timed_window=tel.sampling)
            telemetry, energy = tel.report(samples, timing.timed_wall_s)

    Leaving the ``with`` closes the sources, whatever happened inside.
    """

    def __init__(self, sources: Sequence[Source], missing: dict[str, str], *, hz: float,
                 device_kind: str = "cpu", idle_baseline_s: float = 0.0,
                 clock: Clock = time.perf_counter, sleep: Sleep = nap,
                 pause: Callable[[float], None] = time.sleep):  # fmt: skip
        self.sources = list(sources)
        self.missing = dict(missing)
        self.hz = float(hz)
        self.device_kind = device_kind
        self.primary = _domain_of(device_kind)
        self.domains = [self.primary] + (["cpu"] if self.primary != "cpu" else [])
        self.idle_baseline_s = float(idle_baseline_s)
        self.clock, self._sleep, self._pause = clock, sleep, pause
        self.sampler: Sampler | None = None
        self.edge: EdgeClock | None = None
        self.idle: dict[str, dict] | None = None
        self.idle_s: float | None = None
        self.idle_settle: dict | None = None
        self._closed = False

    @classmethod
    def for_case(cls, case, runtime: dict, opener=None, **kw) -> Telemetry:
        s = case.settings
        kind = case.device.split(":")[0]
        hz = float(getattr(s, "telemetry_hz", 0.0) or 0.0)
        if hz <= 0:
            return cls([], {}, hz=0.0, device_kind=kind, **kw)
        sources, missing = (opener or open_sources)(kind, runtime)
        return cls(sources, missing, hz=hz, device_kind=kind, idle_baseline_s=getattr(s, "idle_baseline_s", 0.0), **kw)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if not self._closed:
            self._closed = True
            for s in self.sources:
                try:
                    s.close()
                except Exception:
                    pass

    # -- before the window

    def idle_baseline(self) -> None:
        """Each domain's idle power, with nothing running, once the machine has settled: the
        worker calls this after the build and compile, when clocks and power may still be
        raised, so windows of ``idle_baseline_s`` are sampled (by this thread, at ``hz``)
        until at least :data:`IDLE_SETTLE_S` have passed and the primary domain's power of
        the last window is within :data:`IDLE_STABLE_REL` of the one before (at most
        :data:`IDLE_SETTLE_MAX_S`); the last window is the baseline. ``idle_settle`` in the
        record says how long it took, each window's watts and whether it settled."""
        if self.hz <= 0 or self.idle_baseline_s <= 0:
            return
        window = self.idle_baseline_s
        sampler = Sampler(self.sources, self.hz, clock=self.clock, sleep=self._sleep)
        sampler.tick(edge=True)
        edges = [sampler.times[0]]
        watts: list[float | None] = []
        settled: bool | None = None
        while True:
            end = edges[-1] + window
            while (now := self.clock()) < end - 1e-9:
                self._pause(min(sampler.period, end - now))
                sampler.tick()
            edges.append(sampler.times[-1])
            readings = self._by_domain(self._readings(sampler))
            entry = self._domain_entry(self.primary, readings.get(self.primary, []), edges[-2], edges[-1], 0)
            watts.append(entry.get("avg_w"))
            waited = edges[-1] - edges[0]
            if waited < IDLE_SETTLE_S or len(watts) < 2:
                continue
            last, before = watts[-1], watts[-2]
            if last is None or before is None:  # no power reading to settle on: the fixed wait only
                settled = None
                break
            if abs(last - before) <= IDLE_STABLE_REL * before:
                settled = True
                break
            if waited >= IDLE_SETTLE_MAX_S:
                settled = False
                break
        sampler.tick(edge=True)
        t0, t1 = edges[-2], edges[-1]
        self.idle_s = t1 - t0
        readings = self._by_domain(self._readings(sampler))
        self.idle = {d: self._domain_entry(d, readings.get(d, []), t0, t1, 0) for d in self.domains}
        self.idle_settle = {
            "settle_s": t0 - edges[0],
            "window_s": window,
            "windows_w": watts,
            "settled": settled,
            "rule": f"windows of {window:g} s after the build until {IDLE_SETTLE_S:g} s have passed and the "
            f"{self.primary.upper()} power of the last window is within {IDLE_STABLE_REL:.0%} of the one before "
            f"(at most {IDLE_SETTLE_MAX_S:g} s); the last window is the baseline"
            + ("" if settled is not None else f"; no {self.primary.upper()} power reading: the fixed wait only"),
        }

    # -- the window

    def edge_clock(self) -> EdgeClock:
        """The clock ``measure()`` must use, so the timed window's end is known exactly."""
        self.edge = EdgeClock(self.clock)
        return self.edge

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Runs the sampler around the block (stopped in a ``finally``). The worker passes
        this to ``measure(timed_window=...)``: on after warm-up, just before the first timed
        iteration; off just after the last."""
        if self.hz <= 0:
            yield
            return
        self.sampler = Sampler(self.sources, self.hz, clock=self.clock, sleep=self._sleep)
        self.sampler.start()
        try:
            yield
        finally:
            self.sampler.stop()

    @contextlib.contextmanager
    def window(self) -> Iterator[Clock]:
        """:meth:`edge_clock` and :meth:`sampling` in one, around a whole block."""
        clock = self.edge_clock()
        with self.sampling():
            yield clock

    # -- after the window

    def _readings(self, sampler: Sampler) -> list[Reading]:
        n = min([len(sampler.times)] + [len(rows) for rows in sampler.rows])
        return [Reading.of(s, sampler.times[:n], rows[:n]) for s, rows in zip(self.sources, sampler.rows)]

    @staticmethod
    def _by_domain(readings: list[Reading]) -> dict[str, list[Reading]]:
        out: dict[str, list[Reading]] = {}
        for r in readings:
            if r.source.domain:
                out.setdefault(r.source.domain, []).append(r)
        return out

    def _missing_of(self, domain: str) -> list[tuple[str, str]]:
        """(source name, why) of the sources of ``domain`` that could not be opened."""
        names = DOMAIN_SOURCE.get(domain) or ()
        return [(k, v) for k, v in self.missing.items() if k.partition("[")[0] in names]

    def _missing_reason(self, domain: str) -> str:
        if self.hz <= 0:
            return "telemetry off (telemetry.hz: 0)"
        names = DOMAIN_SOURCE.get(domain)
        if names is None:
            return f"no power telemetry for {domain.upper()} devices in benchbench"
        missing = self._missing_of(domain)
        if len(missing) == 1 and missing[0][0] in names:
            return missing[0][1]
        return "; ".join(f"{k}: {v}" for k, v in missing) or f"no {' or '.join(names)} source"

    def _domain_entry(self, domain: str, readings: list[Reading], t0: float, t1: float, samples: int) -> dict:
        """The domain's energy over [t0, t1]: its one device's, or the sum over every device
        of a case on several (:func:`sum_devices`), unavailable when one could not be read."""
        missing = [(k, None, unavailable(v)) for k, v in self._missing_of(domain) if "[" in k]
        if not readings:
            return unavailable(self._missing_reason(domain))
        if len(readings) == 1 and not missing:
            return domain_energy(readings[0], t0, t1, samples)
        entries = [(r.source.name, getattr(r.source, "device_id", None), domain_energy(r, t0, t1, samples))
                   for r in readings]  # fmt: skip
        return sum_devices(entries + missing, t1 - t0, samples)

    def _sources_info(self) -> dict:
        out: dict[str, dict] = {}
        for s in self.sources:
            try:
                out[s.name] = {"status": "ok", **s.info()}
            except Exception as e:
                out[s.name] = {"status": "ok", "info_error": f"{type(e).__name__}: {e}"}
        for name, reason in self.missing.items():
            out[name] = {"status": UNAVAILABLE, "reason": reason}
        return out

    def report(self, samples: int, timed_wall_s: float) -> tuple[dict, dict]:
        """(``telemetry``, ``energy``) for the record, over the timed window that ended at
        the timing loop's last clock reading and lasted ``timed_wall_s``. A fault in the
        telemetry never fails the case: the record says what went wrong instead (the
        traceback goes to the case's log)."""
        try:
            return self._report(samples, timed_wall_s)
        except Exception as e:
            traceback.print_exc()
            reason = f"telemetry failed: {type(e).__name__}: {e}"
            energy = {"window_s": timed_wall_s, "samples": samples, "primary": self.primary}
            energy.update({d: unavailable(reason) for d in self.domains})
            return {"enabled": False, "reason": reason}, energy

    def _report(self, samples: int, timed_wall_s: float) -> tuple[dict, dict]:
        energy: dict = {"window_s": timed_wall_s, "samples": samples, "primary": self.primary}
        if self.hz <= 0 or self.sampler is None:
            reason = self._missing_reason(self.primary)
            energy.update({d: unavailable(reason) for d in self.domains})
            return {"enabled": False, "reason": reason}, energy
        sampler = self.sampler
        t1 = self.edge.last if self.edge and self.edge.last is not None else sampler.times[-1]
        t0 = t1 - timed_wall_s
        readings = self._readings(sampler)
        by_domain = self._by_domain(readings)
        for domain in self.domains:
            entry = self._domain_entry(domain, by_domain.get(domain, []), t0, t1, samples)
            entry.update(self._above_idle(domain, entry, timed_wall_s, samples))
            energy[domain] = entry
        series, summary = series_and_summary(readings, sampler.times, t0, t1)
        inside = sum(1 for t in sampler.times if t0 <= t <= t1)
        cpu_src = next((s for s in self.sources if s.name == "cpu"), None)
        process = summary.get("cpu.process_cpu_pct", {}).get("mean")
        if cpu_src is not None and process is not None:
            summary["cpu.process_cpu_pct_of_usable"] = {"mean": process / getattr(cpu_src, "usable_cpus", 1)}
        telemetry = {
            "enabled": True,
            "hz": self.hz,
            "window_s": timed_wall_s,
            "ticks_in_window": inside,
            "achieved_hz": inside / timed_wall_s if timed_wall_s > 0 else None,
            "missed_ticks": sampler.missed,
            "sampler_cpu_s": sampler.thread_cpu_s,  # the sampler thread's own CPU time, whole run
            "sampler_span_s": sampler.times[-1] - sampler.times[0],
            "window_note": "sampled from just before the first timed iteration to just after the last "
            "(warm-up excluded); figures cover the timed window only, readings interpolated at its edges",
            "sources": self._sources_info(),
            "errors": sampler.errors,
            "summary": summary,
            "series": series,
        }
        if self.idle is not None:
            telemetry["idle_baseline_s"] = self.idle_s
            telemetry["idle_settle"] = self.idle_settle
        return telemetry, energy

    def _above_idle(self, domain: str, entry: dict, window_s: float, samples: int) -> dict:
        if self.idle is None:
            why = ("no idle baseline (telemetry.idle_baseline_s: 0)" if self.idle_baseline_s <= 0
                   else "idle baseline not measured")  # fmt: skip
            return {"idle_w": None, "idle_reason": why}
        idle = self.idle.get(domain) or unavailable("no idle baseline for this domain")
        out = {"idle_w": idle.get("avg_w"), "idle_source": idle["source"]}
        if idle.get("avg_w") is None:
            out["idle_reason"] = idle.get("reason")
            return out
        if entry.get("energy_j") is None:
            return out
        above = entry["energy_j"] - idle["avg_w"] * window_s
        out["above_idle_energy_j"] = above
        out["above_idle_j_per_sample"] = above / samples if samples else None
        out["above_idle_samples_per_j"] = samples / above if samples and above > 0 else None
        return out
