"""Mentions end to end: webhook -> real RQ worker -> score, match, escalate, suggest.

The demo customers are the book; Ada Quinlan (C-1001: influence ~65 from the bundled
snapshot, renewal in 12 days) has an open ticket, Farah Nasser (C-1006, influence ~87)
has none, reposter.bsky.social is nobody's handle.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from conftest import auth, load_fixture, submit, work
from test_social_webhook import SOCIAL_SECRET, post


@pytest.fixture()
def make(runtime_with):
    """A runtime (with extra env) holding the demo customers, and its app's test client."""
    from plugin import bundled, create_app
    from plugin.demo import load_customers

    def build(**env: str):
        rt = runtime_with({"CLOUT_WEBHOOK_SECRET_SOCIAL": SOCIAL_SECRET, **env})
        rt.store.upsert_customers(load_customers(bundled.config_dir() / "demo" / "customers.json",
                                                 dt.date.today()))
        app = create_app(runtime=rt)
        app.config["TESTING"] = True
        return rt, app.test_client()

    return build


def open_ticket(rt, ticket_id: str, customer_id: str, subject: str = "Wifi on my bill") -> None:
    now = dt.datetime.now(dt.timezone.utc)
    submit(rt, [{"source": "generic", "event_id": f"evt-{uuid.uuid4().hex}",
                 "occurred_at": (now - dt.timedelta(minutes=5)).isoformat(),
                 "ticket_id": ticket_id, "subject": subject,
                 "description": "Please check my invoice.", "desk_priority": "Normal",
                 "ticket_created_at": (now - dt.timedelta(hours=1)).isoformat(),
                 "customer": {"id": customer_id}}])
    work(rt)


def mention_from(handle: str, text: str, network: str = "bluesky") -> dict:
    return {"type": "mention.created", "timestamp": "2026-11-25T09:15:00Z", "data": {
        "network": network, "author": {"handle": handle},
        "url": f"https://bsky.app/profile/{handle}/post/{uuid.uuid4().hex[:10]}", "text": text}}


LOUD = ("They CHARGED ME TWICE for wifi at the hotel. Unacceptable, I want a refund "
        "before I leave!")


def test_complaint_from_a_customer_raises_their_ticket_with_the_link_and_a_suggestion(make):
    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001")
    before = client.get("/api/tickets/T-2001", headers=auth()).get_json()
    assert "SOCIAL_COMPLAINT" not in before["flags"] and "social" not in before

    complaint = load_fixture("social", "mention.created__complaint")
    resp = post(client, complaint)
    assert resp.status_code == 202
    work(rt)  # the mention job, then the ticket's process_events job it queued

    ticket = client.get("/api/tickets/T-2001", headers=auth()).get_json()
    assert "SOCIAL_COMPLAINT" in ticket["flags"], ticket
    assert ticket["state"] == "written" and "public complaint" in ticket["reason"]
    url = complaint["data"]["url"]
    [mention] = ticket["social"]["mentions"]
    assert mention["url"] == url and mention["escalation"] == "raised"
    assert mention["customer_id"] == "C-1001" and mention["complaint"] >= 0.5
    assert mention["influence"] >= 60
    [offered] = ticket["social"]["goodwill"]
    assert offered["gesture"] == "credit_disputed_charge"
    assert offered["label"] == "Credit the disputed charge" and offered["used"] is None
    assert "influence 6" in offered["reason"] and offered["event_id"] == mention["event_id"]
    # The link is on the ticket itself, in the desk's text (the local desk keeps it).
    state = rt.store.ticket_state([("generic", "T-2001")])[("generic", "T-2001")]
    assert url in state["description"] and state["description"].startswith("Please check")

    # The same post again, and a reply in its thread: merged, no second escalation.
    assert post(client, complaint).get_json()["status"] == "merged"
    assert post(client, load_fixture("social", "mention.created__thread_reply")).get_json()[
        "status"] == "merged"
    work(rt)
    again = client.get("/api/tickets/T-2001", headers=auth()).get_json()
    assert len(again["social"]["mentions"]) == 1 and len(again["social"]["goodwill"]) == 1
    assert again["social"]["mentions"][0]["seen_count"] == 3
    assert rt.store.count("decisions") == 2  # the desk's event and the complaint, nothing more


def test_complaint_without_an_open_ticket_opens_one_in_the_local_desk(make):
    rt, client = make()
    resp = post(client, mention_from("farah.bsky.social", LOUD))
    mention_id = resp.get_json()["mention_id"]
    work(rt)
    ticket = client.get(f"/api/tickets/social-{mention_id}", headers=auth()).get_json()
    assert ticket["source"] == "generic" and ticket["customer_id"] == "C-1006"
    assert "SOCIAL_COMPLAINT" in ticket["flags"] and ticket["ticket_status"] == "open"
    assert ticket["social"]["mentions"][0]["escalation"] == "opened"
    queue = client.get("/api/queue", headers=auth()).get_json()["tickets"]
    assert [t["ticket_id"] for t in queue] == [f"social-{mention_id}"]


def test_praise_is_recorded_but_not_escalated(make):
    rt, client = make()
    open_ticket(rt, "T-2006", "C-1006")
    post(client, load_fixture("social", "mention.created__praise"))
    work(rt)
    [item] = client.get("/api/mentions", headers=auth()).get_json()["mentions"]
    assert item["customer"]["id"] == "C-1006" and item["is_complaint"] is False
    assert item["escalation"] == "none" and item["goodwill"] is None
    assert "social" not in client.get("/api/tickets/T-2006", headers=auth()).get_json()


def test_unknown_author_is_kept_as_a_prospect_with_influence(make):
    rt, client = make()
    post(client, load_fixture("social", "mention.created__prospect"))
    work(rt)
    [prospect] = client.get("/api/prospects", headers=auth()).get_json()["prospects"]
    assert prospect["network"] == "bluesky" and prospect["handle"] == "reposter.bsky.social"
    assert prospect["influence"] is not None and prospect["influence"] > 1
    assert prospect["mentions"] == 1
    [item] = client.get("/api/mentions", headers=auth()).get_json()["mentions"]
    assert item["customer"] is None and item["ticket_id"] is None
    assert rt.store.count("tickets") == 0


def test_feed_puts_the_loud_influential_complaint_first(make):
    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001")
    post(client, load_fixture("social", "mention.created__prospect"))
    post(client, load_fixture("social", "mention.created__praise"))
    post(client, mention_from("ines.bsky.social", "The wifi is a bit slow, not a big deal."))
    post(client, load_fixture("social", "mention.created__complaint"))
    work(rt)
    items = client.get("/api/mentions", headers=auth()).get_json()["mentions"]
    assert items[0]["customer"]["name"] == "Ada Quinlan"
    assert items[0]["customer"]["monthly_spend"] == 420.0 and items[0]["customer"]["contract_end"]
    assert items[0]["goodwill"]["gesture"] == "credit_disputed_charge"
    loudness = [i["loudness"] for i in items]
    assert loudness == sorted(loudness, reverse=True) and len(items) == 4
    only = client.get("/api/mentions?complaints=1", headers=auth()).get_json()["mentions"]
    assert [i["id"] for i in only] == [items[0]["id"]]
    assert client.get("/api/mentions?limit=0", headers=auth()).status_code == 400


def test_goodwill_budget_caps_a_gesture_and_falls_through(make):
    rt, client = make(CLOUT_GOODWILL__GESTURES__CREDIT_DISPUTED_CHARGE__MONTHLY_BUDGET="30.0")
    first = post(client, mention_from("adaq.bsky.social", LOUD)).get_json()["mention_id"]
    second = post(client, mention_from("farah.bsky.social", LOUD)).get_json()["mention_id"]
    work(rt)
    from plugin.mention_store import month_of
    from plugin.mentions import mention_store
    from plugin.store import utcnow

    ms = mention_store(rt)
    got = {m: ms.suggestion_for_mention(m) for m in (first, second)}
    assert got[first]["gesture"] == "credit_disputed_charge"  # 25 of 30
    assert got[second]["gesture"] == "personal_apology"  # another 25 would pass the cap
    month = month_of(utcnow())
    assert ms.budget_used("credit_disputed_charge", month) == 25.0

    # The agent didn't use the credit: its money goes back, and the next one gets it.
    resp = client.post(f"/api/suggestions/{got[first]['id']}", json={"used": False,
                                                                     "note": "guest declined"},
                       headers=auth())
    assert resp.status_code == 200
    assert resp.get_json()["used"] is False and resp.get_json()["note"] == "guest declined"
    assert ms.budget_used("credit_disputed_charge", month) == 0.0
    third = post(client, mention_from("adaq.bsky.social", LOUD + " Still waiting.")).get_json()
    work(rt)
    assert ms.suggestion_for_mention(third["mention_id"])["gesture"] == "credit_disputed_charge"


def test_no_suggestion_when_budget_is_spent_and_no_rule_left(make):
    rt, client = make(CLOUT_GOODWILL__GESTURES__CREDIT_DISPUTED_CHARGE__MONTHLY_BUDGET="0.0",
                      CLOUT_GOODWILL__RULES='[{gesture = "credit_disputed_charge", '
                                           'min_complaint = 0.5, min_influence = 50.0}]')
    resp = post(client, mention_from("adaq.bsky.social", LOUD)).get_json()
    work(rt)
    from plugin.mentions import mention_store

    case = mention_store(rt).get(resp["mention_id"])
    assert case["escalation"] in ("raised", "opened")
    assert mention_store(rt).suggestion_for_mention(resp["mention_id"]) is None
    assert rt.store.count("goodwill_suggestions") == 0


def test_recording_use_of_a_suggestion(make):
    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001")
    post(client, load_fixture("social", "mention.created__complaint"))
    work(rt)
    offered = client.get("/api/tickets/T-2001", headers=auth()).get_json()["social"]["goodwill"][0]
    url = f"/api/suggestions/{offered['id']}"
    assert client.post(url, json={"used": True}).status_code == 401
    for bad in ({"used": "yes"}, {}, {"used": True, "note": 5}, {"used": True, "note": "x" * 3000}):
        resp = client.post(url, json=bad, headers=auth())
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request", bad
    assert client.post(url, data=b"{nope", headers={**auth(), "content-type": "application/json"}
                       ).status_code == 400
    assert client.post("/api/suggestions/999999", json={"used": True}, headers=auth()).status_code == 404
    assert client.post("/api/suggestions/99999999999999", json={"used": True},
                       headers=auth()).status_code == 404
    resp = client.post(url, json={"used": True}, headers=auth())
    assert resp.status_code == 200 and resp.get_json()["used"] is True and resp.get_json()["used_at"]
    shown = client.get("/api/tickets/T-2001", headers=auth()).get_json()["social"]["goodwill"][0]
    assert shown["used"] is True


def test_demo_mentions_post_three_and_tell_the_story(make):
    from plugin.demo import load_customers  # noqa: F401  (the customers are loaded by `make`)
    from plugin.mentions import post_demo_mentions

    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001", subject="Export to CSV drops the last column")
    answers = post_demo_mentions(client, rt.settings, run_id="t1")
    assert [(a["http_status"], a["status"]) for a in answers] == [(202, "queued")] * 3
    work(rt)
    items = client.get("/api/mentions", headers=auth()).get_json()["mentions"]
    assert items[0]["customer"]["name"] == "Ada Quinlan" and "wifi" in items[0]["text"]
    assert items[0]["goodwill"]["label"] == "Credit the disputed charge"
    ticket = client.get("/api/tickets/T-2001", headers=auth()).get_json()
    assert "SOCIAL_COMPLAINT" in ticket["flags"]
    assert ticket["social"]["goodwill"][0]["gesture"] == "credit_disputed_charge"
    assert {i["customer"]["name"] if i["customer"] else None for i in items} == {
        "Ada Quinlan", "Farah Nasser", None}
    assert json.dumps(client.get("/api/prospects", headers=auth()).get_json()).count(
        "reposter.bsky.social") == 1


def test_a_raised_ticket_keeps_its_social_complaint_when_the_desk_sends_its_own_text(make):
    """The desk's next update replaces the ticket's text (without the post's line): the flag
    comes from the escalated mention, not from that line, so it stays."""
    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001")
    assert post(client, load_fixture("social", "mention.created__complaint")).status_code == 202
    work(rt)
    assert "SOCIAL_COMPLAINT" in client.get("/api/tickets/T-2001", headers=auth()).get_json()["flags"]

    now = dt.datetime.now(dt.timezone.utc)
    submit(rt, [{"source": "generic", "event_id": f"evt-{uuid.uuid4().hex}",
                 "occurred_at": now.isoformat(), "ticket_id": "T-2001",
                 "subject": "Wifi on my bill", "description": "Agent replied, waiting on you.",
                 "desk_priority": None, "ticket_created_at": (now - dt.timedelta(hours=1)).isoformat(),
                 "customer": {"id": "C-1001"}}])
    work(rt)
    ticket = client.get("/api/tickets/T-2001", headers=auth()).get_json()
    stored = rt.store.ticket_state([("generic", "T-2001")])[("generic", "T-2001")]
    assert "Public complaint posted" not in (stored.get("description") or "")
    assert "SOCIAL_COMPLAINT" in ticket["flags"], ticket
    assert "public complaint" in ticket["reason"]
    # Another customer's ticket, with no mention, is not touched by it.
    open_ticket(rt, "T-2002", "C-1002")
    assert "SOCIAL_COMPLAINT" not in client.get("/api/tickets/T-2002", headers=auth()).get_json()["flags"]
