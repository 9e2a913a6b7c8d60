"""Worker jobs. They take plain JSON values and find their clients via `runtime.current()`.

    drain_inbox()            the Redis inbox -> the store's event ledger -> process_events jobs
    process_events(keys)     claim those events, rank their tickets, queue the desk writes
                             (a desk kept in the store is written before the decisions commit)
    flush_writes(desk)       write a desk's due decisions (after its flush window)
    reconcile()              re-drive whatever a crash or an outage left behind

The ledger and the outbox in the store are the truth; a job is only a nudge.
A job lost with a dead worker, run twice, or run late changes nothing: work
is claimed under a lease, and every step is conditional on still holding it
(or happens inside the one transaction that holds the rows, for the local desk).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import Counter
from typing import Any, Sequence

from connectors.crm.base import Customer, Decision
from webhooks.event import CLOSED, TicketEvent

from . import runtime as runtime_mod
from .errors import describe_error, is_outage

log = logging.getLogger(__name__)

RESULT_TICKETS = 50  # decided tickets listed in a process_events job's result
MIN_PART = 200  # events: a batch is split for `queue.decide_parts` only into parts this big


def merge_customer(event_facts: Any, known: Customer | None) -> Customer:
    """What the event says wins; the desk fills the gaps (handles are merged)."""
    base = known or Customer(id=event_facts.id)
    handles = {**base.handles, **{k: v for k, v in event_facts.handles.items() if v}}

    def pick(name: str) -> Any:
        said = getattr(event_facts, name)
        return getattr(base, name) if said is None else said

    # Built field by field: dataclasses.replace cost ~8 us a customer (cProfile).
    return Customer(id=base.id, name=pick("name"), email=pick("email"), handles=handles,
                    monthly_spend=pick("monthly_spend"), currency=pick("currency"),
                    contract_end=pick("contract_end"))


def _when(value: str) -> dt.datetime:
    """An event's ISO time as an aware datetime (strings alone misorder fractional seconds)."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _latest_per_ticket(events: Sequence[TicketEvent]) -> list[TicketEvent]:
    latest: dict[tuple[str, str], TicketEvent] = {}
    for event in events:
        key = (event.source, event.ticket_id)
        if key not in latest or _when(event.occurred_at) >= _when(latest[key].occurred_at):
            latest[key] = event
    return list(latest.values())


def drain_inbox(deferred: bool = False) -> dict[str, int]:
    """Move the events gathered in the Redis inbox into the ledger, in batch jobs.

    A drain runs ahead of the queue (it is queued at its front). If batch jobs are still
    waiting and the inbox holds less than a full batch, it steps back once instead: a
    new drain goes to the back of the queue, and events keep gathering until the work
    ahead is done. Otherwise a steady stream faster than the worker is cut into ever
    more tiny batches that wait in the queue, each paying a job's fixed cost (measured
    at 300 events/s: ~8 events per batch, and a queue that kept growing).
    """
    from .inbox import drain, step_back

    rt = runtime_mod.current()
    try:
        if not deferred and step_back(rt.redis, rt.settings, rt.queue):
            return {"batches": 0, "events": 0, "stepped_back": 1}
        return drain(rt.redis, rt.settings, rt.store)
    except Exception as exc:
        if not is_outage(exc):
            raise
        # The events stay in the inbox; reconcile queues the next drain.
        log.warning("drain deferred by an outage: %s", describe_error(exc))
        return {"batches": 0, "events": 0, "deferred": 1}


def process_events(keys: list[list[str]]) -> dict[str, Any]:
    """Decide the ledger events named by `keys` ([source, event_id] pairs).

    A failing batch of several events is split in two and both halves are queued
    again at once, so one event that can never succeed ends up failing alone (and
    is parked after `delivery.max_event_attempts`) while the rest are decided. An
    outage (store, Redis, desk unreachable) counts nothing: the events wait.
    """
    rt = runtime_mod.current()
    cfg = rt.settings.config.delivery
    owner = uuid.uuid4().hex
    try:
        claimed = rt.store.claim_events([(k[0], k[1]) for k in keys], owner, cfg.lease_seconds,
                                        max_attempts=cfg.max_event_attempts)
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("%d event(s) wait for an outage to end: %s", len(keys), describe_error(exc))
        return {"claimed": 0, "decided": 0, "deferred": len(keys), "error": describe_error(exc)}
    if not claimed:
        return {"claimed": 0, "decided": 0}
    ids = [c["id"] for c in claimed]
    try:
        with LeaseKeeper(lambda: rt.store.extend_event_leases(owner, ids, cfg.lease_seconds),
                         every=cfg.lease_seconds / 3):
            parts = split_batch(claimed, _part_count(rt, len(claimed)))
            if len(parts) == 1:
                return _decide(rt, owner, claimed)
            return _decide_in_parts(rt, owner, parts)
    except Exception as exc:
        outage = is_outage(exc)
        why = describe_error(exc)
        split = not outage and len(claimed) > 1
        try:
            parked = rt.store.release_events(owner, ids, error=why, refund=outage or split,
                                             max_attempts=cfg.max_event_attempts)
        except Exception as inner:  # the store is down too: the leases simply run out
            log.warning("could not release %d event(s): %s", len(ids), describe_error(inner))
            parked = 0
        if outage:
            log.warning("%d event(s) wait for an outage to end: %s", len(ids), why)
            return {"claimed": len(ids), "decided": 0, "deferred": len(ids), "error": why}
        if split:
            from .queues import enqueue_batches

            half = len(claimed) // 2
            pairs = [[c["payload"]["source"], c["payload"]["event_id"]] for c in claimed]
            enqueue_batches(rt.redis, rt.queue, rt.settings, [pairs[:half], pairs[half:]],
                            f"split after {why}")
            log.warning("batch of %d failed (%s); split into %d + %d", len(ids), why, half,
                        len(ids) - half)
            return {"claimed": len(ids), "decided": 0, "split": [half, len(ids) - half]}
        if parked:
            log.error("event parked after %d attempts: %s (see `clout failed`)",
                      cfg.max_event_attempts, why)
        raise


def _part_count(rt: Any, events: int) -> int:
    """How many parts to decide a batch in at once: `queue.decide_parts` on a store that takes
    concurrent writers (PostgreSQL), never below `MIN_PART` events a part. SQLite has one
    writer at a time, and its statements run in this process: measured, two parts there
    were 15-25% slower, where on PostgreSQL they were ~15% faster (three or four slower
    again on two cores: the parts' Python contends for the GIL)."""
    if not rt.store.concurrent_writers:
        return 1
    return max(1, min(rt.settings.config.queue.decide_parts, events // MIN_PART))


def split_batch(claimed: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    """Claimed events in at most `n` parts that share no ticket and no customer.

    Why both: every event of a ticket must be decided together (only its newest counts),
    and two parts upserting the same customer row would wait on each other's lock. So
    tickets and customers that events link are joined (union-find) and whole groups are
    dealt to the smallest part, biggest group first. Events keep their batch order.
    """
    if n <= 1 or len(claimed) < 2:
        return [claimed]
    parent: dict[tuple[str, ...], tuple[str, ...]] = {}

    def root(node: tuple[str, ...]) -> tuple[str, ...]:
        parent.setdefault(node, node)
        while (up := parent[node]) != node:
            parent[node] = parent[up]  # path halving
            node = up
        return node

    def ticket(c: dict[str, Any]) -> tuple[str, ...]:
        p = c["payload"]
        return ("t", str(p.get("source")), str(p.get("ticket_id")))

    def customer(c: dict[str, Any]) -> tuple[str, ...]:
        # A payload without one still gets a part; `_decide` then refuses it as usual.
        return ("c", str((c["payload"].get("customer") or {}).get("id")))

    for c in claimed:
        a, b = root(ticket(c)), root(customer(c))
        if a != b:
            parent[a] = b
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, c in enumerate(claimed):
        groups.setdefault(root(ticket(c)), []).append(i)
    parts: list[list[int]] = [[] for _ in range(n)]
    for members in sorted(groups.values(), key=len, reverse=True):
        min(parts, key=len).extend(members)
    return [[claimed[i] for i in sorted(p)] for p in parts if p]


def _decide_in_parts(rt: Any, owner: str, parts: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Each part through `_decide` on its own thread and transactions, as two workers would
    decide two batches; the results are summed. A part that raises fails the batch after
    the others finish: what they committed stands, the caller releases what is still held."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(parts), thread_name_prefix="clout-part") as pool:
        results = list(pool.map(lambda part: _decide(rt, owner, part), parts))
    total: dict[str, Any] = {"claimed": 0, "decided": 0, "settled": Counter(),
                             "writes": Counter(), "tickets": []}
    for r in results:
        total["claimed"] += r["claimed"]
        total["decided"] += r["decided"]
        total["settled"].update(r.get("settled", {}))
        total["writes"].update(r.get("writes", {}))
        total["tickets"].extend(r.get("tickets", []))
        if r.get("lease_lost"):
            total["lease_lost"] = True
    total["settled"] = dict(sorted(total["settled"].items()))
    total["writes"] = dict(total["writes"])
    total["tickets"] = total["tickets"][:RESULT_TICKETS]
    total["parts"] = [r["claimed"] for r in results]
    return total


class LeaseKeeper:
    """Renews a lease every `every` seconds while a block runs, so a batch slower than
    `delivery.lease_seconds` (slow desk, big lookups) is not taken over mid-way. If the
    process freezes or dies, renewals stop and the lease runs out as designed."""

    def __init__(self, renew: Any, every: float) -> None:
        self._renew = renew
        self._every = max(0.5, every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clout-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._renew():
                    return  # nothing left to hold (taken over, or settled)
            except Exception as exc:  # the store is away: the lease may lapse, the fence decides
                log.warning("lease renewal failed: %s", describe_error(exc))

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _decide(rt: Any, owner: str, claimed: list[dict[str, Any]]) -> dict[str, Any]:
    from .delivery import flush
    from .ranker import rank_tickets

    store = rt.store
    ledger = {(c["payload"]["source"], c["payload"]["event_id"]): c["id"] for c in claimed}
    every = [TicketEvent.from_dict(c["payload"]) for c in claimed]
    parsed = _latest_per_ticket(every)
    newest_ids = {(e.source, e.event_id) for e in parsed}
    # An older event for a ticket that has a newer one in this batch changes nothing.
    settle = {ledger[(e.source, e.event_id)]: "stale" for e in every
              if (e.source, e.event_id) not in newest_ids}

    # 1. Customers: event facts completed from the ticket's own desk, kept as the book.
    ids = sorted({e.customer.id for e in parsed})
    known: dict[str, Customer] = {}
    for source in sorted({e.source for e in parsed}):
        wanted = sorted({e.customer.id for e in parsed if e.source == source})
        known.update(rt.desk(source).fetch_customers(wanted))
    newest: dict[str, TicketEvent] = {}
    for e in sorted(parsed, key=lambda e: _when(e.occurred_at)):
        newest[e.customer.id] = e  # the newest event's facts win for each customer
    merged = {cid: merge_customer(newest[cid].customer, known.get(cid)) for cid in ids}
    # One transaction: the book and the tickets as the events leave them, read back for
    # ranking (what the store kept, which a stale event may not have changed).
    with store.transaction() as conn:
        store.upsert_customers(merged.values(), conn=conn,
                               facts_at={cid: newest[cid].occurred_at for cid in ids})
        store.upsert_tickets((
            {
                "source": e.source, "id": e.ticket_id, "customer_id": e.customer.id,
                "subject": e.subject, "description": e.description,
                # A ticket can't have been created after the event about it happened.
                "created_at": min(_when(e.ticket_created_at), _when(e.occurred_at))
                if e.ticket_created_at else e.occurred_at,
                "last_event_id": e.event_id, "last_event_at": e.occurred_at,
                "status": e.status, "desk_priority": e.desk_priority,
            }
            for e in parsed
        ), conn=conn)
        state = store.ticket_state([(e.source, e.ticket_id) for e in parsed], conn=conn)
        book = store.get_customers(ids, conn=conn)

    # 2. Which events still matter: a desk's late retry of an event older than what is
    # stored changes nothing, and a closed ticket needs no priority.
    rows = []
    for e in parsed:
        ticket = state[(e.source, e.ticket_id)]
        key = ledger[(e.source, e.event_id)]
        if ticket["last_event_id"] != e.event_id:
            settle[key] = "stale"
        elif ticket["status"] == CLOSED:
            settle[key] = "closed"
        else:
            rows.append({**ticket, "source": e.source, "id": e.ticket_id, "event_id": e.event_id})

    # 3. Rank the whole batch at once, record and queue the writes, conditional on the lease.
    decisions = rank_tickets(rt, rows, customers=book)
    decisions, unchanged = _without_repeats(store, decisions, state)
    for d in unchanged:
        settle[ledger[(d.source, d.event_id)]] = "unchanged"
    holds = {src: rt.settings.desk(src).flush_window_ms for src in {d.source for d in decisions}}
    # 4. Write to each desk now, or after its flush window. A desk kept in the store is
    # written inside the transaction that records the decisions (`within`), the rest after.
    in_store = sorted(src for src, hold in holds.items()
                      if hold == 0 and hasattr(rt.desk(src), "within"))
    written: dict[str, int] = {}

    def write_in_store(conn: Any, queued: list[Decision]) -> None:
        for source in in_store:
            known = {d.id: d for d in queued if d.source == source}
            if known:
                tickets = sorted({d.ticket_id for d in known.values()})
                for status, n in flush(rt, source, ticket_ids=tickets, known=known,
                                       conn=conn).items():
                    written[status] = written.get(status, 0) + n

    recorded = store.record_decisions(decisions, owner=owner, ledger_ids=ledger, settle=settle,
                                      hold_ms=holds, then=write_in_store if in_store else None)
    if recorded is None:
        log.warning("lease on %d event(s) lost to another worker; its decisions stand", len(claimed))
        return {"claimed": len(claimed), "decided": 0, "lease_lost": True}
    if not decisions and settle:
        store.settle_events(owner, settle)

    for source in sorted({d.source for d in recorded} - set(in_store)):
        tickets = sorted({d.ticket_id for d in recorded if d.source == source})
        if rt.settings.desk(source).flush_window_ms > 0:
            schedule_flush(rt, source)
        else:
            known = {d.id: d for d in recorded if d.source == source}
            for status, n in flush(rt, source, ticket_ids=tickets, known=known).items():
                written[status] = written.get(status, 0) + n
    if decisions:
        log.info("ranked %d ticket(s) with weights %s", len(decisions),
                 decisions[0].weights_version)
    return {
        "claimed": len(claimed),
        "decided": len(recorded),
        "settled": dict(sorted(Counter(settle.values()).items())),
        "writes": written,
        # A sample, for someone looking at the job: the store has every decision. RQ keeps
        # results for `queue.result_ttl`, so a full list would hold ~110 bytes of Redis
        # memory per decided event for an hour (a 2,000-event batch: 220 kB, and 2 ms of
        # JSON on the worker's critical path).
        "tickets": [
            {"ticket_id": d.ticket_id, "tier": d.tier, "priority": d.priority,
             "score": round(d.score, 4), "flags": list(d.flags)}
            for d in recorded[:RESULT_TICKETS]
        ],
    }


def _without_repeats(store: Any, decisions: list[Decision], state: dict) -> tuple[list, list]:
    """Split off decisions with the same tier, priority and flags as the ticket's current one.

    Writing them again would change nothing an agent acts on, and on a desk that
    notifies or lists every change (a Salesforce flow, the catch-up poll) our own
    write would come back as an event and be written again, for ever. Only the reason
    text could differ (its waiting time grows); like re-ranking, that alone is not
    worth a write. The current decision must be written or on its way, and the desk
    must be known to show its priority (desks whose events report the priority, or
    the local desk); otherwise the write path reads the desk and decides as before.
    """
    current = {(d.source, d.ticket_id): state[(d.source, d.ticket_id)].get("decision_id")
               for d in decisions}
    known = store.decision_summaries([i for i in current.values() if i is not None])
    fresh, repeats = [], []
    for d in decisions:
        was = known.get(current[(d.source, d.ticket_id)])
        shown = state[(d.source, d.ticket_id)].get("desk_priority")
        same = (was is not None and was["status"] in ("written", "pending")
                # The desk must be known to show our priority still: an agent's own priority
                # is news the write path has to see (it reads the desk, then says so).
                and shown is not None
                and shown.strip().casefold() == was["priority"].strip().casefold()
                and (was["tier"], was["priority"], was["flags"])
                == (d.tier, d.priority, list(d.flags)))
        (repeats if same else fresh).append(d)
    return fresh, repeats


def schedule_flush(rt: Any, desk: str) -> bool:
    """Gather a desk's writes for its flush window, then write them in as few calls as it
    allows. One flush job per window; reconcile writes anything this misses."""
    from .queues import FLUSH_WRITES, job_options

    window = rt.settings.desk(desk).flush_window_ms
    if not rt.redis.set(rt.settings.redis_key("flush", desk), "1", nx=True, px=window):
        return False
    rt.queue.enqueue_in(dt.timedelta(milliseconds=window), FLUSH_WRITES, desk,
                        description=f"write {desk} decisions", **job_options(rt.settings))
    return True


def flush_writes(desk: str, include_parked: bool = False) -> dict[str, int]:
    """Write a desk's due decisions; `include_parked` also retries parked transient failures
    whose slow retry is due (reconcile asks for that)."""
    from .delivery import flush
    from .store import utcnow

    rt = runtime_mod.current()
    parked_before = None
    if include_parked:
        parked_before = utcnow() - dt.timedelta(
            seconds=rt.settings.config.delivery.parked_retry_seconds)
    try:
        return flush(rt, desk, parked_before=parked_before)
    finally:
        if include_parked:
            rt.redis.delete(rt.settings.redis_key("flush-queued", desk))


def poll_desk(desk: str) -> dict[str, Any]:
    """A desk's catch-up poll (see `plugin.polling`)."""
    from .polling import poll

    return poll(runtime_mod.current(), desk)


def refresh_influence() -> dict[str, int]:
    """Scheduled: customers with open tickets get their influence looked up again when old."""
    from .influence import refresh_influence as refresh

    rt = runtime_mod.current()
    cfg = rt.settings.config.influence
    return refresh(rt, older_than=dt.timedelta(seconds=cfg.refresh_after_seconds))


def reconcile() -> dict[str, Any]:
    from .reconcile import run

    return run(runtime_mod.current())
