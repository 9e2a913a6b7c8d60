"""The contract every social influence source honours.

Lookups are batched per network (X takes 100 names per call, Bluesky 25), so
the protocol takes many handles for one network at a time. Each network module
turns its API's JSON into `NetworkMetrics`; the influence model in `ranking/`
only ever sees those numbers.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ranking.metrics import NetworkMetrics

__all__ = ["InfluenceSource", "NetworkMetrics"]


@runtime_checkable
class InfluenceSource(Protocol):
    name: str

    def networks(self) -> tuple[str, ...]:
        """Networks this source can look up."""
        ...

    def fetch_metrics(self, network: str, handles: Sequence[str]) -> dict[str, NetworkMetrics]:
        """Metrics for the handles found, keyed by the handle as given."""
        ...
