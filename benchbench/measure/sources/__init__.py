"""Telemetry sources: what the sampler polls each tick.

A source is opened once per case (``open_*`` functions in ``nvml.py``, ``rapl.py``,
``cpu.py``), polled by the sampler thread at every tick and closed after the timed
window. It says which readings it gives (its :class:`Channel`\\ s) and returns them raw
from :meth:`Source.poll`, in channel order: the per-tick work stays a few calls and one
tuple, and the unit conversion, wrap handling and energy arithmetic happen once, after
the window, in ``benchbench.measure.telemetry``.

A source that cannot be opened raises :class:`Unavailable` with the reason, which the
record keeps (``telemetry.sources.<name>.reason``) and every energy figure that needed
it repeats. Nothing here imports a framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class Unavailable(Exception):
    """A source cannot be used on this machine or for this case; the message says why."""


@dataclass(frozen=True)
class Channel:
    """One reading a source gives at every tick.

    ``kind`` is ``"gauge"`` (a value at the tick: W, %, bytes, °C) or ``"counter"``
    (cumulative since some start: µJ, mJ, CPU seconds), read at ticks and differenced
    afterwards. ``scale`` turns a raw reading into SI units (mW → W: 1e-3). A counter
    with ``wrap`` (raw units) runs from 0 to ``wrap`` and then starts again at 0.

    ``role`` marks the readings energy is computed from: ``"energy"`` (a counter of
    joules after scaling) or ``"power"`` (a gauge in watts). ``rate`` names the series
    a counter is shown as in the record (its rate between ticks × ``rate_scale``, e.g.
    J/s = W, or CPU s/s × 100 = %; a counter without one is not shown); with ``per``
    (another counter of the same source) the rate is per that counter's increase
    instead of per second (busy s / total CPU s). ``reduce`` says how the series is downsampled:
    ``mean``, ``max``, or ``or`` (bit flags: any tick in the bucket). ``flags`` names
    the bits of an ``or`` channel.
    """

    name: str
    kind: str = "gauge"
    scale: float = 1.0
    wrap: float | None = None
    role: str | None = None
    rate: str | None = None
    rate_scale: float = 1.0
    per: str | None = None
    reduce: str = "mean"
    flags: dict[int, str] = field(default_factory=dict)


class Source(Protocol):
    """What the sampler needs from a source.

    ``name`` prefixes its series in the record (``nvml.power_w``). ``domain`` is whose
    energy its ``energy``/``power`` channels measure (``"gpu"`` or ``"cpu"``; None when
    it measures none). ``energy_label`` / ``power_label`` are the ``source`` strings
    the energy figures carry when computed from its counter / from its power samples.
    ``counter_period_s`` is how often its energy counter is updated (None: finer than
    any tick), used to warn about windows too short for the counter.
    """

    name: str
    domain: str | None
    energy_label: str | None
    power_label: str | None
    counter_period_s: float | None
    channels: tuple[Channel, ...]

    def poll(self) -> tuple:
        """One raw reading per channel, in order; None where a reading failed (or a
        costly reading is taken less often than every tick)."""

    # optional: ``poll_edge()``, used instead of ``poll()`` for the sampler's first and
    # last reading, where a source that skips costly readings must take them all

    def info(self) -> dict:
        """Facts for the record: the device matched, notes, channels left out and why."""

    def close(self) -> None:
        """Release what ``open`` took (NVML handles); safe to call twice."""
