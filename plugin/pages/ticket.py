"""A ticket's own page: what Clout decided and why, every earlier decision, and its desk link.

For the local and generic desks this page *is* the ticket's place; for a desk
with a link template (`[pages] desk_links`) it also links into that desk. Social
complaints escalated to the ticket are shown with their posts and the goodwill
gesture suggested (whether it was used is recorded on the complaint feed).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from . import queries
from .auth import login_required
from .links import desk_link

MAX_ID = 128
MAX_SOURCE = 32


def register(bp: Blueprint) -> None:
    @bp.get("/tickets/<source>/<path:ticket_id>")
    @login_required
    def ticket(source: str, ticket_id: str):
        if not 0 < len(source) <= MAX_SOURCE or not 0 < len(ticket_id) <= MAX_ID:
            abort(404, "No such ticket.")
        state = current_app.extensions["clout"]
        found = queries.ticket(state.store, source, ticket_id)
        if found is None:
            abort(404, f"No ticket {ticket_id!r} from desk {source!r} is known to Clout.")
        from ..mentions import mention_store

        # Social complaints escalated to this ticket and the gestures suggested with them.
        social = mention_store(state.runtime).for_ticket(source, ticket_id)
        return render_template("pages/ticket.html", t=found, latest=found["latest"],
                               in_desk=desk_link(state.settings, source, ticket_id), social=social)
