"""Time to a quality target (mode ``fit``, issue 19): the bookkeeping, without a framework.

A backend gives a :class:`Trainer` (one training step; one evaluation of the validation
part). :func:`run` trains epoch by epoch, evaluates after each, and stops once the
target is met or ``epochs`` have run; it keeps the learning curve and what reaching the
target cost. The clock is injected: tests drive the loop with a fake model and a fake
clock and check every figure exactly.

- **Time to target**: from the first training step to the end of the evaluation that met
  the target, evaluations included (as MLPerf Training counts its runs); the model's build
  and the data set's preparation are outside it. ``train_time_to_target_s`` counts the
  training steps alone. **Samples to target**: training samples processed until then.
  **Energy to target**: the energy source's joules over the same span (None with the
  reason where there is none).
- **Steady training throughput**: samples/s over the training steps after the first
  epoch (its first steps pay allocator growth, tracing, the loader's start); over the
  first epoch's steps after its first when only one epoch ran.
- A non-finite loss (training or validation) stops the fit: :class:`Diverged`, a failed
  record with the epoch and step in its reason.
- Metrics: accuracy, and precision, recall and F1 macro-averaged over the data set's
  classes (scikit-learn's ``precision_recall_fscore_support``; a class never predicted
  counts 0, not an error).

Several seeds (``fit: seeds: N``, one worker process each) are combined by
:func:`combine`: the median time to target with its spread, and how many seeds met it.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchbench.fit_spec import TARGET_METRICS, reached

Clock = Callable[[], float]
METRIC_NAMES = ("accuracy", "precision", "recall", "f1")
THROUGHPUT_NOTE = (
    "training samples/s over the steps after the first epoch (the first epoch's first steps pay "
    "allocator growth, tracing and the loader's start); the first epoch's steps after its first "
    "when only one epoch ran; each step: the batch from the loader, forward, loss, backward, "
    "optimizer step, synchronised"
)
TIME_NOTE = (
    "from the first training step to the end of the evaluation that met the target, evaluations "
    "included; model build and data preparation excluded"
)


class Diverged(RuntimeError):
    """A non-finite loss: the fit failed (its record says where)."""


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean loss over the batch
    correct: int  # samples whose prediction was right
    samples: int


@dataclass(frozen=True)
class Evaluation:
    y_true: Sequence[int]
    y_pred: Sequence[int]
    loss: float | None = None  # mean over the validation part


class Trainer(Protocol):
    steps_per_epoch: int

    def train_step(self) -> StepResult:
        """One training step; returns once the device has finished it."""

    def evaluate(self) -> Evaluation:
        """The whole validation part, in eval mode, without gradients."""


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: int) -> dict:
    """Accuracy and macro precision, recall, F1 over ``classes`` labels (0..classes-1)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("no validation samples")
    labels = list(range(classes))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
    }


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


@dataclass
class Fit:
    """One fit: the curve (one dict per epoch) and the clock readings that bound it."""

    epochs_max: int
    batch_size: int
    classes: int
    target: dict | None
    curve: list[dict] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)  # s per training step, in order
    epoch_steps: list[int] = field(default_factory=list)  # steps per epoch run
    epoch_ends: list[float] = field(default_factory=list)  # clock at the end of each epoch's evaluation
    t_start: float = 0.0
    t_end: float = 0.0
    reached_epoch: int | None = None

    @property
    def wall_s(self) -> float:
        return self.t_end - self.t_start

    def steady_steps(self) -> list[float]:
        """The step times the steady throughput is over (see the module's docstring)."""
        if len(self.epoch_steps) > 1:
            return self.step_times[self.epoch_steps[0] :]
        return self.step_times[1:] if len(self.step_times) > 1 else list(self.step_times)

    def to_dict(self, energy: list[dict] | None = None) -> dict:
        """The record's ``quality`` for this fit; ``energy``: one entry per epoch, the
        energy from the fit's start to that epoch's end (:func:`energy_per_epoch`)."""
        curve = [dict(row) for row in self.curve]
        energy = energy or [{}] * len(curve)
        for row, e in zip(curve, energy):
            row["energy_j"] = e.get("energy_j")
        steady = self.steady_steps()
        seconds = sum(steady)
        out: dict[str, Any] = {
            "epochs_max": self.epochs_max,
            "epochs_run": len(curve),
            "target": self.target,
            "reached": None if self.target is None else self.reached_epoch is not None,
            "reached_epoch": self.reached_epoch,
            "stop_reason": (
                "target reached"
                if self.reached_epoch is not None
                else f"{len(curve)} epochs run" + ("" if self.target is None else ", target not reached")
            ),
            "fit_wall_s": self.wall_s,
            "curve": curve,
            "final": {k: curve[-1][k] for k in ("val_loss", "val_accuracy", "val_precision", "val_recall", "val_f1")}
            if curve
            else {},
            "train": {
                "steps": len(self.step_times),
                "samples": len(self.step_times) * self.batch_size,
                "batch_size": self.batch_size,
                "throughput": len(steady) * self.batch_size / seconds if seconds > 0 else None,
                "throughput_note": THROUGHPUT_NOTE,
                "step_median_s": statistics.median(steady) if steady else None,
            },
            "time_note": TIME_NOTE,
        }
        first = energy[0] if energy else {}
        out["energy_source"] = first.get("source")
        if first.get("reason"):
            out["energy_reason"] = first["reason"]
        out["fit_energy_j"] = energy[-1].get("energy_j") if energy else None
        if self.reached_epoch is not None:
            row = curve[self.reached_epoch - 1]
            out.update(
                time_to_target_s=row["elapsed_s"],
                train_time_to_target_s=sum(r["train_s"] for r in curve[: self.reached_epoch]),
                samples_to_target=row["samples"],
                energy_to_target_j=row["energy_j"],
            )
        else:
            why = "no target set (fit: target:)" if self.target is None else f"not reached in {len(curve)} epochs"
            out.update(
                time_to_target_s=None,
                train_time_to_target_s=None,
                samples_to_target=None,
                energy_to_target_j=None,
                to_target_reason=why,
            )
        return out


def run(
    trainer: Trainer,
    *,
    epochs: int,
    classes: int,
    batch_size: int,
    target: dict | None = None,
    clock: Clock = time.perf_counter,
    on_epoch: Callable[[dict], None] | None = None,
) -> Fit:
    """Train up to ``epochs`` epochs of ``trainer.steps_per_epoch`` steps, evaluating after
    each; stop once ``target`` ({metric, value}) is met. The clock's last reading is the
    end of the fit (a telemetry edge clock then knows the window exactly)."""
    if target is not None and target["metric"] not in TARGET_METRICS:
        raise ValueError(f"unknown target metric {target['metric']!r}")
    fit = Fit(epochs_max=epochs, batch_size=batch_size, classes=classes, target=target)
    samples = 0
    fit.t_start = clock()
    for epoch in range(1, epochs + 1):
        t_epoch = clock()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(1, trainer.steps_per_epoch + 1):
            t0 = clock()
            r = trainer.train_step()
            t1 = clock()
            if not _finite(r.loss):
                raise Diverged(
                    f"diverged: the training loss became {r.loss} at epoch {epoch}, step {step} "
                    f"(of {trainer.steps_per_epoch}); no quality figures"
                )
            fit.step_times.append(t1 - t0)
            loss_sum += r.loss * r.samples
            correct += r.correct
            seen += r.samples
        samples += seen
        t_train = clock()
        ev = trainer.evaluate()
        t_eval = clock()
        if not _finite(ev.loss):
            raise Diverged(f"diverged: the validation loss became {ev.loss} after epoch {epoch}; no quality figures")
        m = classification_metrics(ev.y_true, ev.y_pred, classes)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen if seen else None,
            "train_accuracy": correct / seen if seen else None,
            "val_loss": ev.loss,
            **{f"val_{k}": m[k] for k in METRIC_NAMES},
            "train_s": t_train - t_epoch,
            "eval_s": t_eval - t_train,
            "elapsed_s": t_eval - fit.t_start,
            "samples": samples,
        }
        fit.curve.append(row)
        fit.epoch_steps.append(trainer.steps_per_epoch)
        fit.epoch_ends.append(t_eval)
        if on_epoch is not None:
            on_epoch(row)
        if target is not None and reached(target["metric"], row[target["metric"]], target["value"]):
            fit.reached_epoch = epoch
            break
    fit.t_end = clock()
    return fit


def energy_per_epoch(fit: Fit, energy_between: Callable[[float, float], dict]) -> list[dict]:
    """For each epoch, ``energy_between(fit start, epoch end)``: {energy_j, source[, reason]}."""
    return [energy_between(fit.t_start, t) for t in fit.epoch_ends]


# ------------------------------------------------------------- the trained fp32 model's cache


def cache_key(ingredients: dict) -> str:
    """The name of a trained model in the cache: a hash of everything that defines it."""
    blob = json.dumps(ingredients, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def quality_delta(metrics: dict, reference: dict) -> dict:
    """``metrics`` minus ``reference`` for each metric both have (a variant against fp32)."""
    return {
        k: metrics[k] - reference[k]
        for k in METRIC_NAMES
        if metrics.get(k) is not None and reference.get(k) is not None
    }


# ------------------------------------------------------------- several seeds


def _spread(values: list) -> dict:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    med = statistics.median(vals)
    return {
        "median": med,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
        "rel_spread": (max(vals) - min(vals)) / med if med else None,
    }


TO_TARGET = ("time_to_target_s", "train_time_to_target_s", "samples_to_target", "energy_to_target_j", "reached_epoch")


def combine(per_seed: list[dict]) -> dict:
    """The case's ``quality`` from its seeds' (one per worker process, in order): medians
    with their spread (min, max) over the seeds, how many met the target, every seed's own
    figures under ``per_seed``. Times, samples and energy to target are over the seeds that
    met it (one that did not has none); the final metrics over every seed."""
    if not per_seed:
        return {}
    first = per_seed[0]
    out: dict[str, Any] = {
        "kind": first.get("kind"),
        "seeds": [q.get("seed") for q in per_seed],
        "seeds_run": len(per_seed),
    }
    for key in ("variant", "target", "data", "backbone", "trained", "epochs_max", "time_note"):
        if key in first:
            out[key] = first[key]
    spread: dict[str, dict] = {}
    if first.get("kind") in ("fit", "transfer"):
        met = [q for q in per_seed if q.get("reached")]
        out["seeds_reached"] = len(met) if first.get("target") is not None else None
        for key in TO_TARGET:
            spread[key] = _spread([q.get(key) for q in met])
            out[key] = spread[key]["median"]
        if first.get("target") is not None and not met:
            out["to_target_reason"] = f"no seed reached the target ({len(per_seed)} run)"
        for key in ("fit_wall_s", "fit_energy_j"):
            spread[key] = _spread([q.get(key) for q in per_seed])
            out[key] = spread[key]["median"]
        out["epochs_run"] = _spread([q.get("epochs_run") for q in per_seed])["median"]
        out["train_throughput"] = _spread([(q.get("train") or {}).get("throughput") for q in per_seed])["median"]
        finals = [q.get("final") or {} for q in per_seed]
        out["final"] = {}
        for key in finals[0]:
            spread[f"final.{key}"] = _spread([f.get(key) for f in finals])
            out["final"][key] = spread[f"final.{key}"]["median"]
    for block in ("metrics", "fp32", "delta"):
        parts: list[dict] = [q[block] for q in per_seed if isinstance(q.get(block), dict)]
        if parts:
            out[block] = {}
            for key in parts[0]:
                spread[f"{block}.{key}"] = _spread([p.get(key) for p in parts])
                out[block][key] = spread[f"{block}.{key}"]["median"]
    inference = [(q.get("inference") or {}).get("throughput") for q in per_seed]
    if any(v is not None for v in inference):
        spread["inference.throughput"] = _spread(inference)
        out["inference_throughput"] = spread["inference.throughput"]["median"]
    out["spread"] = spread
    out["per_seed"] = per_seed
    return out
