"""A case's ``fit:`` (mode ``fit``, issue 19): how long to train, to what target, on which
split, with how many seeds, and for the transfer pair which data set the backbone learnt
first. Framework-free.

In a suite, ``fit:`` sits under ``defaults:`` (or ``models: NAME:``, whose keys override
the defaults' keys)::

    fit:
      epochs: 10                                    # at most (the seed articles' 10)
      target: {metric: val_accuracy, value: 0.95}   # stop once reached; none: every epoch runs
      val_fraction: 0.2                             # the validation part of the data set
      split_seed: 0                                 # which items are in it (stable: benchbench.pipelines.split)
      seeds: 3                                      # fits with seeds seed, seed+1, …: one worker process each
      backbone: {hue_shift: 0.5}                    # frozen_backbone / finetune: data set A, over the case's data:

What a variant means in mode ``fit``: ``fp32`` trains the model to the target;
``frozen_backbone`` and ``finetune`` start from the model trained on ``backbone`` (data
set A) and train on the case's data (B); every other variant is applied to the fp32 model
trained on the case's data (cached, :mod:`benchbench.measure.fit`) and its accuracy,
precision, recall and F1 on the validation part are measured against fp32's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from benchbench import data_spec, registry

# target metrics: name -> (which way is better, what it is)
TARGET_METRICS = {
    "val_accuracy": ("higher", "accuracy on the validation part"),
    "val_f1": ("higher", "macro-averaged F1 on the validation part (scikit-learn)"),
    "val_loss": ("lower", "the loss on the validation part"),
}
TRANSFER = ("frozen_backbone", "finetune")  # train on the case's data from a backbone trained on `backbone`
TRAINS = ("fp32", *TRANSFER)  # the variants whose case is a fit; the rest are applied to a trained fp32
DEFAULT_EPOCHS = 10


@dataclass(frozen=True)
class FitConfig:
    """One case's fit. ``seeds`` says how many fits (worker processes), not what one is: not
    in the identity, like ``processes``."""

    epochs: int = DEFAULT_EPOCHS
    target_metric: str | None = None  # None: no target, every epoch runs
    target_value: float | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    backbone: data_spec.DataConfig | None = None  # transfer variants only: data set A
    seeds: int = field(default=1, compare=False, hash=False)

    def identity(self) -> dict:
        d = {
            "epochs": self.epochs,
            "target": self.target,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
        }
        if self.backbone is not None:
            d["backbone"] = self.backbone.identity()
        return d

    @property
    def target(self) -> dict | None:
        if self.target_metric is None:
            return None
        return {"metric": self.target_metric, "value": self.target_value}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["backbone"] = self.backbone.to_dict() if self.backbone is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("backbone"):
            kw["backbone"] = data_spec.DataConfig.from_dict(kw["backbone"])
        return cls(**kw)

    @property
    def label(self) -> str:
        t = self.target
        return f"fit-e{self.epochs}" + (f"-{t['metric']}{t['value']:g}" if t else "")


def reached(metric: str, value: float | None, goal: float) -> bool:
    """Whether ``value`` of ``metric`` meets the target ``goal``."""
    if value is None:
        return False
    return value <= goal if TARGET_METRICS[metric][0] == "lower" else value >= goal


def fit_seed(settings) -> int:
    """The seed of a case's process: ``seed`` for the first fit, ``seed + 1`` for the second, …"""
    return int(settings.seed) + int(settings.process) - 1


# ----------------------------------------------------------------- suite schema


def _fail(message: str):
    raise PydanticCustomError("benchbench", "{msg}", {"msg": message})


class TargetSpec(BaseModel):
    """``target: {metric: val_accuracy, value: 0.95}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric: data_spec._choice(TARGET_METRICS) = Field(description="val_accuracy, val_f1 or val_loss")
    value: Annotated[float, Field(allow_inf_nan=False)] = Field(description="accuracy/F1: 0..1; loss: > 0")


class FitSpec(BaseModel):
    """``fit:``: mode fit's settings. Every key optional."""

    model_config = ConfigDict(extra="forbid", strict=True)

    epochs: Annotated[int, Field(ge=1)] = Field(DEFAULT_EPOCHS, description="epochs at most")
    target: TargetSpec | None = Field(None, description="stop once reached: {metric, value}; none: all epochs run")
    val_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = Field(
        0.2, description="the validation part of the data set"
    )
    split_seed: Annotated[int, Field(ge=0)] = Field(0, description="which items are in the validation part")
    seeds: Annotated[int, Field(ge=1)] = Field(
        1, description="fits with seeds seed, seed+1, …, one worker process each (interleaved across the suite)"
    )
    backbone: data_spec.DataSpec | None = Field(
        None,
        description="frozen_backbone / finetune: data set A the backbone is trained on first "
        "(its keys over the case's data: keys)",
    )


FitField = FitSpec  # the type a suite's ``fit:`` key has


def keys_for(parent: str) -> list[str]:
    """The keys allowed under ``fit:`` (``"fit"``), its ``target:`` and its ``backbone:``."""
    if parent == "target":
        return list(TargetSpec.model_fields)
    if parent == "backbone":
        return list(data_spec.DataSpec.model_fields)
    return list(FitSpec.model_fields)


# ----------------------------------------------------------------- expansion


def _merged(defaults: dict, override: dict) -> dict:
    return {**(defaults.get("fit") or {}), **(override.get("fit") or {})}


def expand_cases(cases: list, defaults: dict, override: dict) -> tuple[list, list[tuple[tuple, str]]]:
    """Mode fit cases get their FitConfig, ``processes`` = ``seeds``, and the input shape of
    their data set (sklearn: its feature count; a generated set: its image size, unless the
    suite gives input_shape); other cases pass through. Returns (cases, problems)."""
    out, problems = [], []
    where = ("models", cases[0].model) if cases and "fit" in override else ("defaults",)
    spec = _merged(defaults, override)
    for case in cases:
        if case.mode != "fit":
            out.append(case)
            continue
        problem = _problem(case, spec, where)
        if problem:
            problems.append(problem)
            out.append(case)
            continue
        cfg, backbone_problem = _config(case, spec, defaults, override, where)
        if backbone_problem:
            problems.append(backbone_problem)
        settings = dataclasses.replace(case.settings, processes=cfg.seeds)
        shape = _input_shape(case, defaults, override)
        out.append(dataclasses.replace(case, fit=cfg, settings=settings, input_shape=shape))
    return out, list(dict.fromkeys(problems))


def _problem(case, spec: dict, where: tuple) -> tuple[tuple, str] | None:
    if case.data is None:
        return ("matrix", "mode"), (
            "mode fit trains on a data set: give defaults: data: {source: generated, …} "
            "(or source: folder with path:, or source: sklearn with name:)"
        )
    if case.devices != 1:
        return ("defaults", "devices"), "mode fit runs on one device (devices: 1)"
    if case.data.loader != "native":
        return where + ("data", "loader"), "mode fit reads its data with the native loader (loader: native)"
    target = spec.get("target")
    if target:
        metric, value = target["metric"], target["value"]
        if metric != "val_loss" and not 0 < value <= 1:
            return where + ("fit", "target", "value"), f"{metric} is between 0 and 1: got {value}"
        if metric == "val_loss" and value <= 0:
            return where + ("fit", "target", "value"), f"a loss target must be > 0, got {value}"
    base, _ = registry.split_variant(case.variant)
    if base in TRANSFER and not spec.get("backbone"):
        return where + ("fit",), (
            f"variant {base} in mode fit starts from a backbone trained on another data set: "
            "give fit: backbone: {…} (data keys over the case's data:, e.g. {hue_shift: 0.5})"
        )
    return None


def _config(case, spec: dict, defaults: dict, override: dict, where: tuple) -> tuple[FitConfig, Any]:
    target = spec.get("target")
    backbone, problem = None, None
    base, _ = registry.split_variant(case.variant)
    if base in TRANSFER and spec.get("backbone"):
        data = data_spec.merged(defaults, override) or {}
        configs = data_spec.configs({**data, **spec["backbone"]})
        if len(configs) != 1:
            problem = where + ("fit", "backbone"), "backbone: one data set (no lists in size, preset, …)"
        backbone = configs[0]
        seed = registry.SEED_MODELS.get(case.model)
        if seed and seed.loss == "binary cross-entropy" and backbone.source == "generated" and backbone.classes != 2:
            problem = where + ("fit", "backbone", "classes"), f"{case.model} is a binary classifier: classes must be 2"
        if "sklearn" in (backbone.source, case.data.source):
            problem = where + ("fit", "backbone"), "transfer learning here is between image sets (generated or folder)"
        if backbone.identity() == case.data.identity():
            problem = (
                where + ("fit", "backbone"),
                (
                    "the backbone's data set is the case's own: give it another one (e.g. hue_shift: 0.5, or another seed)"
                ),
            )
    cfg = FitConfig(
        epochs=spec.get("epochs", DEFAULT_EPOCHS),
        target_metric=target["metric"] if target else None,
        target_value=float(target["value"]) if target else None,
        val_fraction=float(spec.get("val_fraction", 0.2)),
        split_seed=spec.get("split_seed", 0),
        backbone=backbone,
        seeds=spec.get("seeds", 1),
    )
    return cfg, problem


def _input_shape(case, defaults: dict, override: dict) -> tuple[int, ...]:
    data = case.data
    if data.source == "sklearn" and data.name in data_spec.SKLEARN_SETS:
        return (data_spec.SKLEARN_SETS[data.name][0],)
    given = "input_shape" in override or ("input_shape" in defaults and registry.takes_image_shape(case.model))
    if data.source == "generated" and not given and registry.takes_image_shape(case.model):
        return (3, data.size, data.size)
    return case.input_shape
