"""What a social mention becomes: a scored complaint, a customer's raised ticket, or a prospect.

`process(rt, mention_id)` runs in a worker (`plugin.mention_jobs`), once per case
(a post and its repeats; see `plugin.mention_store`):

1. **Complaint score**: `ranking.sentiment.complaint_strength` on the post text,
   the same detector ranking uses on tickets; at least `social.complaint_threshold`
   (default `ranking.flags.complaint_threshold`) is a complaint.
2. **Who**: the author's handle, normalised the way influence lookups normalise
   it, is matched against the customers' handles on that network. A match gets
   the customer's influence (cached lookup); no match keeps the author as a
   prospect with their influence, looked up through the same clients.
3. **Escalation** (a complaint from a customer): a `TicketEvent` for the
   customer's newest open ticket goes into the event ledger and the normal
   `process_events` job, like a desk's event: the ticket's text gains a line
   "Public complaint posted on <network> by @<handle>: "<text>" <url>", so the
   ranker's complaint and going-public detection set `SOCIAL_COMPLAINT`, and
   the decision is written back to the ticket's own desk. Without an open
   ticket, one is opened (id `social-<case id>`) in the desk of the customer's
   last ticket when it can create tickets (the local desk always can; another
   desk's connector may offer `create_ticket(customer_id, subject, description)
   -> ticket id`), else in the local `generic` desk when enabled.
4. **Goodwill** (`plugin.goodwill`): a suggested gesture, stored with the ticket.

Repeats of the same post or thread never reach this far (they only bump counts).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from connectors.crm.base import Customer
from webhooks.event import CustomerFacts, TicketEvent

from .mention_store import MentionStore

log = logging.getLogger(__name__)

NETWORK_NAMES = {"x": "X", "bluesky": "Bluesky", "mastodon": "Mastodon", "github": "GitHub",
                 "reddit": "Reddit", "youtube": "YouTube"}
LOCAL_DESK = "generic"
PROSPECT_PREFIX = "prospect:"


def mention_store(rt: Any) -> MentionStore:
    """The social tables, on the runtime's store engine (schema created with it)."""
    return MentionStore(rt.store.engine)


def complaint_of(text: str) -> float:
    from ranking.sentiment import complaint_strength

    return float(complaint_strength(pd.Series([text], dtype=object)).iloc[0])


def threshold(settings: Any) -> float:
    own = settings.config.social.complaint_threshold
    return own if own is not None else settings.config.ranking.flags.complaint_threshold


def normalised_handle(network: str, handle: str) -> str | None:
    from .influence import normalise

    try:
        return normalise(network, handle)
    except ValueError:
        return None


def match_customer(ms: MentionStore, network: str, handle: str) -> str | None:
    """The customer whose `network` handle is this one (any spelling), or None.

    The database narrows by a fragment of the handle; the handles found are then
    normalised and compared exactly. Several matches: the first by id (logged)."""
    fragment = handle.split("@")[0] if network == "mastodon" else handle.split(".")[0]
    found = [cid for cid, handles in ms.customers_with_handle_like(fragment)
             if handles.get(network) and normalised_handle(network, handles[network]) == handle]
    if len(found) > 1:
        log.warning("a %s handle matches %d customers; the mention goes to the first", network,
                    len(found))
    return found[0] if found else None


def _influence(rt: Any, customer: Customer) -> float | None:
    from .influence import lookup_influence

    cfg = rt.settings.config.influence
    try:
        found = lookup_influence([customer], source=rt.influence, cache=rt.redis, store=rt.store,
                                 ttl=cfg.cache_ttl_seconds,
                                 prefix=rt.settings.redis_key("influence"),
                                 not_found_ttl=cfg.not_found_ttl_seconds)
    except Exception as exc:  # the feed can show a mention without influence; ranking looks again
        from .errors import describe_error, is_outage

        if is_outage(exc):
            raise
        log.warning("influence lookup for a mention failed: %s", describe_error(exc))
        return None
    entry = found.get(customer.id)
    return float(entry["score"]) if entry else None


def complaint_note(mention: dict[str, Any]) -> str:
    """The line added to the ticket: what the ranker reads as a public complaint, and the link."""
    network = NETWORK_NAMES.get(mention["network"], mention["network"])
    handle = (mention.get("handle") or mention["author"]).lstrip("@")
    text = " ".join((mention.get("text") or "").split())
    return f'Public complaint posted on {network} by @{handle}: "{text}" {mention["url"]}'


def process(rt: Any, mention_id: int) -> dict[str, Any]:
    """Score, match, escalate and suggest for one case; idempotent (see module docstring)."""
    ms = mention_store(rt)
    settings = rt.settings
    mention = ms.claim(mention_id, settings.config.delivery.lease_seconds)
    if mention is None:
        return {"mention_id": mention_id, "skipped": "already processed or being processed"}
    network = mention["network"]
    handle = normalised_handle(network, mention["author"])
    complaint = complaint_of(mention["text"])
    is_complaint = complaint >= threshold(settings)
    result: dict[str, Any] = {"mention_id": mention_id, "complaint": round(complaint, 3),
                              "is_complaint": is_complaint}
    customer_id = match_customer(ms, network, handle) if handle else None
    values: dict[str, Any] = {"handle": handle, "complaint": complaint,
                              "is_complaint": is_complaint, "customer_id": customer_id}
    if customer_id is None:
        influence = None
        if handle:
            influence = _influence(rt, Customer(id=f"{PROSPECT_PREFIX}{network}:{handle}",
                                                handles={network: handle}))
            ms.upsert_prospect(network, handle, name=mention.get("author_name"),
                               influence=influence, complaint=complaint, mention_id=mention_id)
        values.update(influence=influence, escalation="none")
        result.update(prospect=handle, influence=influence)
        ms.finish(mention_id, **values)
        return result

    customer = rt.store.get_customers([customer_id])[customer_id]
    influence = _influence(rt, customer)
    values["influence"] = influence
    result.update(customer_id=customer_id, influence=influence)
    if not is_complaint:
        values["escalation"] = "none"
        ms.finish(mention_id, **values)
        return result
    mention = {**mention, "handle": handle}
    escalation, source, ticket_id, event_id = escalate(rt, ms, mention, customer_id)
    values.update(escalation=escalation, ticket_source=source, ticket_id=ticket_id,
                  event_id=event_id)
    result.update(escalation=escalation, ticket_source=source, ticket_id=ticket_id)
    if ticket_id is not None:
        from .goodwill import suggest

        offered = suggest(rt, ms, mention_id=mention_id, customer=customer, complaint=complaint,
                          influence=influence, ticket_source=source, ticket_id=ticket_id,
                          event_id=event_id)
        result["goodwill"] = offered
    ms.finish(mention_id, **values)
    return result


def escalate(rt: Any, ms: MentionStore, mention: dict[str, Any],
             customer_id: str) -> tuple[str, str | None, str | None, str | None]:
    """Put the complaint on the customer's open ticket, or open one; returns
    (escalation, ticket source, ticket id, ledger event id)."""
    from .queues import enqueue_events
    from .store import utcnow

    enabled = list(rt.settings.enabled_desks)
    note = complaint_note(mention)
    now = utcnow()
    event_id = f"social-{mention['id']}"
    ticket = ms.newest_ticket(customer_id, enabled, open_only=True)
    if ticket is not None:
        escalation, source, ticket_id = "raised", ticket["source"], ticket["id"]
        description = ticket["description"] or ""
        if mention["url"] not in description:
            description = f"{description}\n\n{note}".strip()
        subject, created = ticket["subject"] or "", ticket["created_at"]
    else:
        opened = _open_ticket(rt, ms, customer_id, mention, note, enabled)
        if opened is None:
            log.warning("a social complaint from a customer has no desk to open a ticket in "
                        "(enable desks.generic, or a desk whose connector can create tickets)")
            return "no_desk", None, None, None
        source, ticket_id = opened
        escalation = "opened"
        network = NETWORK_NAMES.get(mention["network"], mention["network"])
        subject = f"Public complaint on {network}: {' '.join(mention['text'].split())[:120]}"
        description, created = note, now
    event = TicketEvent(
        source=source, event_id=event_id, occurred_at=_iso(now), ticket_id=ticket_id,
        customer=CustomerFacts(id=customer_id), subject=subject[:1000], description=description,
        ticket_created_at=_iso(min(created, now)) if created else None,
        status="open" if escalation == "opened" else None)
    payload = event.to_dict()
    rt.store.add_events([{"source": source, "event_id": event_id, "ticket_id": ticket_id,
                          "occurred_at": payload["occurred_at"], "payload": payload}])
    try:
        enqueue_events(rt.queue, rt.settings, [[source, event_id]],
                       description=f"process social complaint {mention['id']}")
    except Exception as exc:  # in the ledger already: reconcile re-drives it
        log.warning("could not queue the social complaint's event (reconcile will): %s",
                    type(exc).__name__)
    return escalation, source, ticket_id, event_id


def _open_ticket(rt: Any, ms: MentionStore, customer_id: str, mention: dict[str, Any], note: str,
                 enabled: list[str]) -> tuple[str, str] | None:
    """(desk, new ticket id): the customer's own desk if it can create tickets, else local."""
    from connectors.crm.local import LocalDesk

    last = ms.newest_ticket(customer_id, enabled, open_only=False)
    order = ([last["source"]] if last else []) + [LOCAL_DESK]
    for source in dict.fromkeys(order):
        if source not in enabled:
            continue
        connector = rt.desk(source)
        if isinstance(connector, LocalDesk):
            return source, f"social-{mention['id']}"
        create = getattr(connector, "create_ticket", None)
        if callable(create):
            network = NETWORK_NAMES.get(mention["network"], mention["network"])
            return source, str(create(customer_id, f"Public complaint on {network}", note))
    return None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the demo --------------------------------------------------------------------


def demo_mentions(settings: Any, run_id: str | None = None) -> list[tuple[str, bytes]]:
    """(delivery id, signed-body) pairs for `config/demo/mentions.json`, in the webhook's shape.

    Post URLs carry the run id so every demo run posts fresh mentions."""
    from . import bundled

    run_id = run_id or uuid.uuid4().hex[:8]
    path = settings.resolve_config_path("demo/mentions.json")
    if not path.exists():
        path = Path(bundled.config_dir()) / "demo" / "mentions.json"
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for i, item in enumerate(json.loads(path.read_text())):
        posted = now - dt.timedelta(minutes=float(item.get("minutes_ago", 5)))
        body = {"type": "mention.created", "timestamp": _iso(now), "data": {
            "network": item["network"],
            "author": {"handle": item["handle"], "name": item.get("name")},
            "url": item["url"].replace("{run}", run_id), "text": item["text"],
            "posted_at": _iso(posted), "brand_term": item.get("brand_term")}}
        out.append((f"msg_{run_id}_mention_{i}", json.dumps(body).encode()))
    return out


def post_demo_mentions(app_or_client: Any, settings: Any, run_id: str | None = None) -> list[dict]:
    """Post the three demo mentions to `/webhooks/social`, signed; returns each JSON answer
    with its `http_status` (202 queued).

    `app_or_client`: a base URL (str, e.g. the running demo server), a Flask app, or a
    Flask test client. Needs CLOUT_WEBHOOK_SECRET_SOCIAL in `settings`."""
    from webhooks.social import sign

    secret = settings.secrets.webhook_secret("social")
    if not secret:
        raise ValueError("CLOUT_WEBHOOK_SECRET_SOCIAL is not set; the demo can't sign mentions")
    answers = []
    for delivery_id, body in demo_mentions(settings, run_id):
        ts = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": delivery_id,
                   "webhook-timestamp": str(ts), "webhook-signature": sign(secret, delivery_id, ts, body)}
        if isinstance(app_or_client, str):
            import requests

            resp = requests.post(app_or_client.rstrip("/") + "/webhooks/social", data=body,
                                 headers=headers, timeout=10)
            answers.append({**_json(resp.text), "http_status": resp.status_code})
        else:
            client = app_or_client.test_client() if hasattr(app_or_client, "test_client") else app_or_client
            resp = client.post("/webhooks/social", data=body, headers=headers)
            answers.append({**(resp.get_json(silent=True) or {}), "http_status": resp.status_code})
    return answers


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
