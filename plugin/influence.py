"""Influence for a batch of customers: Redis cache first, then the source, batched per network.

Scores move slowly (Klout rescored daily at most), so a computed score is
reused for `influence.cache_ttl_seconds`. The cache key includes a hash of the
customer's handles, so adding or changing a handle rescores at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections import defaultdict
from typing import Any, Sequence

import redis

from connectors.crm.base import Customer
from connectors.social.base import InfluenceSource, NetworkMetrics
from ranking.influence import MODEL_VERSION, metrics_frame, score_influence

log = logging.getLogger(__name__)
NO_INFLUENCE = 1.0


def _cache_key(prefix: str, customer: Customer) -> str:
    handles = json.dumps(sorted((k, v.lower()) for k, v in customer.handles.items()))
    digest = hashlib.sha1(handles.encode()).hexdigest()[:16]
    return f"{prefix}:{MODEL_VERSION}:{customer.id}:{digest}"


def lookup_influence(customers: Sequence[Customer], *, source: InfluenceSource,
                     cache: redis.Redis, store: Any, ttl: int,
                     prefix: str = "clout:influence") -> dict[str, dict[str, Any]]:
    """customer id -> {"score", "raw", "explanation", "cached"} for customers with handles."""
    with_handles = [c for c in customers if c.handles]
    if not with_handles:
        return {}
    keys = [_cache_key(prefix, c) for c in with_handles]
    cached_values = cache.mget(keys) if ttl > 0 else [None] * len(keys)
    result: dict[str, dict[str, Any]] = {}
    misses: list[Customer] = []
    for customer, raw in zip(with_handles, cached_values, strict=True):
        if raw:
            entry = json.loads(raw)
            entry["cached"] = True
            result[customer.id] = entry
        else:
            misses.append(customer)
    if not misses:
        return result

    # One lookup per network for the whole batch.
    wanted: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    supported = set(source.networks())
    for customer in misses:
        for network, handle in customer.handles.items():
            if network in supported and handle:
                wanted[network][handle].append(customer.id)
    pairs: list[tuple[str, NetworkMetrics]] = []
    for network, by_handle in wanted.items():
        found = source.fetch_metrics(network, list(by_handle))
        for handle, metrics in found.items():
            for customer_id in by_handle.get(handle, []):
                pairs.append((customer_id, metrics))

    scored = score_influence(metrics_frame(pairs)) if pairs else None
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    history: list[dict[str, Any]] = []
    pipe = cache.pipeline(transaction=False)
    for customer in misses:
        if scored is not None and customer.id in scored.index:
            row = scored.loc[customer.id]
            entry = {"score": float(row["influence"]), "raw": float(row["raw"]),
                     "explanation": row["explanation"]}
        else:
            entry = {"score": NO_INFLUENCE, "raw": 0.0,
                     "explanation": {"networks": [], "note": "no profile found for any handle"}}
        entry["model_version"] = MODEL_VERSION
        history.append({"customer_id": customer.id, "computed_at": now, **entry})
        if ttl > 0:
            pipe.set(_cache_key(prefix, customer), json.dumps(entry), ex=ttl)
        result[customer.id] = {**entry, "cached": False}
    store.record_influence(history)
    pipe.execute()
    return result
