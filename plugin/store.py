"""Clout's own records: customers, tickets, every decision and influence over time.

SQLAlchemy Core on `DATABASE_URL` (PostgreSQL in production) or a SQLite file
under the data dir. Writes are batched per job, and upserts use each dialect's
native ON CONFLICT so web and worker processes can write concurrently without
read-modify-write races.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.crm.base import Customer, Decision
from ranking.weights import TIERS

metadata = sa.MetaData()

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
    sa.Column("status", sa.String(16), nullable=False, default="open"),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("last_event_id", sa.String(256)),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # What the desk shows; for the `local` desk Clout's CRM connector writes these.
    sa.Column("desk_priority", sa.String(32)),
    sa.Column("desk_flags", sa.JSON),
    sa.Column("desk_reason", sa.Text),
    # Latest decision, denormalised so the queue is one indexed query.
    sa.Column("decision_id", sa.Integer),
    sa.Column("decided_event_id", sa.String(256)),
    sa.Column("tier_rank", sa.Integer),  # 0 = urgent ... 3 = low
    sa.Column("score", sa.Float),
    sa.Index("ix_tickets_queue", "status", "tier_rank", "score"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.String(128), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(32), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("flags", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("components", sa.JSON, nullable=False),
    sa.Column("weights_version", sa.String(32), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_decisions_ticket", "source", "ticket_id", "decided_at"),
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


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _as_utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; everything Clout stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


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


def normalise_url(database_url: str) -> str:
    """`postgresql://` / `postgres://` mean psycopg 3, the driver Clout installs."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def make_engine(database_url: str) -> Engine:
    """An engine tuned for several Clout processes sharing one database."""
    database_url = normalise_url(database_url)
    if database_url.startswith("sqlite"):
        engine = sa.create_engine(database_url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(database_url, pool_pre_ping=True)


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

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self, close: bool = True) -> None:
        self.engine.dispose(close=close)

    # -- upserts -------------------------------------------------------------

    def _upsert(self, conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                keys: Sequence[str], update: Sequence[str],
                newer: str | None = None, keep_earliest: Sequence[str] = ()) -> None:
        """INSERT ... ON CONFLICT UPDATE.

        `newer`: a timestamp column; a conflicting row is only updated when the
        incoming value is at least as new (or either side is unknown), so a
        desk's late retry of an old event can't overwrite newer state.
        `keep_earliest`: columns that only ever move back in time (created_at).
        """
        if not rows:
            return
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - only the two supported databases
            raise RuntimeError(f"unsupported database {dialect!r}; use PostgreSQL or SQLite")
        stmt = insert(table)
        set_: dict[str, Any] = {col: getattr(stmt.excluded, col) for col in update}
        if newer is not None:  # a row without a time (a CRM sync) keeps the stored one
            set_[newer] = sa.func.coalesce(getattr(stmt.excluded, newer), table.c[newer])
        where = None
        if newer is not None:
            current, incoming = table.c[newer], getattr(stmt.excluded, newer)
            where = sa.or_(current.is_(None), incoming.is_(None), incoming >= current)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)
        conn.execute(stmt, rows)
        # Outside the `newer` guard: even a stale event may know an earlier creation time.
        for col in keep_earliest:
            bind = {k: sa.bindparam(f"k_{k}") for k in keys}
            earlier = (
                table.update()
                .where(*(table.c[k] == bind[k] for k in keys))
                .where(sa.or_(table.c[col].is_(None), table.c[col] > sa.bindparam(f"v_{col}")))
                .values({col: sa.bindparam(f"v_{col}")})
            )
            params = [{**{f"k_{k}": r[k] for k in keys}, f"v_{col}": r[col]}
                      for r in rows if r.get(col) is not None]
            if params:
                conn.execute(earlier, params)

    def upsert_customers(self, items: Iterable[Customer],
                         facts_at: dict[str, str | dt.datetime] | None = None) -> None:
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
        with self.engine.begin() as conn:
            self._upsert(conn, customers, rows, ["id"],
                         ["name", "email", "handles", "monthly_spend", "currency",
                          "contract_end", "facts_at", "updated_at"], newer="facts_at")

    def upsert_tickets(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows carry source, id, customer_id, subject, description, created_at, last_event_id,
        last_event_at. Older events never overwrite newer ones; created_at keeps the earliest."""
        now = utcnow()
        prepared = [
            {
                "source": r["source"], "id": r["id"], "customer_id": r["customer_id"],
                "subject": r.get("subject") or "", "description": r.get("description") or "",
                "status": r.get("status") or "open",
                "created_at": _parse_ts(r.get("created_at")),
                "last_event_id": r.get("last_event_id"),
                "last_event_at": _parse_ts(r.get("last_event_at")), "updated_at": now,
            }
            for r in rows
        ]
        prepared.sort(key=lambda r: (r["source"], r["id"]))  # one lock order: no deadlocks
        with self.engine.begin() as conn:
            self._upsert(conn, tickets, prepared, ["source", "id"],
                         ["customer_id", "subject", "description", "status",
                          "last_event_id", "last_event_at", "updated_at"],
                         newer="last_event_at", keep_earliest=["created_at"])

    def ticket_state(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """(source, id) -> created_at, last_event_id, last_event_at as stored now."""
        if not keys:
            return {}
        wanted = set(keys)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tickets.c.source, tickets.c.id, tickets.c.created_at,
                          tickets.c.last_event_id, tickets.c.last_event_at, tickets.c.decided_event_id)
                .where(tickets.c.id.in_(sorted({k[1] for k in keys})))
            )
            return {
                (r.source, r.id): {"created_at": _as_utc(r.created_at),
                                   "last_event_id": r.last_event_id,
                                   "last_event_at": _as_utc(r.last_event_at),
                                   "decided_event_id": r.decided_event_id}
                for r in rows if (r.source, r.id) in wanted
            }

    # -- reads ---------------------------------------------------------------

    def get_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        if not ids:
            return {}
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(customers).where(customers.c.id.in_(list(set(ids)))))
            return {
                row.id: Customer(
                    id=row.id, name=row.name, email=row.email, handles=dict(row.handles or {}),
                    monthly_spend=row.monthly_spend, currency=row.currency,
                    contract_end=row.contract_end.isoformat() if row.contract_end else None,
                )
                for row in result
            }

    def spend_book(self) -> list[float]:
        """Every known customer's monthly spend: the population spend percentiles are taken in."""
        with self.engine.connect() as conn:
            return [
                float(v) for (v,) in conn.execute(
                    sa.select(customers.c.monthly_spend).where(customers.c.monthly_spend.is_not(None))
                )
            ]

    def count(self, table_name: str) -> int:
        table = metadata.tables[table_name]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    # -- decisions and history ----------------------------------------------

    def record_decisions(self, items: Sequence[Decision]) -> None:
        """Append to history and point each ticket at its newest decision, atomically.

        The ticket only points at a decision made for its current event: if a newer
        event landed while this batch was ranking, the newer batch's decision stands.
        """
        if not items:
            return
        with self.engine.begin() as conn:
            for d in sorted(items, key=lambda d: (d.source, d.ticket_id)):
                decision_id = conn.execute(
                    decisions.insert().values(
                        source=d.source, ticket_id=d.ticket_id, customer_id=d.customer_id,
                        tier=d.tier, priority=d.priority, score=d.score, flags=list(d.flags),
                        reason=d.reason, components=dict(d.components),
                        weights_version=d.weights_version, decided_at=_parse_ts(d.decided_at),
                    )
                ).inserted_primary_key[0]
                conn.execute(
                    tickets.update()
                    .where(tickets.c.source == d.source, tickets.c.id == d.ticket_id,
                           tickets.c.last_event_id == d.event_id)
                    .values(decision_id=decision_id, score=d.score, decided_event_id=d.event_id,
                            tier_rank=TIERS.index(d.tier) if d.tier in TIERS else len(TIERS))
                )

    def write_desk_fields(self, items: Sequence[Decision]) -> list[str]:
        """The local desk's own priority/flags/reason fields; returns ticket ids written."""
        written: list[str] = []
        with self.engine.begin() as conn:
            for d in sorted(items, key=lambda d: (d.source, d.ticket_id)):
                result = conn.execute(
                    tickets.update()
                    .where(tickets.c.source == d.source, tickets.c.id == d.ticket_id,
                           tickets.c.last_event_id == d.event_id)
                    .values(desk_priority=d.priority, desk_flags=list(d.flags), desk_reason=d.reason)
                )
                if result.rowcount:
                    written.append(d.ticket_id)
        return written

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

    def _decision_view(self, row: Any) -> dict[str, Any]:
        return {
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
        }

    def ticket_decisions(self, ticket_id: str, source: str | None = None) -> list[dict[str, Any]]:
        """Latest decision per matching ticket (one per source)."""
        query = (
            sa.select(decisions)
            .join(tickets, sa.and_(tickets.c.decision_id == decisions.c.id))
            .where(tickets.c.id == ticket_id)
        )
        if source:
            query = query.where(tickets.c.source == source)
        with self.engine.connect() as conn:
            return [self._decision_view(r) for r in conn.execute(query)]

    def open_queue(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Open tickets that have a decision: by tier, then score, then age (oldest first).

        Tier comes first because the fairness guard can lift a low-scoring ticket
        that has waited too long; the queue must honour that lift.
        """
        query = (
            sa.select(decisions, customers.c.name.label("customer_name"),
                      tickets.c.subject, tickets.c.created_at)
            .join(tickets, tickets.c.decision_id == decisions.c.id)
            .join(customers, customers.c.id == tickets.c.customer_id, isouter=True)
            .where(tickets.c.status == "open")
            .order_by(tickets.c.tier_rank.asc(), tickets.c.score.desc(),
                      tickets.c.created_at.asc(), tickets.c.id.asc())
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

    def decided_events(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids a ticket's current decision answers."""
        if not event_ids:
            return set()
        with self.engine.connect() as conn:
            return {
                r[0] for r in conn.execute(
                    sa.select(tickets.c.decided_event_id)
                    .where(tickets.c.decided_event_id.in_(list(set(event_ids))))
                )
            }
