"""Ranking settings reloaded from the config file without a restart, with an audit trail."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

from conftest import auth, work


def _config(path, spend: float, extra: str = "") -> None:
    path.write_text(f"[ranking.weights]\nspend = {spend}\n{extra}")


def _event(ticket_id: str) -> dict:
    return {"event_id": f"evt_{uuid.uuid4().hex}",
            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "ticket": {"id": ticket_id, "subject": "Help"},
            "customer": {"id": f"C-{ticket_id}", "monthly_spend": 100.0}}


def test_a_valid_change_is_in_force_and_audited_an_invalid_one_changes_nothing(
        tmp_path, runtime_with, caplog):
    from plugin.reload import SettingsWatcher

    cfg = tmp_path / "clout.toml"
    _config(cfg, 0.25)
    rt = runtime_with({"CLOUT_CONFIG": str(cfg)})
    env = {k: v for k, v in rt_env(rt, cfg).items()}
    watcher = SettingsWatcher(rt, env)
    first = rt.settings.weights.version()
    assert watcher.check() is False  # nothing changed yet

    _config(cfg, 0.40)
    assert watcher.check() is True
    assert rt.settings.config.ranking.weights.spend == 0.40
    second = rt.settings.weights.version()
    assert second != first
    audit = rt.store.weights_changes()
    assert [(a["key"], a["old"], a["new"]) for a in audit] == [("ranking.weights.spend", "0.25", "0.4")]
    assert audit[0]["version_before"] == first and audit[0]["version_after"] == second

    caplog.set_level(logging.WARNING)
    cfg.write_text("[ranking.weights]\nspend = -3\n")
    assert watcher.check() is False
    assert rt.settings.weights.version() == second  # the old weights keep ranking
    assert any("invalid" in r.getMessage() and "ranking.weights.spend" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.ERROR)

    _config(cfg, 0.40, "[queue]\nbatch_size = 7\n")  # not reloadable: needs a restart
    assert watcher.check() is False
    assert rt.settings.config.queue.batch_size != 7
    assert any("need a restart" in r.getMessage() for r in caplog.records)


def rt_env(rt, cfg) -> dict[str, str]:
    """The environment the runtime was built from (what a process would have)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    env.update({"CLOUT_CONFIG": str(cfg), "CLOUT_DATA_DIR": str(rt.settings.data_dir),
                "CLOUT_QUEUE__NAME": rt.settings.config.queue.name})
    return env


def test_the_web_app_and_decisions_pick_up_a_change_without_a_restart(tmp_path, runtime_with,
                                                                      base_env, monkeypatch):
    from plugin import create_app
    from plugin.reload import SettingsWatcher

    cfg = tmp_path / "clout.toml"
    _config(cfg, 0.25)
    monkeypatch.setenv("CLOUT_CONFIG", str(cfg))
    for k, v in base_env.items():
        monkeypatch.setenv(k, v)
    rt = runtime_with({"CLOUT_CONFIG": str(cfg)})
    app = create_app(runtime=rt)
    client = app.test_client()
    state = app.extensions["clout"]
    state._watcher = SettingsWatcher(rt)  # this test's environment
    before = rt.settings.weights.version()
    _config(cfg, 0.60)
    state._next_check = 0.0
    client.get("/healthz")  # any request looks at the file (at most every 2 s)
    assert rt.settings.config.ranking.weights.spend == 0.60
    body = _event("T-RELOAD")
    from conftest import standard_webhook_headers, TEST_SECRET
    import json

    raw = json.dumps(body).encode()
    assert client.post("/webhooks/generic", data=raw,
                       headers=standard_webhook_headers(TEST_SECRET, "m-reload", raw)).status_code == 202
    work(rt)
    got = client.get("/api/tickets/T-RELOAD", headers=auth()).get_json()
    assert got["weights_version"] == rt.settings.weights.version() != before


def test_a_worker_watcher_applies_a_change_within_five_seconds(tmp_path, runtime_with):
    from plugin.reload import SettingsWatcher

    cfg = tmp_path / "clout.toml"
    _config(cfg, 0.25)
    rt = runtime_with({"CLOUT_CONFIG": str(cfg)})
    watcher = SettingsWatcher(rt, rt_env(rt, cfg)).start()
    try:
        _config(cfg, 0.33)
        deadline = time.monotonic() + 5
        while rt.settings.config.ranking.weights.spend != 0.33 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rt.settings.config.ranking.weights.spend == 0.33
    finally:
        watcher.stop()


def test_weights_history_lists_the_audit(tmp_path, runtime_with, base_env):
    from click.testing import CliRunner

    from plugin.cli import cli
    from plugin.reload import SettingsWatcher

    cfg = tmp_path / "clout.toml"
    _config(cfg, 0.25)
    rt = runtime_with({"CLOUT_CONFIG": str(cfg)})
    watcher = SettingsWatcher(rt, rt_env(rt, cfg))
    _config(cfg, 0.5)
    assert watcher.check()
    out = CliRunner().invoke(cli, ["weights", "history"], env={**base_env, "CLOUT_CONFIG": str(cfg)})
    assert out.exit_code == 0, out.output
    assert "ranking.weights.spend: 0.25 -> 0.5" in out.output
