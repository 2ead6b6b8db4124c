"""Lloyd's loop against hand-computed iterations and scikit-learn: empty clusters
relocated (the farthest row, a cluster's last row passed over, zero weights never
moved, every group), passes over several chunks, the verbose trace, and the warning of
a failed recording."""

import contextlib
import io

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans

from gpukmeans import kernels
from gpukmeans.engine import lloyd as _lloyd
from gpukmeans.sources import InMemorySource


def _source(values, weights=None, chunk_size=2, whole_pass=True):
    """1-D rows (or 2-D ``values``) in float64; ``whole_pass`` False: one Lloyd pass per chunk."""
    X = torch.as_tensor(values, dtype=torch.float64)
    X = X[:, None] if X.dim() == 1 else X
    source = InMemorySource(X, None if weights is None else torch.tensor(weights, dtype=torch.float64),
                            chunk_size=chunk_size)
    source.backend = kernels.new_backend("cpu", torch.float64)
    source.backend.whole_pass = whole_pass
    return source


def _centres(*values):
    return torch.tensor(values, dtype=torch.float64)[:, None]


# Rows 1 and 3 (weight 2) near the centre 0; 140 and 260, each alone nearest 100 and 200;
# 500 of weight 0 nearest 200; nothing near 1000. The first iteration's empty cluster
# takes the farthest row that is not the last (positive-weight) row of its cluster: 500
# weighs nothing, 260 and 140 are last rows, so 3 moves: the empty centre becomes 3 and
# the centre 0 the mean of what is left, 1.
ROWS = [1.0, 3.0, 140.0, 260.0, 500.0]
WEIGHTS = [1.0, 2.0, 1.0, 1.0, 0.0]
START = _centres(0.0, 100.0, 200.0, 1000.0)
AFTER_ONE_ITERATION = _centres(1.0, 140.0, 260.0, 3.0)


def test_an_empty_cluster_takes_the_farthest_row_its_cluster_can_spare():
    result = _lloyd.lloyd(_source(ROWS, WEIGHTS), [START], max_iter=1)
    torch.testing.assert_close(result.centers[0], AFTER_ONE_ITERATION, rtol=0, atol=1e-12)
    assert result.labels[:, 0].tolist() == [0, 3, 1, 2, 2]


def test_every_group_relocates_even_after_a_group_without_a_usable_row():
    # The first group's centres sit on the four positive rows (each a cluster's last)
    # and its fifth is empty: no row can move, and the zero-weight row ends its search.
    # The groups after it still relocate.
    stuck = _centres(1.0, 3.0, 140.0, 260.0, 2000.0)
    result = _lloyd.lloyd(_source(ROWS, WEIGHTS), [stuck, START, START], max_iter=1)
    torch.testing.assert_close(result.centers[0], stuck, rtol=0, atol=0)
    for centres in result.centers[1:]:
        torch.testing.assert_close(centres, AFTER_ONE_ITERATION, rtol=0, atol=1e-12)


def test_a_row_on_its_centre_can_still_fill_an_empty_cluster():
    # every distance is 0: the farthest row is at distance 0 and its cluster can spare it
    result = _lloyd.lloyd(_source([0.5, 0.5, 0.7]), [_centres(0.5, 0.7, 9.0)], max_iter=1)
    assert sorted(result.centers[0].flatten().tolist()) == [0.5, 0.5, 0.7]


def _sklearn_lloyd(X, weights, start, max_iter):
    km = SklearnKMeans(start.shape[0], init=start, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd")
    return km.fit(X, sample_weight=weights)


@pytest.mark.parametrize("weighted", [False, True])
def test_a_pass_over_several_chunks_is_scikit_learns_lloyd(weighted):
    # the pass's totals added up chunk by chunk (a backend that passes chunk by chunk)
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1.0, (200, 3)) for c in (-4.0, 0.0, 4.0)])
    weights = rng.uniform(0.5, 2.0, len(X)) if weighted else None
    start = X[[0, 1, 2, 3, 4]]
    source = _source(X, weights, chunk_size=128, whole_pass=False)
    result = _lloyd.lloyd(source, [torch.from_numpy(start)], max_iter=300, tol=0.0)
    expected = _sklearn_lloyd(X, weights, start, 300)
    assert result.n_iter[0] == expected.n_iter_
    assert result.labels[:, 0].tolist() == expected.labels_.tolist()
    np.testing.assert_allclose(result.centers[0].numpy(), expected.cluster_centers_, rtol=1e-10)
    assert float(result.inertia[0]) == pytest.approx(expected.inertia_, rel=1e-10)


def test_relocation_over_several_chunks_takes_the_farthest_row_by_its_global_index():
    # blocks of two rows: rows 1 and 3, the farthest, are in the second and third chunk
    rows = [0.0, 0.5, 9.0, 10.0, 7.0, 10.0]
    result = _lloyd.lloyd(_source(rows, chunk_size=2), [_centres(0.0, 10.0, 50.0)], max_iter=1)
    # farthest: 7 (9 from 10), owned by the centre 10 of four rows: the empty centre is 7
    torch.testing.assert_close(result.centers[0], _centres(0.25, 29.0 / 3.0, 7.0), rtol=0, atol=1e-12)


def _verbose_trace(source, centres, **options):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _lloyd.lloyd(source, [centres], verbose=1, **options)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("whole_pass", [True, False])
def test_the_verbose_trace_gives_each_iterations_inertia_and_the_convergence(whole_pass):
    # 0, 2 | 10, 12 from the centres 0 and 12: inertia 4 + 4 against them, then the
    # centres 1 and 11 (inertia 4) with no label changed
    source = _source([0.0, 2.0, 10.0, 12.0], chunk_size=2, whole_pass=whole_pass)
    assert _verbose_trace(source, _centres(0.0, 12.0), max_iter=10) == [
        "Iteration 0, group 0, inertia 8",
        "Iteration 1, group 0, inertia 4",
        "Converged at iteration 1: strict convergence (group 0).",
    ]
    # the centres move by 1 and 1: a shift of 2, within a tolerance of 5
    assert _verbose_trace(source, _centres(0.0, 12.0), max_iter=10, tol=5.0) == [
        "Iteration 0, group 0, inertia 8",
        "Converged at iteration 0: center shift 2 within tolerance 5 (group 0).",
    ]


def test_a_failed_recording_warns_that_the_iteration_runs_launch_by_launch(monkeypatch):
    def fails(work, device):
        raise RuntimeError("capture failed")

    monkeypatch.setattr(_lloyd, "_recorder_for", lambda source: fails)
    with pytest.warns(RuntimeWarning) as caught:
        _lloyd.lloyd(_source([0.0, 2.0, 10.0, 12.0]), [_centres(0.0, 12.0)], max_iter=5)
    warning, = caught
    assert str(warning.message) == ("gpukmeans: the Lloyd iteration could not be recorded as a CUDA graph "
                                    "(capture failed); it runs launch by launch, with the same result.")


def test_a_holder_without_rows_adds_zero_totals():
    # a torch.distributed rank may hold no rows: its pass (chunk by chunk: none) adds
    # zeros of every total
    source = _source(torch.zeros(0, 3), whole_pass=False)
    centres = torch.ones(2, 4, 3, dtype=torch.float64)
    labels = torch.zeros(0, 2, dtype=torch.int8)
    totals = _lloyd._accumulate_pass(source, centres, torch.ones(2, 4, dtype=torch.float64), labels,
                                     torch.tensor([0, 1]))
    expected = {"sums": torch.zeros(2, 4, 3, dtype=torch.float64), "weight_sums": torch.zeros(2, 4, dtype=torch.float64),
                "n_changed": torch.zeros(2, dtype=torch.int64), "potential": torch.zeros(2, dtype=torch.float64)}
    for name, zeros in expected.items():
        total = getattr(totals, name)
        assert total.dtype == zeros.dtype and torch.equal(total, zeros), name
