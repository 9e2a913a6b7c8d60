"""The contract every desk honours: its connector, its typed settings, what it reports.

A desk (Salesforce, Zendesk, the built-in generic/local pair...) is one unit:
a webhook module in `webhooks/<webhook>.py` (verify + parse), a connector
here (fetch customers, read a ticket's current state, write decisions), a
typed settings section `[desks.<name>]` and its secrets from the environment.
Connectors are batch-first: the worker ranks and writes many tickets at once,
so every call takes many ids. A connector that can only do one at a time loops
internally; callers never do.

The rules that hold for every desk (write only the newest decision, never over
an agent's priority, retry failed writes, skip closed tickets) live in the glue
(`plugin.delivery`), not here: a connector only reports what the desk says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ranking.weights import TIERS


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
    id: str = ""  # Clout's decision id; a desk stores it so a repeated write can be recognised


OPEN = "open"
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class DeskTicket:
    """A ticket as the desk shows it right now.

    `clout_priority` and `clout_decision` are what Clout last wrote (kept by the
    desk, e.g. in custom fields); `None` when Clout never wrote this ticket.
    """

    status: str = OPEN  # OPEN or CLOSED (closed, solved, resolved...)
    priority: str | None = None
    clout_priority: str | None = None
    clout_decision: str | None = None


@dataclass(frozen=True, slots=True)
class WriteFailure:
    message: str  # safe to show an operator: never a secret or a customer's data
    retryable: bool = True  # False: the desk refused this write for good (e.g. a bad field)
    retry_after: float | None = None  # seconds, when the desk said (HTTP Retry-After)


@dataclass(frozen=True, slots=True)
class WriteResult:
    written: tuple[str, ...] = ()  # ticket ids the desk confirmed
    failed: dict[str, WriteFailure] = field(default_factory=dict)  # ticket id -> why


class DeskUnavailable(Exception):
    """The whole desk could not be reached; every ticket in the call is retried later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class DeskConnector(Protocol):
    """A desk or CRM Clout reads customers and tickets from and writes decisions to."""

    name: str
    max_batch: int  # most tickets one read or write call may carry

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        """Customers known to the desk, by id; unknown ids are simply absent."""
        ...

    def read_tickets(self, ticket_ids: Sequence[str]) -> dict[str, DeskTicket]:
        """The desk's current state of these tickets; unknown ids are absent."""
        ...

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        """Write priority, flags, reason and the Clout markers; report each ticket."""
        ...


CRMConnector = DeskConnector  # the name the skeleton used


class DeskSettings(BaseModel):
    """`[desks.<name>]`: what every desk has. A desk subclasses it to add its own fields.

    `secret_env` maps a secret's name to the environment variable it comes from;
    secrets are never read from a file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    secret_env: ClassVar[Mapping[str, str]] = {}

    enabled: bool = False
    priorities: dict[str, str]
    flush_window_ms: int = Field(0, ge=0, le=60_000)
    write_deadline_seconds: int | None = Field(None, ge=1)

    @field_validator("priorities", mode="before")
    @classmethod
    def _numbers_are_values_too(cls, value: Any) -> Any:
        # Some desks number their priorities (Freshdesk 1..4): `urgent = 4` means "4".
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    @field_validator("priorities")
    @classmethod
    def _every_tier(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [t for t in TIERS if t not in value]
        unknown = [t for t in value if t not in TIERS]
        if missing or unknown:
            raise ValueError(
                f"needs exactly the tiers {', '.join(TIERS)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        if any(not v or len(v) > 32 for v in value.values()):
            raise ValueError("each desk priority value must be 1 to 32 characters")
        return value


@dataclass(frozen=True)
class DeskSpec:
    """What a desk module registers: its name, its webhook, its settings and its factory.

    `connect(settings, secrets, *, store, session)` builds the connector; `store`
    is Clout's store (for desks that keep state there) and `session` a
    `requests.Session` (tests hand one that trusts a test CA).
    """

    name: str
    webhook: str  # module name under webhooks/
    settings: type[DeskSettings]
    connect: Callable[..., DeskConnector]
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
