"""How much cluster structure a clustering found: one word and one plain sentence.

:func:`assess_structure` judges a labelling of a sample of rows twice:

1. Against structureless data. Reference tables of as many rows are drawn uniformly in
   the box the sample spans along its principal axes (the reference of the gap statistic,
   Tibshirani, Walther and Hastie, 2001), and k-means with the labelling's k splits each.
   The labelling must (a) lower the within-cluster sum of squares, relative to one
   cluster's, at least as far as the references' splits do, and (b) have a mean
   silhouette on the sample more than ``REFERENCE_Z`` of the references' standard
   deviations above theirs. Otherwise the verdict is ``"none"``: splitting the rows
   separates them no better than it separates evenly spread data. Uniform noise fails
   (it is the reference); a single Gaussian, round or stretched, fails both; a skewed
   cloud, whose split cuts its tail off with a fair silhouette, fails (a).
2. Kaufman and Rousseeuw's silhouette bands on the labelling's silhouette over the whole
   table: ``"strong"`` above 0.70, ``"reasonable"`` above 0.50, ``"weak"`` above 0.25,
   else ``"none"``.

The silhouette carries the test because it has the power: on a few hundred rows whose
groups fill their box, such as Mall's customers by income and spending, the sums of
squares fall barely faster than the references' while the silhouette stands far above
theirs.

The reference fits run in :func:`gpukmeans.engine.batched.batched_kmeans`; the gap
statistic that helps choose k (:mod:`gpukmeans._k_choice`) draws its references here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from .engine.batched import batched_kmeans

#: The verdicts, strongest first.
STRUCTURES = ("strong", "reasonable", "weak", "none")

#: Lowest silhouette of each verdict but "none" (Kaufman and Rousseeuw, 1990).
_SILHOUETTE_BANDS = (("strong", 0.70), ("reasonable", 0.50), ("weak", 0.25))

#: Standard deviations of the references' silhouettes by which a labelling's must beat
#: their mean. k-means splits of uniform noise stand near 0 (4.1 at most over ninety
#: tables of 2 to 6 columns and k of 2 to 8) and single Gaussians far below; Mall's
#: customers stand 6.5 to 11 above at k = 5 or 6, clustered tables tens
#: (tests/estimators/test_structure.py, benchmarks/bench_k_choice.py).
REFERENCE_Z = 5.0

#: Uniform reference tables per judgement, their restarts, and the rows of each.
REFERENCES = 20
REFERENCE_RESTARTS = 3
REFERENCE_ROWS = 1000


@dataclass
class StructureVerdict:
    """What :func:`assess_structure` concluded.

    Attributes
    ----------
    structure : {"strong", "reasonable", "weak", "none"}
    sentence : str
        The verdict in one plain sentence for a reader who does not know the criteria.
    details : dict
        The figures behind it (JSON-ready: numbers, strings, None), for ``summary.json``:
        ``silhouette`` (as given), ``silhouette_band``, ``sample_silhouette`` (on the rows
        judged), ``reference_silhouette`` and ``reference_sd`` (k-means on the uniform
        references), ``reference_z`` (how far the labelling's silhouette stands above
        theirs, in their standard deviations), ``sum_of_squares_z`` (how much further it
        lowers the sum of squares than theirs), ``rows``, ``references``.
    """

    structure: str
    sentence: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"structure": self.structure, "sentence": self.sentence, **self.details}


def structure_from_silhouette(silhouette: float | None) -> str:
    """The silhouette band a mean silhouette falls in (None: "none")."""
    if silhouette is None or not np.isfinite(silhouette):
        return "none"
    for name, low in _SILHOUETTE_BANDS:
        if silhouette > low:
            return name
    return "none"


def assess_structure(X: np.ndarray, labels: np.ndarray, *, silhouette: float | None, seed: int = 0) -> StructureVerdict:
    """The structure of ``labels`` on ``X`` (a sample of the clustered rows, on the host,
    at most some tens of thousands) given the labelling's mean ``silhouette`` over the
    whole table (or its estimate).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_blobs
    >>> from gpukmeans._structure import assess_structure
    >>> X, y = make_blobs(2000, 3, centers=4, cluster_std=0.5, random_state=0)
    >>> assess_structure(X, y, silhouette=0.8, seed=0).structure
    'strong'
    >>> noise = np.random.default_rng(0).uniform(size=(2000, 3))
    >>> assess_structure(noise, (noise[:, 0] > 0.5).astype(int), silhouette=0.35, seed=0).structure
    'none'
    """
    rows, codes, k = _sample(np.asarray(X, dtype=np.float64), np.asarray(labels).ravel(), seed)
    test = reference_test(rows, codes, k, seed)
    band = structure_from_silhouette(silhouette)
    structure = "none" if not test.passed else band
    details = {
        "silhouette": None if silhouette is None or not np.isfinite(silhouette) else float(silhouette),
        "silhouette_band": band,
        **test.to_dict(),
    }
    return StructureVerdict(structure, _sentence(structure, k, test.passed), details)


def _sentence(structure: str, k: int, beats_references: bool) -> str:
    if structure == "none" and not beats_references:
        return (f"The customers do not form distinct groups: the {k} segments separate them no better than "
                "they would separate evenly spread data, so they are an arbitrary split.")
    return {
        "strong": f"The {k} segments are clearly separated.",
        "reasonable": f"The {k} segments are reasonably well separated.",
        "weak": f"The {k} segments overlap a lot: treat them as a convenient split, not natural groups.",
        "none": f"The customers do not form distinct groups: the {k} segments are an arbitrary split.",
    }[structure]


def _sample(X, labels, seed):
    """At most ``REFERENCE_ROWS`` rows of X (a seeded draw), their labels as codes 0..k-1, and k."""
    if X.ndim != 2 or X.shape[0] != labels.shape[0]:
        raise ValueError(f"X must be (n, d) with one label per row, got X {X.shape} and {labels.shape[0]} labels")
    if X.shape[0] > REFERENCE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(X.shape[0], REFERENCE_ROWS, replace=False))
        X, labels = X[keep], labels[keep]
    _, codes = np.unique(labels, return_inverse=True)
    return np.ascontiguousarray(X), codes.astype(np.int64), int(codes.max()) + 1


@dataclass
class ReferenceTest:
    """How a labelling compares with k-means on uniform reference data: its mean silhouette,
    and how far its split lowers the within-cluster sum of squares (``log(W_k / W_1)``)."""

    silhouette: float  # the labelling's mean silhouette on the rows judged
    reference_silhouette: float  # the references' mean, and their standard deviation
    reference_silhouette_sd: float
    log_w_ratio: float  # log(W_k / W_1) of the labelling
    reference_log_w_ratio: float
    reference_log_w_sd: float
    rows: int
    references: int

    @property
    def silhouette_z(self) -> float:
        """How far the labelling's silhouette stands above the references', in their deviations."""
        return _z(self.silhouette - self.reference_silhouette, self.reference_silhouette_sd, self.references)

    @property
    def sum_of_squares_z(self) -> float:
        """How much further the labelling lowers the sum of squares than the references do."""
        return _z(self.reference_log_w_ratio - self.log_w_ratio, self.reference_log_w_sd, self.references)

    @property
    def passed(self) -> bool:
        return self.sum_of_squares_z > 0 and self.silhouette_z > REFERENCE_Z

    def to_dict(self) -> dict:
        def number(value):
            return float(value) if math.isfinite(value) else None

        return {"reference_z": number(self.silhouette_z), "sum_of_squares_z": number(self.sum_of_squares_z),
                "sample_silhouette": number(self.silhouette),
                "reference_silhouette": number(self.reference_silhouette),
                "reference_sd": number(self.reference_silhouette_sd), "rows": self.rows,
                "references": self.references}


def _z(difference, sd, references) -> float:
    if references == 0:
        return 0.0
    if not math.isfinite(difference):
        return math.copysign(math.inf, difference) if not math.isnan(difference) else 0.0
    return difference / max(sd, 1e-12)


def reference_test(rows: np.ndarray, codes: np.ndarray, k: int, seed: int) -> ReferenceTest:
    """Compare the labelling ``codes`` (0..k-1) of ``rows`` ((m, d) float64) with k-means at k
    on ``REFERENCES`` uniform tables in the rows' principal box."""
    one = within_ss(rows, np.zeros_like(codes), 1)
    if k < 2 or k >= rows.shape[0] or one <= 0:
        return ReferenceTest(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, rows.shape[0], 0)
    split = within_ss(rows, codes, k)
    rng = np.random.default_rng(seed)
    references = uniform_references(rows, REFERENCES, rng)
    fits = batched_kmeans(references, [1, k], restarts=REFERENCE_RESTARTS, seed=int(rng.integers(2**63)))
    silhouettes = np.array([mean_silhouette(table, fits.labels[b, 1].numpy(), k) for b, table in enumerate(references)])
    ratios = np.log(fits.inertia[:, 1].numpy() / fits.inertia[:, 0].numpy())
    spread = math.sqrt(1 + 1 / REFERENCES)
    return ReferenceTest(
        silhouette=mean_silhouette(rows, codes, k), reference_silhouette=float(silhouettes.mean()),
        reference_silhouette_sd=float(silhouettes.std() * spread),
        log_w_ratio=math.log(split / one) if split > 0 else -math.inf, reference_log_w_ratio=float(ratios.mean()),
        reference_log_w_sd=float(ratios.std() * spread), rows=rows.shape[0], references=REFERENCES,
    )


def mean_silhouette(rows: np.ndarray, codes: np.ndarray, k: int) -> float:
    """The mean silhouette of a small table ((m, d), m up to a few thousand: it holds the m x m
    distances), rows alone in their cluster counting 0, as scikit-learn."""
    squared = (rows * rows).sum(axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * rows @ rows.T, 0.0))
    members = np.zeros((rows.shape[0], k))
    members[np.arange(rows.shape[0]), codes] = 1.0
    sizes = members.sum(axis=0)
    to_cluster = distances @ members  # each row's summed distance to each cluster
    own = codes
    own_size = sizes[own]
    a = np.where(own_size > 1, to_cluster[np.arange(len(own)), own] / np.maximum(own_size - 1, 1), 0.0)
    mean_to = np.where(sizes > 0, to_cluster / np.maximum(sizes, 1), np.inf)
    mean_to[np.arange(len(own)), own] = np.inf
    b = mean_to.min(axis=1)
    values = np.where((own_size > 1) & np.isfinite(b), (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(values.mean())


def within_ss(rows: np.ndarray, codes: np.ndarray, k: int) -> float:
    """Within-cluster sum of squares of ``rows`` under ``codes`` (each cluster about its mean)."""
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    sums = np.zeros((k, rows.shape[1]))
    np.add.at(sums, codes, rows)
    means = sums / np.maximum(counts, 1.0)[:, None]
    return float(((rows - means[codes]) ** 2).sum())


def principal_box(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` centred and turned onto their principal axes, with the low and high corner
    of the box they span there. k-means is unchanged by the turn, so references drawn in
    the box are compared with the turned rows directly."""
    centred = rows - rows.mean(axis=0)
    _, _, vh = np.linalg.svd(centred, full_matrices=False)
    turned = centred @ vh.T
    return turned, turned.min(axis=0), turned.max(axis=0)


def uniform_references(rows: np.ndarray, n_references: int, rng: np.random.Generator) -> np.ndarray:
    """(n_references, m, d'): tables of as many rows as ``rows``, uniform in their principal box."""
    _, low, high = principal_box(rows)
    return low + rng.random((n_references, rows.shape[0], low.shape[0])) * (high - low)


__all__ = ["REFERENCE_Z", "STRUCTURES", "StructureVerdict", "assess_structure", "principal_box",
           "reference_test", "structure_from_silhouette", "uniform_references", "within_ss"]
