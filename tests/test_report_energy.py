"""The report's energy section from stored records: J/sample drawn only where measured
(with its source), unavailable domains listed with their reason (never a zero bar), the
sampler's time series, the summary table's J/sample column, escaping, and the cap on
how many cases' series are drawn."""

import json
import re

from benchbench.report import build_report
from benchbench.report.energy import MAX_SERIES_CASES
from benchbench.report.synthetic import NO_RAPL, make_record, write_run

XSS = "<img src=x onerror=alert(3)>"


def figures_of(text: str) -> dict[str, dict]:
    block = re.search(r'<script type="application/json" id="bb-figures">(.*?)</script>', text, re.S).group(1)
    return {f["id"]: f["fig"] for f in json.loads(block)}


def energy_section(text: str) -> str:
    m = re.search(r'<section id="energy".*?</section>', text, re.S)
    assert m, "no energy section"
    return m.group(0)


def test_cpu_only_energy_is_listed_unavailable_with_its_reason_and_never_drawn(tmp_path):
    recs = [make_record("seed_cnn", b, mode=m) for b in (1, 8) for m in ("inference", "train")]
    text = build_report([write_run(tmp_path / "r", recs)]).read_text(encoding="utf-8")
    sec = energy_section(text)
    assert f"CPU packages (RAPL): unavailable in 4 cases — {NO_RAPL}" in sec
    figs = figures_of(text)
    assert not [f for f in figs.values() if f["layout"]["title"]["text"].startswith("Energy per sample")]
    util = [f for f in figs.values() if f["layout"]["yaxis"]["title"]["text"] == "utilisation (%)"]
    assert len(util) == 1 and len(util[0]["data"]) == 4  # one worker-CPU line per case
    assert 'id="bb-energy"' not in sec  # no table of measured energy: nothing was measured
    summary = re.search(r'<table id="bb-summary".*?</table>', text, re.S).group(0)
    assert "J/sample" not in summary


def test_gpu_energy_is_drawn_per_sample_with_its_source_and_in_the_summary(tmp_path):
    recs = [make_record("resnet18", b, device="cuda") for b in (1, 8)] + [make_record("resnet18", 8)]
    text = build_report([write_run(tmp_path / "r", recs)]).read_text(encoding="utf-8")
    figs = figures_of(text)
    bars = [f for k, f in figs.items() if f["layout"]["title"]["text"] == "Energy per sample, GPU (NVML)"]
    assert len(bars) == 1
    want = sorted(r.energy["gpu"]["j_per_sample"] for r in recs[:2])
    got = sorted(y for trace in bars[0]["data"] for y in trace["y"])
    assert got == want
    assert all("nvml-energy-counter" in h for trace in bars[0]["data"] for h in trace["hovertext"])
    power = [f for f in figs.values() if f["layout"]["yaxis"]["title"]["text"] == "power (W)"]
    assert len(power) == 1 and all(len(t["y"]) == 40 for t in power[0]["data"])
    sec = energy_section(text)
    assert sec.count("nvml-energy-counter</td>") == 2  # a table row per measured domain
    # the GPU cases' CPU domain and the CPU case: unavailable, with the reason
    assert f"CPU packages (RAPL): unavailable in 3 cases — {NO_RAPL}" in sec
    summary = re.search(r'<table id="bb-summary".*?</table>', text, re.S).group(0)
    assert "J/sample" in summary and summary.count('title="source: nvml-energy-counter"') == 2
    assert summary.count('title="unavailable: ' + NO_RAPL) == 1  # the CPU case: n/a, not 0


def test_records_without_telemetry_have_no_energy_section(tmp_path):
    recs = [make_record("seed_cnn", 4), make_record("seed_mlp", 4)]
    for r in recs:
        r.telemetry, r.energy = {}, {}
    text = build_report([write_run(tmp_path / "r", recs)]).read_text(encoding="utf-8")
    assert '<section id="energy"' not in text


def test_stored_reasons_are_escaped(tmp_path):
    rec = make_record("seed_cnn", 4)
    rec.energy["cpu"]["reason"] = XSS
    text = build_report([write_run(tmp_path / "r", [rec])]).read_text(encoding="utf-8")
    sec = energy_section(text)
    assert XSS not in sec and "&lt;img src=x onerror=alert(3)&gt;" in sec


def test_only_the_first_cases_series_are_drawn_and_the_note_says_so(tmp_path):
    recs = [make_record("seed_cnn", b) for b in range(1, MAX_SERIES_CASES + 6)]
    text = build_report([write_run(tmp_path / "r", recs)]).read_text(encoding="utf-8")
    util = [f for f in figures_of(text).values() if f["layout"]["yaxis"]["title"]["text"] == "utilisation (%)"]
    assert len(util[0]["data"]) == MAX_SERIES_CASES
    assert f"for {MAX_SERIES_CASES} of the {MAX_SERIES_CASES + 5} cases that have them" in energy_section(text)
