"""Webhook in -> real RQ worker -> decision out, on the real Redis and store."""

from __future__ import annotations

import datetime as dt
import uuid

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer


from conftest import auth, submit, work
from connectors.crm.base import Customer
from plugin.store import decisions, influence_history


def _today(offset_days: int = 0) -> str:
    return (dt.date.today() + dt.timedelta(days=offset_days)).isoformat()


def _event(ticket_id: str, customer: dict, *, subject: str = "Help", description: str = "",
           age_hours: float = 1.0) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "event_id": f"evt_{uuid.uuid4().hex}",
        "occurred_at": now.isoformat(),
        "ticket": {"id": ticket_id, "subject": subject, "description": description,
                   "priority": "Normal", "created_at": (now - dt.timedelta(hours=age_hours)).isoformat()},
        "customer": customer,
    }


def _seed_book(runtime, n: int = 40) -> None:
    """A customer book so spend percentiles mean something."""
    runtime.store.upsert_customers(
        Customer(id=f"BOOK-{i}", monthly_spend=float(20 + i * 10)) for i in range(n)
    )


def test_webhook_to_decision_through_a_real_worker(post_generic, drain, client, runtime):
    _seed_book(runtime)
    runtime.store.upsert_customers([Customer(
        id="C-BIG", name="Big Spender", handles={"x": "adaq"}, monthly_spend=9000.0,
        contract_end=_today(10))])
    resp = post_generic(_event("T-1", {"id": "C-BIG"}, subject="Export broken again",
                               description="This is unacceptable, we may cancel."))
    assert resp.status_code == 202
    job_id = resp.get_json()["job_id"]
    drain()

    drain_job = Job.fetch(job_id, connection=runtime.redis, serializer=JSONSerializer)
    assert drain_job.get_status() == JobStatus.FINISHED
    assert drain_job.return_value() == {"batches": 1, "events": 1}
    from rq.registry import FinishedJobRegistry

    finished = Job.fetch_many(FinishedJobRegistry(queue=runtime.queue).get_job_ids(),
                              connection=runtime.redis, serializer=JSONSerializer)
    batch = [j for j in finished if j.func_name == "plugin.jobs.process_events"]
    assert len(batch) == 1 and batch[0].return_value()["decided"] == 1

    got = client.get("/api/tickets/T-1", headers=auth())
    assert got.status_code == 200
    body = got.get_json()
    assert set(body) >= {"ticket_id", "priority", "tier", "score", "flags", "reason", "decided_at"}
    assert body["ticket_id"] == "T-1"
    assert body["tier"] in ("urgent", "high")
    assert body["priority"] == {"urgent": "Urgent", "high": "High"}[body["tier"]]
    assert "VIP" in body["flags"] and "RENEWAL_SOON" in body["flags"]
    assert body["reason"].startswith(body["tier"].capitalize())
    assert "renewal" in body["reason"]

    # Written back to the (local) desk, recorded with components and weights version.
    with runtime.store.engine.connect() as conn:
        row = conn.execute(decisions.select()).one()
        hist = conn.execute(influence_history.select()).all()
    assert row.weights_version == runtime.settings.weights.version()
    assert set(row.components) >= {"influence", "spend", "renewal", "complaint", "waiting"}
    assert len(hist) == 1 and hist[0].customer_id == "C-BIG" and hist[0].score > 1


def test_event_facts_win_and_crm_fills_gaps(post_generic, drain, runtime):
    runtime.store.upsert_customers([Customer(
        id="C-MIX", name="Old Name", email="old@x.example", handles={"github": "kestrel-labs"},
        monthly_spend=10.0, contract_end=_today(200))])
    post_generic(_event("T-2", {"id": "C-MIX", "name": "New Name", "monthly_spend": 5000,
                                "handles": {"x": "farahtech"}}))
    drain()
    c = runtime.store.get_customers(["C-MIX"])["C-MIX"]
    assert c.name == "New Name" and c.monthly_spend == 5000.0
    assert c.email == "old@x.example" and c.contract_end == _today(200)
    assert c.handles == {"github": "kestrel-labs", "x": "farahtech"}


def test_unknown_customer_is_created_from_the_event(post_generic, drain, runtime, client):
    post_generic(_event("T-3", {"id": "C-NEW", "monthly_spend": 12.5}))
    drain()
    assert runtime.store.get_customers(["C-NEW"])["C-NEW"].monthly_spend == 12.5
    assert client.get("/api/tickets/T-3", headers=auth()).get_json()["tier"] in ("normal", "low")


def test_queue_is_ordered_and_redecisions_append_history(post_generic, drain, runtime, client):
    _seed_book(runtime)
    post_generic(_event("T-small", {"id": "C-S", "monthly_spend": 20}))
    post_generic(_event("T-big", {"id": "C-B", "monthly_spend": 20000, "contract_end": _today(5)}))
    drain()
    queue = client.get("/api/queue", headers=auth()).get_json()["tickets"]
    assert [t["ticket_id"] for t in queue] == ["T-big", "T-small"]
    assert queue[0]["score"] > queue[1]["score"]

    # The small ticket ages past twice the SLA: the fairness guard lifts it.
    post_generic(_event("T-small", {"id": "C-S"}, age_hours=60))
    drain()
    small = client.get("/api/tickets/T-small", headers=auth()).get_json()
    assert small["tier"] in ("urgent", "high")
    assert "AGED" in small["flags"]
    assert runtime.store.count("decisions") == 3


def test_many_events_in_one_job_are_ranked_together(runtime):
    from webhooks.event import CustomerFacts, TicketEvent

    now = dt.datetime.now(dt.timezone.utc).isoformat()

    def batch(tag: str, n: int) -> list[TicketEvent]:
        return [
            TicketEvent(source="generic", event_id=f"{tag}{i}", occurred_at=now, ticket_id=f"T-B{i}",
                        customer=CustomerFacts(id=f"C-B{i}", monthly_spend=float(10 * (i + 1)),
                                               handles={"x": "adaq"} if i % 2 else {}))
            for i in range(n)
        ]

    events = batch("e", 30)
    # The same ticket twice in one batch: only the newest event counts.
    events.append(TicketEvent(source="generic", event_id="e-old", occurred_at="2000-01-01T00:00:00Z",
                              ticket_id="T-B0", customer=CustomerFacts(id="C-B0")))
    job = submit(runtime, [e.to_dict() for e in events])
    work(runtime)
    summary = job.return_value()
    assert summary["decided"] == 30 and summary["settled"] == {"stale": 1}
    assert summary["writes"] == {"written": 30}
    scores = {t["ticket_id"]: t["score"] for t in summary["tickets"]}
    assert scores["T-B29"] > scores["T-B0"]  # spend percentile across the batch and book
    states = runtime.store.event_states([e.event_id for e in events])
    assert states["e-old"] == "stale" and {states[f"e{i}"] for i in range(30)} == {"decided"}
    # Influence was looked up once per customer and cached for the next job.
    assert runtime.store.count("influence_history") == 15
    submit(runtime, [e.to_dict() for e in batch("again", 4)])
    work(runtime)
    assert runtime.store.count("influence_history") == 15

    # A big batch's job result lists a sample of its tickets; the store has them all.
    from plugin.jobs import RESULT_TICKETS

    n = RESULT_TICKETS + 7
    big = submit(runtime, [TicketEvent(source="generic", event_id=f"big{i}", occurred_at=now,
                                       ticket_id=f"T-BIG{i}", customer=CustomerFacts(id=f"C-B{i}"))
                           .to_dict() for i in range(n)])
    work(runtime)
    summary = big.return_value()
    assert summary["decided"] == n and len(summary["tickets"]) == RESULT_TICKETS
    assert len(runtime.store.decided_events([f"big{i}" for i in range(n)])) == n


def test_a_failing_event_is_retried_then_parked_for_an_operator(runtime_with, tmp_path):
    """A real failure (the snapshot file is missing) counts an attempt; after
    delivery.max_event_attempts the event is parked, and `unpark` puts it back."""
    from plugin.reconcile import redrive

    rt = runtime_with({"CLOUT_INFLUENCE__SNAPSHOT_PATH": str(tmp_path / "missing.json"),
                       "CLOUT_DELIVERY__MAX_EVENT_ATTEMPTS": "2",
                       "CLOUT_DELIVERY__STALE_AFTER_SECONDS": "1"})
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    submit(rt, [{"source": "generic", "event_id": "e1", "occurred_at": now, "ticket_id": "T-R",
                 "customer": {"id": "C-R", "handles": {"x": "adaq"}}}])
    work(rt)
    assert rt.store.event_states(["e1"]) == {"e1": "pending"}  # released, attempt counted
    assert redrive(rt) == 1  # its lease is gone: re-driven at once
    work(rt)
    assert rt.store.event_states(["e1"]) == {"e1": "failed"}
    parked = rt.store.parked()["events"]
    assert [(p["event_id"], p["attempts"]) for p in parked] == [("e1", 2)]
    assert "FileNotFoundError" in parked[0]["error"]
    assert redrive(rt) == 0  # parked: nobody retries it on their own
    assert rt.store.unpark() == {"writes": 0, "events": 1}
    assert rt.store.event_states(["e1"]) == {"e1": "pending"}


def test_a_late_retry_of_an_older_event_changes_nothing(post_generic, drain, runtime, client):
    now = dt.datetime.now(dt.timezone.utc)
    newer = _event("T-ORDER", {"id": "C-ORDER", "monthly_spend": 5000}, subject="NEW")
    older = _event("T-ORDER", {"id": "C-ORDER", "monthly_spend": 0}, subject="OLD")
    older["occurred_at"] = (now - dt.timedelta(hours=2)).isoformat()
    post_generic(newer)
    drain()
    before = client.get("/api/tickets/T-ORDER", headers=auth()).get_json()
    post_generic(older)
    drain()
    assert runtime.store.get_customers(["C-ORDER"])["C-ORDER"].monthly_spend == 5000
    state = runtime.store.ticket_state([("generic", "T-ORDER")])[("generic", "T-ORDER")]
    assert state["last_event_id"] == newer["event_id"]
    assert client.get("/api/tickets/T-ORDER", headers=auth()).get_json() == before
    assert runtime.store.count("decisions") == 1


def test_updates_keep_the_earliest_creation_time(post_generic, drain, runtime, client):
    first = _event("T-AGE", {"id": "C-AGE"}, age_hours=72)
    post_generic(first)
    drain()
    # A later update whose created_at is missing must not reset the waiting time.
    update = _event("T-AGE", {"id": "C-AGE"})
    del update["ticket"]["created_at"]
    post_generic(update)
    drain()
    got = client.get("/api/tickets/T-AGE", headers=auth()).get_json()
    assert "AGED" in got["flags"]
    assert got["tier"] in ("urgent", "high")


def test_sub_second_event_order_is_respected(runtime):
    from plugin.jobs import _latest_per_ticket
    from webhooks.event import CustomerFacts, TicketEvent

    def ev(event_id, at):
        return TicketEvent(source="generic", event_id=event_id, occurred_at=at, ticket_id="T",
                           customer=CustomerFacts(id="C"))

    picked = _latest_per_ticket([ev("later", "2026-11-25T10:00:00.500000Z"), ev("earlier", "2026-11-25T10:00:00Z")])
    assert [e.event_id for e in picked] == ["later"]


def test_events_from_a_newer_version_with_extra_keys_still_process(runtime):
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    job = submit(runtime, [{"source": "generic", "event_id": "e-new", "occurred_at": now,
                            "ticket_id": "T-NEWVER", "future_field": 1,
                            "customer": {"id": "C-NEWVER", "future_customer_field": "x"}}])
    work(runtime)
    assert job.return_value()["decided"] == 1


def test_one_poison_event_does_not_hold_back_its_batch(runtime):
    """A failed batch is split until the bad event fails alone; the rest are decided."""
    from rq.registry import FailedJobRegistry

    now = dt.datetime.now(dt.timezone.utc).isoformat()
    good = [{"source": "generic", "event_id": f"e{i}", "occurred_at": now, "ticket_id": f"T-P{i}",
             "customer": {"id": f"C-P{i}"}} for i in range(7)]
    poison = {"source": "generic", "event_id": "bad", "occurred_at": now, "ticket_id": "T-BAD"}  # no customer
    submit(runtime, good[:3] + [poison] + good[3:])
    work(runtime)
    assert runtime.store.decided_events([e["event_id"] for e in good]) == {e["event_id"] for e in good}
    failed = Job.fetch_many(FailedJobRegistry(queue=runtime.queue).get_job_ids(),
                            connection=runtime.redis, serializer=JSONSerializer)
    assert [j.args[0] for j in failed] == [[["generic", "bad"]]]  # alone
    assert runtime.store.event_states(["bad"]) == {"bad": "pending"}  # one attempt counted
    assert runtime.store.parked()["events"] == []


def test_a_decision_for_a_superseded_event_does_not_become_current(post_generic, drain, runtime, client):
    """Two batches race on one ticket: the one ranking the older event must not win the pointer."""
    from connectors.crm.base import Decision

    post_generic(_event("T-RACE", {"id": "C-RACE", "monthly_spend": 9000, "contract_end": _today(3)}))
    drain()
    current = client.get("/api/tickets/T-RACE", headers=auth()).get_json()
    assert current["state"] == "written"
    late = Decision(source="generic", ticket_id="T-RACE", customer_id="C-RACE", tier="low", priority="Low",
                    score=0.0, flags=(), reason="Low: no priority signals", components={},
                    weights_version="x", decided_at="2026-11-25T00:00:00Z", event_id="an-older-event")
    recorded = runtime.store.record_decisions([late])
    assert client.get("/api/tickets/T-RACE", headers=auth()).get_json() == current
    assert runtime.store.count("decisions") == 2  # still kept as history
    from plugin.store import decisions as decisions_table

    with runtime.store.engine.connect() as conn:
        status = conn.execute(decisions_table.select().where(
            decisions_table.c.id == int(recorded[0].id))).one().status
    assert status == "superseded"
    assert runtime.desk("generic").read_tickets(["T-RACE"])["T-RACE"].priority == current["priority"]


def test_a_stale_event_can_still_move_creation_time_back(post_generic, drain, runtime, client):
    now = dt.datetime.now(dt.timezone.utc)
    newer = _event("T-BACK", {"id": "C-BACK"})
    del newer["ticket"]["created_at"]
    post_generic(newer)
    drain()
    older = _event("T-BACK", {"id": "C-BACK"}, age_hours=72)
    older["occurred_at"] = (now - dt.timedelta(hours=1)).isoformat()
    post_generic(older)
    drain()
    state = runtime.store.ticket_state([("generic", "T-BACK")])[("generic", "T-BACK")]
    assert state["last_event_id"] == newer["event_id"]
    assert state["created_at"] < now - dt.timedelta(hours=70)


def test_created_at_after_the_event_is_clamped(post_generic, drain, runtime):
    event = _event("T-FUT", {"id": "C-FUT"})
    # After the event, but within the clock-skew tolerance (further ahead is refused: 400).
    event["ticket"]["created_at"] = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)).isoformat()
    assert post_generic(event).status_code == 202
    drain()
    state = runtime.store.ticket_state([("generic", "T-FUT")])[("generic", "T-FUT")]
    occurred = dt.datetime.fromisoformat(event["occurred_at"])
    assert state["created_at"] <= occurred


def test_spend_is_compared_in_one_currency_and_an_unknown_one_is_said(post_generic, drain, runtime, client):
    """A ¥20,000/month customer is not a $20,000 one; a currency without a rate is not guessed."""
    _seed_book(runtime)  # 40 customers paying $20..$410 a month
    yen = _event("T-YEN", {"id": "C-YEN", "monthly_spend": 20_000, "currency": "JPY"})
    usd = _event("T-USD", {"id": "C-USD", "monthly_spend": 20_000, "currency": "USD"})
    odd = _event("T-ODD", {"id": "C-ODD", "monthly_spend": 20_000, "currency": "XTS"})
    for e in (yen, usd, odd):
        assert post_generic(e).status_code == 202
    drain()
    got = {t: client.get(f"/api/tickets/{t}", headers=auth()).get_json() for t in ("T-YEN", "T-USD", "T-ODD")}
    assert "VIP" in got["T-USD"]["flags"] and "VIP" not in got["T-YEN"]["flags"]
    assert "spend not ranked: no rate for XTS" in got["T-ODD"]["reason"]
    assert "spend top" not in got["T-ODD"]["reason"] and "VIP" not in got["T-ODD"]["flags"]


def test_tiers_by_share_follow_the_open_tickets_scores(runtime_with, client):
    """With ranking.tiers.mode = "share", the thresholds come from the open tickets' scores
    (summarised like the spend book) once there are enough of them."""
    import numpy as np

    from plugin.book import MIN_SHARE_BOOK
    from plugin.ranker import rank_tickets, tier_weights
    from ranking.priority import share_thresholds

    rt = runtime_with({"CLOUT_RANKING__TIERS__MODE": '"share"',
                       "CLOUT_RANKING__TIERS__SHARE_REFRESH_SECONDS": "0"})
    assert tier_weights(rt) == rt.settings.weights  # no open tickets yet: fixed thresholds
    events = [{**_event(f"T-SH{i}", {"id": f"C-SH{i}", "monthly_spend": float(10 * (i + 1) ** 2),
                                     "contract_end": _today(i * 9)}),
               "source": "generic", "ticket_id": f"T-SH{i}"} for i in range(MIN_SHARE_BOOK + 10)]
    from webhooks.event import CustomerFacts, TicketEvent

    submit(rt, [TicketEvent(source="generic", event_id=e["event_id"], occurred_at=e["occurred_at"],
                            ticket_id=e["ticket_id"], subject="Help",
                            customer=CustomerFacts(id=e["customer"]["id"],
                                                   monthly_spend=e["customer"]["monthly_spend"],
                                                   contract_end=e["customer"]["contract_end"])
                            ).to_dict() for e in events])
    work(rt)
    scores = rt.store.open_scores()
    assert len(scores) == MIN_SHARE_BOOK + 10
    w = tier_weights(rt)
    urgent, high, normal = share_thresholds(np.array(scores), 0.05, 0.20, 0.40)
    assert (w.tier_urgent, w.tier_high, w.tier_normal) == (max(urgent, high), max(high, 1e-6),
                                                           min(normal, max(high, 1e-6)))
    rows = [{**t, "event_id": t["last_event_id"]} for t in rt.store.open_tickets(None, 100)]
    tiers = [d.tier for d in rank_tickets(rt, rows)]
    assert tiers.count("urgent") <= max(1, round(0.05 * len(tiers)))


def test_text_the_model_cannot_read_is_marked_not_scored(post_generic, drain, client):
    german = _event("T-DE", {"id": "C-DE"}, subject="Die Rechnung ist falsch",
                    description="Wir wurden zweimal belastet und niemand antwortet auf unsere E-Mails.")
    english = _event("T-EN", {"id": "C-EN"}, subject="Charged twice",
                     description="We were charged twice and nobody answers our emails.")
    for e in (german, english):
        assert post_generic(e).status_code == 202
    drain()
    de = client.get("/api/tickets/T-DE", headers=auth()).get_json()
    en = client.get("/api/tickets/T-EN", headers=auth()).get_json()
    assert "complaint not scored: language not read" in de["reason"]
    assert "not scored" not in en["reason"] and "complaint" in en["reason"]
