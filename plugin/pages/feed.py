"""The complaint feed: social mentions, loudest first (influence x complaint strength).

Each item shows the post (text, network, author, link), who it is (the customer's
name with spend and renewal date, linked to their page, or "prospect"), the ticket
it was escalated to, and the goodwill suggestion with a "used it" / "didn't use it"
form (CSRF-checked by the pages blueprint; a plain POST + redirect, no script needed).
Data: `plugin.mention_store.MentionStore.feed` (the same as `GET /api/mentions`).
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from .auth import login_required

MAX_NOTE = 2000


def register(bp: Blueprint) -> None:
    @bp.get("/feed")
    @login_required
    def feed():
        from ..mentions import mention_store

        state = current_app.extensions["clout"]
        settings = state.settings
        only = request.args.get("all") != "1"
        size = settings.config.pages.page_size
        try:
            page = max(1, min(int(request.args.get("page", "1")), 100_000))
        except ValueError:
            abort(400, "page must be a whole number")
        items = mention_store(state.runtime).feed(limit=size + 1, offset=(page - 1) * size,
                                                  complaints_only=only)
        return render_template("pages/feed.html", items=items[:size], more=len(items) > size,
                               page=page, only=only, recorded=request.args.get("recorded"),
                               refresh=settings.config.pages.refresh_seconds)

    @bp.post("/feed/suggestions/<int:suggestion_id>")
    @login_required
    def feed_suggestion_used(suggestion_id: int):
        from ..mention_api import record_use

        choice = request.form.get("used")
        if choice not in ("yes", "no"):
            abort(400, "Say whether the gesture was used: used=yes or used=no.")
        note = request.form.get("note") or None
        if note is not None and (len(note) > MAX_NOTE or "\x00" in note):
            abort(400, f"The note can be at most {MAX_NOTE} characters.")
        if suggestion_id > 2**31 - 1 or record_use(suggestion_id, choice == "yes", note) is None:
            abort(404, "No such goodwill suggestion.")
        back = {"recorded": suggestion_id}
        if request.form.get("all") == "1":
            back["all"] = "1"
        return redirect(url_for("clout_pages.feed", **back) + f"#s{suggestion_id}", code=303)
