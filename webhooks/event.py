"""The one shape every desk's webhook is turned into.

Each source module parses its own payload into `TicketEvent`; everything after
the webhook (queue, jobs, ranking) only ever sees this type, so adding a desk
never touches the worker. Events travel through RQ as plain JSON, hence the
explicit `to_dict` / `from_dict` pair instead of pickling dataclasses.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SOCIAL_NETWORKS: tuple[str, ...] = ("x", "bluesky", "mastodon", "github", "reddit", "youtube")
OPEN, CLOSED = "open", "closed"


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What the event itself says about the customer; `None` means "not sent"."""

    id: str
    name: str | None = None
    email: str | None = None
    handles: dict[str, str] = field(default_factory=dict)
    monthly_spend: float | None = None
    currency: str | None = None
    contract_end: str | None = None  # ISO date, YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """A ticket was opened or changed on some desk."""

    source: str
    event_id: str
    occurred_at: str  # ISO 8601 with offset, normalised to UTC
    ticket_id: str
    customer: CustomerFacts
    subject: str = ""
    description: str = ""
    desk_priority: str | None = None  # the priority the desk shows now, if it said
    ticket_created_at: str | None = None  # ISO 8601, UTC
    status: str | None = None  # "open" or "closed" as the desk reports it; None: not said

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def ahead_of(self, now: float, tolerance: int) -> dict[str, int]:
        """Times this event claims that lie more than `tolerance` seconds after `now`,
        as field -> seconds ahead.

        A time from the future would make every real event after it look older
        (the store keeps the newest), so such events are refused at the door.
        """
        ahead = {}
        for name in ("occurred_at", "ticket_created_at"):
            value = getattr(self, name)
            if not value:
                continue
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except (ValueError, OverflowError):
                continue  # the parser already checked the shape
            if when - now > tolerance:
                ahead[name] = int(when - now)
        return ahead

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TicketEvent":
        """Unknown keys are dropped, so a worker one version behind the web keeps working."""
        # Field names looked up once per class: `fields()` per event was a visible cost of
        # a worker batch, which rebuilds thousands of events from the ledger.
        values = {name: data[name] for name in field_names(cls) if name in data}
        customer = data["customer"]
        values["customer"] = CustomerFacts(
            **{name: customer[name] for name in field_names(CustomerFacts) if name in customer})
        return cls(**values)


@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, in order (looked up once: `fields()` is not cheap)."""
    return tuple(f.name for f in fields(cls))
