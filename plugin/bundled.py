"""Where the bundled defaults (`clout.toml`, demo data) live, in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path


class BundledDefaultsMissing(RuntimeError):
    """The package was installed without its data files."""


def config_dir() -> Path:
    """The folder holding the bundled `clout.toml` and `demo/`."""
    installed = Path(__file__).resolve().parent / "defaults"
    checkout = Path(__file__).resolve().parent.parent / "config"
    for candidate in (installed, checkout):
        if (candidate / "clout.toml").is_file():
            return candidate
    raise BundledDefaultsMissing(
        f"Clout's bundled defaults are missing (looked for clout.toml in {installed} and "
        f"{checkout}); the installation is incomplete: reinstall the clout package")
