"""Choosing k: the gap statistic beside the sweep's scores, and the rule that weighs them all.

The sweep's table holds, per k, the inertia (whose knee Kneedle finds), the silhouette
and the Calinski-Harabasz and Davies-Bouldin indices (:mod:`gpukmeans.metrics`). This
module adds the gap statistic and :func:`recommend`.

**The gap statistic** (Tibshirani, Walther and Hastie, 2001) compares ``log W_k``, the
log of the within-cluster sum of squares, with its mean over uniform reference tables in
the rows' principal box (:func:`gpukmeans._structure.uniform_references`):
``gap(k) = mean(log W*_k) - log W_k``, with ``gap_sd(k)`` the references' standard
deviation times ``sqrt(1 + 1/B)``. It works on a sample of rows (:func:`criteria_sample`,
drawn by weight, independent of chunking and ranks); the sample and the references are
fitted the same way (:func:`gpukmeans.engine.batched.batched_kmeans`), so the
shortfall of their fits cancels.

**The rule** (:func:`recommend`). Each criterion names its k:

- the silhouette: its best (of sampled silhouettes whose intervals reach the best one's
  lower end, the smallest k);
- Calinski-Harabasz: the smallest k within ``CH_TOLERANCE`` of its best;
- the gap statistic: the smallest k within one standard error of its best (the
  "global SE max" rule of Dudoit and Fridlyand, 2002);
- the knee of the inertia curve (Kneedle).

The k most criteria name wins; a tie goes to the better silhouette (without one, to the
knee, else the smaller k). The reason names every criterion's k.

Why: on a panel of tables with a planted number of clusters (benchmarks/bench_k_choice.py)
the silhouette alone merges clusters that lie close together, where Calinski-Harabasz and
the gap statistic find them; on customer tables, whose curves are flat past a few
clusters, Calinski-Harabasz and the gap statistic drift to large k, where the silhouette
and the knee do not. No criterion decides alone, so neither the randomness of the gap's
references nor the silhouette's sampling decides alone either: on Mall's customers the
choice is the same for every seed. Calinski-Harabasz and the knee are exact given the fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ._structure import principal_box, uniform_references
from .engine.batched import batched_kmeans
from .engine.initialisation import random_rows_init

__all__ = ["CH_TOLERANCE", "CRITERIA", "CRITERIA_ROWS", "GAP_REFERENCES", "Gap", "criteria", "criteria_sample",
           "gap_statistic", "recommend"]

#: Calinski-Harabasz names the smallest k within this fraction of its best.
CH_TOLERANCE = 0.05

#: Rows of the sample the gap statistic and the structure verdict work on.
CRITERIA_ROWS = 1000

#: Uniform reference tables of the gap statistic, and the restarts of every fit.
GAP_REFERENCES = 10
GAP_RESTARTS = 2


def criteria_sample(source, n_rows: int, seed: int) -> np.ndarray:
    """(m, d) float64 on the host: ``min(n_rows, rows of positive weight)`` distinct rows
    of ``source``, drawn with probability by weight, the same on every holder of rows."""
    present = source.n_samples if source.sample_weight is None else int((source.sample_weight > 0).sum())
    total = int(source.reduce_sum(torch.tensor([present], dtype=torch.int64, device=source.device)))
    rows, indices = random_rows_init(source, min(n_rows, total), seed)
    # in the table's order: a table no larger than the sample is then the sample, whatever the seed
    return rows[torch.argsort(indices).to(rows.device)].double().cpu().numpy()


@dataclass
class Gap:
    """The gap statistic for each k of ``ks``: ``gap`` and ``sd`` (NaN where not computed)."""

    ks: list
    gap: np.ndarray
    sd: np.ndarray

    def of(self, k) -> tuple[float, float]:
        i = self.ks.index(k)
        return float(self.gap[i]), float(self.sd[i])


def gap_statistic(sample: np.ndarray, ks, *, seed: int) -> Gap:
    """The gap statistic of ``sample`` ((m, d) float64) for every k of ``ks`` below m."""
    ks = [int(k) for k in ks]
    fitted = [k for k in ks if k < sample.shape[0]]
    gap = np.full(len(ks), np.nan)
    sd = np.full(len(ks), np.nan)
    if not fitted:
        return Gap(ks, gap, sd)
    rng = np.random.default_rng(seed)
    turned, _, _ = principal_box(sample)
    tables = np.concatenate([turned[None], uniform_references(sample, GAP_REFERENCES, rng)])
    fits = batched_kmeans(tables, fitted, restarts=GAP_RESTARTS, seed=int(rng.integers(2**63)))
    with np.errstate(divide="ignore"):
        log_w = np.log(fits.inertia.numpy())
    positions = [ks.index(k) for k in fitted]
    with np.errstate(invalid="ignore"):
        gap[positions] = log_w[1:].mean(axis=0) - log_w[0]
        sd[positions] = log_w[1:].std(axis=0) * math.sqrt(1 + 1 / GAP_REFERENCES)
    gap[~np.isfinite(gap)] = np.nan
    return Gap(ks, gap, sd)


# ------------------------------------------------------------------- the rule

#: The criteria, in the order a reason names them.
CRITERIA = ("silhouette", "calinski_harabasz", "gap", "knee")
_NAMES = {"silhouette": "the silhouette", "calinski_harabasz": "Calinski-Harabasz", "gap": "the gap statistic",
          "knee": "the inertia knee"}


def criteria(table: pd.DataFrame, knee_k) -> dict:
    """Each criterion's choice of k for a sweep's ``table`` (criteria without one are left out):

    - ``"silhouette"``: the best silhouette; of sampled silhouettes whose intervals reach
      the best one's lower end, the smallest k;
    - ``"calinski_harabasz"``: the smallest k within ``CH_TOLERANCE`` of its best;
    - ``"gap"``: the smallest k within one standard error of the best gap;
    - ``"knee"``: the knee of the inertia curve.
    """
    ks = table["k"].to_numpy()
    picks = {}
    silhouette = table["silhouette"].to_numpy(dtype=float)
    if np.isfinite(silhouette).any():
        best = int(np.nanargmax(silhouette))
        low = table["silhouette_low"].to_numpy(dtype=float)[best]
        tied = [k for k, high in zip(ks, table["silhouette_high"].to_numpy(dtype=float)) if high >= low]
        picks["silhouette"] = int(min(tied))
    ch = table["calinski_harabasz"].to_numpy(dtype=float)
    if np.isfinite(ch).any():
        picks["calinski_harabasz"] = int(min(k for k, v in zip(ks, ch) if v >= (1 - CH_TOLERANCE) * np.nanmax(ch)))
    gap = table["gap"].to_numpy(dtype=float) if "gap" in table else np.full(len(ks), np.nan)
    if np.isfinite(gap).any():
        best = int(np.nanargmax(gap))
        floor = gap[best] - table["gap_sd"].to_numpy(dtype=float)[best]
        picks["gap"] = int(min(k for k, v in zip(ks, gap) if v >= floor))
    if knee_k is not None:
        picks["knee"] = int(knee_k)
    return picks


def recommend(table: pd.DataFrame, knee_k, method: str) -> tuple[int, str]:
    """The recommended k of a sweep's ``table`` and a one-line reason naming every criterion
    (see the module's docstring for the rule)."""
    picks = criteria(table, knee_k)
    if not picks:
        chosen = int(table["k"].min())
        return chosen, f"k={chosen}: nothing to choose by (too few k or too few rows); the smallest k."
    votes = {}
    for name in CRITERIA:
        if name in picks:
            votes.setdefault(picks[name], []).append(name)
    most = max(len(names) for names in votes.values())
    tied = sorted(k for k, names in votes.items() if len(names) == most)
    silhouette = table.set_index("k")["silhouette"]
    if len(tied) == 1:
        chosen, decided_by = tied[0], None
    elif silhouette.loc[tied].notna().any():
        chosen, decided_by = int(silhouette.loc[tied].idxmax()), "the better silhouette"
    elif knee_k in tied:
        chosen, decided_by = int(knee_k), "the knee"
    else:
        chosen, decided_by = tied[0], "the smaller k"
    return chosen, f"k={chosen}: {_reason(picks, votes, chosen, tied, decided_by, table, method)}."


def _reason(picks, votes, chosen, tied, decided_by, table, method) -> str:
    names = dict(_NAMES, silhouette="the simplified silhouette" if method == "simplified" else "the silhouette")
    row = table.set_index("k").loc[chosen]
    words = f"chosen by {_listed(names[n] for n in votes[chosen])}"
    if len(votes[chosen]) == len(picks) > 1:
        words = f"chosen by every criterion ({_listed(names[n] for n in votes[chosen])})"
    if np.isfinite(row["silhouette"]):
        words += f"; silhouette {row['silhouette']:.3f}"
        if method == "sampled":
            words += f" [{row['silhouette_low']:.3f}, {row['silhouette_high']:.3f}]"
    if decided_by is not None:
        others = [f"k={k} ({_listed(names[n] for n in votes[k])})" for k in tied if k != chosen]
        words += f"; as many choose {_listed(others)}, and {decided_by} decides"
    elsewhere = [f"{names[n]} k={picks[n]}" for n in CRITERIA
                 if n in picks and picks[n] != chosen and picks[n] not in tied]
    if elsewhere:
        elsewhere[0] = elsewhere[0].replace(" k=", " prefers k=")
        words += f"; {_listed(elsewhere)}"
    if "silhouette" not in picks:
        words += "; no silhouette was computed"
    return words


def _listed(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
