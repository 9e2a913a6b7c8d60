"""The spend book summary: accurate percentiles, shared through Redis, refreshed on expiry."""

from __future__ import annotations

import numpy as np

from connectors.crm.base import Customer
from plugin.book import MAX_POINTS, spend_book, summarise
from ranking.priority import spend_percentile


def test_small_books_are_kept_exactly():
    values = np.array([30.0, 10.0, np.nan, 20.0])
    assert summarise(values).tolist() == [10.0, 20.0, 30.0]


def test_quantile_summary_is_within_a_tenth_of_a_point():
    rng = np.random.default_rng(7)
    book = np.round(rng.lognormal(4.0, 1.5, 200_000), 2)  # heavy-tailed, with ties
    table = summarise(book)
    assert len(table) == MAX_POINTS
    probe = np.round(rng.lognormal(4.0, 1.5, 5_000), 2)
    exact = spend_percentile(probe, book)
    approx = spend_percentile(probe, table)
    assert np.max(np.abs(exact - approx)) < 0.002


def test_small_books_are_read_fresh_every_time(runtime):
    store, cache = runtime.store, runtime.redis
    store.upsert_customers(Customer(id=f"K{i}", monthly_spend=float(i)) for i in range(1, 11))
    key = runtime.settings.redis_key("spend-book")
    assert spend_book(cache, store, key=key, ttl=60).tolist() == [float(i) for i in range(1, 11)]
    assert cache.get(key) is None
    store.upsert_customers([Customer(id="K-new", monthly_spend=999.0)])
    assert spend_book(cache, store, key=key, ttl=60)[-1] == 999.0


def test_big_books_are_cached_in_redis_until_they_expire(runtime):
    store, cache = runtime.store, runtime.redis
    store.upsert_customers(Customer(id=f"B{i}", monthly_spend=float(i)) for i in range(1, 3001))
    key = runtime.settings.redis_key("spend-book")
    first = spend_book(cache, store, key=key, ttl=60)
    assert len(first) == MAX_POINTS and first[-1] == 3000.0
    assert 0 < cache.ttl(key) <= 60
    store.upsert_customers([Customer(id="B-new", monthly_spend=99_999.0)])
    assert spend_book(cache, store, key=key, ttl=60).tolist() == first.tolist()  # cached
    cache.delete(key)
    assert spend_book(cache, store, key=key, ttl=60)[-1] == 99_999.0  # rebuilt after expiry
    assert spend_book(cache, store, key=key + ":nocache", ttl=0)[-1] == 99_999.0
