"""CPU utilisation: the worker process's and the whole machine's.

Both are counters of CPU seconds read at every tick and differenced afterwards, so the
figure over the timed window is exact to the clock tick of the counters, whatever the
sampling rate. The worker's comes from ``os.times()`` (user + system of every thread,
the same figure as psutil's ``Process.cpu_times``, for a twentieth of the cost); the
machine's from ``psutil.cpu_times()`` (busy = user + nice + system + irq + softirq +
steal, over every CPU, divided by the increase of all the CPU time counted, idle
included). Shown as percentages: the worker's with 100 = one core busy (as ``top``
does), the machine's with 100 = every CPU busy.

``/proc/stat`` counts in 10 ms jiffies and costs the kernel far more to produce than
``os.times()`` (~100 µs of the sampler thread's CPU on a busy VM), so the machine's
counters are read at most every :data:`SYSTEM_EVERY_S` (and at the window's first and
last tick: the sampler's start and stop); the ticks between give None for them, which
the interpolation skips.
"""

from __future__ import annotations

import os

import psutil

from benchbench.measure.sources import Channel

_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


SYSTEM_EVERY_S = 0.1
_ALL = _BUSY + ("idle", "iowait")  # guest time is already inside user on Linux


def _busy_and_total_s() -> tuple[float, float]:
    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in _BUSY)
    return busy, busy + sum(getattr(t, f, 0.0) for f in _ALL[len(_BUSY) :])


class CpuSource:
    name = "cpu"
    domain = None
    energy_label = None
    power_label = None
    counter_period_s = None

    def __init__(self):
        self.logical_cpus = psutil.cpu_count() or 1
        self.usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else self.logical_cpus
        self._system_read_at = float("-inf")
        self.channels = (
            Channel("process_cpu_s", kind="counter", rate="process_cpu_pct", rate_scale=100.0),
            Channel("system_busy_s", kind="counter", rate="system_cpu_pct", rate_scale=100.0, per="system_total_s"),
            Channel("system_total_s", kind="counter"),
        )

    def poll(self) -> tuple:
        t = os.times()
        if t.elapsed - self._system_read_at < SYSTEM_EVERY_S - 1e-6:
            return (t.user + t.system, None, None)
        self._system_read_at = t.elapsed
        return (t.user + t.system, *_busy_and_total_s())

    def poll_edge(self) -> tuple:
        """The sampler's first and last reading: everything, whenever it was last read."""
        self._system_read_at = float("-inf")
        return self.poll()

    def info(self) -> dict:
        return {
            "logical_cpus": self.logical_cpus,
            "usable_cpus": self.usable_cpus,
            "note": "process_cpu_pct: the worker, 100 = one core; system_cpu_pct: every process, "
            "100 = every CPU of the machine",
        }

    def close(self) -> None:
        pass


def open_cpu() -> CpuSource:
    return CpuSource()
