"""Clout's own records: customers, tickets, every decision and influence over time.

SQLAlchemy Core on `DATABASE_URL` (PostgreSQL in production) or a SQLite file
under the data dir. Writes are batched per job, and upserts use each dialect's
native ON CONFLICT so web and worker processes can write concurrently without
read-modify-write races.

A worker batch is thousands of rows, so the hot statements take the batch as one
bound value (`plugin.sql_lists`): key lists as `= ANY(array)` / `json_each`, and
row sets joined in by `UPDATE ... FROM` (and, on PostgreSQL, `INSERT ... SELECT`),
instead of a placeholder per value or a parameter set per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Engine

from connectors.crm.base import Customer, Decision
from ranking.weights import TIERS

from . import jsontext
from .sql_lists import format_times, in_values, rows_relation, sqlite_time

metadata = sa.MetaData()

# PostgreSQL leaves this share of each page of the hot tables free, so a row updated
# without changing an indexed column (a decision's status, a ticket's desk fields) gets
# its new version on the same page without new index entries (a "HOT" update).
# Measured in `bench/worker_profile.py`: ~9,000 of 20,000 decision updates and ~3,000 of
# the tickets' became HOT (none before), ~5% more events/s. Applies to tables this
# creates; see the README for existing ones.
HOT_TABLE = {"postgresql_with": {"fillfactor": 70}}

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("email", sa.String(320)),
    sa.Column("handles", sa.JSON, nullable=False, default=dict),
    sa.Column("monthly_spend", sa.Float),
    sa.Column("currency", sa.String(8)),
    sa.Column("contract_end", sa.Date),
    # When the newest event that set these facts happened; an older event never overwrites them.
    sa.Column("facts_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False, index=True),
    sa.Column("subject", sa.Text, nullable=False, default=""),
    sa.Column("description", sa.Text, nullable=False, default=""),
    # "open" or "closed", as the desk last reported it; closed tickets leave the queue.
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("last_event_id", sa.String(256)),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The priority the desk shows (from its events, or Clout's own write for the local desk).
    sa.Column("desk_priority", sa.String(64)),
    # The priority the desk's newest event reported; a change in it is an agent's doing.
    sa.Column("reported_priority", sa.String(64)),
    # The local desk's fields; other desks keep these on their side.
    sa.Column("desk_flags", sa.JSON),
    sa.Column("desk_reason", sa.Text),
    # What Clout last wrote to the desk: an agent's change is told apart by comparing.
    sa.Column("clout_priority", sa.String(64)),
    sa.Column("clout_decision_id", sa.String(32)),
    sa.Column("clout_written_at", sa.DateTime(timezone=True)),
    # Latest decision, denormalised so the queue is one indexed query.
    sa.Column("decision_id", sa.Integer),
    sa.Column("decided_event_id", sa.String(256)),  # the event whose decision the desk confirmed
    sa.Column("tier_rank", sa.Integer),  # 0 = urgent ... 3 = low
    sa.Column("score", sa.Float),
    sa.Index("ix_tickets_queue", "status", "tier_rank", "score"),
    **HOT_TABLE,
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(128), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("event_id", sa.String(256)),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(32), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("flags", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("components", sa.JSON, nullable=False),
    sa.Column("weights_version", sa.String(32), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    # pending -> written | agent_override | closed | superseded | failed
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("written_at", sa.DateTime(timezone=True)),
    sa.Index("ix_decisions_ticket", "source", "ticket_id", "decided_at"),
    **HOT_TABLE,
)

# The event ledger: every accepted event, from the moment it leaves the Redis inbox
# until it is settled. Work is claimed with a lease, so a worker that dies mid-batch
# only delays its events until the lease runs out; (source, event_id) is unique, so
# an event redelivered under any number of delivery ids is decided once.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(256), nullable=False),
    sa.Column("ticket_id", sa.String(128), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # pending -> ranked -> decided | agent_override | closed | superseded | stale; failed
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("lease_owner", sa.String(40)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("decision_id", sa.Integer),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "event_id", name="uq_events_source_event"),
    # On `state` alone: a claim or a lease renewal then changes no indexed column, so on
    # PostgreSQL its new row version stays on its page with no index entries ("HOT").
    sa.Index("ix_events_state", "state"),
    **HOT_TABLE,
)

# The desk outbox: at most one row per ticket, holding the newest decision still to be
# written. A newer decision replaces an unwritten older one, so the desk only ever
# receives the newest; rows are claimed with a lease and retried with backoff.
writes = sa.Table(
    "writes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(128), nullable=False),
    sa.Column("decision_id", sa.Integer, nullable=False),
    sa.Column("event_at", sa.DateTime(timezone=True)),  # the answered event's time: newest wins
    # pending -> done | failed (parked for an operator; transient ones are still retried slowly)
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_failed_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.Column("retryable", sa.Boolean, nullable=False, default=True),
    sa.Column("lease_owner", sa.String(40)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "ticket_id", name="uq_writes_ticket"),
    sa.Index("ix_writes_due", "source", "state", "next_attempt_at"),
    **HOT_TABLE,
)

# Small per-desk facts that must outlive a process: a catch-up poll's watermark, the
# API usage the desk last reported. Values are JSON.
desk_state = sa.Table(
    "desk_state",
    metadata,
    sa.Column("desk", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every accepted change of the ranking settings: when, which key, old -> new (JSON), and
# the weights version before and after. Several processes applying one change record it once.
weights_audit = sa.Table(
    "weights_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("path", sa.Text),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("old", sa.Text),
    sa.Column("new", sa.Text),
    sa.Column("version_before", sa.String(32), nullable=False),
    sa.Column("version_after", sa.String(32), nullable=False),
    sa.UniqueConstraint("version_before", "version_after", "key", name="uq_weights_audit_change"),
)

# Customers who asked not to be profiled: no social lookups, ranked without influence.
influence_opt_outs = sa.Table(
    "influence_opt_outs",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=False),
)

influence_history = sa.Table(
    "influence_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("raw", sa.Float),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("explanation", sa.JSON, nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_influence_customer", "customer_id", "computed_at"),
)


# The queue's order, wherever it is shown (the API, the pages): tier first, because the
# fairness guard can lift a low-scoring ticket that has waited too long; then score, age.
QUEUE_ORDER = (tickets.c.tier_rank.asc(), tickets.c.score.desc(), tickets.c.created_at.asc(),
               tickets.c.id.asc())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# Webhooks refuse event times beyond the signature tolerance (at most an hour) ahead;
# anything stored further ahead than this came another way and never counts as newest.
FUTURE_SKEW = dt.timedelta(hours=1)


def _future_limit() -> dt.datetime:
    return utcnow() + FUTURE_SKEW


@dataclass(frozen=True)
class WriteOutcome:
    """What became of one claimed desk write (see `Store.settle_writes`)."""

    write_id: int
    decision_id: int
    source: str
    ticket_id: str
    event_id: str
    # written | agent_override | closed | superseded: settled; retry: try again later;
    # failed: parked for an operator
    status: str
    error: str | None = None
    retryable: bool = True
    next_attempt_at: dt.datetime | None = None


_SETTLED_WRITES = ("written", "agent_override", "closed", "superseded")
_EVENT_STATE = {"written": "decided", "agent_override": "agent_override", "closed": "closed",
                "superseded": "superseded"}


@dataclass(frozen=True)
class ClaimedWrite:
    write_id: int
    decision: Decision
    attempts: int
    first_failed_at: dt.datetime | None
    parked: bool  # taken from the parked ones for a slow retry


def _insert(conn: sa.Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {conn.dialect.name!r}; use PostgreSQL or SQLite")
    return insert


def _insert_many(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]], *,
                 distinct: bool = True, finish: Callable[[Any], Any] = lambda stmt: stmt) -> Any:
    """Insert rows (all with the same keys) in one go; `finish(insert)` adds ON CONFLICT.

    PostgreSQL: one `INSERT ... SELECT` over the rows bound as one value (see
    `plugin.sql_lists.rows_relation`). An executemany there pipelined a statement per row
    and processed every row's parameters in Python: profiled, the INSERTs of a 2,000-event
    batch took ~4x longer that way. It refuses to update one row twice in a statement, so
    rows whose keys repeat (`distinct=False`) go row by row, in order.
    SQLite: an executemany, which its driver runs in C; the same INSERT ... SELECT measured
    slower there (SQLite re-reads the JSON for every column of every row).
    """
    if distinct and conn.dialect.name == "postgresql":
        return conn.execute(finish(_insert_rows(conn, table, rows)))
    if conn.dialect.name == "sqlite" and len(rows) > 1:
        return _executemany_sqlite(conn, finish(_insert(conn)(table)), rows)
    return conn.execute(finish(_insert(conn)(table)), list(rows))


def _executemany_sqlite(conn: sa.Connection, stmt: Any, rows: Sequence[dict[str, Any]]) -> Any:
    """`conn.execute(stmt, rows)`, with the rows turned into parameter tuples here.

    SQLAlchemy builds and processes a parameter dict per row of an executemany in
    Python; profiled, that was the largest single cost of a SQLite batch (every
    timestamp formatted anew, though most rows of a batch share theirs). Here the
    statement is compiled once, each column's own bind processor (the same conversion
    SQLAlchemy applies) is looked up once, and equal timestamps are formatted once.
    The values are gathered a column at a time and zipped into rows at the end: per
    value, that is one step of a list comprehension instead of a call through a getter
    (cProfile: 378,000 getter calls for a 6,000-event backlog).
    """
    cols = list(rows[0])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=cols)
    names = compiled.positiontup or []
    dialect = conn.dialect
    columns: list[Iterable[Any]] = []
    for name in names:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name not in rows[0]:  # a value the statement carries itself (in its WHERE)
            value = bind.effective_value
            value = process(value) if process is not None and value is not None else value
            columns.append(repeat(value, len(rows)))
            continue
        values = [row[name] for row in rows]
        if process is None:
            columns.append(values)
        elif isinstance(bind.type, (sa.DateTime, sa.Date)):
            columns.append(format_times(values, _time_text(bind.type, dialect, process)))
        else:
            columns.append([None if v is None else process(v) for v in values])
    params = list(zip(*columns)) if columns else [()] * len(rows)
    return conn.exec_driver_sql(compiled.string, params)


def _time_text(type_: Any, dialect: Any, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's DATETIME bind processor, faster for plain datetimes: the same text through
    a positional format instead of a dict of named fields (half the time; callgrind had
    the processor at 5% of a batch). Anything else, or a type stored in another format,
    goes through `process`."""
    impl = type_.dialect_impl(dialect)
    if getattr(impl, "_storage_format", None) != SQLITE_DATETIME._storage_format:
        return process
    datetime = dt.datetime

    def text(value: Any) -> Any:
        if type(value) is datetime:
            return sqlite_time(value)
        return process(value)

    return text


def _with_id(d: Decision, decision_id: str) -> Decision:
    """`dataclasses.replace(d, id=...)`, spelled out: replace looks the fields up on every
    call (cProfile: ~8 us a call)."""
    return Decision(d.source, d.ticket_id, d.customer_id, d.tier, d.priority, d.score, d.flags,
                    d.reason, d.components, d.weights_version, d.decided_at, d.event_id,
                    decision_id)


def _insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> Any:
    """`INSERT INTO table (...) SELECT ... FROM` the rows bound as one value."""
    cols = list(rows[0])
    v = rows_relation(conn, [(c, table.c[c].type) for c in cols],
                      [[r[c] for c in cols] for r in rows], name=f"{table.name}_rows")
    # (SQLite needs the WHERE to tell an upsert's ON CONFLICT from a join's ON.)
    return _insert(conn)(table).from_select(cols, sa.select(*[v.c[c] for c in cols])
                                            .where(sa.true()))


def _pairs_in(source_col: Any, id_col: Any, pairs: Iterable[tuple[str, str]]) -> Any:
    """`(source, id) IN pairs`, as `source = s AND id IN (...)` per source: half the bound
    values of a row-value IN and far cheaper for SQLAlchemy to render (profiled: rendering
    the row-value IN lists of a 1,000-event batch was ~9% of its time). Same index use."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for source, key in pairs:
        by_source[source].add(key)
    clauses = [sa.and_(source_col == source, in_values(id_col, sorted(keys)))
               for source, keys in sorted(by_source.items())]
    if not clauses:
        return sa.false()
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def _by_source(items: Iterable[Any]) -> list[tuple[str, list[Any]]]:
    """Outcomes grouped by desk, in a stable order."""
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        grouped[item.source].append(item)
    return sorted(grouped.items())


def _group(states: dict[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for key, state in states.items():
        grouped[state].append(key)
    return grouped


_TICKET_STATE = ("customer_id", "subject", "description", "status", "created_at",
                 "last_event_id", "last_event_at", "desk_priority", "decision_id",
                 "decided_event_id", "tier_rank")


def _ticket_dict(values: Iterable[Any]) -> dict[str, Any]:
    """The `_TICKET_STATE` columns, in that order, as ranking and delivery read them.
    (Positional: a missing attribute on a SQLAlchemy row costs a raised AttributeError
    before the name is looked up; callgrind: ~2,000 instructions a column, 6% of a batch.)"""
    out = dict(zip(_TICKET_STATE, values))
    out["created_at"] = _as_utc(out["created_at"])
    out["last_event_at"] = _as_utc(out["last_event_at"])
    return out


def _decision_from_row(r: Any) -> Decision:
    return Decision(
        source=r.source, ticket_id=r.ticket_id, customer_id=r.customer_id, tier=r.tier,
        priority=r.priority, score=float(r.score), flags=tuple(r.flags or ()), reason=r.reason,
        components=dict(r.components or {}), weights_version=r.weights_version,
        decided_at=_iso(r.decided_at) or "", event_id=r.event_id or "", id=str(r.id))


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything Clout stores is UTC. (`combine` rather
    # than `replace(tzinfo=...)`: the same datetime at a quarter of the cost, which adds up
    # over a batch's rows; `replace` parses its keywords on every call.)
    if value is not None and value.tzinfo is None:
        return _combine(value, value.time(), _UTC)
    return value


_UTC = dt.timezone.utc
_combine = dt.datetime.combine


def _iso(value: dt.datetime | None) -> str | None:
    value = _as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def _parse_date(value: str | dt.date | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


def _parse_ts(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return _as_utc(value)
    return _as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    # Every commit reaches the disk before it returns. The drain trims Redis's inbox once
    # the ledger has committed, so with NORMAL a power cut could lose an event Redis had
    # already given up (Redis itself fsyncs before every 202). In WAL mode this is one
    # fsync of the log per commit, a handful per batch: not measurable in the pipeline
    # bench's backlog.
    "synchronous=FULL",
    "busy_timeout=30000",
    # 32 MiB of page cache per connection instead of 2 MiB: a batch touches index pages
    # all over a 100k-customer book, and re-read them from the OS on every statement.
    "cache_size=-32768",
    # Copy the log back into the database every ~40 MiB instead of every 4 MiB: a page a
    # busy worker rewrites batch after batch is copied once per checkpoint, not once per
    # batch. (Measured together with the cache, in-process: +4 to +15 % events/s over four
    # paired runs; `bench/worker_profile.py`.)
    "wal_autocheckpoint=10000",
)


def normalise_url(database_url: str) -> str:
    """`postgresql://` / `postgres://` mean psycopg 3, the driver Clout installs."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def make_engine(database_url: str) -> Engine:
    """An engine tuned for several Clout processes sharing one database.

    JSON columns go through `plugin.jsontext` (orjson): both dialects encode and decode
    every JSON value of a batch with it (SQLAlchemy hands it to psycopg on PostgreSQL)."""
    database_url = normalise_url(database_url)
    if database_url.startswith("sqlite"):
        # hide_parameters: errors and logs never carry customer data from bound values.
        engine = sa.create_engine(database_url, connect_args={"timeout": 30}, hide_parameters=True,
                                  json_serializer=jsontext.dumps, json_deserializer=jsontext.loads)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine
    return sa.create_engine(database_url, pool_pre_ping=True, hide_parameters=True,
                            json_serializer=jsontext.dumps, json_deserializer=jsontext.loads)


class Store:
    """All reads and writes of Clout's own tables go through here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, database_url: str) -> "Store":
        return cls(make_engine(database_url))

    def create_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            # Several processes starting at once race CREATE TABLE; the loser checks again.
            metadata.create_all(self.engine)

    @property
    def concurrent_writers(self) -> bool:
        """Whether transactions can write at once (row locks), or one at a time (SQLite)."""
        return self.engine.dialect.name != "sqlite"

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self, close: bool = True) -> None:
        self.engine.dispose(close=close)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One transaction for several store calls, each given it as `conn=`.

        A batch's steps that belong together commit together: fewer commits (on SQLite
        each one writes the pages it changed to the WAL, so a ticket row changed by three
        steps is written once) and no step sees another's half-done work.
        """
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _using(self, conn: sa.Connection | None, *, write: bool = True
               ) -> Iterator[sa.Connection]:
        """The caller's transaction (`conn`), or a connection of its own: in a transaction
        that commits at the end when `write`, a plain one for reading otherwise."""
        if conn is not None:
            yield conn
            return
        with (self.engine.begin() if write else self.engine.connect()) as new:
            yield new

    # -- upserts -------------------------------------------------------------

    def _upsert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                keys: Sequence[str], update: Sequence[str],
                newer: str | None = None, keep_earliest: Sequence[str] = (),
                extra: Callable[[Any], dict[str, Any]] | None = None) -> None:
        """INSERT ... ON CONFLICT UPDATE.

        `newer`: a timestamp column; a conflicting row is only updated when the
        incoming value is at least as new (or either side is unknown, or the stored
        one lies beyond `FUTURE_SKEW` ahead of now), so a desk's late retry of an old
        event can't overwrite newer state.
        `keep_earliest`: columns that only ever move back in time (created_at).
        `extra(excluded)`: more column expressions for the update, under the same guard.
        """
        if not rows:
            return
        def upsert(stmt: Any) -> Any:
            set_: dict[str, Any] = {col: getattr(stmt.excluded, col) for col in update}
            if extra is not None:
                set_.update(extra(stmt.excluded))
            if newer is not None:  # a row without a time (a CRM sync) keeps the stored one
                set_[newer] = sa.func.coalesce(getattr(stmt.excluded, newer), table.c[newer])
            where = None
            if newer is not None:
                current, incoming = table.c[newer], getattr(stmt.excluded, newer)
                # A stored time far in the future is a bad clock or a forged event, never
                # "newest": it must not pin the row against every real event after it.
                where = sa.or_(current.is_(None), incoming.is_(None), incoming >= current,
                               current > _future_limit())
            return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)

        _insert_many(conn, table, rows, finish=upsert,
                     distinct=len({tuple(r[k] for k in keys) for r in rows}) == len(rows))
        # Outside the `newer` guard: even a stale event may know an earlier creation time.
        for col in keep_earliest:
            earliest: dict[tuple, Any] = {}  # one row per key: the earliest value wins anyway
            for r in rows:
                if r.get(col) is not None:
                    key = tuple(r[k] for k in keys)
                    if key not in earliest or r[col] < earliest[key]:
                        earliest[key] = r[col]
            if not earliest:
                continue
            v = rows_relation(conn, [*((k, table.c[k].type) for k in keys),
                                     ("v", table.c[col].type)],
                              [[*key, value] for key, value in sorted(earliest.items())])
            conn.execute(table.update()
                         .where(*(table.c[k] == v.c[k] for k in keys))
                         .where(sa.or_(table.c[col].is_(None), table.c[col] > v.c.v))
                         .values({col: v.c.v}))

    def upsert_customers(self, items: Iterable[Customer],
                         facts_at: dict[str, str | dt.datetime] | None = None, *,
                         conn: sa.Connection | None = None) -> None:
        """Insert or update customers; `facts_at` (id -> event time) guards against stale events.

        Rows without a `facts_at` (a CRM sync, the demo loader) always apply.
        """
        now = utcnow()
        facts_at = facts_at or {}
        rows = [
            {
                "id": c.id, "name": c.name, "email": c.email, "handles": dict(c.handles),
                "monthly_spend": c.monthly_spend, "currency": c.currency,
                "contract_end": _parse_date(c.contract_end),
                "facts_at": _parse_ts(facts_at.get(c.id)), "updated_at": now,
            }
            for c in items
        ]
        rows.sort(key=lambda r: r["id"])  # one lock order across concurrent batches: no deadlocks
        with self._using(conn) as conn:
            self._upsert(conn, customers, rows, ["id"],
                         ["name", "email", "handles", "monthly_spend", "currency",
                          "contract_end", "facts_at", "updated_at"], newer="facts_at")

    def upsert_tickets(self, rows: Iterable[dict[str, Any]], *,
                       conn: sa.Connection | None = None) -> None:
        """Rows carry source, id, customer_id, subject, description, created_at, last_event_id,
        last_event_at, and optionally status and desk_priority (None: the event didn't say).

        Older events never overwrite newer ones; created_at keeps the earliest. The desk's
        priority is taken from an event only when it differs from what the desk's previous
        event reported: a change on the desk's side, which is what an agent's edit is.
        """
        now = utcnow()
        prepared = [
            {
                "source": r["source"], "id": r["id"], "customer_id": r["customer_id"],
                "subject": r.get("subject") or "", "description": r.get("description") or "",
                "status": r.get("status"), "desk_priority": r.get("desk_priority"),
                "reported_priority": r.get("desk_priority"),
                "created_at": _parse_ts(r.get("created_at")),
                "last_event_id": r.get("last_event_id"),
                "last_event_at": _parse_ts(r.get("last_event_at")), "updated_at": now,
            }
            for r in rows
        ]
        prepared.sort(key=lambda r: (r["source"], r["id"]))  # one lock order: no deadlocks
        if not prepared:
            return
        t = tickets.c

        def desk_said(ex: Any) -> dict[str, Any]:
            # Only a change in what the desk reports is news: a sender repeating the
            # priority it always sent says nothing about an agent. (No clock is compared:
            # the desk's and Clout's clocks need not agree.)
            return {
                "desk_priority": sa.case(
                    (sa.and_(ex.desk_priority.is_not(None),
                             sa.or_(t.reported_priority.is_(None),
                                    sa.func.lower(ex.desk_priority) !=
                                    sa.func.lower(t.reported_priority))), ex.desk_priority),
                    else_=t.desk_priority),
                "reported_priority": sa.func.coalesce(ex.desk_priority, t.reported_priority),
            }

        with self._using(conn) as conn:
            self._upsert(conn, tickets, [{**r, "status": "open"} for r in prepared],  # new: open
                         ["source", "id"],
                         ["customer_id", "subject", "description", "last_event_id", "updated_at"],
                         newer="last_event_at", keep_earliest=["created_at"], extra=desk_said)
            # What the desk said about open/closed counts only from the ticket's newest event.
            # (Rows for one ticket and event say the same status, so repeats are harmless.)
            said = [[r["source"], r["id"], r["last_event_id"], r["status"]]
                    for r in prepared if r["status"]]
            if said:
                v = rows_relation(conn, [("source", sa.String), ("id", sa.String),
                                         ("event", sa.String), ("status", sa.String)], said)
                conn.execute(tickets.update()
                             .where(tickets.c.source == v.c.source, tickets.c.id == v.c.id,
                                    tickets.c.last_event_id == v.c.event)
                             .values(status=v.c.status))

    def ticket_state(self, keys: Sequence[tuple[str, str]], *, conn: sa.Connection | None = None
                     ) -> dict[tuple[str, str], dict[str, Any]]:
        """(source, id) -> the stored ticket: what ranking needs and where delivery stands."""
        if not keys:
            return {}
        with self._using(conn, write=False) as conn:
            # By the whole primary key: `id IN (...)` alone scanned every ticket (profiled:
            # the cost of a batch grew with the size of the tickets table).
            t = tickets.c
            rows = conn.execute(  # only the columns `_ticket_dict` reads (each one is parsed)
                sa.select(t.source, t.id, *(t[c] for c in _TICKET_STATE))
                .where(_pairs_in(t.source, t.id, keys))
            ).all()  # (`all`: one fetch from the driver, not one call per row)
            return {(r[0], r[1]): _ticket_dict(r[2:]) for r in rows}

    # -- reads ---------------------------------------------------------------

    def get_customers(self, ids: Sequence[str], *,
                      conn: sa.Connection | None = None) -> dict[str, Customer]:
        if not ids:
            return {}
        c = customers.c
        with self._using(conn, write=False) as conn:
            # Only what a Customer holds: every time column read is parsed (SQLite: text).
            result = conn.execute(sa.select(c.id, c.name, c.email, c.handles, c.monthly_spend,
                                            c.currency, c.contract_end)
                                  .where(in_values(c.id, sorted(set(ids))))).all()
            return {
                cid: Customer(id=cid, name=name, email=email, handles=dict(handles or {}),
                              monthly_spend=spend, currency=currency,
                              contract_end=end.isoformat() if end else None)
                for cid, name, email, handles, spend, currency, end in result
            }

    def open_scores(self) -> list[float]:
        """The current scores of open, decided tickets (for tiers by share)."""
        with self.engine.connect() as conn:
            return [float(v) for (v,) in conn.execute(
                sa.select(tickets.c.score).where(tickets.c.status == "open",
                                                 tickets.c.score.is_not(None)))]

    def spend_book(self) -> list[tuple[float, str | None]]:
        """Every known customer's monthly spend and its currency: the population spend
        percentiles are taken in (after conversion to one currency)."""
        with self.engine.connect() as conn:
            return [
                (float(v), c) for (v, c) in conn.execute(
                    sa.select(customers.c.monthly_spend, customers.c.currency)
                    .where(customers.c.monthly_spend.is_not(None))
                )
            ]

    def count(self, table_name: str) -> int:
        table = metadata.tables[table_name]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    # -- decisions and history ----------------------------------------------

    def record_influence(self, rows: Iterable[dict[str, Any]]) -> None:
        prepared = [
            {
                "customer_id": r["customer_id"], "score": float(r["score"]),
                "raw": None if r.get("raw") is None else float(r["raw"]),
                "model_version": r["model_version"], "explanation": r.get("explanation") or {},
                "computed_at": _parse_ts(r.get("computed_at")) or utcnow(),
            }
            for r in rows
        ]
        if prepared:
            with self.engine.begin() as conn:
                conn.execute(influence_history.insert(), prepared)

    # -- the event ledger ----------------------------------------------------

    def add_events(self, rows: Sequence[dict[str, Any]]) -> None:
        """Put accepted events into the ledger; one already there (same source and event id)
        is left as it is, so a redelivery or a repeated drain adds nothing."""
        if not rows:
            return
        now = utcnow()
        prepared = [{"source": r["source"], "event_id": r["event_id"], "ticket_id": r["ticket_id"],
                     "payload": r["payload"], "occurred_at": _parse_ts(r.get("occurred_at")),
                     "received_at": now, "state": "pending", "attempts": 0, "updated_at": now}
                    for r in rows]
        with self.engine.begin() as conn:
            # (A repeat within the batch is fine here: DO NOTHING may meet a row twice.)
            _insert_many(conn, events, prepared, finish=lambda stmt: stmt.on_conflict_do_nothing(
                index_elements=["source", "event_id"]))

    def claim_events(self, keys: Sequence[tuple[str, str]], owner: str,
                     lease_seconds: float, max_attempts: int = 1_000_000) -> list[dict[str, Any]]:
        """Lease the pending events among `keys` to `owner`; returns what was claimed.

        An event leased to someone else (still within its lease) or already settled
        is skipped, so two workers never rank the same event at once. Every claim
        counts an attempt up front, so a work-horse killed by an event (out of memory,
        a hard timeout) still counts; outages give it back (`release_events`). An event
        already tried `max_attempts` times is parked instead of claimed.
        """
        if not keys:
            return []
        now = utcnow()
        key_match = _pairs_in(events.c.source, events.c.event_id, keys)
        # Nobody holds it: never claimed, given back, or a lease that ran out. (An unowned
        # row's lease_until only says when reconcile may queue it again.)
        unleased = sa.or_(events.c.lease_owner.is_(None), events.c.lease_until < now)
        with self.engine.begin() as conn:
            free = (sa.select(events.c.id)
                    .where(key_match, events.c.state == "pending", unleased,
                           events.c.attempts < max_attempts))
            if conn.dialect.name == "postgresql":
                free = free.with_for_update(skip_locked=True)
            # What was claimed comes back from the UPDATE itself (one pass over the keys
            # instead of a second SELECT; the ledger's rows are written here anyway).
            rows = sorted(conn.execute(
                events.update().where(events.c.id.in_(free.scalar_subquery()))
                .values(lease_owner=owner, attempts=events.c.attempts + 1,
                        lease_until=now + dt.timedelta(seconds=lease_seconds))
                .returning(events.c.id, events.c.payload, events.c.attempts)).all(),
                key=itemgetter(0))
            if len(rows) < len(keys):
                # Only then can one of the rest have used up its attempts: it is parked.
                conn.execute(events.update()
                             .where(key_match, events.c.state == "pending", unleased,
                                    events.c.attempts >= max_attempts)
                             .values(state="failed", lease_owner=None, lease_until=None,
                                     updated_at=now))
            return [{"id": i, "payload": payload, "attempts": n} for i, payload, n in rows]

    def extend_event_leases(self, owner: str, ids: Sequence[int], lease_seconds: float) -> int:
        """Keep holding claimed events while a slow batch works; returns how many are still ours."""
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(events.update()
                                .where(in_values(events.c.id, list(ids)),
                                       events.c.lease_owner == owner,
                                       events.c.state == "pending")
                                .values(lease_until=utcnow() + dt.timedelta(seconds=lease_seconds))
                                ).rowcount or 0

    def claimable_events(self, older_than: float, limit: int, *,
                         expired_only: bool = False) -> list[dict[str, Any]]:
        """Pending events nobody is working on: their lease ran out, or (unless
        `expired_only`) they were never picked up `older_than` seconds after arriving."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=older_than)
        waiting = events.c.lease_until < now
        if not expired_only:
            waiting = sa.or_(waiting, sa.and_(events.c.lease_until.is_(None),
                                              events.c.received_at < cutoff))
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(events.c.source, events.c.event_id, events.c.attempts)
                .where(events.c.state == "pending", waiting)
                .order_by(events.c.id).limit(limit))
            return [{"source": r.source, "event_id": r.event_id, "attempts": r.attempts}
                    for r in rows]

    def mark_requeued(self, keys: Sequence[tuple[str, str]], not_before: dt.datetime) -> None:
        """Re-driven events are in a queued job now: reconcile leaves them until `not_before`."""
        if not keys:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            # A lease that ran out is given up here too: its holder is dead or stalled (and
            # its fence will refuse it), and the row must not be queued again every pass.
            conn.execute(events.update()
                         .where(_pairs_in(events.c.source, events.c.event_id, keys),
                                events.c.state == "pending",
                                sa.or_(events.c.lease_owner.is_(None), events.c.lease_until < now))
                         .values(lease_owner=None, lease_until=not_before))

    def release_events(self, owner: str, ids: Sequence[int], *, error: str | None,
                       refund: bool, max_attempts: int) -> int:
        """Give claimed events back after a failure; returns how many were parked as failed.

        `refund` gives back the attempt the claim counted: for outages (the store, Redis
        or a desk unreachable), which must leave events waiting however long they last,
        and for a batch split to find its bad event. Otherwise the attempt stands, and an
        event that failed `max_attempts` times is parked for an operator (`clout failed`).
        """
        if not ids:
            return 0
        now = utcnow()
        mine = sa.and_(in_values(events.c.id, list(ids)), events.c.lease_owner == owner,
                       events.c.state == "pending")
        with self.engine.begin() as conn:
            conn.execute(events.update().where(mine).values(
                attempts=events.c.attempts - (1 if refund else 0), last_error=error,
                lease_owner=None, updated_at=now,
                # Free for the next re-drive at once (reconcile decides when).
                lease_until=now))
            if refund:
                return 0
            parked = conn.execute(
                events.update().where(in_values(events.c.id, list(ids)),
                                      events.c.state == "pending",
                                      events.c.lease_owner.is_(None),
                                      events.c.attempts >= max_attempts)
                .values(state="failed", updated_at=now))
            return parked.rowcount or 0

    def settle_events(self, owner: str, states: dict[int, str], error: str | None = None) -> None:
        """Events that need no decision (stale, closed tickets): settled if still ours."""
        if not states:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            for state, ids in _group(states).items():
                conn.execute(events.update()
                             .where(in_values(events.c.id, ids), events.c.lease_owner == owner,
                                    events.c.state == "pending")
                             .values(state=state, lease_owner=None, lease_until=None,
                                     last_error=error, updated_at=now))

    # -- decisions and the desk outbox ---------------------------------------

    def record_decisions(self, items: Sequence[Decision], *, owner: str | None = None,
                         ledger_ids: dict[tuple[str, str], int] | None = None,
                         settle: dict[int, str] | None = None,
                         hold_ms: dict[str, int] | None = None,
                         then: Callable[[sa.Connection, list[Decision]], None] | None = None,
                         ) -> list[Decision] | None:
        """Keep each decision, point its ticket at it and queue it for the desk, atomically.

        With `owner`, the claimed ledger events (`ledger_ids`: (source, event_id) -> ledger
        id) move to `ranked` (and `settle` ones to their state) in the same transaction,
        which is refused (returns None, nothing written) if any lease was lost meanwhile:
        another worker took the events over, and its decisions stand. `hold_ms` (desk ->
        milliseconds) keeps a desk's new writes back for its flush window.

        Only a decision for the ticket's current event becomes current and goes into the
        outbox, and only if it is newer than what the outbox holds for that ticket; the
        decision it replaces there is `superseded`. Returns the decisions with their ids.

        `then(conn, queued)` runs in the same transaction, with the decisions that went
        into the outbox: a desk kept in this store is written before the commit. It runs
        before the claimed events move, so they move straight to the state the write left
        their decisions in (`decided`, `closed`, ...; `ranked` if still to be written).
        """
        if not items:
            return []
        ledger_ids = ledger_ids or {}
        settle = dict(settle or {})
        now = utcnow()
        ordered = sorted(items, key=lambda d: (d.source, d.ticket_id))
        with self.engine.begin() as conn:
            writing = False  # SQLite: this transaction holds the database's write lock
            if owner is not None:
                claimed = [ledger_ids[(d.source, d.event_id)] for d in ordered
                           if (d.source, d.event_id) in ledger_ids] + list(settle)
                if claimed:
                    # Lock our rows before anything is read, so nobody can take them over
                    # between this check and the commit: PostgreSQL locks the rows (FOR
                    # UPDATE, no new row versions: the rows are written again below anyway);
                    # SQLite has no row locks, so a write takes its database write lock.
                    mine = sa.and_(in_values(events.c.id, claimed), events.c.lease_owner == owner,
                                   events.c.state == "pending")
                    if conn.dialect.name == "postgresql":
                        held = len(conn.execute(sa.select(events.c.id).where(mine)
                                                .with_for_update()).all())
                    else:
                        # One row written takes the lock; then, under it, the count. (Writing
                        # every row cost a batch 2%: they are all written again below.)
                        first = min(claimed)
                        conn.execute(events.update().where(events.c.id == first)
                                     .values(updated_at=now))
                        writing = True
                        held = conn.execute(sa.select(sa.func.count()).select_from(events)
                                            .where(mine)).scalar_one()
                    if held != len(set(claimed)):
                        conn.rollback()
                        return None
            # A batch is decided at one moment: its text is parsed once, not once a row.
            decided_at = {text: _parse_ts(text) for text in {d.decided_at for d in ordered}}
            rows = [dict(source=d.source, ticket_id=d.ticket_id, customer_id=d.customer_id,
                         event_id=d.event_id or None, tier=d.tier, priority=d.priority,
                         score=d.score, flags=list(d.flags), reason=d.reason,
                         components=dict(d.components), weights_version=d.weights_version,
                         decided_at=decided_at[d.decided_at], status="pending") for d in ordered]
            ids = self._insert_decisions(conn, rows, writing=writing)
            out = [_with_id(d, str(i)) for d, i in zip(ordered, ids, strict=True)]
            current = self._point_tickets(conn, out)
            queued = self._queue_writes(conn, [d for d in out if d.id in current], now,
                                        hold_ms or {}, event_at=current)
            stale = [int(d.id) for d in out if d.id not in queued]
            if stale:
                conn.execute(decisions.update().where(in_values(decisions.c.id, stale))
                             .values(status="superseded"))
            settled: dict[str, str] = {}
            if then is not None:
                # Before the ledger moves: the events can then go straight to where the
                # desk's write left them (one UPDATE of the batch's events instead of two;
                # the write's own settle finds none of them `ranked` yet).
                then(conn, [d for d in out if d.id in queued])
                done = sorted(int(i) for i in queued)
                if owner is not None and done:
                    settled = {str(i): _EVENT_STATE[status] for i, status in conn.execute(
                        sa.select(decisions.c.id, decisions.c.status)
                        .where(in_values(decisions.c.id, done))).all() if status in _EVENT_STATE}
            if owner is not None:
                # One ledger row per event, so one decision per row: a single statement.
                moved = {ledger_ids[(d.source, d.event_id)]:
                         [settled.get(d.id, "ranked") if d.id in queued else "superseded",
                          int(d.id)]
                         for d in out if (d.source, d.event_id) in ledger_ids}
                if moved:
                    v = rows_relation(conn, [("id", sa.Integer), ("state", sa.String),
                                             ("decision", sa.Integer)],
                                      [[k, *rest] for k, rest in sorted(moved.items())])
                    conn.execute(events.update()
                                 .where(events.c.id == v.c.id, events.c.lease_owner == owner)
                                 .values(state=v.c.state, decision_id=v.c.decision,
                                         lease_owner=None, lease_until=None, updated_at=now))
                for state, group in _group(settle).items():
                    conn.execute(events.update().where(in_values(events.c.id, group)).values(
                        state=state, lease_owner=None, lease_until=None, updated_at=now))
            return out

    @staticmethod
    def _insert_decisions(conn: sa.Connection, rows: list[dict[str, Any]], *,
                          writing: bool = False) -> list[int]:
        """Insert decision rows; returns their ids in the rows' order.

        `RETURNING` in parameter order is what SQLAlchemy offers, but it costs: on
        PostgreSQL it renders one statement with a placeholder per value, which psycopg
        parses anew each time (profiled: 150 us a row, a fifth of a batch's time), and on
        SQLite it runs one INSERT per row. Instead PostgreSQL hands out the ids from the
        table's own sequence first (safe with any number of writers), and the rows are
        inserted with them in one statement (`_insert_many`). On SQLite, when the
        transaction already holds the database's write lock (`writing`), no other writer
        can insert until it commits, so the ids are the next ones after the largest (what
        SQLite would hand out itself) and the rows go in as one executemany. Otherwise the
        rows are matched back to their ids by (source, ticket, event), unique within a batch
        (one decision per ticket); a batch where it is not takes the row-by-row path.
        """
        if conn.dialect.name == "postgresql" or writing:
            if conn.dialect.name == "postgresql":
                ids = [int(i) for i in conn.execute(
                    sa.select(sa.func.nextval(sa.func.pg_get_serial_sequence("decisions", "id")))
                    .select_from(sa.func.generate_series(1, len(rows)))).scalars()]
            else:
                last = conn.execute(sa.select(sa.func.coalesce(sa.func.max(decisions.c.id), 0))
                                    ).scalar_one()
                ids = list(range(last + 1, last + 1 + len(rows)))
            _insert_many(conn, decisions, [{**r, "id": i} for r, i in zip(rows, ids)])
            return ids
        keys = [(r["source"], r["ticket_id"], r["event_id"]) for r in rows]
        if len(set(keys)) != len(keys):
            return list(conn.execute(decisions.insert().returning(
                decisions.c.id, sort_by_parameter_order=True), rows).scalars().all())
        got = {(r.source, r.ticket_id, r.event_id): r.id for r in conn.execute(
            decisions.insert().returning(decisions.c.id, decisions.c.source,
                                         decisions.c.ticket_id, decisions.c.event_id), rows)}
        return [got[k] for k in keys]

    def _point_tickets(self, conn: sa.Connection, items: Sequence[Decision]
                       ) -> dict[str, dt.datetime | None]:
        """Make each decision its ticket's current one, if it answers the current event.
        Returns the decisions that became current (by id), each with its ticket's newest
        event time, which the outbox needs next (read here, not a second time there)."""
        if not items:
            return {}
        rank = {tier: i for i, tier in enumerate(TIERS)}
        rows = [[d.source, d.ticket_id, d.event_id or None, int(d.id), d.score,
                 rank.get(d.tier, len(TIERS))] for d in items]
        if len({(r[0], r[1]) for r in rows}) == len(rows):  # one per ticket: one statement
            v = rows_relation(conn, [("source", sa.String), ("id", sa.String), ("event", sa.String),
                                     ("decision", sa.Integer), ("score", sa.Float),
                                     ("rank", sa.Integer)], rows)
            conn.execute(
                tickets.update()
                .where(tickets.c.source == v.c.source, tickets.c.id == v.c.id,
                       sa.or_(v.c.event.is_(None), tickets.c.last_event_id == v.c.event))
                .values(decision_id=v.c.decision, score=v.c.score, tier_rank=v.c.rank))
        else:  # several for one ticket: in order, the last that answers its event wins
            conn.execute(
                tickets.update()
                .where(tickets.c.source == sa.bindparam("k_source"),
                       tickets.c.id == sa.bindparam("k_id"),
                       sa.or_(sa.bindparam("k_event", type_=sa.String).is_(None),
                              tickets.c.last_event_id == sa.bindparam("k_event", type_=sa.String)))
                .values(decision_id=sa.bindparam("v_decision"), score=sa.bindparam("v_score"),
                        tier_rank=sa.bindparam("v_rank")),
                [dict(zip(("k_source", "k_id", "k_event", "v_decision", "v_score", "v_rank"), r))
                 for r in rows])
        mine = [int(d.id) for d in items]
        keys = sorted({(d.source, d.ticket_id) for d in items})
        return {str(decision): _as_utc(at) for decision, at in conn.execute(
            sa.select(tickets.c.decision_id, tickets.c.last_event_at).where(
                # by primary key, then the decision
                _pairs_in(tickets.c.source, tickets.c.id, keys),
                in_values(tickets.c.decision_id, mine))).all()}

    def _queue_writes(self, conn: sa.Connection, items: Sequence[Decision],
                      now: dt.datetime, hold_ms: dict[str, int],
                      event_at: dict[str, dt.datetime | None]) -> set[str]:
        """Put decisions in the outbox where they are newer than what waits there.
        `event_at`: decision id -> its ticket's newest event time (`_point_tickets`)."""
        if not items:
            return set()
        before = {
            (source, ticket): decision for source, ticket, decision in conn.execute(
                sa.select(writes.c.source, writes.c.ticket_id, writes.c.decision_id)
                .where(_pairs_in(writes.c.source, writes.c.ticket_id,
                                [(d.source, d.ticket_id) for d in items]))).all()
        }
        rows = [{"source": d.source, "ticket_id": d.ticket_id, "decision_id": int(d.id),
                 "event_at": event_at.get(d.id), "state": "pending",
                 "attempts": 0,
                 "next_attempt_at": now + dt.timedelta(milliseconds=hold_ms.get(d.source, 0)),
                 "first_failed_at": None,
                 "last_error": None, "retryable": True, "updated_at": now} for d in items]
        def upsert(stmt: Any) -> Any:
            ex, w = stmt.excluded, writes.c
            newer = sa.or_(
                w.event_at.is_(None), w.event_at > _future_limit(),
                sa.and_(ex.event_at.is_not(None), ex.event_at > w.event_at),
                sa.and_(sa.or_(ex.event_at.is_(None), ex.event_at == w.event_at),
                        ex.decision_id > w.decision_id),
            )
            return stmt.on_conflict_do_update(
                index_elements=["source", "ticket_id"],
                set_={c: getattr(ex, c) for c in ("decision_id", "event_at", "state", "attempts",
                                                  "next_attempt_at", "first_failed_at",
                                                  "last_error", "retryable", "updated_at")},
                where=newer)

        # One row per ticket (a ticket has one current decision): one statement.
        _insert_many(conn, writes, rows, finish=upsert,
                     distinct=len({(r["source"], r["ticket_id"]) for r in rows}) == len(rows))
        after = {
            (source, ticket): decision for source, ticket, decision in conn.execute(
                sa.select(writes.c.source, writes.c.ticket_id, writes.c.decision_id)
                .where(_pairs_in(writes.c.source, writes.c.ticket_id,
                                [(d.source, d.ticket_id) for d in items]))).all()
        }
        queued = {str(v) for v in after.values()} & {d.id for d in items}
        replaced = [old for key, old in before.items()
                    if old is not None and after.get(key) != old and str(after.get(key)) in queued]
        if replaced:  # an unwritten older decision never reaches the desk now
            conn.execute(decisions.update().where(in_values(decisions.c.id, replaced),
                                                  decisions.c.status == "pending")
                         .values(status="superseded"))
            conn.execute(events.update().where(in_values(events.c.decision_id, replaced),
                                               events.c.state == "ranked")
                         .values(state="superseded", updated_at=now))
        return queued

    def claim_writes(self, source: str, owner: str | None, lease_seconds: float, limit: int, *,
                     ticket_ids: Sequence[str] | None = None,
                     parked_before: dt.datetime | None = None,
                     known: dict[str, Decision] | None = None,
                     conn: sa.Connection | None = None) -> list["ClaimedWrite"]:
        """Lease due outbox rows of one desk: (write id, decision, attempts so far).

        Due means pending with `next_attempt_at` passed; with `parked_before`, parked
        transient failures last tried before then are taken too (the slow retry).
        `known` (decision id -> the decision, as `record_decisions` returned it): those
        are not read back from the store; any other claimed decision is.

        `owner=None` (only with `conn`): the rows are held by the caller's transaction
        instead of a lease (PostgreSQL locks them, SQLite's write lock is already held),
        because they are settled before it commits; a lease would be written and cleared
        again unseen (timed on PostgreSQL: those two UPDATEs were ~5% of a batch's statements).
        """
        if owner is None and conn is None:
            raise ValueError("claiming without a lease needs the caller's transaction")
        now = utcnow()
        due = sa.and_(writes.c.state == "pending", writes.c.next_attempt_at <= now)
        if parked_before is not None:
            due = sa.or_(due, sa.and_(writes.c.state == "failed", writes.c.retryable.is_(True),
                                      writes.c.updated_at < parked_before,
                                      writes.c.next_attempt_at <= now))
        cond = [writes.c.source == source, due,
                sa.or_(writes.c.lease_until.is_(None), writes.c.lease_until < now)]
        if ticket_ids is not None:
            if not ticket_ids:
                return []
            cond.append(in_values(writes.c.ticket_id, list(ticket_ids)))
        with self._using(conn) as conn:
            free = (sa.select(writes.c.id).where(*cond)
                    .order_by(writes.c.next_attempt_at, writes.c.id).limit(limit))
            if conn.dialect.name == "postgresql":
                free = free.with_for_update(skip_locked=True)
            if owner is None:
                return self._held_writes(conn, free, known or {})
            taken = conn.execute(writes.update().where(writes.c.id.in_(free.scalar_subquery()))
                                 .values(lease_owner=owner,
                                         lease_until=now + dt.timedelta(seconds=lease_seconds))
                                 .returning(writes.c.id)).scalars().all()
            if not taken:
                return []
            # By id: selecting on the owner scanned the desk's whole outbox, done rows too.
            if known:
                rows = conn.execute(
                    sa.select(writes.c.id.label("write_id"), writes.c.attempts,
                              writes.c.first_failed_at, writes.c.state.label("write_state"),
                              writes.c.decision_id)
                    .where(in_values(writes.c.id, sorted(taken)), writes.c.lease_owner == owner)
                    .order_by(writes.c.ticket_id)).all()
                if all(str(r.decision_id) in known for r in rows):
                    return [ClaimedWrite(write_id=r.write_id, decision=known[str(r.decision_id)],
                                         attempts=r.attempts,
                                         first_failed_at=_as_utc(r.first_failed_at),
                                         parked=r.write_state == "failed") for r in rows]
            rows = conn.execute(
                sa.select(writes.c.id.label("write_id"), writes.c.attempts,
                          writes.c.first_failed_at, writes.c.state.label("write_state"), decisions)
                .join(decisions, decisions.c.id == writes.c.decision_id)
                .where(in_values(writes.c.id, sorted(taken)), writes.c.lease_owner == owner)
                .order_by(writes.c.ticket_id))
            return [ClaimedWrite(write_id=r.write_id, decision=_decision_from_row(r),
                                 attempts=r.attempts, first_failed_at=_as_utc(r.first_failed_at),
                                 parked=r.write_state == "failed") for r in rows]

    @staticmethod
    def _held_writes(conn: sa.Connection, free: Any, known: dict[str, Decision]
                     ) -> list["ClaimedWrite"]:
        """`claim_writes` without a lease: the due rows, locked by the caller's transaction."""
        w = writes.c
        # Unpacked by position: see `_ticket_dict` for what a row's attribute costs.
        rows = sorted(conn.execute(
            free.with_only_columns(w.ticket_id, w.id, w.attempts, w.first_failed_at, w.state,
                                   w.decision_id)).all(), key=itemgetter(0))
        missing = sorted({r[5] for r in rows if str(r[5]) not in known})
        found = dict(known)
        if missing:
            found.update({str(r.id): _decision_from_row(r) for r in conn.execute(
                sa.select(decisions).where(in_values(decisions.c.id, missing)))})
        return [ClaimedWrite(write_id=write_id, decision=found[str(decision)], attempts=attempts,
                             first_failed_at=_as_utc(failed_at), parked=state == "failed")
                for _, write_id, attempts, failed_at, state, decision in rows]

    def renew_write_leases(self, owner: str, write_ids: Sequence[int],
                           lease_seconds: float, *, conn: sa.Connection | None = None) -> set[int]:
        """Just before writing to the desk: which claimed writes are still ours (their lease
        renewed). One whose lease ran out may be in another worker's hands: not written."""
        if not write_ids:
            return set()
        now = utcnow()
        with self._using(conn) as conn:
            conn.execute(writes.update()
                         .where(in_values(writes.c.id, list(write_ids)),
                                writes.c.lease_owner == owner,
                                writes.c.lease_until > now)
                         .values(lease_until=now + dt.timedelta(seconds=lease_seconds)))
            return {r[0] for r in conn.execute(
                sa.select(writes.c.id).where(in_values(writes.c.id, list(write_ids)),
                                             writes.c.lease_owner == owner))}

    def settle_writes(self, owner: str | None, outcomes: Sequence["WriteOutcome"], *,
                      conn: sa.Connection | None = None) -> None:
        """Record what happened to claimed writes. A row whose decision was replaced while
        we wrote stays pending for the newer one; the decision we wrote is kept as history.
        Every change is conditional on still holding the lease; `owner=None`: the rows were
        claimed without one, held by the caller's transaction (`conn`)."""
        if not outcomes:
            return
        if owner is None and conn is None:
            raise ValueError("settling writes claimed without a lease needs their transaction")
        held = sa.true() if owner is None else writes.c.lease_owner == owner
        now = utcnow()
        settled = [o for o in outcomes if o.status in _SETTLED_WRITES]
        failing = [o for o in outcomes if o.status not in _SETTLED_WRITES]
        # Set-based: one statement per kind of change, not one per outcome (profiled: the
        # per-row statements were a tenth of a batch's time). A ticket, its outbox row and
        # its decisions belong together, so `decision_id IN (ours)` on a row of ticket T can
        # only match T's own decision: the same as comparing pair by pair.
        with self._using(conn) as conn:
            if settled:
                # Tickets first, then the outbox: the order record_decisions takes them in,
                # so the two never deadlock on PostgreSQL.
                written = [[o.source, o.ticket_id, o.decision_id, o.event_id or None]
                           for o in settled if o.status == "written"]
                if written:  # the event whose decision the desk now shows
                    v = rows_relation(conn, [("source", sa.String), ("id", sa.String),
                                             ("decision", sa.Integer), ("event", sa.String)],
                                      sorted(written, key=lambda r: (r[0], r[1])))
                    # (Only rows that change: the local desk's write has set it already.)
                    conn.execute(tickets.update()
                                 .where(tickets.c.source == v.c.source, tickets.c.id == v.c.id,
                                        tickets.c.decision_id == v.c.decision,
                                        tickets.c.decided_event_id.is_distinct_from(v.c.event))
                                 .values(decided_event_id=v.c.event))
                # closed: unless a newer event (a reopen) made another decision current
                for source, group in _by_source(o for o in settled if o.status == "closed"):
                    conn.execute(tickets.update()
                                 .where(tickets.c.source == source,
                                        in_values(tickets.c.id,
                                                  sorted({o.ticket_id for o in group})),
                                        in_values(tickets.c.decision_id,
                                                  sorted({o.decision_id for o in group})))
                                 .values(status="closed"))
                conn.execute(writes.update().where(
                    in_values(writes.c.id, sorted({o.write_id for o in settled})),
                    held,
                    in_values(writes.c.decision_id, sorted({o.decision_id for o in settled})),
                ).values(state="done", lease_owner=None, lease_until=None, last_error=None,
                         updated_at=now))
                for status in sorted({o.status for o in settled}):
                    ids = sorted({o.decision_id for o in settled if o.status == status})
                    conn.execute(decisions.update().where(in_values(decisions.c.id, ids)).values(
                        status=status, written_at=now if status == "written" else None))
                    # `state IN` lets the ledger's state index find the few ranked/failed rows.
                    conn.execute(events.update()
                                 .where(events.c.state.in_(("ranked", "failed")),
                                        in_values(events.c.decision_id, ids))
                                 .values(state=_EVENT_STATE[status], updated_at=now))
            for o in failing:
                values: dict[str, Any] = {
                    "attempts": writes.c.attempts + 1, "last_error": o.error,
                    "retryable": o.retryable, "lease_owner": None, "lease_until": None,
                    "first_failed_at": sa.func.coalesce(writes.c.first_failed_at, now),
                    "updated_at": now}
                if o.status == "failed":
                    values["state"] = "failed"
                if o.next_attempt_at is not None:
                    values["next_attempt_at"] = o.next_attempt_at
                ours = conn.execute(writes.update().where(
                    writes.c.id == o.write_id, held,
                    writes.c.decision_id == o.decision_id).values(**values)).rowcount
                if o.status == "failed" and ours:
                    conn.execute(decisions.update().where(decisions.c.id == o.decision_id)
                                 .values(status="failed"))
            if owner is None:
                return  # nothing was leased, and nothing could replace a decision meanwhile
            # A row whose decision was replaced while we wrote: still due, for the newer one.
            conn.execute(writes.update().where(
                in_values(writes.c.id, sorted({o.write_id for o in outcomes})),
                writes.c.lease_owner == owner).values(lease_owner=None, lease_until=None))

    def parked(self, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
        """What waits for an operator: parked desk writes and events that failed for good."""
        with self.engine.connect() as conn:
            w = conn.execute(
                sa.select(writes.c.source, writes.c.ticket_id, writes.c.decision_id,
                          writes.c.attempts, writes.c.last_error, writes.c.retryable,
                          writes.c.first_failed_at, writes.c.updated_at)
                .where(writes.c.state == "failed").order_by(writes.c.updated_at).limit(limit))
            e = conn.execute(
                sa.select(events.c.source, events.c.event_id, events.c.ticket_id,
                          events.c.attempts, events.c.last_error, events.c.updated_at)
                .where(events.c.state == "failed").order_by(events.c.updated_at).limit(limit))
            return {
                "writes": [{"source": r.source, "ticket_id": r.ticket_id,
                            "decision_id": r.decision_id, "attempts": r.attempts,
                            "error": r.last_error, "retryable": bool(r.retryable),
                            "failing_since": _iso(r.first_failed_at),
                            "last_try": _iso(r.updated_at)} for r in w],
                "events": [{"source": r.source, "event_id": r.event_id,
                            "ticket_id": r.ticket_id, "attempts": r.attempts,
                            "error": r.last_error, "last_try": _iso(r.updated_at)} for r in e],
            }

    def record_weights_change(self, rows: Sequence[dict[str, Any]], *, version_before: str,
                              version_after: str, path: str | None) -> None:
        if not rows:
            return
        now = utcnow()
        prepared = [{"changed_at": now, "path": path, "key": r["key"], "old": r["old"],
                     "new": r["new"], "version_before": version_before,
                     "version_after": version_after} for r in rows]
        with self.engine.begin() as conn:
            conn.execute(_insert(conn)(weights_audit).on_conflict_do_nothing(
                index_elements=["version_before", "version_after", "key"]), prepared)

    def weights_changes(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest accepted settings changes first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(weights_audit).order_by(weights_audit.c.id.desc())
                                .limit(limit))
            return [{"changed_at": _iso(r.changed_at), "path": r.path, "key": r.key,
                     "old": r.old, "new": r.new, "version_before": r.version_before,
                     "version_after": r.version_after} for r in rows]

    def opted_out(self, customer_ids: Sequence[str]) -> set[str]:
        if not customer_ids:
            return set()
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(influence_opt_outs.c.customer_id).where(
                in_values(influence_opt_outs.c.customer_id, sorted(set(customer_ids))))).scalars())

    def set_opt_out(self, customer_id: str, opted_out: bool) -> None:
        """Record (or lift) a customer's opt-out of profiling; their cached history stays
        as it was, but no new lookup is made while they are opted out."""
        with self.engine.begin() as conn:
            conn.execute(influence_opt_outs.delete().where(
                influence_opt_outs.c.customer_id == customer_id))
            if opted_out:
                conn.execute(influence_opt_outs.insert().values(
                    customer_id=customer_id, opted_out_at=utcnow()))

    def stale_influence(self, before: dt.datetime, limit: int = 100_000) -> list[str]:
        """Customers with handles and an open ticket whose newest influence score was computed
        before `before` (or never), not opted out: what the scheduled refresh looks up again."""
        latest = (sa.select(influence_history.c.customer_id,
                            sa.func.max(influence_history.c.computed_at).label("at"))
                  .group_by(influence_history.c.customer_id).subquery())
        query = (
            sa.select(customers.c.id, customers.c.handles)
            .where(customers.c.id.in_(sa.select(tickets.c.customer_id)
                                      .where(tickets.c.status == "open")))
            .where(customers.c.id.not_in(sa.select(influence_opt_outs.c.customer_id)))
            .outerjoin(latest, latest.c.customer_id == customers.c.id)
            .where(sa.or_(latest.c.at.is_(None), latest.c.at < before))
            .order_by(customers.c.id).limit(limit)
        )
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(query) if r.handles]

    def decision_summaries(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """id -> what a decision said and where it stands (tier, priority, flags, reason, status)."""
        if not ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(decisions.c.id, decisions.c.tier, decisions.c.priority,
                                          decisions.c.flags, decisions.c.reason, decisions.c.status)
                                .where(in_values(decisions.c.id, sorted(set(ids)))))
            return {i: {"tier": tier, "priority": priority, "flags": list(flags or []),
                        "reason": reason, "status": status}
                    for i, tier, priority, flags, reason, status in rows}

    def desk_state(self, desk: str) -> dict[str, Any]:
        """Everything kept for `desk` (key -> value, with `<key>_at` the time it was set)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(desk_state).where(desk_state.c.desk == desk))
            out: dict[str, Any] = {}
            for r in rows:
                out[r.key] = r.value
                out[f"{r.key}_at"] = _iso(r.updated_at)
            return out

    def set_desk_state(self, desk: str, *, conn: sa.Connection | None = None,
                       **values: Any) -> None:
        if not values:
            return
        now = utcnow()
        rows = [{"desk": desk, "key": k, "value": v, "updated_at": now} for k, v in sorted(values.items())]
        with self._using(conn) as conn:
            self._upsert(conn, desk_state, rows, ["desk", "key"], ["value", "updated_at"])

    def count_parked(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            nw = conn.execute(sa.select(sa.func.count()).select_from(writes)
                              .where(writes.c.state == "failed")).scalar_one()
            ne = conn.execute(sa.select(sa.func.count()).select_from(events)
                              .where(events.c.state == "failed")).scalar_one()
        return {"failed_writes": int(nw), "failed_events": int(ne)}

    def unpark(self) -> dict[str, int]:
        """Put every parked write and event back to work now (`clout failed --retry`)."""
        now = utcnow()
        with self.engine.begin() as conn:
            nw = conn.execute(writes.update().where(writes.c.state == "failed").values(
                state="pending", next_attempt_at=now, attempts=0, first_failed_at=None,
                retryable=True, lease_owner=None, lease_until=None, updated_at=now)).rowcount
            conn.execute(decisions.update().where(decisions.c.status == "failed",
                                                  decisions.c.id.in_(
                                                      sa.select(writes.c.decision_id)))
                         .values(status="pending"))
            ne = conn.execute(events.update().where(events.c.state == "failed").values(
                state="pending", attempts=0, lease_owner=None, lease_until=None,
                updated_at=now)).rowcount
        return {"writes": int(nw or 0), "events": int(ne or 0)}

    def desks_with_due_writes(self, parked_before: dt.datetime | None = None) -> list[str]:
        now = utcnow()
        due = sa.and_(writes.c.state == "pending", writes.c.next_attempt_at <= now)
        if parked_before is not None:
            due = sa.or_(due, sa.and_(writes.c.state == "failed", writes.c.retryable.is_(True),
                                      writes.c.updated_at < parked_before,
                                      writes.c.next_attempt_at <= now))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(writes.c.source).where(due).distinct())]

    def prune(self, older_than: dt.datetime) -> int:
        """Forget settled ledger events older than the dedupe window (they can't come back)."""
        with self.engine.begin() as conn:
            return conn.execute(events.delete().where(
                events.c.state.not_in(("pending", "ranked", "failed")),
                events.c.updated_at < older_than)).rowcount or 0

    def mark_closed(self, source: str, ticket_ids: Sequence[str]) -> int:
        """Tickets the desk reports closed (found by reconcile, not by an event)."""
        if not ticket_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(tickets.update().where(
                tickets.c.source == source, in_values(tickets.c.id, list(ticket_ids)),
                tickets.c.status == "open").values(status="closed", updated_at=utcnow())
            ).rowcount or 0

    # -- the local desk ------------------------------------------------------

    def local_desk_view(self, source: str, ticket_ids: Sequence[str], *,
                        conn: sa.Connection | None = None) -> dict[str, dict[str, Any]]:
        if not ticket_ids:
            return {}
        with self._using(conn, write=False) as conn:
            rows = conn.execute(
                sa.select(tickets.c.id, tickets.c.status, tickets.c.desk_priority,
                          tickets.c.clout_priority, tickets.c.clout_decision_id)
                .where(tickets.c.source == source, in_values(tickets.c.id, list(ticket_ids)))
            ).all()
            return {i: {"status": status, "priority": priority, "clout_priority": clout,
                        "clout_decision": decision}
                    for i, status, priority, clout, decision in rows}

    def write_local_desk(self, source: str, items: Sequence[Decision], *,
                         conn: sa.Connection | None = None) -> list[str]:
        """The local desk's own priority/flags/reason fields; returns ticket ids written.

        Like a desk's conditional update: a ticket is not written if it already shows a
        newer decision of Clout's, or if an agent changed its priority since Clout's
        last write (checked in the same statement, so a change can't slip in between).

        The desk here is the tickets table itself, so the same statement also records the
        event whose decision the ticket now shows (`decided_event_id`), which settling the
        write would do next: that UPDATE then finds nothing left to change (one row write
        per event fewer; on PostgreSQL one row version fewer).
        """
        if not items:
            return []
        now = utcnow()
        t = tickets.c
        agent_kept = sa.and_(t.clout_priority.is_not(None),
                             sa.func.lower(sa.func.coalesce(t.desk_priority, "")) !=
                             sa.func.lower(t.clout_priority))
        # One row per ticket: of several decisions for a ticket, the newest would win anyway.
        newest: dict[str, Decision] = {}
        for d in items:
            if d.ticket_id not in newest or int(d.id) > int(newest[d.ticket_id].id):
                newest[d.ticket_id] = d
        with self._using(conn) as conn:
            # The desk is a column of the rows too: with `source = constant` SQLite's planner
            # walked the desk's tickets and searched the rows for each (measured: 100x slower).
            v = rows_relation(conn, [("source", sa.String), ("id", sa.String),
                                     ("decision", sa.Integer), ("decision_text", sa.String),
                                     ("priority", sa.String), ("flags", sa.JSON),
                                     ("reason", sa.Text), ("event", sa.String)],
                              [[source, d.ticket_id, int(d.id), d.id, d.priority, list(d.flags),
                                d.reason, d.event_id or None] for _, d in sorted(newest.items())])
            newer_there = sa.and_(t.clout_decision_id.is_not(None),
                                  sa.cast(t.clout_decision_id, sa.Integer) > v.c.decision)
            conn.execute(
                tickets.update()
                .where(t.source == v.c.source, t.id == v.c.id, sa.not_(agent_kept),
                       sa.not_(newer_there))
                .values(desk_priority=v.c.priority, desk_flags=v.c.flags, desk_reason=v.c.reason,
                        clout_priority=v.c.priority, clout_decision_id=v.c.decision_text,
                        clout_written_at=now,
                        decided_event_id=sa.case((t.decision_id == v.c.decision, v.c.event),
                                                 else_=t.decided_event_id)))
            shown = {i: decision for i, decision in conn.execute(
                sa.select(t.id, t.clout_decision_id)
                .where(t.source == source, in_values(t.id, sorted({d.ticket_id for d in items})))
            ).all()}
        return [d.ticket_id for d in items if shown.get(d.ticket_id) == d.id]

    # -- views ---------------------------------------------------------------

    def _decision_view(self, row: Any) -> dict[str, Any]:
        view = {
            "ticket_id": row.ticket_id,
            "source": row.source,
            "customer_id": row.customer_id,
            "priority": row.priority,
            "tier": row.tier,
            "score": round(float(row.score), 4),
            "flags": list(row.flags or []),
            "reason": row.reason,
            "weights_version": row.weights_version,
            "decided_at": _iso(row.decided_at),
            # Where the decision stands with the desk: pending (not yet confirmed),
            # written, agent_override (an agent's priority stands), failed (parked), ...
            "state": row.status,
            "written_at": _iso(row.written_at),
            "ticket_status": row.ticket_status,
            "desk_priority": row.desk_priority,
        }
        if row.status in ("pending", "failed") and getattr(row, "write_error", None):
            view["write_error"] = row.write_error
            view["write_attempts"] = row.write_attempts
        return view

    def _view_query(self) -> Any:
        return (
            sa.select(decisions, tickets.c.status.label("ticket_status"), tickets.c.desk_priority,
                      writes.c.last_error.label("write_error"),
                      writes.c.attempts.label("write_attempts"),
                      customers.c.name.label("customer_name"), tickets.c.subject,
                      tickets.c.created_at.label("ticket_created_at"))
            .join(tickets, tickets.c.decision_id == decisions.c.id)
            .join(writes, sa.and_(writes.c.decision_id == decisions.c.id), isouter=True)
            .join(customers, customers.c.id == tickets.c.customer_id, isouter=True)
        )

    def ticket_decisions(self, ticket_id: str, source: str | None = None) -> list[dict[str, Any]]:
        """Latest decision per matching ticket (one per source)."""
        query = self._view_query().where(tickets.c.id == ticket_id)
        if source:
            query = query.where(tickets.c.source == source)
        with self.engine.connect() as conn:
            return [self._decision_view(r) for r in conn.execute(query)]

    def open_queue(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Open tickets that have a decision: by tier, then score, then age (oldest first).

        Tier comes first because the fairness guard can lift a low-scoring ticket
        that has waited too long; the queue must honour that lift. Closed tickets
        leave; a ticket whose priority an agent set stays (its state says so).
        """
        query = (
            self._view_query()
            .where(tickets.c.status == "open")
            .order_by(*QUEUE_ORDER)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(query):
                view = self._decision_view(r)
                view["customer_name"] = r.customer_name
                view["subject"] = r.subject
                out.append(view)
            return out

    def open_tickets(self, after: tuple[str, str] | None, limit: int) -> list[dict[str, Any]]:
        """Open decided tickets in key order, a page at a time (for re-ranking)."""
        query = (sa.select(tickets, decisions.c.tier.label("current_tier"))
                 .join(decisions, decisions.c.id == tickets.c.decision_id)
                 .where(tickets.c.status == "open"))
        if after is not None:
            query = query.where(sa.tuple_(tickets.c.source, tickets.c.id) > after)
        query = query.order_by(tickets.c.source, tickets.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [{**_ticket_dict(r._mapping[c] for c in _TICKET_STATE),
                     "source": r.source, "id": r.id,
                     "current_tier": r.current_tier} for r in conn.execute(query)]

    SETTLED = ("decided", "agent_override", "closed", "superseded", "stale", "unchanged")

    def decided_events(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these events Clout is done with: written to the desk, or needing no
        write (an agent's priority stands, the ticket closed, a newer event took over)."""
        if not event_ids:
            return set()
        with self.engine.connect() as conn:
            return {
                r[0] for r in conn.execute(
                    sa.select(events.c.event_id)
                    .where(in_values(events.c.event_id, list(set(event_ids))),
                           events.c.state.in_(self.SETTLED))
                )
            }

    def event_states(self, event_ids: Sequence[str]) -> dict[str, str]:
        if not event_ids:
            return {}
        with self.engine.connect() as conn:
            return {r.event_id: r.state for r in conn.execute(
                sa.select(events.c.event_id, events.c.state)
                .where(in_values(events.c.event_id, list(set(event_ids)))))}


from . import mention_store as _social_tables  # noqa: E402,F401  the social watch's tables, on `metadata`
