"""The delivery rules every desk gets, whatever its connector.

- A decision counts as decided only once its desk confirmed the write.
- Only the newest decision per ticket is written (the outbox keeps one row per
  ticket, newest wins; see `Store.record_decisions`).
- Before writing, the desk's current state is read: a closed ticket is not
  written; a priority an agent changed since Clout's last write stands (the
  decision is kept as `agent_override`); a decision the desk already shows (the
  worker died between the write and recording it) is not written again.
- A failed write is retried with capped exponential backoff and jitter, never
  sooner than the desk's Retry-After, until the write deadline; then it is
  parked for an operator (`failed`), and if the failure was transient it is
  still retried every `delivery.parked_retry_seconds`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
import uuid
from typing import Any, Sequence

from connectors.crm.base import CLOSED, Decision, DeskConnector, DeskUnavailable, WriteFailure

from .errors import describe_error, scrub
from .store import WriteOutcome, utcnow

log = logging.getLogger(__name__)

MAX_PASSES = 50  # one flush writes at most this many batches, so a job stays short


def backoff_seconds(attempts: int, *, base: float, cap: float, retry_after: float | None = None,
                    rng: random.Random | None = None) -> float:
    """Delay before retry number `attempts` (1 = first retry): doubling from `base` up to
    `cap`, with "equal jitter" (between half and all of it), never below Retry-After."""
    rng = rng or random
    step = min(cap, base * (2 ** max(0, attempts - 1)))
    delay = step / 2 + rng.uniform(0, step / 2)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, 24 * 3600))
    return delay


def _same(a: str | None, b: str | None) -> bool:
    return (a or "").strip().casefold() == (b or "").strip().casefold()


def flush(rt: Any, desk: str, *, ticket_ids: Sequence[str] | None = None,
          parked_before: dt.datetime | None = None,
          known: dict[str, Decision] | None = None, conn: Any = None) -> dict[str, int]:
    """Write the due decisions of one desk; returns counts per outcome. `known`: decisions
    just recorded (by id), so they need not be read back from the store. `conn`: a store
    transaction to do it all in (claim, the desk's read and write, settle), for a desk
    kept in the store (`within(conn)`, see `connectors.crm.local`); it commits with the
    caller's work."""
    from .polling import note_usage

    connector: DeskConnector = rt.desk(desk) if conn is None else rt.desk(desk).within(conn)
    settings = rt.settings
    pause_key = settings.redis_key("desk-paused", desk)
    if rt.redis.exists(pause_key):  # the desk asked us to back off (e.g. its API limit)
        return {"paused": 1}
    lease = settings.config.delivery.lease_seconds
    # In the caller's transaction the rows are held by it, not by a lease (see claim_writes).
    owner = uuid.uuid4().hex if conn is None else None
    totals: dict[str, int] = {}
    pauses: list[float] = []
    for _ in range(MAX_PASSES):
        claimed = rt.store.claim_writes(desk, owner, lease, connector.max_batch,
                                        ticket_ids=ticket_ids, parked_before=parked_before,
                                        known=known, conn=conn)
        if not claimed:
            break
        claimed_at = time.monotonic()

        def renew(ids: Sequence[int]) -> set[int]:
            # A lease taken moments ago is still ours (nobody may claim a write before its
            # lease runs out), so only a desk read slower than a third of the lease pays a
            # round trip to renew (profiled: the renewal was ~3% of a batch on PostgreSQL).
            if time.monotonic() - claimed_at < lease / 3:
                return set(ids)
            return rt.store.renew_write_leases(owner, ids, lease, conn=conn)

        outcomes = deliver(connector, claimed, settings, renew=renew if conn is None else None,
                           on_pause=pauses.append)
        rt.store.settle_writes(owner, outcomes, conn=conn)
        for o in outcomes:
            totals[o.status] = totals.get(o.status, 0) + 1
        if pauses or len(claimed) < connector.max_batch:
            break  # a short claim took everything due: no need to ask again
    note_usage(rt, desk, connector)
    if pauses:
        # Every writer of this desk holds off until then; the writes keep their own
        # backoff (at least as long), so nothing is failed by the pause.
        seconds = max(1, math.ceil(max(pauses)))
        rt.redis.set(pause_key, "1", ex=seconds)
        until = utcnow() + dt.timedelta(seconds=seconds)
        rt.store.set_desk_state(desk, paused_until=until.isoformat(), conn=conn)
        log.warning("desk %s asked to back off: its writes pause for %d s", desk, seconds)
    if totals.get("retry") or totals.get("failed"):
        log.warning("desk %s: %s", desk, ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    elif totals:
        log.info("desk %s: %s", desk, ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    return totals


def deliver(connector: DeskConnector, claimed: Sequence[Any], settings: Any,
            renew: Any = None, on_pause: Any = None) -> list[WriteOutcome]:
    """Read the desk, decide what may be written, write it, and say what happened to each.

    `renew(write_ids) -> ids still ours` runs just before the write: a write whose lease
    ran out meanwhile (a stalled worker) is left to whoever holds it now. `on_pause(seconds)`
    hears when the desk as a whole said to come back later (`DeskUnavailable.retry_after`).
    """

    def unavailable(exc: DeskUnavailable) -> None:
        if on_pause is not None and exc.retry_after:
            on_pause(exc.retry_after)

    cfg = settings.config.delivery
    deadline = settings.write_deadline(connector.name)
    now = utcnow()

    def outcome(c: Any, status: str, **kw: Any) -> WriteOutcome:
        d: Decision = c.decision
        return WriteOutcome(write_id=c.write_id, decision_id=int(d.id), source=d.source,
                            ticket_id=d.ticket_id, event_id=d.event_id, status=status, **kw)

    def failure(c: Any, why: WriteFailure) -> WriteOutcome:
        if not why.retryable:
            return outcome(c, "failed", error=why.message, retryable=False)
        attempts = c.attempts + 1
        delay = backoff_seconds(attempts, base=cfg.retry_base_seconds, cap=cfg.retry_max_seconds,
                                retry_after=why.retry_after)
        since = c.first_failed_at or now
        when = now + dt.timedelta(seconds=delay)
        if c.parked or when > since + dt.timedelta(seconds=deadline):
            # Past the deadline: an operator sees it; transient, so still retried slowly.
            return outcome(c, "failed", error=why.message, retryable=True, next_attempt_at=when)
        return outcome(c, "retry", error=why.message, next_attempt_at=when)

    def all_failed(why: WriteFailure) -> list[WriteOutcome]:
        return [failure(c, why) for c in claimed]

    try:
        state = connector.read_tickets([c.decision.ticket_id for c in claimed])
    except DeskUnavailable as exc:
        unavailable(exc)
        return all_failed(WriteFailure(f"reading the desk: {scrub(str(exc))}",
                                       retry_after=exc.retry_after))
    except Exception as exc:  # a connector bug or an unexpected answer: retried, then parked
        log.warning("desk %s: reading tickets failed: %s", connector.name, describe_error(exc))
        return all_failed(WriteFailure(f"reading the desk: {describe_error(exc)}"))

    results: list[WriteOutcome] = []
    to_write = []
    for c in claimed:
        d = c.decision
        seen = state.get(d.ticket_id)
        if seen is None:
            results.append(outcome(c, "failed", error="the desk has no such ticket",
                                   retryable=False))
        elif seen.status == CLOSED:
            results.append(outcome(c, "closed"))
        elif seen.clout_decision is not None and seen.clout_decision == d.id:
            results.append(outcome(c, "written"))  # written before a crash; not again
        elif seen.clout_priority is not None and not _same(seen.priority, seen.clout_priority):
            results.append(outcome(c, "agent_override"))
        else:
            to_write.append(c)
    if to_write and renew is not None:
        held = renew([c.write_id for c in to_write])
        to_write = [c for c in to_write if c.write_id in held]
    if not to_write:
        return results
    try:
        written = connector.write_decisions([c.decision for c in to_write])
    except DeskUnavailable as exc:
        unavailable(exc)
        return results + [failure(c, WriteFailure(scrub(str(exc)), retry_after=exc.retry_after))
                          for c in to_write]
    except Exception as exc:
        log.warning("desk %s: write failed: %s", connector.name, describe_error(exc))
        return results + [failure(c, WriteFailure(describe_error(exc))) for c in to_write]
    ok = set(written.written)
    for c in to_write:
        tid = c.decision.ticket_id
        if tid in ok:
            results.append(outcome(c, "written"))
        else:
            why = written.failed.get(tid, WriteFailure("the desk did not confirm this write"))
            results.append(failure(c, WriteFailure(scrub(why.message)[:300], why.retryable,
                                                   why.retry_after)))
    return results
