"""Records on disk: append, read back, a torn last line, a newer schema refused."""

import json

import pytest

from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.results import SCHEMA_VERSION, Record, append_record, load, read_records


def _record(model="seed_mlp", status="ok"):
    case = Case("torch", model, 2, "cpu", "inference", "fp32", (10,))
    return Record(case=case.to_dict(), status=status, stats={"throughput": 10.0}, samples=[0.1, 0.2])


def test_round_trip_and_dataframe(tmp_path):
    path = tmp_path / "results.jsonl"
    append_record(path, _record("seed_mlp"))
    append_record(path, _record("seed_cnn", "failed"))
    recs = read_records(tmp_path)
    assert [r.case["model"] for r in recs] == ["seed_mlp", "seed_cnn"]
    assert recs[0].schema_version == SCHEMA_VERSION
    df = load(tmp_path)
    assert list(df["model"]) == ["seed_mlp", "seed_cnn"]
    assert list(df["stats.throughput"]) == [10.0, 10.0]
    assert df.loc[0, "samples"] == [0.1, 0.2]
    assert df.loc[0, "case_id"] == recs[0].case_id


def test_a_torn_last_line_is_ignored_but_a_bad_middle_line_is_an_error(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    append_record(path, _record())
    with open(path, "a") as f:
        f.write('{"case": {"mod')
    assert len(read_records(path)) == 1
    assert "ignored a torn last line" in capsys.readouterr().err
    append_record(path, _record())  # what --resume does next: the torn part goes, nothing is glued to it
    assert "dropped a torn last line (14 bytes" in capsys.readouterr().err
    assert len(read_records(path)) == 2 and path.read_text().count("\n") == 2
    with open(path, "a") as f:
        f.write('{"case": {"mod\n' + json.dumps(_record().to_dict()) + "\n")
    with pytest.raises(UserError, match=r"results.jsonl:3: not a JSON record"):
        read_records(path)


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    d = _record().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "results.jsonl").write_text(json.dumps(d) + "\n")
    with pytest.raises(UserError, match="upgrade benchbench"):
        read_records(tmp_path)


def test_non_finite_figures_are_stored_as_unavailable(tmp_path):
    rec = _record()
    rec.stats = {"cv": float("nan"), "throughput": float("inf"), "median": 0.5}
    append_record(tmp_path / "results.jsonl", rec)
    (back,) = read_records(tmp_path)
    assert back.stats == {"cv": None, "throughput": None, "median": 0.5}
