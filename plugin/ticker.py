"""Every worker's reconcile ticker: one `reconcile` job per interval, whatever dies.

RQ's CronScheduler (3.0) enqueues with the pickle serializer and keeps its
schedule per process, and jobs RQ schedules itself wait behind a scheduler
lock that a killed worker holds for a minute and that others only retake
every maintenance interval. This ticker is the small piece that avoids both:
a thread in each `clout worker` that, every `delivery.reconcile_interval_seconds`,
claims the tick with SET NX EX (so N workers enqueue one job per interval, not
N) and puts `plugin.jobs.reconcile` at the front of the JSON queue. A second key
marks a reconcile as queued until that job ends, so a slow reconcile never
piles up behind itself; it expires after three intervals, so a reconcile lost
with a dead worker delays the next one by at most that.
"""

from __future__ import annotations

import logging
import threading

import redis

from .queues import RECONCILE, job_options

log = logging.getLogger(__name__)


def pending_key(settings) -> str:
    """Set while a reconcile job is queued or running (see `plugin.reconcile.run`)."""
    return settings.redis_key("reconcile-pending")


class Ticker:
    def __init__(self, rt) -> None:
        self._rt = rt
        self._interval = rt.settings.config.delivery.reconcile_interval_seconds
        self._key = rt.settings.redis_key("reconcile-tick")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None

    def tick(self, force: bool = False) -> bool:
        """Enqueue a reconcile job if this interval's tick is free and none is queued
        (or `force`, at worker start)."""
        rt = self._rt
        if self._client is None:
            self._client = rt.redis_handle.new_client()  # its own pool: RQ's loop blocks on ours
        claimed = self._client.set(self._key, "1", nx=True, ex=self._interval)
        if not force and not claimed:
            return False
        pending = self._client.set(pending_key(rt.settings), "1", nx=not force,
                                   ex=self._interval * 3)
        if not pending:
            return False
        from .queues import get_queue

        get_queue(self._client, rt.settings).enqueue_call(
            RECONCILE, description="reconcile: stranded events, due writes, re-ranking",
            at_front=True, **job_options(rt.settings))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval / 2):
            try:
                self.tick()
            except redis.RedisError as exc:  # Redis away: try again next time
                log.warning("reconcile tick skipped: %s", type(exc).__name__)
            except Exception:  # pragma: no cover - keep ticking whatever happens
                log.exception("reconcile tick failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="clout-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._client is not None:
            self._client.connection_pool.disconnect()
