"""The history store, against SQLite and a real PostgreSQL 15 started on loopback here:
schema versioning, series identity, idempotent import, concurrent writers, run --store."""

import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.history import store as st
from benchbench.measure.stats import summarize
from benchbench.results import Record, append_record
from conftest import bb

PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --- a throw-away PostgreSQL server --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url():
    """A PostgreSQL 15 server on 127.0.0.1 for this session (stopped at its end)."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15)")
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'psycopg[binary]'")
    root = Path(tempfile.mkdtemp(prefix="bb-pg-"))
    data = root / "data"
    as_postgres = os.geteuid() == 0
    run = (
        (
            lambda cmd: subprocess.run(
                ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True
            )
        )
        if as_postgres
        else (lambda cmd: subprocess.run(cmd, check=True, capture_output=True, text=True))
    )
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run([str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(data)])
    run(
        [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off",
            "start",
        ]
    )
    try:
        run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "bench"])
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if as_postgres else [])
            + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


_db_counter = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    base = request.getfixturevalue("pg_url")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    import sqlalchemy as sa

    eng = sa.create_engine(st.resolve_url(base), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    eng.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


# --- records made here, no benchmark runs --------------------------------------------------


def record(model="seed_mlp", batch=1, median=0.01, host="h1", device_name="CPU X", torch="2.4.0", n=20) -> Record:
    case = Case("torch", model, batch, "cpu", "inference", "fp32", (10,))
    samples = [median * (1 + 0.01 * ((i * 7) % 11 - 5) / 5) for i in range(n)]
    return Record(
        case=case.to_dict(),
        status="ok",
        stats=summarize(samples, batch).to_dict(),
        samples=samples,
        memory={"host_peak_rss_bytes": 100 * 2**20},
        host=host,
        runtime={"framework": "torch", "device_name": device_name, "versions": {"torch": torch}},
        started_at="2026-01-01T00:00:00+00:00",
    )


def env(host="h1", ram=16 * 2**30, commit="abc1234def"):
    return {"host": host, "cpu": {"model": "CPU X"}, "ram_bytes": ram, "git": {"commit": commit, "dirty": False}}


def run(run_id, records, created_at="2026-01-01T00:00:00+00:00", **kw):
    return st.Run(run_id=run_id, suite="nightly", created_at=created_at, records=records, environment=env(**kw))


def write_run_dir(root: Path, run_id: str, records, created_at="2026-01-01T00:00:00+00:00", **kw) -> Path:
    d = root / "nightly" / run_id
    d.mkdir(parents=True)
    for r in records:
        append_record(d / "results.jsonl", r)
    (d / "environment.json").write_text(json.dumps(env(**kw)))
    (d / "run.json").write_text(json.dumps({"suite": "nightly", "created_at": created_at}))
    return d


# --- tests ----------------------------------------------------------------------------------


def test_schema_is_created_and_versioned_on_first_use(url):
    s = st.Store(url)
    with s.engine.connect() as c:
        assert c.exec_driver_sql("SELECT version FROM schema_version").scalars().all() == [st.STORE_SCHEMA_VERSION]
    s.close()
    st.Store(url).close()  # opening again changes nothing
    s = st.Store(url)
    with s.engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM schema_version").scalar() == 1
    s.close()


def test_a_newer_store_schema_is_refused_with_what_to_do(url):
    s = st.Store(url)
    with s.engine.begin() as c:
        c.exec_driver_sql(f"UPDATE schema_version SET version = {st.STORE_SCHEMA_VERSION + 1}")
    s.close()
    with pytest.raises(UserError, match=r"schema version 3 is newer than this benchbench understands \(2\): upgrade"):
        st.Store(url)


def test_a_schema_1_store_is_migrated_and_its_energy_filled_in(url):
    s = st.Store(url)
    r = record()
    r.energy = {"primary": "rapl", "rapl": {"j_per_sample": 0.25}}
    s.add_run(run("r1", [r, record("seed_cnn")]))
    with s.engine.begin() as c:  # back to what benchbench with schema 1 wrote
        c.exec_driver_sql("ALTER TABLE records DROP COLUMN energy_j_per_sample")
        c.exec_driver_sql("UPDATE schema_version SET version = 1")
    s.close()
    s = st.Store(url)
    with s.engine.connect() as c:
        assert c.exec_driver_sql("SELECT version FROM schema_version").scalars().all() == [2]
        got = c.exec_driver_sql("SELECT label, energy_j_per_sample FROM records ORDER BY label").all()
    assert [tuple(x) for x in got] == [
        ("torch/seed_cnn/bs1/cpu/inference/fp32", None),
        ("torch/seed_mlp/bs1/cpu/inference/fp32", 0.25),
    ]
    s.close()


def test_sqlite_store_uses_wal_and_the_default_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = st.Store(None)
    assert (tmp_path / "results" / "history.db").exists()
    with s.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


def test_import_is_idempotent_and_records_round_trip(url, tmp_path):
    d = write_run_dir(tmp_path, "20260101T000000Z-aaaaaa", [record("seed_mlp"), record("seed_cnn")])
    s = st.Store(url)
    assert st.import_runs(s, [d]) == [("20260101T000000Z-aaaaaa", 2, 2)]
    assert st.import_runs(s, [d]) == [("20260101T000000Z-aaaaaa", 2, 0)]
    append_record(d / "results.jsonl", record("seed_cnn4"))  # a resumed run gains a case
    assert st.import_runs(s, [d]) == [("20260101T000000Z-aaaaaa", 3, 1)]
    assert s.count_records() == 3
    back = s.load_run(s.resolve("latest"))
    assert [r.case["model"] for r in back.records] == ["seed_mlp", "seed_cnn", "seed_cnn4"]
    assert back.records[0].to_dict() == record("seed_mlp").to_dict()
    assert back.suite == "nightly" and back.commit == "abc1234def"
    s.close()


def test_series_are_split_by_context_but_not_by_info_facts(url):
    s = st.Store(url)
    s.add_run(run("r1", [record()], "2026-01-01", ram=16 * 2**30))
    s.add_run(run("r2", [record()], "2026-01-02", ram=32 * 2**30))  # more RAM: info only
    s.add_run(run("r3", [record(torch="2.5.0")], "2026-01-03"))  # framework version: new series
    s.add_run(run("r4", [record(device_name="CPU Y")], "2026-01-04"))  # device: new series
    s.add_run(run("r5", [record(host="h2")], "2026-01-05", host="h2"))  # machine: new series
    series = s.all_series()
    assert sorted(x["runs"] for x in series) == [1, 1, 1, 2]
    assert len({x["case_id"] for x in series}) == 1
    r1 = s.load_run("r1")
    rows = s.series(r1.records[0].case_id, st.run_fingerprint(r1, r1.records[0]))
    assert [r["run_id"] for r in rows] == ["r1", "r2"]
    s.close()


def test_references_latest_offsets_prefixes_and_commits(url):
    s = st.Store(url)
    s.add_run(run("20260101T000000Z-aaaaaa", [record()], "2026-01-01", commit="1111111aaaa"))
    s.add_run(run("20260102T000000Z-bbbbbb", [record()], "2026-01-02", commit="2222222bbbb"))
    assert s.resolve("latest") == "20260102T000000Z-bbbbbb"
    assert s.resolve("latest~1") == "20260101T000000Z-aaaaaa"
    assert s.resolve("20260101") == "20260101T000000Z-aaaaaa"
    assert s.resolve("2222222") == "20260102T000000Z-bbbbbb"
    assert s.resolve("2026-01-01") == "20260101T000000Z-aaaaaa"
    assert s.resolve("2026-03-01") == "20260102T000000Z-bbbbbb"
    with pytest.raises(UserError, match="on or before"):
        s.resolve("2025-12-31")
    with pytest.raises(UserError, match="ambiguous"):
        s.resolve("2026")
    with pytest.raises(UserError, match="no such run"):
        s.resolve("nope")
    with pytest.raises(UserError, match="only 2 runs"):
        s.resolve("latest~2")
    s.close()


def test_series_many_returns_what_series_returns_one_by_one(url):
    s = st.Store(url)
    for d in range(1, 13):  # seed_mlp every night, seed_cnn on 3 nights only, seed_cnn4 on a new torch from night 7
        recs = [record("seed_mlp", median=0.01 * (1 + d / 100))]
        if d % 4 == 0:
            recs.append(record("seed_cnn"))
        recs.append(record("seed_cnn4", torch="2.5.0" if d >= 7 else "2.4.0"))
        s.add_run(run(f"r{d:02d}", recs, f"2026-01-{d:02d}"))
    last = s.load_run("r12")
    keys = [(r.case_id, st.run_fingerprint(last, r)) for r in last.records]
    for kw in (
        {"until": "2026-01-12", "limit": 4},
        {"before": "2026-01-12", "exclude": ("r12",), "limit": 5},
        {"until": "2026-01-09", "limit": 2},
    ):
        many = s.series_many(keys, **kw)
        assert many == {k: s.series(*k, **kw) for k in keys}, kw
    assert [h["run_id"] for h in s.series_many(keys, until="2026-01-12", limit=4)[keys[1]]] == ["r04", "r08", "r12"]
    s.close()


def _writer(url, w, n, barrier):
    s = st.Store(url)
    barrier.wait()
    for i in range(n):
        s.add_run(run(f"w{w}-{i:03d}", [record(model=f"m{w}", batch=i + 1)], f"2026-01-01T00:{w:02d}:{i % 60:02d}"))
    s.close()


def test_eight_concurrent_writers_lose_nothing(url):
    """8 processes × 100 records, each record its own transaction, all started at once
    (on a store none of them has created yet)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_writer, args=(url, w, 100, barrier)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    s = st.Store(url)
    assert s.count_records() == 800
    assert len(s.runs()) == 800
    s.close()


def test_a_bad_url_or_a_missing_driver_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a database URL"):
        st.Store("nonsense://")
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="cannot open"):
        st.Store(f"sqlite:///{tmp_path}/f/x.db")


def test_store_import_cli_and_run_store_failure_keeps_the_run(tmp_path, capsys):
    from benchbench import cli
    from benchbench.cli import history as cli_history

    d = write_run_dir(tmp_path, "20260101T000000Z-aaaaaa", [record()])
    db = tmp_path / "h.db"
    assert cli.main(["store", "import", str(d), "--store", str(db)]) == 0
    assert "1 of 1 records stored" in capsys.readouterr().out
    (tmp_path / "f").write_text("")
    cli_history.store_after_run(f"sqlite:///{tmp_path}/f/x.db", d)  # must not raise
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("not stored (") and "benchbench store import" in err[0]
    assert cli.main(["store", "import", str(tmp_path / "nope"), "--store", str(db)]) == 2


@pytest.mark.slow
def test_run_with_store_appends_the_run(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        "name: tiny\nmatrix:\n  model: [seed_mlp]\n  batch_size: [1]\n"
        "defaults:\n  warmup_iters: 1\n  min_time: 0.05\n  max_time: 0.3\n  min_iters: 8\n"
        "  threads: 1\n  timeout: 120\n"
    )
    db = tmp_path / "h.db"
    proc = bb("run", suite, "--out", tmp_path / "out", "--store", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stored 1 records" in proc.stderr
    s = st.Store(str(db))
    assert s.count_records() == 1 and s.runs()[0]["suite"] == "tiny"
    s.close()
