"""Clout's real stack as separate processes, for crash and outage tests (and bench/crash_table.py).

`CrashStack` runs `python -m plugin.cli web --port 0` and any number of
`python -m plugin.cli worker` processes against one data dir, with the
test-only `acme` desk (tests/desks) served over real HTTP from this process.
The subprocesses learn about `acme` through a `sitecustomize.py` put first on
their PYTHONPATH: it appends the repo's `tests` dir to `sys.path` and adds the
one registry line `connectors.crm.DESKS["acme"] = "desks.acme"`, exactly what
adding a desk means.

It posts signed webhooks to `/webhooks/acme`, freezes (SIGSTOP), thaws and kills
(SIGKILL) a worker together with everything it forked (RQ's work-horse calls
setpgrp and its scheduler is a separate process, so "the worker" is the whole
tree), and counts what matters for the issue's guarantees:

- accepted: events the web answered 202 for;
- decided: ledger events in a settled state (`Store.decided_events`);
- lost: accepted but not decided by the deadline;
- double-written: a (ticket, Clout decision id) the desk received more than once;
- decided twice: a ticket with more than one row in `decisions`.

The stage functions at the bottom (`stage_*`) are shared by
tests/test_crash_recovery.py and bench/crash_table.py.

Redis is the embedded server by default: this process starts it first (as a
Clout process would, via `plugin.redis_conn.connect`) so it can poll Clout's
keys, and is the last one out, so the server stops when the stack closes even
though SIGKILLed workers never say goodbye. Pass `redis_url` to use another
Redis (a unique queue name keeps stacks apart).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # bench/crash_table.py imports us from outside pytest
    sys.path.insert(0, str(TESTS))

from conftest import TEST_SECRET, TEST_TOKEN, standard_webhook_headers
from desks.server import AcmeServer

ACME_KEY = "acme-key-crash"
DEADLINE = 60.0  # the bound: seconds until every accepted event is decided

SITECUSTOMIZE = """\
# Written by tests/crash_harness.py: makes the test-only `acme` desk known to Clout's
# processes, the way a desk is added (its modules on the path, one registry line).
import sys

sys.path.append({tests!r})
try:
    from connectors import crm as _crm

    _crm.DESKS.setdefault("acme", "desks.acme")
except Exception as _exc:  # pragma: no cover - shows up in the process' log
    sys.stderr.write("crash harness sitecustomize: %r\\n" % (_exc,))
"""


# -- processes ----------------------------------------------------------------

def _ppid_map(newer_than: int = 0) -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc (only pids above `newer_than`, if given: children
    are almost always younger, i.e. numbered higher, than their parent, and reading fewer
    entries freezes a forking tree faster)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) <= newer_than:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children[int(fields[1])].append(int(entry))
    return children


def descendants(pid: int, *, quick: bool = False) -> list[int]:
    """Every living process below `pid` (children, grandchildren...), from /proc; `quick`
    looks only at younger pids (see `_ppid_map`)."""
    tree = _ppid_map(pid if quick else 0)
    out: list[int] = []
    todo = list(tree.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return [p for p in out if not _is_redis_server(p)]


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    started_at: float  # time.monotonic()
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def freeze(proc: Proc) -> list[int]:
    """SIGSTOP the process and everything it forked; returns the pids stopped."""
    _signal(proc.pid, signal.SIGSTOP)
    stopped = {proc.pid}
    for p in descendants(proc.pid, quick=True):  # the work-horse first, as fast as we can
        _signal(p, signal.SIGSTOP)
        stopped.add(p)
    while True:  # a child may have been forking as we stopped its parent: repeat until stable
        new = [p for p in descendants(proc.pid) if p not in stopped]
        if not new:
            return sorted(stopped)
        for p in new:
            _signal(p, signal.SIGSTOP)
            stopped.add(p)


def thaw(proc: Proc) -> None:
    for p in [proc.pid, *descendants(proc.pid)]:
        _signal(p, signal.SIGCONT)


def kill_tree(proc: Proc, timeout: float = 10.0) -> list[int]:
    """SIGKILL the process and everything it forked, at one instant (all frozen first)."""
    pids = freeze(proc)
    for p in pids:
        _signal(p, signal.SIGKILL)
    proc.killed = True
    try:
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL can't be refused
        pass
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


def terminate(proc: Proc, timeout: float = 20.0) -> int | None:
    """SIGTERM (after SIGCONT, in case it is frozen) and wait; SIGKILL the tree if it hangs."""
    if proc.popen.poll() is None:
        thaw(proc)
        _signal(proc.pid, signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
    else:  # already gone: make sure nothing it forked lives on
        for p in descendants(proc.pid):
            _signal(p, signal.SIGKILL)
    return proc.popen.returncode


# -- results --------------------------------------------------------------------

@dataclass
class StageResult:
    stage: str
    accepted: int  # distinct events answered 202
    decided_in_time: int  # of those, decided within the deadline after the restart
    lost: int  # accepted but not decided within the deadline
    double_written: int  # (ticket, decision) pairs the desk received more than once
    decided_twice: int  # tickets with more than one decision
    seconds: float | None  # restart -> every accepted event decided (None: not within `observe`)
    deliveries: int = 0  # webhooks answered 202 (more than `accepted` when events are redelivered)
    notes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the stack ------------------------------------------------------------------

class CrashStack:
    """One data dir, one Redis, one acme desk, a web process and the workers you start."""

    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None,
                 redis_url: str | None = None, database_url: str | None = None,
                 web_database_url: str | None = None, read_database_url: str | None = None,
                 queue_name: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.site_dir = self.workdir / "site"
        self.site_dir.mkdir(exist_ok=True)
        (self.site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tests=str(TESTS)))
        self.queue_name = queue_name or f"crash-{uuid.uuid4().hex[:10]}"
        self.redis_url = redis_url
        self.database_url = database_url
        self.web_database_url = web_database_url or database_url
        self.read_database_url = read_database_url or database_url
        self.extra_env = dict(env or {})
        self.server = AcmeServer().start()
        self.procs: list[Proc] = []
        self.web: Proc | None = None
        self.base_url: str | None = None
        self._redis_handle = None
        self._redis = None
        self._store = None
        self._local = threading.local()
        self._serial = 0
        self._serial_lock = threading.Lock()
        self.rejected: collections.Counter[int] = collections.Counter()

    # -- set-up ------------------------------------------------------------

    def env(self, database_url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
        for name in ("REDIS_URL", "DATABASE_URL", "PYTHONPATH"):
            env.pop(name, None)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(self.site_dir), str(ROOT)]),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "CLOUT_DATA_DIR": str(self.data_dir),
            "CLOUT_QUEUE__NAME": self.queue_name,
            "CLOUT_WEBHOOK_SECRET_GENERIC": TEST_SECRET,
            "CLOUT_API_TOKEN": TEST_TOKEN,
            "CLOUT_DESKS__ACME__ENABLED": "true",
            "CLOUT_DESKS__ACME__BASE_URL": self.server.url,
            "CLOUT_WEBHOOK_SECRET_ACME": TEST_SECRET,
            "CLOUT_ACME_API_KEY": ACME_KEY,
        })
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        db = database_url or self.database_url
        if db:
            env["DATABASE_URL"] = db
        env.update(self.extra_env)
        return env

    @property
    def settings(self):
        from plugin.settings import load_settings

        env = self.env(self.read_database_url)
        return load_settings({k: v for k, v in env.items()
                              if k.startswith("CLOUT_") or k in ("REDIS_URL", "DATABASE_URL")})

    def key(self, *parts: str) -> str:
        return ":".join(("clout", self.queue_name, *parts))

    @property
    def redis(self):
        """This process' client on the stack's Redis (the embedded server is started here first)."""
        if self._redis is None:
            if self.redis_url:
                import redis

                self._redis = redis.Redis.from_url(self.redis_url)
            else:
                from plugin.redis_conn import connect

                self._redis_handle = connect(None, self.data_dir)
                self._redis = self._redis_handle.client
        return self._redis

    @property
    def store(self):
        if self._store is None:
            from plugin.store import Store

            url = self.read_database_url or f"sqlite:///{self.data_dir / 'clout.db'}"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._store = Store.from_url(url)
            self._store.create_schema()
        return self._store

    def _spawn(self, name: str, *args: str, database_url: str | None = None) -> Proc:
        log = self.logs / f"{name}.log"
        fh = log.open("ab")
        try:
            popen = subprocess.Popen([sys.executable, "-m", "plugin.cli", *args],
                                     env=self.env(database_url),
                                     stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir)
        finally:
            fh.close()
        proc = Proc(name=name, popen=popen, log=log, started_at=time.monotonic())
        self.procs.append(proc)
        return proc

    def start(self) -> CrashStack:
        self.redis.ping()
        self.start_web()
        self.store  # noqa: B018 - the schema exists before anyone reads it
        return self

    def start_web(self, timeout: float = 60.0) -> str:
        proc = self._spawn("web", "web", "--port", "0", database_url=self.web_database_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Clout web on (http://127\.0\.0\.1:\d+)", proc.log_tail(200))
            if match:
                self.web, self.base_url = proc, match.group(1)
                break
            if proc.popen.poll() is not None:
                raise RuntimeError(f"clout web exited {proc.popen.returncode}:\n{proc.log_tail()}")
            time.sleep(0.05)
        else:
            raise TimeoutError(f"clout web did not start:\n{proc.log_tail()}")
        while time.monotonic() < deadline:
            try:
                if self._session().get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self.base_url
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError("clout web did not answer /healthz")

    def start_worker(self, *, wait: bool = False, timeout: float = 60.0) -> Proc:
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        proc = self._spawn(f"worker-{n + 1}", "worker")
        if wait:
            self.wait_worker(proc, idle=True, timeout=timeout)
        return proc

    def _worker_state(self, proc: Proc) -> tuple[str, bool] | None:
        """The RQ worker's registered state ('idle', 'busy', ...) and whether it has a job;
        None until it registers."""
        for key in self.redis.smembers(f"rq:workers:{self.queue_name}"):  # worker keys
            pid, state, job = self.redis.hmget(key, "pid", "state", "current_job")
            if pid is not None and int(pid) == proc.pid:
                return (state.decode() if state else "started"), bool(job)
        return None

    def wait_worker(self, proc: Proc, *, idle: bool = True, timeout: float = 60.0) -> None:
        """Until the worker has registered (and, with `idle`, sits idle on an empty queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited {proc.popen.returncode}:\n{proc.log_tail()}")
            state = self._worker_state(proc)
            if state is not None and not idle:
                return
            if (state is not None and state[0] == "idle" and not state[1]
                    and not self.redis.llen(f"rq:queue:{self.queue_name}")):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{proc.name} did not become ready:\n{proc.log_tail()}")

    def wait_blocked(self, proc: Proc, timeout: float = 30.0) -> bool:
        """Until the worker sits in RQ's blocking dequeue (its Redis connection is blocked).
        Clout names its embedded-Redis connections `clout-<pid>`; False if none shows up."""
        deadline = time.monotonic() + timeout
        name = f"clout-{proc.pid}"
        while time.monotonic() < deadline:
            for c in self.redis.client_list():
                if c.get("name") == name and "b" in c.get("flags", ""):
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """SIGTERM every process (web last), stop Redis if embedded, stop the desk."""
        errors: list[str] = []
        for proc in [p for p in self.procs if p is not self.web] + ([self.web] if self.web else []):
            try:
                terminate(proc)
            except Exception as exc:  # pragma: no cover - keep closing the rest
                errors.append(f"{proc.name}: {exc!r}")
        self.server.release_writes()
        self.server.release_reads()
        if self._store is not None:
            self._store.dispose()
        if self._redis_handle is not None:
            server = self._redis_handle.server
            pid = server.running_pid() if server is not None else None
            self._redis_handle.close(grace=5.0)
            if pid and alive(pid):  # someone we don't know still held it: it is ours, stop it
                _signal(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    _signal(pid, signal.SIGKILL)
        elif self._redis is not None:
            self._cleanup_external_redis()
            self._redis.close()
        self.server.stop()
        if errors:  # pragma: no cover
            raise RuntimeError("; ".join(errors))

    def _cleanup_external_redis(self) -> None:
        """On a shared Redis, remove this stack's keys (its queue name makes them unique)."""
        try:
            for pattern in (f"clout:{self.queue_name}:*", f"rq:*{self.queue_name}*"):
                batch = list(self._redis.scan_iter(pattern, count=1000))
                for i in range(0, len(batch), 500):
                    self._redis.delete(*batch[i:i + 500])
        except Exception:  # pragma: no cover - best effort
            pass

    def __enter__(self) -> CrashStack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- webhooks ----------------------------------------------------------

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False
            self._local.session = s
        return s

    def new_event(self, prefix: str = "T", *, customer: str | None = None) -> dict[str, Any]:
        """A fresh event for a fresh ticket, which the desk knows about."""
        with self._serial_lock:
            self._serial += 1
            n = self._serial
        ticket = f"{prefix}-{n}"
        renewal = dt.date.today() + dt.timedelta(days=(n * 11) % 200)
        with self.server.lock:
            self.server.tickets[ticket] = {"status": "open", "priority": "P3"}
        return {
            "event_id": f"evt_{uuid.uuid4().hex}",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "ticket": {"id": ticket, "subject": "Charged twice, please help",
                       "description": "The invoice shows two charges this month."},
            "customer": {"id": customer or f"C-{n % 23}",
                         "monthly_spend": float(50 + (n * 37) % 900),
                         "contract_end": renewal.isoformat()},
        }

    def post(self, event: dict[str, Any], msg_id: str | None = None) -> int:
        body = json.dumps(event).encode()
        headers = standard_webhook_headers(TEST_SECRET, msg_id or f"msg_{uuid.uuid4().hex}", body)
        # A refused connection is retried as a desk would; the answer is what counts.
        for attempt in range(3):
            try:
                resp = self._session().post(f"{self.base_url}/webhooks/acme", data=body,
                                            headers=headers, timeout=15)
                if resp.status_code != 202:
                    self.rejected[resp.status_code] += 1
                return resp.status_code
            except requests.ConnectionError:
                time.sleep(0.2 * (attempt + 1))
        self.rejected[0] += 1
        return 0

    def post_many(self, events: Sequence[dict[str, Any]],
                  msg_ids: Sequence[str | None] | None = None, threads: int = 8) -> list[int]:
        msg_ids = list(msg_ids) if msg_ids is not None else [None] * len(events)
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.post, events, msg_ids))

    def post_new(self, n: int, prefix: str = "T", threads: int = 8) -> list[str]:
        """Post `n` fresh events; returns the ids of those accepted (202)."""
        events = [self.new_event(prefix) for _ in range(n)]
        codes = self.post_many(events, threads=threads)
        return [e["event_id"] for e, c in zip(events, codes) if c == 202]

    # -- counting ----------------------------------------------------------

    def decided(self, event_ids: Iterable[str]) -> set[str]:
        ids = list(event_ids)
        out: set[str] = set()
        for i in range(0, len(ids), 500):
            out |= self.store.decided_events(ids[i:i + 500])
        return out

    def wait_decided(self, event_ids: Sequence[str], *, since: float, observe: float = DEADLINE,
                     deadline: float = DEADLINE, poll: float = 0.25,
                     ) -> tuple[set[str], float | None, set[str]]:
        """Poll until every event is decided or `observe` seconds after `since` have passed.

        Returns (decided within `deadline`, seconds from `since` to all decided or None,
        decided by the end of observation)."""
        wanted = set(event_ids)
        in_time: set[str] = set()
        done: set[str] = set()
        while True:
            try:
                done = self.decided(wanted)
            except sa.exc.OperationalError:  # the store is briefly busy or away: look again
                pass
            elapsed = time.monotonic() - since
            if elapsed <= deadline:
                in_time = set(done)
            if done >= wanted:
                return in_time, elapsed, done
            if elapsed > observe:
                return in_time, None, done
            time.sleep(poll)

    def double_written(self) -> int:
        with self.server.lock:
            counts = collections.Counter((w["id"], w.get("clout_decision"))
                                         for w in self.server.writes)
        return sum(1 for c in counts.values() if c > 1)

    def writes_per_ticket(self) -> collections.Counter:
        with self.server.lock:
            return collections.Counter(w["id"] for w in self.server.writes)

    def decisions_per_ticket(self, source: str = "acme") -> dict[str, int]:
        from plugin.store import decisions

        with self.store.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(
                sa.select(decisions.c.ticket_id, sa.func.count())
                .where(decisions.c.source == source).group_by(decisions.c.ticket_id))}

    def write_attempts(self) -> int:
        """The most attempts any desk write has had so far (0: none failed yet)."""
        from plugin.store import writes

        with self.store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(writes.c.attempts), 0)))
                       .scalar_one())

    def ledger_counts(self) -> dict[str, int]:
        from plugin.store import events

        with self.store.engine.connect() as conn:
            leased = events.c.lease_owner.is_not(None).label("leased")
            rows = conn.execute(sa.select(events.c.state, leased, sa.func.count())
                                .group_by(events.c.state, leased))
            out: dict[str, int] = collections.Counter()
            for state, leased, n in rows:
                out[state] += int(n)
                if leased:
                    out["leased"] += int(n)
            return dict(out)

    def result(self, stage: str, accepted: Sequence[str], *, since: float,
               deliveries: int | None = None, observe: float = DEADLINE,
               notes: dict[str, Any] | None = None) -> StageResult:
        in_time, seconds, done = self.wait_decided(accepted, since=since, observe=observe)
        time.sleep(0.5)  # a write racing the last poll would show up now
        twice = sum(1 for n in self.decisions_per_ticket().values() if n > 1)
        notes = dict(notes or {})
        if self.rejected:
            notes["rejected"] = dict(self.rejected)
        if len(done) < len(set(accepted)):
            notes["undecided_states"] = dict(collections.Counter(
                self.store.event_states(sorted(set(accepted) - done)).values()))
        wanted = len(set(accepted))
        return StageResult(stage=stage, accepted=wanted, decided_in_time=len(in_time),
                           lost=wanted - len(in_time), double_written=self.double_written(),
                           decided_twice=twice,
                           seconds=None if seconds is None else round(seconds, 1),
                           deliveries=deliveries if deliveries is not None else len(accepted),
                           notes=notes)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02) -> float:
    """Poll `predicate` until true; returns the seconds it took (TimeoutError naming `what`)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - start


# -- a store you can cut -------------------------------------------------------

class TcpProxy:
    """A TCP proxy (threads) in front of the store: `cut()` closes every connection and
    refuses new ones (nothing listens on its port), `restore()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket

        self._socket_mod = socket
        self.target = target
        self._lock = threading.Lock()
        self._conns: set[Any] = set()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self.up = True
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _listen(self, port: int):
        sock = self._socket_mod.socket()
        sock.setsockopt(self._socket_mod.SOL_SOCKET, self._socket_mod.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.settimeout(0.2)
        return sock

    def _accept_loop(self) -> None:
        while not self._closed:
            with self._lock:
                listener = self._listener if self.up else None
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, self._socket_mod.timeout):
                continue
            except OSError:  # closed by cut()
                continue
            try:
                upstream = self._socket_mod.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self.up:
                    client.close()
                    upstream.close()
                    continue
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b) -> None:
        import select

        for s in (a, b):
            s.settimeout(None)
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                if self._closed:
                    return
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                self._drop(s)

    def _drop(self, sock) -> None:
        with self._lock:
            self._conns.discard(sock)
        try:
            sock.shutdown(self._socket_mod.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        with self._lock:
            self.up = False
            self._listener.close()
            conns = list(self._conns)
        for sock in conns:
            self._drop(sock)

    def restore(self) -> None:
        with self._lock:
            self._listener = self._listen(self.port)
            self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._thread.join(timeout=2)


PG_ADMIN_URL = os.environ.get("CLOUT_CRASH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_available(url: str = PG_ADMIN_URL) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return True
    except Exception:
        return False


class PostgresDatabase:
    """A database of its own (`clout_crash_<random>`) on the local PostgreSQL, dropped afterwards,
    so nothing else using the server's `test` database is disturbed."""

    def __init__(self, admin_url: str = PG_ADMIN_URL) -> None:
        from urllib.parse import urlsplit

        self.admin_url = admin_url
        self.name = f"clout_crash_{uuid.uuid4().hex[:10]}"
        parts = urlsplit(admin_url)
        self.user = parts.username or "postgres"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432

    def url(self, port: int | None = None) -> str:
        return f"postgresql://{self.user}@{self.host}:{port or self.port}/{self.name}"

    def __enter__(self) -> PostgresDatabase:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# -- the crash stages ---------------------------------------------------------

def stage_blocked_on_queue(stack: CrashStack, n: int, m: int, *,
                           observe: float = DEADLINE) -> StageResult:
    """(a) The idle worker is frozen inside RQ's blocking dequeue while n webhooks arrive (the
    drain job they queue moves into RQ's intermediate list, in the frozen worker's hands), then
    SIGKILLed; m more arrive; a fresh worker starts."""
    worker = stack.start_worker(wait=True)
    blocked = stack.wait_blocked(worker)
    freeze(worker)
    first = stack.post_new(n, prefix="A")
    intermediate = stack.redis.lrange(f"rq:queue:{stack.queue_name}:intermediate", 0, -1)
    kill_tree(worker)
    second = stack.post_new(m, prefix="A")
    notes = {"blocked in RQ's dequeue when frozen": blocked,
             "drain job in RQ's intermediate list at kill": bool(intermediate),
             "inbox at restart": stack.redis.llen(stack.key("inbox"))}
    since = time.monotonic()
    stack.start_worker()
    return stack.result("a. blocked on the queue", first + second, since=since, observe=observe,
                        notes=notes)


def stage_while_draining(stack: CrashStack, n: int, *, observe: float = DEADLINE,
                         delay: float = 0.0, attempts: int = 5) -> StageResult:
    """(b) A backlog waits while the worker is frozen; it is thawed and SIGKILLed `delay`
    seconds after the drain lock appears (the drain is moving the inbox into the ledger and
    batch jobs). Tried again (with more backlog) if the drain was already over at the kill."""
    lock_key = stack.key("drain-lock")
    accepted: list[str] = []
    notes: dict[str, Any] = {}
    for attempt in range(1, attempts + 1):
        worker = stack.start_worker(wait=True)
        freeze(worker)
        accepted += stack.post_new(n * 2 ** (attempt - 1), prefix="B")  # a longer drain each try
        inbox_before = stack.redis.llen(stack.key("inbox"))
        thaw(worker)
        try:
            wait_for(lambda: stack.redis.exists(lock_key), 30, "the drain lock", poll=0.0005)
        except TimeoutError:
            kill_tree(worker)
            raise
        if delay:
            time.sleep(delay)
        freeze(worker)
        held = bool(stack.redis.exists(lock_key))
        kill_tree(worker)
        notes = {"attempt": attempt, "kill after lock (s)": delay, "drain lock held at kill": held,
                 "inbox before / at kill":
                     f"{inbox_before} / {stack.redis.llen(stack.key('inbox'))}",
                 "ledger at kill": sum(stack.ledger_counts().values())}
        if held:
            break
    since = time.monotonic()
    stack.start_worker()
    name = "b. while draining" + (f" (+{delay * 1000:.0f} ms)" if delay else "")
    return stack.result(name, accepted, since=since, observe=observe, notes=notes)


def stage_mid_batch(stack: CrashStack, n: int, *, observe: float = DEADLINE) -> StageResult:
    """(c) A batch is claimed (its events leased) and the desk hangs on the customer lookup;
    the worker is SIGKILLed holding the leases."""
    worker = stack.start_worker(wait=True)
    freeze(worker)
    accepted = stack.post_new(n, prefix="C")
    stack.server.hold_reads("/api/customers")
    thaw(worker)
    try:
        wait_for(stack.server.reads_held.is_set, 30, "the batch's desk read")
        time.sleep(0.2)
        kill_tree(worker)
    finally:
        stack.server.release_reads()
    notes = {"ledger at kill": stack.ledger_counts()}
    since = time.monotonic()
    stack.start_worker()
    return stack.result("c. mid-batch", accepted, since=since, observe=observe, notes=notes)


def stage_between_write_and_record(stack: CrashStack, n: int, *,
                                   observe: float = DEADLINE) -> StageResult:
    """(d) The desk applies a batch's write and hangs before answering; the worker is SIGKILLed
    before it can record the write."""
    worker = stack.start_worker(wait=True)
    freeze(worker)
    accepted = stack.post_new(n, prefix="D")
    stack.server.hold_writes()
    thaw(worker)
    try:
        wait_for(stack.server.held.is_set, 30, "the desk write")
        kill_tree(worker)
    finally:
        stack.server.release_writes()
    notes = {"desk writes applied at kill": len(stack.server.writes)}
    since = time.monotonic()
    stack.start_worker()
    return stack.result("d. between desk write and record", accepted, since=since, observe=observe,
                        notes=notes)


def stage_in_reconcile_write(stack: CrashStack, n: int, *,
                             observe: float = DEADLINE) -> StageResult:
    """(e) Like (d), but the write is a retry the reconcile pass set off: the batch's first
    write fails (503), reconcile re-drives the due write, the desk applies it and hangs, and
    the worker is SIGKILLed with whatever the retry holds (the write's lease, any marker or
    lock reconcile keeps in Redis)."""
    worker = stack.start_worker(wait=True)
    freeze(worker)
    accepted = stack.post_new(n, prefix="E")  # one batch, one write call
    stack.server.fail_next(1, 503, method="PATCH")
    thaw(worker)
    wait_for(lambda: stack.write_attempts() >= 1, 30, "the first write to fail and be recorded")
    stack.server.hold_writes()
    try:
        wait_for(stack.server.held.is_set, 60, "the reconcile pass's retry")
        freeze(worker)
        markers = {k.decode().split(":", 2)[-1]: stack.redis.ttl(k)
                   for k in stack.redis.scan_iter(stack.key("*"))
                   if any(w in k.decode() for w in ("reconcile", "flush", "lock"))}
        kill_tree(worker)
    finally:
        stack.server.release_writes()
    notes = {"Redis markers at kill (ttl s)": markers,
             "desk writes applied at kill": len(stack.server.writes)}
    since = time.monotonic()
    stack.start_worker()
    return stack.result("e. between write and record, in a reconcile retry", accepted,
                        since=since, observe=observe, notes=notes)


def stage_redelivery(stack: CrashStack, *, events: int = 10, copies: int = 40, others: int = 150,
                     workers: int = 2, observe: float = DEADLINE, seed: int = 5) -> StageResult:
    """The same event posted under `copies` webhook-ids (for each of `events` events), shuffled
    among `others` single events, to `workers` workers at once: one decision and one desk
    write per event."""
    import random

    procs = [stack.start_worker() for _ in range(workers)]
    for p in procs:
        stack.wait_worker(p, idle=True)
    repeated = [stack.new_event("R") for _ in range(events)]
    single = [stack.new_event("S") for _ in range(others)]
    posts = [(e, f"msg_{uuid.uuid4().hex}") for e in repeated for _ in range(copies)]
    posts += [(e, f"msg_{uuid.uuid4().hex}") for e in single]
    random.Random(seed).shuffle(posts)
    since = time.monotonic()
    codes = stack.post_many([p[0] for p in posts], [p[1] for p in posts])
    accepted = sorted({e["event_id"] for (e, _), c in zip(posts, codes) if c == 202})
    res = stack.result(f"redelivery: {events} events x {copies} ids + {others}, {workers} workers",
                       accepted, since=since, deliveries=sum(1 for c in codes if c == 202),
                       observe=observe)
    per_ticket = stack.writes_per_ticket()
    res.notes["repeated events decided once"] = sum(
        1 for e in repeated if stack.decisions_per_ticket().get(e["ticket"]["id"]) == 1)
    res.notes["repeated events written once"] = sum(
        1 for e in repeated if per_ticket.get(e["ticket"]["id"]) == 1)
    return res


def stage_store_outage(stack: CrashStack, proxy: TcpProxy, *, outage: float = 20.0,
                       before: int = 20, per_wave: int = 10, wave_every: float = 2.0,
                       observe: float = DEADLINE) -> StageResult:
    """The store (behind `proxy`) goes away for `outage` seconds while webhooks keep coming
    (intake needs only Redis); then it comes back and nobody does anything.

    When it goes, one batch is in flight: claimed (its events leased) and waiting on the
    desk, so it finds the store gone when it tries to record its decisions."""
    stack.start_worker(wait=True)
    warm = stack.post_new(before, prefix="O")
    stack.wait_decided(warm, since=time.monotonic(), observe=30)
    stack.server.hold_reads("/api/customers")
    try:
        accepted = stack.post_new(per_wave, prefix="O")
        wait_for(stack.server.reads_held.is_set, 30, "a batch in flight")
        in_flight = stack.ledger_counts()
        proxy.cut()
    finally:
        stack.server.release_reads()
    cut_at = time.monotonic()
    while time.monotonic() - cut_at < outage:
        accepted += stack.post_new(per_wave, prefix="O")
        time.sleep(max(0.0, min(wave_every, outage - (time.monotonic() - cut_at))))
    notes: dict[str, Any] = {
        "outage (s)": round(time.monotonic() - cut_at, 1),
        "ledger when the store went": in_flight,
        "ledger at the end of the outage": stack.ledger_counts(),
        "inbox at the end of the outage": stack.redis.llen(stack.key("inbox")),
    }
    proxy.restore()
    since = time.monotonic()
    res = stack.result(f"store outage {outage:.0f} s", accepted, since=since, observe=observe,
                       notes=notes)
    parked = stack.store.parked()
    res.notes["parked after"] = {"writes": len(parked["writes"]), "events": len(parked["events"])}
    res.notes["decided before the outage"] = len(stack.decided(warm))
    return res

def markdown_table(results: Sequence[StageResult]) -> str:
    head = ("| stage | accepted | decided within 60 s | lost | double-written | decided twice "
            "| seconds to all decided |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        accepted = f"{r.accepted}"
        if r.deliveries != r.accepted:
            accepted += f" ({r.deliveries} deliveries)"
        secs = f"{r.seconds:.1f}" if r.seconds is not None else "not all"
        lines.append(f"| {r.stage} | {accepted} | {r.decided_in_time} | {r.lost} "
                     f"| {r.double_written} | {r.decided_twice} | {secs} |")
    return "\n".join(lines)


__all__ = [
    "ACME_KEY",
    "DEADLINE",
    "PG_ADMIN_URL",
    "CrashStack",
    "PostgresDatabase",
    "Proc",
    "StageResult",
    "TcpProxy",
    "alive",
    "descendants",
    "freeze",
    "kill_tree",
    "markdown_table",
    "postgres_available",
    "stage_between_write_and_record",
    "stage_blocked_on_queue",
    "stage_in_reconcile_write",
    "stage_mid_batch",
    "stage_redelivery",
    "stage_store_outage",
    "stage_while_draining",
    "terminate",
    "thaw",
    "wait_for",
]
