"""POST /webhooks/generic: signature, payload validation, dedupe, nothing queued on refusal."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from conftest import TEST_SECRET, load_fixture, standard_webhook_headers
from webhooks import generic
from webhooks.base import PayloadError, SignatureError, WebhookRequest


def _event(**overrides):
    payload = load_fixture("generic", "ticket_created__full")
    payload["event_id"] = f"evt_{uuid.uuid4().hex}"
    payload.update(overrides)
    return payload


def _inbox(runtime) -> list[dict]:
    from plugin.inbox import inbox_key

    return [json.loads(raw) for raw in runtime.redis.lrange(inbox_key(runtime.settings), 0, -1)]


def _assert_nothing_queued(runtime):
    assert runtime.queue.count == 0
    assert _inbox(runtime) == []
    prefix = runtime.settings.redis_key("seen", "*")
    assert list(runtime.redis.scan_iter(prefix)) == []


def test_valid_event_is_queued_with_202(post_generic, runtime):
    payload = _event()
    resp = post_generic(payload)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["event_id"] == payload["event_id"]
    assert body["status"] == "queued"
    assert runtime.queue.count == 1  # the drain job that will batch it
    job = runtime.queue.fetch_job(body["job_id"])
    assert job.func_name == "plugin.jobs.drain_inbox"
    events = _inbox(runtime)
    assert events[0]["ticket_id"] == "T-9001"
    assert events[0]["customer"]["handles"] == {"x": "adaq", "bluesky": "adaq.bsky.social"}
    assert events[0]["occurred_at"] == "2026-11-25T09:15:00.000000Z"
    # Jobs are plain JSON, not pickles.
    import zlib

    stored = json.loads(zlib.decompress(runtime.redis.hget(job.key, "data")))
    assert stored[0] == "plugin.jobs.drain_inbox"


def test_minimal_event_normalises_ids_and_timezones(post_generic, runtime):
    resp = post_generic(load_fixture("generic", "ticket_created__minimal"))
    assert resp.status_code == 202, resp.get_json()
    events = _inbox(runtime)
    assert events[0]["ticket_id"] == "4711"
    assert events[0]["occurred_at"] == "2026-11-25T09:00:00.000000Z"
    assert events[0]["customer"] == {
        "id": "C-9002", "name": None, "email": None, "handles": {}, "monthly_spend": None,
        "currency": None, "contract_end": None,
    }


def test_repeated_delivery_id_is_answered_200_and_not_queued_again(post_generic, runtime):
    payload = _event()
    first = post_generic(payload, msg_id="msg_repeat_1")
    second = post_generic(payload, msg_id="msg_repeat_1")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.get_json()["status"] == "duplicate"
    assert second.get_json()["job_id"] == first.get_json()["job_id"]
    # A different body under the same id is still the first delivery.
    third = post_generic(_event(), msg_id="msg_repeat_1")
    assert third.status_code == 200
    assert third.get_json()["event_id"] == payload["event_id"]
    assert len(_inbox(runtime)) == 1
    assert runtime.queue.count == 1
    from plugin.intake import seen_key

    ttl = runtime.redis.ttl(seen_key(runtime.settings, "generic", "msg_repeat_1"))
    assert ttl >= 72 * 3600


@pytest.mark.parametrize(
    "fixture, field",
    [
        ("ticket_created__wrong_types", "ticket.subject"),
        ("ticket_created__wrong_types", "customer.monthly_spend"),
        ("ticket_created__wrong_types", "customer.handles.x"),
        ("ticket_created__missing_customer", "customer"),
        ("ticket_created__bad_date", "occurred_at"),
        ("ticket_created__bad_date", "customer.contract_end"),
        ("ticket_updated__bad_status", "ticket.status"),
    ],
)
def test_invalid_payload_names_the_field(post_generic, runtime, fixture, field):
    resp = post_generic(load_fixture("generic", fixture))
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"] == "bad_payload"
    assert field in [d["field"] for d in body["details"]], body
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_body_that_is_not_an_event_is_400(post_generic, runtime, body, message):
    resp = post_generic(body)
    assert resp.status_code == 400
    assert message in resp.get_json()["message"]
    _assert_nothing_queued(runtime)


def test_missing_required_fields_listed(post_generic, runtime):
    resp = post_generic({"event_id": "e1"})
    assert resp.status_code == 400
    fields = {d["field"] for d in resp.get_json()["details"]}
    assert {"occurred_at", "ticket", "customer"} <= fields
    _assert_nothing_queued(runtime)


def test_wrong_secret_is_401(post_generic, runtime):
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    resp = post_generic(_event(), secret=other)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "bad_signature"
    _assert_nothing_queued(runtime)


def test_tampered_body_is_401(client, runtime):
    body = json.dumps(_event()).encode()
    headers = standard_webhook_headers(TEST_SECRET, "msg_tamper", body)
    resp = client.post("/webhooks/generic", data=body.replace(b"T-9001", b"T-9666"), headers=headers)
    assert resp.status_code == 401
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_signature_header_is_401(client, runtime, missing):
    body = json.dumps(_event()).encode()
    headers = standard_webhook_headers(TEST_SECRET, "msg_missing", body)
    del headers[missing]
    resp = client.post("/webhooks/generic", data=body, headers=headers)
    assert resp.status_code == 401
    assert missing in resp.get_json()["message"]
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_stale_or_future_timestamp_is_401(post_generic, runtime, skew):
    resp = post_generic(_event(), ts=int(time.time()) + skew)
    assert resp.status_code == 401
    assert "off the server clock" in resp.get_json()["message"]
    _assert_nothing_queued(runtime)


def test_timestamp_within_tolerance_is_accepted(post_generic):
    assert post_generic(_event(), ts=int(time.time()) - 290).status_code == 202


def test_a_burst_shares_one_drain_job_and_is_batched(post_generic, drain, runtime):
    ids = {post_generic(_event(ticket={"id": f"T-B{i}"})).get_json()["job_id"] for i in range(25)}
    assert len(ids) == 1 and runtime.queue.count == 1
    assert len(_inbox(runtime)) == 25
    drain()
    assert _inbox(runtime) == []
    assert runtime.store.count("decisions") == 25
    drain_job = runtime.queue.fetch_job(ids.pop())
    assert drain_job.return_value() == {"batches": 1, "events": 25}


def test_non_numeric_timestamp_is_401(post_generic, runtime):
    resp = post_generic(_event(), headers={"webhook-timestamp": "yesterday"})
    assert resp.status_code == 401
    _assert_nothing_queued(runtime)


def test_rotated_keys_any_matching_signature_passes(client, runtime):
    body = json.dumps(_event()).encode()
    headers = standard_webhook_headers(TEST_SECRET, "msg_rotate", body)
    headers["webhook-signature"] = "v1,AAAAbogus= " + headers["webhook-signature"] + " v2,zzz"
    assert client.post("/webhooks/generic", data=body, headers=headers).status_code == 202


def test_body_over_one_mib_is_413(post_generic, runtime):
    payload = _event()
    payload["ticket"]["description"] = "x" * (1024 * 1024)
    resp = post_generic(payload)
    assert resp.status_code == 413
    assert resp.get_json()["error"] == "body_too_large"
    _assert_nothing_queued(runtime)


def test_unknown_source_is_404_json(client, runtime):
    resp = client.post("/webhooks/nosuchdesk", data=b"{}")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "unknown_source"


def test_get_on_webhook_is_405_json(client):
    resp = client.get("/webhooks/generic")
    assert resp.status_code == 405
    assert resp.get_json()["error"] == "method_not_allowed"


def test_unconfigured_secret_is_503_and_nothing_queued(runtime_with):
    from plugin import create_app

    rt = runtime_with({"CLOUT_WEBHOOK_SECRET_GENERIC": None})
    client = create_app(runtime=rt).test_client()
    body = json.dumps(_event()).encode()
    resp = client.post("/webhooks/generic", data=body,
                       headers=standard_webhook_headers(TEST_SECRET, "m1", body))
    assert resp.status_code == 503
    assert "CLOUT" not in json.dumps(resp.get_json()) or "secret" in resp.get_json()["message"]
    assert rt.queue.count == 0


def test_queue_down_is_503_and_delivery_can_be_retried(runtime_with, post_generic):
    """Redis unreachable: 503 (the desk retries), and the id is not burnt."""
    import redis as redis_lib

    from plugin import create_app

    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    client = create_app(runtime=runtime_with(client=dead)).test_client()
    payload = _event()
    body = json.dumps(payload).encode()
    resp = client.post("/webhooks/generic", data=body,
                       headers=standard_webhook_headers(TEST_SECRET, "msg_retry_later", body))
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "queue_unavailable"
    # The same delivery against a working queue is accepted, not treated as a duplicate.
    assert post_generic(payload, msg_id="msg_retry_later").status_code == 202


# -- the two steps on their own ---------------------------------------------------


def _request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    from werkzeug.datastructures import Headers

    return WebhookRequest(method="POST", url="http://x/webhooks/generic", headers=Headers(headers), body=body)


def test_sign_matches_independent_signer():
    body = b'{"a": 1}'
    headers = standard_webhook_headers(TEST_SECRET, "msg_1", body, ts=1_700_000_000)
    assert generic.sign(TEST_SECRET, "msg_1", 1_700_000_000, body) == headers["webhook-signature"]
    generic.verify(_request(body, headers), TEST_SECRET, now=1_700_000_010, tolerance=300)
    with pytest.raises(SignatureError):
        generic.verify(_request(body, headers), TEST_SECRET, now=1_700_000_400, tolerance=300)


def test_parse_rejects_negative_spend_and_bad_currency():
    payload = _event()
    payload["customer"]["monthly_spend"] = -5
    payload["customer"]["currency"] = "euros"
    body = json.dumps(payload).encode()
    with pytest.raises(PayloadError) as err:
        generic.parse(_request(body, {"webhook-id": "m"}))
    fields = {d["field"] for d in err.value.details}
    assert {"customer.monthly_spend", "customer.currency"} <= fields


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda p: p["ticket"].update(id="T" * 129), "ticket.id"),
        (lambda p: p["customer"].update(id=""), "customer.id"),
        (lambda p: p["customer"].update(name="n" * 257), "customer.name"),
        (lambda p: p.update(event_id="e" * 257), "event_id"),
        (lambda p: p["customer"]["handles"].update(x="h" * 300), "customer.handles.x"),
        (lambda p: p["ticket"].update(id=None), "ticket.id"),
        (lambda p: p["ticket"].update(id=1.5), "ticket.id"),
        (lambda p: p["customer"].update(contract_end="2027-02-30"), "customer.contract_end"),
        (lambda p: p.update(occurred_at="0001-01-01T00:00:00+14:00"), "occurred_at"),
        (lambda p: p["ticket"].update(created_at="9999-12-31T23:59:59-12:00"), "ticket.created_at"),
        (lambda p: p.update(occurred_at=1764060000), "occurred_at"),
        (lambda p: p["customer"].update(contract_end=20270110), "customer.contract_end"),
        (lambda p: p["ticket"].update(subject="a\x00b"), "ticket.subject"),
        (lambda p: p["ticket"].update(id="T\x00"), "ticket.id"),
        (lambda p: p["customer"].update(name="\x00"), "customer.name"),
    ],
)
def test_values_the_store_cannot_hold_are_400(post_generic, runtime, mutate, field):
    payload = _event()
    mutate(payload)
    resp = post_generic(payload)
    assert resp.status_code == 400, resp.get_json()
    assert field in [d["field"] for d in resp.get_json()["details"]]
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\uDFFF", b"x\\udc00y"])
def test_half_a_surrogate_pair_is_400_and_nothing_is_queued(post_generic, runtime, escape):
    """JSON can spell a lone UTF-16 surrogate; no database can store the string Python makes
    of it. Refused at the door (a whole batch would fail on it later)."""
    body = json.dumps(_event()).encode().replace(b'"subject": "', b'"subject": "' + escape, 1)
    assert escape in body
    resp = post_generic(body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"] == "bad_payload" and "surrogate" in resp.get_json()["message"]
    _assert_nothing_queued(runtime)
    # A whole pair (an emoji) is fine.
    ok = json.dumps(_event()).encode().replace(b'"subject": "', b'"subject": "\\ud83d\\ude00', 1)
    assert post_generic(ok).status_code == 202


@pytest.mark.parametrize("number", [b"1e400", b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(post_generic, runtime, number):
    body = json.dumps(_event()).encode().replace(b"1250.5", number)
    resp = post_generic(body)
    assert resp.status_code == 400
    assert "customer.monthly_spend" in [d["field"] for d in resp.get_json()["details"]]
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize("value", ["1" + "0" * 400, "-" + "9" * 320, " 1700000000 ", "1_700_000_000",
                                   "1700000000.5", "+1700000000"])
def test_odd_timestamps_are_401_not_500(post_generic, runtime, value):
    resp = post_generic(_event(), headers={"webhook-timestamp": value})
    assert resp.status_code == 401
    assert "unix seconds" in resp.get_json()["message"]
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event_id": "e", "ticket": {"id": ' + b"9" * 5000 + b"}}",
    ],
)
def test_pathological_json_is_400_not_500(post_generic, runtime, body):
    resp = post_generic(body)
    assert resp.status_code == 400
    _assert_nothing_queued(runtime)


def test_concurrent_repeats_queue_exactly_one_job(app, runtime):
    """Many deliveries of one id at once: one 202, the rest duplicates naming the same job."""
    from concurrent.futures import ThreadPoolExecutor

    body = json.dumps(_event()).encode()
    headers = standard_webhook_headers(TEST_SECRET, "msg_race", body)

    def send(_):
        resp = app.test_client().post("/webhooks/generic", data=body, headers=headers)
        return resp.status_code, resp.get_json()["job_id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(24)))
    assert sorted(code for code, _ in results).count(202) == 1
    assert len({job for _, job in results}) == 1
    assert runtime.queue.count == 1
    assert len(_inbox(runtime)) == 1


@pytest.mark.parametrize("fixture, status, priority", [
    ("ticket_updated__solved", "closed", None),
    ("ticket_updated__agent_priority", "open", "Urgent"),
    ("ticket_created__full", None, "Normal"),
])
def test_ticket_status_and_desk_priority_are_parsed(fixture, status, priority):
    from webhooks import generic
    from webhooks.base import WebhookRequest

    body = json.dumps(load_fixture("generic", fixture)).encode()
    event = generic.parse(WebhookRequest(method="POST", url="", headers={"webhook-id": "m"},
                                         body=body)).events[0]
    assert (event.status, event.desk_priority) == (status, priority)
