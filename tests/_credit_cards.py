"""A synthetic credit-card customer table with UPPER_CASE column names, like the
public credit-card segmentation tables, with four planted segments.

The planted "cash advance" segment draws about twice the population's mean cash
advance and buys little (most of its customers buy nothing): in the log space the
clustering works in, its purchases lie further from the population's than its cash
advances, so a name taken there speaks of low purchases; in the user's units its
cash advance is what sets it apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The planted segments, in the order of the returned labels.
SEGMENTS = ("cash advance", "instalments", "big spenders", "quiet")
CASH_ADVANCE_SEGMENT = 0


def credit_card_table(n_rows: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """The table (``CUST_ID`` then nine numeric columns) and each row's planted segment."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(len(SEGMENTS), size=n_rows, p=[0.25, 0.30, 0.15, 0.30])

    def by_segment(*values):
        return np.select([segment == s for s in range(len(SEGMENTS))], list(values))

    def lognormal(median, spread):
        return median * np.exp(rng.normal(0, spread, n_rows))

    purchases = by_segment(lognormal(120, 1.0), lognormal(900, 0.5), lognormal(4000, 0.5), lognormal(300, 0.8))
    buys_nothing = (segment == CASH_ADVANCE_SEGMENT) & (rng.random(n_rows) < 0.6)
    purchases[buys_nothing] = 0
    cash = by_segment(lognormal(1600, 0.6), lognormal(500, 1.0), lognormal(500, 1.0), lognormal(600, 1.0))
    cash[(segment != CASH_ADVANCE_SEGMENT) & (rng.random(n_rows) < 0.4)] = 0
    instalments = purchases * by_segment(0.2, 0.8, 0.3, 0.3)
    transactions = rng.poisson(by_segment(1, 20, 40, 5))
    transactions[buys_nothing] = 0
    table = pd.DataFrame({
        "CUST_ID": [f"C{10000 + i}" for i in range(n_rows)],
        "BALANCE": (by_segment(1500, 1000, 1500, 900) * np.exp(rng.normal(0, 0.6, n_rows))).round(2),
        "PURCHASES": purchases.round(2),
        "ONEOFF_PURCHASES": (purchases - instalments).round(2),
        "INSTALLMENTS_PURCHASES": instalments.round(2),
        "CASH_ADVANCE": cash.round(2),
        "PURCHASES_FREQUENCY": np.clip(by_segment(0.1, 0.8, 0.9, 0.35) + rng.normal(0, 0.1, n_rows), 0, 1).round(3),
        "PURCHASES_INSTALLMENTS_FREQUENCY": np.clip(
            by_segment(0.05, 0.8, 0.3, 0.2) + rng.normal(0, 0.1, n_rows), 0, 1).round(3),
        "PURCHASES_TRX": transactions,
        "CREDIT_LIMIT": (by_segment(4500, 4000, 11000, 3500) * np.exp(rng.normal(0, 0.3, n_rows))).round(0),
    })
    return table, segment
