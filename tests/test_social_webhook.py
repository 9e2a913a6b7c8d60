"""POST /webhooks/social: signature, shape, ignored types, delivery dedupe and merging repeats."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from conftest import TEST_SECRET, load_fixture, standard_webhook_headers
from plugin.settings import SettingsError, load_settings

SOCIAL_SECRET = "whsec_" + base64.b64encode(b"clout-social-secret-0123456789ab").decode()


@pytest.fixture()
def social_rt(runtime_with):
    return runtime_with({"CLOUT_WEBHOOK_SECRET_SOCIAL": SOCIAL_SECRET})


@pytest.fixture()
def social_client(social_rt):
    from plugin import create_app

    app = create_app(runtime=social_rt)
    app.config["TESTING"] = True
    return app.test_client()


def post(client, payload, *, msg_id=None, secret=SOCIAL_SECRET, ts=None, headers=None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = standard_webhook_headers(secret, msg_id or f"msg_{uuid.uuid4().hex}", body, ts)
    signed.update(headers or {})
    return client.post("/webhooks/social", data=body, headers=signed)


def test_signed_mention_is_stored_and_queued(social_client, social_rt):
    resp = post(social_client, load_fixture("social", "mention.created__complaint"))
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "queued" and body["job_id"]
    from plugin.mentions import mention_store

    stored = mention_store(social_rt).get(body["mention_id"])
    assert stored["network"] == "bluesky" and stored["state"] == "pending"
    assert stored["url"] == "https://bsky.app/profile/adaq.bsky.social/post/3kwifi1"
    assert stored["posted_at"] == "2026-11-25T09:14:00Z"
    assert [j.func_name for j in social_rt.queue.jobs] == ["plugin.mention_jobs.process_mention"]
    assert list(social_rt.queue.jobs[0].args) == [body["mention_id"]]  # an id, nothing else


@pytest.mark.parametrize("change, problem", [
    ({"secret": TEST_SECRET}, "no webhook-signature matches"),
    ({"ts": 1_000_000_000}, "off the server clock"),
    ({"headers": {"webhook-signature": ""}}, "missing header(s): webhook-signature"),
])
def test_bad_signature_is_401_and_stores_nothing(social_client, social_rt, change, problem):
    resp = post(social_client, load_fixture("social", "mention.created__complaint"), **change)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "bad_signature" and problem in resp.get_json()["message"]
    assert social_rt.store.count("social_mentions") == 0
    assert social_rt.queue.count == 0


def test_malformed_payloads_are_400_json_naming_fields(social_client, social_rt):
    resp = post(social_client, load_fixture("social", "mention.created__bad_fields"))
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"] == "bad_payload"
    fields = {d["field"] for d in body["details"]}
    assert {"data.network", "data.author.handle", "data.url", "data.text"} <= fields
    for raw in (b"{not json", b"[1, 2]", json.dumps({"type": "mention.created"}).encode(),
                b"[" * 100_000):
        resp = post(social_client, raw)
        assert resp.status_code == 400 and resp.get_json()["error"] == "bad_payload", raw[:20]
    future = load_fixture("social", "mention.created__complaint")
    future["data"]["posted_at"] = "2199-01-01T00:00:00Z"
    resp = post(social_client, future)
    assert resp.status_code == 400 and "data.posted_at" in resp.get_json()["message"]
    assert social_rt.store.count("social_mentions") == 0


def test_other_event_types_are_ignored_with_200(social_client, social_rt):
    resp = post(social_client, load_fixture("social", "mention.deleted__ignored"))
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "ignored" and "mention.deleted" in resp.get_json()["reason"]
    assert social_rt.store.count("social_mentions") == 0


def test_redelivery_and_repeats_are_merged(social_client, social_rt):
    from plugin.mentions import mention_store

    complaint = load_fixture("social", "mention.created__complaint")
    first = post(social_client, complaint, msg_id="msg_same")
    assert first.status_code == 202
    mention_id = first.get_json()["mention_id"]
    # The tool retries the same delivery: nothing changes.
    again = post(social_client, complaint, msg_id="msg_same")
    assert again.status_code == 200 and again.get_json() == {"mention_id": mention_id,
                                                              "status": "duplicate"}
    # The same post under a new delivery id (URL spelled differently): merged, counted.
    repeat = json.loads(json.dumps(complaint))
    repeat["data"]["url"] = "https://BSKY.app/profile/adaq.bsky.social/post/3kwifi1/?utm=x"
    merged = post(social_client, repeat)
    assert merged.status_code == 200 and merged.get_json() == {"mention_id": mention_id,
                                                                "status": "merged"}
    # A later post of the same author in the same thread: the same case.
    reply = post(social_client, load_fixture("social", "mention.created__thread_reply"))
    assert reply.get_json() == {"mention_id": mention_id, "status": "merged"}
    case = mention_store(social_rt).get(mention_id)
    assert case["seen_count"] == 3 and case["post_count"] == 2
    assert social_rt.store.count("social_mentions") == 1
    assert social_rt.queue.count == 1  # one job for the case, not one per repeat
    # Another author's post is another case.
    other = post(social_client, load_fixture("social", "mention.created__praise"))
    assert other.status_code == 202 and other.get_json()["mention_id"] != mention_id


def test_missing_secret_is_503_and_weak_secrets_are_refused(runtime_with, base_env):
    from plugin import create_app

    rt = runtime_with({})
    client = create_app(runtime=rt).test_client()
    resp = post(client, load_fixture("social", "mention.created__complaint"))
    assert resp.status_code == 503 and resp.get_json()["error"] == "not_configured"
    for weak in ("whsec_c2hvcnQ=", "not-base64-at-all!!", " "):
        with pytest.raises(SettingsError) as exc:
            load_settings({**base_env, "CLOUT_WEBHOOK_SECRET_SOCIAL": weak})
        message = str(exc.value)
        assert "CLOUT_WEBHOOK_SECRET_SOCIAL" in message
        assert weak.strip() == "" or weak not in message  # never echoed


def test_disabled_social_answers_404(runtime_with):
    from plugin import create_app

    rt = runtime_with({"CLOUT_WEBHOOK_SECRET_SOCIAL": SOCIAL_SECRET, "CLOUT_SOCIAL__ENABLED": "false"})
    client = create_app(runtime=rt).test_client()
    resp = post(client, load_fixture("social", "mention.created__complaint"))
    assert resp.status_code == 404 and resp.get_json()["error"] == "unknown_source"
