"""The worker's fast path: bigger batches under a backlog, a drain that waits behind queued
batches, jobs run in the worker process, and lookups by whole keys across desks."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from conftest import submit, work
from crash_harness import wait_for
from plugin.inbox import BACKLOG_FACTOR, BACKLOG_GROWTH, batch_size_for, drain, drain_flag_key, inbox_key

BATCH = 10


@pytest.fixture()
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "CLOUT_QUEUE__BATCH_SIZE": str(BATCH)}


def _event(i: int, run: str = "r") -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    return {"event_id": f"{run}-evt-{i}", "occurred_at": now,
            "ticket": {"id": f"{run}-T-{i}", "subject": "Export broken"},
            "customer": {"id": f"C-{i % 7}", "monthly_spend": float(10 + i)}}


def _batches(runtime) -> list[list[list[str]]]:
    jobs = Job.fetch_many(runtime.queue.get_job_ids(), connection=runtime.redis,
                          serializer=JSONSerializer)
    return [j.args[0] for j in jobs if j is not None and j.func_name == "plugin.jobs.process_events"]


def test_batch_size_grows_only_under_a_backlog():
    assert batch_size_for(1, 200) == 200
    assert batch_size_for(200 * BACKLOG_FACTOR, 200) == 200
    assert batch_size_for(200 * BACKLOG_FACTOR + 1, 200) == 200 * BACKLOG_GROWTH == 5000
    assert batch_size_for(10**9, 5000) == 10_000  # the setting's own ceiling


def test_a_backlog_is_cut_into_bigger_batches_each_event_once(runtime, post_generic):
    total = BATCH * BACKLOG_GROWTH * 2 + 7
    for i in range(total):
        assert post_generic(_event(i)).status_code == 202
    assert drain(runtime.redis, runtime.settings, runtime.store) == {"batches": 3, "events": total}
    sizes = [len(b) for b in _batches(runtime)]
    assert sizes == [BATCH * BACKLOG_GROWTH, BATCH * BACKLOG_GROWTH, 7]
    keys = [k[1] for b in _batches(runtime) for k in b]
    assert sorted(keys) == sorted(f"r-evt-{i}" for i in range(total))
    work(runtime)
    assert runtime.store.count("decisions") == total
    assert len(runtime.store.decided_events(keys)) == total


def test_light_load_keeps_the_configured_batch_size(runtime, post_generic):
    for i in range(BATCH * 3 + 1):
        assert post_generic(_event(i)).status_code == 202
    drain(runtime.redis, runtime.settings, runtime.store)
    assert [len(b) for b in _batches(runtime)] == [BATCH, BATCH, BATCH, 1]


def test_a_drain_steps_back_behind_waiting_batches(runtime, post_generic):
    from plugin.jobs import drain_inbox

    waiting = submit(runtime, [_parsed(runtime, _event(100, "w"))])  # a batch job already queued
    for i in range(3):
        assert post_generic(_event(i)).status_code == 202
    queued_before = set(runtime.queue.get_job_ids())

    assert drain_inbox() == {"batches": 0, "events": 0, "stepped_back": 1}
    assert runtime.redis.llen(inbox_key(runtime.settings)) == 3  # still there, not lost
    later = [j for j in runtime.queue.get_job_ids() if j not in queued_before]
    assert len(later) == 1 and runtime.queue.get_job_ids()[-1] == later[0]  # at the back
    job = Job.fetch(later[0], connection=runtime.redis, serializer=JSONSerializer)
    assert job.func_name == "plugin.jobs.drain_inbox" and job.kwargs == {"deferred": True}
    assert runtime.redis.get(drain_flag_key(runtime.settings)).decode() == job.id
    assert waiting.id in runtime.queue.get_job_ids()

    work(runtime)  # the batch ahead first, then the deferred drain takes the inbox
    assert runtime.redis.llen(inbox_key(runtime.settings)) == 0
    assert runtime.store.count("decisions") == 4
    assert job.return_value() == {"batches": 1, "events": 3}


def test_an_idle_drain_does_not_step_back(runtime, post_generic):
    from plugin.jobs import drain_inbox

    assert post_generic(_event(1)).status_code == 202
    for job_id in runtime.queue.get_job_ids():  # the webhook's own drain job: run it by hand
        runtime.queue.remove(job_id)
    assert drain_inbox() == {"batches": 1, "events": 1}


def test_clout_worker_runs_jobs_in_its_own_process(runtime, base_env, redis_session):
    """No work-horse per job: a job's process is the worker's (here, this test's)."""
    from plugin.redis_conn import RedisHandle
    from plugin.runtime import Runtime
    from plugin.settings import load_settings
    from plugin.worker import run_worker

    job = runtime.queue.enqueue_call("os.getpid")
    run_worker(Runtime(load_settings(base_env),
                       redis_handle=RedisHandle(client=redis_session.new_client())), burst=True)
    from plugin import runtime as runtime_mod

    runtime_mod.install(runtime)
    assert job.return_value() == os.getpid()


def test_ticket_state_and_claims_keep_desks_apart(runtime):
    """Tickets and events are looked up by (desk, id): the same id on two desks is two things."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    rows = [{"source": s, "id": "SAME-1", "customer_id": f"C-{s}", "subject": s,
             "created_at": now, "last_event_id": f"{s}-e1", "last_event_at": now}
            for s in ("generic", "zendesk")]
    runtime.store.upsert_tickets(rows)
    state = runtime.store.ticket_state([("generic", "SAME-1"), ("zendesk", "SAME-1"),
                                        ("generic", "NOPE")])
    assert set(state) == {("generic", "SAME-1"), ("zendesk", "SAME-1")}
    assert state[("zendesk", "SAME-1")]["customer_id"] == "C-zendesk"
    assert runtime.store.ticket_state([("freshdesk", "SAME-1")]) == {}

    runtime.store.add_events([{"source": s, "event_id": "E-1", "ticket_id": "SAME-1",
                               "occurred_at": now, "payload": {"source": s, "event_id": "E-1"}}
                              for s in ("generic", "zendesk")])
    claimed = runtime.store.claim_events([("zendesk", "E-1")], "me", 30)
    assert [c["payload"]["source"] for c in claimed] == ["zendesk"]
    both = runtime.store.claim_events([("generic", "E-1"), ("zendesk", "E-1")], "you", 30)
    assert [c["payload"]["source"] for c in both] == ["generic"]  # zendesk's is leased to "me"


def test_claiming_parks_events_that_used_up_their_attempts(runtime):
    """Claimed rows come back from the claiming UPDATE in ledger order, attempts counted; an
    event tried `max_attempts` times is parked, not claimed, and settled ones are skipped."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store = runtime.store
    store.add_events([{"source": "generic", "event_id": f"P-{i}", "ticket_id": f"PT-{i}",
                       "occurred_at": now, "payload": {"source": "generic", "event_id": f"P-{i}"}}
                      for i in range(4)])
    keys = [("generic", f"P-{i}") for i in (3, 0, 2, 1)]
    first = store.claim_events(keys, "a", 30, max_attempts=2)
    assert [c["payload"]["event_id"] for c in first] == ["P-0", "P-1", "P-2", "P-3"]
    assert [c["attempts"] for c in first] == [1, 1, 1, 1]
    # Released with a higher limit, so only the claim below can park them.
    store.release_events("a", [c["id"] for c in first], error="boom", refund=False, max_attempts=99)
    again = store.claim_events(keys[:2], "b", 30, max_attempts=2)  # P-3 and P-0: second tries
    assert [c["attempts"] for c in again] == [2, 2]
    store.release_events("b", [c["id"] for c in again], error="boom", refund=False,
                         max_attempts=99)
    third = store.claim_events(keys, "c", 30, max_attempts=2)
    assert [c["payload"]["event_id"] for c in third] == ["P-1", "P-2"]
    assert store.event_states(["P-0", "P-1", "P-2", "P-3"]) == {
        "P-0": "failed", "P-1": "pending", "P-2": "pending", "P-3": "failed"}


def _parsed(runtime, payload: dict[str, Any]) -> dict[str, Any]:
    """The TicketEvent dict the generic webhook makes of `payload` (as the inbox holds it)."""
    import json

    from webhooks import generic
    from webhooks.base import WebhookRequest

    req = WebhookRequest(method="POST", url="", headers={"webhook-id": "x"},
                         body=json.dumps(payload).encode())
    return generic.parse(req).events[0].to_dict()


def test_the_local_desk_is_written_in_the_transaction_that_records_its_decisions(runtime):
    """The local desk's write commits with the decision and its outbox row, or not at all:
    a failure after the write inside that transaction leaves no decision, no outbox row
    and no desk write behind. Claimed in-transaction rows carry no lease."""
    from connectors.crm.base import Decision
    from plugin.delivery import flush

    store = runtime.store
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store.upsert_tickets([{"source": "generic", "id": "TX-1", "customer_id": "C-1",
                           "subject": "s", "created_at": now, "last_event_id": "e-1",
                           "last_event_at": now}])
    decision = Decision(source="generic", ticket_id="TX-1", customer_id="C-1", tier="high",
                        priority="High", score=0.7, flags=("renewal_soon",), reason="r",
                        components={}, weights_version="w", decided_at=now, event_id="e-1")
    seen: list[Any] = []

    def write_then_fail(conn: Any, queued: list[Decision]) -> None:
        counts = flush(runtime, "generic", ticket_ids=["TX-1"], conn=conn,
                       known={d.id: d for d in queued})
        seen.append((counts, store.local_desk_view("generic", ["TX-1"], conn=conn)))
        raise RuntimeError("the worker died after writing the desk")

    with pytest.raises(RuntimeError):
        store.record_decisions([decision], then=write_then_fail)
    (counts, inside), = seen
    assert counts == {"written": 1} and inside["TX-1"]["priority"] == "High"
    assert store.local_desk_view("generic", ["TX-1"])["TX-1"]["clout_decision"] is None
    assert store.count("decisions") == 0 and store.count("writes") == 0

    def write(conn: Any, queued: list[Decision]) -> None:
        flush(runtime, "generic", ticket_ids=["TX-1"], conn=conn, known={d.id: d for d in queued})

    recorded = store.record_decisions([decision], then=write)
    view = store.local_desk_view("generic", ["TX-1"])["TX-1"]
    assert (view["priority"], view["clout_decision"]) == ("High", recorded[0].id)
    assert store.decision_summaries([int(recorded[0].id)])[int(recorded[0].id)]["status"] == "written"
    import sqlalchemy as sa

    from plugin.store import writes
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(writes.c.state, writes.c.lease_owner)).one()
    assert tuple(row) == ("done", None)
    with pytest.raises(ValueError):  # no lease needs the caller's transaction
        store.claim_writes("generic", None, 30, 10)


@pytest.mark.parametrize("leased", [True, False])
def test_settling_several_failed_writes_at_once(runtime, leased):
    """Every failed write of one settle call is recorded, with a lease (a desk over the
    network) and without one (the local desk, inside the record transaction)."""
    from connectors.crm.base import Decision
    from plugin.store import WriteOutcome, writes

    store = runtime.store
    now = dt.datetime.now(dt.timezone.utc)
    ids = [f"TF-{i}" for i in range(3)]
    store.upsert_tickets([{"source": "generic", "id": t, "customer_id": "C-1", "subject": "s",
                           "created_at": now.isoformat(), "last_event_id": f"e-{t}",
                           "last_event_at": now.isoformat()} for t in ids])
    store.record_decisions([
        Decision(source="generic", ticket_id=t, customer_id="C-1", tier="high", priority="High",
                 score=0.5, flags=(), reason="r", components={}, weights_version="w",
                 decided_at=now.isoformat(), event_id=f"e-{t}") for t in ids])
    later = now + dt.timedelta(minutes=5)

    def settle(conn=None) -> None:
        owner = "me" if leased else None
        claimed = store.claim_writes("generic", owner, 30, 10, conn=conn)
        assert len(claimed) == 3
        store.settle_writes(owner, [
            WriteOutcome(write_id=c.write_id, decision_id=int(c.decision.id), source="generic",
                         ticket_id=c.decision.ticket_id, event_id=c.decision.event_id,
                         status="retry" if i < 2 else "failed", error=f"503 #{i}",
                         next_attempt_at=later)
            for i, c in enumerate(claimed)], conn=conn)

    if leased:
        settle()
    else:
        with store.transaction() as conn:
            settle(conn)
    import sqlalchemy as sa
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(writes.c.state, writes.c.attempts, writes.c.last_error,
                                      writes.c.lease_owner).order_by(writes.c.ticket_id)).all()
    assert [tuple(r) for r in rows] == [("pending", 1, "503 #0", None),
                                        ("pending", 1, "503 #1", None),
                                        ("failed", 1, "503 #2", None)]


def test_decisions_are_refused_when_another_worker_took_an_event_over(runtime):
    """`record_decisions(owner=...)` checks, under the store's write lock, that every claimed
    event is still leased to it: one taken over meanwhile refuses the whole batch (nothing
    is written); with every lease held, the events move to `ranked` with their decisions."""
    from connectors.crm.base import Decision
    from plugin.store import Store

    store: Store = runtime.store
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store.upsert_tickets([{"source": "generic", "id": f"LT-{i}", "customer_id": "C-1",
                           "subject": "s", "created_at": now, "last_event_id": f"le-{i}",
                           "last_event_at": now} for i in range(3)])
    store.add_events([{"source": "generic", "event_id": f"le-{i}", "ticket_id": f"LT-{i}",
                       "occurred_at": now, "payload": {}} for i in range(3)])
    keys = [("generic", f"le-{i}") for i in range(3)]
    ledger = {(k[0], k[1]): c["id"] for k, c in zip(keys, store.claim_events(keys, "a", -1))}
    decisions = [Decision(source="generic", ticket_id=f"LT-{i}", customer_id="C-1", tier="high",
                          priority="High", score=0.5, flags=(), reason="r", components={},
                          weights_version="w", decided_at=now, event_id=f"le-{i}")
                 for i in range(3)]
    # "a"'s lease ran out (-1 s) and "b" took the last event over.
    assert len(store.claim_events(keys[2:], "b", 30)) == 1
    assert store.record_decisions(decisions, owner="a", ledger_ids=ledger) is None
    assert store.count("decisions") == 0 and store.count("writes") == 0
    assert set(store.event_states([f"le-{i}" for i in range(3)]).values()) == {"pending"}

    ledger_b = {keys[2]: ledger[keys[2]]}
    out = store.record_decisions(decisions[2:], owner="b", ledger_ids=ledger_b)
    assert [d.ticket_id for d in out] == ["LT-2"]
    assert store.event_states(["le-0", "le-1", "le-2"]) == {
        "le-0": "pending", "le-1": "pending", "le-2": "ranked"}


def test_claimed_events_move_straight_to_where_the_local_desks_write_left_them(runtime):
    """With the local desk written inside `record_decisions`, each claimed event moves once,
    to its final state: written -> decided, an agent's own priority -> agent_override, a
    closed ticket -> closed, and a paused desk (nothing written yet) -> ranked."""
    import sqlalchemy as sa

    from connectors.crm.base import Decision
    from plugin.delivery import flush
    from plugin.store import tickets

    store = runtime.store
    now = dt.datetime.now(dt.timezone.utc).isoformat()

    def write(conn: Any, queued: list[Decision]) -> None:
        flush(runtime, "generic", ticket_ids=sorted({d.ticket_id for d in queued}), conn=conn,
              known={d.id: d for d in queued})

    def batch(run: str, ticket_ids: list[str]) -> dict[str, str]:
        events = [f"{run}-{t}" for t in ticket_ids]
        store.upsert_tickets([{"source": "generic", "id": t, "customer_id": "C-1", "subject": "s",
                               "created_at": now, "last_event_id": e, "last_event_at": now}
                              for t, e in zip(ticket_ids, events)])
        store.add_events([{"source": "generic", "event_id": e, "ticket_id": t, "occurred_at": now,
                           "payload": {}} for t, e in zip(ticket_ids, events)])
        claimed = store.claim_events([("generic", e) for e in events], "w", 30)
        ledger = {("generic", e): c["id"] for e, c in zip(events, claimed)}
        ds = [Decision(source="generic", ticket_id=t, customer_id="C-1", tier="high",
                       priority="High", score=0.5, flags=(), reason="r", components={},
                       weights_version="w", decided_at=now, event_id=e)
              for t, e in zip(ticket_ids, events)]
        assert store.record_decisions(ds, owner="w", ledger_ids=ledger, then=write) is not None
        return store.event_states(events)

    assert batch("one", ["FA", "FB", "FC"]) == {"one-FA": "decided", "one-FB": "decided",
                                                "one-FC": "decided"}
    with store.engine.begin() as conn:  # an agent changes FB's priority; FC is closed
        conn.execute(tickets.update().where(tickets.c.id == "FB").values(desk_priority="Low"))
        conn.execute(tickets.update().where(tickets.c.id == "FC").values(status="closed"))
    assert batch("two", ["FA", "FB", "FC"]) == {"two-FA": "decided", "two-FB": "agent_override",
                                                "two-FC": "closed"}
    # The event whose decision each ticket shows: only FA's changed.
    state = store.ticket_state([("generic", t) for t in ("FA", "FB", "FC")])
    assert [state[("generic", t)]["decided_event_id"] for t in ("FA", "FB", "FC")] == [
        "two-FA", "one-FB", "one-FC"]
    runtime.redis.set(runtime.settings.redis_key("desk-paused", "generic"), "1", ex=60)
    assert batch("three", ["FD"]) == {"three-FD": "ranked"}
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(tickets.c.desk_priority).where(tickets.c.id == "FD")
                            ).scalar_one() is None


def test_redis_replies_are_parsed_by_hiredis(runtime):
    """hiredis is installed with Clout, and the runtime's Redis connections use it."""
    pool = runtime.redis.connection_pool
    conn = pool.get_connection()
    try:
        assert type(conn._parser).__name__ == "_HiredisParser"
    finally:
        pool.release(conn)


def test_the_local_desk_write_records_the_shown_event_only_for_the_current_decision(runtime):
    """`write_local_desk` also sets `decided_event_id`, but only where the decision it writes
    is the ticket's current one (as settling the write would); settling afterwards changes
    nothing more."""
    from connectors.crm.base import Decision

    store = runtime.store
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store.upsert_tickets([{"source": "generic", "id": t, "customer_id": "C-1", "subject": "s",
                           "created_at": now, "last_event_id": f"{t}-e1", "last_event_at": now}
                          for t in ("DA", "DB")])
    ds = [Decision(source="generic", ticket_id=t, customer_id="C-1", tier="high",
                   priority="High", score=0.5, flags=(), reason="r", components={},
                   weights_version="w", decided_at=now, event_id=f"{t}-e1") for t in ("DA", "DB")]
    recorded = store.record_decisions(ds)  # both current, pending in the outbox
    # A newer event makes another decision DB's current one before the older is written.
    store.upsert_tickets([{"source": "generic", "id": "DB", "customer_id": "C-1", "subject": "s",
                           "created_at": now, "last_event_id": "DB-e2", "last_event_at": now}])
    newer = Decision(source="generic", ticket_id="DB", customer_id="C-1", tier="low",
                     priority="Low", score=0.1, flags=(), reason="r", components={},
                     weights_version="w", decided_at=now, event_id="DB-e2")
    store.record_decisions([newer])
    assert sorted(store.write_local_desk("generic", recorded)) == ["DA", "DB"]
    state = store.ticket_state([("generic", "DA"), ("generic", "DB")])
    assert state[("generic", "DA")]["decided_event_id"] == "DA-e1"
    assert state[("generic", "DB")]["decided_event_id"] is None  # DB-e1 is no longer current


# What claiming, renewing and re-queueing an event write: none of it may be indexed, so those
# updates touch no index (PostgreSQL: the new row version can stay on its page, "HOT").
LEASE_COLUMNS = {"lease_owner", "lease_until", "attempts"}


def test_leasing_an_event_writes_no_indexed_column(runtime):
    """No index of the ledger holds what a claim writes; on PostgreSQL the claim's new row
    versions are then heap-only (HOT) where their page has room, and the server's own
    counter says so (it counted none while `lease_until` was indexed)."""
    import sqlalchemy as sa

    store = runtime.store
    inspector = sa.inspect(store.engine)
    indexed = [set(ix["column_names"]) for ix in inspector.get_indexes("events")]
    indexed += [set(u["column_names"]) for u in inspector.get_unique_constraints("events")]
    indexed.append(set(inspector.get_pk_constraint("events")["constrained_columns"]))
    assert {"state"} in indexed  # what reconcile and the failed list look up by
    assert all(not (cols & LEASE_COLUMNS) for cols in indexed), indexed

    now = dt.datetime.now(dt.timezone.utc).isoformat()
    store.add_events([{"source": "generic", "event_id": f"H-{i}", "ticket_id": f"HT-{i}",
                       "occurred_at": now, "payload": {"source": "generic", "event_id": f"H-{i}"}}
                      for i in range(40)])
    claimed = store.claim_events([("generic", f"H-{i}") for i in range(40)], "hot", 30)
    assert [c["attempts"] for c in claimed] == [1] * 40
    if store.engine.dialect.name != "postgresql":
        return  # SQLite has no row versions; the index check above is what matters there
    hot_query = sa.text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                        "WHERE relid = 'events'::regclass")

    def counts() -> tuple[int, int]:
        with store.engine.connect() as conn:
            return tuple(conn.execute(hot_query).one())

    # An idle backend reports its counts within ~10 s.
    wait_for(lambda: counts()[0] >= 40, 15, "the server to count the claims", poll=0.2)
    assert counts()[1] > 0
