"""Clout as pip installs it: sdist -> wheel -> a fresh venv, run from a folder that is not the repo.

Offline: the sdist and the wheel are built with the project venv's setuptools
and wheel (no build isolation, no index), and the fresh venv gets the wheel with
`--no-deps`. Its dependencies are the ones already installed in the project
venv, made visible by a `.pth` line naming that venv's site-packages (plain path
lines only: the `.pth` files in there, such as the editable install's finder,
are not run, so the repo stays unimportable). The test checks that every
requirement the wheel declares is met there, so a dependency missing from
setup.cfg still fails.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from typing import IO, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("plugin", "connectors", "ranking", "webhooks")
DEMO_FILES = ("customers.json", "tickets.json", "social_snapshot.json")
# Not part of a source tree: never copied into the build folder.
IGNORED = shutil.ignore_patterns(".git", ".venv", "venv", ".clout", "build", "dist", "*.egg-info",
                                 "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache",
                                 ".mypy_cache")


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n" \
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _build(tmp: Path) -> tuple[Path, Path]:
    """An sdist from a copy of the source tree, then the wheel built from that sdist."""
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORED, symlinks=True)
    out = tmp / "dist"
    out.mkdir()
    build_sdist = "import sys, setuptools.build_meta as b; b.build_sdist(sys.argv[1])"
    _run([sys.executable, "-c", build_sdist, str(out)], timeout=120, cwd=src)
    (sdist,) = out.glob("clout-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--no-index", "-w", str(out), str(sdist)], timeout=180, cwd=tmp)
    (wheel,) = out.glob("clout-*.whl")
    return sdist, wheel


def _site_packages(python: Path) -> list[Path]:
    code = ("import json, sysconfig as s; p = s.get_paths(); "
            "print(json.dumps(sorted({p['purelib'], p['platlib']})))")
    return [Path(p) for p in json.loads(_run([str(python), "-c", code], timeout=60).stdout)]


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so pip sees an empty environment and touches nothing else.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install",
          "--disable-pip-version-check", "--no-deps", "--no-index", str(wheel)], timeout=180)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    assert ROOT not in {Path(d) for d in deps}, deps  # the environment's packages, never the repo
    (_site_packages(python)[0] / "_clout_test_dependencies.pth").write_text(
        "".join(f"{d}\n" for d in sorted(deps)))
    return venv


def _env(venv: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLOUT_") and k not in {
               "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
               "REDIS_URL", "DATABASE_URL"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"
    env["CLOUT_DATA_DIR"] = str(data_dir)
    return env


class _Lines:
    """A child's output, read on a thread so waiting for a line can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"output ended (the process exited) before a line matching "
                                     f"{pattern!r}:\n" + self.tail())
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n" + self.tail())

    def tail(self, grace: float = 1.0) -> str:
        """The last lines so far, including what arrives within `grace` seconds."""
        deadline = time.monotonic() + grace
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        return "".join(self.seen[-40:])


def _embedded_redis_pid(data_dir: Path) -> int | None:
    settings_file = data_dir / "redis" / "clout.rdb.settings"
    try:
        pidfile = Path(json.loads(settings_file.read_text())["pidfile"])
        return int(pidfile.read_text())
    except (OSError, ValueError, KeyError):
        return None


def _stop(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM, then SIGKILL for the whole session the child leads if it does not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def _kill_leftover_redis(data_dir: Path) -> None:
    pid = _embedded_redis_pid(data_dir)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _healthz(base: str, proc: subprocess.Popen, lines: _Lines,
             timeout: float = 30) -> requests.Response:
    session = requests.Session()
    session.trust_env = False  # no proxy for loopback
    deadline = time.monotonic() + timeout
    while True:
        try:
            return session.get(f"{base}/healthz", timeout=5)
        except requests.ConnectionError:
            if proc.poll() is not None:
                raise AssertionError(
                    f"exited {proc.returncode} instead of serving:\n{lines.tail()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("packaging")
    sdist, wheel = _build(tmp)
    venv = _fresh_venv(tmp, wheel)
    elsewhere = tmp / "elsewhere"  # the working directory: not the repo, nothing importable in it
    elsewhere.mkdir()
    yield {"tmp": tmp, "sdist": sdist, "wheel": wheel, "venv": venv, "cwd": elsewhere}


def test_wheel_carries_the_bundled_defaults_and_no_config_package(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert "plugin/defaults/clout.toml" in names
    for name in DEMO_FILES:
        assert f"plugin/defaults/demo/{name}" in names
    assert not any(n.split("/")[0] in {"config", "tests", "bench"} for n in names), sorted(names)
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
    if top_level:
        tops = set(zipfile.ZipFile(installed["wheel"]).read(top_level).decode().split())
        assert tops <= set(PACKAGES), tops
    # Every package of the source tree made it (setup.cfg lists them by hand).
    for pkg in PACKAGES:
        for init in (ROOT / pkg).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                assert init.relative_to(ROOT).as_posix() in names, \
                    f"{init} is not in the wheel: add its package to setup.cfg"
    # The sdist carries config/ too, or a wheel built from it (as pip does) would lack the defaults.
    with tarfile.open(installed["sdist"]) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    assert "config/clout.toml" in members
    for name in DEMO_FILES:
        assert f"config/demo/{name}" in members


def test_installed_package_is_the_wheel_and_finds_its_defaults(installed):
    python = installed["venv"] / "bin" / "python"
    code = """
import importlib.metadata as md, json
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
import plugin, plugin.bundled, plugin.settings
dist = md.distribution("clout")
unmet = []
for line in dist.requires or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        unmet.append(line)
        continue
    if not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{line} (installed: {have})")
settings = plugin.settings.load_settings({"CLOUT_DATA_DIR": "data"})
print(json.dumps({"plugin": plugin.__file__, "config_dir": str(plugin.bundled.config_dir()),
                  "settings_config_dir": str(settings.config_dir),
                  "dist": str(dist.locate_file("")), "requires": dist.requires, "unmet": unmet}))
"""
    env = _env(installed["venv"], installed["tmp"] / "data-import")
    proc = _run([str(python), "-c", code], timeout=120, env=env, cwd=installed["cwd"])
    info = json.loads(proc.stdout)
    venv = installed["venv"].resolve()
    assert venv in Path(info["plugin"]).resolve().parents, info
    assert venv in Path(info["dist"]).resolve().parents, info
    assert Path(info["config_dir"]) == Path(info["plugin"]).resolve().parent / "defaults", info
    assert venv in Path(info["settings_config_dir"]).resolve().parents, info
    requires = [r.replace(" ", "") for r in info["requires"]]
    assert any(r.startswith("gunicorn>=") for r in requires), requires
    assert not info["unmet"], info["unmet"]


@pytest.mark.timeout(300)
def test_clout_demo_runs_from_the_wheel(installed):
    data = installed["tmp"] / "data-demo"
    try:
        proc = subprocess.run([str(installed["venv"] / "bin" / "clout"), "demo", "--port", "0"],
                              env=_env(installed["venv"], data), cwd=installed["cwd"],
                              capture_output=True, text=True, timeout=240)
    finally:
        _kill_leftover_redis(data)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Decided" in proc.stdout


@pytest.mark.timeout(180)
def test_clout_run_serves_from_the_wheel(installed):
    data = installed["tmp"] / "data-run"
    proc = subprocess.Popen([str(installed["venv"] / "bin" / "clout"), "run", "--port", "0"],
                            env=_env(installed["venv"], data), cwd=installed["cwd"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = _Lines(proc.stdout)
    try:
        port = lines.wait_for(r"Clout is up on http://127\.0\.0\.1:(\d+)", timeout=90).group(1)
        assert _healthz(f"http://127.0.0.1:{port}", proc, lines).status_code == 200
    finally:
        code = _stop(proc)
        _kill_leftover_redis(data)
    assert code == 0, lines.tail()


@pytest.mark.timeout(180)
def test_gunicorn_serves_create_app_from_the_wheel(installed):
    data = installed["tmp"] / "data-gunicorn"
    env = _env(installed["venv"], data)
    # Newer gunicorns put a control socket under ~/.gunicorn: one per test run, not one shared.
    env["HOME"] = str(installed["tmp"] / "home")
    # `python -m gunicorn`: the gunicorn of the fresh venv's interpreter, whatever PATH says.
    proc = subprocess.Popen([str(installed["venv"] / "bin" / "python"), "-m", "gunicorn",
                             "--bind", "127.0.0.1:0", "--workers", "1", "--graceful-timeout", "5",
                             "plugin:create_app()"],
                            env=env, cwd=installed["cwd"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = _Lines(proc.stdout)
    try:
        port = lines.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", timeout=60).group(1)
        resp = _healthz(f"http://127.0.0.1:{port}", proc, lines)
        assert resp.status_code == 200, resp.text
    finally:
        code = _stop(proc)
        _kill_leftover_redis(data)
    assert code == 0, lines.tail()
