"""`clout demo`: the whole path once, the way a desk would drive it.

Demo customers go into the local CRM (the store); demo tickets are then POSTed
over HTTP as signed Standard Webhooks to the running web server, a real RQ
worker process ranks them, and the ranked queue is printed. Dates in the demo
files are relative ("+12d", "age_hours") so the story reads the same any day.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import requests
from rq.job import Job
from rq.serializers import JSONSerializer

from connectors.crm.base import Customer
from webhooks.generic import sign

from . import bundled
from .settings import Settings

DEMO_DIR_NAME = "demo"
# The second act: an agent raises one ticket by hand, another is solved.
AGENT_TICKET, AGENT_PRIORITY = "T-2007", "Urgent"
SOLVED_TICKET = "T-2006"


class DemoFailed(Exception):
    """The demo could not finish; the message says why and where to look."""


def resolve_relative_date(value: str | None, today: dt.date) -> str | None:
    """'+12d' -> today + 12 days (ISO); ISO dates pass through; None stays None."""
    if value is None:
        return None
    if value.startswith(("+", "-")) and value.endswith("d"):
        return (today + dt.timedelta(days=int(value[:-1]))).isoformat()
    return dt.date.fromisoformat(value).isoformat()


def load_customers(path: Path, today: dt.date) -> list[Customer]:
    rows = json.loads(path.read_text())
    return [
        Customer(
            id=r["id"], name=r.get("name"), email=r.get("email"), handles=dict(r.get("handles") or {}),
            monthly_spend=r.get("monthly_spend"), currency=r.get("currency"),
            contract_end=resolve_relative_date(r.get("contract_end"), today),
        )
        for r in rows
    ]


def build_events(tickets_path: Path, customers: dict[str, Customer],
                 now: dt.datetime, run_id: str) -> list[tuple[str, bytes]]:
    """(delivery id, body) per demo ticket, in the generic webhook's JSON shape."""
    out = []
    for t in json.loads(tickets_path.read_text()):
        customer = customers[t["customer_id"]]
        created = now - dt.timedelta(hours=float(t.get("age_hours", 0)))
        body = {
            "event_id": f"demo-{run_id}-{t['ticket_id']}",
            "occurred_at": now.isoformat(),
            "ticket": {
                "id": t["ticket_id"], "subject": t["subject"], "description": t["description"],
                "priority": t.get("priority"), "created_at": created.isoformat(),
            },
            # Only who the customer is: spend, contract and handles come from the CRM.
            "customer": {"id": customer.id, "name": customer.name, "email": customer.email},
        }
        out.append((f"msg_{run_id}_{t['ticket_id']}", json.dumps(body).encode()))
    return out


def update_event(ticket_id: str, customer: Customer, run_id: str, what: str,
                 **ticket: Any) -> tuple[str, bytes]:
    """A later event from the desk about a demo ticket (an agent's change, a solve)."""
    now = dt.datetime.now(dt.timezone.utc)
    body = {
        "event_id": f"demo-{run_id}-{ticket_id}-{what}",
        "occurred_at": now.isoformat(),
        "ticket": {"id": ticket_id, **ticket},
        "customer": {"id": customer.id, "name": customer.name, "email": customer.email},
    }
    return f"msg_{run_id}_{ticket_id}_{what}", json.dumps(body).encode()


def post_signed(session: requests.Session, url: str, secret: str, delivery_id: str,
                body: bytes) -> requests.Response:
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, delivery_id, ts, body),
    }
    return session.post(url, data=body, headers=headers, timeout=10)


def wait_for_decisions(store: Any, connection: Any, queue: Any, event_ids: list[str], timeout: float,
                       progress: Callable[[int, int], None]) -> tuple[set[str], str | None]:
    """Poll until every event is decided; returns (decided ids, first job error if any).

    A job that failed ends the wait at once: a demo should say what broke now, not
    after the ledger's re-drive. (Scheduled jobs are not failures: a desk's flush
    window schedules its write.)
    """
    from rq.registry import FailedJobRegistry

    deadline = time.monotonic() + timeout
    last = -1
    failed_before = set(FailedJobRegistry(queue=queue).get_job_ids())
    while True:
        done = store.decided_events(event_ids)
        if len(done) != last:
            last = len(done)
            progress(len(done), len(event_ids))
        if len(done) == len(event_ids):
            return done, None
        broken = set(FailedJobRegistry(queue=queue).get_job_ids()) - failed_before
        if broken or time.monotonic() > deadline:
            return done, job_error(connection, next(iter(broken))) if broken else None
        time.sleep(0.1)


def demo_stack(settings: Settings, env: dict[str, str], host: str, port: int,
               make_runtime: Callable[[Settings], Any], setup_logging: Callable[..., None],
               port_fallback: bool) -> tuple[Any, Any, Path]:
    """The runtime and the (not yet started) web + one worker stack a demo runs on."""
    import click

    from .services import LocalStack

    setup_logging("WARNING", quiet_http=True)
    rt = make_runtime(settings)
    worker_log = settings.data_dir / "logs" / "demo-worker.log"
    stack = LocalStack(rt, host=host, port=port, workers=1, env=env, worker_log=worker_log,
                       port_fallback=port_fallback)
    click.echo(f"Data dir: {settings.data_dir}")
    return rt, stack, worker_log


def start_stack(rt: Any, stack: Any, host: str, port: int) -> None:
    """Start it and say where it listens (and that the port moved, if it did)."""
    import click

    stack.start()
    if stack.fell_back:
        click.echo(f"warning: {host}:{port} is in use; serving on {stack.base_url} instead "
                   "(pass --port to choose)", err=True)
    click.echo(f"Web: {stack.base_url}   Queue: {rt.redis_handle.description}")


def _clout_command() -> str:
    """How this `clout` was started, as the user can type it again from here."""
    import os
    import sys

    path = Path(sys.argv[0])
    if path.name != "clout":  # python -m plugin.cli, tests
        return "clout"
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def demo_dir(settings: Settings) -> Path:
    own = settings.config_dir / DEMO_DIR_NAME
    return own if own.is_dir() else bundled.config_dir() / DEMO_DIR_NAME


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def job_error(connection: Any, job_id: str) -> str:
    """The last line of a failed job's traceback, for a one-line report."""
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return text.splitlines()[-1] if text else "unknown error"


def _post_all(session: requests.Session, url: str, secret: str,
              events: list[tuple[str, bytes]]) -> list[str]:
    ids = []
    for delivery_id, body in events:
        resp = post_signed(session, url, secret, delivery_id, body)
        if resp.status_code != 202:
            raise DemoFailed(f"webhook answered {resp.status_code}: {resp.text}")
        ids.append(resp.json()["event_id"])
    return ids


def _queue_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    table = [
        (i, r["priority"] if r["state"] != "agent_override" else f"{r['desk_priority']} (agent)",
         f"{r['score']:.2f}", r["customer_name"] or r["customer_id"],
         ", ".join(r["flags"]) or "-", r["reason"])
        for i, r in enumerate(rows, 1)
    ]
    return tabulate(table, headers=["#", "Priority", "Score", "Customer", "Flags", "Reason"],
                    tablefmt="simple", maxcolwidths=[None, 12, None, 20, 24, 64])


def run_demo(*, host: str, port: int, timeout: float, load: Callable[..., Settings],
             make_runtime: Callable[[Settings], Any], setup_logging: Callable[..., None],
             on_shutdown: Callable[[], None], port_fallback: bool = False,
             serve: bool | None = None) -> None:
    """`clout demo`: the stack up, demo tickets in as signed webhooks, the queue out, then an
    agent's own priority respected and a solved ticket leaving the queue.

    `port_fallback`: `port` was not chosen by the user, so if it is taken any free
    port will do (a warning says which)."""
    import base64
    import os
    import secrets as pysecrets
    import sys

    import click

    started = time.monotonic()
    env = dict(os.environ)
    generated = []
    if not env.get("CLOUT_WEBHOOK_SECRET_GENERIC"):
        env["CLOUT_WEBHOOK_SECRET_GENERIC"] = "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()
        generated.append("CLOUT_WEBHOOK_SECRET_GENERIC")
    if not env.get("CLOUT_API_TOKEN"):
        env["CLOUT_API_TOKEN"] = pysecrets.token_urlsafe(24)
        generated.append("CLOUT_API_TOKEN")
    if not env.get("CLOUT_ADMIN_TOKEN"):  # the pages' admin login (the demo prints a one-time link)
        env["CLOUT_ADMIN_TOKEN"] = pysecrets.token_urlsafe(32)
        generated.append("CLOUT_ADMIN_TOKEN")
    if not env.get("CLOUT_WEBHOOK_SECRET_SOCIAL"):  # the demo's social mentions are signed
        env["CLOUT_WEBHOOK_SECRET_SOCIAL"] = "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()
        generated.append("CLOUT_WEBHOOK_SECRET_SOCIAL")
    settings = load(env)
    rt, stack, worker_log = demo_stack(settings, env, host, port, make_runtime, setup_logging,
                                       port_fallback)
    if generated:
        click.echo(f"Using throwaway demo values for {', '.join(generated)} (not printed).")
    interactive = sys.stdout.isatty()

    def progress(done: int, total: int) -> None:
        if interactive:
            click.echo(f"\rDecided {done}/{total}", nl=False)
        elif done == total:
            click.echo(f"Decided {done}/{total}", nl=False)

    def wait(event_ids: list[str]) -> None:
        done, error = wait_for_decisions(rt.store, rt.redis, rt.queue, event_ids, timeout, progress)
        click.echo("")
        if len(done) < len(event_ids):
            why = f"a job failed: {error}" if error else f"still pending after {timeout:.0f} s"
            raise DemoFailed(f"{len(event_ids) - len(done)} of {len(event_ids)} tickets undecided, "
                             f"{why}. Worker log: {worker_log}")

    try:
        start_stack(rt, stack, host, port)
        today = dt.date.today()
        ddir = demo_dir(settings)
        customers = load_customers(ddir / "customers.json", today)
        rt.store.upsert_customers(customers)
        click.echo(f"Loaded {len(customers)} demo customers into the local desk.")

        session = requests.Session()
        session.trust_env = False
        url = f"{stack.base_url}/webhooks/generic"
        secret = env["CLOUT_WEBHOOK_SECRET_GENERIC"]
        run_id = new_run_id()
        by_id = {c.id: c for c in customers}
        events = build_events(ddir / "tickets.json", by_id, dt.datetime.now(dt.timezone.utc), run_id)
        first = _post_all(session, url, secret, events)
        click.echo(f"Posted {len(events)} signed webhooks to /webhooks/generic (all 202).")
        wait(first)
        ticket_ids = {json.loads(body)["ticket"]["id"]: json.loads(body)["customer"]["id"]
                      for _, body in events}

        def ours() -> list[dict[str, Any]]:
            return [r for r in rt.store.open_queue(limit=500) if r["ticket_id"] in ticket_ids]

        click.echo("")
        click.echo(_queue_table(ours()))

        # Act two: the desk reports an agent's own priority, and a solved ticket.
        agent = update_event(AGENT_TICKET, by_id[ticket_ids[AGENT_TICKET]], run_id, "agent",
                             priority=AGENT_PRIORITY,
                             subject="Password reset email never arrives",
                             description="Customer is locked out before a board meeting.")
        solved = update_event(SOLVED_TICKET, by_id[ticket_ids[SOLVED_TICKET]], run_id, "solved",
                              status="solved", subject="Loving the new dashboard")
        click.echo("")
        click.echo(f"An agent sets {AGENT_TICKET} to {AGENT_PRIORITY} by hand, and {SOLVED_TICKET} "
                   "is solved; the desk sends both as webhooks.")
        wait(_post_all(session, url, secret, [agent, solved]))
        rows = ours()
        override = next((r for r in rows if r["ticket_id"] == AGENT_TICKET), None)
        if override is None or override["state"] != "agent_override":
            raise DemoFailed(f"{AGENT_TICKET}: the agent's priority was not kept "
                             f"({override and override['state']})")
        if any(r["ticket_id"] == SOLVED_TICKET for r in rows):
            raise DemoFailed(f"{SOLVED_TICKET} is solved but still in the queue")
        click.echo(f"  {AGENT_TICKET}: Clout would say {override['priority']}, the agent's "
                   f"{override['desk_priority']} stands (state: agent_override; not overwritten).")
        click.echo(f"  {SOLVED_TICKET}: solved, left the queue ({len(rows)} open tickets now).")
        click.echo("")
        click.echo(_queue_table(rows))
        click.echo("")
        _social_act(rt, stack.base_url, settings, run_id, timeout, worker_log)
        click.echo("")
        click.echo(f"Done in {time.monotonic() - started:.1f} s.")
        click.echo(f"Keep it running with:  {_clout_command()} run    (web + worker + embedded Redis, "
                   "Ctrl-C stops)")
        click.echo("Set CLOUT_WEBHOOK_SECRET_GENERIC and CLOUT_API_TOKEN first, then e.g.")
        click.echo(f'  curl -H "Authorization: Bearer $CLOUT_API_TOKEN" '
                   f'http://{host}:{port or 5000}/api/queue'
                   + ("    (use the URL `clout run` prints if the port is taken)"
                      if stack.fell_back else ""))
        if serve is None:  # a person at a terminal gets time to open the link
            serve = sys.stdin.isatty() and interactive
        _pages_act(settings, stack.base_url, serve=serve)
    finally:
        on_shutdown()
        stack.stop()


def _social_act(rt: Any, base_url: str, settings: Settings, run_id: str, timeout: float,
                worker_log: Path) -> None:
    """Act three: three social mentions arrive; the loud complaint raises its ticket."""
    import click

    from .mentions import mention_store, post_demo_mentions

    answers = post_demo_mentions(base_url, settings, run_id)
    bad = [a for a in answers if a.get("http_status") != 202]
    if bad:
        raise DemoFailed(f"/webhooks/social answered {bad[0].get('http_status')}: {bad[0]}")
    click.echo(f"Posted {len(answers)} social mentions to /webhooks/social (all 202).")
    ms = mention_store(rt)
    # Only this run's mentions: a store used before (a shared database) holds others.
    ids = [int(a["mention_id"]) for a in answers if a.get("mention_id") is not None]
    deadline = time.monotonic() + timeout
    while True:
        ours = [m for m in (ms.get(i) for i in ids) if m is not None]
        done = [m for m in ours if m.get("escalation")]
        events = [f"social-{m['id']}" for m in done if m["escalation"] in ("raised", "opened")]
        if len(done) == len(ids) and len(rt.store.decided_events(events)) == len(events):
            break
        if time.monotonic() > deadline:
            raise DemoFailed(f"the social mentions were not all handled after {timeout:.0f} s. "
                             f"Worker log: {worker_log}")
        time.sleep(0.1)
    complaints = [m for m in ours if m.get("is_complaint")]
    loud = max(complaints, key=lambda m: (m.get("influence") or 0) * (m.get("complaint") or 0),
               default=None)
    if loud is not None:
        customer = (rt.store.get_customers([loud["customer_id"]]).get(loud["customer_id"])
                    if loud.get("customer_id") else None)
        who = customer.name if customer is not None and customer.name else \
            f"@{loud.get('handle') or loud.get('author')}"
        click.echo(f"  Loudest complaint: {who} on {loud['network']} "
                   f"(influence {loud.get('influence') or 0:.0f}, complaint {loud['complaint']:.2f})"
                   + (f" -> ticket {loud['ticket_id']} {loud['escalation']}" if loud.get("ticket_id")
                      else ""))
        goodwill = ms.suggestion_for_mention(loud["id"])
        if goodwill:
            click.echo(f"  Suggested gesture on its ticket: {goodwill.get('label') or goodwill.get('gesture')}")


def _pages_act(settings: Settings, base_url: str, *, serve: bool) -> None:
    """Where the pages are, with a one-time admin login link; in a terminal, keep serving."""
    import click

    from .pages.auth import login_link

    click.echo("")
    click.echo(f"Pages: {base_url}/pages/  (agent queue, complaint feed, customers, admin weights)")
    try:
        link = login_link(settings, base_url, role="admin")
    except ValueError as exc:
        click.echo(f"  (no login link: {exc})")
        return
    minutes = settings.config.pages.login_link_minutes
    click.echo(f"One-time admin login (works once, for {minutes} min): {link}")
    if not serve:
        click.echo("  (the demo server stops now; `clout demo --serve` keeps it serving while "
                   "you look)")
        return
    click.echo(f"Serving the pages for {minutes} min, while the link lasts (Ctrl-C stops sooner).")
    try:
        time.sleep(minutes * 60)
    except KeyboardInterrupt:
        click.echo("\nStopped.")
