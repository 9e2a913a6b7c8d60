"""`NetworkMetrics` and `NETWORKS`: what the influence model scores, one account on one network.

They live here, with the model that needs them, so `ranking/` imports nothing
of ours; each social connector fills a `NetworkMetrics` from its API's JSON.

`NETWORKS` is the same list, in the same order, as
`webhooks.event.SOCIAL_NETWORKS`: webhooks/ may not import ranking/ (nor the
other way round), so both lists exist, and tests/test_influence_properties.py
keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass

NETWORKS: tuple[str, ...] = ("x", "bluesky", "mastodon", "github", "reddit", "youtube")


@dataclass(frozen=True, slots=True)
class NetworkMetrics:
    """Counts for one account on one network. `None` = the network doesn't say."""

    network: str
    handle: str
    followers: float | None = None
    following: float | None = None
    posts_total: float | None = None
    sample_posts: int = 0  # recent own posts the engagement counts below cover
    reposts: float | None = None  # reposts + quotes over the sample
    replies: float | None = None
    likes: float | None = None
    recent_posts_90d: int | None = None  # activity inside the ~90-day window
