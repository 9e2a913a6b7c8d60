"""The inbox: events coalesced into batch jobs, never lost or doubled, even while webhooks stream in."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

from rq import SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from conftest import TEST_SECRET, standard_webhook_headers
from plugin.inbox import drain, drain_flag_key, drain_lock_key, ensure_drain, inbox_key


def _body(i: int) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    return json.dumps({"event_id": f"evt-{i}", "occurred_at": now, "ticket": {"id": f"T-{i}"},
                       "customer": {"id": f"C-{i % 50}"}}).encode()


def _batched_event_ids(runtime) -> list[str]:
    jobs = Job.fetch_many(runtime.queue.get_job_ids(), connection=runtime.redis, serializer=JSONSerializer)
    return [k[1] for j in jobs if j.func_name == "plugin.jobs.process_events" for k in j.args[0]]


def test_drain_keeps_up_while_webhooks_stream_in(app, runtime):
    total = 600
    posted: list[int] = []

    def post_all() -> None:
        client = app.test_client()
        for i in range(total):
            body = _body(i)
            resp = client.post("/webhooks/generic", data=body,
                               headers=standard_webhook_headers(TEST_SECRET, f"m-{i}", body))
            assert resp.status_code == 202
            posted.append(i)

    sender = threading.Thread(target=post_all)
    sender.start()
    moved_during_intake = 0
    while sender.is_alive():
        moved_during_intake += drain(runtime.redis, runtime.settings, runtime.store)["events"]
        time.sleep(0.01)
    sender.join()
    drain(runtime.redis, runtime.settings, runtime.store)

    assert moved_during_intake > 0, "the drain must make progress while webhooks keep arriving"
    assert runtime.redis.llen(inbox_key(runtime.settings)) == 0
    ids = _batched_event_ids(runtime)
    assert sorted(ids) == sorted(f"evt-{i}" for i in range(total))  # each once, none lost
    assert max(len(j.args[0]) for j in Job.fetch_many(
        runtime.queue.get_job_ids(), connection=runtime.redis, serializer=JSONSerializer)
        if j.func_name == "plugin.jobs.process_events") <= runtime.settings.config.queue.batch_size


def test_a_second_drain_waits_for_the_first(runtime, post_generic):
    for i in range(5):
        post_generic(json.loads(_body(i)))
    lock = runtime.redis.lock(drain_lock_key(runtime.settings), timeout=5, thread_local=False)
    assert lock.acquire()
    threading.Timer(0.5, lock.release).start()
    started = time.monotonic()
    result = drain(runtime.redis, runtime.settings, runtime.store)
    assert time.monotonic() - started >= 0.4
    assert result == {"batches": 1, "events": 5}


def test_stranded_events_are_picked_up_when_a_worker_starts(runtime, post_generic):
    for i in range(3):
        post_generic(json.loads(_body(i)))
    # The drain job is lost (say it failed for good): only the inbox remains.
    runtime.queue.empty()
    runtime.redis.delete(drain_flag_key(runtime.settings))
    assert runtime.redis.llen(inbox_key(runtime.settings)) == 3

    assert ensure_drain(runtime.redis, runtime.settings) is not None
    assert ensure_drain(runtime.redis, runtime.settings) is not None  # pending one is reused
    assert runtime.queue.count == 1
    SimpleWorker([runtime.queue], connection=runtime.redis, serializer=JSONSerializer).work(
        burst=True, logging_level="WARNING")
    assert runtime.store.decided_events([f"evt-{i}" for i in range(3)]) == {"evt-0", "evt-1", "evt-2"}
    assert ensure_drain(runtime.redis, runtime.settings) is None  # nothing waiting


def test_the_same_event_under_a_new_delivery_id_is_not_decided_twice(post_generic, runtime):
    payload = json.loads(_body(1))
    post_generic(payload, msg_id=f"a-{uuid.uuid4().hex}")
    _work(runtime)
    post_generic(payload, msg_id=f"b-{uuid.uuid4().hex}")  # a desk that re-sends with a new id
    _work(runtime)
    assert runtime.store.count("decisions") == 1


def _work(runtime) -> None:
    SimpleWorker([runtime.queue], connection=runtime.redis, serializer=JSONSerializer).work(
        burst=True, logging_level="WARNING")


def test_drain_moves_only_what_was_there_when_it_started(runtime, post_generic):
    for i in range(3):
        post_generic(json.loads(_body(i)))
    key = inbox_key(runtime.settings)
    assert drain(runtime.redis, runtime.settings, runtime.store) == {"batches": 1, "events": 3}
    assert runtime.redis.llen(key) == 0
    # A drain job is queued at the front: it is cheap and the inbox waits on it.
    post_generic(json.loads(_body(99)))
    first = Job.fetch(runtime.queue.get_job_ids()[0], connection=runtime.redis, serializer=JSONSerializer)
    assert first.func_name == "plugin.jobs.drain_inbox"
