"""Hot reload of the ranking settings, with an audit trail.

An admin edits the file named by `CLOUT_CONFIG`; every Clout process (web and
workers) notices within `CHECK_SECONDS` and puts the new `[ranking]` section in
force (weights, tiers, timing, flags, currency): no restart. Other sections
(queue names, data dir, desks...) are not safe to change under a running
process; a change to them is logged as needing a restart and ignored.

A file that doesn't validate changes nothing: the old settings keep ranking and
the log says exactly why, once per change of the file. Each accepted change is
appended to the `weights_audit` table (when, which keys, old -> new, the weights
version before and after); several processes applying the same change record
it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from .settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

CHECK_SECONDS = 2.0  # a change is in force within this (and always within 5 s)
RELOADABLE = "ranking"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


class SettingsWatcher:
    """Watches the config file; `check()` applies a valid change to `rt.settings`."""

    def __init__(self, rt: Any, env: Mapping[str, str] | None = None) -> None:
        import os

        self.rt = rt
        self.env = dict(os.environ if env is None else env)
        path = self.env.get("CLOUT_CONFIG")
        self.path = Path(path).expanduser().resolve() if path else None
        self._seen = self._fingerprint()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _fingerprint(self) -> str | None:
        if self.path is None:
            return None
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return "unreadable"

    def check(self) -> bool:
        """One look at the file; True when new ranking settings were put in force."""
        if self.path is None:
            return False
        with self._lock:
            seen = self._fingerprint()
            if seen == self._seen:
                return False
            self._seen = seen
            try:
                new = load_settings(self.env)
            except SettingsError as exc:
                log.error("config %s changed but is invalid; the previous settings stay in "
                          "force: %s", self.path, exc)
                return False
            return self._apply(new)

    def _apply(self, new: Settings) -> bool:
        old: Settings = self.rt.settings
        before = _flatten(old.config.model_dump())
        after = _flatten(new.config.model_dump())
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if not changed:
            return False
        kept = [k for k in changed if not k.startswith(RELOADABLE + ".")]
        if kept:
            log.warning("config %s: %s changed; these need a restart and are ignored until "
                        "then", self.path, ", ".join(kept))
        ranking = [k for k in changed if k.startswith(RELOADABLE + ".")]
        if not ranking:
            return False
        updated = replace(old, config=old.config.model_copy(
            update={RELOADABLE: new.config.ranking}))
        version_before, version_after = old.weights.version(), updated.weights.version()
        self.rt.settings = updated
        log.warning("config %s: ranking settings reloaded (weights %s -> %s): %s", self.path,
                    version_before, version_after, ", ".join(ranking))
        try:
            self.rt.store.record_weights_change(
                [{"key": k, "old": json.dumps(before.get(k)), "new": json.dumps(after.get(k))}
                 for k in ranking],
                version_before=version_before, version_after=version_after, path=str(self.path))
        except Exception as exc:  # the change is in force; the audit entry is best effort
            log.warning("recording the settings change failed: %s", type(exc).__name__)
        return True

    # -- a thread of its own (workers) ------------------------------------------------
    def start(self) -> "SettingsWatcher":
        if self.path is None:
            return self
        self._thread = threading.Thread(target=self._run, name="clout-config", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:  # pragma: no cover - keep watching whatever happens
                log.exception("checking the config file failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
