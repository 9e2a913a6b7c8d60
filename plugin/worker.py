"""`clout worker`: one RQ worker plus the reconcile ticker that keeps delivery moving.

RQ runs the jobs; everything that must survive a crash lives in the store's
event ledger and desk outbox (see `plugin.delivery`). The ticker enqueues a
`reconcile` job every `delivery.reconcile_interval_seconds`; a Redis key
(SET NX EX) makes several workers share one tick, and because that key simply
expires, a worker that dies never blocks the next tick for longer than one
interval.

A failed job's traceback is logged by RQ and stored in Redis (the failed-job
registry and the job's result), where it would outlive any log rotation; the
database error inside it can quote the row it refused, customer data and all.
`CloutWorker` stores that traceback redacted (`plugin.logs.redact`), and
`run_worker` makes sure every log handler, RQ's included, redacts too.

Jobs run in the worker process itself (`CloutSimpleWorker`), not in a work-horse
forked per job. A fork per job cost more than a small job (measured: 150-230 ms per
one-event job forked vs ~45 ms in-process; the horse re-imported the ranking code,
loaded the sentiment lexicon, opened new database connections and copied the heap
page by page), and nothing in a job needs a fresh process: a job's state lives in the store's ledger
and outbox under leases, so a worker killed mid-job, or stuck and restarted by its
supervisor, loses nothing (tests/test_crash_recovery.py). RQ's job timeout still
holds: it is an alarm signal in the worker's main thread.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from rq import SimpleWorker, Worker

from .logs import ensure_redacted_logging, redact
from .reload import SettingsWatcher
from .runtime import Runtime

log = logging.getLogger(__name__)


class _RedactedFailures:
    """Mixin for RQ workers: failed jobs' tracebacks are stored redacted."""

    def handle_job_failure(self, job: Any, queue: Any, started_job_registry: Any = None,
                           exc_string: str = "", execution: Any = None) -> None:
        super().handle_job_failure(  # type: ignore[misc]
            job, queue, started_job_registry=started_job_registry,
            exc_string=redact(exc_string or ""), execution=execution)


class CloutWorker(_RedactedFailures, Worker):
    """RQ's forking worker (a work-horse per job), storing failures redacted. Not what
    `clout worker` runs any more (see the module docstring); kept for embedders."""


class CloutSimpleWorker(_RedactedFailures, SimpleWorker):
    """RQ's in-process worker, storing failures redacted: what `clout worker` runs."""


def _warm_jobs() -> None:
    """Import what jobs run and load the sentiment lexicon once (~0.1 s), so the first
    event on a fresh worker is not the slow one."""
    import pandas as pd

    from ranking import complaint_strength

    from . import delivery, jobs, ranker, reconcile  # noqa: F401

    complaint_strength(pd.Series(["warm-up"], dtype="string"))


YOUNG_GC_THRESHOLD = 10_000


def _freeze_heap() -> None:
    """Move everything start-up built (modules, settings, the lexicon, the snapshot) out of
    the garbage collector's sight. A batch allocates hundreds of thousands of small objects,
    so the collector runs often, and each full pass walked that whole long-lived heap again:
    profiled, its pauses landed in whatever list a batch was building, and freezing after
    warm-up made a 20,000-event backlog ~10% faster. Collection still works for everything
    allocated afterwards (`gc.freeze`).

    The youngest generation is also collected every 10,000 new objects instead of 700: a
    batch keeps its rows alive until it ends, so most early passes found nothing to free
    and only moved survivors along (callgrind: the collector fell from 3% of a 2,000-event
    batch to under 1%). Cycles are still found, a little later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def run_worker(rt: Runtime, *, burst: bool = False) -> None:
    from rq.serializers import JSONSerializer

    from . import runtime as runtime_mod
    from .ticker import Ticker

    settings = rt.settings
    # Before RQ sets up logging: with a (redacting) root handler in place, RQ's loggers
    # propagate to it instead of getting unfiltered handlers of their own.
    ensure_redacted_logging(settings.config.service.log_level)
    runtime_mod.install(rt)
    ticker = None
    watcher = None
    try:
        # Build everything before the first job: the schema check, the connectors, the
        # loaded snapshot and the ranking code, so the first event costs no more than the next.
        rt.warm()
        _warm_jobs()
        _freeze_heap()
        ticker = Ticker(rt)
        ticker.tick(force=True)  # a restarted worker picks up stranded work at once
        if not burst:
            ticker.start()
            watcher = SettingsWatcher(rt).start()  # new ranking settings within seconds
        maintenance = settings.config.delivery.reconcile_interval_seconds * 6
        w = CloutSimpleWorker([rt.queue], connection=rt.redis, serializer=JSONSerializer,
                              maintenance_interval=maintenance)
        # RQ announces every job at INFO (three lines per reconcile tick, every few seconds);
        # Clout's own INFO lines say what was done, so RQ speaks up only at DEBUG, or to warn.
        level = settings.config.service.log_level
        w.work(burst=burst, with_scheduler=True,
               logging_level="WARNING" if level == "INFO" else level)
    finally:
        if watcher is not None:
            watcher.stop()
        if ticker is not None:
            ticker.stop()
        rt.close(grace=2.0)


__all__ = ["CloutSimpleWorker", "CloutWorker", "run_worker"]
