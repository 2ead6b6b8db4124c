"""A realistic synthetic customer table with known segments, for the demo and the tests.

The table looks like a retailer's customer export: an ID, right-skewed money
columns with a few wild outliers, counts, a recency in days, a share between 0
and 1, a categorical sales channel that differs by segment, a region that does
not, and a few percent of missing values. Five segments are planted; the true
segment of every row is returned separately so that a run can be scored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .pipeline import SEGMENT_FILES

#: The planted segments: share of customers and the parameters of every column.
#: Money columns are log-normal (median, log-sd); orders are Poisson; recency is
#: exponential (mean days); online share is Beta(a, b); channel probabilities
#: are for (store, web, app).
SEGMENTS = {
    "Budget regulars": dict(
        share=0.30, age=(46, 11), income=(32_000, 0.25), spend=(900, 0.3), orders=20,
        recency=12, online=(2, 8), channel=(0.75, 0.2, 0.05),
    ),
    "Affluent loyalists": dict(
        share=0.15, age=(51, 8), income=(125_000, 0.25), spend=(11_000, 0.3), orders=34,
        recency=8, online=(4, 4), channel=(0.4, 0.4, 0.2),
    ),
    "Young digital": dict(
        share=0.25, age=(26, 3.5), income=(42_000, 0.25), spend=(2_200, 0.3), orders=16,
        recency=15, online=(12, 1.5), channel=(0.05, 0.25, 0.7),
    ),
    "Lapsed": dict(
        share=0.20, age=(41, 13), income=(50_000, 0.3), spend=(300, 0.4), orders=2,
        recency=240, online=(3, 3), channel=(0.45, 0.45, 0.1),
    ),
    "Big-ticket occasional": dict(
        share=0.10, age=(57, 8), income=(95_000, 0.25), spend=(7_000, 0.3), orders=3,
        recency=70, online=(3, 5), channel=(0.6, 0.35, 0.05),
    ),
}

CHANNELS = ("store", "web", "app")
REGIONS = ("North", "South", "East", "West")


def make_customers(n_rows: int = 10_000, *, random_state: int | None = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Generate a customer table with planted segments.

    Parameters
    ----------
    n_rows : int, default=10_000
    random_state : int or None, default=0

    Returns
    -------
    customers : pandas.DataFrame
        Columns ``customer_id``, ``Age``, ``Annual income``, ``Annual spend``,
        ``Orders per year``, ``Average basket``, ``Days since last order``,
        ``Online share``, ``Channel`` (store/web/app), ``Region`` (no signal).
    true_segment : ndarray of shape (n_rows,), int64
        Index into ``list(SEGMENTS)`` of each row's planted segment.

    Examples
    --------
    >>> from gpukmeans.segmentation.demo import make_customers
    >>> customers, truth = make_customers(1000, random_state=0)
    >>> customers.shape, truth.max()
    ((1000, 10), np.int64(4))
    """
    if n_rows < len(SEGMENTS):
        raise ValueError(f"n_rows must be at least {len(SEGMENTS)}, got {n_rows}")
    rng = np.random.default_rng(random_state)
    specs = list(SEGMENTS.values())
    truth = rng.choice(len(specs), size=n_rows, p=[s["share"] for s in specs])

    def per_segment(draw):
        out = np.empty(n_rows)
        for g, spec in enumerate(specs):
            rows = np.flatnonzero(truth == g)
            out[rows] = draw(spec, rows.size)
        return out

    age = per_segment(lambda s, n: rng.normal(*s["age"], n)).clip(18, 90).round()
    income = per_segment(lambda s, n: s["income"][0] * rng.lognormal(0, s["income"][1], n))
    spend = per_segment(lambda s, n: s["spend"][0] * rng.lognormal(0, s["spend"][1], n))
    orders = np.maximum(per_segment(lambda s, n: rng.poisson(s["orders"], n)), 1)
    recency = per_segment(lambda s, n: rng.exponential(s["recency"], n)).round() + 1
    online = per_segment(lambda s, n: rng.beta(*s["online"], n))
    channel_code = per_segment(lambda s, n: rng.choice(len(CHANNELS), n, p=s["channel"])).astype(int)

    # A handful of wild values, as in every real export: data-entry errors and
    # a few very large accounts.
    wild = rng.random(n_rows) < 0.003
    income[wild] *= rng.uniform(5, 20, wild.sum())
    spend[wild] *= rng.uniform(10, 50, wild.sum())

    customers = pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(1, n_rows + 1)],
            "Age": age,
            "Annual income": income.round(-2),
            "Annual spend": spend.round(2),
            "Orders per year": orders.astype(np.int64),
            "Average basket": (spend / orders).round(2),
            "Days since last order": recency.astype(np.int64),
            "Online share": online.round(3),
            "Channel": np.asarray(CHANNELS, dtype=object)[channel_code],
            "Region": np.asarray(REGIONS, dtype=object)[rng.integers(len(REGIONS), size=n_rows)],
        }
    )
    for column, rate in (("Annual income", 0.03), ("Age", 0.02), ("Online share", 0.01), ("Channel", 0.01)):
        customers.loc[rng.random(n_rows) < rate, column] = None
    return customers, truth.astype(np.int64)


#: The file in a demo folder that marks it as one, so that a rerun may replace it.
DEMO_MARKER = "demo.json"

#: Every file the demo writes into its folder: a folder holding nothing else is
#: an earlier demo.
DEMO_FILES = ("customers.csv", DEMO_MARKER, *(f"segments/{name}" for name in SEGMENT_FILES))


def run_demo(
    out: str | os.PathLike = "gpukmeans-demo",
    *,
    rows: int = 20_000,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    listener=None,
    command: str | None = None,
):
    """Generate :func:`make_customers`, write it, and segment it end to end.

    ``out`` receives ``customers.csv``, ``demo.json`` (the planted segments and how
    well they were found) and ``segments/`` (the output of
    :func:`~gpukmeans.segmentation.segment`: report, profiles, model...). A
    folder left by an earlier demo is replaced; a folder holding only files the
    demo writes needs ``force``; any other non-empty folder is never replaced.

    Returns
    -------
    SegmentationResult
        Its ``summary`` has a ``demo`` entry with the adjusted Rand index between
        the found and the planted segments; ``out`` is the ``segments`` folder.
    """
    from sklearn.metrics import adjusted_rand_score

    from .io import staged_output_dir, write_json, write_table
    from .pipeline import segment

    out = Path(out)
    if rows < 1_000:
        raise InputError(f"--rows must be at least 1000 for a meaningful demo, got {rows}")
    replace = force or (out / DEMO_MARKER).is_file()
    with staged_output_dir(out, force=replace, own_files=DEMO_FILES) as staging:
        customers, truth = make_customers(rows, random_state=seed)
        write_table(customers, staging / "customers.csv", "csv")
        result = segment(
            staging / "customers.csv",
            k_range=(2, 10),
            categorical=["Channel"],
            seed=seed,
            device=device,
            out=staging / "segments",
            listener=listener,
            command=command,
            source=str(out / "customers.csv"),
        )
        found = result.segments.set_index("customer_id")["segment"].reindex(customers["customer_id"])
        agreement = float(adjusted_rand_score(truth, found.to_numpy()))
        demo_facts = {
            "rows": rows,
            "seed": seed,
            "planted_segments": list(SEGMENTS),
            "adjusted_rand_index": agreement,
        }
        write_json(demo_facts, staging / DEMO_MARKER)
    result.summary["demo"] = demo_facts
    result.out = out / "segments"
    return result
