"""Small things every page template uses: links, "3 h ago", tier names.

`desk_url` is where an agent opens the ticket in its own desk: `[pages]
desk_links.<desk>` is a URL template filled with the ticket id, the source and
the desk's own settings (Salesforce: `{instance_url}/lightning/r/Case/{id}/view`).
Without one (the local and generic desks), or when a value it needs is empty,
the link is the ticket's own page here.
"""

from __future__ import annotations

import datetime as dt
import string
from typing import Any
from urllib.parse import quote

from flask import Blueprint, current_app, url_for

from ranking.weights import TIERS


def customer_url(customer_id: str) -> str:
    return url_for("clout_pages.customer", customer_id=customer_id)


def ticket_url(source: str, ticket_id: str) -> str:
    return url_for("clout_pages.ticket", source=source, ticket_id=ticket_id)


def desk_link(settings: Any, source: str, ticket_id: str) -> str | None:
    """The ticket in its desk, or None when the desk has no link template (or it can't be filled)."""
    template = settings.config.pages.desk_links.get(source)
    if not template:
        return None
    values: dict[str, str] = {"id": quote(str(ticket_id), safe=""), "source": quote(source, safe="")}
    desk = settings.desks.get(source)
    if desk is not None:
        for key, value in desk.model_dump().items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                values.setdefault(key, str(value).rstrip("/"))
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        if any(not values.get(f) for f in fields):
            return None
        url = template.format_map(values)
    except (ValueError, KeyError, IndexError):
        return None
    return url if url.startswith(("https://", "http://")) else None


def desk_url(source: str, ticket_id: str) -> str:
    settings = current_app.extensions["clout"].settings
    return desk_link(settings, source, ticket_id) or ticket_url(source, ticket_id)


def as_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def ago(value: Any, now: dt.datetime | None = None) -> str:
    """'just now', '5 min', '3 h', '2 d' — how long since `value`."""
    when = as_datetime(value)
    if when is None:
        return "-"
    seconds = ((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def iso(value: Any) -> str:
    when = as_datetime(value)
    return when.strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def tier_label(tier: str | None) -> str:
    return (tier or "-").capitalize()


def register(bp: Blueprint) -> None:
    @bp.context_processor
    def _links() -> dict[str, Any]:
        return {"customer_url": customer_url, "ticket_url": ticket_url, "desk_url": desk_url,
                "ago": ago, "iso": iso, "tier_label": tier_label, "tiers": TIERS}
