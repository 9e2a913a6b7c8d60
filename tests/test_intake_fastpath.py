"""The intake's one-round-trip path: a Lua script while a drain is pending, MULTI/EXEC otherwise.

Real embedded Redis (or REDIS_URL), real Flask app; each test checks what Redis
holds afterwards, not just the HTTP answer.
"""

from __future__ import annotations

import json
import threading

import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer

from conftest import TEST_SECRET, standard_webhook_headers
from plugin.inbox import drain, drain_flag_key
from plugin.intake import Intake, event_json, seen_key
from test_webhook_generic import _event, _inbox
from webhooks.event import CustomerFacts, TicketEvent


def _drain_jobs(runtime) -> list[str]:
    jobs = Job.fetch_many(runtime.queue.get_job_ids(), connection=runtime.redis,
                          serializer=JSONSerializer)
    return [j.id for j in jobs if j is not None and j.func_name == "plugin.jobs.drain_inbox"]


def test_a_drain_is_queued_exactly_when_none_is_pending(post_generic, runtime):
    flag = drain_flag_key(runtime.settings)
    first = post_generic(_event())
    assert first.status_code == 202
    job_id = first.get_json()["job_id"]
    assert _drain_jobs(runtime) == [job_id]
    assert runtime.redis.get(flag).decode() == job_id

    # While it is pending, every webhook is answered with it and queues no other job.
    for _ in range(5):
        resp = post_generic(_event())
        assert resp.status_code == 202 and resp.get_json()["job_id"] == job_id
    assert _drain_jobs(runtime) == [job_id]
    assert len(_inbox(runtime)) == 6

    # A drain that starts clears the flag: the next webhook queues the next drain.
    assert drain(runtime.redis, runtime.settings, runtime.store)["events"] == 6
    after = post_generic(_event())
    assert after.status_code == 202
    second = after.get_json()["job_id"]
    assert second != job_id
    assert runtime.redis.get(flag).decode() == second
    assert second in _drain_jobs(runtime)

    # The flag expiring (a lost drain) is the same: a new drain is queued.
    runtime.redis.delete(flag)
    third = post_generic(_event()).get_json()["job_id"]
    assert third not in (job_id, second) and runtime.redis.get(flag).decode() == third


def test_a_duplicate_on_the_fast_path_answers_the_original_ids(post_generic, runtime):
    post_generic(_event())  # a drain is pending from here on: the script path
    payload = _event()
    first = post_generic(payload, msg_id="msg_fast_dup")
    again = post_generic(_event(), msg_id="msg_fast_dup")  # another body under the same id
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate"
    assert again.get_json()["event_id"] == payload["event_id"] == first.get_json()["event_id"]
    assert again.get_json()["job_id"] == first.get_json()["job_id"]
    assert [e["event_id"] for e in _inbox(runtime)].count(payload["event_id"]) == 1
    assert runtime.redis.ttl(seen_key(runtime.settings, "generic", "msg_fast_dup")) >= 72 * 3600


def test_the_same_delivery_racing_itself_is_queued_once(app, runtime, post_generic):
    post_generic(_event())
    payload = _event()
    body = json.dumps(payload).encode()
    headers = standard_webhook_headers(TEST_SECRET, "msg_race", body)
    answers: list[tuple[int, dict]] = []
    start = threading.Barrier(8)

    def send() -> None:
        client = app.test_client()
        start.wait()
        resp = client.post("/webhooks/generic", data=body, headers=headers)
        answers.append((resp.status_code, resp.get_json()))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for code, _ in answers) == [200] * 7 + [202]
    assert {(a["event_id"], a["job_id"]) for _, a in answers} == {
        (payload["event_id"], answers[0][1]["job_id"])}
    assert [e["event_id"] for e in _inbox(runtime)].count(payload["event_id"]) == 1


def test_events_reach_the_inbox_intact(post_generic, runtime):
    post_generic(_event())
    payload = _event(event_id="evt-ünïcode/\"quoted\"")
    payload["ticket"]["subject"] = "Ça ne\tmarche pas \u2603 \\ \"fin\""
    assert post_generic(payload).status_code == 202
    stored = _inbox(runtime)[-1]
    assert stored["event_id"] == payload["event_id"]
    assert stored["subject"] == payload["ticket"]["subject"]
    assert stored["customer"]["handles"] == {"x": "adaq", "bluesky": "adaq.bsky.social"}
    assert TicketEvent.from_dict(stored).to_dict() == stored


def test_event_json_reads_back_as_to_dict_with_its_keys_in_order():
    event = TicketEvent(
        source="generic", event_id="e-1", occurred_at="2026-11-25T09:15:00.000000Z", ticket_id="T-1",
        customer=CustomerFacts(id="C-1", name="Zoë", handles={"x": "zoe", "github": "z"},
                               monthly_spend=12.5, currency="EUR", contract_end="2027-01-10"),
        subject="s\u2603", desk_priority=None, status="open")
    for e in (event, TicketEvent(source="generic", event_id="e-2", occurred_at="", ticket_id="T-2",
                                 customer=CustomerFacts(id="C-2"))):
        text = event_json(e)
        back = json.loads(text)  # any JSON reader, not only the one that wrote it
        assert back == e.to_dict()
        assert list(back) == list(e.to_dict()) and list(back["customer"]) == list(e.to_dict()["customer"])
        assert TicketEvent.from_dict(back) == e
    assert "Zoë" in event_json(event) and "☃" in event_json(event)  # UTF-8, not \u escapes


def test_a_dropped_connection_is_replaced_and_the_event_accepted(post_generic, runtime):
    post_generic(_event())
    runner = runtime.intake._script
    conn = runner._connection()
    conn.send_command("CLIENT", "ID")
    own_id = conn.read_response()
    runtime.redis.client_kill_filter(_id=own_id)  # as a Redis restart or an idle timeout would
    payload = _event()
    resp = post_generic(payload)
    assert resp.status_code == 202
    assert _inbox(runtime)[-1]["event_id"] == payload["event_id"]


def test_redis_down_is_503_and_nothing_is_remembered(runtime_with, post_generic, runtime):
    from plugin import create_app

    dead = redis_lib.Redis(unix_socket_path="/nonexistent/clout-intake.sock",
                           socket_connect_timeout=0.2)
    client = create_app(runtime=runtime_with(client=dead)).test_client()
    payload = _event()
    body = json.dumps(payload).encode()
    resp = client.post("/webhooks/generic", data=body,
                       headers=standard_webhook_headers(TEST_SECRET, "msg_down", body))
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "queue_unavailable"
    assert runtime.redis.exists(seen_key(runtime.settings, "generic", "msg_down")) == 0
    assert post_generic(payload, msg_id="msg_down").status_code == 202


def test_a_pool_of_another_kind_goes_through_the_client(runtime, settings):
    """Sentinel and other pools are not driven directly; the same script runs via redis-py."""

    class OtherPool(redis_lib.ConnectionPool):
        pass

    base = runtime.redis.connection_pool
    client = redis_lib.Redis(connection_pool=OtherPool(connection_class=base.connection_class,
                                                       **base.connection_kwargs))
    intake = Intake(client, settings, runtime.queue)
    from webhooks import generic
    from webhooks.base import WebhookRequest

    payload = _event()
    body = json.dumps(payload).encode()
    parsed = generic.parse(WebhookRequest(method="POST", url="", headers={"webhook-id": "m-other"},
                                          body=body))
    first = intake.accept("generic", parsed)
    again = intake.accept("generic", parsed)
    assert not first.duplicate and first.job_id and first.event_id == payload["event_id"]
    assert again.duplicate and (again.job_id, again.event_id) == (first.job_id, first.event_id)
    client.connection_pool.disconnect()
