"""A big batch decided in parts at once (`queue.decide_parts`, PostgreSQL): the parts share
no ticket and no customer, and together they decide exactly what one pass decides."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from conftest import submit
from plugin.jobs import MIN_PART, _decide, _decide_in_parts, _part_count, split_batch
from plugin.store import Store


def _claimed(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Claimed ledger rows as `claim_events` returns them, for (ticket, customer) pairs."""
    return [{"id": i, "payload": {"source": "generic", "event_id": f"e{i}", "ticket_id": t,
                                  "customer": {"id": c}}}
            for i, (t, c) in enumerate(pairs)]


def _keys(part: list[dict[str, Any]], what: str) -> set[str]:
    p = "ticket_id" if what == "ticket" else "customer"
    return {c["payload"][p] if what == "ticket" else c["payload"][p]["id"] for c in part}


def test_parts_share_no_ticket_and_no_customer():
    # T1-C1-T2-C2 is one chain through a shared customer and a ticket that changed hands;
    # T3 has two events; the rest stand alone.
    pairs = [("T1", "C1"), ("T2", "C1"), ("T2", "C2"), ("T3", "C3"), ("T3", "C3"),
             *[(f"U{i}", f"D{i}") for i in range(9)]]
    claimed = _claimed(pairs)
    parts = split_batch(claimed, 2)
    assert len(parts) == 2
    assert sorted(c["id"] for p in parts for c in p) == list(range(len(pairs)))  # each once
    for what in ("ticket", "customer"):
        assert not _keys(parts[0], what) & _keys(parts[1], what)
    chain = next(p for p in parts if "T1" in _keys(p, "ticket"))
    assert {"T1", "T2"} <= _keys(chain, "ticket") and {"C1", "C2"} <= _keys(chain, "customer")
    for p in parts:  # batch order is kept within a part
        assert [c["id"] for c in p] == sorted(c["id"] for c in p)
    assert abs(len(parts[0]) - len(parts[1])) <= 3  # the biggest group holds 3 events


def test_split_degenerate_cases():
    claimed = _claimed([("T1", "C1"), ("T2", "C1"), ("T3", "C1")])
    assert split_batch(claimed, 1) == [claimed]
    assert split_batch(claimed, 2) == [claimed]  # one customer links them all
    assert split_batch([], 2) == [[]]
    alone = _claimed([(f"T{i}", f"C{i}") for i in range(3)])
    assert [len(p) for p in split_batch(alone, 8)] == [1, 1, 1]  # no empty parts
    # A payload without a customer still lands in a part (deciding it then fails as usual).
    odd = alone + [{"id": 9, "payload": {"source": "generic", "event_id": "e9", "ticket_id": "T9"}}]
    assert sorted(c["id"] for p in split_batch(odd, 2) for c in p) == [0, 1, 2, 9]


def test_only_a_store_with_concurrent_writers_splits(runtime):
    # An engine is built without connecting, so both dialects can be asked here.
    assert Store.from_url("postgresql://nobody@127.0.0.1:1/none").concurrent_writers is True
    assert Store.from_url("sqlite:///:memory:").concurrent_writers is False
    if runtime.store.concurrent_writers:
        assert _part_count(runtime, 10_000) == runtime.settings.config.queue.decide_parts == 2
        assert _part_count(runtime, 2 * MIN_PART - 1) == 1  # each part at least MIN_PART
    else:
        assert _part_count(runtime, 10_000) == 1


def _events(run: str, n: int) -> list[dict[str, Any]]:
    """`n` events for n-1 tickets (the last ticket gets two: only the newer counts), with
    customers shared by several tickets, spend and renewals spread so the tiers differ.
    Every run uses the same customers, so the spend book (VIP by share) is the same."""
    base = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    out = []
    for i in range(n):
        t = min(i, n - 2)
        at = base + dt.timedelta(seconds=i)
        out.append({"source": "generic", "event_id": f"{run}-e{i}", "ticket_id": f"{run}-T{t}",
                    "occurred_at": at.isoformat(), "ticket_created_at": base.isoformat(),
                    "subject": "Export broken" if i % 3 else "Refund now, this is unacceptable",
                    "description": "", "status": "open",
                    "customer": {"id": f"C{i % 37}", "monthly_spend": float(50 * (i % 37)),
                                 "contract_end": (base + dt.timedelta(days=i % 90)).date().isoformat(),
                                 "handles": {}}})
    return out


def _decide_batch(runtime, run: str, n: int, parts: int) -> tuple[dict[str, Any], dict]:
    events = _events(run, n)
    submit(runtime, events)
    owner = uuid.uuid4().hex
    claimed = runtime.store.claim_events([("generic", e["event_id"]) for e in events], owner, 60,
                                         max_attempts=5)
    assert len(claimed) == n
    split = split_batch(claimed, parts)
    result = _decide(runtime, owner, claimed) if parts == 1 else _decide_in_parts(runtime, owner, split)
    import sqlalchemy as sa

    from plugin.store import tickets

    with runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(tickets.c.id, tickets.c.desk_priority, tickets.c.desk_flags,
                                      tickets.c.tier_rank)
                            .where(tickets.c.id.like(f"{run}-T%"))).all()
    # What the local desk shows for each ticket, by the ticket's number.
    shown = {i[len(run) + 1:]: (priority, tuple(flags or ()), rank)
             for i, priority, flags, rank in rows}
    return result, shown


def test_a_batch_decided_in_parts_matches_one_pass(runtime):
    n = 2 * MIN_PART + 41
    serial, shown_serial = _decide_batch(runtime, "one", n, 1)
    parted, shown_parted = _decide_batch(runtime, "two", n, 2)
    assert len(parted["parts"]) == 2 and sum(parted["parts"]) == n
    for result in (serial, parted):
        assert result["claimed"] == n and result["decided"] == n - 1
        assert result["settled"] == {"stale": 1}  # the ticket's older event
        assert result["writes"] == {"written": n - 1}
        assert len(result["tickets"]) == 50
    # The local desk shows the same priority and flags for each ticket either way.
    assert shown_parted == shown_serial and len(shown_serial) == n - 1
    assert len({v[0] for v in shown_serial.values()}) > 1  # not all one tier
    assert all(v[0] is not None for v in shown_serial.values())
    states = runtime.store.event_states([f"two-e{i}" for i in range(n)])
    assert states[f"two-e{n - 2}"] == "stale"
    assert sorted(set(states.values())) == ["decided", "stale"]
    assert runtime.store.count("decisions") == 2 * (n - 1)


def test_a_part_that_fails_leaves_the_others_decided_and_its_own_events_held(runtime, monkeypatch):
    """One part raising fails the job once the other part has committed; the failed part's
    events keep their lease for the caller's release, the other part's are settled."""
    import plugin.jobs as jobs

    n = 2 * MIN_PART
    events = _events("bad", n)
    submit(runtime, events)
    owner = uuid.uuid4().hex
    claimed = runtime.store.claim_events([("generic", e["event_id"]) for e in events], owner, 60,
                                         max_attempts=5)
    parts = split_batch(claimed, 2)
    doomed = {c["payload"]["event_id"] for c in parts[1]}
    real = jobs._decide

    def failing(rt: Any, who: str, part: list[dict[str, Any]]) -> dict[str, Any]:
        if part is parts[1]:
            raise RuntimeError("a bad event in this part")
        return real(rt, who, part)

    monkeypatch.setattr(jobs, "_decide", failing)
    with pytest.raises(RuntimeError, match="bad event"):
        jobs._decide_in_parts(runtime, owner, parts)
    states = runtime.store.event_states([e["event_id"] for e in events])
    assert {states[e] for e in doomed} == {"pending"}
    assert {s for e, s in states.items() if e not in doomed} <= {"decided", "stale"}
    assert runtime.store.release_events(owner, [c["id"] for c in claimed], error="x",
                                        refund=True, max_attempts=5) == 0
