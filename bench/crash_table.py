"""The crash-recovery table: a worker SIGKILLed at each stage, with Clout's DEFAULT timings.

Each stage runs on a fresh stack of real processes (`clout web`, `clout worker`, the
embedded Redis, a SQLite store, the test-only `acme` desk over real HTTP; see
tests/crash_harness.py), posts about N signed webhooks, kills the worker (and
everything it forked) at that stage, starts a fresh `clout worker`, and measures
how long until every accepted event is decided:

    a  frozen while blocked on the queue (the drain job in RQ's intermediate list), killed,
       then more webhooks
    b  killed the moment the drain holds its lock (moving the inbox into the ledger)
    c  killed mid-batch: events claimed under a lease, the desk read hanging
    d  killed between the desk's write and Clout's record of it
    e  like d, but the write is a retry made by the reconcile pass (the worker holds its lock)
    r  no kill: 10 events each redelivered under 40 webhook-ids among others, two workers

Columns: events accepted (202), decided within 60 s of the restart, lost (accepted,
not decided within 60 s), double-written (a ticket+decision the desk received twice),
decided twice (a ticket with two decisions), seconds from the restart to all decided.
The last line of output is one JSON object with the same figures.

    .venv/bin/python bench/crash_table.py            # all stages, N=200, a few minutes
    .venv/bin/python bench/crash_table.py --stages a,d --n 100
    .venv/bin/python bench/crash_table.py --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "tests", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from crash_harness import (
    DEADLINE,
    CrashStack,
    markdown_table,
    stage_between_write_and_record,
    stage_blocked_on_queue,
    stage_in_reconcile_write,
    stage_mid_batch,
    stage_redelivery,
    stage_while_draining,
)

STAGES = {
    "a": lambda st, n, obs: stage_blocked_on_queue(st, n - n // 4, n // 4, observe=obs),
    "b": lambda st, n, obs: stage_while_draining(st, n, observe=obs),
    "c": lambda st, n, obs: stage_mid_batch(st, n, observe=obs),
    "d": lambda st, n, obs: stage_between_write_and_record(st, n, observe=obs),
    "e": lambda st, n, obs: stage_in_reconcile_write(st, n, observe=obs),
    "r": lambda st, n, obs: stage_redelivery(st, events=10, copies=40, others=max(0, n - 10),
                                             observe=obs),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="events per stage (default 200)")
    parser.add_argument("--stages", default="a,b,c,d,e,r", help="which stages, comma-separated")
    parser.add_argument("--observe", type=float, default=90.0,
                        help="seconds to keep watching after a restart, to time late decisions")
    parser.add_argument("--keep", action="store_true", help="keep each stage's data dir and logs")
    parser.add_argument("--redis-url", default=None,
                        help="use this Redis instead of the embedded one "
                             "(each stage has its own queue name)")
    args = parser.parse_args(argv)

    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    results = []
    started = time.monotonic()
    for name in wanted:
        workdir = Path(tempfile.mkdtemp(prefix=f"clout-crash-{name}-"))
        t0 = time.monotonic()
        print(f"stage {name}: running ...", file=sys.stderr, flush=True)
        try:
            # Default delivery timings: no overrides.
            with CrashStack(workdir, redis_url=args.redis_url) as stack:
                res = STAGES[name](stack, args.n, max(args.observe, DEADLINE))
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        results.append(res)
        print(f"stage {name}: {res.decided_in_time}/{res.accepted} decided within "
              f"{DEADLINE:.0f} s, all after {res.seconds} s; "
              f"notes {json.dumps(res.notes, default=str)} ({time.monotonic() - t0:.0f} s)"
              + (f"; kept {workdir}" if args.keep else ""), file=sys.stderr, flush=True)

    print(markdown_table(results))
    print()
    print(json.dumps({
        "timings": "defaults (config/clout.toml [delivery])",
        "events_per_stage": args.n,
        "total_seconds": round(time.monotonic() - started, 1),
        "stages": [{k: v for k, v in r.as_dict().items()} for r in results],
    }, default=str, separators=(",", ":")))
    ok = all(r.lost == 0 and r.double_written == 0 and r.decided_twice == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
