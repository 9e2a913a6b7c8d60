"""The contract every social influence source honours.

Lookups are batched per network (X takes 100 names per call, Bluesky 25), so
the protocol takes many handles for one network at a time. Each network module
turns its API's JSON into `NetworkMetrics`; the influence model in `ranking/`
only ever sees those numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


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


@runtime_checkable
class InfluenceSource(Protocol):
    name: str

    def networks(self) -> tuple[str, ...]:
        """Networks this source can look up."""
        ...

    def fetch_metrics(self, network: str, handles: Sequence[str]) -> dict[str, NetworkMetrics]:
        """Metrics for the handles found, keyed by the handle as given."""
        ...
