"""Verdicts on hand-made samples and series: compare (with and without history),
history's between-run CV and detectable change, the check gate, exit codes, formats."""

import json
import math
from pathlib import Path

import pytest

from benchbench import cli
from benchbench.case import Case
from benchbench.history import compare, gate, robust
from benchbench.history import store as st
from benchbench.measure.stats import summarize
from benchbench.results import Record, append_record

# between-run factors of a stable series: robust CV ≈ 4.4%
WOBBLE = [1.00, 1.04, 0.97, 1.02, 0.95, 1.05, 0.99, 1.01, 0.96, 1.03, 1.00, 0.98]


def record(model="seed_mlp", median=0.01, rss=100 * 2**20, spread=0.01, n=40, device_name="CPU X") -> Record:
    """An ok record whose samples spread ±``spread`` around ``median`` (deterministic)."""
    case = Case("torch", model, 1, "cpu", "inference", "fp32", (10,))
    samples = [median * (1 + spread * ((i * 7) % 11 - 5) / 5) for i in range(n)]
    return Record(
        case=case.to_dict(),
        status="ok",
        stats=summarize(samples, 1).to_dict(),
        samples=samples,
        memory={"host_peak_rss_bytes": rss},
        host="h1",
        runtime={"framework": "torch", "device_name": device_name, "versions": {"torch": "2.4.0"}},
    )


def failed(model="seed_mlp") -> Record:
    case = Case("torch", model, 1, "cpu", "inference", "fp32", (10,))
    return Record(case=case.to_dict(), status="failed", reason="boom", host="h1")


ENV = {"host": "h1", "cpu": {"model": "CPU X"}, "git": {"commit": "c0ffee0000", "dirty": False}}


def run(run_id, records, day=1, env=None):
    return st.Run(
        run_id=run_id,
        suite="nightly",
        created_at=f"2026-01-{day:02d}T00:00:00+00:00",
        records=records,
        environment=env or ENV,
    )


def run_dir(root: Path, run_id, records, env=None) -> Path:
    d = root / run_id
    d.mkdir(parents=True)
    for r in records:
        append_record(d / "results.jsonl", r)
    (d / "environment.json").write_text(json.dumps(env or ENV))
    return d


def verdicts(cmp, metric="throughput"):
    return {r.label.split("/")[1]: r.verdict for r in cmp.rows if r.metric in (metric, "*")}


# --- pure statistics ---------------------------------------------------------------------


def test_robust_statistics_on_known_values():
    assert robust.median([3, 1, 2]) == 2 and robust.median([4, 1, 2, 3]) == 2.5
    assert robust.mad([1, 2, 3, 4, 100]) == 1
    assert robust.robust_cv([1.0, 1.0]) is None
    assert robust.robust_cv([0.9, 1.0, 1.1]) == pytest.approx(1.4826 * 0.1)
    assert robust.min_detectable_change(0.05, 3) == pytest.approx(2.8016 * 0.05 * math.sqrt(4 / 3), rel=1e-4)


def test_benjamini_hochberg_matches_the_textbook_example():
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    # sorted 0.005 .01 .03 .04 .2 vs q·k/m = .01 .02 .03 .04 .05 → the first four pass
    assert robust.benjamini_hochberg(p, 0.05) == [True, True, True, True, False]
    assert robust.benjamini_hochberg([0.02, 0.03], 0.01) == [False, False]


def test_judge_regressed_improved_unchanged_inconclusive():
    assert compare.judge(1.5, 0.05, True, 0.05)[0] == "regressed"
    assert compare.judge(0.5, 0.05, True, 0.05)[0] == "improved"
    assert compare.judge(1.01, 0.01, True, 0.05)[0] == "unchanged"
    assert compare.judge(1.03, 0.20, True, 0.05)[0] == "inconclusive"
    assert compare.judge(1.10, 0.20, True, 0.05)[0] == "inconclusive"  # big, but within the noise


# --- compare without history: within-run spread, unconfirmed -----------------------------


def test_two_runs_a_2x_slowdown_regresses_a_3pct_wobble_does_not():
    base = run("b", [record("seed_mlp"), record("seed_cnn"), record("seed_cnn4"), record("resnet18")])
    cand = run(
        "c",
        [
            record("seed_mlp", median=0.02),
            record("seed_cnn", median=0.0103),
            record("seed_cnn4", median=0.005),
            record("resnet18", median=0.01, spread=0.3, n=10),
        ],
    )
    cmp = compare.compare_runs(base, cand)
    assert verdicts(cmp) == {
        "seed_mlp": "regressed",
        "seed_cnn": "unchanged",
        "seed_cnn4": "improved",
        "resnet18": "inconclusive",
    }
    assert verdicts(cmp, "latency_p99")["seed_mlp"] == "regressed"
    assert verdicts(cmp, "memory") == dict.fromkeys(["seed_mlp", "seed_cnn", "seed_cnn4", "resnet18"], "unchanged")
    assert all(not r.confirmed and r.noise == "within-run" for r in cmp.rows)
    mlp = next(r for r in cmp.rows if r.label.startswith("torch/seed_mlp") and r.metric == "throughput")
    assert mlp.ratio == pytest.approx(0.5) and mlp.low < 0.5 < mlp.high and mlp.change == pytest.approx(1.0)
    assert cmp.regressed


def test_within_run_spread_is_widened_so_a_small_real_looking_change_is_not_a_verdict():
    # 6% slower with ±1% samples: the median's CI is tiny, so even ×3 it excludes no
    # change, and 6% ≥ 5% → regressed (unconfirmed)
    cmp = compare.compare_runs(run("b", [record()]), run("c", [record(median=0.0106)]))
    assert verdicts(cmp) == {"seed_mlp": "regressed"}
    # the same 6% with ±10% samples: the widened interval contains 1 → inconclusive
    cmp = compare.compare_runs(run("b", [record(spread=0.1)]), run("c", [record(median=0.0106, spread=0.1)]))
    assert verdicts(cmp) == {"seed_mlp": "inconclusive"}


def test_a_borderline_change_alone_regresses_among_many_unchanged_cases_it_is_inconclusive():
    """95% intervals over many rows: Benjamini–Hochberg across the comparison keeps a
    lone borderline verdict from being one of the chance exclusions of "no change"."""

    def spread_for_p(target_p, change, n=40):  # the within-run spread that gives this p (by search)
        lo, hi = 0.001, 0.5
        for _ in range(60):
            mid = (lo + hi) / 2
            cmp = compare.compare_runs(
                run("b", [record(spread=mid, n=n)]), run("c", [record(median=0.01 * (1 + change), spread=mid, n=n)])
            )
            p = next(r.p for r in cmp.rows if r.metric == "throughput")
            lo, hi = (mid, hi) if p < target_p else (lo, mid)
        return mid

    sp = spread_for_p(0.01, 0.08)
    alone = compare.compare_runs(run("b", [record(spread=sp)]), run("c", [record(median=0.0108, spread=sp)]))
    row = next(r for r in alone.rows if r.metric == "throughput")
    assert row.verdict == "regressed" and row.p == pytest.approx(0.01, rel=0.05)
    models = [
        "seed_mlp",
        "seed_cnn",
        "seed_cnn4",
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
        "convnext_tiny",
    ]
    base = [record("alexnet", spread=sp)] + [record(m) for m in models]
    cand = [record("alexnet", median=0.0108, spread=sp)] + [record(m) for m in models]
    cand[2] = record("seed_cnn", median=0.02)  # and one real 2× slowdown
    many = compare.compare_runs(run("b", base), run("c", cand))
    v = verdicts(many)
    assert v["alexnet"] == "inconclusive" and v["seed_cnn"] == "regressed" and v["seed_mlp"] == "unchanged"
    border = next(r for r in many.rows if r.label.startswith("torch/alexnet/") and r.metric == "throughput")
    assert "regressed alone" in border.note and "Benjamini–Hochberg" in border.note
    assert all(r.p is not None for r in many.rows)
    # a looser FDR lets it through again
    assert verdicts(compare.compare_runs(run("b", base), run("c", cand), fdr=0.5))["alexnet"] == "regressed"


def skipped(model="seed_mlp", reason="cuda: no CUDA GPU visible to PyTorch") -> Record:
    case = Case("torch", model, 1, "cpu", "inference", "fp32", (10,))
    return Record(case=case.to_dict(), status="skipped", reason=reason, host="h1")


def test_a_case_ok_in_base_and_lost_in_candidate_is_broken_with_the_reason():
    """Broken: ok in the base and failed, skipped or absent in the candidate, with the
    worker's reason, listed before every other row. Failed in both: a failed row (shown,
    not broken); skipped in both: no row; ok only in the candidate: new."""
    base = run(
        "b",
        [
            record("seed_mlp"),
            record("seed_cnn"),
            record("seed_cnn4"),
            record("vit_b_16"),
            failed("resnet50"),
            skipped("mobilenet_v2"),
        ],
    )
    cand = run(
        "c",
        [
            record("seed_mlp", median=0.02),  # regressed
            failed("seed_cnn4"),
            skipped("vit_b_16"),
            record("resnet18"),
            failed("resnet50"),
            skipped("mobilenet_v2"),
        ],
    )
    cmp = compare.compare_runs(base, cand)
    star = {r.label.split("/")[1]: (r.verdict, r.note) for r in cmp.rows if r.metric == "*"}
    assert star == {
        "seed_cnn": ("broken", "not in candidate"),
        "seed_cnn4": ("broken", "candidate failed: boom"),
        "vit_b_16": ("broken", "candidate skipped: cuda: no CUDA GPU visible to PyTorch"),
        "resnet18": ("new", ""),
        "resnet50": ("failed", "base failed: boom; candidate failed: boom"),
    }  # mobilenet_v2, skipped in both: not broken, no row
    assert [r.verdict for r in cmp.rows[:3]] == ["broken"] * 3 and cmp.rows[3].verdict == "regressed"
    assert [r.label.split("/")[1] for r in cmp.broken] == ["seed_cnn", "seed_cnn4", "vit_b_16"]
    assert cmp.regressed and not cmp.nothing_measured
    data = cmp.to_dict()
    assert data["broken"] is True and data["counts"]["broken"] == 3 and data["rows"][0]["verdict"] == "broken"


def test_context_difference_is_reported():
    cmp = compare.compare_runs(run("b", [record()]), run("c", [record(device_name="CPU Y")]))
    assert cmp.context_diff == {"device_name": ("CPU X", "CPU Y")}
    assert compare.compare_runs(run("b", [record()]), run("c", [record()])).context_diff == {}


# --- compare with history: between-run spread ---------------------------------------------


@pytest.fixture
def history_store(tmp_path):
    s = st.Store(f"sqlite:///{tmp_path / 'h.db'}")
    for i, f in enumerate(WOBBLE[:10], 1):
        s.add_run(run(f"r{i:02d}", [record("seed_mlp", median=0.01 * f), record("seed_cnn", median=0.01 * f)], day=i))
    yield s
    s.close()


def test_history_replaces_within_run_spread_with_between_run_spread(history_store):
    s = history_store
    base = s.load_run("r10")
    cand = run("c", [record("seed_mlp", median=0.0103 * 1.08), record("seed_cnn", median=0.0103 * 1.5)], day=20)
    s.add_run(cand)
    cmp = compare.compare_runs(base, s.load_run("c"), store=s)
    # 8% slower: clear within one run (±1% samples), but within the nights' ±4.4% noise
    assert verdicts(cmp) == {"seed_mlp": "inconclusive", "seed_cnn": "regressed"}
    rows = [r for r in cmp.rows if r.metric == "throughput"]
    assert all(r.confirmed and r.noise == "between-run (n=10)" for r in rows)
    without = compare.compare_runs(base, s.load_run("c"))
    assert verdicts(without) == {"seed_mlp": "regressed", "seed_cnn": "regressed"}


def test_history_summary_between_run_cv_and_detectable_change(history_store):
    s = history_store
    ser = next(x for x in s.all_series() if "seed_mlp" in x["label"])
    rows = s.series(ser["case_id"], ser["context"])
    summ = gate.summarize_series(ser["case_id"], ser["context"], ser["label"], "latency_p99", rows, 0.05)
    assert summ.runs == 10
    p99 = [record(median=0.01 * f).stats["p99"] for f in WOBBLE[:10]]
    assert summ.between_run_cv == pytest.approx(robust.robust_cv(p99))
    assert summ.min_detectable_change == pytest.approx(2.8016 * summ.between_run_cv * math.sqrt(1 + 1 / 9), rel=1e-4)
    assert summ.too_noisy  # ≈ 4.4% between-run CV cannot gate a 5% threshold with one run


# --- the nightly gate ---------------------------------------------------------------------


def _gate_store(tmp_path, tail):
    """12 stable nights of seed_mlp (±0.5%) and seed_cnn (±4.4%), then ``tail`` factors
    applied to seed_mlp's throughput time on the last nights."""
    s = st.Store(f"sqlite:///{tmp_path / 'gate.db'}")
    calm = [1.0, 1.003, 0.997, 1.002, 0.998, 1.004, 0.996, 1.001, 0.999, 1.0, 1.002, 0.998]
    day = 0
    for f, g in zip(calm, WOBBLE):
        day += 1
        s.add_run(run(f"n{day:02d}", [record("seed_mlp", median=0.01 * f), record("seed_cnn", median=0.01 * g)], day))
    for t in tail:
        day += 1
        s.add_run(run(f"n{day:02d}", [record("seed_mlp", median=0.01 * t), record("seed_cnn", median=0.01)], day))
    return s


def _gate(s, **kw):
    rows = gate.check_latest(s, s.resolve("latest"), **kw)
    return {(r.label.split("/")[1], r.metric): r.verdict for r in rows}


def test_check_flags_a_persistent_regression(tmp_path):
    s = _gate_store(tmp_path, [1.10, 1.0, 1.10, 1.10])
    v = _gate(s)
    assert v[("seed_mlp", "throughput")] == "regressed"
    assert v[("seed_mlp", "latency_p99")] == "regressed"
    assert v[("seed_mlp", "memory")] == "unchanged"
    assert v[("seed_cnn", "throughput")] in ("unchanged", "too noisy")
    s.close()


def test_check_needs_persistence_one_bad_night_is_not_an_alert(tmp_path):
    s = _gate_store(tmp_path, [1.0, 1.0, 1.0, 1.10])
    assert _gate(s)[("seed_mlp", "throughput")] == "unchanged"
    assert _gate(s, persist_k=1, persist_m=1)[("seed_mlp", "throughput")] == "regressed"
    s.close()


def test_check_says_too_noisy_and_insufficient_history(tmp_path):
    s = _gate_store(tmp_path, [1.0, 1.0, 1.0, 1.0])
    v = _gate(s)
    assert v[("seed_cnn", "throughput")] == "too noisy"
    assert v[("seed_mlp", "throughput")] == "unchanged"
    s.close()
    s = st.Store(f"sqlite:///{tmp_path / 'short.db'}")
    for d in range(1, 4):
        s.add_run(run(f"s{d}", [record()], d))
    assert set(_gate(s).values()) == {"insufficient history"}
    s.close()


def test_check_improvement(tmp_path):
    s = _gate_store(tmp_path, [0.8, 0.8, 0.8, 0.8])
    assert _gate(s)[("seed_mlp", "throughput")] == "improved"
    s.close()


# --- the CLI: exit codes and formats --------------------------------------------------------


def test_compare_cli_exit_codes_and_formats(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = run_dir(tmp_path, "base", [record("seed_mlp"), record("seed_cnn")])
    same = run_dir(tmp_path, "same", [record("seed_mlp", median=0.0103), record("seed_cnn")])
    slow = run_dir(tmp_path, "slow", [record("seed_mlp", median=0.02), record("seed_cnn")])
    assert cli.main(["compare", str(b), str(same)]) == 0
    out, err = capsys.readouterr()
    assert "unchanged (unconfirmed)" in out and "within-run spread ×3" in err
    assert cli.main(["compare", str(b), str(slow), "--markdown"]) == 1
    out, _ = capsys.readouterr()
    assert out.startswith("### benchbench compare: `slow` vs `base`")
    assert "| torch/seed_mlp/bs1/cpu/inference/fp32 | throughput | 99.99/s | 50/s | 0.500 |" in out
    assert "🔴 regressed (unconfirmed)" in out
    assert cli.main(["compare", str(b), str(slow), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] is True and data["counts"]["regressed"] == 2
    assert {(r["metric"], r["verdict"]) for r in data["rows"] if r["label"].startswith("torch/seed_mlp")} == {
        ("throughput", "regressed"),
        ("latency_p99", "regressed"),
        ("memory", "unchanged"),
    }


def test_compare_cli_bad_input_is_exit_2_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = run_dir(tmp_path, "base", [record()])
    assert cli.main(["compare", str(b), str(tmp_path / "nope")]) == 2
    assert "nope: no such run directory" in capsys.readouterr().err
    bad = run_dir(tmp_path, "bad", [record(), record("seed_cnn")])
    lines = (bad / "results.jsonl").read_text().splitlines()
    (bad / "results.jsonl").write_text("{oops\n" + lines[1] + "\n")
    assert cli.main(["compare", str(b), str(bad)]) == 2
    assert f"{bad / 'results.jsonl'}:1: not a JSON record" in capsys.readouterr().err
    newer = run_dir(tmp_path, "newer", [])
    d = record().to_dict()
    d["schema_version"] = 99
    (newer / "results.jsonl").write_text(json.dumps(d) + "\n")
    assert cli.main(["compare", str(b), str(newer)]) == 2
    assert "schema_version 99 is newer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", str(b), str(b), "--threshold", "2"])
    assert e.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "latest~1", "latest"],
        ["history"],
        ["check", "--latest"],
        ["store", "export", "latest", "--format", "csv"],
    ],
)
def test_reading_commands_never_create_a_missing_store(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    typo = tmp_path / "histroy.db"
    assert cli.main([*argv, "--store", str(typo)]) == 2
    err = capsys.readouterr().err
    assert f"no such SQLite store {typo}" in err and "store import" in err and "Traceback" not in err
    assert not typo.exists()
    s = st.Store(f"sqlite:///{tmp_path / 'history.db'}")  # an existing (empty) store opens as before
    s.close()
    assert cli.main([*argv, "--store", str(tmp_path / "history.db")]) == 2
    assert ("no series match" if argv == ["history"] else "no runs") in capsys.readouterr().err


def test_compare_cli_warns_when_contexts_differ(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = run_dir(tmp_path, "base", [record()])
    c = run_dir(tmp_path, "cand", [record(device_name="CPU Y")])
    assert cli.main(["compare", str(b), str(c)]) == 0
    assert "warning: the runs' contexts differ" in capsys.readouterr().err


def test_store_references_history_and_check_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "h.db")
    s = _gate_store(tmp_path, [1.10, 1.0, 1.10, 1.10])
    s.close()
    url = s.url
    assert cli.main(["compare", "latest~1", "latest", "--store", url, "--json"]) == 0  # both slow nights
    data = json.loads(capsys.readouterr().out)
    assert data["candidate"]["run_id"] == "n16" and data["base"]["run_id"] == "n15"
    assert cli.main(["compare", "n14", "latest", "--store", url, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    mlp = {r["metric"]: r for r in data["rows"] if r["label"].startswith("torch/seed_mlp")}
    assert mlp["throughput"]["verdict"] == "regressed" and mlp["throughput"]["confirmed"] is True
    assert cli.main(["check", "--store", url, "--latest"]) == 1
    out = capsys.readouterr().out
    assert "regressions at c0ffee0000:" in out and "torch/seed_mlp/bs1/cpu/inference/fp32 throughput" in out
    assert cli.main(["check", "--store", url, "--run", "latest~4"]) == 0
    capsys.readouterr()
    assert cli.main(["history", "--store", url, "--case", "seed_cnn", "--json"]) == 0
    (h,) = json.loads(capsys.readouterr().out)
    assert h["runs"] == 16 and h["too_noisy"] is True
    assert cli.main(["history", "--store", url, "--case", "nothing"]) == 2
    assert cli.main(["check", "--store", url, "--persist", "4/3"]) == 2
    assert cli.main(["compare", "latest", "nope", "--store", url]) == 2
    assert db  # the store lives in tmp_path


def test_store_export_github_action_benchmark_and_csv(tmp_path, capsys):
    d = run_dir(tmp_path, "base", [record("seed_mlp", median=0.01), failed("seed_cnn")])
    assert cli.main(["store", "export", str(d), "--format", "github-bigger"]) == 0
    (e,) = json.loads(capsys.readouterr().out)
    assert e["name"] == "torch/seed_mlp/bs1/cpu/inference/fp32 throughput" and e["unit"] == "samples/s"
    assert e["value"] == pytest.approx(99.99, abs=0.01) and e["range"].startswith("±")
    assert cli.main(["store", "export", str(d), "--format", "github-smaller"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert [(x["unit"], round(x["value"], 3)) for x in small] == [
        ("ms", round(record().stats["p99"] * 1e3, 3)),
        ("MiB", 100.0),
    ]
    out = tmp_path / "run.csv"
    assert cli.main(["store", "export", str(d), "--format", "csv", "-o", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df["status"]) == ["ok", "failed"] and "stats.throughput" in df.columns
    assert cli.main(["store", "export", str(d), "--format", "parquet"]) == 2


def test_decide_applies_bh_over_every_series_including_noisy_ones():
    quiet = gate.Screen(baseline=1.0, change=0.0, p=0.5, persistent=0, mdc=0.02)
    noisy = gate.Screen(baseline=1.0, change=0.01, p=0.3, persistent=0, mdc=0.2)
    hit = gate.Screen(baseline=1.0, change=0.2, p=0.004, persistent=3, mdc=0.02)
    assert gate.decide([hit], 0.05, 2, 0.05) == ["regressed"]
    # among 20 tests BH needs p ≤ 0.05/20 for the smallest: 0.004 is not enough
    assert gate.decide([hit] + [quiet] * 19, 0.05, 2, 0.05) == ["unchanged"] * 20
    assert gate.decide([hit] + [noisy] * 19, 0.05, 2, 0.05) == ["unchanged"] + ["too noisy"] * 19
    once = gate.Screen(baseline=1.0, change=0.2, p=1e-6, persistent=1, mdc=0.02)
    assert gate.decide([once], 0.05, 2, 0.05) == ["unchanged"]  # one bad night is no alert
    assert gate.decide([once], 0.05, 1, 0.05) == ["regressed"]


def test_p_values_from_a_few_runs_get_heavier_tails():
    assert robust.t_as_z(0.0, 10) == 0.0
    assert robust.t_as_z(3.0, 10) < 3.0 and robust.t_as_z(-3.0, 10) == -robust.t_as_z(3.0, 10)
    assert robust.t_as_z(3.0, 1e6) == pytest.approx(3.0, rel=1e-3)


# --- energy, change points, the history report, exports ------------------------------------


def _with_energy(r: Record, j: float) -> Record:
    r.energy = {"primary": "rapl", "rapl": {"j_per_sample": j}}
    return r


def test_check_gates_energy_per_sample_where_records_have_it(tmp_path):
    s = st.Store(f"sqlite:///{tmp_path / 'e.db'}")
    calm = [1.0, 1.003, 0.997, 1.002, 0.998, 1.004, 0.996, 1.001, 0.999, 1.0, 1.002, 0.998]
    for day, f in enumerate(calm + [1.0, 1.0, 1.0], 1):
        tail = day > len(calm)
        s.add_run(
            run(
                f"n{day:02d}",
                [_with_energy(record("seed_mlp"), 0.5 * f * (1.2 if tail else 1.0)), record("seed_cnn")],
                day,
            )
        )
    v = _gate(s)
    assert v[("seed_mlp", "energy_per_sample")] == "regressed"  # +20% joules per sample, 3 nights
    assert v[("seed_mlp", "throughput")] == "unchanged"
    assert ("seed_cnn", "energy_per_sample") not in v  # not measured there: no row
    s.close()


def test_change_points_find_a_step_and_nothing_in_a_flat_or_short_series():
    from benchbench.history import changepoints

    noise = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0, 1.02, 0.98]
    series = [0.01 * f for f in noise * 2] + [0.012 * f for f in noise * 2]  # latency +20% at run 20
    (cp,) = changepoints.detect(series, False, [f"r{i}" for i in range(40)], [f"c{i:07d}" for i in range(40)])
    assert cp.index == 20 and cp.run_id == "r20" and cp.commit == "c0000020" and cp.worse
    assert cp.ratio == pytest.approx(1.2, rel=0.02)
    (cp,) = changepoints.detect([1 / v for v in series], True)  # the same as a throughput: worse too
    assert cp.worse and cp.ratio == pytest.approx(1 / 1.2, rel=0.02)
    assert changepoints.detect([0.01 * f for f in noise * 4], False) == []
    assert changepoints.detect([0.01 * f for f in noise * 3] + [0.03] + [0.01 * f for f in noise], False) == []
    assert changepoints.detect([1.0, 2.0, 2.0, 2.0, 1.0], False) == []  # shorter than two segments
    assert changepoints.penalty(40, 0.05) == pytest.approx(2 * 0.05 * math.log(40))


def test_history_reports_change_points_alerts_and_writes_the_trend_report(tmp_path, capsys):
    s = _gate_store(tmp_path, [1.25] * 8)  # seed_mlp 25% slower from night 13 on
    s.close()
    out = tmp_path / "history.html"
    assert cli.main(["history", "--store", s.url, "--case", "seed_mlp", "--json", "--report", str(out)]) == 0
    (h,) = json.loads(capsys.readouterr().out)
    (cp,) = h["change_points"]
    assert cp["index"] == 12 and cp["run_id"] == "n13" and cp["worse"] and cp["ratio"] == pytest.approx(0.8, rel=0.01)
    assert h["alerts"] and min(h["alerts"]) == 13  # the second slow night: persistence 2/3
    assert h["commits"][0] == "c0ffee0000" and len(h["created_at"]) == 20
    page = out.read_text()
    assert "change points: ×0.800 (worse) from c0ffee0000" in page  # the note above the figure
    assert "0.800 at c0ffee0000" in page and "gate alert" in page and "Plotly" in page  # in the figure
    assert cli.main(["history", "--store", s.url, "--case", "seed_mlp"]) == 0
    assert "×0.800 at c0ffee0000" in capsys.readouterr().out


def test_store_export_pytest_benchmark_parquet_and_energy(tmp_path, capsys):
    d = run_dir(tmp_path, "base", [_with_energy(record("seed_mlp", median=0.01), 0.25), failed("seed_cnn")])
    assert cli.main(["store", "export", str(d), "--format", "pytest-benchmark"]) == 0
    data = json.loads(capsys.readouterr().out)
    (b,) = data["benchmarks"]
    r = record("seed_mlp", median=0.01)
    assert b["name"] == "torch/seed_mlp/bs1/cpu/inference/fp32" and b["stats"]["rounds"] == len(r.samples)
    assert b["stats"]["median"] == pytest.approx(r.stats["median"]) and b["stats"]["min"] == min(r.samples)
    assert b["stats"]["ops"] == pytest.approx(1 / (sum(r.samples) / len(r.samples)))
    assert data["commit_info"]["id"] == "c0ffee0000" and data["machine_info"]["node"] == "h1"
    assert cli.main(["store", "export", str(d), "--format", "github-smaller"]) == 0
    assert [e["unit"] for e in json.loads(capsys.readouterr().out)] == ["ms", "MiB", "J"]
    pytest.importorskip("pyarrow", reason="parquet export needs pyarrow")
    import pandas as pd

    pq = tmp_path / "run.parquet"
    assert cli.main(["store", "export", str(d), "--format", "parquet", "-o", str(pq)]) == 0
    df = pd.read_parquet(pq)
    assert list(df["status"]) == ["ok", "failed"] and set(df["run_id"]) == {"base"}


def test_confirm_mode_screen_nominates_noisy_series_the_confirm_then_decides():
    noisy_step = gate.Screen(baseline=1.0, change=0.10, p=0.08, persistent=0, mdc=0.14, worse_runs=2)
    noisy_flat = gate.Screen(baseline=1.0, change=0.01, p=0.4, persistent=0, mdc=0.14, worse_runs=0)
    once = gate.Screen(baseline=1.0, change=0.10, p=0.08, persistent=0, mdc=0.02, worse_runs=1)
    # without the confirm a 10% step in a series that can only see 14% is "too noisy"
    assert gate.decide([noisy_step, noisy_flat], 0.05, 2, 0.05) == ["too noisy", "too noisy"]
    # with it, the step is nominated (ab re-measures it); the flat series still says too noisy
    assert gate.decide([noisy_step, noisy_flat, once], 0.05, 2, 0.05, confirm=True) == [
        "regressed",
        "too noisy",
        "unchanged",
    ]


# --- broken is a verdict: compare and check exit 1 --------------------------------------------


def test_compare_cli_fails_on_a_broken_case_in_every_format_unless_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = run_dir(tmp_path, "base", [record("seed_mlp"), record("seed_cnn")])
    c = run_dir(tmp_path, "cand", [record("seed_mlp"), failed("seed_cnn")])
    assert cli.main(["compare", str(b), str(c)]) == 1
    out, err = capsys.readouterr()
    assert "broken: torch/seed_cnn/bs1/cpu/inference/fp32: candidate failed: boom" in out
    assert "1 broken case(s)" in err and "--allow-broken" in err
    assert cli.main(["compare", str(b), str(c), "--markdown"]) == 1
    md = capsys.readouterr().out.splitlines()
    table = [line for line in md if line.startswith("| torch/")]
    assert (
        table[0] == "| torch/seed_cnn/bs1/cpu/inference/fp32 | * | — | — | — | — | 💥 broken | candidate failed: boom |"
    )
    assert cli.main(["compare", str(b), str(c), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["broken"] is True and data["rows"][0]["verdict"] == "broken"
    assert data["rows"][0]["note"] == "candidate failed: boom"
    # --allow-broken: still shown, no longer the exit code; a regression still is
    assert cli.main(["compare", str(b), str(c), "--allow-broken"]) == 0
    out, err = capsys.readouterr()
    assert "broken: torch/seed_cnn" in out and "allowed by --allow-broken" in err
    slow = run_dir(tmp_path, "slow", [record("seed_mlp", median=0.02), failed("seed_cnn")])
    assert cli.main(["compare", str(b), str(slow), "--allow-broken"]) == 1


def test_compare_cli_a_candidate_that_measured_nothing_is_exit_1_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    b = run_dir(tmp_path, "base", [record("seed_mlp"), record("seed_cnn")])
    all_failed = run_dir(tmp_path, "night10", [failed("seed_mlp"), failed("seed_cnn")])
    assert cli.main(["compare", str(b), str(all_failed)]) == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "nothing was measured" in x]
    assert line == "nothing was measured in night10: no case has an ok record (2 failed; first reason: boom)"
    assert cli.main(["compare", str(b), str(all_failed), "--allow-broken"]) == 1  # --allow-broken does not cover it
    assert "nothing was measured in night10" in capsys.readouterr().err
    # both runs failed every case: before, an empty table and exit 0
    assert cli.main(["compare", str(all_failed), str(all_failed), "--markdown"]) == 1
    out, err = capsys.readouterr()
    assert "**Nothing measured:**" in out and "⚠️ failed" in out and "nothing was measured in night10" in err
    empty = run_dir(tmp_path, "empty", [])
    (empty / "results.jsonl").write_text("")  # a run that wrote no record at all
    assert cli.main(["compare", str(b), str(empty), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["nothing_measured"] is True and data["counts"]["broken"] == 2
    # skipped in both is not broken, and a candidate that measured something passes
    sk = run_dir(tmp_path, "sk", [record("seed_mlp"), skipped("seed_cnn")])
    assert cli.main(["compare", str(sk), str(sk)]) == 0
    out = capsys.readouterr().out
    assert "broken" not in out and "seed_cnn" not in out


def _broken_store(tmp_path, last_nights):
    """12 good nights of seed_mlp and seed_cnn (and resnet18 skipped every night), then
    ``last_nights``: lists of records for the newest nights."""
    s = st.Store(f"sqlite:///{tmp_path / 'broken.db'}")
    day = 0
    for f in WOBBLE:
        day += 1
        recs = [record("seed_mlp", median=0.01 * f), record("seed_cnn", median=0.01 * f), skipped("resnet18")]
        s.add_run(run(f"n{day:02d}", recs, day))
    for recs in last_nights:
        day += 1
        s.add_run(run(f"n{day:02d}", recs, day))
    return s


def _raise(model):
    r = failed(model)
    r.reason = "RuntimeError: boom in forward"
    return r


def test_check_a_night_where_every_case_raised_is_broken_and_nothing_measured(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    night10 = [_raise("seed_mlp"), _raise("seed_cnn"), skipped("resnet18")]
    s = _broken_store(tmp_path, [night10])
    check = gate.check_run(s, s.resolve("latest"))
    s.close()
    assert [(r.label.split("/")[1], r.metric, r.verdict) for r in check.rows] == [
        ("seed_mlp", "*", "broken"),
        ("seed_cnn", "*", "broken"),
    ]  # resnet18: skipped every night, not broken
    assert check.rows[0].note == "this run failed: RuntimeError: boom in forward (ok in n12)"
    assert check.nothing_measured and "nothing was measured in n13" in check.nothing_measured
    assert cli.main(["check", "--latest", "--store", s.url]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "check n13: 2 broken"
    assert "  torch/seed_mlp/bs1/cpu/inference/fp32: this run failed: RuntimeError: boom in forward (ok in n12)" in out
    assert "nothing was measured in n13: no case has an ok record (2 failed, 1 skipped;" in err
    assert cli.main(["check", "--latest", "--store", s.url, "--allow-broken"]) == 1  # nothing measured still fails
    capsys.readouterr()
    assert cli.main(["check", "--latest", "--store", s.url, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["broken"] is True and data["nothing_measured"] is True and data["rows"][0]["verdict"] == "broken"


def test_check_a_lost_case_stays_broken_on_later_nights_and_allow_broken_passes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok = record("seed_mlp")
    s = _broken_store(
        tmp_path,
        [
            [ok, _raise("seed_cnn"), skipped("resnet18")],
            [ok, skipped("seed_cnn", reason="no such device"), skipped("resnet18")],  # the second night lost
            [ok, skipped("resnet18")],  # seed_cnn absent: it was not ok the night before, so not newly lost…
        ],
    )
    rows = gate.check_latest(s, "n14")
    broken = [(r.label.split("/")[1], r.note) for r in rows if r.verdict == "broken"]
    assert broken == [("seed_cnn", "this run skipped: no such device (ok in n12)")]
    assert [r.verdict for r in gate.check_latest(s, "n15") if r.verdict == "broken"] == []
    s.add_run(run("n16", [record("seed_mlp")], 16))  # …but a case ok in the previous night and absent now is
    s.add_run(run("n17", [record("seed_cnn")], 17))
    check = gate.check_run(s, "n17")
    s.close()
    assert [(r.label.split("/")[1], r.note) for r in check.broken] == [("seed_mlp", "not in this run (ok in n16)")]
    assert cli.main(["check", "--run", "n14", "--store", s.url]) == 1
    capsys.readouterr()
    assert cli.main(["check", "--run", "n14", "--store", s.url, "--allow-broken"]) == 0
    out, err = capsys.readouterr()
    assert "broken (ok before, not measured in this run):" in out and "allowed by --allow-broken" in err
