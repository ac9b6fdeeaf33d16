"""Mode fit's bookkeeping (issue 19), without a framework: the fit loop's stop rule and
figures with a fake model and a fake clock, the metrics against hand-computed ones, seeds
combined, the trained model's cache key, the Pareto front of the report."""

from __future__ import annotations

import dataclasses
import math

import pytest

from benchbench.case import Case, Settings
from benchbench.data_spec import DataConfig
from benchbench.fit_spec import FitConfig, fit_seed
from benchbench.measure import fit
from benchbench.measure.fit import Diverged, Evaluation, StepResult


class FakeClock:
    """Time moves only when the fake model works."""

    def __init__(self, start: float = 100.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class FakeTrainer:
    """``steps_per_epoch`` steps of ``batch`` samples; epoch e (from 0) evaluates to
    ``accuracies[e]`` on 20 validation samples of 2 classes; ``step_s`` per step (a list: one
    per step in order), ``eval_s`` per evaluation; ``losses`` (train) per step, else 1/step."""

    def __init__(self, clock, accuracies, *, steps=4, batch=8, step_s=0.5, eval_s=0.25, losses=None,
                 val_losses=None):  # fmt: skip
        self.clock, self.accuracies, self.steps_per_epoch, self.batch = clock, accuracies, steps, batch
        self.step_s, self.eval_s, self.losses, self.val_losses = step_s, eval_s, losses, val_losses
        self.steps = self.epoch = 0

    def train_step(self) -> StepResult:
        i = self.steps
        self.steps += 1
        self.clock.advance(self.step_s[i] if isinstance(self.step_s, list) else self.step_s)
        loss = self.losses[i] if self.losses is not None else 1.0 / self.steps
        return StepResult(loss=loss, correct=self.batch // 2, samples=self.batch)

    def evaluate(self) -> Evaluation:
        self.clock.advance(self.eval_s)
        right = round(self.accuracies[self.epoch] * 20)
        y_true = [0] * 10 + [1] * 10
        y_pred = [y if i < right else 1 - y for i, y in enumerate(y_true)]
        loss = self.val_losses[self.epoch] if self.val_losses is not None else 0.5
        self.epoch += 1
        return Evaluation(y_true=y_true, y_pred=y_pred, loss=loss)


TARGET = {"metric": "val_accuracy", "value": 0.9}


def _watts(power: float):
    return lambda t0, t1: {"energy_j": power * (t1 - t0), "source": "fake-counter"}


def test_fit_stops_at_the_target_with_exact_time_samples_and_energy():
    clock = FakeClock()
    trainer = FakeTrainer(clock, [0.5, 0.8, 0.9, 1.0])
    result = fit.run(trainer, epochs=10, classes=2, batch_size=8, target=TARGET, clock=clock)
    q = result.to_dict(fit.energy_per_epoch(result, _watts(10.0)))
    assert q["epochs_run"] == 3 and q["reached"] is True and q["reached_epoch"] == 3
    assert q["stop_reason"] == "target reached"
    epoch_s = 4 * 0.5 + 0.25
    assert q["time_to_target_s"] == pytest.approx(3 * epoch_s)  # evaluations included
    assert q["train_time_to_target_s"] == pytest.approx(3 * 4 * 0.5)
    assert q["samples_to_target"] == 3 * 4 * 8
    assert q["energy_to_target_j"] == pytest.approx(10.0 * 3 * epoch_s)
    assert q["fit_wall_s"] == pytest.approx(3 * epoch_s)
    assert [row["val_accuracy"] for row in q["curve"]] == [0.5, 0.8, 0.9]
    assert [row["energy_j"] for row in q["curve"]] == pytest.approx([10 * epoch_s, 20 * epoch_s, 30 * epoch_s])
    row = q["curve"][1]
    assert row["elapsed_s"] == pytest.approx(2 * epoch_s) and row["train_s"] == 2.0 and row["eval_s"] == 0.25
    assert row["samples"] == 64 and row["train_accuracy"] == 0.5
    # the mean training loss of epoch 2: steps 5..8 have losses 1/5 … 1/8, equal batches
    assert row["train_loss"] == pytest.approx((1 / 5 + 1 / 6 + 1 / 7 + 1 / 8) / 4)
    assert q["final"]["val_accuracy"] == 0.9 and q["energy_source"] == "fake-counter"


def test_steady_throughput_leaves_the_first_epoch_out():
    clock = FakeClock()
    steps = [3.0, 1.0, 1.0, 1.0] + [0.5] * 8  # a slow first epoch (first-call costs)
    trainer = FakeTrainer(clock, [0.1, 0.2, 0.3], step_s=steps)
    result = fit.run(trainer, epochs=3, classes=2, batch_size=8, target=TARGET, clock=clock)
    q = result.to_dict()
    assert q["train"]["throughput"] == pytest.approx(8 * 8 / (8 * 0.5))  # 8 steps × 8 samples over 4 s
    assert q["train"]["steps"] == 12 and q["train"]["samples"] == 96
    clock = FakeClock()
    one = fit.run(FakeTrainer(clock, [1.0], step_s=[3.0, 1.0, 1.0, 1.0]), epochs=1, classes=2, batch_size=8,
                  clock=clock)  # fmt: skip
    assert one.steady_steps() == [1.0, 1.0, 1.0]  # one epoch: its first step left out


def test_not_reached_and_no_target_say_why():
    clock = FakeClock()
    q = fit.run(FakeTrainer(clock, [0.5, 0.6]), epochs=2, classes=2, batch_size=8, target=TARGET,
                clock=clock).to_dict()  # fmt: skip
    assert q["reached"] is False and q["time_to_target_s"] is None
    assert q["to_target_reason"] == "not reached in 2 epochs" and q["stop_reason"] == "2 epochs run, target not reached"
    assert q["energy_to_target_j"] is None and q["fit_energy_j"] is None  # no energy source given: unknown, not 0
    clock = FakeClock()
    q = fit.run(FakeTrainer(clock, [1.0, 1.0]), epochs=2, classes=2, batch_size=8, clock=clock).to_dict()
    assert q["reached"] is None and q["epochs_run"] == 2  # no target: every epoch runs
    assert q["to_target_reason"].startswith("no target set")


def test_a_loss_target_is_met_from_below():
    clock = FakeClock()
    trainer = FakeTrainer(clock, [0.5] * 4, val_losses=[0.9, 0.3, 0.2, 0.1])
    q = fit.run(trainer, epochs=4, classes=2, batch_size=8, target={"metric": "val_loss", "value": 0.25},
                clock=clock).to_dict()  # fmt: skip
    assert q["reached_epoch"] == 3


def test_a_nan_loss_is_a_divergence_naming_epoch_and_step():
    clock = FakeClock()
    losses = [0.7] * 4 + [0.6, 0.5, math.nan, 0.4]
    with pytest.raises(Diverged, match=r"training loss became nan at epoch 2, step 3 \(of 4\)"):
        fit.run(FakeTrainer(clock, [0.5, 0.5], losses=losses), epochs=2, classes=2, batch_size=8, clock=clock)
    with pytest.raises(Diverged, match="validation loss became inf after epoch 1"):
        fit.run(FakeTrainer(clock, [0.5], val_losses=[math.inf]), epochs=1, classes=2, batch_size=8, clock=clock)


def test_metrics_match_hand_computed_ones():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = fit.classification_metrics(y_true, y_pred, classes=3)
    # precision per class: 1/2, 2/3, 1/1; recall: 1/2, 2/2, 1/2; F1: 1/2, 4/5, 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # a class of the data set that is neither true nor predicted here counts as 0 (macro over 4)
    m4 = fit.classification_metrics(y_true, y_pred, classes=4)
    assert m4["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 4) and m4["accuracy"] == m["accuracy"]
    assert fit.quality_delta({"accuracy": 0.9, "f1": 0.8}, {"accuracy": 0.95, "f1": 0.9, "recall": 1.0}) == (
        pytest.approx({"accuracy": -0.05, "f1": -0.1})
    )


def _seed(seed, time=None, final_acc=0.9, epochs=3):
    return {"kind": "fit", "seed": seed, "target": TARGET, "reached": time is not None, "time_to_target_s": time,
            "train_time_to_target_s": None if time is None else time - 1, "samples_to_target": None if time is None
            else 100 * seed, "energy_to_target_j": None, "reached_epoch": None if time is None else epochs,
            "fit_wall_s": time or 20.0, "fit_energy_j": None, "epochs_run": epochs, "train": {"throughput": 50.0},
            "final": {"val_accuracy": final_acc, "val_f1": final_acc - 0.01},
            "inference": {"throughput": 1000.0 + seed}}  # fmt: skip


def test_seeds_combine_to_the_median_time_to_target_with_its_spread():
    q = fit.combine([_seed(0, 10.0), _seed(1, None, final_acc=0.8), _seed(2, 14.0, final_acc=0.95)])
    assert q["seeds"] == [0, 1, 2] and q["seeds_run"] == 3 and q["seeds_reached"] == 2
    assert q["time_to_target_s"] == 12.0  # over the two that met it
    assert q["spread"]["time_to_target_s"] == {"median": 12.0, "min": 10.0, "max": 14.0, "n": 2,
                                               "rel_spread": pytest.approx(4 / 12)}  # fmt: skip
    assert q["samples_to_target"] == 100.0 and q["energy_to_target_j"] is None
    assert q["final"]["val_accuracy"] == 0.9  # over every seed
    assert q["inference_throughput"] == 1001.0 and len(q["per_seed"]) == 3
    none = fit.combine([_seed(0, None), _seed(1, None)])
    assert none["seeds_reached"] == 0 and none["time_to_target_s"] is None
    assert none["to_target_reason"] == "no seed reached the target (2 run)"
    variants = fit.combine([
        {"kind": "variant", "seed": s, "metrics": {"f1": f}, "fp32": {"f1": 0.9}, "delta": {"f1": f - 0.9}}
        for s, f in ((0, 0.8), (1, 0.86), (2, 0.9))
    ])  # fmt: skip
    assert variants["metrics"]["f1"] == 0.86 and variants["delta"]["f1"] == pytest.approx(-0.04)
    assert variants["spread"]["delta.f1"]["min"] == pytest.approx(-0.1)


def _case(**kw) -> Case:
    data = DataConfig(source="generated", images=120, size=24, preset="none")
    base = dict(framework="torch", model="seed_cnn", batch_size=16, device="cpu", mode="fit", variant="fp32",
                input_shape=(3, 24, 24), data=data, fit=FitConfig(epochs=5, target_metric="val_accuracy",
                target_value=0.9))  # fmt: skip
    base.update(kw)
    return Case(**base)


class _Job:
    runtime = {"versions": {"torch": "2.x"}}


def test_the_cache_key_changes_with_what_defines_the_trained_model_only():
    from benchbench.worker.fit import ingredients

    case = _case()

    def key(c: Case, seed: int = 0, data=None) -> str:
        return fit.cache_key(ingredients(c, data or c.data, seed, _Job()))

    same = [
        _case(variant="int8_dynamic"),  # the variant is applied after: the same trained model
        dataclasses.replace(case, settings=Settings(min_time=5.0, processes=3)),  # how long it is timed
        _case(fit=dataclasses.replace(case.fit, seeds=5)),  # how many seeds
    ]
    for other in same:
        assert key(other) == key(case), other
    changed = [
        _case(fit=dataclasses.replace(case.fit, epochs=6)),
        _case(fit=dataclasses.replace(case.fit, target_value=0.95)),
        _case(fit=dataclasses.replace(case.fit, val_fraction=0.3)),
        _case(fit=dataclasses.replace(case.fit, split_seed=1)),
        _case(optimizer="sgd"),
        _case(batch_size=8),
        _case(input_shape=(3, 32, 32)),
        _case(data=dataclasses.replace(case.data, seed=1)),
        _case(data=dataclasses.replace(case.data, preset="seed")),
        _case(framework="tensorflow"),
    ]
    keys = {key(c) for c in changed} | {key(case, seed=1)}
    assert key(case) not in keys and len(keys) == len(changed) + 1


def test_the_seed_of_each_process():
    assert [fit_seed(Settings(seed=7, process=k)) for k in (1, 2, 3)] == [7, 8, 9]


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    from benchbench.report.quality import pareto

    points = [(1.0, 0.9), (2.0, 0.8), (3.0, 0.95), (0.5, 0.99), (2.5, 0.7), (3.0, 0.95)]
    assert pareto(points) in ([3, 2, 5], [3, 5, 2])  # two equal points both stay
    assert pareto([(1.0, 1.0)]) == [0]
