"""The HTML report from stored records: sections present only with data, every user
string escaped, Plotly's bundle embedded once, runs merged, the baseline's speed-up,
the CLI, and no framework imported. Records are generated (benchbench.report.synthetic)
and written with results.append_record into real run directories."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchbench.errors import UserError
from benchbench.report import build_report, default_out
from benchbench.report import frame as data
from benchbench.report.synthetic import environment, make_record, write_run
from conftest import bb, write

XSS = "<script>alert(1)</script>"
XSS_REASON = "<img src=x onerror=alert(2)>"
SECTION_IDS = (
    "summary",
    "throughput",
    "latency",
    "scaling",
    "frameworks",
    "memory",
    "energy",
    "failures",
    "environment",
)


def sections_of(text: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)"', text))


def figures_of(text: str) -> list[dict]:
    block = re.search(r'<script type="application/json" id="bb-figures">(.*?)</script>', text, re.S).group(1)
    return json.loads(block)


def mixed_records(host="host-a", speed=1.0):
    """Two models × batch 1, 4, 8 × inference/train, a failed and a skipped case, and a
    model whose name is a script tag."""
    recs = [
        make_record(m, b, mode=mode, host=host, speed=speed)
        for m in ("seed_mlp", "resnet18")
        for b in (1, 4, 8)
        for mode in ("inference", "train")
    ]
    recs.append(
        make_record(
            "resnet18",
            64,
            mode="train",
            status="failed",
            host=host,
            reason="out of memory: worker RSS 3 GiB exceeded the memory limit 2 GiB",
        )
    )
    recs.append(
        make_record(
            "seed_cnn", 8, device="cuda", status="skipped", host=host, reason="cuda: no CUDA GPU visible to PyTorch"
        )
    )
    recs.append(make_record(XSS, 2, host=host))
    recs.append(make_record(XSS, 4, status="failed", reason=XSS_REASON, host=host))
    return recs


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "runs" / "mixed" / "20261125T120000Z-aaaaaa", mixed_records())


def test_a_full_report_has_every_section_with_data_and_plotly_once(run_dir):
    out = build_report([run_dir])
    assert out == run_dir / "report.html"
    text = out.read_text(encoding="utf-8")
    # one framework only: no framework comparison; every other section has data
    assert sections_of(text) == set(SECTION_IDS) - {"frameworks"}
    import plotly.offline

    bundle = plotly.offline.get_plotlyjs()
    assert text.count(bundle[:2000]) == 1 and text.count(bundle[-2000:]) == 1
    assert len(re.findall(r"<script\b", text)) == 3  # the bundle, the figure data, the page's own script
    assert "plotly.js v" in text
    assert not re.search(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=", text)  # nothing fetched
    figs = figures_of(text)
    assert len(figs) == len(re.findall(r'<div class="fig" id="fig-', text)) >= 6
    for f in figs:  # units in every axis title
        for name, axis in f["fig"]["layout"].items():
            if re.fullmatch(r"[xy]axis\d*", name) and axis.get("title", {}).get("text"):
                assert "(" in axis["title"]["text"] or "·" in axis["title"]["text"], axis["title"]


def test_user_strings_are_escaped_everywhere(run_dir):
    text = build_report([run_dir]).read_text(encoding="utf-8")
    page_only = text.replace(__import__("plotly.offline").offline.get_plotlyjs(), "")
    assert XSS not in page_only and "<img src=x" not in page_only
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page_only  # table cell, shown as text
    assert "&lt;img src=x onerror=alert(2)&gt;" in page_only  # failure reason, shown as text
    # inside the figure JSON the name is escaped for Plotly (which shows entities as characters)
    blob = json.dumps(figures_of(text))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in blob
    assert "<script" not in blob


def test_sections_without_data_are_left_out(tmp_path):
    skipped = [make_record("resnet18", 8, device="cuda", status="skipped", reason="no GPU")]
    text = build_report([write_run(tmp_path / "a", skipped)]).read_text(encoding="utf-8")
    assert sections_of(text) == {"summary", "failures", "environment"}
    assert figures_of(text) == []

    one_batch = [make_record("seed_cnn", 4), make_record("seed_mlp", 4)]
    run = write_run(tmp_path / "b", one_batch)
    (run / "environment.json").unlink()
    text = build_report([run]).read_text(encoding="utf-8")
    assert sections_of(text) == {"summary", "throughput", "latency", "memory", "energy"}


def test_two_frameworks_get_a_comparison_and_fixed_colours(tmp_path):
    recs = [
        make_record("resnet18", b, framework=fw, variant=v)
        for fw in ("torch", "tensorflow")
        for b in (1, 8)
        for v in ("fp32", "fp16")
    ]
    text = build_report([write_run(tmp_path / "r", recs)]).read_text(encoding="utf-8")
    assert "frameworks" in sections_of(text)
    figs = {f["id"]: f["fig"] for f in figures_of(text)}
    comparison = figs["fig-frameworks-0"]
    assert {t["name"] for t in comparison["data"]} == {"tensorflow", "torch"}
    # the same variant has the same colour in every figure; frameworks differ by pattern
    colours = {}
    for fig in figs.values():
        for t in fig["data"]:
            if t["type"] in ("bar", "box") and t.get("name", "").endswith(("fp32", "fp16")):
                colours.setdefault(t["name"].split(" · ")[-1], set()).add(t["marker"]["color"])
    assert colours == {"fp32": {"#1f77b4"}, "fp16": {"#ff7f0e"}}


def test_baseline_adds_speedup_and_an_unknown_one_is_refused(tmp_path):
    recs = [make_record("resnet18", 8, variant=v) for v in ("fp32", "fp16")]
    run = write_run(tmp_path / "r", recs)
    runs = data.load_runs([run])
    df = data.cases_frame(runs, baseline="fp32")
    med = dict(zip(df["variant"], df["median_s"]))
    sp = dict(zip(df["variant"], df["speedup"]))
    assert sp["fp32"] == pytest.approx(1.0)
    assert sp["fp16"] == pytest.approx(med["fp32"] / med["fp16"]) and sp["fp16"] > 1.5
    text = build_report([run], tmp_path / "x.html", baseline="fp32").read_text(encoding="utf-8")
    assert "speed-up vs fp32" in text and f"×{sp['fp16']:.2f}" in text
    with pytest.raises(UserError, match="no such variant.*present: fp16, fp32"):
        build_report([run], tmp_path / "y.html", baseline="int8")


def test_throughput_is_median_based_with_honest_ci_bounds(run_dir):
    df = data.cases_frame(data.load_runs([run_dir]))
    r = df[(df["model"] == "resnet18") & (df["batch_size"] == 8) & (df["mode"] == "inference")].iloc[0]
    assert r.thr_median == pytest.approx(8 / r.median_s)
    assert r.thr_low == pytest.approx(8 / r.ci_high_s) and r.thr_high == pytest.approx(8 / r.ci_low_s)
    assert r.thr_low <= r.thr_median <= r.thr_high
    assert r.origin == "" and r.series == "fp32"


def test_several_runs_and_machines_merge(tmp_path, monkeypatch):
    a = write_run(tmp_path / "a" / "run-a", mixed_records("host-a"), suite="mixed", env=environment("host-a"))
    b = write_run(
        tmp_path / "b" / "run-b",
        mixed_records("host-b", speed=2.0),
        suite="other",
        env=environment("host-b", gpu="NVIDIA H100"),
    )
    monkeypatch.chdir(tmp_path)
    assert default_out([a]) == a / "report.html"
    assert default_out([a, b]) == Path("report.html")
    out = build_report([a, b, a / "results.jsonl"])  # the same run twice counts once
    assert out == Path("report.html")
    text = out.read_text(encoding="utf-8")
    assert "mixed, other" in text and "host-a: AMD EPYC" in text and "NVIDIA H100" in text
    assert "machine · run" in text
    df = data.cases_frame(data.load_runs([a, b]))
    assert len(df) == 2 * len(mixed_records())
    assert set(df["origin"]) == {"host-a", "host-b"}
    # side by side: the same case on both machines is two categories of one figure
    thr = next(f["fig"] for f in figures_of(text) if f["id"] == "fig-throughput-0")
    cats = thr["layout"]["xaxis"]["categoryarray"]
    assert any("@ host-a" in c for c in cats) and any("@ host-b" in c for c in cats)


def test_same_case_in_two_runs_of_one_machine_is_told_apart_by_run(tmp_path):
    a = write_run(tmp_path / "run-a", [make_record("seed_cnn", 4)])
    b = write_run(tmp_path / "run-b", [make_record("seed_cnn", 4)])
    df = data.cases_frame(data.load_runs([a, b]))
    assert sorted(df["origin"]) == ["bench-host · run-a", "bench-host · run-b"]


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run directory"):
        build_report([tmp_path / "empty"])


def test_the_reporter_imports_no_framework(run_dir, tmp_path):
    code = (
        "import sys; import benchbench.report as r; "
        f"r.build_report([{str(run_dir)!r}], {str(tmp_path / 'r.html')!r}); "
        "bad = [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "r.html").exists()


def test_cli_report(run_dir, tmp_path):
    out = tmp_path / "sub" / "my.html"
    proc = bb("report", run_dir, "-o", out, "--baseline", "fp32")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out) and out.exists()
    proc = bb("report", tmp_path / "missing")
    assert proc.returncode == 2 and proc.stderr.strip().endswith("no such run directory")
    assert "Traceback" not in proc.stderr
    proc = bb("report", run_dir, "--baseline", "int8")
    assert proc.returncode == 2 and "present: fp32" in proc.stderr
    proc = bb("report", run_dir, "--format", "gif")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def _cli_without(module: str, *argv) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess where ``import module`` fails, as if not installed."""
    code = (
        f"import sys; sys.modules[{module!r}] = None; from benchbench.cli import main; "
        f"sys.exit(main({[str(a) for a in argv]!r}))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_format_without_kaleido_is_one_line_and_exit_2(run_dir, tmp_path):
    proc = _cli_without("kaleido", "report", run_dir, "-o", tmp_path / "r.html", "--format", "png")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --format png: static figures need kaleido and a Chrome/Chromium; "
        "kaleido is not installed (pip install kaleido)"
    )
    assert not (tmp_path / "r.html").exists()  # refused before anything is written


def test_report_without_plotly_is_one_line_and_exit_2(run_dir, tmp_path):
    proc = _cli_without("plotly", "report", run_dir, "-o", tmp_path / "r.html")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: report: plotly is not installed (pip install plotly)"


def test_format_svg_writes_every_figure(run_dir, tmp_path):
    pytest.importorskip("kaleido", reason="kaleido is not installed")
    from benchbench.report import static

    if static.find_browser() is None:
        pytest.skip("no Chrome/Chromium for kaleido")
    out = build_report([run_dir], tmp_path / "r.html", fmt="svg")
    files = sorted(static.figures_dir(out).iterdir())
    assert len(files) == len(figures_of(out.read_text(encoding="utf-8")))
    assert files[0].name == "01-throughput-inference.svg"
    assert all(f.read_text(encoding="utf-8").lstrip().startswith("<svg") for f in files)


SUITE = """\
name: reported
matrix:
  model: [seed_mlp]
  batch_size: [1]
defaults:
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.3
  min_iters: 8
  threads: 1
  timeout: 120
"""


@pytest.mark.slow
def test_a_run_writes_its_report_and_a_report_failure_keeps_the_run(tmp_path):
    suite = write(tmp_path / "s.yaml", SUITE)
    proc = bb("run", suite, "--out", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "out" / "reported").iterdir()
    report = run / "report.html"
    assert report.exists() and f"report: {report}" in proc.stderr
    assert "seed_mlp" in report.read_text(encoding="utf-8")
    # a report that cannot be written: one line on stderr, the run's exit code kept
    report.unlink()
    report.mkdir()
    proc = bb("run", "--resume", run, "--strict", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("report not written")]
    assert len(lines) == 1 and f"benchbench report {run}" in lines[0]
    assert len((run / "results.jsonl").read_text().splitlines()) == 1
    # without plotly: the same, with the reason
    report.rmdir()
    proc = _cli_without("plotly", "run", "--resume", run, "--strict")
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("report not written")] == [
        f"report not written (UserError: report: plotly is not installed (pip install plotly)); "
        f"try again: benchbench report {run}"
    ]
    assert not report.exists()
