"""``benchbench ab``: the confirm step ("duet" benchmarking, after Bulej et al., *Duet
Benchmarking: Improving Measurement Accuracy in the Cloud*, ICPE 2020).

Each case's worker runs alternately under two interpreters/environments A and B on the
same machine, in paired rounds: round 1 runs A then B, round 2 B then A, and so on
(A B B A A B …: interleaved, each side first equally often, so a drift over the job
lands on both sides alike). Whatever slows the machine tonight — another job, thermal
state, a noisy neighbour — hits both members of a pair, so the verdict comes from the
*pairs*: per round the ratio B/A of the round's figure (median-based throughput, p99
latency, peak RSS, energy per sample), and over the rounds

* a paired t-test on the log ratios (two-sided; the rounds, not the samples, are the
  unit: each is a fresh worker process with its own layout and start-up), and the exact
  Wilcoxon signed-rank p for information (with 5 pairs its smallest possible two-sided p
  is 2/32 = 0.0625, so a rank test can only gate from 8 rounds on);
* the effect: the geometric mean of the ratios, oriented so that + is worse.

Verdict per case and metric: *regressed* when p < alpha (0.01) and the effect is at least
half the threshold; *improved* likewise the other way; *unchanged* when the 95% interval
of the effect lies within ± the threshold; *inconclusive* otherwise. *broken* when a side
failed (or was skipped) in every round, so no pair exists: the job fails on it, as
``compare`` does on a case the candidate lost. *failed* when some rounds of a side produced
no result but each side has at least one. A job in which no case gave paired figures (all
broken, failed or skipped) measured nothing (:attr:`ABResult.nothing_measured`).

A side is an interpreter command with optional environment: ``--a /old/venv/bin/python``,
``--b "BB_FLAG=1 /new/venv/bin/python"`` (leading ``K=V`` words are environment), or
``--b-env K=V`` (repeatable). Both must import benchbench (the worker is
``python -m benchbench.worker``, launched by executors/local.py as in ``run``).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from benchbench.case import Case, case_label
from benchbench.errors import UserError
from benchbench.history.compare import HIGHER_IS_BETTER, METRICS, VERDICT_STYLE, fmt_value, metric_value
from benchbench.history.robust import median
from benchbench.results import Record, append_record, write_json

DEFAULT_ROUNDS = 5
DEFAULT_ALPHA = 0.01
AB_VERDICTS = ("broken", "regressed", "improved", "unchanged", "inconclusive", "failed")


# --- the two sides ------------------------------------------------------------------------


@dataclass
class Side:
    name: str  # "A" | "B"
    python: list[str]
    env: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # what the interpreter said about itself

    def describe(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(shlex.quote(p) for p in self.python)


def _env_item(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
        raise UserError(f"{option} {text!r}: expected NAME=VALUE")
    return key, value


def parse_side(name: str, text: str, env_items: list[str] | None = None) -> Side:
    """``[K=V …] PYTHON [ARGS…]`` plus ``--a-env``/``--b-env`` items → a Side."""
    opt = f"--{name.lower()}"
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UserError(f"{opt} {text!r}: {e}") from None
    env: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        k, v = _env_item(words.pop(0), opt)
        env[k] = v
    if not words:
        raise UserError(f"{opt} {text!r}: no interpreter (expected e.g. /path/to/venv/bin/python)")
    exe = shutil.which(words[0])
    if exe is None:
        raise UserError(f"{opt} {text!r}: {words[0]!r} is not an executable (give the interpreter's path)")
    for item in env_items or []:
        k, v = _env_item(item, f"{opt}-env")
        env[k] = v
    return Side(name, [exe, *words[1:]], env)


_PROBE = (
    "import json, sys, benchbench; print(json.dumps({'python': sys.version.split()[0], "
    "'executable': sys.executable, 'benchbench': benchbench.__version__, "
    "'benchbench_path': benchbench.__file__}))"
)


def probe_side(side: Side, extra_paths: Sequence[str] = ()) -> dict:
    """Check that the side's interpreter imports benchbench; what it says about itself."""
    env = dict(os.environ)
    paths = [p for p in extra_paths if p] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(side.env)
    try:
        proc = subprocess.run([*side.python, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"--{side.name.lower()} {side.describe()}: cannot start it ({e})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"--{side.name.lower()} {side.describe()}: cannot import benchbench ({last}); "
            f"install benchbench into that environment (pip install benchbench, or -e CHECKOUT)"
        )
    side.info = json.loads(proc.stdout.strip().splitlines()[-1])
    return side.info


def round_order(rounds: int) -> list[tuple[int, str]]:
    """(round, side) in run order: A B, B A, A B, … — interleaved, each side first as often."""
    out = []
    for i in range(rounds):
        out += [(i, "A"), (i, "B")] if i % 2 == 0 else [(i, "B"), (i, "A")]
    return out


# --- the statistics of paired rounds --------------------------------------------------------


@dataclass
class ABRow:
    case_id: str
    label: str
    metric: str
    a: list[float]  # the figure per round, side A (round order)
    b: list[float]
    ratio: float | None  # geometric mean of B/A
    low: float | None  # 95% interval of that ratio
    high: float | None
    change: float | None  # relative, + = B worse
    p: float | None  # paired t-test on the log ratios, two-sided
    p_signed_rank: float | None  # exact Wilcoxon signed-rank, two-sided (information)
    verdict: str
    note: str = ""


def _stats():
    try:
        from scipy import stats
    except ImportError:
        raise UserError("ab needs SciPy for its tests: pip install scipy") from None
    return stats


def judge_pairs(
    a: list[float], b: list[float], higher_is_better: bool, threshold: float, alpha: float = DEFAULT_ALPHA
) -> dict:
    """Verdict from paired rounds (a[i], b[i]): see the module docstring."""
    stats = _stats()
    d = [math.log(y / x) for x, y in zip(a, b)]  # log(B/A)
    n = len(d)
    if n < 2:
        return dict(
            ratio=None,
            low=None,
            high=None,
            change=None,
            p=None,
            p_signed_rank=None,
            verdict="inconclusive",
            note="fewer than 2 paired rounds",
        )
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    try:
        import warnings

        with warnings.catch_warnings():  # ties/zeros: SciPy warns and adjusts; the p is information only
            warnings.simplefilter("ignore")
            p_rank = float(stats.wilcoxon(d, alternative="two-sided", method="exact").pvalue) if any(d) else 1.0
    except ValueError:
        p_rank = None
    worse = -mean if higher_is_better else mean  # log scale, + = B worse
    change = math.expm1(worse)
    floor = math.log1p(threshold / 2)
    if p < alpha and worse >= floor:
        verdict = "regressed"
    elif p < alpha and worse <= -floor:
        verdict = "improved"
    elif abs(worse) + half <= math.log1p(threshold):
        verdict = "unchanged"
    else:
        verdict = "inconclusive"
    return dict(
        ratio=math.exp(mean),
        low=math.exp(mean - half),
        high=math.exp(mean + half),
        change=change,
        p=p,
        p_signed_rank=p_rank,
        verdict=verdict,
        note="",
    )


def judge_case(
    case_id: str,
    label: str,
    a_recs: list[Record],
    b_recs: list[Record],
    threshold: float,
    alpha: float = DEFAULT_ALPHA,
    metrics: tuple[str, ...] = METRICS,
) -> list[ABRow]:
    """Rows for one case from its records, round order, one per round and side."""
    bad = [(s, r) for s, rs in (("A", a_recs), ("B", b_recs)) for r in rs if r.status != "ok"]
    label = label or case_label((a_recs or b_recs)[0].case)
    if bad:
        side, r = bad[0]
        lost = [(s, rs) for s, rs in (("A", a_recs), ("B", b_recs)) if rs and all(x.status != "ok" for x in rs)]
        if lost:  # a side without a single result: no pair at all
            first = {s: next(x for x in rs if x.status != "ok") for s, rs in lost}
            who = "both sides" if len(lost) == 2 else f"side {lost[0][0]}"
            why = "; ".join(f"{s} {x.status}: {x.reason or 'no reason given'}" for s, x in first.items())
            return [
                ABRow(
                    case_id, label, "*", [], [], None, None, None, None, None, None,
                    "broken", f"{who} failed every round ({why})",
                )
            ]  # fmt: skip
        return [
            ABRow(
                case_id,
                label,
                "*",
                [],
                [],
                None,
                None,
                None,
                None,
                None,
                None,
                "failed",
                f"{len(bad)} round(s) without a result; first: side {side} {r.status}: {r.reason or ''}".strip(),
            )
        ]
    rows = []
    for metric in metrics:
        a = [metric_value(r, metric) for r in a_recs]
        b = [metric_value(r, metric) for r in b_recs]
        if all(v is None for v in a + b):
            continue  # not measured here (energy without RAPL/NVML)
        if any(v is None for v in a + b):
            rows.append(
                ABRow(
                    case_id,
                    label,
                    metric,
                    [],
                    [],
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    "inconclusive",
                    "not measured in every round",
                )
            )
            continue
        a_ok, b_ok = cast("list[float]", a), cast("list[float]", b)  # no None left (checked above)
        rows.append(
            ABRow(
                case_id,
                label,
                metric,
                a_ok,
                b_ok,
                **judge_pairs(a_ok, b_ok, HIGHER_IS_BETTER[metric], threshold, alpha),
            )
        )
    return rows


# --- running the rounds -------------------------------------------------------------------


def new_out_dir(root: str | os.PathLike = "results") -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    d = Path(root) / "ab" / f"{stamp}-{secrets.token_hex(3)}"
    d.mkdir(parents=True)
    return d


@dataclass
class ABResult:
    a: Side
    b: Side
    rounds: int
    threshold: float
    alpha: float
    out_dir: str | None
    rows: list[ABRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (label, reason)

    @property
    def regressed(self) -> bool:
        return any(r.verdict == "regressed" for r in self.rows)

    @property
    def broken(self) -> list[ABRow]:
        return [r for r in self.rows if r.verdict == "broken"]

    @property
    def nothing_measured(self) -> str | None:
        """The line saying so when no case gave paired figures (every case broken, failed
        or skipped); None when something was measured."""
        if any(r.verdict not in ("broken", "failed") for r in self.rows):
            return None
        c = {v: sum(r.verdict == v for r in self.rows) for v in ("broken", "failed")}
        what = ", ".join(
            [f"{n} {v}" for v, n in c.items() if n] + ([f"{len(self.skipped)} skipped"] if self.skipped else [])
        )
        return f"nothing was measured by ab: no case gave paired figures ({what or 'no cases'})"

    def counts(self) -> dict:
        out = {v: 0 for v in AB_VERDICTS}
        for r in self.rows:
            out[r.verdict] += 1
        return {k: v for k, v in out.items() if v}

    def to_dict(self) -> dict:
        return {
            "a": {"command": self.a.describe(), **self.a.info},
            "b": {"command": self.b.describe(), **self.b.info},
            "rounds": self.rounds,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "out_dir": self.out_dir,
            "counts": self.counts(),
            "regressed": self.regressed,
            "broken": bool(self.broken),
            "nothing_measured": self.nothing_measured is not None,
            "skipped": [{"label": lb, "reason": r} for lb, r in self.skipped],
            "rows": [asdict(r) for r in self.rows],
        }


def run_ab(
    cases: list[Case],
    a: Side,
    b: Side,
    *,
    rounds: int = DEFAULT_ROUNDS,
    out_dir: Path,
    extra_paths: Sequence[str] = (),
    threshold: float = 0.05,
    alpha: float = DEFAULT_ALPHA,
    run_case: Callable | None = None,
    skip_reason: Callable[[Case], str | None] | None = None,
    on_round: Callable[[Case, int, str], None] | None = None,
) -> ABResult:
    """Every case, ``rounds`` paired rounds of A and B (case by case, so a pair's two
    workers run back to back). Records go to ``out_dir``/a.jsonl and b.jsonl, worker
    logs to ``out_dir``/logs/."""
    if run_case is None:
        from benchbench.executors.local import run_case as local_run_case

        run_case = local_run_case
    if rounds < 2:
        raise UserError(f"--rounds {rounds}: at least 2 paired rounds are needed for a verdict")
    sides = {"A": a, "B": b}
    result = ABResult(a, b, rounds, threshold, alpha, str(out_dir))
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    for case in cases:
        reason = skip_reason(case) if skip_reason else None
        if reason is not None:
            result.skipped.append((case.label, reason))
            continue
        got: dict[str, list[Record]] = {"A": [], "B": []}
        for i, s in round_order(rounds):
            if on_round:
                on_round(case, i, s)
            side = sides[s]
            log = out_dir / "logs" / f"{case.case_id}.{s.lower()}.log"
            rec = run_case(case, out_dir / ".work", log, list(extra_paths), python=side.python, env=side.env)
            rec.runtime = {**(rec.runtime or {}), "ab": {"side": s, "round": i + 1, "command": side.describe()}}
            append_record(out_dir / f"{s.lower()}.jsonl", rec)
            got[s].append(rec)
        result.rows += judge_case(case.case_id, case.label, got["A"], got["B"], threshold, alpha)
    result.rows.sort(key=lambda r: r.verdict != "broken")  # broken first, otherwise in case order
    write_json(out_dir / "ab.json", result.to_dict())
    return result


# --- rendering ----------------------------------------------------------------------------

HEADERS = ["case", "metric", "A (median of rounds)", "B (median of rounds)", "B/A", "95% interval", "p", "verdict"]


def _median(xs: list[float]) -> float | None:
    return median(xs) if xs else None


def table_rows(res: ABResult) -> list[list[str]]:
    out = []
    for r in res.rows:
        out.append(
            [
                r.label,
                r.metric,
                fmt_value(r.metric, _median(r.a)),
                fmt_value(r.metric, _median(r.b)),
                "—" if r.ratio is None else f"{r.ratio:.3f}",
                "—" if r.low is None else f"[{r.low:.3f}, {r.high:.3f}]",
                "—" if r.p is None else f"{r.p:.2g}",
                r.verdict + (f" ({r.note})" if r.note else ""),
            ]
        )
    return out


def render_table(res: ABResult):
    from rich.table import Table

    t = Table(
        title=f"ab: B against A, {res.rounds} paired rounds (threshold {res.threshold:.0%}, "
        f"p < {res.alpha:g} and ≥ {res.threshold / 2:.1%})"
    )
    for h in HEADERS:
        t.add_column(h)
    for r, cells in zip(res.rows, table_rows(res)):
        t.add_row(*cells, style=VERDICT_STYLE.get(r.verdict))
    return t


def render_markdown(res: ABResult) -> str:
    lines = [
        f"### benchbench ab: B against A, {res.rounds} paired rounds",
        "",
        f"- A: `{res.a.describe()}`",
        f"- B: `{res.b.describe()}`",
        "",
        ", ".join(f"{n} {v}" for v, n in res.counts().items()) + f" (threshold {res.threshold:.0%}, p < {res.alpha:g})",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    icons = {"broken": "💥 ", "regressed": "🔴 ", "improved": "🟢 ", "inconclusive": "❔ ", "failed": "⚠️ "}
    for r, cells in zip(res.rows, table_rows(res)):
        cells[-1] = icons.get(r.verdict, "") + cells[-1]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for label, reason in res.skipped:
        lines.append(f"\nskipped {label}: {reason}")
    if res.nothing_measured:
        lines.append(f"\n**Nothing measured:** {res.nothing_measured}")
    return "\n".join(lines) + "\n"
