"""Influence for a batch of customers: cached scores, cached profiles, one lookup per handle.

Two caches in Redis, both for `influence.cache_ttl_seconds`:

- a customer's computed score (keyed by the model version and a hash of the
  customer's handles, so a new handle rescores at once);
- each looked-up profile, per (network, normalised handle): many customers or
  tickets sharing a handle cost one lookup, and so does a rescore after a
  weights or model change. A handle the network says doesn't exist (or that is
  invalid) is remembered for `influence.not_found_ttl_seconds`; a failure that
  may pass (timeout, 429, 5xx) is not remembered, so the next batch tries again.

Single flight: a worker that needs a missing profile takes a short Redis lock
for it (SET NX). Other workers needing the same profile wait for the first
one's answer instead of asking the network too; if it doesn't come in time they
go without it for this batch.

Customers who opted out of profiling (`clout optout`, `POST /api/customers/<id>/opt-out`)
cost no lookups and are ranked without influence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from collections import defaultdict
from typing import Any, Iterable, Sequence

import redis

from connectors.crm.base import Customer
from connectors.social.base import InfluenceSource, NetworkMetrics
from ranking.influence import MODEL_VERSION, metrics_frame, score_influence

from . import jsontext

log = logging.getLogger(__name__)
NO_INFLUENCE = 1.0
LOCK_SECONDS = 30  # a lookup holding a profile's lock longer than this is presumed dead
WAIT_SECONDS = 5.0  # how long another worker's lookup of the same profile is waited for

try:  # the live clients' failure type (absent in older connector versions)
    from connectors.social.base import LookupFailure
except ImportError:  # pragma: no cover
    @dataclasses.dataclass(frozen=True)
    class LookupFailure:  # type: ignore[no-redef]
        reason: str
        retryable: bool = True


def normalise(network: str, handle: str) -> str:
    """The handle as the network knows it; raises ValueError (with why) when it can't be one."""
    try:
        from connectors.social.handles import normalise as strict
    except ImportError:  # pragma: no cover
        return handle.strip().lstrip("@").lower()
    return strict(network, handle)


def _customer_key(prefix: str, customer: Customer) -> str:
    handles = json.dumps(sorted((k, v.lower()) for k, v in customer.handles.items()))
    digest = hashlib.sha1(handles.encode()).hexdigest()[:16]
    return f"{prefix}:{MODEL_VERSION}:{customer.id}:{digest}"


def _profile_key(prefix: str, network: str, handle: str) -> str:
    # Hashed: a handle is a customer's data, and Redis key names show up in every tool.
    digest = hashlib.sha256(f"{network}:{handle.lower()}".encode()).hexdigest()[:24]
    return f"{prefix}:profile:{network}:{digest}"


def _encode(found: NetworkMetrics | LookupFailure) -> str:
    if isinstance(found, NetworkMetrics):
        counts = {k: v for k, v in dataclasses.asdict(found).items() if k != "handle"}
        return json.dumps({"metrics": counts, "at": time.time()})
    return json.dumps({"failure": found.reason, "at": time.time()})


def _decode(raw: bytes | str, handle: str) -> NetworkMetrics | LookupFailure | None:
    try:
        data = json.loads(raw)
        if "metrics" in data:
            known = {f.name for f in dataclasses.fields(NetworkMetrics)} - {"handle"}
            return NetworkMetrics(handle=handle,
                                  **{k: v for k, v in data["metrics"].items() if k in known})
        return LookupFailure(str(data["failure"]), retryable=False)
    except (ValueError, TypeError, KeyError):
        return None  # an entry from another version: look it up again


def fetch_profiles(source: InfluenceSource, cache: redis.Redis, prefix: str,
                   wanted: Iterable[tuple[str, str]], *, ttl: int, not_found_ttl: int,
                   refresh: bool = False) -> dict[tuple[str, str], NetworkMetrics | LookupFailure]:
    """(network, handle) -> its profile or why there is none, asking each network at most
    once per handle across all workers (cache, then single flight, then one batch call)."""
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    out: dict[tuple[str, str], NetworkMetrics | LookupFailure] = {}
    keys = [_profile_key(prefix, n, h) for n, h in wanted]
    if ttl > 0 and not refresh:
        for k, raw in zip(wanted, cache.mget(keys), strict=True):
            found = _decode(raw, k[1]) if raw else None
            if found is not None:
                out[k] = found
    missing = [k for k in wanted if k not in out]
    if not missing:
        return out
    pipe = cache.pipeline(transaction=False)
    for n, h in missing:
        pipe.set(_profile_key(prefix, n, h) + ":lock", "1", nx=True, ex=LOCK_SECONDS)
    claimed = pipe.execute()
    mine = [k for k, ok in zip(missing, claimed, strict=True) if ok]
    theirs = [k for k, ok in zip(missing, claimed, strict=True) if not ok]
    try:
        by_network: dict[str, list[str]] = defaultdict(list)
        for n, h in mine:
            by_network[n].append(h)
        supported = set(source.networks())
        pipe = cache.pipeline(transaction=False)
        for network, handles in sorted(by_network.items()):
            if network not in supported:
                found_here: dict[str, Any] = {h: LookupFailure("network not supported by this source",
                                                               retryable=False) for h in handles}
            else:
                found_here = source.fetch_metrics(network, handles)
            for h in handles:
                found = found_here.get(h) or LookupFailure("not found", retryable=False)
                out[(network, h)] = found
                key = _profile_key(prefix, network, h)
                if isinstance(found, NetworkMetrics) and ttl > 0:
                    pipe.set(key, _encode(found), ex=ttl)
                elif isinstance(found, LookupFailure) and not found.retryable and not_found_ttl > 0:
                    pipe.set(key, _encode(found), ex=not_found_ttl)
        pipe.execute()
    finally:
        if mine:
            cache.delete(*[_profile_key(prefix, n, h) + ":lock" for n, h in mine])
    # Someone else is asking for these right now: wait for their answer, don't ask again.
    deadline = time.monotonic() + WAIT_SECONDS
    while theirs:
        raws = cache.mget([_profile_key(prefix, n, h) for n, h in theirs])
        still = []
        for k, raw in zip(theirs, raws, strict=True):
            found = _decode(raw, k[1]) if raw else None
            if found is not None:
                out[k] = found
            else:
                still.append(k)
        theirs = still
        if not theirs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for k in theirs:  # the other lookup failed or is slow: without it this time
        out[k] = LookupFailure("looked up by another worker; no answer yet", retryable=True)
    return out


def lookup_influence(customers: Sequence[Customer], *, source: InfluenceSource,
                     cache: redis.Redis, store: Any, ttl: int,
                     prefix: str = "clout:influence", not_found_ttl: int = 3600,
                     refresh: bool = False) -> dict[str, dict[str, Any]]:
    """customer id -> {"score", "raw", "explanation", "cached"} for customers with handles
    who have not opted out. `refresh`: ignore both caches (the scheduled refresh)."""
    with_handles = [c for c in customers if c.handles]
    opted_out = store.opted_out([c.id for c in with_handles]) if with_handles else set()
    with_handles = [c for c in with_handles if c.id not in opted_out]
    if not with_handles:
        return {}
    keys = [_customer_key(prefix, c) for c in with_handles]
    cached_values = cache.mget(keys) if ttl > 0 and not refresh else [None] * len(keys)
    result: dict[str, dict[str, Any]] = {}
    misses: list[Customer] = []
    for customer, raw in zip(with_handles, cached_values, strict=True):
        if raw:
            entry = jsontext.loads(raw)
            entry["cached"] = True
            result[customer.id] = entry
        else:
            misses.append(customer)
    if not misses:
        return result

    # Each customer's handles, normalised; an invalid one is noted and costs nothing.
    asked: dict[str, list[tuple[str, str]]] = {}
    problems: dict[str, dict[str, str]] = defaultdict(dict)
    for customer in misses:
        asked[customer.id] = []
        for network, handle in sorted(customer.handles.items()):
            if not handle:
                continue
            try:
                asked[customer.id].append((network, normalise(network, handle)))
            except ValueError as exc:
                problems[customer.id][network] = f"invalid handle: {exc}"
    profiles = fetch_profiles(source, cache, prefix, [k for ks in asked.values() for k in ks],
                              ttl=ttl, not_found_ttl=not_found_ttl, refresh=refresh)
    pairs: list[tuple[str, NetworkMetrics]] = []
    retry_soon: set[str] = set()
    for customer_id, ks in asked.items():
        for k in ks:
            found = profiles.get(k)
            if isinstance(found, NetworkMetrics):
                pairs.append((customer_id, found))
            elif found is not None:
                problems[customer_id][k[0]] = found.reason
                if found.retryable:
                    retry_soon.add(customer_id)

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
        if problems.get(customer.id):
            entry["explanation"] = {**entry["explanation"], "lookups": problems[customer.id]}
        entry["model_version"] = MODEL_VERSION
        history.append({"customer_id": customer.id, "computed_at": now, **entry})
        if ttl > 0:
            # A score missing a network that may come back soon is kept briefly only.
            life = min(ttl, 300) if customer.id in retry_soon else ttl
            pipe.set(_customer_key(prefix, customer), jsontext.dumps(entry), ex=life)
        result[customer.id] = {**entry, "cached": False}
    store.record_influence(history)
    pipe.execute()
    return result


def refresh_influence(rt: Any, *, older_than: dt.timedelta, batch: int = 200,
                      progress: Any = None) -> dict[str, int]:
    """Look the customers with open tickets whose score is older than `older_than` up again."""
    settings = rt.settings
    cfg = settings.config.influence
    ids = rt.store.stale_influence(dt.datetime.now(dt.timezone.utc) - older_than)
    done = 0
    for i in range(0, len(ids), batch):
        customers = rt.store.get_customers(ids[i:i + batch])
        lookup_influence(list(customers.values()), source=rt.influence, cache=rt.redis,
                         store=rt.store, ttl=cfg.cache_ttl_seconds, prefix=settings.redis_key("influence"),
                         not_found_ttl=cfg.not_found_ttl_seconds, refresh=True)
        done += len(customers)
        if progress is not None:
            progress(len(customers))
    if ids:
        log.info("refreshed the influence of %d customer(s) with open tickets", done)
    return {"stale": len(ids), "refreshed": done}
