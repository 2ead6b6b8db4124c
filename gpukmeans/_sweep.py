"""Choosing k: fit every k in one pass over X per Lloyd iteration, score each, recommend one.

:func:`sweep` stacks the centres of all k (and all restarts) as groups of one
Lloyd run (:func:`gpukmeans.engine.lloyd.lloyd`): each row is read once per iteration
for all of them, each k takes its argmin within its own group, and a k that has
converged stops costing work. Every k is then started from its neighbours' solutions
too (:mod:`gpukmeans.engine.every_k`), so the inertia never rises with k. Per k, the
result is the fit that ``KMeans(n_clusters=k, init=<its starting centres>, n_init=1)``
would give.

The scores (silhouette exact / sampled / simplified, Calinski-Harabasz,
Davies-Bouldin) of all k also share their passes; see :mod:`gpukmeans.metrics`. The
gap statistic and the rule that recommends k are in :mod:`gpukmeans._k_choice`, the
verdict on the recommended k's structure in :mod:`gpukmeans._structure`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
from sklearn.utils import check_random_state

from . import _arrays
from ._kmeans import KMeans, fit_device
from .engine.initialisation import initial_centers
from ._k_choice import CRITERIA_ROWS, criteria, criteria_sample, gap_statistic, recommend
from ._structure import StructureVerdict, assess_structure
from .engine.every_k import fit_every_k
from .engine.uniforms import new_seed
from .metrics._exact import exact_silhouette_values
from .metrics._inputs import compact_labels
from .metrics._pairwise import default_block
from .metrics._sampled import SilhouetteEstimate, estimate_silhouettes, make_generator
from .metrics._scores import ch_db_many
from .metrics._simplified import _simplified_values
from .sources import RowsByIndex, conditioned_for_fit, is_path, open_source
from .sources.distributed import Exchange, active_group, join_ranks
from .sources.storage import resolve_storage_dtype

__all__ = ["SweepResult", "sweep"]

SILHOUETTE_MODES = ("auto", "exact", "sampled", "simplified", None)
# Restarts per k by default (n_init="auto", but for init="random": ten, as KMeans). With the
# runs started from neighbouring k's (engine/every_k.py), three keep every k within 1% of
# scikit-learn's best of ten (tests/estimators/test_sweep.py, benchmarks/bench_k_choice.py)
# for less than ten restarts alone cost (CHANGELOG.md: the sweep at 1M x 12).
SWEEP_RESTARTS = 3
# Above this many (rows x total clusters), exact silhouettes of a sweep are
# computed one k at a time (O(n k) memory) instead of sharing one pass.
_SHARED_EXACT_LIMIT = 20_000_000
TABLE_COLUMNS = [
    "k", "inertia", "silhouette", "silhouette_low", "silhouette_high",
    "calinski_harabasz", "davies_bouldin", "gap", "gap_sd", "n_iter", "seconds",
]


@dataclass
class SweepResult:
    """What :func:`sweep` found, one row per k.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``k, inertia, silhouette, silhouette_low, silhouette_high,
        calinski_harabasz, davies_bouldin, gap, gap_sd, n_iter, seconds``. For an
        exact or simplified silhouette, ``silhouette_low == silhouette_high ==
        silhouette``; without one they are NaN. ``gap`` and ``gap_sd`` are the gap
        statistic and its standard error on a sample of rows (see
        :mod:`gpukmeans._k_choice`). The inertia never rises with k. ``seconds`` is
        each k's share of the sweep's wall time (shared passes split by work:
        ``k * iterations`` of every run for Lloyd, ``k`` for the rest); the column
        sums to ``total_seconds``.
    models : dict[int, KMeans]
        A fitted :class:`gpukmeans.KMeans` per k (``cluster_centers_``,
        ``labels_``, ``inertia_``, ``n_iter_``; ``predict`` works).
    initial_centers : dict[int, ndarray]
        The starting centres of each k's kept run, to reproduce it alone: a
        restart's k-means++ draw, or the solution of a neighbouring k with a centre
        added or two merged.
    knee_k : int or None
        Knee of the inertia curve by Kneedle (``kneed``); None if there is none.
    best_k : dict[str, int or None]
        Best k by ``"silhouette"`` (max), ``"calinski_harabasz"`` (max),
        ``"davies_bouldin"`` (min), ``"knee"``, and ``"gap"`` (the smallest k
        within one standard error of the best gap).
    recommended_k : int
        The k most of four criteria name (the silhouette, Calinski-Harabasz, the
        gap statistic, the knee); a tie goes to the better silhouette (see
        :func:`gpukmeans._k_choice.recommend`).
    reason : str
        One line saying why, naming every criterion and where they disagree.
    structure : StructureVerdict
        How much structure the recommended k's clustering has (``"strong"``,
        ``"reasonable"``, ``"weak"`` or ``"none"``), with a plain sentence; see
        :func:`gpukmeans._structure.assess_structure`.
    silhouette_method : {"exact", "sampled", "simplified", "none"}
    silhouette_estimates : dict[int, SilhouetteEstimate]
        For exact and sampled silhouettes.
    silhouette_values : dict[int, tuple[ndarray, ndarray, ndarray]]
        Per k, ``(values, labels, rows)`` of the scored rows (all rows when
        exact, the stratified sample when sampled): their silhouettes, labels
        and row indices in X. The silhouette plot draws from these.
    total_seconds : float
    timings : dict[str, float]
        Wall seconds of the phases: ``"init"``, ``"lloyd"`` (every fit, with the
        runs started from neighbouring k's), ``"scores"``, ``"criteria"`` (the gap
        statistic and the structure verdict), ``"total"``.
    """

    table: pd.DataFrame
    models: dict
    initial_centers: dict
    knee_k: Optional[int]
    best_k: dict
    recommended_k: int
    reason: str
    silhouette_method: str
    silhouette_estimates: dict = field(default_factory=dict)
    silhouette_values: dict = field(default_factory=dict)
    total_seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    structure: Optional[StructureVerdict] = None

    def plot_elbow(self, path=None, *, title=None):
        """Inertia with the knee marked, silhouette on a second axis (a matplotlib Figure;
        a PNG at ``path`` if given). See :func:`gpukmeans.plots.plot_elbow`."""
        from .plots import plot_elbow

        return plot_elbow(self, path, title=title)

    def plot_silhouette(self, k=None, path=None, *, title=None):
        """Per-cluster silhouette plot for ``k`` (default: the recommended k)."""
        from .plots import plot_silhouette

        k = self.recommended_k if k is None else int(k)
        if k not in self.silhouette_values:
            raise ValueError(
                f"no per-row silhouettes for k={k}: the sweep ran with "
                f"silhouette={self.silhouette_method!r} (use 'exact' or 'sampled')"
            )
        values, labels, _ = self.silhouette_values[k]
        estimate = self.silhouette_estimates.get(k)
        if title is None:
            scope = (
                f"all {len(values):,} rows"
                if estimate is None or estimate.is_exact
                else f"stratified sample of {estimate.sample_size:,} of {estimate.n_samples:,} rows"
            )
            title = f"Silhouette by cluster, k={k} ({scope})"
        mean = None if estimate is None else estimate.value
        return plot_silhouette(values, labels, path=path, title=title, mean=mean)


def sweep(
    X: Any,
    k: Any = range(2, 16),
    *,
    sample_weight: Any = None,
    init: str = "k-means++",
    n_init: Any = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state: Any = None,
    silhouette: Optional[str] = "auto",
    sample_size: int = 10_000,
    confidence: float = 0.95,
    device: Any = "auto",
    chunk_size: Any = "auto",
    dtype: Any = None, columns: Any = None, distributed: bool = True,
    verbose: int = 0,
) -> SweepResult:
    """Fit k-means for every k in one pass per iteration and score each k.

    Parameters
    ----------
    X : array-like, DataFrame, torch tensor, CuPy array of shape (n_samples, n_features), or a path
        Everything :meth:`KMeans.fit <gpukmeans.KMeans.fit>` takes: a path to a Parquet
        file, a folder of Parquet files or a CSV file is streamed; under torch.distributed
        each rank passes its own rows (or the same path) and every rank gets the result.
    k : iterable of int, default=range(2, 16)
        The numbers of clusters to try (each between 1 and n_samples; scores
        need 2 <= k <= n_samples - 1 and are NaN otherwise).
    sample_weight : array-like of shape (n_samples,), optional
        Used by the fits, the inertia and Calinski-Harabasz / Davies-Bouldin
        (as frequency weights); the silhouette is unweighted.
    init : {"k-means++", "random", "k-means||"}, default="k-means++"
        For "k-means++" and "random", the starting centres of every k are the
        first k of one draw for the largest k (one greedy k-means++ run with
        ``2 + int(log k_max)`` candidates per step), so k's share that work.
        "k-means||" draws each k separately.
    n_init : "auto" or int, default="auto"
        Restarts per k (all run in the same passes). Every k is then also started
        from the best solution of the k before it plus a centre and of the k after it
        less one, in rounds, so the inertia never rises with k; the lowest inertia
        is kept. "auto" is 3, and 10 for "random".
    max_iter, tol : as in :class:`~gpukmeans.KMeans`.
    random_state : int, RandomState instance or None
    silhouette : {"auto", "exact", "sampled", "simplified", None}, default="auto"
        "exact" scores every row (O(n^2) work); "sampled" scores a stratified
        sample of ``sample_size`` rows with a ``confidence`` interval;
        "simplified" is the centroid-based index (O(n k d)); None skips it.
        "auto" is exact up to ``sample_size`` rows and sampled above.
    sample_size : int, default=10000
    confidence : float, default=0.95
    device : "auto", "cpu", "cuda" or torch.device
    chunk_size : "auto" or int
        Rows per pass chunk of the fits.
    dtype : None, "float32", "float64", "bfloat16" or "float16"
        The dtype the rows are stored in, as in :class:`~gpukmeans.KMeans`.
    columns : list of str, optional
        For a path only: the feature columns (default: every numeric column).
    distributed : bool, default=True
        Under torch.distributed with 2+ ranks, fit and score the table every rank's rows form.
    verbose : int, default=0

    Returns
    -------
    SweepResult
        ``.table``, ``.models``, ``.knee_k``, ``.best_k``, ``.recommended_k``,
        ``.reason``, ``.structure``, ``.plot_elbow()``, ``.plot_silhouette()``.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> import gpukmeans
    >>> X, _ = make_blobs(2000, 4, centers=4, random_state=0)
    >>> result = gpukmeans.sweep(X, k=range(2, 8), random_state=0, device="cpu")
    >>> result.recommended_k
    4
    >>> result.structure.structure
    'strong'
    >>> list(result.table.columns[:3])
    ['k', 'inertia', 'silhouette']
    """
    clock = time.perf_counter()
    ks = _validate_ks(k)
    if silhouette not in SILHOUETTE_MODES:
        raise ValueError(
            f"silhouette must be one of 'auto', 'exact', 'sampled', 'simplified' or None, "
            f"got {silhouette!r}"
        )
    if isinstance(sample_size, bool) or not isinstance(sample_size, Integral) or sample_size < 2:
        raise ValueError(f"sample_size must be an int >= 2, got {sample_size!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    if init not in ("k-means++", "random", "k-means||"):
        raise ValueError(f"init must be 'k-means++', 'random' or 'k-means||', got {init!r}")

    params = dict(n_clusters=max(ks), init=init, n_init=n_init, max_iter=max_iter, tol=tol,
                  random_state=random_state, device=device, chunk_size=chunk_size, verbose=verbose,
                  distributed=distributed, dtype=dtype)
    KMeans(**params)._validate_params()
    restarts = (10 if init == "random" else SWEEP_RESTARTS) if n_init == "auto" else int(n_init)
    storage = resolve_storage_dtype(dtype)
    group = active_group(distributed)
    exchange = None if group is None else Exchange(group)
    compute_device = fit_device(device, distributed=exchange is not None)

    # Every fit and every score works on the conditioned rows (see
    # gpukmeans.sources.conditioning); the scores are unchanged by a shift and a scaling.
    rank, world_size = (0, 1) if exchange is None else (exchange.rank, exchange.world_size)
    opened = open_source(X, device=compute_device, sample_weight=sample_weight, columns=columns,
                         storage_dtype=storage, chunk_size=chunk_size, n_centers=sum(ks) * restarts,
                         rank=rank, world_size=world_size, require_positive_weights=exchange is None)
    source = opened.source
    if exchange is not None:
        source = join_ranks(source, exchange, storage or source.storage_dtype, shared_table=is_path(X))
    n_samples = getattr(source, "total_samples", source.n_samples)
    if max(ks) > n_samples:
        raise ValueError(f"k={max(ks)} is more than the {n_samples} rows of X")
    source, moments = conditioned_for_fit(source, storage)
    conditioning = source.conditioning
    mode = _resolve_mode(silhouette, n_samples, sample_size)

    # ---------------------------------------------------------------- fits
    rng = check_random_state(random_state)
    seeds = [_shared_seed(source, rng) for _ in range(restarts)]
    grow_seed = _shared_seed(source, rng)
    starts = _initial_centers(source, init, ks, seeds)
    init_seconds = time.perf_counter() - clock
    if verbose:
        print(f"gpukmeans.sweep: {len(ks) * restarts} runs on {source.device}, initialised in {init_seconds:.2f}s")
    fit_clock = time.perf_counter()
    fits = fit_every_k(source, starts, seed=grow_seed, max_iter=max_iter,
                       tol=conditioning.tolerance(moments, tol), verbose=verbose)
    lloyd_seconds = time.perf_counter() - fit_clock
    labels = {kk: fits[kk].labels.long() for kk in ks}
    n_iter = {kk: fits[kk].n_iter for kk in ks}
    inertia = {kk: fits[kk].inertia for kk in ks}  # in conditioned units

    # -------------------------------------------------------------- scores
    score_clock = time.perf_counter()
    scores = _score_all(
        source, ks, labels, {kk: fits[kk].centers for kk in ks}, mode, int(sample_size), confidence, rng,
    )
    calinski, davies, estimates, values, simplified = scores
    score_seconds = time.perf_counter() - score_clock

    # ------------------------------------------------------- choosing k
    criteria_clock = time.perf_counter()
    criteria_seed = _shared_seed(source, rng)
    sample = criteria_sample(source, CRITERIA_ROWS, criteria_seed)
    gap = gap_statistic(sample, ks, seed=criteria_seed)
    table_rows = []
    for kk in ks:
        if kk in estimates:
            s, lo, hi = estimates[kk].value, estimates[kk].low, estimates[kk].high
        elif kk in simplified:
            s = lo = hi = simplified[kk]
        else:
            s = lo = hi = math.nan
        table_rows.append({
            "k": kk, "inertia": conditioning.sq_distances_out(inertia[kk]), "silhouette": s, "silhouette_low": lo,
            "silhouette_high": hi, "calinski_harabasz": calinski.get(kk, math.nan),
            "davies_bouldin": davies.get(kk, math.nan), "gap": gap.of(kk)[0], "gap_sd": gap.of(kk)[1],
            "n_iter": n_iter[kk],
        })
    table = pd.DataFrame(table_rows, columns=TABLE_COLUMNS[:-1])
    knee_k = find_knee(table["k"].to_numpy(), table["inertia"].to_numpy())
    method = {"exact": "exact", "sampled": "sampled", "simplified": "simplified", None: "none"}[mode]
    if method == "sampled" and estimates and all(e.is_exact for e in estimates.values()):
        method = "exact"
    recommended_k, reason = recommend(table, knee_k, method)
    best_k = _best_by_metric(table, knee_k)
    structure = assess_structure(
        sample, _nearest(sample, fits[recommended_k].centers),
        silhouette=float(table.set_index("k").loc[recommended_k, "silhouette"]), seed=criteria_seed,
    )
    criteria_seconds = time.perf_counter() - criteria_clock

    total_seconds = time.perf_counter() - clock
    seconds = _attribute_seconds(
        ks, {kk: fits[kk].work for kk in ks}, init_seconds, lloyd_seconds, total_seconds - init_seconds - lloyd_seconds
    )
    table["seconds"] = [seconds[kk] for kk in ks]

    feature_names = _feature_names(X, opened)
    n_features = source.n_features
    models = {
        kk: _fitted_kmeans(
            params, kk, fits[kk].centers, source.concat(labels[kk]) if is_path(X) else labels[kk],
            inertia[kk], n_iter[kk], opened.output, source.device, conditioning, n_features, feature_names,
        )
        for kk in ks
    }
    initial_centers = {
        kk: _arrays.to_output(conditioning.centers_out(fits[kk].start).to(source.dtype), opened.output)
        for kk in ks
    }
    if verbose:
        print(f"gpukmeans.sweep: scored in {score_seconds:.2f}s; {reason}")
    return SweepResult(
        table=table,
        models=models,
        initial_centers=initial_centers,
        knee_k=knee_k,
        best_k=best_k,
        recommended_k=recommended_k,
        reason=reason,
        structure=structure,
        silhouette_method=method,
        silhouette_estimates=estimates,
        silhouette_values=values,
        total_seconds=total_seconds,
        timings={
            "init": init_seconds, "lloyd": lloyd_seconds, "scores": score_seconds,
            "criteria": criteria_seconds, "total": total_seconds,
        },
    )


# ------------------------------------------------------------------ helpers


def _validate_ks(k: Any) -> list[int]:
    if isinstance(k, (Integral, np.integer)):
        k = [k]
    try:
        ks = list(k)
    except TypeError:
        raise ValueError(f"k must be an int or an iterable of ints, got {k!r}") from None
    if not ks:
        raise ValueError("k is empty: give at least one number of clusters")
    for value in ks:
        if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)) or value < 1:
            raise ValueError(f"every k must be an integer >= 1, got {value!r}")
    return sorted({int(value) for value in ks})


def _resolve_mode(silhouette, n_samples, sample_size):
    if silhouette == "auto":
        return "exact" if n_samples <= sample_size else "sampled"
    return silhouette


def _shared_seed(source, rng) -> int:
    """A seed drawn from ``rng``, rank 0's on every holder of rows."""
    return int(source.broadcast(torch.tensor([new_seed(rng)], dtype=torch.int64))[0])


def _initial_centers(source, init, ks, seeds) -> dict:
    """Starting centres per k, one per restart. Nested draws: for "k-means++" and "random"
    the k's share one draw for the largest k; "k-means||" draws each k, the draws
    continuing one generator per restart."""
    k_max = max(ks)
    starts = {kk: [] for kk in ks}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        nested = init in ("k-means++", "random")
        full = initial_centers(source, init, k_max, seed, generator) if nested else None
        for kk in ks:
            starts[kk].append(full[:kk].clone() if nested else initial_centers(source, init, kk, seed, generator))
    return starts


def _score_all(source, ks, labels, centers, mode, sample_size, confidence, rng):
    """Calinski-Harabasz, Davies-Bouldin and the silhouette of every k, on the source's
    (conditioned) rows, whichever holder has them.

    Rows of weight 0 count as absent, so they are left out of every score. The indices
    and centroid scores take passes over the rows; the silhouette reads the rows it
    samples (all of them when exact) by index.
    """
    present = None if source.sample_weight is None else source.sample_weight > 0
    encoded = {kk: compact_labels(source, labels[kk], kk) for kk in ks}
    n_rows = int(source.reduce_sum(torch.tensor(
        [source.n_samples if present is None else int(present.sum())], dtype=torch.int64, device=source.device)))
    scorable = [kk for kk in ks if 2 <= encoded[kk][1] <= n_rows - 1]
    codes = [encoded[kk][0] for kk in scorable]
    n_labels = [encoded[kk][1] for kk in scorable]
    calinski, davies, estimates, values, simplified = {}, {}, {}, {}, {}
    if not scorable:
        return calinski, davies, estimates, values, simplified
    ch, db = ch_db_many(source, codes, n_labels)
    calinski, davies = dict(zip(scorable, ch)), dict(zip(scorable, db))

    if mode in ("exact", "sampled"):
        # the silhouette is unweighted: the rows of positive weight, in the table's order
        kept_rows = None if present is None else torch.nonzero(source.concat(present)).flatten()
        every_code = [source.concat(c) for c in codes]
        if kept_rows is not None:
            every_code = [c[kept_rows.to(c.device)] for c in every_code]
        rows = RowsByIndex(source, n_rows, kept_rows)
        seed = int(source.broadcast(torch.tensor([int(rng.randint(0, 2**31 - 1))], dtype=torch.int64))[0])
        generator = make_generator(seed)
        block = default_block(source.device)
        if mode == "exact" and n_rows * sum(n_labels) > _SHARED_EXACT_LIMIT:
            # One labelling at a time, with the cluster-sorted kernel: O(n k) memory
            # instead of O(n sum(k)).
            data = rows[torch.arange(n_rows)]
            all_rows = torch.arange(n_rows, device=source.device)
            kept = []
            for c, m in zip(every_code, n_labels):
                row_values = exact_silhouette_values(data, c, m, block)
                value = float(row_values.mean())
                estimate = SilhouetteEstimate(value, value, value, n_rows, n_rows, "exact", confidence)
                kept.append((estimate, all_rows, row_values))
        else:
            size = n_rows if mode == "exact" else sample_size
            kept = estimate_silhouettes(rows, every_code, n_labels, size, generator,
                                        confidence=confidence, block=block, keep_values=True)
        for kk, (estimate, scored, row_values) in zip(scorable, kept):
            estimates[kk] = estimate
            original_rows = scored if kept_rows is None else kept_rows.to(scored.device)[scored]
            every_label = source.concat(labels[kk])
            values[kk] = (
                row_values.cpu().numpy(),
                every_label[original_rows.to(every_label.device)].cpu().numpy().astype(np.int32),
                original_rows.cpu().numpy(),
            )
    elif mode == "simplified":
        for kk in scorable:
            simplified[kk] = _simplified_mean(source, labels[kk], kk, centers[kk].double())
    return calinski, davies, estimates, values, simplified


def _simplified_mean(source, labels, n_clusters, centers) -> float:
    """The simplified silhouette's (weighted) mean over every holder's rows, one pass."""
    total = torch.zeros(2, dtype=torch.float64, device=source.device)
    for start, rows, weights in source.chunks():
        row_values = _simplified_values(rows, labels[start : start + rows.shape[0]], n_clusters, centers)
        w = torch.ones_like(row_values) if weights is None else weights.double()
        total += torch.stack([(row_values * w).sum(), w.sum()])
    total = source.reduce_sum(total)
    return float(total[0] / total[1])


def _attribute_seconds(ks, lloyd_work, init_seconds, lloyd_seconds, other_seconds):
    """Split shared wall time over k: Lloyd by k * iterations (of every run of that k), the rest by k."""
    total_lloyd_work = sum(lloyd_work.values())
    total_k = sum(ks)
    return {
        kk: lloyd_seconds * lloyd_work[kk] / total_lloyd_work
        + (init_seconds + other_seconds) * kk / total_k
        for kk in ks
    }


def find_knee(ks: np.ndarray, inertia: np.ndarray) -> Optional[int]:
    """The knee of a decreasing, convex inertia curve by Kneedle (the ``kneed`` package)."""
    if len(ks) < 3 or not np.all(np.isfinite(inertia)):
        return None
    try:
        from kneed import KneeLocator
    except ImportError as error:  # pragma: no cover - kneed is a dependency
        raise ImportError("gpukmeans.sweep needs the 'kneed' package for the knee") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when there is no knee; we return None
        knee = KneeLocator(
            ks.astype(float), inertia.astype(float), curve="convex", direction="decreasing"
        ).knee
    return None if knee is None else int(round(float(knee)))


def _best_by_metric(table: pd.DataFrame, knee_k: Optional[int]) -> dict:
    def pick(column, largest):
        series = table[column]
        if series.isna().all():
            return None
        index = series.idxmax() if largest else series.idxmin()
        return int(table.loc[index, "k"])

    return {
        "silhouette": pick("silhouette", True),
        "calinski_harabasz": pick("calinski_harabasz", True),
        "davies_bouldin": pick("davies_bouldin", False),
        "knee": knee_k,
        "gap": criteria(table, knee_k).get("gap"),
    }


def _nearest(rows: np.ndarray, centers: torch.Tensor) -> np.ndarray:
    """Each of ``rows``' (float64, on the host) nearest centre."""
    centers = centers.double().cpu().numpy()
    return ((rows[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


def _fitted_kmeans(params, k, centers, labels, inertia, n_iter, output, device, conditioning, n_features,
                   feature_names) -> KMeans:
    """A fitted :class:`KMeans` holding one k of the sweep, as ``fit`` would leave it
    (``centers`` and ``inertia`` in the conditioned units the sweep worked in)."""
    init = conditioning.centers_out(centers).to(centers.dtype).detach().cpu().numpy()
    params = {**params, "n_clusters": k, "init": init, "n_init": 1}
    return KMeans._fitted_from(
        params, centers=centers, labels=labels, inertia=inertia, n_iter=n_iter, output=output,
        device=device, n_features_in=n_features, feature_names_in=feature_names, conditioning=conditioning,
    )


def _feature_names(X, opened):
    """The column names a fit records as ``feature_names_in_``: a file's, or a DataFrame's
    when every name is a string (as scikit-learn); None otherwise."""
    if opened.columns is not None:
        return np.asarray(opened.columns, dtype=object)
    names = getattr(X, "columns", None)
    if names is None or not all(isinstance(name, str) for name in names):
        return None
    return np.asarray(list(names), dtype=object)
