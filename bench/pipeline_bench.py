"""The worker path end to end: Clout's `clout worker` vs the naive design, in one run.

Real parts throughout: the embedded redis-server (or `REDIS_URL`), SQLite under a
temporary data dir (or `DATABASE_URL`, e.g. postgresql://postgres@127.0.0.1:5432/clout_bench,
created if missing and emptied first), the bundled snapshot influence (cache warmed
first, as in steady state) and the local desk (`generic`: decisions written to the store).
Every event enters through the real intake path: signed POST /webhooks/generic to
the Flask app (its test client) -> inbox -> drain job -> ledger -> batch jobs.

Phases (ticket ids carry a per-phase prefix; times are read back from the store):

1. book: `--customers` customers (default 100,000) in the store, influence cached;
2. naive: `--naive` events, then each moved from the inbox to the ledger as its own job
   and RQ's forking `Worker` running them: one forking job per event, one desk call per
   event (the baseline; the same job code, so it gains from every fix in the job too);
3. backlog: `--events` events (default 25,000) queued with no worker running, then one
   `python -m plugin.cli worker` process (exactly what `clout worker` runs) drains it;
   events/s = events / (last desk write - first event into the ledger);
4. idle: single events on the idle worker, webhook -> written to the desk, `--idle` times;
5. steady: `--rate` events/s (default 300) offered for `--seconds` (default 20) through
   the webhook, p50/p95/max webhook -> written to the desk;
6. the worker's peak RSS (VmHWM of the worker and of any process it forked).

Desk calls per 1,000 events count the local desk's write calls: each call stamps its
tickets with one `clout_written_at`, so distinct stamps = calls.

    .venv/bin/python bench/pipeline_bench.py [--events 25000] [--naive 200] [--rate 300]
        [--seconds 20] [--customers 100000] [--batch-size N]

Ends with ONE JSON line.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-123456").decode()
TOKEN = "bench-token-" + "0" * 32
HANDLES = [{"x": "adaq"}, {"bluesky": "farah.bsky.social"}, {}, {"github": "kestrel-labs"}, {},
           {"x": "danaokafor", "reddit": "dana_ok"}, {}, {"youtube": "@farahtech"}]
SUBJECTS = [("Export broken again", "Refund please, this is unacceptable. Third time this week."),
            ("Question about invoices", "Hi, where can I download last month's invoice? Thanks!"),
            ("SSO login fails", "Since this morning our team can't log in with SSO, error 500."),
            ("Feature request", "Would love a dark mode. Keep up the great work."),
            ("Data missing after sync", "Half of our records vanished after the nightly sync.")]
SETTLED = ("decided", "agent_override", "closed", "superseded", "stale", "unchanged")


# -- events and the webhook ---------------------------------------------------------------------

def customer_id(i: int, book: int) -> str:
    return f"C-{(i * 7919) % book}"


def customer_facts(n: int) -> dict[str, Any]:
    today = dt.date.today()
    return {"monthly_spend": float(10 + (n * 37) % 5000), "currency": "USD",
            "handles": HANDLES[n % len(HANDLES)],
            "contract_end": (today + dt.timedelta(days=n % 400)).isoformat()}


def event_body(phase: str, i: int, book: int) -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    cid = customer_id(i, book)
    subject, text = SUBJECTS[i % len(SUBJECTS)]
    return json.dumps({
        "event_id": f"{phase}-ev-{i}",
        "occurred_at": now.isoformat(),
        "ticket": {"id": f"{phase}-{i}", "subject": subject, "description": text,
                   "created_at": (now - dt.timedelta(minutes=i % 4000)).isoformat()},
        "customer": {"id": cid, "name": f"Customer {cid}", **customer_facts(int(cid[2:]))},
    }).encode()


def signed(msg_id: str, body: bytes) -> dict[str, str]:
    ts = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(ts), "webhook-signature": "v1," + base64.b64encode(mac).decode()}


class Poster:
    """Signed POSTs to /webhooks/generic through the Flask app (its test client)."""

    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def post(self, phase: str, i: int, book: int) -> float:
        body = event_body(phase, i, book)
        headers = signed(f"msg-{phase}-{i}", body)
        sent = time.time()
        resp = self.client.post("/webhooks/generic", data=body, headers=headers)
        if resp.status_code != 202:
            raise RuntimeError(f"webhook answered {resp.status_code}: {resp.get_data(as_text=True)}")
        return sent


# -- reading results back from the store --------------------------------------------------------

def _ts(value: Any) -> float:
    if value is None:
        return float("nan")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def settled_count(engine: sa.Engine, phase: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM events WHERE ticket_id LIKE :p AND state IN "
            "('decided','agent_override','closed','superseded','stale','unchanged')"),
            {"p": f"{phase}-%"}).scalar_one())


def wait_settled(engine: sa.Engine, phase: str, n: int, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while settled_count(engine, phase) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{phase}: only {settled_count(engine, phase)} of {n} settled "
                               f"after {timeout:.0f} s")
        time.sleep(every)


def phase_figures(engine: sa.Engine, phase: str) -> dict[str, Any]:
    """First ledger arrival, last desk write, write times per event, desk write calls."""
    with engine.connect() as conn:
        first = conn.execute(sa.text("SELECT min(received_at) FROM events WHERE ticket_id LIKE :p"),
                             {"p": f"{phase}-%"}).scalar_one()
        rows = conn.execute(sa.text(
            "SELECT e.event_id, d.written_at FROM events e JOIN decisions d ON d.id = e.decision_id "
            "WHERE e.ticket_id LIKE :p"), {"p": f"{phase}-%"}).all()
        calls = conn.execute(sa.text(
            "SELECT count(DISTINCT clout_written_at) FROM tickets WHERE id LIKE :p "
            "AND clout_written_at IS NOT NULL"), {"p": f"{phase}-%"}).scalar_one()
        decisions = conn.execute(sa.text("SELECT count(*) FROM decisions WHERE ticket_id LIKE :p"),
                                 {"p": f"{phase}-%"}).scalar_one()
        written = conn.execute(sa.text(
            "SELECT count(*) FROM tickets WHERE id LIKE :p AND clout_decision_id IS NOT NULL "
            "AND desk_priority IS NOT NULL AND desk_reason IS NOT NULL"), {"p": f"{phase}-%"}).scalar_one()
    if isinstance(first, str):  # SQLite without type info in a text() query
        first = dt.datetime.fromisoformat(first)
    written_at = {}
    for event_id, at in rows:
        if isinstance(at, str):
            at = dt.datetime.fromisoformat(at)
        written_at[event_id] = _ts(at)
    return {"first": _ts(first), "written_at": written_at, "calls": int(calls),
            "decisions": int(decisions), "tickets_written": int(written)}


def post_many(app: Any, phase: str, count: int, book: int, *, rate: float | None = None,
              threads: int = 8) -> tuple[dict[str, float], float]:
    """POST `count` events from `threads` senders (each with its own test client), at
    `rate` per second overall when given (event i is due at start + i / rate), else as
    fast as they go. Returns event id -> send time, and the worst lateness (s).

    Several senders, because each request waits for Redis to write the event to disk
    (the embedded server fsyncs every write): one sender alone can't offer 300/s here.
    """
    sent: dict[str, float] = {}
    late = [0.0]
    errors: list[BaseException] = []
    start = time.perf_counter() + 0.05

    def run(j: int) -> None:
        poster = Poster(app)
        try:
            for i in range(j, count, threads):
                if rate:
                    due = start + i / rate
                    now = time.perf_counter()
                    if now < due:
                        time.sleep(due - now)
                    else:
                        late[0] = max(late[0], now - due)
                sent[f"{phase}-ev-{i}"] = poster.post(phase, i, book)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(j,)) for j in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return sent, late[0]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- the worker process and its memory ----------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssWatch(threading.Thread):
    """Peak RSS of a process and of everything it forks (work-horses), sampled every 50 ms;
    the process's own VmHWM (kernel high-water mark) is read at the end."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.children_peak_kb = 0
        self.main_peak_kb = 0
        self._stop_flag = threading.Event()

    def run(self) -> None:
        while not self._stop_flag.wait(0.05):
            self.main_peak_kb = max(self.main_peak_kb, _status_kb(self.pid, "VmHWM"))
            for child in _descendants(self.pid):
                self.children_peak_kb = max(self.children_peak_kb, _status_kb(child, "VmHWM"))

    def stop(self) -> None:
        self.main_peak_kb = max(self.main_peak_kb, _status_kb(self.pid, "VmHWM"))
        self._stop_flag.set()
        self.join(2)


def start_worker(env: dict[str, str], log_path: Path, args: list[str]) -> subprocess.Popen:
    fh = log_path.open("ab")
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=fh,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # RQ's scheduler child, if it outlived the worker
    except (ProcessLookupError, PermissionError):
        pass


def wait_idle(rt: Any, timeout: float = 60.0) -> None:
    """The worker has registered and nothing is queued or running."""
    from rq import Worker
    from rq.registry import StartedJobRegistry

    deadline = time.monotonic() + timeout
    started = StartedJobRegistry(queue=rt.queue)
    while True:
        workers = Worker.all(queue=rt.queue)
        if workers and rt.queue.count == 0 and started.count == 0 and all(
                w.get_state() == "idle" for w in workers):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not become idle")
        time.sleep(0.05)


# -- setup --------------------------------------------------------------------------------------

def prepare_database(url: str | None) -> None:
    """PostgreSQL: create the database if missing; the schema is emptied by the caller."""
    if not url or not url.startswith(("postgresql", "postgres")):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed_book(rt: Any, book: int, warm_ids: list[str]) -> float:
    """`book` customers in the store, and the influence of `warm_ids` cached."""
    from connectors.crm.base import Customer
    from plugin.influence import lookup_influence

    t0 = time.perf_counter()
    chunk = 5000
    for start in range(0, book, chunk):
        rt.store.upsert_customers(
            Customer(id=f"C-{n}", name=f"Customer C-{n}", **customer_facts(n))
            for n in range(start, min(book, start + chunk)))
    cfg = rt.settings.config.influence
    customers = [Customer(id=cid, **customer_facts(int(cid[2:]))) for cid in sorted(set(warm_ids))]
    for start in range(0, len(customers), 2000):
        lookup_influence(customers[start:start + 2000], source=rt.influence, cache=rt.redis,
                         store=rt.store, ttl=cfg.cache_ttl_seconds,
                         prefix=rt.settings.redis_key("influence"),
                         not_found_ttl=cfg.not_found_ttl_seconds)
    return time.perf_counter() - t0


def naive_worker_main() -> None:
    """`--naive-worker`: the naive design. The webhooks' events leave the inbox one job
    each (no coalescing), and RQ's forking `Worker` runs them, burst: one work-horse and
    one desk call per event."""
    from rq.serializers import JSONSerializer

    from plugin import runtime as runtime_mod
    from plugin.inbox import inbox_key
    from plugin.logs import ensure_redacted_logging
    from plugin.queues import enqueue_events
    from plugin.runtime import Runtime
    from plugin.settings import load_settings
    from plugin.worker import CloutWorker, _warm_jobs

    rt = Runtime(load_settings())
    ensure_redacted_logging("WARNING")
    runtime_mod.install(rt)
    try:
        rt.warm()
        _warm_jobs()  # imported once before forking, so each horse doesn't import it again
        key = inbox_key(rt.settings)
        raw = rt.redis.lrange(key, 0, -1)
        events = [json.loads(r) for r in raw]
        rt.store.add_events([{"source": e["source"], "event_id": e["event_id"],
                              "ticket_id": e["ticket_id"], "occurred_at": e.get("occurred_at"),
                              "payload": e} for e in events])
        with rt.redis.pipeline() as pipe:
            for e in events:
                enqueue_events(rt.queue, rt.settings, [[e["source"], e["event_id"]]], pipeline=pipe)
            pipe.ltrim(key, len(raw), -1)
            pipe.execute()
        CloutWorker([rt.queue], connection=rt.redis, serializer=JSONSerializer).work(
            burst=True, logging_level="WARNING")
    finally:
        rt.close(grace=1.0)


# -- the run ------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=25_000, help="backlog size for Clout's worker")
    ap.add_argument("--naive", type=int, default=200, help="backlog size for the naive baseline")
    ap.add_argument("--rate", type=float, default=300.0, help="offered events/s in the steady phase")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the steady phase")
    ap.add_argument("--customers", type=int, default=100_000, help="customers in the book")
    ap.add_argument("--idle", type=int, default=5, help="single idle events to time")
    ap.add_argument("--batch-size", type=int, default=None, help="queue.batch_size (default: the setting's)")
    ap.add_argument("--naive-worker", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.naive_worker:
        naive_worker_main()
        return

    from plugin import create_app
    from plugin import runtime as runtime_mod
    from plugin.runtime import Runtime
    from plugin.settings import load_settings
    from plugin.store import metadata

    database_url = os.environ.get("DATABASE_URL")
    prepare_database(database_url)
    tmp = tempfile.TemporaryDirectory(prefix="clout-pipeline-bench-")
    data_dir = Path(tmp.name) / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    env.update({"CLOUT_DATA_DIR": str(data_dir), "CLOUT_WEBHOOK_SECRET_GENERIC": SECRET,
                "CLOUT_API_TOKEN": TOKEN, "CLOUT_QUEUE__NAME": f"bench-{uuid.uuid4().hex[:8]}",
                "PYTHONPATH": str(ROOT)})
    if opts.batch_size:
        env["CLOUT_QUEUE__BATCH_SIZE"] = str(opts.batch_size)
    rt = Runtime(load_settings(env))
    runtime_mod.install(rt)
    log_path = Path(tmp.name) / "worker.log"
    out: dict[str, Any] = {"bench": "pipeline", "database": rt.settings.database_url.split(":", 1)[0],
                           "batch_size": rt.settings.config.queue.batch_size,
                           "customers": opts.customers}
    worker = None
    try:
        rt.redis.ping()
        if database_url:
            metadata.drop_all(rt.store.engine)
        metadata.create_all(rt.store.engine)
        engine = rt.store.engine
        app = create_app(runtime=rt)
        poster = Poster(app)
        book = opts.customers

        ids = [customer_id(i, book) for i in range(max(opts.events, opts.naive, 20_000))]
        seeded = seed_book(rt, book, ids)
        print(f"book: {book:,} customers stored, influence of {len(set(ids)):,} cached "
              f"({seeded:.1f} s)", flush=True)

        # -- 2. naive: one forking job per event, one desk call per event
        naive_env = dict(env)
        post_many(app, "N", opts.naive, book)
        t0 = time.perf_counter()
        proc = start_worker(naive_env, log_path, [str(Path(__file__).resolve()), "--naive-worker"])
        proc.wait()
        wall = time.perf_counter() - t0
        wait_settled(engine, "N", opts.naive, 60)
        fig = phase_figures(engine, "N")
        span = max(fig["written_at"].values()) - fig["first"]
        naive_rate = opts.naive / span
        out["naive"] = {"events": opts.naive, "events_per_s": round(naive_rate, 1),
                        "seconds": round(span, 2), "wall_seconds_with_start": round(wall, 2),
                        "desk_calls_per_1000": round(1000 * fig["calls"] / opts.naive, 1)}
        print(f"naive (forking Worker, 1 event per job)  {opts.naive:>6} events {span:7.2f} s "
              f"{naive_rate:9,.0f} events/s  desk calls/1000 events: "
              f"{out['naive']['desk_calls_per_1000']:.0f}", flush=True)

        # -- 3. Clout: a backlog, then one `clout worker`
        t0 = time.perf_counter()
        post_many(app, "B", opts.events, book)
        posting = time.perf_counter() - t0
        print(f"backlog: {opts.events:,} events accepted through the webhook in {posting:.1f} s "
              f"({opts.events / posting:,.0f} req/s, test client, 8 senders)", flush=True)
        t0 = time.perf_counter()
        worker = start_worker(env, log_path, ["-m", "plugin.cli", "worker"])
        rss = RssWatch(worker.pid)
        rss.start()
        wait_settled(engine, "B", opts.events, timeout=max(120.0, opts.events / 200))
        wall = time.perf_counter() - t0
        fig = phase_figures(engine, "B")
        span = max(fig["written_at"].values()) - fig["first"]
        rate = opts.events / span
        out["clout"] = {"events": opts.events, "events_per_s": round(rate, 1),
                        "seconds": round(span, 2), "wall_seconds_with_start": round(wall, 2),
                        "desk_calls_per_1000": round(1000 * fig["calls"] / opts.events, 1),
                        "decisions": fig["decisions"], "tickets_written": fig["tickets_written"]}
        print(f"clout worker (backlog)                  {opts.events:>6} events {span:7.2f} s "
              f"{rate:9,.0f} events/s  desk calls/1000 events: "
              f"{out['clout']['desk_calls_per_1000']:.1f}  (wall incl. start {wall:.1f} s)", flush=True)
        if fig["decisions"] != opts.events or fig["tickets_written"] != opts.events:
            raise RuntimeError(f"backlog incomplete: {fig['decisions']} decisions, "
                               f"{fig['tickets_written']} tickets written of {opts.events}")

        # -- 4. single events on an idle system
        wait_idle(rt)
        idle = []
        for k in range(opts.idle):
            time.sleep(0.3)
            wait_idle(rt)
            sent = poster.post("I", k, book)
            wait_settled(engine, "I", k + 1, 30, every=0.002)
            idle.append(phase_figures(engine, "I")["written_at"][f"I-ev-{k}"] - sent)
        out["idle_ms"] = {"median": round(1000 * statistics.median(idle), 1),
                          "max": round(1000 * max(idle), 1), "n": len(idle)}
        print(f"single idle event, webhook -> written: median {out['idle_ms']['median']:.0f} ms, "
              f"max {out['idle_ms']['max']:.0f} ms ({len(idle)} events)", flush=True)

        # -- 5. steady offered rate through the webhook
        wait_idle(rt)
        total = int(opts.rate * opts.seconds)
        start = time.perf_counter()
        sent_at, late = post_many(app, "L", total, book, rate=opts.rate)
        offered = total / (time.perf_counter() - start)
        wait_settled(engine, "L", total, timeout=120)
        fig = phase_figures(engine, "L")
        lat = [fig["written_at"][e] - t for e, t in sent_at.items()]
        out["steady"] = {"offered_per_s": round(offered, 1), "events": total,
                         "p50_ms": round(1000 * pct(lat, 0.50), 1),
                         "p95_ms": round(1000 * pct(lat, 0.95), 1),
                         "max_ms": round(1000 * max(lat), 1),
                         "desk_calls_per_1000": round(1000 * fig["calls"] / total, 1),
                         "sender_max_late_ms": round(1000 * late, 1)}
        print(f"steady {offered:.0f} events/s offered for {opts.seconds:.0f} s: webhook -> written "
              f"p50 {out['steady']['p50_ms']:.0f} ms, p95 {out['steady']['p95_ms']:.0f} ms, "
              f"max {out['steady']['max_ms']:.0f} ms; desk calls/1000 events: "
              f"{out['steady']['desk_calls_per_1000']:.0f}", flush=True)

        rss.stop()
        stop_worker(worker)
        worker = None
        out["worker_peak_rss_mb"] = round(rss.main_peak_kb / 1024, 1)
        out["forked_peak_rss_mb"] = round(rss.children_peak_kb / 1024, 1)
        print(f"worker peak RSS {out['worker_peak_rss_mb']:.0f} MB (processes it forked: "
              f"{out['forked_peak_rss_mb']:.0f} MB) with a {book:,}-customer book", flush=True)
        out["ratio_vs_naive"] = round(rate / naive_rate, 1)
        print(f"Clout vs naive: {out['ratio_vs_naive']:.1f} x events/s", flush=True)
    finally:
        if worker is not None:
            stop_worker(worker)
        runtime_mod.install(None)
        rt.close(grace=1.0)
        tmp.cleanup()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
