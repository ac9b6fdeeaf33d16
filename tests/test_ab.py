"""The ab confirm step: interleaving order, the paired verdict on hand-made rounds, drift
cancelling, sides and their errors, check --confirm (fake worker), and one real run with
an artificially slowed B next to an unchanged case."""

import json
import shutil
import sys

import pytest

from benchbench import cli
from benchbench.case import Case, Settings
from benchbench.history import ab
from benchbench.measure.stats import summarize
from benchbench.results import Record, read_records
from conftest import FIXTURES, bb

pytest.importorskip("scipy", reason="ab needs SciPy: pip install scipy")


def case(model="seed_mlp") -> Case:
    return Case("torch", model, 1, "cpu", "inference", "fp32", (10,), settings=Settings(min_time=0.05))


def rec(c: Case, median: float, status="ok", rss=100 * 2**20) -> Record:
    if status != "ok":
        return Record(case=c.to_dict(), status=status, reason="boom")
    samples = [median * (1 + 0.002 * ((i * 7) % 11 - 5)) for i in range(30)]
    return Record(
        case=c.to_dict(),
        status="ok",
        stats=summarize(samples, 1).to_dict(),
        samples=samples,
        memory={"host_peak_rss_bytes": rss},
        runtime={"framework": "torch"},
    )


class FakeWorkers:
    """Stands in for executors.local.run_case: a median per call from ``figure(side, call)``."""

    def __init__(self, figure, fail_side=None, fail_calls=None):
        self.figure, self.fail_side, self.fail_calls, self.calls = figure, fail_side, fail_calls, []

    def __call__(self, c, work_dir, log, extra_paths, python=None, env=None):
        side = (env or {}).get("SIDE")
        self.calls.append((c.model, side, tuple(python)))
        failing = self.fail_side is not None and side == self.fail_side
        if failing and (self.fail_calls is None or len(self.calls) - 1 in self.fail_calls):
            return rec(c, 0, status="failed")
        return rec(c, self.figure(side, len(self.calls) - 1))


def sides():
    return (ab.Side("A", [sys.executable], {"SIDE": "A"}), ab.Side("B", [sys.executable, "-X", "dev"], {"SIDE": "B"}))


def by_metric(res):
    return {(r.label.split("/")[1], r.metric): r for r in res.rows}


# --- order and statistics ----------------------------------------------------------------


def test_rounds_are_interleaved_and_each_side_goes_first_equally_often():
    assert ab.round_order(4) == [(0, "A"), (0, "B"), (1, "B"), (1, "A"), (2, "A"), (2, "B"), (3, "B"), (3, "A")]


def test_paired_verdicts_on_hand_made_rounds():
    a = [100.0, 104.0, 97.0, 101.0, 99.0]  # throughput per round, side A: ±3% between rounds
    jitter = [1.002, 0.998, 1.001, 0.999, 1.0]
    slower = [x * 0.90 * j for x, j in zip(a, jitter)]  # B 10% slower in every pair
    v = ab.judge_pairs(a, slower, True, 0.05)
    assert v["verdict"] == "regressed" and v["p"] < 1e-4 and v["change"] == pytest.approx(1 / 0.9 - 1, rel=0.01)
    assert v["low"] < 0.9 < v["high"] and v["p_signed_rank"] == pytest.approx(0.0625)  # 5 pairs: the rank floor
    assert ab.judge_pairs(a, [x * 1.2 for x in a], True, 0.05)["verdict"] == "improved"
    assert ab.judge_pairs(a, [x * j for x, j in zip(a, jitter)], True, 0.05)["verdict"] == "unchanged"
    # a consistent 2% change is real (p tiny) but below half the 5% threshold: not a regression
    assert ab.judge_pairs(a, [x * 0.98 * j for x, j in zip(a, jitter)], True, 0.05)["verdict"] == "unchanged"
    # latency: higher is worse, so the same numbers read the other way
    assert ab.judge_pairs(a, slower, False, 0.05)["verdict"] == "improved"
    # noisy pairs: a 10% mean change that the rounds do not agree on
    v = ab.judge_pairs(a, [x * f for x, f in zip(a, [0.75, 1.05, 0.8, 1.02, 0.9])], True, 0.05)
    assert v["verdict"] == "inconclusive" and v["p"] > 0.01
    assert ab.judge_pairs([1.0], [2.0], True, 0.05)["verdict"] == "inconclusive"


def test_a_drift_over_the_job_cancels_in_the_pairs(tmp_path):
    """The machine slows 3% per worker started (heating up, a growing neighbour) and A
    and B are the same build. Pairs always run A then B would read a steady 3% slowdown;
    alternating A B / B A reads none."""
    c = case()
    fake = FakeWorkers(lambda side, call: 0.01 * 1.03**call)
    res = ab.run_ab([c], *sides(), rounds=6, out_dir=tmp_path / "ab", run_case=fake)
    assert [s for _, s, _ in fake.calls] == ["A", "B", "B", "A"] * 3
    row = by_metric(res)[("seed_mlp", "throughput")]
    assert row.verdict != "regressed" and row.ratio == pytest.approx(1.0, abs=0.005)
    # the same drift judged on A,B-ordered pairs only: a steady "slowdown"
    ordered = ab.judge_pairs(
        [1 / 1.03 ** (2 * i) for i in range(6)], [1 / 1.03 ** (2 * i + 1) for i in range(6)], True, 0.05
    )
    assert ordered["verdict"] == "regressed"


def test_run_ab_writes_records_and_finds_a_slower_b(tmp_path):
    fast, slow = case("seed_mlp"), case("seed_cnn")
    fake = FakeWorkers(lambda side, call: 0.01 * (1.3 if side == "B" and call >= 10 else 1.0))
    out = tmp_path / "ab"
    res = ab.run_ab([fast, slow], *sides(), rounds=5, out_dir=out, run_case=fake)
    rows = by_metric(res)
    assert rows[("seed_mlp", "throughput")].verdict == "unchanged"
    assert rows[("seed_cnn", "throughput")].verdict == "regressed"
    assert rows[("seed_cnn", "latency_p99")].verdict == "regressed"
    assert rows[("seed_cnn", "memory")].verdict == "unchanged"
    assert res.regressed
    a_recs = read_records(out / "a.jsonl")
    assert len(a_recs) == 10 and [r.runtime["ab"]["round"] for r in a_recs[:5]] == [1, 2, 3, 4, 5]
    assert {tuple(p) for _, _, p in fake.calls} == {(sys.executable,), (sys.executable, "-X", "dev")}
    data = json.loads((out / "ab.json").read_text())
    assert data["regressed"] is True and data["counts"]["regressed"] == 2
    md = ab.render_markdown(res)
    assert "🔴 regressed" in md and "| torch/seed_cnn/bs1/cpu/inference/fp32 | throughput |" in md


def test_a_failed_round_is_a_failed_row_and_skips_are_kept(tmp_path):
    fake = FakeWorkers(lambda side, call: 0.01, fail_side="B", fail_calls={1})  # B's first round only
    res = ab.run_ab(
        [case("seed_mlp"), case("seed_cnn")],
        *sides(),
        rounds=2,
        out_dir=tmp_path / "ab",
        run_case=fake,
        skip_reason=lambda c: "no such device" if c.model == "seed_cnn" else None,
    )
    assert [(r.metric, r.verdict) for r in res.rows] == [("*", "failed")]
    assert "side B failed: boom" in res.rows[0].note
    assert res.skipped == [("torch/seed_cnn/bs1/cpu/inference/fp32", "no such device")]
    assert not res.regressed and not res.broken


def test_a_side_that_fails_every_round_is_broken_first_and_fails_the_job(tmp_path, monkeypatch, capsys):
    fake = FakeWorkers(lambda side, call: 0.01, fail_side="B")

    def per_case(c, *a, **kw):  # B fails every round of seed_cnn only; seed_mlp is measured
        return (fake if c.model == "seed_cnn" else FakeWorkers(lambda side, call: 0.01))(c, *a, **kw)

    res = ab.run_ab(
        [case("seed_mlp"), case("seed_cnn")], *sides(), rounds=3, out_dir=tmp_path / "ab", run_case=per_case
    )
    assert res.rows[0].verdict == "broken" and res.rows[0].label.startswith("torch/seed_cnn/")
    assert res.rows[0].note == "side B failed every round (B failed: boom)"
    assert res.rows[1].verdict == "unchanged" and res.nothing_measured is None
    assert json.loads((tmp_path / "ab" / "ab.json").read_text())["broken"] is True
    assert "💥 broken" in ab.render_markdown(res)
    both = ab.judge_case("x", "lbl", [rec(case(), 0, "failed")] * 2, [rec(case(), 0, "skipped")] * 2, 0.05)
    assert [(r.verdict, r.note) for r in both] == [
        ("broken", "both sides failed every round (A failed: boom; B skipped: boom)")
    ]
    # through the command: exit 1, unless --allow-broken; nothing measured at all is exit 1 regardless
    from benchbench import probe
    from benchbench.executors import local

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmatrix:\n  model: [seed_mlp, seed_cnn]\n  batch_size: [1]\n")
    monkeypatch.setattr(probe, "skip_reason", lambda c: None)
    monkeypatch.setattr(local, "run_case", per_case)
    argv = ["ab", str(suite), "--a", f"SIDE=A {sys.executable}", "--b", f"SIDE=B {sys.executable}"]
    argv += ["--rounds", "2", "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert "broken" in out and "1 broken case(s)" in err
    assert cli.main([*argv, "--allow-broken"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(local, "run_case", fake)  # B fails every round of every case
    assert cli.main([*argv, "--allow-broken", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["nothing_measured"] is True and json.loads(out)["counts"] == {"broken": 2}
    assert "nothing was measured by ab: no case gave paired figures (2 broken)" in err


# --- sides ----------------------------------------------------------------------------------


def test_sides_parse_environment_and_refuse_mistakes():
    s = ab.parse_side("B", f"BB_AB_SLOW=1 OTHER='a b' {sys.executable} -X dev", ["MORE=x"])
    assert s.env == {"BB_AB_SLOW": "1", "OTHER": "a b", "MORE": "x"}
    assert s.python == [shutil.which(sys.executable), "-X", "dev"]
    assert s.describe().startswith("BB_AB_SLOW=1 OTHER='a b' MORE=x ")
    for text, msg in [("", "no interpreter"), ("K=1", "no interpreter"), ("/no/such/python", "not an executable")]:
        with pytest.raises(ab.UserError, match=msg):
            ab.parse_side("A", text)
    with pytest.raises(ab.UserError, match="--a-env '=x': expected NAME=VALUE"):
        ab.parse_side("A", sys.executable, ["=x"])


def test_an_interpreter_without_benchbench_is_a_clear_error(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmatrix:\n  model: [seed_mlp]\n  batch_size: [1]\n")
    # -I -S: no PYTHONPATH, no site-packages: benchbench cannot be imported there
    assert (
        cli.main(["ab", str(suite), "--a", sys.executable, "--b", f"{sys.executable} -I -S", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert "--b" in err and "cannot import benchbench" in err and "install benchbench" in err
    assert (
        cli.main(
            ["ab", str(suite), "--a", sys.executable, "--b", sys.executable, "--rounds", "1", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "at least 2 paired rounds" in capsys.readouterr().err


# --- check --confirm -----------------------------------------------------------------------


def test_check_confirm_keeps_a_confirmed_regression_and_drops_an_unconfirmed_one(tmp_path, monkeypatch, capsys):
    from test_compare import _gate_store

    s = _gate_store(tmp_path, [1.10, 1.0, 1.10, 1.10])  # the screen flags seed_mlp (throughput, p99)
    s.close()
    monkeypatch.chdir(tmp_path)
    args = [
        "check",
        "--store",
        s.url,
        "--confirm",
        "--confirm-a",
        sys.executable,
        "--confirm-b",
        f"SIDE=B {sys.executable}",
        "--confirm-rounds",
        "3",
        "--json",
    ]
    from benchbench import probe
    from benchbench.executors import local

    monkeypatch.setattr(probe, "skip_reason", lambda c: None)  # (the real one probes torch in a subprocess)
    # ab's re-measurement finds B as fast as A: not confirmed → exit 0
    monkeypatch.setattr(local, "run_case", FakeWorkers(lambda side, call: 0.01))
    assert cli.main(args) == 0
    rows = {(r["label"].split("/")[1], r["metric"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("seed_mlp", "throughput")]["verdict"] == "not confirmed"
    assert rows[("seed_mlp", "throughput")]["confirm"].startswith("ab unchanged: B/A 1.000")
    assert rows[("seed_mlp", "throughput")]["baseline_commit"] == "c0ffee0000"
    # B 10% slower in every pair: confirmed → exit 1
    monkeypatch.setattr(local, "run_case", FakeWorkers(lambda side, call: 0.01 * (1.1 if side == "B" else 1.0)))
    assert cli.main(args) == 1
    rows = {(r["label"].split("/")[1], r["metric"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("seed_mlp", "throughput")]["verdict"] == "regressed"
    assert rows[("seed_mlp", "throughput")]["confirm"].startswith("ab regressed: B/A 0.909")
    # {commit} in --confirm-a: the flag's baseline commit picks the environment
    venv = tmp_path / "venvs" / "c0ffee0000" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "python").chmod(0o755)
    args[args.index("--confirm-a") + 1] = str(tmp_path / "venvs" / "{commit}" / "bin" / "python")
    fake = FakeWorkers(lambda side, call: 0.01 * (1.1 if side == "B" else 1.0))
    monkeypatch.setattr(local, "run_case", fake)
    assert cli.main(args) == 1
    capsys.readouterr()
    assert {p for _, side, p in fake.calls if side is None} == {(str(venv / "python"),)}
    assert cli.main(["check", "--store", s.url, "--confirm"]) == 2
    assert "--confirm needs --confirm-a" in capsys.readouterr().err


# --- one real A/B run -----------------------------------------------------------------------


@pytest.mark.slow
def test_real_ab_run_a_slowed_b_regresses_the_same_interpreter_does_not(tmp_path):
    shutil.copy(FIXTURES / "ab_models.py", tmp_path / "ab_models.py")
    suite = tmp_path / "ab.yaml"
    suite.write_text(
        "name: ab\nmatrix:\n  model: ['ab_models:sleepy', seed_mlp]\n  batch_size: [1]\n"
        "defaults:\n  warmup_iters: 1\n  min_time: 0.05\n  max_time: 0.3\n  min_iters: 8\n  threads: 1\n"
        "  timeout: 120\n  telemetry: {hz: 0}\nmodels:\n  'ab_models:sleepy': {input_shape: [10]}\n"
    )
    proc = bb(
        "ab",
        suite,
        "--a",
        sys.executable,
        "--b",
        f"BB_AB_SLOW=1 {sys.executable}",
        "--rounds",
        "3",
        "--json",
        "--out",
        tmp_path / "out",
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    rows = {(r["label"].split("/")[1], r["metric"]): r for r in data["rows"]}
    sleepy = rows[("ab_models:sleepy", "throughput")]
    assert sleepy["verdict"] == "regressed" and sleepy["ratio"] < 0.5 and sleepy["p"] < 0.01
    assert rows[("seed_mlp", "throughput")]["verdict"] != "regressed"  # same interpreter for this case
    assert data["b"]["command"].startswith("BB_AB_SLOW=1 ") and data["a"]["benchbench"]
    (out,) = (tmp_path / "out" / "ab").iterdir()
    assert len(read_records(out / "b.jsonl")) == 6 and (out / "logs").is_dir()
