"""The contract every social influence source honours.

Lookups are batched per network (X takes 100 names per call, Bluesky 25), so
the protocol takes many handles for one network at a time. Each network module
turns its API's JSON into `NetworkMetrics`; the influence model in `ranking/`
only ever sees those numbers.

Every handle asked for gets an answer, keyed exactly as given: its metrics, or
a `LookupFailure` saying why not. `retryable=False` means asking again will not
help (unknown user, invalid handle); `retryable=True` means it may (timeout,
5xx, rate limit). A source never raises for one handle's or one network's
trouble; it raises only for a caller's mistake (a network it has never heard
of) or a broken configuration (a snapshot file that can't be read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from ranking.metrics import NETWORKS, NetworkMetrics

__all__ = ["NETWORKS", "InfluenceSource", "LookupFailure", "NetworkMetrics"]


@dataclass(frozen=True)
class LookupFailure:
    """Why a handle has no metrics. `reason` is short and safe to log (no secrets, no URLs)."""

    reason: str
    retryable: bool = True


NOT_FOUND = LookupFailure("not found", retryable=False)


@runtime_checkable
class InfluenceSource(Protocol):
    name: str

    def networks(self) -> tuple[str, ...]:
        """Networks this source can look up."""
        ...

    def fetch_metrics(
        self, network: str, handles: Sequence[str]
    ) -> dict[str, NetworkMetrics | LookupFailure]:
        """An entry for every handle asked for, keyed by the handle as given."""
        ...
