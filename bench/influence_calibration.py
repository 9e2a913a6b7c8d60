"""Calibration bench: the influence model on a population it was not fitted on.

The curve's constants come from `ranking.influence.calibration_population`,
which draws every account's standing on the model's own common scale. This
bench builds its population independently, the way an auditor would: per
network log-normal audiences in the network's own units (with a Pareto tail),
engagement from its own rate model, a quarter of the accounts silent, a third
on Reddit, GitHub and YouTube. It prints

- score percentiles (p10 ... p99.9) over all profiles, per network, and over
  customers holding 1-3 of those profiles;
- per network, the audience a typical account needs for 20, 30, 60, 70 and 90
  (`typical_frame`: the network's typical reactions per post, 30 posts in 90
  days) and the growth each +10 needs;
- the time taken;

and ends with one JSON line holding all of it.

    python bench/influence_calibration.py [--profiles 100000] [--seed 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

from ranking import influence  # noqa: E402
from ranking.metrics import NETWORKS  # noqa: E402

PERCENTILES = (10, 25, 50, 75, 90, 99, 99.9)
TARGETS = (20, 30, 60, 70, 90)

# The auditor's own view of each network (native units), deliberately not
# derived from ranking.influence.REFERENCE: share of profiles, log-normal
# audience (median, sigma of ln), and for networks with posts the median
# likes per post per follower^0.8.
POPULATION = {
    #            share  median  sigma  likes rate
    "x":        (0.35, 150.0, 2.0, 0.030),
    "bluesky":  (0.18, 80.0, 1.8, 0.060),
    "mastodon": (0.14, 60.0, 1.6, 0.025),
    "github":   (0.12, 8.0, 1.7, None),
    "reddit":   (0.11, 2_500.0, 2.0, None),  # karma
    "youtube":  (0.10, 120.0, 2.4, None),
}
SILENT_SHARE = 0.25
TAIL_SHARE, TAIL_ALPHA = 0.04, 1.1  # Pareto tail above the network's p95
BOUGHT_SHARE = 0.015


def population(n: int, seed: int) -> pd.DataFrame:
    """`n` profiles, each its own customer (`customer_id` = profile id)."""
    rng = np.random.default_rng(seed)
    names = list(POPULATION)
    share = np.array([POPULATION[k][0] for k in names])
    network = np.asarray(names, dtype=object)[rng.choice(len(names), n, p=share / share.sum())]
    median = np.array([POPULATION[k][1] for k in network])
    sigma = np.array([POPULATION[k][2] for k in network])
    rate = np.array([np.nan if POPULATION[k][3] is None else POPULATION[k][3] for k in network])
    publishes = ~np.isnan(rate)

    audience = median * np.exp(sigma * rng.standard_normal(n))
    tail = rng.random(n) < TAIL_SHARE
    p95 = median * np.exp(1.645 * sigma)
    audience = np.where(tail, p95 * (1.0 + rng.pareto(TAIL_ALPHA, n)), audience)
    audience = np.floor(np.minimum(audience, 5e8))

    silent = rng.random(n) < SILENT_SHARE
    active = publishes & ~silent
    likes_pp = np.nan_to_num(rate) * audience**0.8 * rng.lognormal(0.0, 1.1, n)
    replies_pp = 0.2 * likes_pp * rng.lognormal(0.0, 0.6, n)
    reposts_pp = 0.12 * likes_pp * rng.lognormal(0.0, 0.8, n)
    bought = active & (rng.random(n) < BOUGHT_SHARE)
    audience = np.where(bought, np.floor(audience * rng.uniform(20, 200, n)), audience)
    sample = np.where(active, rng.integers(5, 31, n), 0).astype("float64")
    recent = np.where(active, rng.poisson(rng.gamma(0.8, 20.0, n)), 0).astype("float64")
    is_reddit = network == "reddit"
    no_follow = is_reddit | (network == "youtube")
    return pd.DataFrame(
        {
            "customer_id": np.char.add("A-", np.arange(n).astype(str)),
            "network": network,
            "handle": np.char.add("a", np.arange(n).astype(str)),
            "followers": np.where(is_reddit, np.nan, audience),
            "following": np.where(no_follow, np.nan, np.floor(rng.lognormal(np.log(300), 1.2, n))),
            "posts_total": np.where(publishes, recent * 6 + 40, np.nan),
            "sample_posts": sample,
            "likes": np.where(
                active, np.round(likes_pp * sample), np.where(is_reddit, audience, np.nan)
            ),
            "replies": np.where(active, np.round(replies_pp * sample), np.nan),
            "reposts": np.where(active, np.round(reposts_pp * sample), np.nan),
            "recent_posts_90d": np.where(publishes, recent, np.nan),
        }
    )


def as_customers(profiles: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same profiles grouped into customers of 1-3 (62 / 29 / 9 %)."""
    rng = np.random.default_rng(seed + 1)
    sizes = rng.choice([1, 2, 3], size=len(profiles), p=[0.62, 0.29, 0.09])
    owner = np.repeat(np.arange(len(sizes)), sizes)[: len(profiles)]
    return profiles.assign(customer_id=np.char.add("C-", owner.astype(str)))


def percentiles(scores: pd.Series) -> dict[str, float]:
    values = np.percentile(scores.to_numpy(), PERCENTILES)
    return {f"p{p:g}": round(float(v), 1) for p, v in zip(PERCENTILES, values)}


def audience_for_targets(network: str) -> dict[str, float | None]:
    """Smallest audience (typical engagement) scoring each target, by bisection
    on a fine log grid scored in one frame."""
    grid = np.geomspace(1.0, 1e10, 4001)
    frame = influence.typical_frame(network, grid)
    scores = influence.score_influence(frame, explain=False)["influence"]
    scores = scores.reindex(frame["customer_id"]).to_numpy()
    out: dict[str, float | None] = {}
    for target in TARGETS:
        reached = np.flatnonzero(scores >= target)
        out[str(target)] = float(f"{grid[reached[0]]:.3g}") if len(reached) else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    profiles = population(args.profiles, args.seed)
    built = time.perf_counter()
    by_profile = influence.score_influence(profiles, explain=False)["influence"]
    customers = as_customers(profiles, args.seed)
    by_customer = influence.score_influence(customers, explain=False)["influence"]
    scored = time.perf_counter()

    network_of = profiles.set_index("customer_id")["network"]
    posting = profiles["network"].isin(["x", "bluesky", "mastodon"])
    report: dict = {
        "model": influence.MODEL_VERSION,
        "profiles": len(profiles),
        "customers": int(by_customer.size),
        "seed": args.seed,
        "silent_share": round(float((profiles["sample_posts"] == 0)[posting].mean()), 3),
        "percentiles": {
            "all profiles": percentiles(by_profile),
            "customers": percentiles(by_customer),
        },
        "audience_for_score": {},
        "growth_per_10": {},
    }
    for network in NETWORKS:
        ids = network_of.index[network_of.to_numpy() == network]
        report["percentiles"][network] = percentiles(by_profile.loc[ids])
        needs = audience_for_targets(network)
        report["audience_for_score"][network] = needs
        report["growth_per_10"][network] = {
            f"{a}->{b}": round(needs[str(b)] / needs[str(a)], 2)
            for a, b in ((20, 30), (60, 70))
            if needs[str(a)] and needs[str(b)]
        }
    finished = time.perf_counter()
    report["seconds"] = {
        "build": round(built - started, 2),
        "score": round(scored - built, 2),
        "total": round(finished - started, 2),
    }

    print(
        f"influence model {report['model']}: {report['profiles']:,} profiles "
        f"({report['silent_share']:.0%} of x/bluesky/mastodon silent), "
        f"{report['customers']:,} customers, seed {args.seed}"
    )
    print("\nscore percentiles")
    header = "  " + f"{'':14s}" + "".join(f"{'p' + format(p, 'g'):>8s}" for p in PERCENTILES)
    print(header)
    for label, row in report["percentiles"].items():
        print("  " + f"{label:14s}" + "".join(f"{v:8.1f}" for v in row.values()))
    print("\naudience a typical account needs for a score (followers; reddit: karma)")
    print("  " + f"{'':10s}" + "".join(f"{t:>12d}" for t in TARGETS) + "   20->30  60->70")
    for network, needs in report["audience_for_score"].items():
        growth = report["growth_per_10"][network]
        cells = "".join(f"{v:12,.0f}" if v else f"{'-':>12s}" for v in needs.values())
        low, high = growth.get("20->30", float("nan")), growth.get("60->70", float("nan"))
        print("  " + f"{network:10s}" + cells + f"   x{low:<6.2f} x{high:.2f}")
    seconds = report["seconds"]
    print(
        f"\ntime: build {seconds['build']:.2f} s, score {seconds['score']:.2f} s, "
        f"total {seconds['total']:.2f} s"
    )
    print(json.dumps(report, separators=(",", ":")))


if __name__ == "__main__":
    main()
