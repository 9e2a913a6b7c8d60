"""1,000,000 tickets through the full model, against the bare weighted sum.

Run:  python bench/rank_bench.py [--rows 1000000] [--repeat 3] [--profile]

The frame is what `clout rank` hands the model for a nightly re-rank of a
Parquet book: seeded, realistic distributions (log-normal influence and spend,
contracts spread over the coming year and the recent past, tickets up to four
days old, ~5% holes in every column), dates as datetime64 columns (as Parquet
stores them), and the complaint/social-mention columns precomputed (the text
scoring is `ranking.sentiment`'s cost, not the ranking's).

Timed, best of --repeat, over the same frame in the same process:
  full      `ranking.prioritize` with the default weights and tiers by share
            (at most 5% urgent, 20% high, 40% normal, thresholds taken from the
            book's own scores): every component, tiers with the fairness
            guards, flags and the one-line reasons;
  baseline  the bare weighted sum: the (n, 5) component matrix (assumed
            already computed, so only numpy's product and sum are timed)
            times the weight shares, summed per row. Nothing else.

Peak memory is measured in a separate, untimed call (tracemalloc slows the
allocations it watches): tracemalloc's peak of Python+numpy allocations made
*during* `prioritize` (the input frame excluded) plus the peak of Arrow's own
memory pool during that call (the reasons are built in Arrow, which
tracemalloc can't see), and the process's ru_maxrss (peak resident set
size, whole run, frame included) for context.
The last line printed is one JSON object with all the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ranking.priority import COMPONENTS, prioritize  # noqa: E402
from ranking.weights import Weights  # noqa: E402

NOW = pd.Timestamp("2025-06-02T12:00:00Z")
TARGET_SECONDS = 1.0
TARGET_PEAK_MB = 500.0
SHARES = (0.05, 0.20, 0.40)  # urgent, high, normal: the settings' defaults for mode "share"


def make_frame(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    today = NOW.normalize()
    influence = np.clip(rng.lognormal(3.0, 0.6, n), 1, 100).round()
    spend = rng.lognormal(5, 1.5, n).round(2)
    contract_end = today + pd.to_timedelta(rng.integers(-60, 400, n), unit="D")
    created = NOW - pd.to_timedelta(rng.exponential(14.0, n).clip(0, 96) * 3600, unit="s")
    # Most tickets aren't complaints; those that are spread over 0.3..1.
    complaint = np.where(rng.random(n) < 0.3, rng.uniform(0.3, 1.0, n), 0.0)
    frame = pd.DataFrame({
        "ticket_id": np.char.add("T-", np.arange(n).astype(str)).astype(object),
        "influence": influence,
        "monthly_spend": spend,
        "contract_end": contract_end,
        "ticket_created_at": created,
        "complaint": complaint,
        "social_mention": rng.random(n) < 0.05,
    })
    for col in ("influence", "monthly_spend", "contract_end", "ticket_created_at"):
        frame.loc[rng.random(n) < 0.05, col] = None
    return frame


def components_matrix(frame: pd.DataFrame, weights: Weights) -> np.ndarray:
    """The five 0..1 components, computed once outside the timing for the baseline."""
    from ranking.priority import _components, _read_signals  # the model's own inputs

    sig = _read_signals(frame, NOW, frame["monthly_spend"].to_numpy(dtype=float))
    return np.ascontiguousarray(_components(sig, weights))


def _arrow_peak_during(fn) -> int:
    """Arrow's pools report only their all-time peak, so `fn` runs on a pool nothing
    else in this process has used (the system allocator's) and its peak is read."""
    previous = pa.default_memory_pool()
    fresh = pa.system_memory_pool()
    assert fresh.max_memory() in (0, None) and previous.backend_name != "system"
    pa.set_memory_pool(fresh)
    try:
        fn()
        return fresh.max_memory() or 0
    finally:
        pa.set_memory_pool(previous)


def best_of(repeat: int, fn) -> tuple[float, object, float]:
    """Best wall time of `repeat` runs, the last result, and that run's CPU seconds (all
    threads; a figure that other work on a shared machine disturbs far less)."""
    best, result, cpu = float("inf"), None, float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, result, cpu


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print a cProfile summary of one run")
    args = ap.parse_args(argv)

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    weights = Weights()
    t0 = time.perf_counter()
    frame = make_frame(args.rows)
    book = frame["monthly_spend"].to_numpy(dtype=float)
    build = time.perf_counter() - t0
    rss_frame = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    comps = components_matrix(frame, weights)
    shares = np.array([getattr(weights, c) for c in COMPONENTS], dtype=float)
    shares /= shares.sum()

    def full():
        return prioritize(frame, weights, now=NOW, spend_book=book, tier_shares=SHARES)

    full_s, ranked, full_cpu = best_of(args.repeat, full)
    base_s, bare, _ = best_of(args.repeat, lambda: comps @ shares)
    # The bare sum is the full model's score before clipping: a cross-check, not just a timing.
    assert np.allclose(np.clip(bare, 0, 1), ranked["score"].to_numpy()), "baseline disagrees with model"

    tracemalloc.start()
    arrow_peak = _arrow_peak_during(full)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    traced_peak = python_peak + arrow_peak
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    tiers = ranked["tier"].value_counts(normalize=True).round(4).to_dict()
    print(f"rows:               {args.rows:,} (built in {build:.2f} s)")
    print(f"full model:         {full_s:.3f} s  (best of {args.repeat}; tiers by share, flags, "
          f"reasons; {full_cpu:.3f} s CPU)")
    print(f"bare weighted sum:  {base_s:.4f} s  (components @ shares)")
    print(f"ratio full/bare:    {full_s / base_s:.0f}x")
    print(f"peak memory:        {traced_peak / 2**20:.0f} MB allocated during prioritize "
          f"({python_peak / 2**20:.0f} MB Python/numpy by tracemalloc + "
          f"{(traced_peak - python_peak) / 2**20:.0f} MB Arrow pool); process ru_maxrss {rss_end / 1024:.0f} MB "
          f"(+{(rss_end - rss_frame) / 1024:.0f} MB after the frame was built)")
    print(f"tier shares:        {tiers}")
    ok_time = full_s <= TARGET_SECONDS
    ok_mem = traced_peak / 2**20 <= TARGET_PEAK_MB
    print(f"targets:            time {'met' if ok_time else 'MISSED'} (<= {TARGET_SECONDS} s), "
          f"peak {'met' if ok_mem else 'MISSED'} (<= {TARGET_PEAK_MB:.0f} MB)")

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        full()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)

    result = {
        "bench": "rank_bench", "rows": args.rows, "repeat": args.repeat,
        "full_s": round(full_s, 4), "full_cpu_s": round(full_cpu, 4), "baseline_s": round(base_s, 5),
        "ratio": round(full_s / base_s, 1),
        "peak_mb": round(traced_peak / 2**20, 1),
        "peak_mb_python": round(python_peak / 2**20, 1),
        "maxrss_mb": round(rss_end / 1024, 1),
        "maxrss_delta_mb": round((rss_end - rss_start) / 1024, 1),
        "target_s": TARGET_SECONDS, "target_peak_mb": TARGET_PEAK_MB,
        "time_ok": ok_time, "memory_ok": ok_mem, "tiers": tiers,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
