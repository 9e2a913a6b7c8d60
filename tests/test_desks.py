"""Desks as units, and the delivery rules the glue applies to every desk.

Two desks run side by side: `generic` (the store plays the desk) and the
test-only `acme` (tests/desks), a REST desk reached over real HTTP, whose
server can fail, rate-limit, close tickets and change priorities like agents do.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid


from conftest import TEST_SECRET, auth, standard_webhook_headers, work
from plugin.delivery import backoff_seconds, flush
from plugin.store import decisions as decisions_table
from plugin.store import utcnow, writes as writes_table


def _event(ticket_id: str, customer_id: str, *, at: dt.datetime | None = None, **ticket) -> dict:
    at = at or dt.datetime.now(dt.timezone.utc)
    return {"event_id": f"evt_{uuid.uuid4().hex}", "occurred_at": at.isoformat(),
            "ticket": {"id": ticket_id, "subject": "Help", **ticket},
            "customer": {"id": customer_id}}


def _post(client, desk: str, payload: dict, msg_id: str | None = None):
    body = json.dumps(payload).encode()
    headers = standard_webhook_headers(TEST_SECRET, msg_id or f"msg_{uuid.uuid4().hex}", body)
    return client.post(f"/webhooks/{desk}", data=body, headers=headers)


def _client(rt):
    from plugin import create_app

    app = create_app(runtime=rt)
    app.config["TESTING"] = True
    return app.test_client()


def _write_row(rt, desk: str, ticket_id: str):
    with rt.store.engine.connect() as conn:
        return conn.execute(writes_table.select().where(writes_table.c.source == desk,
                                                        writes_table.c.ticket_id == ticket_id)).one()


def _window_passes(rt) -> None:
    """The desk's flush window has passed: its held writes are due now."""
    with rt.store.engine.begin() as conn:
        conn.execute(writes_table.update().where(writes_table.c.state == "pending")
                     .values(next_attempt_at=utcnow()))


def _decision_statuses(rt, ticket_id: str) -> list[str]:
    with rt.store.engine.connect() as conn:
        return [r.status for r in conn.execute(decisions_table.select()
                                               .where(decisions_table.c.ticket_id == ticket_id)
                                               .order_by(decisions_table.c.id))]


def test_each_decision_goes_back_to_the_desk_its_ticket_came_from(acme):
    rt, server = acme()
    server.tickets["A-1"] = {"status": "open", "priority": "P3"}
    server.customers["C-A"] = {"name": "Acme Buyer", "monthly_spend": 9000.0}
    client = _client(rt)
    assert _post(client, "acme", _event("A-1", "C-A")).status_code == 202
    assert _post(client, "generic", _event("G-1", "C-G")).status_code == 202
    work(rt)

    # acme got exactly its own ticket, in its own priority values, with Clout's marker.
    assert [w["id"] for w in server.writes] == ["A-1"]
    assert server.tickets["A-1"]["priority"] in ("P1", "P2", "P3", "P4")
    assert server.tickets["A-1"]["clout_decision"]
    assert "Authorization" not in json.dumps(server.writes)
    # The generic ticket was written to the store-desk, never to acme.
    local = rt.desk("generic").read_tickets(["G-1"])["G-1"]
    assert local.priority in ("Urgent", "High", "Normal", "Low") and local.clout_decision
    # Customers come from the ticket's own desk.
    assert rt.store.get_customers(["C-A"])["C-A"].monthly_spend == 9000.0
    a = client.get("/api/tickets/A-1?source=acme", headers=auth()).get_json()
    g = client.get("/api/tickets/G-1?source=generic", headers=auth()).get_json()
    assert (a["state"], g["state"]) == ("written", "written")
    assert a["priority"].startswith("P") and not g["priority"].startswith("P")


def test_a_disabled_desk_answers_404(acme):
    rt, _ = acme(CLOUT_DESKS__ACME__ENABLED="false")
    resp = _post(_client(rt), "acme", _event("A-1", "C-A"))
    assert resp.status_code == 404 and resp.get_json()["error"] == "unknown_source"


def test_a_desk_that_fails_with_5xx_is_retried_with_backoff_until_it_recovers(acme):
    rt, server = acme()
    server.tickets["A-5"] = {"status": "open", "priority": "P3"}
    server.fail_next(2, 503, method="PATCH")  # the first write and its first retry fail
    client = _client(rt)
    _post(client, "acme", _event("A-5", "C-5"))
    work(rt)
    row = _write_row(rt, "acme", "A-5")
    assert (row.state, row.attempts) == ("pending", 1) and "503" in row.last_error
    view = client.get("/api/tickets/A-5", headers=auth()).get_json()
    assert view["state"] == "pending" and "503" in view["write_error"]
    assert server.writes == []
    time.sleep(1.1)  # past the backoff (base 0.2 s, capped at 1 s)
    assert flush(rt, "acme") == {"retry": 1}
    assert _write_row(rt, "acme", "A-5").attempts == 2
    time.sleep(1.1)
    assert flush(rt, "acme") == {"written": 1}
    assert len(server.writes_for("A-5")) == 1
    assert client.get("/api/tickets/A-5", headers=auth()).get_json()["state"] == "written"


def test_429_retry_after_is_honoured(acme):
    rt, server = acme()
    server.tickets["A-9"] = {"status": "open", "priority": "P3"}
    server.fail_next(1, 429, retry_after=2, method="PATCH")
    _post(_client(rt), "acme", _event("A-9", "C-9"))
    before = utcnow()
    work(rt)
    row = _write_row(rt, "acme", "A-9")
    next_at = row.next_attempt_at if row.next_attempt_at.tzinfo else row.next_attempt_at.replace(
        tzinfo=dt.timezone.utc)
    assert next_at >= before + dt.timedelta(seconds=1.9)  # not the 0.2 s backoff
    calls = len(server.calls)
    assert flush(rt, "acme") == {"paused": 1}  # the whole desk waits: no hammering
    assert len(server.calls) == calls
    assert "paused_until" in rt.store.desk_state("acme")
    time.sleep(max(0.0, (next_at - utcnow()).total_seconds()) + 0.1)
    assert flush(rt, "acme") == {"written": 1}


def test_backoff_is_capped_exponential_with_jitter():
    import random

    rng = random.Random(7)
    delays = [backoff_seconds(n, base=2, cap=60, rng=rng) for n in range(1, 9)]
    for n, d in enumerate(delays, 1):
        step = min(60, 2 * 2 ** (n - 1))
        assert step / 2 <= d <= step
    assert backoff_seconds(1, base=2, cap=60, retry_after=30, rng=rng) >= 30


def test_past_the_deadline_a_write_is_parked_shown_and_still_recovers(acme):
    from plugin.operator import failed_command

    rt, server = acme(CLOUT_DESKS__ACME__WRITE_DEADLINE_SECONDS="1")
    server.tickets["A-7"] = {"status": "open", "priority": "P3"}
    server.fail_next(100, 502, method="PATCH")
    client = _client(rt)
    _post(client, "acme", _event("A-7", "C-7"))
    work(rt)
    deadline = time.monotonic() + 10
    while _write_row(rt, "acme", "A-7").state != "failed" and time.monotonic() < deadline:
        time.sleep(0.3)
        flush(rt, "acme")
    row = _write_row(rt, "acme", "A-7")
    assert row.state == "failed" and row.retryable
    assert client.get("/api/tickets/A-7", headers=auth()).get_json()["state"] == "failed"
    ready = client.get("/readyz").get_json()
    assert ready["parked"] == {"failed_writes": 1, "failed_events": 0}
    lines: list[str] = []
    failed_command(rt, retry=False, limit=10, echo=lines.append)
    assert "A-7" in "\n".join(lines) and "502" in "\n".join(lines)
    # The desk comes back: the slow retry of parked transient failures writes it, no operator needed.
    with server.lock:
        server._fail.clear()
    assert flush(rt, "acme") == {}  # parked rows wait for parked_retry_seconds
    time.sleep(1.1)  # ...and for their last backoff (or Retry-After)
    assert flush(rt, "acme", parked_before=utcnow()) == {"written": 1}
    assert client.get("/readyz").get_json()["parked"]["failed_writes"] == 0
    assert client.get("/api/tickets/A-7", headers=auth()).get_json()["state"] == "written"


def test_a_write_the_desk_refuses_for_good_is_parked_at_once_and_retried_on_request(acme):
    from plugin.operator import failed_command

    rt, server = acme()
    _post(_client(rt), "acme", _event("A-404", "C-1"))  # the desk has no such ticket
    work(rt)
    row = _write_row(rt, "acme", "A-404")
    assert row.state == "failed" and not row.retryable and "no such ticket" in row.last_error
    assert flush(rt, "acme", parked_before=utcnow()) == {}  # not retried on its own
    server.tickets["A-404"] = {"status": "open", "priority": "P3"}
    lines: list[str] = []
    failed_command(rt, retry=True, limit=10, echo=lines.append)
    assert "Put back to work: 1 write(s)" in lines[-1]
    assert flush(rt, "acme") == {"written": 1}


def test_only_the_newest_decision_is_written(acme):
    """Two events for one ticket ranked before the desk is written: only the newer goes out."""
    rt, server = acme(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="60000")
    server.tickets["A-2"] = {"status": "open", "priority": "P3"}
    now = dt.datetime.now(dt.timezone.utc)
    client = _client(rt)
    older = _event("A-2", "C-2", at=now - dt.timedelta(minutes=5), subject="old")
    newer = _event("A-2", "C-2", at=now, subject="new")
    newer["ticket"]["created_at"] = (now - dt.timedelta(days=5)).isoformat()  # AGED: another decision
    _post(client, "acme", older)
    work(rt)
    _post(client, "acme", newer)
    work(rt)
    assert server.writes == []  # held for the flush window
    assert flush(rt, "acme") == {}  # not due before the window ends
    _window_passes(rt)
    assert flush(rt, "acme") == {"written": 1}
    states = rt.store.event_states([older["event_id"], newer["event_id"]])
    assert states == {older["event_id"]: "superseded", newer["event_id"]: "decided"}
    assert _decision_statuses(rt, "A-2") == ["superseded", "written"]


def test_a_decision_that_repeats_the_current_one_is_not_written_again(runtime, post_generic, drain):
    """A desk that notifies every change (ours included) must not loop: the same decision
    again settles its event as `unchanged`, with no new decision and no write."""
    first = _event("G-R", "C-R")
    post_generic(first)
    drain()
    assert _decision_statuses(runtime, "G-R") == ["written"]
    written_at = runtime.store.ticket_state([("generic", "G-R")])[("generic", "G-R")]
    echo = _event("G-R", "C-R", description="the desk echoing our own write")
    post_generic(echo)
    drain()
    assert runtime.store.event_states([echo["event_id"]]) == {echo["event_id"]: "unchanged"}
    assert _decision_statuses(runtime, "G-R") == ["written"]
    after = runtime.store.ticket_state([("generic", "G-R")])[("generic", "G-R")]
    assert after["decision_id"] == written_at["decision_id"]
    assert after["last_event_id"] == echo["event_id"]  # the event itself was taken in


def test_an_older_batch_finishing_late_changes_nothing(acme):
    rt, server = acme()
    server.tickets["A-3"] = {"status": "open", "priority": "P3"}
    now = dt.datetime.now(dt.timezone.utc)
    client = _client(rt)
    newer = _event("A-3", "C-3", at=now, subject="new")
    older = _event("A-3", "C-3", at=now - dt.timedelta(hours=1), subject="old")
    _post(client, "acme", newer)
    work(rt)
    written = list(server.writes)
    _post(client, "acme", older)  # a desk's late retry, or a batch that was slower
    work(rt)
    assert server.writes == written
    assert rt.store.event_states([older["event_id"]]) == {older["event_id"]: "stale"}


def test_an_agents_priority_stands(acme):
    rt, server = acme()
    server.tickets["A-4"] = {"status": "open", "priority": "P3"}
    client = _client(rt)
    _post(client, "acme", _event("A-4", "C-4"))
    work(rt)
    assert len(server.writes) == 1
    server.tickets["A-4"]["priority"] = "P1"  # an agent changes it on the desk
    _post(client, "acme", _event("A-4", "C-4", description="any update"))
    work(rt)
    assert len(server.writes) == 1 and server.tickets["A-4"]["priority"] == "P1"
    view = client.get("/api/tickets/A-4", headers=auth()).get_json()
    assert view["state"] == "agent_override"
    assert "A-4" in [t["ticket_id"] for t in client.get("/api/queue", headers=auth()).get_json()["tickets"]]


def test_an_agents_priority_on_the_generic_desk_stands(runtime, post_generic, drain, client):
    post_generic(_event("G-4", "C-4", priority="Normal"))
    drain()
    first = client.get("/api/tickets/G-4", headers=auth()).get_json()
    assert first["state"] == "written"
    # An event sent before Clout's write still shows the old priority: not an agent's change.
    stale_view = _event("G-4", "C-4", priority="Normal")
    stale_view["occurred_at"] = (dt.datetime.fromisoformat(first["decided_at"].replace("Z", "+00:00"))
                                 - dt.timedelta(milliseconds=1)).isoformat()
    post_generic(stale_view)
    drain()
    # The agent picks another priority on the desk; the desk says so in its next event.
    other = next(p for p in ("Urgent", "Low") if p != first["priority"])
    post_generic(_event("G-4", "C-4", priority=other))
    drain()
    view = client.get("/api/tickets/G-4", headers=auth()).get_json()
    assert view["state"] == "agent_override" and view["desk_priority"] == other
    assert runtime.desk("generic").read_tickets(["G-4"])["G-4"].priority == other


def test_a_sender_repeating_its_priority_is_not_an_agent(runtime, post_generic, drain, client):
    """A sender that knows nothing of Clout's writes keeps sending the priority the ticket was
    created with: no change on its side, so no agent, and Clout keeps writing."""
    post_generic(_event("G-7", "C-7", priority="Whatever"))
    drain()
    for _ in range(2):
        post_generic(_event("G-7", "C-7", priority="Whatever", description="customer replied"))
        drain()
    view = client.get("/api/tickets/G-7", headers=auth()).get_json()
    assert view["state"] == "written" and view["desk_priority"] == view["priority"]
    # Nothing changed for Clout either: the same decision is not written again.
    assert _decision_statuses(runtime, "G-7") == ["written"]


def test_the_local_desk_refuses_an_older_decision_and_an_agents_change(runtime, post_generic, drain):
    """The local desk's write is conditional, like a real desk's: a stalled worker's older
    decision, or a write racing an agent's change, does not land."""
    from connectors.crm.base import Decision

    post_generic(_event("G-8", "C-8"))
    drain()
    desk = runtime.desk("generic")
    now = desk.read_tickets(["G-8"])["G-8"]
    older = Decision(source="generic", ticket_id="G-8", customer_id="C-8", tier="low", priority="Low",
                     score=0.0, flags=(), reason="r", components={}, weights_version="x",
                     decided_at="2026-11-25T00:00:00Z", id=str(int(now.clout_decision) - 1))
    assert desk.write_decisions([older]).written == ()
    from plugin.store import tickets as t

    with runtime.store.engine.begin() as conn:  # an agent edits the desk directly
        conn.execute(t.update().where(t.c.id == "G-8").values(desk_priority="Urgent"))
    newer = Decision(**{**{f: getattr(older, f) for f in older.__slots__}, "id": str(int(now.clout_decision) + 99)})
    assert desk.write_decisions([newer]).written == ()
    assert desk.read_tickets(["G-8"])["G-8"].priority == "Urgent"


def test_closed_tickets_leave_the_queue_and_are_not_written(runtime, post_generic, drain, client):
    post_generic(_event("G-5", "C-5"))
    post_generic(_event("G-6", "C-6"))
    drain()
    solved = _event("G-5", "C-5", status="solved")
    post_generic(solved)
    drain()
    queue = [t["ticket_id"] for t in client.get("/api/queue", headers=auth()).get_json()["tickets"]]
    assert queue == ["G-6"]
    assert runtime.store.event_states([solved["event_id"]]) == {solved["event_id"]: "closed"}
    assert len(_decision_statuses(runtime, "G-5")) == 1  # no new decision for a closed ticket
    # Reopened: back in the queue with a fresh decision.
    post_generic(_event("G-5", "C-5", status="open"))
    drain()
    queue = [t["ticket_id"] for t in client.get("/api/queue", headers=auth()).get_json()["tickets"]]
    assert sorted(queue) == ["G-5", "G-6"]


def test_a_ticket_closed_on_the_desk_before_the_write_is_not_written(acme):
    rt, server = acme(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="60000")
    server.tickets["A-6"] = {"status": "open", "priority": "P3"}
    _post(_client(rt), "acme", _event("A-6", "C-6"))
    work(rt)
    server.tickets["A-6"]["status"] = "solved"
    _window_passes(rt)
    assert flush(rt, "acme") == {"closed": 1}
    assert server.writes == [] and _decision_statuses(rt, "A-6") == ["closed"]


def test_a_write_the_desk_already_has_is_not_sent_twice(acme):
    """A worker died between the desk's write and Clout's record of it: the next one sees
    Clout's own marker on the desk and records the write without sending it again."""
    rt, server = acme(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="60000", CLOUT_DELIVERY__LEASE_SECONDS="5")
    server.tickets["A-8"] = {"status": "open", "priority": "P3"}
    _post(_client(rt), "acme", _event("A-8", "C-8"))
    work(rt)
    from plugin.delivery import deliver

    _window_passes(rt)
    claimed = rt.store.claim_writes("acme", "dead-worker", 1, 50)
    deliver(rt.desk("acme"), claimed, rt.settings)  # the desk has it... and the worker dies
    assert len(server.writes_for("A-8")) == 1
    assert flush(rt, "acme") == {}  # still leased to the dead worker
    time.sleep(1.1)
    assert flush(rt, "acme") == {"written": 1}
    assert len(server.writes_for("A-8")) == 1
    assert _decision_statuses(rt, "A-8") == ["written"]


def test_a_desk_read_slower_than_a_third_of_the_lease_checks_the_lease_before_writing(acme,
                                                                                     monkeypatch):
    """A fresh claim is written without a renewal round trip; a desk read that takes longer
    than a third of the lease renews first, and a write another worker holds by then is
    left to it."""
    rt, server = acme(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="60000", CLOUT_DELIVERY__LEASE_SECONDS="5")
    for tid in ("A-9", "A-10"):
        server.tickets[tid] = {"status": "open", "priority": "P3"}
    _post(_client(rt), "acme", _event("A-9", "C-9"))
    work(rt)
    _window_passes(rt)
    connector = rt.desk("acme")
    read = connector.read_tickets

    def slow_read(ids):
        time.sleep(1.8)  # past a third of the 5 s lease
        with rt.store.engine.begin() as conn:  # meanwhile another worker holds the write
            conn.execute(writes_table.update().values(
                lease_owner="other-worker", lease_until=utcnow() + dt.timedelta(seconds=60)))
        return read(ids)

    monkeypatch.setattr(connector, "read_tickets", slow_read)
    assert flush(rt, "acme") == {}
    assert server.writes_for("A-9") == []
    monkeypatch.setattr(connector, "read_tickets", read)
    with rt.store.engine.begin() as conn:  # the other worker died: its lease runs out
        conn.execute(writes_table.update().values(lease_owner=None, lease_until=None))
    started = time.monotonic()
    assert flush(rt, "acme") == {"written": 1}
    assert time.monotonic() - started < 5 / 3  # (so no renewal was needed)
    assert len(server.writes_for("A-9")) == 1


def test_a_flush_window_gathers_writes_into_few_calls(acme):
    from rq.registry import ScheduledJobRegistry

    # 2 s: long enough that posting and ranking 120 events on a busy machine (PostgreSQL,
    # other suites running) stays inside the window (500 ms failed once that way).
    rt, server = acme(CLOUT_DESKS__ACME__FLUSH_WINDOW_MS="2000")
    client = _client(rt)
    for i in range(120):
        server.tickets[f"W-{i}"] = {"status": "open", "priority": "P3"}
        _post(client, "acme", _event(f"W-{i}", f"C-{i % 7}"))
    work(rt)
    assert server.writes == []
    assert len(ScheduledJobRegistry(queue=rt.queue).get_job_ids()) == 1  # one flush per window
    from plugin.jobs import flush_writes

    assert flush_writes("acme") == {}  # the window has not passed yet
    time.sleep(2.1)  # the window counts from the decisions, made inside work()
    assert flush_writes("acme") == {"written": 120}
    patches = [c for c in server.calls if c.startswith("PATCH")]
    assert len(patches) == 3  # 120 tickets, acme takes 50 per call


def test_rerank_writes_only_tickets_whose_tier_moved(runtime, post_generic, drain):
    from plugin.reconcile import rerank
    from plugin.store import tickets

    post_generic(_event("G-OLD", "C-OLD"))
    post_generic(_event("G-NEW", "C-NEW"))
    drain()
    assert rerank(runtime) == 0  # nothing moved
    # Time passes for one ticket: it has now waited three days.
    with runtime.store.engine.begin() as conn:
        conn.execute(tickets.update().where(tickets.c.id == "G-OLD")
                     .values(created_at=utcnow() - dt.timedelta(days=3)))
    assert rerank(runtime) == 1
    assert _decision_statuses(runtime, "G-OLD") == ["written", "written"]
    assert _decision_statuses(runtime, "G-NEW") == ["written"]
    desk = runtime.desk("generic").read_tickets(["G-OLD", "G-NEW"])
    assert desk["G-OLD"].priority in ("Urgent", "High")  # the fairness guard lifted it
    from plugin.store import tickets as t

    with runtime.store.engine.connect() as conn:
        flags = conn.execute(t.select().where(t.c.id == "G-OLD")).one().desk_flags
    assert "AGED" in flags


def test_the_same_event_claimed_by_two_workers_at_once_is_decided_once(runtime, post_generic):
    import threading

    from plugin.jobs import process_events
    from plugin.inbox import drain as drain_inbox

    payload = _event("G-DUP", "C-DUP")
    for _ in range(5):
        post_generic(payload)  # the desk re-sends under new delivery ids
    drain_inbox(runtime.redis, runtime.settings, runtime.store)
    keys = [["generic", payload["event_id"]]]
    barrier = threading.Barrier(4)
    results = []

    def run():
        barrier.wait()
        results.append(process_events(keys))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["decided"] for r in results) == 1
    assert len(_decision_statuses(runtime, "G-DUP")) == 1


def test_reconcile_redrives_events_a_dead_worker_held(runtime_with, post_generic):
    from plugin.reconcile import run

    rt = runtime_with({"CLOUT_DELIVERY__LEASE_SECONDS": "5", "CLOUT_DELIVERY__STALE_AFTER_SECONDS": "1"})
    from plugin import create_app

    client = create_app(runtime=rt).test_client()
    body = json.dumps(_event("G-DEAD", "C-DEAD")).encode()
    assert client.post("/webhooks/generic", data=body,
                       headers=standard_webhook_headers(TEST_SECRET, "m-dead", body)).status_code == 202
    from plugin.inbox import drain as drain_inbox

    drain_inbox(rt.redis, rt.settings, rt.store)
    rt.queue.empty()  # the batch job died with its worker...
    claimed = rt.store.claim_events([("generic", json.loads(body)["event_id"])], "dead", 1)
    assert len(claimed) == 1  # ...holding the events
    assert run(rt)["redriven"] == 0  # still leased
    time.sleep(1.1)
    assert run(rt)["redriven"] == 1
    work(rt)
    assert rt.store.decided_events([json.loads(body)["event_id"]])


def test_a_desk_down_while_ranking_leaves_events_waiting_not_failed(acme):
    """The desk is unreachable when its customers are looked up: an outage, so the events
    wait in the ledger (no attempt counted) and are decided once it answers again."""
    from plugin.reconcile import redrive

    rt, server = acme(CLOUT_DELIVERY__STALE_AFTER_SECONDS="1")
    server.tickets["A-OUT"] = {"status": "open", "priority": "P3"}
    server.fail_next(1, 503, method="GET")
    event = _event("A-OUT", "C-OUT")
    _post(_client(rt), "acme", event)
    work(rt)
    assert rt.store.event_states([event["event_id"]]) == {event["event_id"]: "pending"}
    assert rt.store.parked()["events"] == []
    time.sleep(1.1)
    assert redrive(rt) == 1
    work(rt)
    assert rt.store.event_states([event["event_id"]]) == {event["event_id"]: "decided"}
    assert len(server.writes_for("A-OUT")) == 1


def test_reconcile_notices_a_ticket_the_desk_closed_without_telling_us(acme):
    from plugin.reconcile import rerank

    rt, server = acme()
    client = _client(rt)
    for tid in ("A-C1", "A-C2"):
        server.tickets[tid] = {"status": "open", "priority": "P3"}
        _post(client, "acme", _event(tid, "C-C"))
    work(rt)
    server.tickets["A-C1"]["status"] = "closed"  # closed on the desk, no webhook sent
    rerank(rt)
    queue = [t["ticket_id"] for t in client.get("/api/queue", headers=auth()).get_json()["tickets"]]
    assert queue == ["A-C2"]


def test_desk_priorities_may_be_numbers():
    from plugin.settings import load_settings

    s = load_settings({"CLOUT_DESKS__GENERIC__PRIORITIES__URGENT": "4"})
    assert s.desk_priorities("generic")["urgent"] == "4"


def test_error_texts_keep_no_urls_or_query_strings():
    import requests

    from plugin.errors import describe_error

    try:
        requests.get("http://127.0.0.1:9/api/search?query=jane.doe@example.com&api_key=sk_live_1", timeout=1)
    except requests.RequestException as exc:
        text = describe_error(exc)
    assert text == "ConnectionError from 127.0.0.1"
    text = describe_error(ValueError("see https://user:pw@desk.example.com/t/1?email=a@b.c now"))
    assert "pw" not in text and "a@b.c" not in text and "desk.example.com" in text
