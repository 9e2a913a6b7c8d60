"""`clout worker`: one RQ worker plus the reconcile ticker that keeps delivery moving.

RQ runs the jobs; everything that must survive a crash lives in the store's
event ledger and desk outbox (see `plugin.delivery`). The ticker enqueues a
`reconcile` job every `delivery.reconcile_interval_seconds`; a Redis key
(SET NX EX) makes several workers share one tick, and because that key simply
expires, a worker that dies never blocks the next tick for longer than one
interval.
"""

from __future__ import annotations

import logging

from .runtime import Runtime

log = logging.getLogger(__name__)


def run_worker(rt: Runtime, *, burst: bool = False) -> None:
    from rq import Worker
    from rq.serializers import JSONSerializer

    from . import runtime as runtime_mod
    from .ticker import Ticker

    settings = rt.settings
    runtime_mod.install(rt)
    ticker = None
    try:
        # Build everything before RQ forks a work-horse per job, so each horse inherits
        # the schema check, the connectors and the loaded snapshot instead of redoing them.
        rt.warm()
        ticker = Ticker(rt)
        ticker.tick(force=True)  # a restarted worker picks up stranded work at once
        if not burst:
            ticker.start()
        w = Worker([rt.queue], connection=rt.redis, serializer=JSONSerializer,
                   maintenance_interval=settings.config.delivery.reconcile_interval_seconds * 6)
        w.work(burst=burst, with_scheduler=True, logging_level=settings.config.service.log_level)
    finally:
        if ticker is not None:
            ticker.stop()
        rt.close(grace=2.0)


__all__ = ["run_worker"]
