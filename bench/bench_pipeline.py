"""Whole-pipeline figures on the embedded defaults (real Redis, real SQLite, real RQ).

1. Webhook intake: signed POSTs through the Flask app (verify -> parse -> dedupe
   -> inbox + drain job), requests/s.
2. The production worker (RQ's forking Worker) deciding the backlog those
   webhooks left, coalesced into batches, vs the same events one per job
   (the baseline), events/s and the ratio.
3. The same with SimpleWorker (no fork per job), 1 vs 100 events per job.
All runs share this process's embedded Redis and SQLite store.

    .venv/bin/python bench/bench_pipeline.py [N]
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rq import SimpleWorker, Worker
from rq.serializers import JSONSerializer

from plugin import create_app
from plugin import runtime as runtime_mod
from plugin.queues import enqueue_events as _enqueue_keys
from plugin.runtime import Runtime
from plugin.settings import load_settings

SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-123456").decode()
HANDLES = [{"x": "adaq"}, {"bluesky": "farah.bsky.social"}, {}, {"github": "kestrel-labs"}, {}]


def _event(i: int, run: str) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "event_id": f"bench-{run}-{i}",
        "occurred_at": now.isoformat(),
        "ticket": {"id": f"B-{run}-{i}", "subject": "Export broken again",
                   "description": "Refund please, this is unacceptable.",
                   "created_at": (now - dt.timedelta(hours=i % 72)).isoformat()},
        "customer": {"id": f"BC-{i % 400}", "monthly_spend": float(10 + (i * 37) % 5000),
                     "handles": HANDLES[i % len(HANDLES)],
                     "contract_end": (dt.date.today() + dt.timedelta(days=i % 200)).isoformat()},
    }


def _headers(msg_id: str, body: bytes) -> dict[str, str]:
    ts = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": "v1," + sig.decode(),
            "content-type": "application/json"}


def enqueue_events(queue, settings, events: list[dict]) -> None:
    """What the drain does for a batch: the events into the ledger, one job naming them."""
    rt = runtime_mod.current()
    rt.store.add_events([{"source": e["source"], "event_id": e["event_id"], "ticket_id": e["ticket_id"],
                          "occurred_at": e["occurred_at"], "payload": e} for e in events])
    _enqueue_keys(queue, settings, [[e["source"], e["event_id"]] for e in events])


def _drain(rt: Runtime) -> None:
    SimpleWorker([rt.queue], connection=rt.redis, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")


def main(n: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({
            "CLOUT_DATA_DIR": str(Path(tmp) / "data"),
            "CLOUT_WEBHOOK_SECRET_GENERIC": SECRET,
            "CLOUT_API_TOKEN": "bench-token-" + "0" * 32,
        })
        rt = Runtime(settings)
        runtime_mod.install(rt)
        logging_quiet()

        def fresh(count: int) -> list[dict]:
            """New tickets and event ids each run (decided events are skipped), same customers."""
            run = uuid.uuid4().hex[:6]
            return [_to_ticket_event(_event(i, run)) for i in range(count)]

        def decided() -> int:
            return rt.store.count("decisions")

        try:
            rt.warm()  # before fork, as `clout worker` does
            client = create_app(runtime=rt).test_client()
            # Warm the influence cache so every run below measures the same work.
            warm = fresh(n)
            for chunk in range(0, n, 100):
                enqueue_events(rt.queue, settings, warm[chunk:chunk + 100])
            _drain(rt)

            run = uuid.uuid4().hex[:6]
            bodies = [json.dumps(_event(i, run)).encode() for i in range(n)]
            t0 = time.perf_counter()
            for i, body in enumerate(bodies):
                resp = client.post("/webhooks/generic", data=body, headers=_headers(f"msg-{run}-{i}", body))
                assert resp.status_code == 202, resp.get_json()
            intake = time.perf_counter() - t0
            print(f"webhook intake             {n:>6} POSTs  {intake:7.2f} s  {n / intake:9,.0f} req/s")

            # The production path: RQ's forking Worker drains the backlog the webhooks left.
            before = decided()
            t0 = time.perf_counter()
            _fork_drain(rt)
            coalesced = time.perf_counter() - t0
            assert decided() - before == n
            print(f"forking Worker, coalesced  {n:>6} events {coalesced:7.2f} s  "
                  f"{n / coalesced:9,.0f} events/s  (webhook backlog, batches of <= "
                  f"{settings.config.queue.batch_size})")

            one_n = min(n, 300)
            before = decided()
            t0 = time.perf_counter()
            for event in fresh(one_n):
                enqueue_events(rt.queue, settings, [event])
            _fork_drain(rt)
            forked = time.perf_counter() - t0
            assert decided() - before == one_n
            print(f"forking Worker, 1 per job  {one_n:>6} events {forked:7.2f} s  "
                  f"{one_n / forked:9,.0f} events/s  (baseline: no coalescing)")
            print(f"coalescing speed-up        {(n / coalesced) / (one_n / forked):.1f} x")

            events = fresh(n)
            t0 = time.perf_counter()
            for event in events:
                enqueue_events(rt.queue, settings, [event])
            _drain(rt)
            one = time.perf_counter() - t0
            events = fresh(n)
            t0 = time.perf_counter()
            for chunk in range(0, n, 100):
                enqueue_events(rt.queue, settings, events[chunk:chunk + 100])
            _drain(rt)
            batched = time.perf_counter() - t0
            print(f"SimpleWorker, 1 per job    {n:>6} events {one:7.2f} s  {n / one:9,.0f} events/s")
            print(f"SimpleWorker, 100 per job  {n:>6} events {batched:7.2f} s  {n / batched:9,.0f} events/s"
                  f"  ({one / batched:.1f} x)")
            print(f"decisions recorded         {decided():,} (every run decided all of its events)")
        finally:
            runtime_mod.install(None)
            rt.close()


def _fork_drain(rt: Runtime) -> None:
    Worker([rt.queue], connection=rt.redis, serializer=JSONSerializer).work(
        burst=True, logging_level="WARNING")


def _to_ticket_event(payload: dict) -> dict:
    from webhooks import generic
    from webhooks.base import WebhookRequest

    req = WebhookRequest(method="POST", url="", headers={"webhook-id": "x"}, body=json.dumps(payload).encode())
    return generic.parse(req).events[0].to_dict()


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("rq").setLevel(logging.WARNING)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
