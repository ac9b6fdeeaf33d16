"""The result record (one per case, crossing every boundary), its files, and loading.

Units inside records are SI: seconds, bytes, samples/s, FLOPs. Units appear only on
display. A figure that could not be measured is ``None`` with a reason beside it,
never 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from benchbench.errors import UserError

if TYPE_CHECKING:
    import pandas

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "skipped")
RESULTS_FILE = "results.jsonl"
ENVIRONMENT_FILE = "environment.json"


@dataclass
class Record:
    case: dict  # Case.to_dict(): every axis, input_shape, settings, case_id
    status: str  # "ok" | "failed" | "skipped"
    reason: str | None = None  # one line, for failed and skipped
    stats: dict | None = None  # measure.stats.Stats as a dict (seconds, samples/s)
    samples: list[float] = field(default_factory=list)  # s per iteration (block means)
    timing: dict | None = None  # measure.timing.Timing minus samples: warm-up, stop rule
    memory: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # params, flops_per_sample, serialized_bytes
    cold_start: dict = field(default_factory=dict)  # build_s, first_iter_s, compile_s
    runtime: dict = field(default_factory=dict)  # versions, threads, device name, math modes
    telemetry: dict = field(default_factory=dict)  # sampler rate, sources, summary, series (≤ 300 points)
    energy: dict = field(default_factory=dict)  # per domain: source, J, W, J/sample, samples/J (None + reason)
    pipeline: dict = field(
        default_factory=dict
    )  # data: pipelines: config, loader/model/end-to-end rates, bound (benchbench.pipelines)
    fidelity: dict = field(
        default_factory=dict
    )  # vs the fp32 reference: top1_agreement, max/mean_abs_diff (benchbench.variants.fidelity)
    # the case's worker processes: count, interval method and scope, within/between spread, each
    # process's n, median, interval, pid, start, block size (benchbench.measure.combine); {} in records
    # written before processes were combined
    processes: dict = field(default_factory=dict)
    # mode fit (benchbench.measure.fit): the learning curve, time/samples/energy to target, or a
    # variant's accuracy, precision, recall and F1 against fp32's on the validation part; {} otherwise
    quality: dict = field(default_factory=dict)
    # mode generate (benchbench.measure.generate): TTFT, time per output token and end-to-end statistics,
    # token rates, KV-cache and weight bytes, prefill FLOPs; {} otherwise
    generate: dict = field(default_factory=dict)
    started_at: str | None = None  # ISO 8601, UTC
    ended_at: str | None = None
    duration_s: float | None = None  # whole case: worker start to record
    host: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def case_id(self) -> str:
        return self.case["case_id"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise UserError("record without a schema_version: not a benchbench record")
        if version > SCHEMA_VERSION:
            raise UserError(
                f"record schema_version {version} is newer than this benchbench "
                f"understands ({SCHEMA_VERSION}): upgrade benchbench to read it"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _finite(value):
    """NaN and ±inf are not measurements: they are stored as null (unavailable)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def utc_now() -> str:
    """A record's timestamp: ISO 8601, UTC, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _drop_torn_tail(path: str | os.PathLike) -> None:
    """A file whose last line was torn by a crash mid-write (no final newline) loses that
    partial line before anything is appended — else the next record would be glued onto
    it and both lost (``--resume`` after a crash appends to such a file)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            keep = f.read().rfind(b"\n") + 1
            f.truncate(keep)
    except FileNotFoundError:
        return
    print(
        f"warning: {path}: dropped a torn last line ({size - keep} bytes, a crash mid-write) before appending",
        file=sys.stderr,
    )


def append_record(path: str | os.PathLike, record: Record) -> None:
    """Append one record as a JSON line, flushed and fsynced: a crash later loses nothing."""
    line = json.dumps(_finite(record.to_dict()), separators=(",", ":"), allow_nan=False)
    _drop_torn_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | os.PathLike) -> list[Record]:
    """Records of a results.jsonl file or a run directory. A torn last line (a crash
    mid-write) is ignored; any other bad line is an error naming the line."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        raise UserError(f"{p}: no such file")
    lines = p.read_text(encoding="utf-8").splitlines()
    records: list[Record] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # torn final write (a crash mid-write): the records before it stand
                print(
                    f"warning: {p}:{i}: ignored a torn last line (not JSON: {e.msg}); "
                    f"the {len(records)} records before it are kept",
                    file=sys.stderr,
                )
                break
            raise UserError(f"{p}:{i}: not a JSON record ({e.msg})") from None
        records.append(Record.from_dict(d))
    return records


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "settings":
            _flatten(key + ".", v, out)
        else:
            out[key] = v


def to_row(record: Record) -> dict:
    """One flat row: case axes at top level (model, batch_size …), nested parts as
    ``stats.median``, ``memory.host_peak_rss_bytes`` …; samples as a list."""
    d = record.to_dict()
    row: dict = {}
    case = d.pop("case")
    row.update({k: v for k, v in case.items() if k != "settings"})
    row["settings"] = case.get("settings")
    samples = d.pop("samples")
    _flatten("", d, row)
    row["samples"] = samples
    return row


def load(*paths: str | os.PathLike) -> pandas.DataFrame:
    """A pandas DataFrame, a row per case, from run directories or results.jsonl files."""
    import pandas as pd

    rows = []
    for path in paths:
        for rec in read_records(path):
            row = to_row(rec)
            row["run_dir"] = str(Path(path) if Path(path).is_dir() else Path(path).parent)
            rows.append(row)
    return pd.DataFrame(rows)


def write_json(path: str | os.PathLike, data: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def iter_case_ids(records: Iterable[Record]) -> set[str]:
    return {r.case_id for r in records}
