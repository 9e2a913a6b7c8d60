"""Running the parts: the web server, RQ workers, and both together (`run`, `demo`).

The parent process owns the embedded Redis (when `REDIS_URL` is unset) and the
web server thread; workers are separate processes started with this same
Python (`python -m plugin.cli worker`) and the same environment, so they load
the same settings and join the same Redis instead of starting another.

The web server is waitress (plugin/web_server.py: requests are read in full
before a thread runs the app, with a deadline per request and `[web]` limits);
werkzeug's development server only with `debug=True` (`--debug`). When the
port was not chosen by the user and is taken, `fallback=True` listens on a free
one instead; otherwise a busy port is `PortInUse`.

`LocalStack.supervise()` keeps the stack up until asked to stop:

- a worker process that exits is started again after a back-off that doubles
  from 1 s up to 30 s and resets once a worker has stayed up for 60 s;
- an embedded redis-server that dies is started again on the same socket, so
  the web app and the workers reconnect by themselves; a worker that is still
  not connected well after Redis is back is restarted too;
- the web app keeps serving throughout: while Redis is away `/webhooks/*` and
  `/readyz` answer 503, which desks retry.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import redis
import requests

from .redis_conn import RedisHandle
from .runtime import Runtime
from .web_server import DevServer, WebOptions, WebServer, bind_listener

log = logging.getLogger(__name__)


class PortInUse(RuntimeError):
    pass


def serve_in_thread(app, host: str, port: int, options: WebOptions | None = None, *,
                    debug: bool = False, fallback: bool = False) -> WebServer | DevServer:
    """Serve `app` on host:port from a daemon thread (`.thread`); `.port` is the real port.

    waitress with `options` (defaults if None); werkzeug's dev server if `debug`.
    A busy port raises `PortInUse`, unless `fallback`: then any free port is used.
    """
    try:
        sock = bind_listener(host, port)
    except OSError as exc:
        if not (fallback and port != 0 and exc.errno == errno.EADDRINUSE):
            why = exc.strerror or str(exc) or "address already in use"
            raise PortInUse(f"cannot listen on {host}:{port}: {why}; "
                            "pass --port to use another") from None
        try:
            sock = bind_listener(host, 0)
        except OSError as again:
            raise PortInUse(f"cannot listen on {host}: {again.strerror or again}") from None
    server = DevServer(app, sock) if debug else WebServer(app, sock, options)
    return server.start()


def wait_healthy(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    session = requests.Session()
    session.trust_env = False  # a local probe must not go through a proxy
    while True:
        try:
            if session.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/healthz did not answer within {timeout:.0f} s")
        time.sleep(0.1)


class Backoff:
    """Capped exponential delays: `initial`, doubling up to `cap`; `reset()` starts over."""

    def __init__(self, initial: float = 1.0, cap: float = 30.0) -> None:
        self.initial = initial
        self.cap = cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class RedisWatch:
    """Watches this process's Redis: restarts the embedded server if it died, logs outages.

    Probes on a client of its own with short timeouts, so an external Redis that
    stops answering can't stall the caller's loop. For the embedded server the
    probe connection carries this process's client name, which also keeps this
    process counted as a user of the server.
    """

    def __init__(self, handle: RedisHandle, backoff: Backoff | None = None) -> None:
        self.handle = handle
        self.backoff = backoff or Backoff()
        pool = handle.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                  "retry": None, "health_check_interval": 0}
        self._probe = redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **kwargs))
        self.up = True
        self.up_since = time.monotonic()
        self.restarted_at: float | None = None
        self._retry_at = 0.0

    def check(self) -> bool:
        """One pass; True when Redis became usable again in it (started again, or back)."""
        now = time.monotonic()
        restarted = False
        if self.handle.is_embedded and now >= self._retry_at:
            try:
                restarted = self.handle.ensure_server()
            except Exception as exc:  # keep the web app up; try again later
                delay = self.backoff.next()
                self._retry_at = now + delay
                log.error("embedded redis-server is down and could not be started (%s); "
                          "trying again in %.0f s", exc, delay)
            else:
                if restarted:
                    self.restarted_at = self.up_since = now
                self.backoff.reset()
        try:
            self._probe.ping()
            ok = True
        except redis.RedisError as exc:
            ok = False
            if self.up:
                log.warning("Redis is unavailable (%s): webhooks answer 503 until it is back",
                            type(exc).__name__)
        came_back = ok and not self.up
        if came_back:
            log.warning("Redis is available again")
        if ok != self.up:
            self.up = ok
            self.up_since = now
        return restarted or came_back

    def client_names(self) -> set[str] | None:
        """Names of the connected clients (None if Redis can't say)."""
        try:
            return {c.get("name", "") for c in self._probe.client_list()}
        except redis.RedisError:
            return None

    def close(self) -> None:
        self._probe.connection_pool.disconnect()


@dataclass
class _Slot:
    """One worker position: the process in it now and how soon to replace it."""

    index: int
    backoff: Backoff
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    restarts: int = 0
    terminating_since: float | None = None


class LocalStack:
    """Web (thread) + N workers (processes) + embedded Redis: started, supervised, stopped as one."""

    def __init__(self, runtime: Runtime, *, host: str, port: int, workers: int = 1,
                 env: Mapping[str, str] | None = None, worker_log: Path | None = None,
                 backoff_initial: float = 1.0, backoff_max: float = 30.0,
                 stable_after: float = 60.0, stuck_after: float = 30.0,
                 debug: bool = False, port_fallback: bool = False) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.requested_port = port
        self.debug = debug
        self.port_fallback = port_fallback  # a busy `port` -> any free one (see `fell_back`)
        self.workers = workers
        self.env = dict(os.environ if env is None else env)
        self.worker_log = worker_log
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stuck_after = stuck_after
        self._server: WebServer | DevServer | None = None
        self._app = None
        self._slots: list[_Slot] = []
        self._log_fh = None
        self._watch: RedisWatch | None = None
        self._stop_requested = False
        self._leftovers: dict[int, float] = {}  # process group of a dead worker -> SIGKILL time
        self._next_stuck_check = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def fell_back(self) -> bool:
        """True when the requested port was taken and another one is served."""
        return self.requested_port != 0 and self.port != self.requested_port

    @property
    def worker_pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.poll() is None]

    def start(self) -> None:
        from .app import create_app

        rt = self.runtime
        rt.validate()
        rt.warm()  # starts (or joins) the embedded server before any worker looks for it
        self._watch = RedisWatch(rt.redis_handle, Backoff(self.backoff_initial, self.backoff_max))
        self._app = create_app(runtime=rt)
        self._server = self._serve(self.port, fallback=self.port_fallback)
        self.port = self._server.port
        if self.worker_log:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = self.worker_log.open("ab")
        for i in range(self.workers):
            slot = _Slot(index=i + 1, backoff=Backoff(self.backoff_initial, self.backoff_max))
            self._slots.append(slot)
            self._spawn(slot)
        wait_healthy(self.base_url)

    def _serve(self, port: int, fallback: bool = False) -> WebServer | DevServer:
        options = WebOptions.from_settings(self.runtime.settings)
        return serve_in_thread(self._app, self.host, port, options, debug=self.debug,
                               fallback=fallback)

    def _spawn(self, slot: _Slot) -> None:
        env = {**self.env, "CLOUT_DATA_DIR": str(self.runtime.settings.data_dir)}
        # Its own process group: RQ's scheduler runs in a child of the worker, and when the
        # worker dies that child must go too (it would hold the scheduler lock and keep the
        # embedded Redis "in use"). A terminal's Ctrl-C reaches only us; we stop the workers.
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "worker"], env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_fh, stderr=subprocess.STDOUT if self._log_fh else None,
            process_group=0,
        )
        slot.started_at = time.monotonic()
        slot.restart_at = None
        slot.terminating_since = None

    def workers_alive(self) -> bool:
        return all(s.proc is not None and s.proc.poll() is None for s in self._slots)

    # -- supervision -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Make `supervise()` return (safe to call from a signal handler)."""
        self._stop_requested = True

    def supervise(self, interval: float = 0.5) -> None:
        """Keep everything up until `request_stop()`; then return (call `stop()` next)."""
        while not self._stop_requested:
            time.sleep(interval)
            if self._stop_requested:
                break
            try:
                self.check()
            except Exception:  # a supervisor that dies of its own bug helps nobody
                log.exception("supervision pass failed")

    def check(self) -> None:
        """One supervision pass: Redis first, then the workers, then the web thread."""
        now = time.monotonic()
        if self._watch is not None and self._watch.check():
            # Workers that died while Redis was away died of Redis, not of themselves:
            # no back-off held against them.
            for slot in self._slots:
                slot.backoff.reset()
                if slot.restart_at is not None:
                    slot.restart_at = min(slot.restart_at, now)
        names = None
        check_stuck = now >= self._next_stuck_check
        if check_stuck:
            self._next_stuck_check = now + 5.0
        for slot in self._slots:
            if self._stop_requested:
                return
            proc = slot.proc
            if proc is not None and proc.poll() is None:
                if now - slot.started_at >= self.stable_after:
                    slot.backoff.reset()
                if slot.terminating_since is not None:
                    if now - slot.terminating_since > 10:
                        proc.kill()
                    continue
                if check_stuck and self._looks_stuck(slot, now):
                    if names is None:
                        names = self._watch.client_names() if self._watch else None
                    if names is not None and f"clout-{proc.pid}" not in names:
                        log.warning("worker %d (pid %d) has not reconnected to Redis %.0f s after "
                                    "it came back; restarting it", slot.index, proc.pid,
                                    now - self._watch.up_since)
                        slot.terminating_since = now
                        proc.terminate()
                continue
            if proc is not None and slot.restart_at is None:
                self._clear_group(proc.pid, now)
                uptime = now - slot.started_at
                if uptime >= self.stable_after:
                    slot.backoff.reset()
                delay = 0.0 if slot.terminating_since is not None else slot.backoff.next()
                slot.restart_at = now + delay
                log.warning("worker %d (pid %d) exited with %s after %.0f s; "
                            "restarting it in %.1f s", slot.index, proc.pid,
                            _describe_exit(proc.returncode), uptime, delay)
            if slot.restart_at is not None and now >= slot.restart_at:
                old = proc.pid if proc is not None else None
                self._spawn(slot)
                slot.restarts += 1
                log.warning("worker %d restarted (pid %s -> %d, restart %d)", slot.index, old,
                            slot.proc.pid, slot.restarts)
        for pgid, deadline in list(self._leftovers.items()):
            if not _group_alive(pgid):
                del self._leftovers[pgid]
            elif now >= deadline:
                log.warning("processes left by worker pid %d ignored SIGTERM; killing them", pgid)
                _signal_group(pgid, signal.SIGKILL)
                del self._leftovers[pgid]
        server = self._server
        if server is not None and not server.thread.is_alive() and not self._stop_requested:
            log.error("the web server thread stopped; starting it again on port %d", self.port)
            server.stop(grace=0)
            # The same port: the URL users were given. If that fails, the dead server
            # stays in place and the next pass tries again.
            self._server = self._serve(self.port)

    def _clear_group(self, pgid: int, now: float) -> None:
        """A dead worker's children (RQ's scheduler) get SIGTERM, and SIGKILL a bit later."""
        if _group_alive(pgid):
            log.info("stopping what worker pid %d left behind (its scheduler)", pgid)
            _signal_group(pgid, signal.SIGTERM)
            self._leftovers[pgid] = now + 5.0

    def _looks_stuck(self, slot: _Slot, now: float) -> bool:
        """Up long enough, Redis up long enough (embedded only: its clients carry names)."""
        w = self._watch
        return (w is not None and w.handle.is_embedded and w.up
                and now - w.up_since >= self.stuck_after
                and now - slot.started_at >= self.stuck_after)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0) -> None:
        self._stop_requested = True
        procs = [s.proc for s in self._slots if s.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # RQ: warm shutdown, finishes the current job
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever a worker left (its scheduler, if the worker was killed) goes with it.
        groups = {p.pid for p in procs} | set(self._leftovers)
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        self._leftovers.clear()
        self._slots.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.runtime.close(grace=5.0)  # last one out stops the embedded Redis


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    # The group id is the dead worker's pid, which the kernel does not hand out again
    # while any member of the group is alive; an empty group raises ProcessLookupError.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
