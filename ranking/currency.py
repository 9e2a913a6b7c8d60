"""Spend in one currency, so a ¥20,000 customer is not ranked as a $20,000 one.

Rates come from settings (`ranking.currency.rates`: one unit of each currency in
the base currency); they move slowly next to the spend percentiles they feed,
and keeping them in config means no network call and a reproducible ranking.
A currency without a rate is not guessed: that customer is ranked without
spend, and the caller says so in the reason.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def to_base(spend: Sequence[float | None], currency: Sequence[str | None],
            rates: Mapping[str, float], base: str) -> tuple[np.ndarray, np.ndarray]:
    """(spend in `base`, mask of rows whose currency has no rate).

    A missing currency means `base`; an unknown one gives NaN spend and a True mask.
    """
    amounts = np.asarray([np.nan if v is None else v for v in spend], dtype=float)
    codes = np.asarray([(c or base).upper() for c in currency], dtype=object)
    table = {k.upper(): float(v) for k, v in rates.items()}
    table.setdefault(base.upper(), 1.0)
    factor = np.asarray([table.get(c, np.nan) for c in codes], dtype=float)
    unknown = np.isnan(factor) & ~np.isnan(amounts)
    return amounts * factor, unknown


def no_rate_notes(currency: Sequence[str | None], unknown: Sequence[bool]) -> list[str]:
    """The reason note for rows whose currency has no rate (else "")."""
    return [f"spend not ranked: no rate for {c}" if u else "" for c, u in zip(currency, unknown)]


def join_notes(*columns: Sequence[str]) -> list[str]:
    """Row-wise "; "-join of the non-empty notes of several columns."""
    return ["; ".join(n for n in row if n) for row in zip(*columns)]
