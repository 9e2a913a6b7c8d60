"""Benchmark: what `appendfsync always` costs webhook intake, and what `everysec` risks.

The embedded redis-server answers a webhook's write (202) after it is in the
append-only file. With `always` redis also fsyncs that file before it replies;
with `everysec` a background thread fsyncs once a second. This script measures
both on the real embedded server (`plugin.redis_conn.connect`), in this one
process, the same way for each policy:

1. Ingest: one request = what `plugin/intake.py` writes for an accepted webhook,
   one MULTI/EXEC with SET NX EX (the delivery id, 96 h) + RPUSH (the event,
   ~700 bytes of JSON) on the inbox. Sequential (one client, like one desk
   retrying in order) and concurrent (`--clients` threads, like Flask's threaded
   server under a burst); requests/s per policy and the ratio.
2. The whole webhook: signed POSTs to `/webhooks/generic` through the Flask app
   (test client: verify, parse, dedupe, inbox), one after another, per policy.
3. Kill: `--clients` threads push unique events as fast as they can; after
   `--kill-after` seconds redis-server gets SIGKILL mid-burst; it is started
   again (same socket, its AOF replayed) and every push that was acknowledged
   is looked up. "lost" = acknowledged but missing after the restart. Done
   with the disk otherwise idle, and with another writer fsyncing 4 MiB chunks
   on the same disk (slow fsyncs are when `everysec` holds writes back: redis
   postpones the AOF write for up to 2 s while a background fsync runs, and
   answers the clients meanwhile).

    .venv/bin/python bench/bench_redis_fsync.py [--requests 3000] [--clients 8] [--rounds 3]
                                                [--webhooks 1000] [--kill-rounds 3] [--kill-after 1.0]

The last line printed is one JSON object with every figure.
SIGKILL of the process is what this can test; a power cut or kernel crash
(page cache lost) is not: there `everysec` can lose up to ~2 s of
acknowledged writes by design and `always` none.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

from plugin.redis_conn import FSYNC_POLICIES, RedisHandle, connect  # noqa: E402

DEDUPE_TTL = 345_600
INBOX = "clout:bench:inbox"


def event_body(i: str) -> str:
    """About the size of a generic webhook's TicketEvent as the inbox stores it."""
    return json.dumps({
        "event_id": f"evt_{i}", "source": "generic", "delivery_id": f"msg_{i}",
        "occurred_at": "2026-11-25T09:15:00+00:00", "received_at": "2026-11-25T09:15:01+00:00",
        "ticket": {"id": f"T-{i}", "subject": "Charged twice for the annual plan, need a refund",
                   "description": "Hi, my card was charged twice this morning for the renewal. "
                                  "Please refund the duplicate charge as soon as possible. " * 2,
                   "priority": "Normal", "status": "open", "created_at": "2026-11-25T09:14:30+00:00"},
        "customer": {"id": "C-1042", "name": "Farah Tech", "email": "ops@farah.example",
                     "handles": {"x": "farahtech", "github": "farah-tech"},
                     "monthly_spend": 420.0, "currency": "USD", "contract_end": "2027-01-10"},
    })


def accept(client: redis.Redis, i: str, body: str) -> None:
    """One accepted webhook, as intake writes it: remember the delivery id + push, atomically."""
    with client.pipeline(transaction=True) as pipe:
        pipe.set(f"clout:bench:seen:{i}", json.dumps({"event_id": f"evt_{i}"}), nx=True, ex=DEDUPE_TTL)
        pipe.rpush(INBOX, body)
        pipe.execute()


def ingest(handle: RedisHandle, requests: int, clients: int) -> float:
    """requests/s for `requests` accepts spread over `clients` threads (own connection each)."""
    run = uuid.uuid4().hex[:8]
    per_client = requests // clients
    bodies = [[event_body(f"{run}-{c}-{k}") for k in range(per_client)] for c in range(clients)]
    conns = [handle.new_client() for _ in range(clients)]
    for conn in conns:
        conn.ping()
    start_line = threading.Barrier(clients + 1)

    def push(c: int) -> None:
        conn = conns[c]
        start_line.wait()
        for k, body in enumerate(bodies[c]):
            accept(conn, f"{run}-{c}-{k}", body)

    threads = [threading.Thread(target=push, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for conn in conns:
        conn.close()
    handle.client.delete(INBOX)
    return per_client * clients / elapsed


SECRET = "whsec_" + base64.b64encode(b"bench-fsync-secret-0123456789ab").decode()


def signed(msg_id: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def webhook_app(data_dir: Path, policy: str):
    """The Flask app over a Runtime whose embedded Redis runs with `policy`."""
    from plugin import create_app
    from plugin.runtime import Runtime
    from plugin.settings import load_settings

    settings = load_settings({"CLOUT_DATA_DIR": str(data_dir), "CLOUT_WEBHOOK_SECRET_GENERIC": SECRET,
                              "CLOUT_API_TOKEN": "bench-token-" + "0" * 32})
    rt = Runtime(settings, redis_handle=connect(None, data_dir, fsync=policy))
    return rt, create_app(runtime=rt).test_client()


def webhooks(client, n: int) -> float:
    """Signed POSTs per second, one after another."""
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps({"event_id": f"evt-{run}-{i}", "occurred_at": "2026-11-25T09:15:00Z",
                          "ticket": {"id": f"T-{run}-{i}", "subject": "Charged twice, refund please"},
                          "customer": {"id": f"C-{i % 50}", "monthly_spend": 420.0}}).encode()
              for i in range(n)]
    t0 = time.perf_counter()
    for i, body in enumerate(bodies):
        resp = client.post("/webhooks/generic", data=body, headers=signed(f"msg-{run}-{i}", body))
        assert resp.status_code == 202, resp.get_json()
    return n / (time.perf_counter() - t0)


class DiskPressure:
    """Another writer on the same disk (4 MiB writes, each fsynced), as a busy host would have:
    it makes redis' own fsyncs slow, which is when `everysec` holds writes back."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "pressure.bin"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        chunk = os.urandom(4 << 20)
        with open(self.path, "wb") as fh:
            while not self._stop.is_set():
                fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
                if fh.tell() > 256 << 20:
                    fh.seek(0)

    def __enter__(self) -> "DiskPressure":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)


def kill_round(data_dir: Path, policy: str, clients: int, kill_after: float) -> dict[str, int]:
    handle = connect(None, data_dir, fsync=policy)
    acked: list[list[str]] = [[] for _ in range(clients)]
    stop = threading.Event()

    def push(c: int) -> None:
        conn = handle.new_client()
        k = 0
        try:
            while not stop.is_set():
                i = f"{c}-{k}"
                try:
                    accept(conn, i, event_body(i))
                except redis.RedisError:
                    return  # the server is gone: this push was never acknowledged
                acked[c].append(f"evt_{i}")  # the 202 a desk would have got
                k += 1
        finally:
            conn.close()

    pid = handle.server_pid
    threads = [threading.Thread(target=push, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(kill_after)
    # Writes redis answered while holding them back behind a slow fsync (everysec only).
    delayed = int(handle.client.info("persistence").get("aof_delayed_fsync", 0))
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
    stop.set()
    deadline = time.monotonic() + 10
    while handle.server_pid == pid and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.ensure_server(), "the killed server should have been started again"
    present = {json.loads(raw)["event_id"] for raw in handle.client.lrange(INBOX, 0, -1)}
    acknowledged = {i for per in acked for i in per}
    result = {"acked": len(acknowledged), "lost": len(acknowledged - present),
              "unacked_but_kept": len(present - acknowledged),
              "aof_delayed_fsync": delayed}
    handle.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="accepts per measured run")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    ap.add_argument("--rounds", type=int, default=3, help="measured runs per policy (median kept)")
    ap.add_argument("--webhooks", type=int, default=1000,
                    help="signed POSTs through the Flask app per run (0 skips this part)")
    ap.add_argument("--kill-rounds", type=int, default=3, help="SIGKILL rounds per policy")
    ap.add_argument("--kill-after", type=float, default=1.0, help="seconds into the burst to SIGKILL")
    args = ap.parse_args()
    logging.getLogger("plugin.redis_conn").setLevel(logging.ERROR)  # "was gone; started again"

    root = Path(tempfile.mkdtemp(prefix="clout-fsync-"))
    figures: dict[str, dict[str, list[float]]] = {p: {"sequential": [], "concurrent": []}
                                                  for p in FSYNC_POLICIES}
    kills: dict[str, list[dict[str, int]]] = {p: [] for p in FSYNC_POLICIES}
    http: dict[str, list[float]] = {p: [] for p in FSYNC_POLICIES}
    busy: dict[str, list[dict[str, int]]] = {p: [] for p in FSYNC_POLICIES}
    try:
        handles = {p: connect(None, root / f"ingest-{p}", fsync=p) for p in FSYNC_POLICIES}
        try:
            for p, h in handles.items():
                assert h.client.config_get("appendfsync")["appendfsync"] == p
                ingest(h, 200, 2)  # warm-up: connections, AOF file, page cache
            # Interleaved, so a noisy neighbour or a disk hiccup hits both policies alike.
            for r in range(args.rounds):
                for p in (FSYNC_POLICIES if r % 2 == 0 else FSYNC_POLICIES[::-1]):
                    figures[p]["sequential"].append(ingest(handles[p], args.requests // 4, 1))
                    figures[p]["concurrent"].append(ingest(handles[p], args.requests, args.clients))
        finally:
            for h in handles.values():
                h.close()
        if args.webhooks:
            apps = {p: webhook_app(root / f"http-{p}", p) for p in FSYNC_POLICIES}
            try:
                for p, (_rt, client) in apps.items():
                    webhooks(client, 100)  # warm-up
                for r in range(args.rounds):
                    for p in (FSYNC_POLICIES if r % 2 == 0 else FSYNC_POLICIES[::-1]):
                        http[p].append(webhooks(apps[p][1], args.webhooks))
            finally:
                for rt, _client in apps.values():
                    rt.close()
        for r in range(args.kill_rounds):
            for p in FSYNC_POLICIES:
                kills[p].append(kill_round(root / f"kill-{p}-{r}", p, args.clients, args.kill_after))
                with DiskPressure(root / "pressure"):
                    busy[p].append(kill_round(root / f"busy-{p}-{r}", p, args.clients, args.kill_after))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {p: {mode: statistics.median(v) for mode, v in modes.items()} for p, modes in figures.items()}
    print(f"webhook-style ingest (MULTI/EXEC SET NX EX + RPUSH), embedded redis-server, "
          f"median of {args.rounds}:")
    print(f"  {'appendfsync':<12} {'1 client req/s':>15} {f'{args.clients} clients req/s':>17}")
    for p in FSYNC_POLICIES:
        print(f"  {p:<12} {med[p]['sequential']:>15,.0f} {med[p]['concurrent']:>17,.0f}")
    ratio_seq = med["everysec"]["sequential"] / med["always"]["sequential"]
    ratio_conc = med["everysec"]["concurrent"] / med["always"]["concurrent"]
    print(f"  everysec / always: {ratio_seq:.2f}x with 1 client, {ratio_conc:.2f}x with "
          f"{args.clients} clients")
    print(f"  one client, per accept: always {1000 / med['always']['sequential']:.2f} ms, "
          f"everysec {1000 / med['everysec']['sequential']:.2f} ms")
    http_med = {p: statistics.median(v) for p, v in http.items() if v}
    http_ratio = None
    if http_med:
        http_ratio = http_med["everysec"] / http_med["always"]
        print(f"whole webhook (signed POST through the Flask app, one after another), median of "
              f"{args.rounds} x {args.webhooks}:")
        for p in FSYNC_POLICIES:
            print(f"  {p:<12} {http_med[p]:>9,.0f} req/s  ({1000 / http_med[p]:.2f} ms each)")
        print(f"  everysec / always: {http_ratio:.2f}x")
    print(f"SIGKILL of redis-server {args.kill_after:.1f} s into a burst of {args.clients} clients, "
          f"{args.kill_rounds} rounds per policy:")
    totals: dict[str, dict] = {"idle_disk": {}, "busy_disk": {}}
    for label, rounds in (("idle_disk", kills), ("busy_disk", busy)):
        busy_text = "another writer fsyncing 4 MiB chunks on the same disk"
        print(f"  {'disk otherwise idle' if label == 'idle_disk' else busy_text}:")
        for p in FSYNC_POLICIES:
            acked = sum(k["acked"] for k in rounds[p])
            lost = sum(k["lost"] for k in rounds[p])
            totals[label][p] = {"acked": acked, "lost": lost, "rounds": rounds[p]}
            print(f"    {p:<12} acknowledged {acked:>7,}  lost after restart {lost:>5}  "
                  f"(per round: {', '.join(str(k['lost']) for k in rounds[p])})")
    print(json.dumps({
        "bench": "redis_fsync", "requests": args.requests, "clients": args.clients, "rounds": args.rounds,
        "req_per_s": {p: {m: round(v, 1) for m, v in med[p].items()} for p in FSYNC_POLICIES},
        "ratio_everysec_over_always": {"sequential": round(ratio_seq, 3), "concurrent": round(ratio_conc, 3),
                                       "webhook": round(http_ratio, 3) if http_ratio else None},
        "webhook_req_per_s": {p: round(v, 1) for p, v in http_med.items()},
        "kill": totals,
    }))


if __name__ == "__main__":
    main()
