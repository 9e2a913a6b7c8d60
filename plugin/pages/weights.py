"""The admin weights page: edit `[ranking]`, preview it on today's queue, save it.

- The form is built from the settings models (weights, tiers, timing, flags),
  filled with the values in force.
- "Preview" ranks the open tickets under both settings with
  `plugin.weights_preview.preview` (what `clout weights preview` prints) and
  shows the tier counts as inline SVG bars, the tickets changing tier and the
  top movers with both reasons. Nothing is written.
- "Save" validates the whole `[ranking]` section, changes only the edited keys
  in the config file this process watches (`CLOUT_CONFIG`; comments and other
  sections are kept, via tomlkit), writes it atomically (a temp file in the same
  folder, fsync, `os.replace`), and then lets the settings watcher of
  `plugin/reload.py` put it in force and append the `weights_audit` entry, as
  it does for a hand edit. Other processes pick the file up within seconds.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

import tomlkit
from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from pydantic import BaseModel, ValidationError

from ..settings import RankingConfig, Settings, _format_validation_error
from . import charts
from .auth import admin_required

SECTIONS = ("weights", "tiers", "timing", "flags")
TOP_LEVEL = ("book_refresh_seconds",)
MAX_FIELD_CHARS = 40
_save_lock = threading.Lock()


@dataclass(frozen=True)
class FormField:
    name: str  # "weights.spend"
    kind: str  # "float", "int" or "choice"
    value: Any
    choices: tuple[str, ...] = ()
    help: str = ""
    low: float | None = None
    high: float | None = None


def _bounds(info: Any) -> tuple[float | None, float | None]:
    """The field's inclusive limits, for the form's min/max (the server checks again)."""
    low = high = None
    for m in info.metadata:
        if getattr(m, "ge", None) is not None:
            low = m.ge
        if getattr(m, "le", None) is not None:
            high = m.le
    return low, high


def _fields_of(model: BaseModel, prefix: str, only: tuple[str, ...] | None = None) -> list[FormField]:
    out = []
    for name, info in type(model).model_fields.items():
        if only is not None and name not in only:
            continue
        value = getattr(model, name)
        choices = get_args(info.annotation)
        if choices and all(isinstance(c, str) for c in choices):
            kind = "choice"
        elif info.annotation is int:
            kind = "int"
        elif info.annotation is float:
            kind = "float"
        else:
            continue  # tables (currency rates) are edited in the file
        low, high = _bounds(info)
        out.append(FormField(f"{prefix}{name}", kind, value, tuple(choices),
                             info.description or "", low, high))
    return out


def form_fields(ranking: RankingConfig) -> list[FormField]:
    fields: list[FormField] = []
    for section in SECTIONS:
        fields += _fields_of(getattr(ranking, section), f"{section}.")
    return fields + _fields_of(ranking, "", TOP_LEVEL)


def parse_form(current: RankingConfig, form: Any) -> tuple[RankingConfig | None, list[str]]:
    """The proposed `[ranking]` from the form, or the problems (each naming its key)."""
    data = current.model_dump()
    problems = []
    for f in form_fields(current):
        raw = form.get(f.name)
        if raw is None:
            continue  # not sent: keep the value in force
        raw = raw.strip()
        key = f"ranking.{f.name}"
        if len(raw) > MAX_FIELD_CHARS:
            problems.append(f"{key}: too long")
            continue
        if f.kind == "choice":
            if raw not in f.choices:
                problems.append(f"{key}: allowed: {', '.join(f.choices)}")
                continue
            value: Any = raw
        else:
            try:
                value = int(raw) if f.kind == "int" else float(raw)
            except ValueError:
                problems.append(f"{key}: must be {'a whole number' if f.kind == 'int' else 'a number'}")
                continue
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{key}: must be a finite number")
                continue
        section, _, name = f.name.rpartition(".")
        (data[section] if section else data)[name] = value
    if problems:
        return None, problems
    try:
        return RankingConfig.model_validate(data), []
    except ValidationError as exc:
        text = _format_validation_error(exc, prefix="ranking").removeprefix("invalid settings:\n  ")
        return None, text.split("\n  ")


def changed_keys(before: RankingConfig, after: RankingConfig) -> list[tuple[str, Any, Any]]:
    out = []
    for f in form_fields(before):
        section, _, name = f.name.rpartition(".")
        old = getattr(getattr(before, section) if section else before, name)
        new = getattr(getattr(after, section) if section else after, name)
        if old != new:
            out.append((f.name, old, new))
    return out


# -- the config file ----------------------------------------------------------------------

class CannotSave(Exception):
    """There is no config file this process may write; the message says what to do."""


def config_path() -> Path:
    """The file the running app watches (`CLOUT_CONFIG`), if it can be written in place."""
    watcher = getattr(current_app.extensions["clout"], "_watcher", None)
    path = getattr(watcher, "path", None)
    if path is None:
        raise CannotSave("No config file to save to: this server runs on the bundled defaults. "
                         "Start it with CLOUT_CONFIG=/path/to/clout.toml (a copy of "
                         "config/clout.toml) to save weights from this page.")
    path = Path(path)
    if not path.is_file():
        raise CannotSave(f"The config file {path} does not exist (CLOUT_CONFIG names it).")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise CannotSave(f"The config file {path} (or its folder, where the new version is "
                         "written before it replaces the old one) is not writable by this "
                         "server; edit it by hand or fix its permissions.")
    return path


def updated_text(text: str, changes: list[tuple[str, Any, Any]]) -> str:
    """`text` with the changed `[ranking]` keys set; everything else (comments too) kept."""
    doc = tomlkit.parse(text)
    ranking = doc.get("ranking")
    if ranking is None:
        ranking = tomlkit.table(is_super_table=True)
        doc["ranking"] = ranking
    for name, _old, new in changes:
        section, _, key = name.rpartition(".")
        table = ranking
        if section:
            if section not in ranking:
                ranking[section] = tomlkit.table()
            table = ranking[section]
        table[key] = new
    out = tomlkit.dumps(doc)
    tomllib.loads(out)  # what the loader will read must parse
    return out


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one; the mode is kept."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save(proposed: RankingConfig) -> dict[str, Any]:
    """Write the edited keys, put them in force through the watcher (which audits them)."""
    state = current_app.extensions["clout"]
    with _save_lock:
        path = config_path()
        changes = changed_keys(state.settings.config.ranking, proposed)
        if not changes:
            return {"changed": [], "applied": True}
        write_atomically(path, updated_text(path.read_text(encoding="utf-8"), changes))
        state._watcher.check()
    in_force = state.settings.config.ranking
    return {"changed": [f"ranking.{c[0]}" for c in changes], "applied": in_force == proposed,
            "path": str(path)}


# -- the view ---------------------------------------------------------------------------------

def _proposed_settings(settings: Settings, ranking: RankingConfig) -> Settings:
    return replace(settings, config=settings.config.model_copy(update={"ranking": ranking}))


def _page(status: int = 200, **ctx: Any):
    state = current_app.extensions["clout"]
    settings = state.settings
    try:
        path, save_problem = str(config_path()), None
    except CannotSave as exc:
        path, save_problem = None, str(exc)
    ctx.setdefault("fields", form_fields(settings.config.ranking))
    ctx.setdefault("problems", [])
    ctx.setdefault("result", None)
    ctx.setdefault("chart", None)
    ctx.setdefault("saved", None)
    return render_template("pages/weights.html", config_path=path, save_problem=save_problem,
                           version=settings.weights.version(),
                           audit=state.store.weights_changes(30), **ctx), status


def register(bp: Blueprint) -> None:
    @bp.get("/admin/weights")
    @admin_required
    def weights():
        saved = request.args.get("saved")
        note = None
        if saved is not None:
            note = (f"Saved: {saved[:200]}. The new settings are in force here and reach the "
                    "workers within seconds." if saved else "Nothing changed; nothing saved.")
        return _page(saved=note, applied=request.args.get("applied") != "0")

    @bp.post("/admin/weights")
    @admin_required
    def weights_post():
        state = current_app.extensions["clout"]
        action = request.form.get("action", "")
        if action not in ("preview", "save"):
            abort(400, "action must be preview or save")
        current = state.settings.config.ranking
        proposed, problems = parse_form(current, request.form)
        sent = [replace(f, value=request.form.get(f.name, f.value)) for f in form_fields(current)]
        if proposed is None:
            return _page(400, fields=sent, problems=problems)
        if action == "preview":
            from ..weights_preview import preview

            result = preview(state.runtime, _proposed_settings(state.settings, proposed))
            return _page(fields=form_fields(proposed), result=result,
                         chart=charts.tier_bars(result["before"], result["after"]))
        try:
            outcome = save(proposed)
        except CannotSave as exc:
            return _page(409, fields=form_fields(proposed), problems=[str(exc)])
        changed = ", ".join(outcome["changed"])
        return redirect(url_for("clout_pages.weights", saved=changed,
                                applied="1" if outcome["applied"] else "0"), code=303)
