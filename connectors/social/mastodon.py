"""Mastodon -> `NetworkMetrics`.

Bundle per handle: `{"account": <GET /api/v1/accounts/lookup body>,
"statuses": [<Status>, ...]}` (GET /api/v1/accounts/:id/statuses).

Boosts (`reblog` non-null) are someone else's post, so they are dropped even
if the statuses were fetched without `exclude_reblogs`. Counts use the API's
British `favourites_count`; `quotes_count` (newer servers) joins boosts as
amplification when present. The statuses list arrives without its `Link`
header, so a list of a full default page (20) is taken to have more pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.social import (
    as_count,
    as_mapping,
    as_time,
    recent_activity,
    reference_time,
    sum_counts,
)
from connectors.social.base import NetworkMetrics

NETWORK = "mastodon"
DEFAULT_PAGE = 20  # statuses per page unless `limit` is given


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; missing parts become None."""
    bundle = as_mapping(raw)
    account = as_mapping(bundle.get("account"))
    handle = next(
        (v for v in (account.get("acct"), account.get("username")) if isinstance(v, str)), ""
    )

    metrics: dict[str, Any] = {
        "followers": as_count(account.get("followers_count")),
        "following": as_count(account.get("following_count")),
        "posts_total": as_count(account.get("statuses_count")),
    }

    statuses = bundle.get("statuses")
    if isinstance(statuses, list):
        own = [
            as_mapping(s) for s in statuses if isinstance(s, Mapping) and s.get("reblog") is None
        ]
        metrics["sample_posts"] = len(own)
        metrics["recent_posts_90d"] = recent_activity(
            (as_time(s.get("created_at")) for s in own),
            reference_time(now),
            len(statuses) >= DEFAULT_PAGE,
        )
        if own:
            metrics["reposts"] = sum_counts(
                sum_counts([as_count(s.get("reblogs_count")), as_count(s.get("quotes_count"))])
                for s in own
            )
            metrics["replies"] = sum_counts(as_count(s.get("replies_count")) for s in own)
            metrics["likes"] = sum_counts(as_count(s.get("favourites_count")) for s in own)

    return NetworkMetrics(network=NETWORK, handle=handle, **metrics)
