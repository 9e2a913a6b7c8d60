"""Read queries the pages need, on the store's tables (SQLite and PostgreSQL alike).

Kept here rather than in `plugin/store.py`: they serve only the pages, and
they only read. Filters are exact values checked by the views first (a flag
from `ranking.priority.FLAGS`, a tier from `TIERS`), so nothing a visitor
types reaches SQL except as a bound parameter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..store import QUEUE_ORDER, Store, customers, decisions, influence_history, tickets


def _decision_cols() -> list[Any]:
    return [decisions.c.id.label("decision_id"), decisions.c.tier, decisions.c.priority,
            decisions.c.score, decisions.c.flags, decisions.c.reason, decisions.c.status,
            decisions.c.decided_at, decisions.c.weights_version]


def _flag_clause(flag: str) -> Any:
    # flags is a JSON list; its text form holds "FLAG" with the quotes on both backends.
    escaped = flag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.cast(decisions.c.flags, sa.Text).like(f'%"{escaped}"%', escape="\\")


def queue_page(store: Store, *, flag: str | None = None, tier: str | None = None,
               desk: str | None = None, limit: int = 50, offset: int = 0
               ) -> tuple[list[dict[str, Any]], int]:
    """One page of the open, decided tickets in queue order, and how many match in all."""
    where = [tickets.c.status == "open"]
    if flag:
        where.append(_flag_clause(flag))
    if tier:
        where.append(decisions.c.tier == tier)
    if desk:
        where.append(tickets.c.source == desk)
    joined = (tickets.join(decisions, decisions.c.id == tickets.c.decision_id)
              .outerjoin(customers, customers.c.id == tickets.c.customer_id))
    query = (sa.select(tickets.c.source, tickets.c.id.label("ticket_id"), tickets.c.subject,
                       tickets.c.customer_id, tickets.c.created_at, tickets.c.desk_priority,
                       customers.c.name.label("customer_name"), *_decision_cols())
             .select_from(joined).where(*where)
             .order_by(*QUEUE_ORDER)
             .limit(limit).offset(offset))
    count = sa.select(sa.func.count()).select_from(joined).where(*where)
    with store.engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(query)]
        total = int(conn.execute(count).scalar_one())
    return rows, total


def open_desks(store: Store) -> list[str]:
    """Desks (sources) that have open tickets, for the queue's desk filter."""
    with store.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(
            sa.select(tickets.c.source).where(tickets.c.status == "open").distinct()))


def _row(r: Any) -> dict[str, Any]:
    out = dict(r._mapping)
    out["flags"] = list(out.get("flags") or [])
    return out


def customer(store: Store, customer_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == customer_id)).first()
    return dict(row._mapping) if row is not None else None


def influence_points(store: Store, customer_id: str, limit: int = 500) -> list[tuple[dt.datetime, float]]:
    """(when, score) oldest first: the newest `limit` scores."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(influence_history.c.computed_at, influence_history.c.score)
            .where(influence_history.c.customer_id == customer_id)
            .order_by(influence_history.c.computed_at.desc(), influence_history.c.id.desc())
            .limit(limit)).all()
    return [(_utc(r.computed_at), float(r.score)) for r in reversed(rows)]


def customer_decisions(store: Store, customer_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Every decision about this customer's tickets, newest first."""
    query = (sa.select(decisions.c.source, decisions.c.ticket_id, tickets.c.subject,
                       tickets.c.status.label("ticket_status"), *_decision_cols())
             .select_from(decisions.outerjoin(tickets, sa.and_(
                 tickets.c.source == decisions.c.source, tickets.c.id == decisions.c.ticket_id)))
             .where(decisions.c.customer_id == customer_id)
             .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def ticket(store: Store, source: str, ticket_id: str) -> dict[str, Any] | None:
    """The ticket, its customer's name and every decision about it (newest first)."""
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(tickets, customers.c.name.label("customer_name"))
            .select_from(tickets.outerjoin(customers, customers.c.id == tickets.c.customer_id))
            .where(tickets.c.source == source, tickets.c.id == ticket_id)).first()
        if row is None:
            return None
        history = [_row(r) for r in conn.execute(
            sa.select(decisions.c.event_id, decisions.c.written_at, decisions.c.components,
                      *_decision_cols())
            .where(decisions.c.source == source, decisions.c.ticket_id == ticket_id)
            .order_by(decisions.c.id.desc()).limit(200))]
    out = dict(row._mapping)
    out["decisions"] = history
    out["latest"] = next((d for d in history if d["decision_id"] == out.get("decision_id")),
                         history[0] if history else None)
    return out


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
