"""Host memory apart from the framework's footprint (issue 17, item 11): the record keeps the
worker's RSS as the model build starts and the peak above it (the model, the variant and the
working set) beside the total peak, which still counts what came before the build."""

from __future__ import annotations

import sys

import pytest

from benchbench.case import Case, Settings
from benchbench.framework.base import Prepared
from benchbench.worker import core

MiB = 2**20
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


def _touch(n_bytes: int) -> bytearray:
    buf = bytearray(n_bytes)
    buf[::4096] = b"x" * len(buf[::4096])  # every page resident
    return buf


class BuildsABuffer:
    """A backend whose build holds ``build_mib`` MiB (the model) for the whole case."""

    name = "fake"

    def __init__(self, build_mib: int):
        self.build_mib, self.held = build_mib, None

    def prepare(self, case):
        self.held = _touch(self.build_mib * MiB)
        return Prepared(step=lambda: None, cold_start={"build_s": 0.0}, runtime={"device_type": "cpu"},
                        reset_peak_memory=lambda: None, device_memory=lambda: {},
                        model_facts=lambda: {})  # fmt: skip


def _case() -> Case:
    s = Settings(warmup_iters=1, min_time=0.01, max_time=0.05, min_iters=5, telemetry_hz=0)
    return Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,), settings=s)


@linux
def test_the_peak_above_the_build_start_is_the_case_not_what_came_before(monkeypatch):
    from benchbench import backends

    backend = BuildsABuffer(64)
    monkeypatch.setattr(backends, "get", lambda name: backend)
    # before the build (the framework's import, say): a 256 MiB peak, released again
    before = _touch(256 * MiB)
    del before
    rec = core.measure_case(_case())
    assert rec.status == "ok", rec.reason
    m = rec.memory
    above, start, total = (m["host_peak_above_build_start_bytes"], m["host_rss_at_build_start_bytes"],
                           m["host_peak_rss_bytes"])  # fmt: skip
    assert 64 * MiB <= above < 96 * MiB  # the 64 MiB the build holds, not the 256 MiB before it
    assert "reset as the build started" in m["host_peak_above_build_start_source"]
    assert total >= start + 256 * MiB - 8 * MiB  # the total peak still counts what came before the build
    assert total >= start + above


def test_without_a_resettable_peak_the_figure_is_an_upper_bound_and_says_so(tmp_path):
    mark = core.build_start(clear_refs=str(tmp_path / "no-such-dir" / "clear_refs"))
    assert mark["reset"] is False and "clear_refs" in mark["reset_reason"]
    m = core.host_memory(mark)
    assert m["host_rss_at_build_start_bytes"] == mark["rss"]
    assert m["host_peak_above_build_start_bytes"] == m["host_peak_rss_bytes"] - mark["rss"]
    assert "an upper bound" in m["host_peak_above_build_start_source"]


def test_the_terminal_table_shows_the_part_above_the_build():
    from benchbench.cli.display import host_rss

    assert host_rss({"host_peak_rss_bytes": 913 * MiB, "host_peak_above_build_start_bytes": 45 * MiB}) == (
        "913 MiB (+45)"
    )
    assert host_rss({"host_peak_rss_bytes": 913 * MiB}) == "913 MiB"  # an older record


def test_the_report_shows_the_part_above_the_build(tmp_path):
    pytest.importorskip("plotly")
    from benchbench.cli import main
    from benchbench.measure.stats import summarize
    from benchbench.results import Record, append_record, write_json

    run = tmp_path / "run"
    run.mkdir()
    for variant, above in (("fp32", 70), ("bf16", 45)):
        case = Case("torch", "resnet18", 1, "cpu", "inference", variant, (3, 224, 224))
        samples = [0.01 * (1 + i / 100) for i in range(20)]
        append_record(run / "results.jsonl", Record(
            case=case.to_dict(), status="ok", stats=summarize(samples, 1).to_dict(), samples=samples,
            memory={"host_peak_rss_bytes": 900 * MiB, "host_rss_at_build_start_bytes": 830 * MiB,
                    "host_peak_above_build_start_bytes": above * MiB},
            runtime={"framework": "torch", "device_name": "CPU X"}))  # fmt: skip
    write_json(run / "environment.json", {"host": "h", "cpu": {"model": "CPU X"}})
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    html = out.read_text()
    assert "above build MiB" in html and "Host memory above the framework" in html
    assert "(45 MiB above the build start)" in html
