"""Crash and outage recovery, with real processes: `clout web`, `clout worker`s, the embedded
Redis, a store, and the test-only `acme` desk over real HTTP (see tests/crash_harness.py).

What the issue promises, whatever moment a worker dies, once one worker runs again:
every accepted event is decided within 60 s, no desk receives two writes for the same
decision, and scheduled retries resume within 60 s. A store outage of any length leaves
accepted events waiting, not failed, and they are decided when it ends without anyone
acting. An event is decided once, however many workers run and however often it is
redelivered.

Timings are shortened here (leases, reconcile interval) so the suite stays quick;
bench/crash_table.py runs the same stages with the default timings.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from crash_harness import (
    DEADLINE,
    CrashStack,
    PostgresDatabase,
    StageResult,
    TcpProxy,
    kill_tree,
    postgres_available,
    stage_between_write_and_record,
    stage_blocked_on_queue,
    stage_in_reconcile_write,
    stage_mid_batch,
    stage_redelivery,
    stage_store_outage,
    stage_while_draining,
    wait_for,
)

SHORT = {
    "CLOUT_DELIVERY__LEASE_SECONDS": "5",
    "CLOUT_DELIVERY__RECONCILE_INTERVAL_SECONDS": "2",
    "CLOUT_DELIVERY__STALE_AFTER_SECONDS": "2",
}

needs_postgres = pytest.mark.skipif(not postgres_available(),
                                    reason="no PostgreSQL with trust auth on 127.0.0.1:5432")


def _assert_recovered(res: StageResult) -> None:
    print(res.as_dict())
    detail = f"{res}"
    assert res.accepted > 0, detail
    assert res.lost == 0, detail
    assert res.decided_in_time == res.accepted, detail
    assert res.seconds is not None and res.seconds <= DEADLINE, detail
    assert res.double_written == 0, detail
    assert res.decided_twice == 0, detail


@pytest.fixture()
def stack(tmp_path: Path):
    def make(**env: str) -> CrashStack:
        built = CrashStack(tmp_path / f"stack{len(stacks)}", env={**SHORT, **env})
        stacks.append(built)
        return built.start()

    stacks: list[CrashStack] = []
    try:
        yield make
    finally:
        for s in stacks:
            s.close()


@pytest.mark.timeout(120)
def test_worker_killed_while_blocked_on_the_queue(stack):
    """The issue's repro: frozen in RQ's blocking dequeue (holding the drain job in RQ's
    intermediate list), SIGKILLed, more webhooks, a fresh worker."""
    res = stage_blocked_on_queue(stack(), 150, 50)
    assert res.notes["blocked in RQ's dequeue when frozen"], res
    assert res.notes["drain job in RQ's intermediate list at kill"], res
    _assert_recovered(res)
    assert res.seconds < 15, res  # a restarted worker re-drives at once, not after RQ maintenance


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.05], ids=["at-lock", "mid-move"])
def test_worker_killed_while_draining(stack, delay):
    # Small batches make the drain take many moves, so the kill lands between them.
    res = stage_while_draining(stack(CLOUT_QUEUE__BATCH_SIZE="20"), 400, delay=delay)
    assert res.notes["drain lock held at kill"], res
    _assert_recovered(res)


@pytest.mark.timeout(120)
def test_worker_killed_mid_batch(stack):
    res = stage_mid_batch(stack(), 120)
    assert res.notes["ledger at kill"].get("leased", 0) > 0, res  # it died holding leases
    _assert_recovered(res)


@pytest.mark.timeout(180)
def test_worker_killed_mid_batch_with_default_timings(tmp_path: Path):
    """Stage (c) as deployed: default lease and reconcile interval, a full batch in flight."""
    with CrashStack(tmp_path / "stack") as st:
        res = stage_mid_batch(st, 250)
    _assert_recovered(res)


@pytest.mark.timeout(120)
def test_worker_killed_between_the_desk_write_and_its_record(stack):
    res = stage_between_write_and_record(stack(), 120)
    assert res.notes["desk writes applied at kill"] > 0, res
    _assert_recovered(res)


@pytest.mark.timeout(120)
def test_worker_killed_inside_a_reconcile_retry_of_a_write(stack):
    """(d) again, but the write is a retry reconcile set off: whatever it holds when the
    worker dies (the write's lease, markers in Redis) must not stall recovery past 60 s."""
    res = stage_in_reconcile_write(stack(), 20)
    assert res.notes["desk writes applied at kill"] > 0, res
    _assert_recovered(res)


def _utc(value):
    import datetime as dt

    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _write_rows(st: CrashStack) -> list:
    from plugin.store import writes

    with st.store.engine.connect() as conn:
        return list(conn.execute(sa.select(writes)))


@pytest.mark.timeout(120)
def test_scheduled_write_retries_resume_within_60s_of_a_restart(stack):
    """A desk write is failing and a retry is scheduled when the worker is SIGKILLed; a new one
    starts a few seconds later: the retries go on, and the write lands once the desk recovers."""
    st = stack(CLOUT_DELIVERY__RETRY_BASE_SECONDS="3", CLOUT_DELIVERY__RETRY_MAX_SECONDS="6")
    worker = st.start_worker(wait=True)
    st.server.fail_next(100_000, 503, method="PATCH")
    accepted = st.post_new(5, prefix="Q")
    assert len(accepted) == 5
    wait_for(lambda: st.write_attempts() >= 1, 30, "the first write to fail")

    def retry_pending() -> bool:
        from plugin.store import utcnow

        rows = _write_rows(st)
        return bool(rows) and all(r.state == "pending" and r.attempts >= 1 and r.lease_owner is None
                                  and _utc(r.next_attempt_at) > utcnow() for r in rows)

    wait_for(retry_pending, 30, "a scheduled retry")
    attempts_at_kill = st.write_attempts()
    kill_tree(worker)
    time.sleep(2)
    restarted = time.monotonic()
    st.start_worker()
    # Retries resume (the desk still fails): attempts go up without anyone acting.
    resumed = wait_for(lambda: st.write_attempts() > attempts_at_kill, DEADLINE,
                       "retries to resume", poll=0.1)
    assert resumed <= DEADLINE
    st.server.clear_failures()  # the desk recovers
    decided, seconds, _ = st.wait_decided(accepted, since=restarted)
    assert decided == set(accepted), (seconds, st.ledger_counts(), _write_rows(st))
    assert seconds is not None and seconds <= DEADLINE
    assert all(st.writes_per_ticket()[t] == 1 for t in {w["id"] for w in st.server.writes})
    assert st.double_written() == 0


@pytest.mark.timeout(120)
def test_writes_in_a_flush_window_land_after_a_restart(stack):
    """A desk with a flush window: the flush job RQ's scheduler was to run dies with the worker
    (and its scheduler lock); a worker restarted within seconds still writes them within 60 s."""
    st = stack(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="4000")
    worker = st.start_worker(wait=True)
    accepted = st.post_new(30, prefix="W")
    wait_for(lambda: len(_write_rows(st)) == 30, 30, "the decisions to reach the outbox")
    assert st.server.writes == []  # still inside the flush window
    kill_tree(worker)
    time.sleep(1)
    restarted = time.monotonic()
    st.start_worker()
    decided, seconds, _ = st.wait_decided(accepted, since=restarted)
    assert decided == set(accepted), (seconds, st.ledger_counts())
    assert seconds is not None and seconds <= DEADLINE
    assert st.double_written() == 0 and len(st.server.writes) == 30


@needs_postgres
@pytest.mark.timeout(150)
def test_store_outage_longer_than_every_retry_interval(tmp_path: Path):
    """PostgreSQL behind a TCP proxy that is cut for 20 s (connections closed, new ones refused)
    while webhooks keep arriving; every retry interval and deadline is far shorter. When it is
    back, everything accepted is decided without anyone acting, and nothing is parked."""
    retries = {
        **SHORT,
        "CLOUT_DELIVERY__RETRY_BASE_SECONDS": "0.5", "CLOUT_DELIVERY__RETRY_MAX_SECONDS": "2",
        "CLOUT_DELIVERY__WRITE_DEADLINE_SECONDS": "5", "CLOUT_DELIVERY__MAX_EVENT_ATTEMPTS": "2",
        "CLOUT_DELIVERY__PARKED_RETRY_SECONDS": "10",
    }
    with PostgresDatabase() as db:
        proxy = TcpProxy((db.host, db.port))
        st = CrashStack(tmp_path / "stack", env=retries, database_url=db.url(proxy.port),
                        read_database_url=db.url())
        try:
            st.start()
            res = stage_store_outage(st, proxy, outage=20.0)
        finally:
            st.close()
            proxy.close()
    assert res.notes["decided before the outage"] == 20, res
    # The outage really bit: a batch was leased when the store went, and what came in during
    # the outage waited in the Redis inbox.
    assert res.notes["ledger when the store went"].get("leased", 0) > 0, res
    assert res.notes["inbox at the end of the outage"] > 0, res
    assert res.notes["parked after"] == {"writes": 0, "events": 0}, res
    assert not res.notes.get("rejected"), res  # intake kept answering 202 throughout
    _assert_recovered(res)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_concurrent_redelivery_to_two_workers_decides_each_event_once(tmp_path: Path, database):
    """The same events, each redelivered under 40 webhook-ids and shuffled among other events,
    reach two workers at once: one decision per event and one desk write per decision."""
    if database == "postgresql":
        with (PostgresDatabase() as db,
              CrashStack(tmp_path / "stack", env=SHORT, database_url=db.url()) as st):
            res = stage_redelivery(st, events=10, copies=40, others=100)
    else:
        with CrashStack(tmp_path / "stack", env=SHORT) as st:
            res = stage_redelivery(st, events=10, copies=40, others=100)
    assert res.deliveries == 10 * 40 + 100, res
    assert res.notes["repeated events decided once"] == 10, res
    assert res.notes["repeated events written once"] == 10, res
    _assert_recovered(res)
