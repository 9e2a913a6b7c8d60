"""The social watch's records: mentions, prospects, goodwill suggestions and their budget.

Tables live on `plugin.store.metadata`, so `Store.create_schema` creates them
with the rest. One row in `social_mentions` is one *case*: the first post and
every repeat of it (same URL, under any delivery id) or later post by the same
author in the same thread. `social_posts` maps each post seen to its case,
`social_deliveries` each webhook delivery id (a retry of one delivery changes
nothing). Cases are processed once by a job under a short lease (`claim`), so
a job run twice, or one lost with a dead worker and re-driven, does the work
once.

Goodwill money is reserved when a gesture is suggested (`goodwill_budget`
per gesture and calendar month, UTC), with the cap checked in the same UPDATE
that adds to it, so two workers can't both take the last of a budget; an
agent saying they did *not* use a suggestion gives its reservation back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from .store import (_as_utc, _insert, _iso, customers, influence_history, metadata, tickets,
                    utcnow)

mentions = sa.Table(
    "social_mentions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("network", sa.String(16), nullable=False),
    sa.Column("author", sa.String(256), nullable=False),  # the handle as sent (normalised later)
    sa.Column("author_name", sa.String(256)),
    sa.Column("url", sa.Text, nullable=False),  # the case's first post
    sa.Column("thread_key", sa.String(64)),  # hash of (network, author, thread root)
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("posted_at", sa.DateTime(timezone=True)),
    sa.Column("brand_term", sa.String(100)),
    sa.Column("origin", sa.String(16), nullable=False),  # webhook | poll | demo
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seen_count", sa.Integer, nullable=False, default=1),  # deliveries of the case
    sa.Column("post_count", sa.Integer, nullable=False, default=1),  # distinct posts in it
    # pending -> working (leased) -> done | failed
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    # What processing found.
    sa.Column("handle", sa.String(256)),  # normalised; None if it isn't a valid handle
    sa.Column("complaint", sa.Float),  # 0..1
    sa.Column("is_complaint", sa.Boolean),
    sa.Column("customer_id", sa.String(128), index=True),
    sa.Column("influence", sa.Float),
    # raised (their open ticket) | opened (a new ticket) | no_desk | none
    sa.Column("escalation", sa.String(16)),
    sa.Column("ticket_source", sa.String(32)),
    sa.Column("ticket_id", sa.String(128)),
    sa.Column("event_id", sa.String(256)),  # the ledger event that carried it to the ticket
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_social_mentions_thread", "thread_key"),
    sa.Index("ix_social_mentions_ticket", "ticket_source", "ticket_id"),
    sa.Index("ix_social_mentions_state", "state", "updated_at"),
)

posts = sa.Table(
    "social_posts",
    metadata,
    sa.Column("post_key", sa.String(64), primary_key=True),  # hash of the normalised URL
    sa.Column("mention_id", sa.Integer, nullable=False, index=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
)

deliveries = sa.Table(
    "social_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(300), primary_key=True),
    sa.Column("mention_id", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

prospects = sa.Table(
    "social_prospects",
    metadata,
    sa.Column("network", sa.String(16), primary_key=True),
    sa.Column("handle", sa.String(256), primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("influence", sa.Float),
    sa.Column("influence_at", sa.DateTime(timezone=True)),
    sa.Column("mentions", sa.Integer, nullable=False, default=0),
    sa.Column("complaint_max", sa.Float),
    sa.Column("last_mention_id", sa.Integer),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
)

suggestions = sa.Table(
    "goodwill_suggestions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("mention_id", sa.Integer, nullable=False, unique=True),  # one per case
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("ticket_source", sa.String(32)),
    sa.Column("ticket_id", sa.String(128)),
    sa.Column("event_id", sa.String(256)),  # the ledger event whose decision it goes with
    sa.Column("gesture", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("month", sa.String(7), nullable=False),  # YYYY-MM (UTC) the budget is charged to
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used", sa.Boolean),  # None: not said yet
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),
    sa.Index("ix_goodwill_ticket", "ticket_source", "ticket_id"),
)

budget = sa.Table(
    "goodwill_budget",
    metadata,
    sa.Column("gesture", sa.String(64), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("committed", sa.Float, nullable=False, default=0.0),
    sa.Column("count", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

poll_state = sa.Table(
    "social_poll_state",
    metadata,
    sa.Column("network", sa.String(16), primary_key=True),
    sa.Column("scope", sa.String(300), primary_key=True),  # term (and instance)
    sa.Column("cursor", sa.String(300)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def normalise_url(url: str) -> str:
    """One spelling per post: lower-case scheme and host, no query, fragment or trailing /."""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def post_key(network: str, url: str) -> str:
    return _digest(network, normalise_url(url))


def thread_key(network: str, author: str, root_url: str) -> str:
    return _digest(network, author.strip().lstrip("@").lower(), normalise_url(root_url))


def month_of(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m")


def _mention_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "network": r.network, "author": r.author, "author_name": r.author_name,
        "handle": r.handle, "url": r.url, "text": r.text, "posted_at": _iso(r.posted_at),
        "brand_term": r.brand_term, "origin": r.origin,
        "first_seen_at": _iso(r.first_seen_at), "last_seen_at": _iso(r.last_seen_at),
        "seen_count": r.seen_count, "post_count": r.post_count, "state": r.state,
        "complaint": None if r.complaint is None else round(float(r.complaint), 3),
        "is_complaint": r.is_complaint, "customer_id": r.customer_id,
        "influence": None if r.influence is None else round(float(r.influence), 1),
        "escalation": r.escalation, "ticket_source": r.ticket_source, "ticket_id": r.ticket_id,
        "event_id": r.event_id,
    }


def _suggestion_dict(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "mention_id": r.mention_id, "customer_id": r.customer_id,
        "ticket_source": r.ticket_source, "ticket_id": r.ticket_id, "event_id": r.event_id,
        "gesture": r.gesture, "label": r.label, "value": r.value, "month": r.month,
        "reason": r.reason, "created_at": _iso(r.created_at), "used": r.used,
        "used_at": _iso(r.used_at), "note": r.note,
    }


class MentionStore:
    """Reads and writes of the social tables; shares the main store's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- intake ----------------------------------------------------------------

    def record(self, mention: dict[str, Any], delivery_id: str, origin: str,
               now: dt.datetime | None = None) -> tuple[int, str]:
        """Store one delivered mention; returns (case id, "new" | "repeat" | "duplicate").

        duplicate: this delivery id was seen before (a retry): nothing changes.
        repeat: the post, or an earlier post of this author's thread, is already a case:
        its counts and last-seen time move, nothing else happens (no second escalation).
        new: a case to process.
        """
        now = now or utcnow()
        network, author = mention["network"], mention["author_handle"]
        key = post_key(network, mention["url"])
        # A case is keyed by its author's thread: the root post's URL (its own URL when it is
        # the root), so a reply seen before its root still joins the same case.
        root = mention.get("thread_url") or mention.get("in_reply_to_url") or mention["url"]
        thread = thread_key(network, author, root)
        # Earlier posts of this thread that would be the same case: the root, the parent.
        related = [post_key(network, u) for u in (mention.get("thread_url"),
                                                   mention.get("in_reply_to_url")) if u]
        with self.engine.begin() as conn:
            ins = _insert(conn)(deliveries).on_conflict_do_nothing(index_elements=["delivery_id"])
            # RETURNING, not rowcount: psycopg reports -1 for a skipped ON CONFLICT row here.
            fresh = conn.execute(ins.values(delivery_id=delivery_id, mention_id=0, received_at=now)
                                 .returning(deliveries.c.delivery_id)).first()
            if fresh is None:
                found = conn.execute(sa.select(deliveries.c.mention_id)
                                     .where(deliveries.c.delivery_id == delivery_id)).scalar()
                return int(found or 0), "duplicate"
            case = conn.execute(sa.select(posts.c.mention_id).where(posts.c.post_key == key)).scalar()
            same_post = case is not None
            if case is None:
                conds = [mentions.c.thread_key == thread]
                if related:  # an earlier post of the same author in this thread
                    conds.append(sa.and_(mentions.c.id.in_(
                        sa.select(posts.c.mention_id).where(posts.c.post_key.in_(related))),
                        sa.func.lower(mentions.c.author) == author.strip().lstrip("@").lower()))
                case = conn.execute(sa.select(mentions.c.id).where(
                    mentions.c.network == network, sa.or_(*conds)).order_by(mentions.c.id)
                    .limit(1)).scalar()
            if case is not None:
                conn.execute(mentions.update().where(mentions.c.id == case).values(
                    seen_count=mentions.c.seen_count + 1,
                    post_count=mentions.c.post_count + (0 if same_post else 1),
                    last_seen_at=now, updated_at=now))
                if not same_post:
                    conn.execute(_insert(conn)(posts).on_conflict_do_nothing(
                        index_elements=["post_key"]).values(
                        post_key=key, mention_id=case, url=mention["url"], seen_at=now))
                conn.execute(deliveries.update().where(deliveries.c.delivery_id == delivery_id)
                             .values(mention_id=case))
                return int(case), "repeat"
            posted = mention.get("posted_at")
            case = conn.execute(mentions.insert().values(
                network=network, author=author.strip()[:256], author_name=mention.get("author_name"),
                url=mention["url"], thread_key=thread,
                text=mention.get("text") or "", brand_term=mention.get("brand_term"),
                posted_at=_as_utc(dt.datetime.fromisoformat(posted.replace("Z", "+00:00")))
                if posted else None,
                origin=origin, first_seen_at=now, last_seen_at=now, seen_count=1, post_count=1,
                state="pending", attempts=0, updated_at=now)).inserted_primary_key[0]
            conn.execute(posts.insert().values(post_key=key, mention_id=case, url=mention["url"],
                                               seen_at=now))
            conn.execute(deliveries.update().where(deliveries.c.delivery_id == delivery_id)
                         .values(mention_id=case))
            return int(case), "new"

    # -- processing ------------------------------------------------------------

    def claim(self, mention_id: int, lease_seconds: float) -> dict[str, Any] | None:
        """Lease a pending case (or one whose lease ran out) for processing; None if taken/done."""
        now = utcnow()
        with self.engine.begin() as conn:
            won = conn.execute(mentions.update().where(
                mentions.c.id == mention_id,
                sa.or_(mentions.c.state == "pending",
                       sa.and_(mentions.c.state == "working", mentions.c.lease_until < now)))
                .values(state="working", lease_until=now + dt.timedelta(seconds=lease_seconds),
                        attempts=mentions.c.attempts + 1, updated_at=now)).rowcount
            if not won:
                return None
            row = conn.execute(sa.select(mentions).where(mentions.c.id == mention_id)).one()
            return _mention_dict(row)

    def finish(self, mention_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(mentions.update().where(mentions.c.id == mention_id).values(
                state="done", lease_until=None, last_error=None, updated_at=utcnow(), **values))

    def fail(self, mention_id: int, error: str, *, give_up: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(mentions.update().where(mentions.c.id == mention_id).values(
                state="failed" if give_up else "pending", lease_until=None, last_error=error,
                updated_at=utcnow()))

    def stranded(self, older_than: float, limit: int = 200) -> list[int]:
        """Cases nobody is processing: pending for a while, or a dead worker's expired lease."""
        now = utcnow()
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(mentions.c.id).where(sa.or_(
                sa.and_(mentions.c.state == "pending",
                        mentions.c.updated_at < now - dt.timedelta(seconds=older_than)),
                sa.and_(mentions.c.state == "working", mentions.c.lease_until < now)))
                .order_by(mentions.c.id).limit(limit))]

    def get(self, mention_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(mentions).where(mentions.c.id == mention_id)).first()
            return _mention_dict(row) if row else None

    # -- customers and tickets ---------------------------------------------------

    def customers_with_handle_like(self, fragment: str, limit: int = 50) -> list[tuple[str, dict]]:
        """(id, handles) of customers whose handles contain `fragment` (case-insensitive):
        a cheap pre-filter in the database; the caller compares normalised handles."""
        pattern = "%" + fragment.lower().replace("\\", "").replace("%", "").replace("_", "\\_") + "%"
        text = sa.func.lower(sa.cast(customers.c.handles, sa.Text))
        with self.engine.connect() as conn:
            return [(r.id, dict(r.handles or {})) for r in conn.execute(
                sa.select(customers.c.id, customers.c.handles)
                .where(text.like(pattern, escape="\\")).order_by(customers.c.id).limit(limit))]

    def newest_ticket(self, customer_id: str, sources: Sequence[str], *,
                      open_only: bool) -> dict[str, Any] | None:
        """The customer's newest ticket among `sources` (open ones only, if asked)."""
        query = sa.select(tickets).where(tickets.c.customer_id == customer_id,
                                         tickets.c.source.in_(list(sources)))
        if open_only:
            query = query.where(tickets.c.status == "open")
        query = query.order_by(sa.func.coalesce(tickets.c.last_event_at, tickets.c.created_at,
                                                tickets.c.updated_at).desc()).limit(1)
        with self.engine.connect() as conn:
            r = conn.execute(query).first()
            if r is None:
                return None
            return {"source": r.source, "id": r.id, "subject": r.subject,
                    "description": r.description, "created_at": _as_utc(r.created_at),
                    "status": r.status}

    # -- prospects ---------------------------------------------------------------

    def upsert_prospect(self, network: str, handle: str, *, name: str | None,
                        influence: float | None, complaint: float, mention_id: int) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            stmt = _insert(conn)(prospects).values(
                network=network, handle=handle, name=name, influence=influence,
                influence_at=now if influence is not None else None, mentions=1,
                complaint_max=complaint, last_mention_id=mention_id, first_seen_at=now,
                last_seen_at=now)
            ex = stmt.excluded
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["network", "handle"],
                set_={"name": sa.func.coalesce(ex.name, prospects.c.name),
                      "influence": sa.func.coalesce(ex.influence, prospects.c.influence),
                      "influence_at": sa.func.coalesce(ex.influence_at, prospects.c.influence_at),
                      "mentions": prospects.c.mentions + 1,
                      "complaint_max": sa.case((ex.complaint_max > prospects.c.complaint_max,
                                                ex.complaint_max), else_=prospects.c.complaint_max),
                      "last_mention_id": ex.last_mention_id, "last_seen_at": ex.last_seen_at}))

    def prospects(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [{"network": r.network, "handle": r.handle, "name": r.name,
                     "influence": r.influence, "mentions": r.mentions,
                     "complaint_max": r.complaint_max, "last_mention_id": r.last_mention_id,
                     "first_seen_at": _iso(r.first_seen_at), "last_seen_at": _iso(r.last_seen_at)}
                    for r in conn.execute(sa.select(prospects).order_by(
                        sa.func.coalesce(prospects.c.influence, 0).desc(),
                        prospects.c.last_seen_at.desc()).limit(limit))]

    # -- goodwill ----------------------------------------------------------------

    def reserve_suggestion(self, row: dict[str, Any], cap: float | None) -> int | None:
        """Record a suggestion and charge its value to this month's budget, in one
        transaction; None when the budget would go over `cap` (nothing is recorded) or the
        case already has one. Returns the suggestion id."""
        now = utcnow()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(suggestions.c.id)
                            .where(suggestions.c.mention_id == row["mention_id"])).first():
                return None
            conn.execute(_insert(conn)(budget).on_conflict_do_nothing(
                index_elements=["gesture", "month"]).values(
                gesture=row["gesture"], month=row["month"], committed=0.0, count=0,
                updated_at=now))
            guard = [budget.c.gesture == row["gesture"], budget.c.month == row["month"]]
            if cap is not None:
                guard.append(budget.c.committed + row["value"] <= cap + 1e-9)
            took = conn.execute(budget.update().where(*guard).values(
                committed=budget.c.committed + row["value"], count=budget.c.count + 1,
                updated_at=now)).rowcount
            if not took:
                return None
            ins = _insert(conn)(suggestions).on_conflict_do_nothing(index_elements=["mention_id"])
            made = conn.execute(ins.values(created_at=now, **row).returning(suggestions.c.id)).first()
            if made is None:  # another worker recorded one meanwhile: give ours back
                conn.execute(budget.update().where(*guard[:2]).values(
                    committed=budget.c.committed - row["value"], count=budget.c.count - 1))
                return None
            return int(made[0])

    def set_used(self, suggestion_id: int, used: bool, note: str | None) -> dict[str, Any] | None:
        """Record whether the agent used the gesture. Not used: its value goes back to the
        month's budget; used again after that: it is charged again (it was spent)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(suggestions).where(suggestions.c.id == suggestion_id)
                               .with_for_update()).first()
            if row is None:
                return None
            was_counted = row.used is not False
            delta = (0 if was_counted == used else (row.value if used else -row.value))
            if delta:
                conn.execute(budget.update().where(
                    budget.c.gesture == row.gesture, budget.c.month == row.month).values(
                    committed=budget.c.committed + delta,
                    count=budget.c.count + (1 if delta > 0 else -1), updated_at=now))
            conn.execute(suggestions.update().where(suggestions.c.id == suggestion_id).values(
                used=used, used_at=now, note=note if note is not None else row.note))
            return _suggestion_dict(conn.execute(
                sa.select(suggestions).where(suggestions.c.id == suggestion_id)).one())

    def budget_used(self, gesture: str, month: str) -> float:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(budget.c.committed).where(
                budget.c.gesture == gesture, budget.c.month == month)).scalar()
            return float(value or 0.0)

    def suggestion_for_mention(self, mention_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(suggestions)
                               .where(suggestions.c.mention_id == mention_id)).first()
            return _suggestion_dict(row) if row else None

    def suggestion(self, suggestion_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(suggestions)
                               .where(suggestions.c.id == suggestion_id)).first()
            return _suggestion_dict(row) if row else None

    # -- reading -----------------------------------------------------------------

    def for_ticket(self, source: str, ticket_id: str) -> dict[str, list[dict[str, Any]]]:
        """The mentions escalated to a ticket and the gestures suggested with them."""
        with self.engine.connect() as conn:
            found = [_mention_dict(r) for r in conn.execute(
                sa.select(mentions).where(mentions.c.ticket_source == source,
                                          mentions.c.ticket_id == ticket_id)
                .order_by(mentions.c.id))]
            offered = [_suggestion_dict(r) for r in conn.execute(
                sa.select(suggestions).where(suggestions.c.ticket_source == source,
                                             suggestions.c.ticket_id == ticket_id)
                .order_by(suggestions.c.id))]
        return {"mentions": found, "goodwill": offered}

    def public_complaints(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """(source, ticket id) -> the strongest complaint escalated to that ticket.

        The ranker reads this for every batch, so a ticket a post raised keeps its
        SOCIAL_COMPLAINT when the desk later sends its own text without the post's line.
        """
        found: dict[tuple[str, str], float] = {}
        by_source: dict[str, list[str]] = {}
        for source, ticket_id in keys:
            by_source.setdefault(source, []).append(ticket_id)
        with self.engine.connect() as conn:
            for source, ids in by_source.items():
                for start in range(0, len(ids), 500):
                    rows = conn.execute(
                        sa.select(mentions.c.ticket_id, sa.func.max(mentions.c.complaint))
                        .where(mentions.c.ticket_source == source,
                               mentions.c.ticket_id.in_(ids[start:start + 500]),
                               mentions.c.is_complaint.is_(True))
                        .group_by(mentions.c.ticket_id))
                    found.update({(source, r[0]): float(r[1] or 0.0) for r in rows})
        return found

    def feed(self, *, limit: int = 50, offset: int = 0,
             complaints_only: bool = False) -> list[dict[str, Any]]:
        """Processed mentions, loudest first: influence x complaint strength, then newest.

        Each carries the customer's name, spend, currency and contract end (when matched)
        and its goodwill suggestion (if any)."""
        loudness = (sa.func.coalesce(mentions.c.influence, 1.0)
                    * sa.func.coalesce(mentions.c.complaint, 0.0))
        query = (
            sa.select(mentions, loudness.label("loudness"),
                      customers.c.name.label("customer_name"),
                      customers.c.monthly_spend, customers.c.currency, customers.c.contract_end,
                      suggestions.c.id.label("s_id"))
            .join(customers, customers.c.id == mentions.c.customer_id, isouter=True)
            .join(suggestions, suggestions.c.mention_id == mentions.c.id, isouter=True)
            .where(mentions.c.state == "done")
        )
        if complaints_only:
            query = query.where(mentions.c.is_complaint.is_(True))
        query = query.order_by(loudness.desc(), mentions.c.last_seen_at.desc(),
                               mentions.c.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            ids = [r.s_id for r in rows if r.s_id is not None]
            offered = {r.id: _suggestion_dict(r) for r in conn.execute(
                sa.select(suggestions).where(suggestions.c.id.in_(ids)))} if ids else {}
        out = []
        for r in rows:
            item = _mention_dict(r)
            item["loudness"] = round(float(r.loudness), 3)
            item["customer"] = None if r.customer_id is None else {
                "id": r.customer_id, "name": r.customer_name,
                "monthly_spend": r.monthly_spend, "currency": r.currency,
                "contract_end": r.contract_end.isoformat() if r.contract_end else None}
            item["goodwill"] = offered.get(r.s_id)
            out.append(item)
        return out

    def latest_influence(self, customer_id: str) -> float | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(influence_history.c.score).where(
                influence_history.c.customer_id == customer_id)
                .order_by(influence_history.c.computed_at.desc()).limit(1)).scalar()
            return None if value is None else float(value)

    # -- the poller's cursors ------------------------------------------------------

    def poll_cursor(self, network: str, scope: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(poll_state.c.cursor).where(
                poll_state.c.network == network, poll_state.c.scope == scope)).scalar()

    def set_poll_cursor(self, network: str, scope: str, cursor: str | None) -> None:
        with self.engine.begin() as conn:
            stmt = _insert(conn)(poll_state).values(network=network, scope=scope, cursor=cursor,
                                                   updated_at=utcnow())
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["network", "scope"],
                set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at}))
