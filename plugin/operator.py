"""`clout failed [--retry]`: the work that gave up and waits for a person.

Two kinds: desk writes parked after `delivery.write_deadline_seconds` (or
refused for good by the desk), and events whose ranking failed
`delivery.max_event_attempts` times. Transient write failures are retried on
their own every `delivery.parked_retry_seconds`; `--retry` puts everything
back to work at once, e.g. after fixing a desk's credentials or a bad field.
"""

from __future__ import annotations

from typing import Any, Callable

from tabulate import tabulate


def failed_command(rt: Any, *, retry: bool, limit: int, echo: Callable[[str], None]) -> None:
    store = rt.store
    parked = store.parked(limit)
    counts = store.count_parked()
    if not counts["failed_writes"] and not counts["failed_events"]:
        echo("Nothing is parked: every accepted event is decided or on its way.")
        return
    if parked["writes"]:
        echo(f"Desk writes parked: {counts['failed_writes']}")
        echo(tabulate([(w["source"], w["ticket_id"], w["attempts"],
                        "yes" if w["retryable"] else "no", w["failing_since"], w["error"])
                       for w in parked["writes"]],
                      headers=["Desk", "Ticket", "Tries", "Auto-retry", "Failing since", "Last error"],
                      maxcolwidths=[None, 24, None, None, None, 60]))
    if parked["events"]:
        echo(f"Events parked: {counts['failed_events']}")
        echo(tabulate([(e["source"], e["event_id"], e["ticket_id"], e["attempts"], e["error"])
                       for e in parked["events"]],
                      headers=["Desk", "Event", "Ticket", "Tries", "Last error"],
                      maxcolwidths=[None, 30, 24, None, 60]))
    if not retry:
        echo("Run `clout failed --retry` to put them back to work now.")
        return
    from .queues import RECONCILE, job_options

    done = store.unpark()  # events go back to the ledger as pending, writes are due now
    rt.queue.enqueue_call(RECONCILE, description="reconcile after `clout failed --retry`",
                          at_front=True, **job_options(rt.settings))
    echo(f"Put back to work: {done['writes']} write(s), {done['events']} event(s). "
         "A running worker picks them up within seconds.")
