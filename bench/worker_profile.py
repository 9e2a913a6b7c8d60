"""Profile the worker's batch path in one process, where a profiler can see all of it.

Seeds a book, posts `--events` signed events through the real webhook (Flask's test
client), then times `drain_inbox` and the `process_events` jobs it queues, run in this
process (not RQ's worker). The same data as `pipeline_bench.py`, the same job code.

Why a second tool: the real worker runs in another process, and on a shared machine
its wall and CPU times swing by a third between identical runs, which hides 5-10 %
changes. Three ways to look:

    .venv/bin/python bench/worker_profile.py                       # us per event (noisy)
    .venv/bin/python bench/worker_profile.py --cprofile out.prof   # where, by function
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=cg.out \\
        .venv/bin/python bench/worker_profile.py --callgrind --events 2000 --customers 5000
    callgrind_annotate cg.out | head     # PROGRAM TOTALS: instructions of the measured phase

Under `--callgrind` only the measured drain and jobs are counted (instrumentation is
switched on and off around them with `callgrind_control`); the count repeats within a
fraction of a percent, so two versions compare reliably. SQLite by default, or
`DATABASE_URL` (its tables are dropped and created). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pipeline_bench as pb  # noqa: E402  (its book, events and signed posts)


def run_jobs(rt) -> int:
    """Run every queued job in this process, in queue order; returns the batch jobs run."""
    from rq.job import Job

    batches = 0
    while (raw := rt.redis.lpop(rt.queue.key)) is not None:
        job = Job.fetch(raw.decode(), connection=rt.redis, serializer=rt.queue.serializer)
        job.func(*job.args, **job.kwargs)
        batches += job.func_name.endswith("process_events")
    return batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=5000, help="events in the measured backlog")
    ap.add_argument("--customers", type=int, default=20_000, help="customers in the book")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="queue.batch_size (default: the setting's; a backlog deeper than 10 "
                         "batches is cut into batches 10x that)")
    ap.add_argument("--decide-parts", type=int, default=None,
                    help="queue.decide_parts (PostgreSQL; cProfile sees only this thread, so "
                         "profile with 1)")
    ap.add_argument("--cprofile", metavar="FILE", help="write cProfile stats of the measured phase")
    ap.add_argument("--callgrind", action="store_true",
                    help="switch callgrind's instrumentation on only for the measured phase")
    args = ap.parse_args()

    from plugin import create_app
    from plugin import runtime as runtime_mod
    from plugin.jobs import drain_inbox
    from plugin.runtime import Runtime
    from plugin.settings import load_settings
    from plugin.store import metadata

    tmp = tempfile.TemporaryDirectory(prefix="clout-worker-profile-")
    env = {"CLOUT_DATA_DIR": str(Path(tmp.name) / "data"), "CLOUT_WEBHOOK_SECRET_GENERIC": pb.SECRET,
           "CLOUT_API_TOKEN": pb.TOKEN, "CLOUT_QUEUE__NAME": f"profile-{uuid.uuid4().hex[:8]}"}
    if args.batch_size:
        env["CLOUT_QUEUE__BATCH_SIZE"] = str(args.batch_size)
    if args.decide_parts:
        env["CLOUT_QUEUE__DECIDE_PARTS"] = str(args.decide_parts)
    if os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["DATABASE_URL"]
        pb.prepare_database(os.environ["DATABASE_URL"])
    rt = Runtime(load_settings(env))
    runtime_mod.install(rt)
    try:
        if os.environ.get("DATABASE_URL"):
            metadata.drop_all(rt.store.engine)
        metadata.create_all(rt.store.engine)
        app = create_app(runtime=rt)
        n, book = args.events, args.customers
        pb.seed_book(rt, book, [pb.customer_id(i, book) for i in range(n)])
        # A warm-up backlog first: imports, caches, statement caches and connections.
        pb.post_many(app, "W", n, book)
        drain_inbox(deferred=True)
        run_jobs(rt)
        pb.post_many(app, "P", n, book)
        from plugin.worker import _freeze_heap

        _freeze_heap()  # as `clout worker` does after warming up

        profiler = cProfile.Profile() if args.cprofile else None
        if args.callgrind:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=False,
                           capture_output=True)
        if profiler:
            profiler.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        drain_inbox(deferred=True)
        t1 = time.perf_counter()
        batches = run_jobs(rt)
        t2, c2 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        if args.callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=False,
                           capture_output=True)
    finally:
        rt.close()
        tmp.cleanup()
    out = {"bench": "worker_profile", "database": rt.settings.database_url.split(":", 1)[0],
           "events": n, "batches": batches, "drain_us_per_event": round((t1 - t0) * 1e6 / n, 1),
           "jobs_us_per_event": round((t2 - t1) * 1e6 / n, 1),
           "cpu_us_per_event": round((c2 - c0) * 1e6 / n, 1),
           "events_per_s": round(n / (t2 - t0))}
    print(f"{n} events in {batches} batch job(s): drain {out['drain_us_per_event']} us/event, "
          f"jobs {out['jobs_us_per_event']} us/event, CPU {out['cpu_us_per_event']} us/event "
          f"-> {out['events_per_s']:,} events/s in one process")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
