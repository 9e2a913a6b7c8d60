"""The `clout` command.

    clout demo     embedded Redis + web + one worker, demo tickets in, ranked queue out, exit
    clout run      the same stack, kept up (dead parts restarted) until Ctrl-C
    clout web      the web app only (REDIS_URL, or join/start the embedded Redis)
    clout worker   one RQ worker, with the reconcile ticker
    clout failed   parked desk writes and events; --retry puts them back to work
    clout score    score social handles (or a file of profiles) and show the parts
    clout refresh  look up stale influence of customers with open tickets again
    clout optout   stop (or with --undo allow again) profiling one customer
    clout weights  check a config file, or preview its weights on the open tickets
    clout rank     rank a CSV or Parquet book of tickets offline (backfills, nightly re-ranks)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Callable

import click
from click.core import ParameterSource
from redis.exceptions import RedisError

from .logs import configure_logging, register_secrets, settings_secrets
from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("clout")


def _setup_logging(level: str, quiet_http: bool = False) -> None:
    configure_logging(level, quiet_http=quiet_http)  # with customer data and secrets redacted


def _load(env: dict[str, str] | None = None) -> Settings:
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    # Every secret this process knows is masked in its logs (workers load their own).
    register_secrets(settings_secrets(settings))
    return settings


def _sigterm_as_exit() -> None:
    # So `kill <pid>` runs the same clean shutdown as Ctrl-C (and stops embedded Redis).
    def handler(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _shutting_down() -> None:
    """A second Ctrl-C or SIGTERM must not abort the shutdown half-way (orphaning Redis)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _StopFlag:
    """Set by a signal handler, read by a loop."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def __bool__(self) -> bool:
        return self._set


def _signals_call(action: Callable[[], None]) -> None:
    """Ctrl-C and SIGTERM call `action` instead of raising where the main thread happens to be."""
    def handler(signum: int, _frame: Any) -> None:
        action()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


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
                           help="Port to listen on (0 picks a free one). Without --port, a busy "
                                "5000 means a free port instead.")
debug_option = click.option("--debug", is_flag=True,
                            help="werkzeug's development server and DEBUG logs "
                                 "(not for production).")


def _port_fallback() -> bool:
    """True when --port was not given: a busy default port then means any free one."""
    source = click.get_current_context().get_parameter_source("port")
    return source is ParameterSource.DEFAULT


def _warn_port_fallback(host: str, requested: int, url: str) -> None:
    click.echo(f"warning: {host}:{requested} is in use; serving on {url} instead "
               "(pass --port to choose)", err=True)


def _warn_debug() -> None:
    click.echo("warning: --debug: werkzeug's development server (a thread per client, no request "
               "deadline) and DEBUG logs; not for production", err=True)


@cli.command()
@host_option
@port_option
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for decisions.")
@click.option("--desk", type=click.Choice(["generic", "salesforce"]), default="generic",
              show_default=True,
              help="Whose traffic: generic JSON webhooks, or a local stand-in Salesforce org "
                   "(Outbound Messages in, SOQL and sObject Collections out).")
@click.option("--serve/--no-serve", default=None,
              help="Keep serving the pages after the story, for as long as the printed login link "
                   "lasts (Ctrl-C stops sooner). Default: only in an interactive terminal.")
def demo(host: str, port: int, timeout: float, desk: str, serve: bool | None) -> None:
    """Run the whole path once on embedded defaults and print the ranked queue."""
    from . import demo as demo_mod
    from .services import PortInUse

    _sigterm_as_exit()
    extra: dict = {}
    if desk == "salesforce":
        from .demo_salesforce import run_salesforce_demo as run_it
    else:
        run_it = demo_mod.run_demo
        extra["serve"] = serve
    try:
        run_it(host=host, port=port, timeout=timeout, load=_load, make_runtime=_runtime,
               setup_logging=_setup_logging, on_shutdown=_shutting_down,
               port_fallback=_port_fallback(), **extra)
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    except demo_mod.DemoFailed as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("\nInterrupted.")
        sys.exit(130)


@cli.command()
@host_option
@port_option
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes to start.")
@debug_option
def run(host: str, port: int, workers: int, debug: bool) -> None:
    """Web + workers + embedded Redis (when REDIS_URL is unset), until Ctrl-C or SIGTERM.

    The web app is served by waitress ([web] settings). A worker that exits is started
    again (back-off 1 s doubling to 30 s); an embedded redis-server that dies is started
    again on the same socket; meanwhile the web app answers 503 where it needs Redis.
    """
    from .redis_conn import EmbeddedRedisError
    from .services import LocalStack, PortInUse

    settings = _load()
    _setup_logging("DEBUG" if debug else settings.config.service.log_level)
    if debug:
        _warn_debug()
    for name, what in (("CLOUT_WEBHOOK_SECRET_GENERIC", "/webhooks/generic will answer 503"),
                       ("CLOUT_API_TOKEN", "/api/* will answer 401")):
        if not os.environ.get(name):
            click.echo(f"warning: {name} is not set: {what}", err=True)
    rt = _runtime(settings)
    stack = LocalStack(rt, host=host, port=port, workers=workers, debug=debug,
                       port_fallback=_port_fallback())
    _sigterm_as_exit()
    try:
        try:
            stack.start()
        except (RedisError, EmbeddedRedisError) as exc:
            raise click.ClickException(f"cannot reach Redis ({_describe(rt)}): {exc}") from None
        if stack.fell_back:
            _warn_port_fallback(host, port, stack.base_url)
        click.echo(f"Clout is up on {stack.base_url} ({workers} worker(s); queue: {_describe(rt)}). "
                   "Ctrl-C stops.")
        # From here on a signal only asks the supervisor to stop: it never interrupts a
        # restart half-way (a redis-server started but not yet recorded would be orphaned).
        _signals_call(stack.request_stop)
        stack.supervise()  # restarts dead workers and a dead embedded redis-server
        click.echo("\nStopping...")
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
@debug_option
def web(host: str, port: int, debug: bool) -> None:
    """The web app only, served by waitress ([web] settings).

    Behind a proxy, `gunicorn 'plugin:create_app()'` serves the same app.
    """
    from .app import create_app
    from .redis_conn import EmbeddedRedisError
    from .services import PortInUse, RedisWatch, serve_in_thread
    from .web_server import WebOptions

    settings = _load()
    _setup_logging("DEBUG" if debug else settings.config.service.log_level)
    if debug:
        _warn_debug()
    rt = _runtime(settings)
    _sigterm_as_exit()
    server = None
    watch = None
    try:
        try:
            rt.redis.ping()
        except (RedisError, EmbeddedRedisError) as exc:
            raise click.ClickException(f"cannot reach Redis ({_describe(rt)}): {exc}") from None
        server = serve_in_thread(create_app(runtime=rt), host, port,
                                 WebOptions.from_settings(settings), debug=debug,
                                 fallback=_port_fallback())
        url = f"http://{host}:{server.port}"
        if port and server.port != port:
            _warn_port_fallback(host, port, url)
        click.echo(f"Clout web on {url} (queue: {_describe(rt)})")
        watch = RedisWatch(rt.redis_handle)
        stop = _StopFlag()
        _signals_call(stop.set)
        while server.thread.is_alive() and not stop:
            server.thread.join(1)
            if not stop:
                watch.check()  # starts the embedded redis-server again if it died
    except PortInUse as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        _shutting_down()
        if watch is not None:
            watch.close()
        if server is not None:
            server.stop()
        rt.close()


@cli.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """One RQ worker on the configured queue, with Clout's reconcile ticker."""
    from .worker import run_worker

    settings = _load()
    _setup_logging(settings.config.service.log_level)
    run_worker(_runtime(settings), burst=burst)


@cli.command()
@click.option("--retry", "retry", is_flag=True, help="Put every parked item back to work now.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="Most items to list.")
def failed(retry: bool, limit: int) -> None:
    """Desk writes and events that gave up and wait for an operator."""
    from .operator import failed_command

    settings = _load()
    _setup_logging("WARNING")
    rt = _runtime(settings)
    try:
        failed_command(rt, retry=retry, limit=limit, echo=click.echo)
    finally:
        rt.close(grace=1.0)  # the last one out stops an embedded Redis it started


def _print_scores(scored: Any, echo: Callable[[str], None]) -> None:
    for name, row in scored.iterrows():
        echo(f"{name}: influence {float(row['influence']):.1f}")
        explanation = row.get("explanation") or {}
        for part in explanation.get("networks", []):
            bits = ", ".join(f"{k} {v}" for k, v in part.items() if k != "network")
            echo(f"  {part.get('network', '?')}: {bits}")
        for key, value in explanation.items():
            if key != "networks":
                echo(f"  {key}: {value}")


@cli.command()
@click.argument("handles", nargs=-1)
@click.option("--profiles", "profiles_file", type=click.Path(exists=True, dir_okay=False),
              help="Score a JSON file of profiles instead: a list of objects with network, "
                   "handle and counts (followers, following, posts_total, ...); an optional "
                   "\"id\" groups several networks into one person.")
def score(handles: tuple[str, ...], profiles_file: str | None) -> None:
    """Score social handles now, e.g. `clout score bluesky:alice.bsky.social x:jack`.

    Every handle given together counts as one person; the score and its parts are printed.
    """
    import dataclasses
    import json as jsonlib

    from ranking.influence import metrics_frame, score_influence
    from ranking.metrics import NetworkMetrics

    from .influence import LookupFailure, normalise

    settings = _load()
    _setup_logging("WARNING")
    if profiles_file:
        try:
            rows = jsonlib.loads(open(profiles_file, encoding="utf-8").read())
            known = {f.name for f in dataclasses.fields(NetworkMetrics)}
            pairs = [(str(r.get("id") or f"{r['network']}:{r['handle']}"),
                      NetworkMetrics(**{k: v for k, v in r.items() if k in known}))
                     for r in rows]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise click.ClickException(f"{profiles_file}: not a list of profiles ({exc})") from None
        _print_scores(score_influence(metrics_frame(pairs)), click.echo)
        return
    if not handles:
        raise click.UsageError("give NETWORK:HANDLE arguments, or --profiles FILE.json")
    wanted: list[tuple[str, str]] = []
    for arg in handles:
        network, sep, handle = arg.partition(":")
        if not sep or not handle:
            raise click.UsageError(f"{arg!r}: write NETWORK:HANDLE, e.g. bluesky:alice.bsky.social")
        try:
            wanted.append((network, normalise(network, handle)))
        except ValueError as exc:
            raise click.ClickException(f"{arg}: {exc}") from None
    rt = _runtime(settings)
    try:
        source = rt.influence
        pairs = []
        for network in sorted({n for n, _ in wanted}):
            asked = [h for n, h in wanted if n == network]
            found = source.fetch_metrics(network, asked) if network in source.networks() else {}
            for h in asked:
                got = found.get(h)
                if isinstance(got, NetworkMetrics):
                    pairs.append(("person", got))
                else:
                    why = got.reason if isinstance(got, LookupFailure) else "not found"
                    click.echo(f"{network}:{h}: {why}", err=True)
        if not pairs:
            raise click.ClickException("no profile found for any handle")
        _print_scores(score_influence(metrics_frame(pairs)), click.echo)
    finally:
        rt.close(grace=1.0)


@cli.command()
@click.option("--older-than", type=click.IntRange(0), default=None,
              help="Seconds; default influence.refresh_after_seconds (0: everyone).")
def refresh(older_than: int | None) -> None:
    """Look up again the influence of customers with open tickets whose score is old."""
    import datetime as dt

    from .influence import refresh_influence

    settings = _load()
    _setup_logging("WARNING")
    rt = _runtime(settings)
    age = settings.config.influence.refresh_after_seconds if older_than is None else older_than
    try:
        stale = rt.store.stale_influence(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age))
        with click.progressbar(length=len(stale), label="Refreshing influence") as bar:
            result = refresh_influence(rt, older_than=dt.timedelta(seconds=age), progress=bar.update)
        click.echo(f"Refreshed {result['refreshed']} customer(s).")
    finally:
        rt.close(grace=1.0)


@cli.command()
@click.argument("customer_id")
@click.option("--undo", is_flag=True, help="Allow profiling again.")
def optout(customer_id: str, undo: bool) -> None:
    """Stop profiling a customer: no social lookups, ranked without influence."""
    settings = _load()
    _setup_logging("WARNING")
    rt = _runtime(settings)
    try:
        rt.store.set_opt_out(customer_id, not undo)
        click.echo(f"{customer_id}: profiling {'allowed again' if undo else 'stopped (opted out)'}.")
    finally:
        rt.close(grace=1.0)


@cli.command("login-link")
@click.option("--role", type=click.Choice(["admin", "agent"]), default="admin", show_default=True)
@click.option("--url", "base_url", default="http://127.0.0.1:5000", show_default=True,
              help="Where `clout run` / `clout web` serves, as the browser reaches it.")
def login_link_command(role: str, base_url: str) -> None:
    """Print a one-time login link to the pages of a running Clout (same settings and secrets)."""
    from .pages.auth import login_link

    settings = _load()
    try:
        link = login_link(settings, base_url, role=role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(link)
    click.echo(f"(works once, for {settings.config.pages.login_link_minutes} min)", err=True)


@cli.group()
def weights() -> None:
    """Check or preview a config file's ranking weights before putting it in force."""


def _proposed(path: str) -> Settings:
    import os

    env = dict(os.environ)
    env["CLOUT_CONFIG"] = path
    try:
        return load_settings(env)
    except SettingsError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@weights.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def weights_check(path: str) -> None:
    """Validate a config file (layered over the defaults and this environment, as at start)."""
    proposed = _proposed(path)
    click.echo(f"{path}: valid; weights version {proposed.weights.version()}.")


@weights.command("preview")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Also draw the before/after tier chart into this PNG (needs matplotlib: "
                   "pip install 'clout[plot]').")
@click.option("--book", "book_path", type=click.Path(exists=True, dir_okay=False),
              help="Rank this CSV or Parquet book (as `clout rank` reads) instead of the open "
                   "tickets.")
def weights_preview(path: str, plot_path: str | None, book_path: str | None) -> None:
    """Rank the open tickets under today's settings and under PATH, and show what moves.

    No decision is recorded and nothing is written to a desk.
    """
    from .weights_preview import plot, preview, preview_book, report

    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'clout[plot]'") from None
    proposed = _proposed(path)
    settings = _load()
    _setup_logging("ERROR")
    if book_path:  # offline: no store, no Redis
        result = preview_book(book_path, settings, proposed)
        report(result, click.echo)
        if plot_path:
            plot(result, plot_path)
            click.echo(f"Chart: {plot_path}")
        return
    rt = _runtime(settings)
    try:
        result = preview(rt, proposed)
        report(result, click.echo)
        if plot_path:
            plot(result, plot_path)
            click.echo(f"Chart: {plot_path}")
    finally:
        rt.close(grace=1.0)


@weights.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def weights_history(limit: int) -> None:
    """The accepted changes of the ranking settings, newest first (the audit log)."""
    settings = _load()
    _setup_logging("ERROR")
    rt = _runtime(settings)
    try:
        changes = rt.store.weights_changes(limit)
        if not changes:
            click.echo("No settings change recorded.")
        for c in changes:
            click.echo(f"{c['changed_at']}  {c['key']}: {c['old']} -> {c['new']}  "
                       f"(weights {c['version_before']} -> {c['version_after']})")
    finally:
        rt.close(grace=1.0)


def _register_rank() -> None:
    from .rank_file import rank_command

    cli.add_command(rank_command)


_register_rank()


def main() -> None:
    cli(prog_name="clout")


if __name__ == "__main__":
    main()
