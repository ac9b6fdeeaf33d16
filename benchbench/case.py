"""Case: what is measured (frozen, hashable, with a stable case_id) and how long to measure it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchbench.data_spec import DataConfig
    from benchbench.fit_spec import FitConfig


TOKEN_AXES = ("seq_len", "prompt_len", "new_tokens")  # a token model's axes (Case fields, suite matrix axes)
AUTO_MIN_PROCESSES = 5  # a t-interval over fewer process medians is too wide to be useful


@dataclass(frozen=True)
class Settings:
    """How a case is measured. Not part of the case's identity: changing these
    changes the confidence in a number, not what the number is of."""

    warmup_iters: int = 3  # untimed iterations at least
    warmup_max_time: float = 30.0  # s; warm-up stops here even if not settled
    min_time: float = 1.0  # s of timed iterations at least
    max_time: float = 10.0  # s; the loop stops here even if the CI target is not met
    min_iters: int = 5  # timed samples at least (a sample is one block of iterations)
    max_iters: int = 100_000  # timed samples at most
    target_rel_ci: float = 0.02  # half-width of the 95% CI of the median / median
    timeout: float = 600.0  # s for the whole case (worker start to record)
    memory_limit: int | None = None  # bytes of worker RSS; None = no limit
    seed: int = 0
    telemetry_hz: float = 10.0  # sampler ticks per second over the timed window; 0 = off, at most 100
    idle_baseline_s: float = 0.0  # s of idle power sampled before the window (0 = none)
    cooldown_s: float = 0.0  # s the runner waits before this case when another ran before it
    profile: bool = False  # a short extra window under the framework's profiler after the timed one
    # the framework's kernel autotuning (torch: cudnn.benchmark; TensorFlow: TF_CUDNN_USE_AUTOTUNE),
    # its search in the first iteration and warm-up; off only when asked (then part of the case_id)
    autotune: bool = True
    # what a cluster executor asks for (Ray): {num_cpus, num_gpus, accelerator_type, custom: {name: n}}
    resources: dict | None = None
    # fresh worker processes per case, combined into its one record: an int, or None = auto
    # (AUTO_MIN_PROCESSES planned, then more up to max_processes until target_rel_ci is met;
    # a time budget may stop it from 3 on: benchbench.measure.combine.next_process)
    processes: int | None = None
    max_processes: int = 8
    process: int = 1  # which of the case's processes a worker runs (1: also FLOPs, size, fidelity, profile)
    # False: stop as soon as min_time and min_iters are reached (a process's share of a case
    # measured in several; its own interval is not what decides)
    stop_on_ci: bool = True
    # a case's later processes: warm-up stops after this many untimed iterations, settled or
    # not (what its first process needed to settle; benchbench.measure.combine.process_case)
    warmup_cap: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        return cls(**d)


@dataclass(frozen=True)
class Case:
    """One measurement: one framework, model, batch size, device, mode and variant.

    ``threads=None`` means "all the cores the worker may use"; the number actually
    used is recorded in the result. ``optimizer`` only matters in train mode.
    """

    framework: str
    model: str
    batch_size: int
    device: str
    mode: str
    variant: str
    input_shape: tuple[int, ...]
    threads: int | None = None
    optimizer: str = "adam"
    devices: int = 1  # > 1: data-parallel over this many devices (benchbench.worker.data_parallel)
    data: DataConfig | None = None  # a real input pipeline (benchbench.data_spec); None = synthetic
    fit: FitConfig | None = None  # mode fit: epochs, target, split, backbone (benchbench.fit_spec)
    # token models (transformers): tokens per sequence in inference/train; the prompt's tokens and
    # the tokens generated per sequence in generate mode (benchbench.registry.token_axes); None otherwise
    seq_len: int | None = None
    prompt_len: int | None = None
    new_tokens: int | None = None
    settings: Settings = field(default_factory=Settings, compare=False, hash=False)

    def identity(self) -> dict:
        """The fields that define the case: what its case_id is a hash of."""
        ident = {
            "framework": self.framework,
            "model": self.model,
            "batch_size": self.batch_size,
            "device": self.device,
            "mode": self.mode,
            "variant": self.variant,
            "input_shape": list(self.input_shape),
            "threads": self.threads,
            "optimizer": self.optimizer if self.mode in ("train", "fit") else None,
        }
        if self.devices != 1:  # only then: existing case_ids stay as they were
            ident["devices"] = self.devices
        if not self.settings.autotune:  # other kernels run: another case (on, the default, keeps case_ids)
            ident["autotune"] = False
        if self.data is not None:  # only then (synthetic cases keep their case_ids)
            ident["data"] = self.data.identity()
        if self.fit is not None:  # mode fit only
            ident["fit"] = self.fit.identity()
        for axis in TOKEN_AXES:  # token models only (other cases keep their case_ids)
            if getattr(self, axis) is not None:
                ident[axis] = getattr(self, axis)
        return ident

    @property
    def case_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return case_label(self.to_dict())

    def to_dict(self) -> dict:
        d = self.identity()
        d["optimizer"] = self.optimizer
        d["case_id"] = self.case_id
        d["settings"] = self.settings.to_dict()
        if self.data is not None:
            d["data"] = self.data.to_dict()
        if self.fit is not None:
            d["fit"] = self.fit.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        return cls(
            framework=d["framework"],
            model=d["model"],
            batch_size=int(d["batch_size"]),
            device=d["device"],
            mode=d["mode"],
            variant=d["variant"],
            input_shape=tuple(d["input_shape"]),
            threads=d.get("threads"),
            optimizer=d.get("optimizer") or "adam",
            devices=int(d.get("devices") or 1),
            data=_data_config(d.get("data")),
            fit=_fit_config(d.get("fit")),
            **{axis: int(d[axis]) for axis in TOKEN_AXES if d.get(axis) is not None},
            settings=Settings.from_dict(d.get("settings") or {}),
        )


def _data_config(d: dict | None):
    if not d:
        return None
    from benchbench.data_spec import DataConfig

    return DataConfig.from_dict(d)


def _fit_config(d: dict | None):
    if not d:
        return None
    from benchbench.fit_spec import FitConfig

    return FitConfig.from_dict(d)


def case_label(case: dict) -> str:
    """The one human-readable label of a case, from its dict (a Case's ``to_dict()`` or a
    stored record's ``case``): framework/model/bsN/device/mode/variant, then ``/dpN`` for a
    data-parallel case and the input pipeline's label for a ``data:`` case, then a token
    model's ``/seqN`` or ``/promptP+N`` (generate), so two different cases never share a label."""
    label = (
        f"{case.get('framework')}/{case.get('model')}/bs{case.get('batch_size')}/"
        f"{case.get('device')}/{case.get('mode')}/{case.get('variant')}"
    )
    devices = int(case.get("devices") or 1)
    if devices != 1:
        label += f"/dp{devices}"
    data = case.get("data")
    if data:
        label += f"/{_data_config(data).label}"
    fit = case.get("fit")
    if fit:
        label += f"/{_fit_config(fit).label}"
    if case.get("seq_len"):
        label += f"/seq{case['seq_len']}"
    if case.get("prompt_len"):
        label += f"/prompt{case['prompt_len']}+{case.get('new_tokens')}"
    return label
