"""What Lloyd's loop prints at ``verbose``: each iteration's inertia against the centres
it starts from, summed over every chunk of the pass, and why each group stopped.

The printed inertia is computed only when asked for (it costs a second look at each row),
so nothing else in a fit shows whether it is right; here it is checked against numpy's
Lloyd iterations from the same start, with weights, over passes cut into several chunks.
"""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans import KMeans


def _numpy_lloyd_inertias(X, weights, centers, n_iterations):
    """The weighted inertia of X against the centres each iteration starts from."""
    inertias = []
    for _ in range(n_iterations):
        distances = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)
        inertias.append(float((weights * distances[np.arange(len(X)), labels]).sum()))
        centers = np.stack([np.average(X[labels == j], axis=0, weights=weights[labels == j])
                            for j in range(len(centers))])
    return inertias


def _printed_inertias(text):
    return [float(value) for value in re.findall(r"Iteration \d+, group 0, inertia (\S+)", text)]


@pytest.mark.parametrize("from_file", [False, True])
def test_verbose_prints_each_iterations_inertia_over_every_chunk(capsys, tmp_path, from_file):
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(30, 2) * 0.6 + offset for offset in ([0, 0], [4, 1], [1, 5])])
    weights = rng.uniform(0.5, 2.0, len(X))
    start = X[[0, 1, 2]].copy()  # three rows of the first blob: several iterations to converge
    data = X
    if from_file:  # a file is read in chunks: each pass adds up the chunks' totals
        data = tmp_path / "rows.parquet"
        pd.DataFrame(X, columns=["a", "b"]).to_parquet(data)
    KMeans(3, init=start, n_init=1, chunk_size=7, verbose=1, random_state=0).fit(data, sample_weight=weights)
    printed = _printed_inertias(capsys.readouterr().out)
    assert len(printed) >= 3
    expected = _numpy_lloyd_inertias(X, weights, start, len(printed))
    np.testing.assert_allclose(printed, expected, rtol=1e-5)  # printed with six significant figures


def test_verbose_says_why_the_iterations_stopped(capsys):
    rng = np.random.RandomState(1)
    X = np.concatenate([rng.randn(40, 2) * 0.3, rng.randn(40, 2) * 0.3 + 5])
    KMeans(2, init=X[[0, 40]], n_init=1, verbose=1).fit(X)
    assert "Converged at iteration 1: strict convergence (group 0)." in capsys.readouterr().out
    KMeans(2, init=X[[0, 1]], n_init=1, verbose=1, tol=1e3).fit(X)
    assert re.search(r"Converged at iteration 0: center shift \S+ within tolerance \S+ \(group 0\)\.",
                     capsys.readouterr().out)


def test_a_centre_shift_equal_to_the_tolerance_stops_the_iterations():
    from gpukmeans.engine import lloyd as _lloyd
    from gpukmeans.sources import InMemorySource

    # From centres 0 and 10 the first iteration moves each by 0.5: a squared shift of 0.5 in all.
    X = torch.tensor([[0.0], [1.0], [10.0], [11.0]], dtype=torch.float64)
    start = [torch.tensor([[0.0], [10.0]], dtype=torch.float64)]
    assert _lloyd.lloyd(InMemorySource(X, None, chunk_size=100), start, max_iter=10, tol=0.5).n_iter == [1]
    assert _lloyd.lloyd(InMemorySource(X, None, chunk_size=100), start, max_iter=10, tol=0.49).n_iter == [2]


@pytest.mark.parametrize("init", ["k-means++", "k-means||", "random"])
def test_a_fit_that_is_not_verbose_prints_nothing(capsys, init):
    rng = np.random.RandomState(2)
    KMeans(3, init=init, n_init=2, random_state=0).fit(rng.randn(300, 2))
    assert capsys.readouterr().out == ""
