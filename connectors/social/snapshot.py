"""Influence from a bundled JSON snapshot of real API responses.

The embedded default needs no credentials and no network: `config/demo/
social_snapshot.json` holds, per network and handle, the same response
bodies the live APIs return, and each is read by that network's own parser.
So the demo and tests exercise exactly the code production uses.

File layout::

    {"version": 1, "captured_at": "<ISO 8601>",
     "networks": {"x": {"<handle>": <bundle>}, "bluesky": {...}, ...}}

Recent activity is measured relative to `captured_at` unless the caller
passes `now`: a snapshot is a picture of one moment, and measuring its
post dates against today's clock would let the demo decay to "inactive"
as the calendar moves on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.social import PARSERS, as_mapping, as_time, register
from connectors.social.base import NetworkMetrics
from webhooks.event import SOCIAL_NETWORKS

SUPPORTED_VERSION = 1


def normalise_handle(network: str, handle: str) -> str:
    """The lookup key for a handle: case-folded, without decoration.

    People type "@farahtech", "FarahTech", "u/gus_lima" or "@chen@host"; all
    networks here treat handles case-insensitively, and none starts with "@".
    """
    key = handle.strip().casefold()
    if network == "reddit":
        for prefix in ("/u/", "u/", "/user/", "user/"):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
    return key.lstrip("@")


class SnapshotSource:
    """`InfluenceSource` backed by a snapshot file, loaded once on first use."""

    name = "snapshot"

    def __init__(self, path: str | Path, now: datetime | None = None) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.Lock()
        self._index: dict[str, dict[str, Mapping[str, Any]]] | None = None
        self._captured_at: datetime | None = None

    def networks(self) -> tuple[str, ...]:
        """Networks with at least a section in the file, in canonical order."""
        index = self._load()
        return tuple(n for n in SOCIAL_NETWORKS if n in index)

    @property
    def captured_at(self) -> datetime | None:
        """When the snapshot was taken, per the file (None if it doesn't say)."""
        self._load()
        return self._captured_at

    def fetch_metrics(self, network: str, handles: Sequence[str]) -> dict[str, NetworkMetrics]:
        """Metrics for the handles in the snapshot, keyed by the handle as given."""
        if network not in SOCIAL_NETWORKS or network not in PARSERS:
            raise ValueError(
                f"unknown social network {network!r}; expected one of {', '.join(SOCIAL_NETWORKS)}"
            )
        bundles = self._load().get(network, {})
        parse = PARSERS[network]
        now = self._now or self._captured_at
        found: dict[str, NetworkMetrics] = {}
        for handle in handles:
            if not isinstance(handle, str):
                continue
            bundle = bundles.get(normalise_handle(network, handle))
            if bundle is not None:
                found[handle] = parse(bundle, now=now)
        return found

    def _load(self) -> dict[str, dict[str, Mapping[str, Any]]]:
        if self._index is not None:
            return self._index
        with self._lock:
            if self._index is None:
                try:
                    document = json.loads(self.path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}: not valid JSON ({exc})") from None
                index, self._captured_at = _index(document, self.path)
                self._index = index  # last: readers outside the lock test this
        return self._index


@register("snapshot")
def from_options(
    *,
    snapshot_path: str | Path | None = None,
    path: str | Path | None = None,
    now: datetime | None = None,
    **_other_sources_options: Any,
) -> SnapshotSource:
    """Registry factory: the runtime hands every source the same options."""
    chosen = path if path is not None else snapshot_path
    if chosen is None:
        raise ValueError("influence source 'snapshot' needs snapshot_path (the bundled JSON file)")
    return SnapshotSource(chosen, now=now)


def _index(
    document: Any, path: Path
) -> tuple[dict[str, dict[str, Mapping[str, Any]]], datetime | None]:
    if not isinstance(document, Mapping) or document.get("version") != SUPPORTED_VERSION:
        raise ValueError(
            f"{path}: not a version {SUPPORTED_VERSION} influence snapshot "
            '(expected {"version": 1, "networks": {...}})'
        )
    index: dict[str, dict[str, Mapping[str, Any]]] = {}
    for network, bundles in as_mapping(document.get("networks")).items():
        if network not in SOCIAL_NETWORKS:
            continue  # a newer file may carry networks this version can't parse
        index[network] = {
            normalise_handle(network, handle): bundle
            for handle, bundle in as_mapping(bundles).items()
            if isinstance(handle, str) and isinstance(bundle, Mapping)
        }
    return index, as_time(document.get("captured_at"))
