"""The live parts of one Clout process, built lazily from `Settings`.

Nothing here connects at import time or even at construction: Redis, the
store and connectors are built on first use, once, under a lock (Flask serves
requests on threads). The web extension and the worker each hold one
`Runtime`; jobs find theirs through `current()`, so they receive plain values
and never clients.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, TypeVar

from .redis_conn import RedisHandle, connect, fsync_policy
from .settings import Settings, load_settings
from .store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    def __init__(self, settings: Settings, redis_handle: RedisHandle | None = None, *,
                 http_session: Any = None) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {}
        if redis_handle is not None:
            self._parts["redis_handle"] = redis_handle
        if http_session is not None:
            self._parts["http_session"] = http_session
        self._pid = os.getpid()

    def _get(self, name: str, build: Callable[[], T]) -> T:
        self._check_fork()
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = build()
                    self._parts[name] = part
        return part

    def _check_fork(self) -> None:
        # RQ runs each job in a forked child: pooled DB sockets must not be shared.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            store = self._parts.get("store")
            if store is not None:
                store.dispose(close=False)

    @property
    def redis_handle(self) -> RedisHandle:
        return self._get("redis_handle", lambda: connect(
            self.settings.redis_url, self.settings.data_dir, fsync=fsync_policy(self.settings)))

    @property
    def redis(self):
        return self.redis_handle.client

    @property
    def store(self) -> Store:
        def build() -> Store:
            if self.settings.database_url.startswith("sqlite"):
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            store = Store.from_url(self.settings.database_url)
            store.create_schema()
            return store

        return self._get("store", build)

    def desk(self, name: str):
        """The connector of desk `name` (built once); every decision goes back through it."""
        from connectors import crm

        def build():
            spec = crm.spec(name)
            return spec.connect(self.settings.desk(name), self.settings.secrets.desk(name),
                                store=self.store, session=self.http_session)

        return self._get(f"desk:{name}", build)

    @property
    def http_session(self):
        """One `requests.Session` for the desks' HTTP (tests pass one trusting a test CA)."""
        import requests

        return self._get("http_session", requests.Session)

    @property
    def influence(self):
        from connectors import social

        import requests

        cfg = self.settings.config.influence
        return self._get("influence", lambda: social.build(
            cfg.source, snapshot_path=self.settings.resolve_config_path(cfg.snapshot_path),
            session=requests.Session(), endpoints=dict(cfg.endpoints),
            secrets=dict(self.settings.secrets.social),
            timeouts=(cfg.timeout_connect_seconds, cfg.timeout_read_seconds),
            max_retries=cfg.max_retries, max_wait_seconds=cfg.max_wait_seconds,
            mastodon_allowlist=tuple(cfg.mastodon_allowlist), sample_budget=cfg.sample_budget,
            sample_min_followers=cfg.sample_min_followers))

    @property
    def queue(self):
        from .queues import get_queue

        return self._get("queue", lambda: get_queue(self.redis, self.settings))

    @property
    def intake(self):
        from .intake import Intake

        return self._get("intake", lambda: Intake(self.redis, self.settings, self.queue))

    def validate(self) -> None:
        """Fail fast on names that only resolve later (influence source, snapshot file)."""
        from connectors import social

        cfg = self.settings.config
        if not self.settings.enabled_desks:
            raise ValueError("desks: no desk is enabled; set desks.<name>.enabled = true")
        for name in self.settings.enabled_desks:
            if not self.settings.secrets.webhook_secret(name):
                log.warning("desk %s is enabled but CLOUT_WEBHOOK_SECRET_%s is not set: "
                            "/webhooks/%s will answer 503", name, name.upper(), name)
        for name in self.settings.enabled_desks:
            try:  # a desk that can't be built (credentials missing) stops start-up, clearly
                self.desk(name)
            except ValueError as exc:
                raise ValueError(f"desks.{name}: {exc}") from None
        if cfg.influence.source not in social.available():
            raise ValueError(f"influence.source: unknown source {cfg.influence.source!r}; "
                             f"available: {', '.join(social.available())}")
        try:  # build it now: a missing snapshot file fails start-up, not every job
            self.influence.networks()
        except OSError as exc:
            raise ValueError(f"influence.snapshot_path: cannot read "
                             f"{getattr(exc, 'filename', '') or cfg.influence.snapshot_path}: "
                             f"{exc.strerror or exc}") from None

    def warm(self) -> None:
        """Build every part now (before RQ forks work-horses, so each inherits them)."""
        self.redis.ping()
        self.store.ping()
        for name in self.settings.enabled_desks:
            self.desk(name)
        self.influence.networks()

    def close(self, grace: float = 0.0) -> None:
        with self._lock:
            store = self._parts.pop("store", None)
            if store is not None:
                store.dispose()
            handle = self._parts.pop("redis_handle", None)
            self._parts.clear()
            if handle is not None:
                handle.close(grace=grace)


_current: Runtime | None = None
_current_lock = threading.Lock()


def install(runtime: Runtime | None) -> None:
    """Make `runtime` the one jobs in this process use (the worker does this at start)."""
    global _current
    with _current_lock:
        _current = runtime


def current() -> Runtime:
    """This process's runtime, built from the environment if none was installed."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Runtime(load_settings())
        return _current
