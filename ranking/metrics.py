"""`NetworkMetrics`: the counts the influence model scores, one account on one network.

It lives here, with the model that needs it, so `ranking/` imports nothing of
ours; each social connector fills one from its API's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


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
