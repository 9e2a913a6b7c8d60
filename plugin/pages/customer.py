"""The customer page: influence over time as a chart, and every decision with its reason.

The chart is inline SVG drawn on the server, with a sentence under it
("17 two days ago, 38 today") for anyone who can't or won't read a chart.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, render_template

from . import charts, queries
from .auth import login_required

MAX_ID = 128


def register(bp: Blueprint) -> None:
    @bp.get("/customers/<path:customer_id>")
    @login_required
    def customer(customer_id: str):
        if not 0 < len(customer_id) <= MAX_ID or "\x00" in customer_id:
            abort(404, "No such customer.")
        store = current_app.extensions["clout"].store
        found = queries.customer(store, customer_id)
        history = queries.customer_decisions(store, customer_id)
        if found is None and not history:
            abort(404, f"No customer {customer_id!r} is known to Clout.")
        points = queries.influence_points(store, customer_id)
        now = dt.datetime.now(dt.timezone.utc)
        opted_out = customer_id in store.opted_out([customer_id])
        return render_template(
            "pages/customer.html", customer_id=customer_id, c=found or {}, decisions=history,
            chart=charts.line_chart(points), summary=charts.influence_summary(points, now),
            points=points, opted_out=opted_out)
