"""The Backend protocol: what a worker needs from a framework, and nothing more (``Backend``,
the ``Prepared`` case it returns, the ``Skip`` it raises). Backends, variants and pipelines
import these from here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from benchbench.case import Case
from benchbench.measure.generate import Steps


class Skip(Exception):
    """The case cannot run here (no such device, unsupported combination): a skipped record."""


@dataclass
class Prepared:
    """A case ready to time. ``step`` runs one iteration and returns with the device
    synchronised; ``context`` is entered around warm-up and the timed loop."""

    step: Callable[[], None]
    cold_start: dict  # build_s (and compile_s where a variant compiles)
    runtime: dict  # versions, threads, device name, math modes, input shape, layout
    reset_peak_memory: Callable[[], None]
    device_memory: Callable[[], dict]  # after the timed window: peaks in bytes, or None + reason
    model_facts: Callable[[], dict]  # params, FLOPs, serialized size; run after timing
    context: Callable[[], contextlib.AbstractContextManager] = field(default=contextlib.nullcontext)
    # outputs vs the fp32 reference on a fixed seeded batch (benchbench.variants.fidelity), or
    # {"available": False, "reason": ...}; called after the timed window, never inside it
    fidelity: Callable[[], dict] | None = None
    # (x, y): the device tensors ``step`` reads (y: train targets, else None), which a real
    # input pipeline (benchbench.pipelines) copies each batch into; None where a backend cannot
    inputs: tuple | None = None
    # generate mode: the prefill and decode callables the generation loop times, and the facts
    # measured after it (benchbench.measure.generate.Steps); None in the other modes
    generate: Steps | None = None


class Backend(Protocol):
    name: str

    def probe(self) -> dict:
        """Versions, devices ({name: {available, reason, ...}}), model names."""

    def prepare(self, case: Case) -> Prepared:
        """Build the model and inputs for ``case`` on its device; raise Skip if it cannot run."""
