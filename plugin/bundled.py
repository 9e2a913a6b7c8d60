"""Where the bundled defaults (`clout.toml`, demo data) live, in a checkout or an installed wheel.

The repo keeps them in `config/` (admins edit them there). setup.cfg maps that
folder into the package as `plugin.defaults`, so a wheel or a plain
`pip install .` carries them as `plugin/defaults/clout.toml` and
`plugin/defaults/demo/*.json`. A checkout (PYTHONPATH=repo, or an editable
install, which points at the repo's `plugin/`) has no `plugin/defaults/` and
uses `<repo>/config/` directly.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_NAME = "clout.toml"


class BundledDefaultsMissing(RuntimeError):
    """The package was installed without its data files."""


def _candidates() -> list[Path]:
    installed = PACKAGE_DIR / "defaults"
    repo = PACKAGE_DIR.parent
    candidates = [installed]
    # `<parent>/config` only counts in a source checkout: in site-packages it would be
    # whatever some other distribution installed as a top-level `config`.
    if (repo / "setup.cfg").is_file() or (repo / "pyproject.toml").is_file():
        candidates.append(repo / "config")
    return candidates


def config_dir() -> Path:
    """The folder holding the bundled `clout.toml` and `demo/`."""
    candidates = _candidates()
    for candidate in candidates:
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    looked = " and ".join(str(c / CONFIG_NAME) for c in candidates)
    raise BundledDefaultsMissing(
        f"Clout's bundled defaults are missing (looked for {looked}); this is not about "
        "CLOUT_CONFIG: the clout package was installed without its data files. Reinstall it "
        "from a wheel or sdist built from the repo (pip install --force-reinstall clout), "
        "or run from a checkout")
