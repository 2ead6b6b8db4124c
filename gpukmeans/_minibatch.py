"""Mini-batch k-means (Sculley, 2010) with scikit-learn's MiniBatchKMeans semantics.

Each step assigns one mini-batch with the fused kernel and moves every centre towards
the mean of its batch rows with a per-centre learning rate of ``batch weight / total
weight seen``. Early stopping follows scikit-learn: an exponentially weighted average
(EWA) of the batch inertia that has not improved for ``max_no_improvement`` steps, or
a centre shift within ``tol``. Rare centres are reassigned to random batch rows.

The loop is written against the data-source seam: in memory the batches are drawn
with replacement as scikit-learn 1.9 and later draws them, in proportion to the sample
weights (the same ``random_state`` calls, so the same batches); from a file they stream
(see ``FileSource.minibatches``).
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._constraints import Interval
from ._estimator import _BaseKMeans, conditioned_init, labels_output
from .engine.lloyd import weighted_sum
from .engine.minibatch import batch_inertia, minibatch_step
from .sources import InMemorySource, conditioned_for_fit, is_path


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means on PyTorch, a drop-in for :class:`sklearn.cluster.MiniBatchKMeans`.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random", "k-means||"}, callable or array of shape (k, d)
        Computed on ``init_size`` rows drawn at random (as scikit-learn does).
    max_iter : int, default=100
        Most passes over the data (epochs): the fit runs at most
        ``max_iter * n_samples // batch_size`` steps.
    batch_size : int, default=1024
        Rows per mini-batch.
    verbose : int, default=0
    compute_labels : bool, default=True
        Compute ``labels_`` and the exact ``inertia_`` with one full pass after the fit.
    random_state : int, RandomState instance or None
    tol : float, default=0.0
        Stop when the squared centre shift of a step is at most ``tol`` times the mean
        feature variance; 0 disables this test.
    max_no_improvement : int or None, default=10
        Stop after this many steps without improvement of the EWA-smoothed batch
        inertia; None disables this test.
    init_size : int or None, default=None
        Rows drawn for the initialisation; None is ``3 * batch_size`` (at least
        ``3 * n_clusters``), at most ``n_samples``.
    n_init : "auto" or int, default="auto"
        Initialisations tried (each scored on the same ``init_size`` held-out rows);
        "auto" is 1 for "k-means++" and "k-means||", 3 for "random" and callables.
    reassignment_ratio : float, default=0.01
        Centres whose count falls below this fraction of the largest count are moved
        to random rows of the batch (every ``10 * n_clusters`` rows seen, or whenever
        a centre has no count).
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default="auto"
    chunk_size : "auto" or int, default="auto"
        Rows per chunk of the full passes (labels, inertia, tolerance).
    dtype : None, "float32", "float64", "bfloat16" or "float16", default=None
        The dtype X is stored in, as in :class:`~gpukmeans.KMeans`: 16-bit storage
        halves the memory X takes (and, on CUDA, the bytes the full passes read);
        centres, counts and the inertia are then float32. Mini-batches are gathered
        rows, widened to float32. ``partial_fit`` keeps the first call's choice.

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
        In the storage dtype; float32 for 16-bit storage.
    labels_ : array of shape (n_samples,), when ``compute_labels``
    inertia_ : float
        Exact weighted inertia when ``compute_labels``; otherwise the EWA batch
        inertia times the total weight.
    n_iter_ : int
        Passes over the data started (``ceil(n_steps_ * batch_size / n_samples)``).
    n_steps_ : int
        Mini-batches processed.
    counts_ : array of shape (n_clusters,)
        Weight that each centre has absorbed (its inverse learning rate).
    n_features_in_, feature_names_in_, device_

    Notes
    -----
    ``fit`` also takes a path to a Parquet file, a folder of Parquet files or a CSV
    file (``columns=`` names the features). Reading random rows from a file costs a
    pass per batch, so there each pass reads the file in order, shuffles every read
    batch and cuts it into mini-batches: every row is seen once per pass.
    MiniBatchKMeans fits one process's rows; for torch.distributed use :class:`KMeans`.
    Saving (pickle, ``skops.io``) and :meth:`to_sklearn` work as for :class:`KMeans`;
    the scikit-learn estimator carries the counts, so its ``partial_fit`` goes on.

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import MiniBatchKMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [4, 0], [4, 4],
    ...               [4, 5], [0, 1], [2, 2], [3, 2], [5, 5], [1, -1]])
    >>> km = MiniBatchKMeans(n_clusters=2, batch_size=6, random_state=0, n_init="auto", device="cpu")
    >>> km = km.partial_fit(X[:6]).partial_fit(X[6:12])
    >>> km.cluster_centers_.shape, km.n_steps_
    ((2, 2), 2)
    >>> km = MiniBatchKMeans(n_clusters=2, batch_size=6, max_iter=10, random_state=0, device="cpu").fit(X)
    >>> km.predict([[0, 0], [4, 4]]).tolist() == [km.labels_[0], km.labels_[5]]
    True
    """

    _parameter_constraints: dict = {
        **_BaseKMeans._parameter_constraints,
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "compute_labels": ["boolean"],
        "max_no_improvement": [Interval(Integral, 0, None, closed="left"), None],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "reassignment_ratio": [Interval(Real, 0, None, closed="left")],
    }

    _sklearn_private_attributes = ("_counts", "_batch_size", "_init_size", "_n_init", "_n_since_last_reassign")

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        device="auto",
        chunk_size="auto",
        dtype=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.device = device
        self.chunk_size = chunk_size
        self.dtype = dtype

    # ----------------------------------------------------------------- fitting
    def fit(self, X, y=None, sample_weight=None, *, columns=None):
        """Compute the centres on X by mini-batches.

        Parameters
        ----------
        X : array-like, DataFrame, torch tensor, CuPy array of shape (n_samples, n_features), or a path
            A path (str or os.PathLike) to a Parquet file, a folder of Parquet files or
            a CSV file is streamed.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            In memory, rows are drawn into mini-batches with probability proportional
            to their weight (as scikit-learn 1.9 and later); from a file, weights weight the update.
        columns : list of str, default=None
            For a path only: the feature columns (default: every numeric column).

        Returns
        -------
        self
        """
        device = self._start_fit()
        if self.verbose:
            print(f"gpukmeans: fitting on {device}")
        opened = self._open(X, sample_weight, columns, device, 1)
        source, output = opened.source, opened.output
        try:
            init_centers = self._validate_init(source)
            self._check_params_vs_input(source.n_samples)
            source, moments = self._conditioned(source)
            self._fit_steps(source, conditioned_init(source, init_centers), moments)
            if self.compute_labels:
                labels, self.inertia_ = self._labels_inertia(source)
                self.labels_ = labels.cpu().numpy() if is_path(X) else labels_output(labels, output)
            elif hasattr(self, "labels_"):
                del self.labels_
        finally:
            source.close()
        self._set_fitted_centers(output, device)
        self.counts_ = self._counts.cpu().numpy()
        return self

    def _conditioned(self, source):
        """The source conditioned for this fit (see ``gpukmeans.sources.conditioning``), and
        the table's moments."""
        source, moments = conditioned_for_fit(source, self._fitted_storage_dtype())
        self._conditioning = source.conditioning
        return source, moments

    def _fit_steps(self, source, init_centers, moments):
        n_samples = source.n_samples
        tol = source.conditioning.tolerance(moments, self.tol)
        random_state = check_random_state(self.random_state)
        # The same calls on random_state, in the same order, as scikit-learn's fit.
        validation_indices = torch.from_numpy(random_state.randint(0, n_samples, self._init_size))
        valid_rows = source.take(validation_indices)
        valid_weights = source.weights_of(validation_indices)
        best_inertia, centers = None, None
        for init_round in range(self._n_init):
            candidate = self._init_on_sample(source, init_centers, random_state)
            inertia = batch_inertia(valid_rows, valid_weights, candidate)
            if self.verbose:
                print(f"Inertia for init {init_round + 1}/{self._n_init}: {inertia}")
            if best_inertia is None or inertia < best_inertia:
                best_inertia, centers = inertia, candidate

        self._counts = torch.zeros(self.n_clusters, dtype=source.dtype, device=source.device)
        self._ewa_inertia = None
        self._ewa_inertia_min = None
        self._no_improvement = 0
        self._n_since_last_reassign = 0
        n_steps = (self.max_iter * n_samples) // self._batch_size
        batches = source.minibatches(self._batch_size, random_state)
        step = -1
        for step in range(n_steps):
            rows, weights = next(batches)
            new_centers, step_inertia = minibatch_step(
                rows,
                weights,
                centers,
                self._counts,
                random_state,
                random_reassign=self._random_reassign(),
                reassignment_ratio=self.reassignment_ratio,
                verbose=self.verbose,
            )
            shift = float(((new_centers - centers) ** 2).sum()) if tol > 0 else 0.0
            centers = new_centers
            if self._converged(step, n_steps, n_samples, shift, tol, step_inertia):
                break
        batches.close()
        self._centers = centers
        self.n_steps_ = step + 1
        self.n_iter_ = int(np.ceil((step + 1) * self._batch_size / n_samples))
        if not self.compute_labels:
            total_weight = n_samples if source.sample_weight is None else float(source.sample_weight.double().sum())
            ewa = self._ewa_inertia if self._ewa_inertia is not None else step_inertia / self._batch_size
            self.inertia_ = source.conditioning.sq_distances_out(ewa * total_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centres with one mini-batch X (rows in memory).

        Parameters
        ----------
        X : array-like, DataFrame, torch tensor or CuPy array of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if is_path(X):
            raise ValueError("partial_fit takes one mini-batch of rows in memory; to fit a file, use fit(path).")
        has_centers = hasattr(self, "cluster_centers_")
        if has_centers:  # a later batch: checked, conditioned and stored as the first was
            device = torch.device(self.device_)
            source, output = self._inference_source(X, sample_weight)
        else:
            device = self._start_fit()
            opened = self._open(X, sample_weight, None, device, 1)
            source, output = opened.source, opened.output
        self._random_state = getattr(self, "_random_state", None) or check_random_state(self.random_state)
        self.n_steps_ = getattr(self, "n_steps_", 0)
        if not has_centers:
            self._check_params_vs_input(source.n_samples)
            init_centers = self._validate_init(source)
            # The first batch's moments condition every later one (and every prediction).
            source, _ = self._conditioned(source)
            self._centers = self._init_on_sample(source, conditioned_init(source, init_centers), self._random_state)
            self._counts = torch.zeros(self.n_clusters, dtype=source.dtype, device=source.device)
            self._n_since_last_reassign = 0
            self._output = output
            self.device_ = str(device)
        rows = source.X.to(self._centers.dtype)
        weights = None if source.sample_weight is None else source.sample_weight.to(self._centers.dtype)
        self._centers, _ = minibatch_step(
            rows,
            weights,
            self._centers,
            self._counts,
            self._random_state,
            random_reassign=self._random_reassign(),
            reassignment_ratio=self.reassignment_ratio,
            verbose=self.verbose,
        )
        if self.compute_labels:
            labels, self.inertia_ = self._labels_inertia(source)
            self.labels_ = labels_output(labels, output)
        self.n_steps_ += 1
        self._set_fitted_centers(self._output, device)
        self.counts_ = self._counts.cpu().numpy()
        return self

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _sklearn_class():
        from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans

        return SklearnMiniBatchKMeans

    def _check_params_vs_input(self, n_samples):
        """The settings that depend on the data's size, as scikit-learn resolves them."""
        self._check_n_samples(n_samples)
        self._n_init = self._resolve_n_init(stacklevel=4)
        self._batch_size = min(self.batch_size, n_samples)
        self._init_size = self.init_size
        if self._init_size is None:
            self._init_size = 3 * self._batch_size
            if self._init_size < self.n_clusters:
                self._init_size = 3 * self.n_clusters
        elif self._init_size < self.n_clusters:
            warnings.warn(
                f"init_size={self._init_size} should be larger than n_clusters={self.n_clusters}. "
                "Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            self._init_size = 3 * self.n_clusters
        self._init_size = min(self._init_size, n_samples)

    def _auto_n_init(self) -> int:
        return 3 if callable(self.init) or (isinstance(self.init, str) and self.init == "random") else 1

    def _init_on_sample(self, source, init_centers, random_state):
        """Initial centres from ``init_size`` rows drawn with replacement (all rows if fewer)."""
        if self._init_size < source.n_samples:
            indices = torch.from_numpy(random_state.randint(0, source.n_samples, self._init_size))
            weights = None if source.sample_weight is None else source.weights_of(indices)
            sample = InMemorySource(source.take(indices), weights, self._init_size)
        else:
            sample = source
        if init_centers is not None:
            return init_centers
        return self._initial_centers(sample, None, random_state)

    def _random_reassign(self) -> bool:
        """Whether this step reassigns rare centres: every ``10 * k`` rows, or when one is empty."""
        self._n_since_last_reassign += self._batch_size
        if bool((self._counts == 0).any()) or self._n_since_last_reassign >= 10 * self.n_clusters:
            self._n_since_last_reassign = 0
            return True
        return False

    def _converged(self, step, n_steps, n_samples, shift, tol, batch_inertia) -> bool:
        """scikit-learn's early stopping on the EWA of the mean batch inertia."""
        batch_inertia /= self._batch_size
        step += 1
        if step == 1:  # the first step starts from the initial centres: ignore it
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if self._ewa_inertia is None:
            self._ewa_inertia = batch_inertia
        else:
            alpha = min(self._batch_size * 2.0 / (n_samples + 1), 1.0)
            self._ewa_inertia = self._ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(
                f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, "
                f"ewa inertia: {self._ewa_inertia}"
            )
        if tol > 0.0 and shift <= tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self._ewa_inertia_min is None or self._ewa_inertia < self._ewa_inertia_min:
            self._no_improvement = 0
            self._ewa_inertia_min = self._ewa_inertia
        else:
            self._no_improvement += 1
        if self.max_no_improvement is not None and self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False

    def _labels_inertia(self, source):
        """Labels of every row (in float64, as ``predict``) and the exact weighted inertia, in one pass."""
        centers, _ = self._centers_for(source)
        parts, inertia = [], 0.0
        for _, _, weights, result in source.exactly_assigned_blocks(centers):
            parts.append(result.labels[:, 0])
            inertia += float(weighted_sum(result.min_sq_distances, weights).sum())
        return torch.cat(parts).to(torch.int32), source.conditioning.sq_distances_out(inertia)
