"""The agent queue: open tickets in the order Clout ranks them, filterable by flag, tier and desk.

Filters are plain GET parameters (a form that works without JavaScript);
an unknown flag, tier, desk or page number is a 400 page naming the allowed
values.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, render_template, request, url_for

from ranking.priority import FLAGS
from ranking.weights import TIERS

from . import queries
from .auth import login_required

_DESK = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_PAGE = 100_000


def _choice(name: str, allowed: list[str] | tuple[str, ...]) -> str | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        abort(400, f"{name} must be one of: {', '.join(allowed)} (got an unknown value)")
    return value


def _page_number() -> int:
    raw = request.args.get("page", "1").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        abort(400, f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def filters_from_request(store: Any, settings: Any) -> dict[str, Any]:
    desks = sorted(set(settings.desks) | set(queries.open_desks(store)))
    desk_raw = request.args.get("desk", "").strip()
    if desk_raw and not _DESK.match(desk_raw):
        abort(400, "desk must be a desk name (lower-case letters, digits, - and _)")
    return {"flag": _choice("flag", FLAGS), "tier": _choice("tier", TIERS),
            "desk": _choice("desk", desks), "page": _page_number(), "desks": desks}


def register(bp: Blueprint) -> None:
    @bp.get("/queue")
    @login_required
    def queue():
        state = current_app.extensions["clout"]
        settings = state.settings
        f = filters_from_request(state.store, settings)
        size = settings.config.pages.page_size
        rows, total = queries.queue_page(state.store, flag=f["flag"], tier=f["tier"],
                                         desk=f["desk"], limit=size, offset=(f["page"] - 1) * size)
        pages = max(1, -(-total // size))
        if f["page"] > pages and total:
            abort(404, f"There are only {pages} page(s) of tickets with these filters.")
        kept = {k: f[k] for k in ("flag", "tier", "desk") if f[k]}

        def page_url(n: int) -> str:
            return url_for("clout_pages.queue") + "?" + urlencode({**kept, "page": n})

        return render_template(
            "pages/queue.html", rows=rows, total=total, page=f["page"], pages=pages,
            page_url=page_url, filters=kept, flags=FLAGS, desks=f["desks"],
            now=dt.datetime.now(dt.timezone.utc),
            refresh=settings.config.pages.refresh_seconds, offset=(f["page"] - 1) * size)
