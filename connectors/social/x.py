"""X (Twitter) API v2 -> `NetworkMetrics`.

Bundle per handle: `{"user": <one item of data[] from GET /2/users/by
?user.fields=public_metrics>, "tweets": <body of GET /2/users/:id/tweets
?tweet.fields=public_metrics,created_at>}`.

Retweets are dropped from the sample: in v2 a retweet's `public_metrics`
are the original tweet's counts, so keeping them would credit the account
with someone else's reach. Quotes count as amplification with retweets,
as in Klout's "reshares".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.social import (
    as_count,
    as_list,
    as_mapping,
    as_time,
    recent_activity,
    reference_time,
    sum_counts,
)
from connectors.social.base import NetworkMetrics

NETWORK = "x"


def _is_retweet(tweet: Mapping[str, Any]) -> bool:
    for ref in as_list(tweet.get("referenced_tweets")):
        if as_mapping(ref).get("type") == "retweeted":
            return True
    text = tweet.get("text")
    return isinstance(text, str) and text.startswith("RT @")


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; missing parts become None."""
    bundle = as_mapping(raw)
    user = as_mapping(bundle.get("user"))
    public = as_mapping(user.get("public_metrics"))
    handle = user.get("username") if isinstance(user.get("username"), str) else ""

    metrics: dict[str, Any] = {
        "followers": as_count(public.get("followers_count")),
        "following": as_count(public.get("following_count")),
        "posts_total": as_count(public.get("tweet_count")),
    }

    timeline = bundle.get("tweets")
    if isinstance(timeline, Mapping):
        own = [
            as_mapping(t)
            for t in as_list(timeline.get("data"))
            if isinstance(t, Mapping) and not _is_retweet(t)
        ]
        counts = [as_mapping(t.get("public_metrics")) for t in own]
        more_pages = bool(as_mapping(timeline.get("meta")).get("next_token"))
        metrics["sample_posts"] = len(own)
        metrics["recent_posts_90d"] = recent_activity(
            (as_time(t.get("created_at")) for t in own), reference_time(now), more_pages
        )
        if own:
            metrics["reposts"] = sum_counts(
                sum_counts([as_count(c.get("retweet_count")), as_count(c.get("quote_count"))])
                for c in counts
            )
            metrics["replies"] = sum_counts(as_count(c.get("reply_count")) for c in counts)
            metrics["likes"] = sum_counts(as_count(c.get("like_count")) for c in counts)

    return NetworkMetrics(network=NETWORK, handle=handle, **metrics)
