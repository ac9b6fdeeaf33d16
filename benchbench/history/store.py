"""The history store: every run's records and environment in one database, for nightly
tracking (``run --store URL``, ``store import``, ``compare``, ``history``, ``check``).

Through SQLAlchemy: an embedded SQLite file by default (``results/history.db``, WAL, so
readers never block the writer), PostgreSQL for a team's shared history
(``postgresql://…``, the psycopg driver). The schema is versioned (table
``schema_version``), created on first use and refused, with what to do, when it is newer
than this benchbench understands. Every write is one transaction and record rows are
unique per (run, case), so concurrent writers lose nothing and re-importing a run adds
only what is new.

A *series* is one case_id on one *context*: the facts that must match for two
measurements to be comparable (host, CPU model, device name, driver, framework
versions), hashed into a fingerprint. Everything else in environment.json (RAM, OS
patch level, git commit …) is kept as information and does not split a series.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from benchbench.case import case_label
from benchbench.errors import UserError
from benchbench.measure.stats import latency_p99
from benchbench.results import Record
from benchbench.rundir import Run, load_run

STORE_SCHEMA_VERSION = 2  # 2: records.energy_j_per_sample (migrated from 1 on first use)
DEFAULT_URL = "sqlite:///results/history.db"
SLACK = 5  # series_many reads the records of the newest limit + SLACK runs in one query
_PG_LOCK_KEY = 0x62656E6368  # advisory lock serialising schema creation on PostgreSQL


# --- identities --------------------------------------------------------------------------


def context_facts(record: Record, environment: dict | None) -> dict:
    """What must match for two measurements of a case to be comparable."""
    env = environment or {}
    runtime = record.runtime or {}
    versions = dict(runtime.get("versions") or {})
    versions.pop("numpy", None)  # not a framework: does not split history
    gpus = env.get("gpus") or []
    drivers = sorted({str(g.get("driver")) for g in gpus if isinstance(g, dict) and g.get("driver")})
    return {
        "host": record.host or env.get("host"),
        "cpu_model": (env.get("cpu") or {}).get("model"),
        "device_name": runtime.get("device_name"),
        "driver": ",".join(drivers) or None,
        "framework": runtime.get("framework") or record.case.get("framework"),
        "framework_versions": versions,
    }


def fingerprint(facts: dict) -> str:
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def energy_per_sample(energy: dict | None) -> float | None:
    """The primary energy source's joules per sample, when the record has one."""
    energy = energy or {}
    v = (energy.get(energy.get("primary")) or {}).get("j_per_sample") if energy.get("primary") else None
    return float(v) if isinstance(v, (int, float)) and v > 0 else None


def run_fingerprint(run: Run, record: Record) -> str:
    """The context fingerprint of ``record`` in ``run`` (cached on the run)."""
    cache = run.__dict__.setdefault("_fingerprints", {})
    key = (record.case_id, id(record))
    if key not in cache:
        cache[key] = fingerprint(context_facts(record, run.environment))
    return cache[key]


# --- the database ------------------------------------------------------------------------


def _sa():
    try:
        import sqlalchemy
    except ImportError:
        raise UserError("the history store needs SQLAlchemy: pip install 'sqlalchemy>=2'") from None
    return sqlalchemy


def _tables(sa):
    md = sa.MetaData()
    version = sa.Table("schema_version", md, sa.Column("version", sa.Integer, nullable=False))
    runs = sa.Table(
        "runs",
        md,
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("suite", sa.String(200), index=True),
        sa.Column("created_at", sa.String(40), index=True),
        sa.Column("imported_at", sa.String(40)),
        sa.Column("git_commit", sa.String(64), index=True),
        sa.Column("source", sa.Text),
        sa.Column("environment", sa.Text),
    )
    contexts = sa.Table(
        "contexts",
        md,
        sa.Column("fingerprint", sa.String(32), primary_key=True),
        sa.Column("facts", sa.Text, nullable=False),
    )
    records = sa.Table(
        "records",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(200), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("context", sa.String(32), sa.ForeignKey("contexts.fingerprint"), nullable=False),
        sa.Column("label", sa.String(400)),
        sa.Column("status", sa.String(16)),
        sa.Column("started_at", sa.String(40)),
        sa.Column("created_at", sa.String(40)),  # the run's, copied: series are read by it
        sa.Column("throughput", sa.Float),
        sa.Column("median_s", sa.Float),
        sa.Column("p99_s", sa.Float),
        sa.Column("peak_rss_bytes", sa.Float),
        sa.Column("energy_j_per_sample", sa.Float),  # schema 2
        sa.Column("record", sa.Text, nullable=False),
        sa.UniqueConstraint("run_id", "case_id", name="uq_records_run_case"),
        sa.Index("ix_records_series", "case_id", "context", "created_at"),
    )
    return md, version, runs, contexts, records


def resolve_url(url: str | None) -> str:
    """A URL, or a plain path taken as a SQLite file; ``postgresql://`` uses psycopg."""
    url = url or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_existing(url: str | None, who: str) -> Store:
    """The store a reading command (``compare``, ``history``, ``check``, ``report``, an
    export) needs: a SQLite file that does not exist is an error naming it — never
    created empty, which would turn a mistyped path into "no runs"."""
    resolved = resolve_url(url)
    if resolved.startswith("sqlite:///"):
        path = resolved.split(":///", 1)[1]
        if path != ":memory:" and not Path(path).is_file():
            raise UserError(
                f"{who}: no such SQLite store {path} (runs get into one with "
                f"`benchbench run SUITE --store {url or path}` or `benchbench store import`)"
            )
    return Store(url)


class Store:
    """A history store at ``url``; the schema is created or checked on first use."""

    def __init__(self, url: str | None = None):
        sa = _sa()
        self.sa = sa
        self.url = resolve_url(url)
        kw: dict = {}
        if self.url.startswith("sqlite"):
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            if path and path != ":memory:":
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise UserError(f"store {url}: cannot open ({e})") from None
            kw["connect_args"] = {"timeout": 120}
        try:
            self.engine = sa.create_engine(self.url, **kw)
        except ImportError as e:
            raise UserError(
                f"store {url}: driver missing ({e}); for PostgreSQL: pip install 'psycopg[binary]'"
            ) from None
        except sa.exc.ArgumentError as e:
            raise UserError(f"store {url}: not a database URL ({e})") from None
        self.sqlite = self.engine.dialect.name == "sqlite"
        if self.sqlite:
            self._sqlite_hooks()
        self.md, self.t_version, self.t_runs, self.t_contexts, self.t_records = _tables(sa)
        self._ensure_schema()

    # SQLite: the driver's own transaction handling is turned off; every write
    # transaction starts with BEGIN IMMEDIATE (takes the write lock up front, so two
    # writers queue on busy_timeout instead of failing a lock upgrade), reads with BEGIN.
    def _sqlite_hooks(self):
        event = self.sa.event

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn, record):
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=120000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn):
            write = conn.get_execution_options().get("bb_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    def _write(self):
        """A connection whose transaction holds the write lock from its start."""
        return self.engine.connect().execution_options(bb_write=True)

    def _schema_version(self, conn) -> int | None:
        if not self.sa.inspect(conn).has_table("schema_version"):
            return None
        found = conn.execute(self.sa.select(self.sa.func.max(self.t_version.c.version))).scalar()
        if found is not None and found > STORE_SCHEMA_VERSION:
            raise UserError(
                f"store {self.display_url}: schema version {found} is newer than this "
                f"benchbench understands ({STORE_SCHEMA_VERSION}): upgrade benchbench "
                f"(pip install -U benchbench) to use this store"
            )
        return found

    def _ensure_schema(self) -> None:
        sa = self.sa
        try:
            with self.engine.connect() as conn:  # the common case: no lock taken
                if self._schema_version(conn) == STORE_SCHEMA_VERSION:
                    return
            with self._write() as conn, conn.begin():
                if not self.sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                found = self._schema_version(conn)  # again, under the lock
                if found == STORE_SCHEMA_VERSION:
                    return
                if found == 1:
                    self._migrate_1_to_2(conn)
                self.md.create_all(conn, checkfirst=True)
                conn.execute(sa.delete(self.t_version))
                conn.execute(sa.insert(self.t_version).values(version=STORE_SCHEMA_VERSION))
        except sa.exc.OperationalError as e:
            raise UserError(f"store {self.display_url}: cannot open ({_first_line(e)})") from None

    def _migrate_1_to_2(self, conn) -> None:
        """Schema 1 → 2: the energy-per-sample column, filled from the stored records."""
        sa, r = self.sa, self.t_records
        conn.execute(sa.text("ALTER TABLE records ADD COLUMN energy_j_per_sample FLOAT"))
        rows = conn.execute(sa.select(r.c.id, r.c.record).where(r.c.record.like("%j_per_sample%"))).all()
        for rid, text in rows:
            v = energy_per_sample(json.loads(text).get("energy"))
            if v is not None:
                conn.execute(sa.update(r).where(r.c.id == rid).values(energy_j_per_sample=v))

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # --- writing --------------------------------------------------------------------

    def add_run(self, run: Run) -> int:
        """Store a run and its records in one transaction; returns how many records were
        new (records already stored for this run and case are left as they are)."""
        rows: list[dict] = []
        contexts: dict[str, str] = {}  # fingerprint: its facts as JSON
        for rec in run.records:
            facts = context_facts(rec, run.environment)
            fp = fingerprint(facts)
            contexts[fp] = json.dumps(facts, sort_keys=True, default=str)
            stats = rec.stats or {}
            rows.append(
                {
                    "run_id": run.run_id,
                    "case_id": rec.case_id,
                    "context": fp,
                    "label": case_label(rec.case),
                    "status": rec.status,
                    "started_at": rec.started_at,
                    "created_at": run.created_at,
                    "throughput": stats.get("throughput"),
                    "median_s": stats.get("median"),
                    "p99_s": latency_p99(stats, rec.timing)[0],  # none of block means (issue 17)
                    "peak_rss_bytes": (rec.memory or {}).get("host_peak_rss_bytes"),
                    "energy_j_per_sample": energy_per_sample(rec.energy),
                    "record": json.dumps(rec.to_dict(), separators=(",", ":"), default=str),
                }
            )
        insert = self._insert()
        from benchbench.results import utc_now

        with self._write() as conn, conn.begin():
            conn.execute(
                insert(self.t_runs)
                .values(
                    run_id=run.run_id,
                    suite=run.suite,
                    created_at=run.created_at,
                    imported_at=utc_now(),
                    git_commit=run.commit,
                    source=run.source,
                    environment=json.dumps(run.environment, sort_keys=True, default=str),
                )
                .on_conflict_do_nothing(index_elements=["run_id"])
            )
            for fp, facts_json in contexts.items():
                conn.execute(
                    insert(self.t_contexts)
                    .values(fingerprint=fp, facts=facts_json)
                    .on_conflict_do_nothing(index_elements=["fingerprint"])
                )
            added = 0
            for row in rows:
                res = conn.execute(
                    insert(self.t_records)
                    .values(**row)
                    .on_conflict_do_nothing(index_elements=["run_id", "case_id"])
                    .returning(self.t_records.c.id)
                )
                added += len(res.fetchall())
        return added

    def _insert(self):
        if self.sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert

    # --- reading --------------------------------------------------------------------

    def runs(self, suite: str | None = None, counts: bool = False) -> list[dict]:
        """Runs, oldest first: run_id, suite, created_at, git_commit (and with ``counts``
        how many records each holds: a scan of every record)."""
        sa, t = self.sa, self.t_runs
        cols = [t.c.run_id, t.c.suite, t.c.created_at, t.c.git_commit]
        if counts:
            q = (
                sa.select(*cols, sa.func.count(self.t_records.c.id).label("records"))
                .select_from(t.outerjoin(self.t_records, self.t_records.c.run_id == t.c.run_id))
                .group_by(*cols)
            )
        else:
            q = sa.select(*cols)
        q = q.order_by(t.c.created_at, t.c.run_id)
        if suite:
            q = q.where(t.c.suite == suite)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def resolve(self, ref: str, suite: str | None = None) -> str:
        """A run id from a reference: ``latest``, ``latest~N`` (N runs before the
        latest), a date ``YYYY-MM-DD`` (the newest run on or before it), a run id (or a
        unique prefix of one), or a git commit (prefix, ≥ 7 characters)."""
        runs = self.runs(suite)
        if not runs:
            raise UserError(f"store {self.display_url}: no runs" + (f" of suite {suite!r}" if suite else ""))
        if ref == "latest" or ref.startswith("latest~"):
            back = 0
            if ref != "latest":
                try:
                    back = int(ref.split("~", 1)[1])
                except ValueError:
                    raise UserError(f"{ref!r}: expected latest or latest~N") from None
            if back >= len(runs) or back < 0:
                raise UserError(f"{ref!r}: the store has only {len(runs)} runs")
            return runs[-1 - back]["run_id"]
        if len(ref) == 10 and ref[4] == "-" and ref[7] == "-" and ref.replace("-", "").isdigit():
            upto = [r for r in runs if (r["created_at"] or "")[:10] <= ref]
            if not upto:
                raise UserError(f"{ref!r}: no run in the store on or before that date")
            return upto[-1]["run_id"]  # the newest run of that day or before
        exact = [r for r in runs if r["run_id"] == ref]
        if exact:
            return ref
        hits = [r for r in runs if r["run_id"].startswith(ref)]
        if not hits:
            hits = [r for r in runs if r["git_commit"] and len(ref) >= 7 and r["git_commit"].startswith(ref)]
        if len(hits) == 1:
            return hits[0]["run_id"]
        if len(hits) > 1:
            ids = ", ".join(r["run_id"] for r in hits[:5])
            if len({r["git_commit"] for r in hits}) == 1 and hits[0]["git_commit"]:
                return hits[-1]["run_id"]  # a commit measured several times: its newest run
            raise UserError(f"{ref!r} is ambiguous in the store: {ids}")
        raise UserError(
            f"{ref!r}: no such run in store {self.display_url} "
            f"(use latest, latest~N, YYYY-MM-DD, a run id or a git commit)"
        )

    def load_run(self, run_id: str) -> Run:
        sa = self.sa
        with self.engine.connect() as conn:
            head = conn.execute(sa.select(self.t_runs).where(self.t_runs.c.run_id == run_id)).first()
            if head is None:
                raise UserError(f"{run_id!r}: no such run in store {self.display_url}")
            recs = (
                conn.execute(
                    sa.select(self.t_records.c.record)
                    .where(self.t_records.c.run_id == run_id)
                    .order_by(self.t_records.c.id)
                )
                .scalars()
                .all()
            )
        env = json.loads(head.environment or "{}")
        return Run(
            run_id=run_id,
            suite=head.suite,
            created_at=head.created_at,
            records=[Record.from_dict(json.loads(r)) for r in recs],
            environment=env,
            source=f"{self.display_url}#{run_id}",
        )

    def _series_columns(self) -> list:
        """What a series row holds: the run, its time and commit, the headline figures."""
        r, t = self.t_records, self.t_runs
        return [
            r.c.run_id,
            r.c.created_at,
            t.c.git_commit,
            r.c.throughput,
            r.c.median_s,
            r.c.p99_s,
            r.c.peak_rss_bytes,
            r.c.energy_j_per_sample,
        ]

    def series(
        self,
        case_id: str,
        context: str,
        *,
        before: str | None = None,
        until: str | None = None,
        exclude: tuple[str, ...] = (),
        limit: int | None = None,
        with_record: bool = False,
    ) -> list[dict]:
        """One series' ok records, oldest first (the newest ``limit``): run_id,
        created_at, git_commit and the headline figures (and the whole record as JSON
        with ``with_record``); ``before`` / ``until``: runs created before / up to then."""
        sa, r, t = self.sa, self.t_records, self.t_runs
        cols = self._series_columns() + ([r.c.record] if with_record else [])
        q = (
            sa.select(*cols)
            .join(t, t.c.run_id == r.c.run_id)
            .where(r.c.case_id == case_id, r.c.context == context, r.c.status == "ok")
            .order_by(r.c.created_at.desc(), r.c.run_id.desc())
        )
        if before is not None:
            q = q.where(r.c.created_at < before)
        if until is not None:
            q = q.where(r.c.created_at <= until)
        if exclude:
            q = q.where(r.c.run_id.not_in(list(exclude)))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(x._mapping) for x in conn.execute(q)]
        rows.reverse()
        return rows

    def series_many(
        self,
        keys: list[tuple[str, str]],
        *,
        before: str | None = None,
        until: str | None = None,
        exclude: tuple[str, ...] = (),
        limit: int,
    ) -> dict[tuple[str, str], list[dict]]:
        """``series`` for many (case_id, context) keys at once, same rows and order: one
        query over the records of the newest ``limit`` + ``SLACK`` runs in the time range,
        then the exact per-series query only for the keys that had fewer than ``limit``
        records among them (a case absent from more than SLACK of those runs)."""
        sa, r, t = self.sa, self.t_records, self.t_runs
        runs_q = sa.select(t.c.run_id).order_by(t.c.created_at.desc(), t.c.run_id.desc()).limit(limit + SLACK)
        if before is not None:
            runs_q = runs_q.where(t.c.created_at < before)
        if until is not None:
            runs_q = runs_q.where(t.c.created_at <= until)
        if exclude:
            runs_q = runs_q.where(t.c.run_id.not_in(list(exclude)))
        wanted = set(keys)
        out: dict[tuple[str, str], list[dict]] = {k: [] for k in wanted}
        cols = [r.c.case_id, r.c.context] + self._series_columns()
        names = [c.name for c in cols[2:]]
        with self.engine.connect() as conn:
            run_ids = conn.execute(runs_q).scalars().all()
            for i in range(0, len(run_ids), 500):
                q = (
                    sa.select(*cols)
                    .join(t, t.c.run_id == r.c.run_id)
                    .where(r.c.run_id.in_(run_ids[i : i + 500]), r.c.status == "ok")
                )
                for row in conn.execute(q):
                    key = (row[0], row[1])
                    if key in wanted:
                        out[key].append(dict(zip(names, row[2:])))
        for key, rows in out.items():
            if len(rows) < limit:  # not enough in the recent runs: ask for this series alone
                out[key] = self.series(key[0], key[1], before=before, until=until, exclude=exclude, limit=limit)
            else:
                rows.sort(key=lambda h: (h["created_at"] or "", h["run_id"]))
                out[key] = rows[-limit:]
        return out

    def all_series(self, suite: str | None = None) -> list[dict]:
        """Every series: case_id, context, label, facts, runs (count)."""
        sa, r, t, c = self.sa, self.t_records, self.t_runs, self.t_contexts
        q = (
            sa.select(
                r.c.case_id,
                r.c.context,
                sa.func.max(r.c.label).label("label"),
                c.c.facts,
                sa.func.count().label("runs"),
            )
            .join(t, t.c.run_id == r.c.run_id)
            .join(c, c.c.fingerprint == r.c.context)
            .where(r.c.status == "ok")
            .group_by(r.c.case_id, r.c.context, c.c.facts)
            .order_by(sa.func.max(r.c.label), r.c.context)
        )
        if suite:
            q = q.where(t.c.suite == suite)
        with self.engine.connect() as conn:
            return [dict(x._mapping) for x in conn.execute(q)]

    def count_records(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(self.sa.select(self.sa.func.count()).select_from(self.t_records)).scalar()


def _first_line(e: Exception) -> str:
    return (str(getattr(e, "orig", None) or e).strip().splitlines() or [""])[0]


def import_runs(store: Store, paths) -> list[tuple[str, int, int]]:
    """Import run directories: (run_id, records in the run, newly stored) per directory."""
    out = []
    for p in paths:
        run = load_run(p)
        out.append((run.run_id, len(run.records), store.add_run(run)))
    return out
