"""The contract every CRM / desk connector honours.

Connectors are batch-first: the worker ranks many tickets at once, so it asks
for many customers and writes many decisions per call. A connector that can
only do one at a time loops internally; callers never do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str | None = None
    email: str | None = None
    handles: dict[str, str] = field(default_factory=dict)
    monthly_spend: float | None = None
    currency: str | None = None
    contract_end: str | None = None  # ISO date


@dataclass(frozen=True, slots=True)
class Decision:
    """One priority decision, ready to be written to the desk."""

    source: str
    ticket_id: str
    customer_id: str
    tier: str
    priority: str  # the desk's own value for the tier (e.g. "High", "urgent", "4")
    score: float
    flags: tuple[str, ...]
    reason: str
    components: dict[str, float]
    weights_version: str
    decided_at: str  # ISO 8601 UTC
    event_id: str = ""  # the event this decision answers


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # ticket_id -> error


@runtime_checkable
class CRMConnector(Protocol):
    """A desk or CRM Clout reads customers from and writes decisions to."""

    name: str

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        """Customers known to the CRM, by id; unknown ids are simply absent."""
        ...

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        """Write priority, flags and reason back; report per-ticket failures."""
        ...
