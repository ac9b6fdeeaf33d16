"""Shared by the bench_*.py scripts: how busy the machine was, and the verdict line.

On a small machine (2 cores here) another process running even briefly wrecks a
multi-threaded measurement: the intra-op thread pool waits at every barrier for a
thread that is not scheduled, and a 30 µs forward pass can take 20 ms. Ratios of two
such figures are noise. So every side of every round records how many cores *other*
processes (and the hypervisor, as steal time) used meanwhile, read from /proc/stat
for the CPUs this process may run on minus this process's own CPU time; rounds where
that exceeds ``BUSY_CORES`` are reported as disturbed and left out of the verdict
when enough quiet rounds remain.
"""

from __future__ import annotations

import os
import statistics
import time

BUSY_CORES = 0.03  # other processes using more than 3% of one core → round disturbed
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_busy_s() -> float | None:
    """Busy CPU seconds (all processes + steal) on the CPUs in our affinity set."""
    mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            total = 0
            for line in f:
                name, *vals = line.split()
                if name in mine:  # user nice system idle iowait irq softirq steal ...
                    v = [int(x) for x in vals[:8]]
                    total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            return total / _TICK
    except OSError:  # not Linux: no figure
        return None


class OtherLoad:
    """``with OtherLoad() as load: ...`` then ``load.cores``: mean cores used by other
    processes during the block (None where /proc/stat is unreadable)."""

    cores: float | None = None

    def __enter__(self):
        self._sys, self._own, self._t = _cpu_busy_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        sys_now, own_now, wall = _cpu_busy_s(), _own_cpu_s(), time.perf_counter() - self._t
        if self._sys is not None and sys_now is not None and wall > 0:
            self.cores = max(0.0, (sys_now - self._sys) - (own_now - self._own)) / wall
        return False


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def verdict(name: str, ratios: list[float], busy: list[bool], low: float, high: float, min_quiet: int) -> bool:
    """Print the closing lines; the median uses quiet rounds when there are at least
    ``min_quiet`` of them, else every round (with a warning). True when it passes."""
    quiet = [r for r, b in zip(ratios, busy) if not b]
    if len(quiet) >= min_quiet:
        used, note = quiet, f"{len(quiet)} quiet rounds" if len(quiet) < len(ratios) else ""
    else:
        used, note = ratios, ""
        print(
            f"WARNING: only {len(quiet)} of {len(ratios)} rounds were quiet (other processes "
            f"used > {BUSY_CORES:g} core); the figure below is unreliable — rerun on an idle machine"
        )
    if note:
        print(f"note: {len(ratios) - len(quiet)} disturbed round(s) left out; median over {note}")
    med = statistics.median(used)
    ok = low <= med <= high
    print(f"{name}: median ratio {med:.3f} ({'PASS' if ok else 'FAIL'}, target {low:.2f}–{high:.2f})")
    return ok


def fmt_load(*cores: float | None) -> tuple[str, bool]:
    """Column text for other processes' load of each side, and whether it was busy."""
    busy = any(c is not None and c > BUSY_CORES for c in cores)
    text = "/".join("?" if c is None else f"{c:.2f}" for c in cores)
    return text + (" *" if busy else ""), busy
