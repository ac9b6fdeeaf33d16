"""benchbench inside pytest: a test measures one case by benchbench's rules, gates it on a
stored baseline, and the session's results are written as pytest-benchmark's JSON.

Registered with the ``pytest11`` entry point ``benchbench`` (pyproject.toml), so pytest loads
this module in every session: it imports no framework, and nothing of benchbench until a test
asks for a measurement. It is off unless asked for: without ``--benchbench`` (or one of the
options below, which imply it) a test that uses the ``bench`` fixture is skipped, with the
reason. ``pytest -p benchbench`` loads it where plugin autoloading is off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).

.. code-block:: python

    def test_resnet18_bf16(bench):
        record = bench.run(model="resnet18", batch_size=8, variant="bf16", min_time=2)
        bench.assert_no_regression(record, store="results/history.db")

``bench.run`` is ``benchbench run`` of a one-case suite: the suite is validated as a file
would be, the case runs in fresh worker processes (forked from a preloaded server on the
CPU), combined into one record by the runner, in a run directory of its own. A case that
cannot run here is a skipped test with the reason; a failed case fails the test with the
worker's reason and log. ``bench.assert_no_regression`` is ``benchbench compare`` of the
case against a stored baseline: the same verdicts, failing on a regression or a broken case.

Options: ``--benchbench``; ``--benchbench-json PATH`` (pytest-benchmark's ``--benchmark-json``
layout: ``pytest-benchmark compare`` and github-action-benchmark's ``tool: pytest`` read it);
``--benchbench-store URL`` (each run appended to a history store, for later sessions and
``benchbench compare``/``check`` to gate on); ``--benchbench-out DIR`` (where the run
directories go; default: pytest's temporary directory).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from benchbench.history.compare import Comparison
    from benchbench.results import Record
    from benchbench.rundir import Run

SUITE_NAME = "pytest"  # the run directories' suite, and the runs' suite in a history store


@dataclass
class _Entry:
    nodeid: str
    test: str
    record: Record
    run_dir: Path


@dataclass
class _Session:
    on: bool
    json_path: str | None
    store: str | None
    out: str | None
    entries: list[_Entry] = field(default_factory=list)


_STATE = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("benchbench", "benchbench: cases measured in worker processes (the bench fixture)")
    group.addoption(
        "--benchbench",
        action="store_true",
        help="run the tests that use the bench fixture (skipped otherwise)",
    )
    group.addoption(
        "--benchbench-json",
        metavar="PATH",
        help="write the measurements as pytest-benchmark's JSON (--benchmark-json layout); implies --benchbench",
    )
    group.addoption(
        "--benchbench-store",
        metavar="URL",
        help="append each run to this history store (sqlite file or postgresql://…); implies --benchbench",
    )
    group.addoption(
        "--benchbench-out",
        metavar="DIR",
        help="root of the run directories (default: pytest's temporary directory); implies --benchbench",
    )


def pytest_configure(config: pytest.Config) -> None:
    json_path = config.getoption("--benchbench-json")
    store = config.getoption("--benchbench-store")
    out = config.getoption("--benchbench-out")
    on = bool(config.getoption("--benchbench") or json_path or store or out)
    config.stash[_STATE] = _Session(on, json_path, store, out)


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Bench:
    """One case measured by benchbench's rules (``bench.run``), gated on a stored baseline
    (``bench.assert_no_regression``). Skips the test unless pytest runs with ``--benchbench``."""
    state = request.config.stash[_STATE]
    if not state.on:
        pytest.skip("benchbench measurements are off: run pytest with --benchbench")
    if state.out is None:
        state.out = str(request.getfixturevalue("tmp_path_factory").getbasetemp() / "benchbench")
    return Bench(state, request.node)


class Bench:
    """What the ``bench`` fixture gives a test."""

    def __init__(self, state: _Session, node: pytest.Item):
        self._state = state
        self._node = node

    def run(
        self,
        model: str,
        batch_size: int,
        variant: str = "fp32",
        *,
        framework: str = "torch",
        mode: str = "inference",
        device: str = "cpu",
        **settings: Any,
    ) -> Record:
        """Measure one case and return its record. ``settings`` are a suite's ``defaults:``
        keys (``min_time=2``, ``threads=4``, ``processes=3``, ``input_shape=[3, 160, 160]``,
        ``memory_limit="4GiB"``, …), validated as in a suite file. Models are found as
        ``benchbench run`` finds them, the test file's directory standing for the suite's."""
        import yaml

        from benchbench import runner
        from benchbench.errors import UserError
        from benchbench.executors.local import LocalExecutor
        from benchbench.rundir import new_run_dir
        from benchbench.suite.schema import parse_suite

        axes = {
            "framework": framework,
            "model": model,
            "batch_size": batch_size,
            "device": device,
            "mode": mode,
            "variant": variant,
        }
        lists = [k for k, v in axes.items() if isinstance(v, (list, tuple))]
        if lists:
            pytest.fail(f"bench.run: one case at a time; {', '.join(lists)} given as a list", pytrace=False)
        spec: dict[str, Any] = {"name": SUITE_NAME, "matrix": axes}
        if settings:
            spec["defaults"] = settings
        text = yaml.safe_dump(spec, sort_keys=False)
        # not written: it names the suite's directory (the test's, on the workers' path) and the errors
        where = Path(str(self._node.path)).parent / f"bench.run[{self._node.name}].yaml"
        try:
            suite = parse_suite(text, str(where))
        except UserError as e:
            problems = [line.split(": ", 1)[1] if line.startswith(str(where)) else line for line in e.lines()]
        else:
            problems = []
        if problems:  # outside the except: the message alone, no chained traceback
            pytest.fail("bench.run: " + "; ".join(problems) + f"\nthe one-case suite:\n{text}", pytrace=False)
        run_dir = new_run_dir(Path(self._state.out or "results"), suite.name)
        executor = LocalExecutor()
        try:
            result = runner.run(suite, list(suite.cases), run_dir, executor=executor)
        finally:
            executor.close()
        if result.interrupted:
            raise KeyboardInterrupt(f"benchbench: interrupted; what finished is in {run_dir}")
        record = result.records[0]
        self._state.entries.append(_Entry(self._node.nodeid, self._node.name, record, run_dir))
        if self._state.store:
            _store_run(self._state.store, run_dir)
        label = suite.cases[0].label
        if record.status == "skipped":
            pytest.skip(f"{label}: {record.reason}")
        if record.status != "ok":
            log = run_dir / record.runtime["log"] if record.runtime.get("log") else run_dir
            pytest.fail(f"{label} {record.status}: {record.reason} (worker log: {log})", pytrace=False)
        return record

    def assert_no_regression(
        self,
        record: Record,
        *,
        store: str,
        baseline: str | None = None,
        threshold: float = 0.05,
        fdr: float = 0.05,
        allow_broken: bool = False,
    ) -> Comparison:
        """``benchbench compare BASELINE RUN --store STORE`` for this record's case: fails the
        test on a regression, a broken case (unless ``allow_broken``) or nothing measured, as
        ``compare`` exits 1; returns the comparison otherwise. ``baseline``: a store reference
        (``latest``, ``latest~N``, a run id, a date, a commit); by default the newest earlier
        run of the store that measured this case on this machine (same context). With no such
        run the case is ``new``: nothing to gate, and a warning says so."""
        from benchbench.errors import UserError
        from benchbench.history import compare
        from benchbench.history.store import open_existing

        cand = self._run_of(record)
        problem = None
        try:
            s = open_existing(store, "bench.assert_no_regression")
            try:
                base = _baseline(s, cand, record, baseline)
                cmp = compare.compare_runs(base, cand, threshold=threshold, store=s, fdr=fdr)
            finally:
                s.close()
        except UserError as e:  # no such store, no such baseline run: said as compare says it
            problem = "; ".join(e.lines())
        if problem is not None:
            pytest.fail(f"bench.assert_no_regression: {problem}", pytrace=False)
        table = _text_table(cmp)
        if any(r.verdict == "new" for r in cmp.rows):
            warnings.warn(
                f"benchbench: no baseline of {record.case_id} in {store} ({base.run_id}): nothing to gate", stacklevel=2
            )
        # the exit rule of `benchbench compare` (cli/history.py, _gate_exit)
        reasons = []
        if cmp.nothing_measured:
            reasons.append(cmp.nothing_measured_line())
        if cmp.regressed:
            reasons.append("regressed")
        if cmp.broken and not allow_broken:
            reasons.append("broken: " + "; ".join(r.note for r in cmp.broken))
        if reasons:
            pytest.fail(
                f"benchbench: {', '.join(reasons)} against {base.run_id} (threshold {threshold:.0%})\n{table}",
                pytrace=False,
            )
        return cmp

    def _run_of(self, record: Record) -> Run:
        from benchbench.rundir import load_run

        for e in self._state.entries:
            if e.record is record:
                run = load_run(e.run_dir)
                run.records = [r for r in run.records if r.case_id == record.case_id]
                return run
        raise ValueError("bench.assert_no_regression: pass a record that bench.run returned in this session")


def _baseline(store, cand: Run, record: Record, ref: str | None) -> Run:
    """The baseline run, holding this case only (other cases of it are not this test's)."""
    import dataclasses

    from benchbench.history.store import run_fingerprint
    from benchbench.rundir import Run

    if ref is not None:
        run_id = store.resolve(ref)
    else:
        earlier = store.series(
            record.case_id, run_fingerprint(cand, record), before=cand.created_at, exclude=(cand.run_id,), limit=1
        )
        if not earlier:
            return Run(run_id="(none)", suite=None, created_at=None, records=[], source=store.display_url)
        run_id = earlier[-1]["run_id"]
    base = store.load_run(run_id)
    return dataclasses.replace(base, records=[r for r in base.records if r.case_id == record.case_id])


def _store_run(url: str, run_dir: Path) -> None:
    from benchbench.history.store import Store
    from benchbench.rundir import load_run

    s = Store(url)
    try:
        s.add_run(load_run(run_dir))
    finally:
        s.close()


def _text_table(cmp: Comparison) -> str:
    from benchbench.history.compare import HEADERS, table_rows

    rows = [HEADERS, *table_rows(cmp)]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(HEADERS))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# --- the session's results ------------------------------------------------------------------


def benchmark_json(entries: list[_Entry]) -> dict:
    """The session's ok records in pytest-benchmark's ``--benchmark-json`` layout: one
    benchmark per record (:func:`benchbench.history.exports.pytest_benchmark`, each named
    for the test that measured it: ``test[case label]``), machine and commit from the
    first run."""
    from benchbench.history import exports
    from benchbench.rundir import load_run

    out: dict | None = None
    for e in entries:
        run = load_run(e.run_dir)
        run.records = [r for r in run.records if r.case_id == e.record.case_id]
        doc = exports.pytest_benchmark(run)
        if out is None:
            out = {**doc, "benchmarks": []}
        for b in doc["benchmarks"]:
            label = b["name"]
            b.update(name=f"{e.test}[{label}]", fullname=f"{e.nodeid}[{label}]")
            b["extra_info"]["nodeid"] = e.nodeid
            out["benchmarks"].append(b)
    return out or {"machine_info": {}, "commit_info": {}, "benchmarks": [], "datetime": None, "version": "4.0.0"}


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or not state.json_path:
        return
    path = Path(state.json_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(benchmark_json(state.entries), indent=2) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.entries:
        return
    from benchbench.case import case_label

    tr = terminalreporter
    tr.section("benchbench")
    for e in state.entries:
        r = e.record
        stats = r.stats or {}
        if r.status == "ok" and stats.get("throughput") and stats.get("median"):
            rel = stats.get("rel_ci")
            interval = f" (95% CI ±{rel:.1%})" if rel is not None else ""
            figure = f"{stats['throughput']:.4g} samples/s, median {stats['median'] * 1e3:.4g} ms per batch{interval}"
        else:
            figure = f"{r.status}: {r.reason}"
        tr.write_line(f"{e.nodeid}: {case_label(r.case)}: {figure}")
    tr.write_line(f"run directories: {Path(state.out or '')}")
    if state.json_path:
        tr.write_line(f"pytest-benchmark JSON: {state.json_path}")
    if state.store:
        tr.write_line(f"stored in: {state.store}")
