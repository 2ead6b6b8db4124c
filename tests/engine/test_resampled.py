"""k-means on many weightings of one table's rows (``resampled_kmeans``): each resample's
fit is k-means of its own weighted rows, the resamples share each pass, and the answer
does not depend on how the rows are cut into pieces."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans.engine.resampled import _lloyd, resampled_kmeans
from gpukmeans.sources.memory import InMemorySource


def _blobs(n_per_blob=60, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    rows = np.concatenate([rng.normal(mean, 0.5, size=(n_per_blob, 2)) for mean in means])
    return torch.tensor(rows, dtype=torch.float32), np.repeat(np.arange(3), n_per_blob)


def _bootstrap_weights(n_rows, n_resamples, seed):
    rng = np.random.default_rng(seed)
    return torch.tensor(np.stack([np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows)
                                  for _ in range(n_resamples)]), dtype=torch.float32)


def test_each_resample_finds_the_blobs():
    rows, truth = _blobs()
    fits = resampled_kmeans(rows, _bootstrap_weights(rows.shape[0], 4, seed=1), 3, restarts=2, seed=0)
    assert fits.labels.shape == (rows.shape[0], 4) and fits.centers.shape == (4, 3, 2)
    for b in range(4):
        labels = fits.labels[:, b].numpy()
        # the same partition as the truth, whatever the numbering
        assert len(set(zip(truth, labels))) == 3 and len(set(labels)) == 3


@pytest.mark.parametrize("restarts", [1, 3])
def test_each_centre_is_the_weighted_mean_of_its_rows_and_the_inertia_is_weighted(restarts):
    # with restarts, of the kept restart of each resample (not another resample's)
    rows, _ = _blobs(n_per_blob=40, seed=3)
    weights = _bootstrap_weights(rows.shape[0], 3, seed=4)
    fits = resampled_kmeans(rows, weights, 4, restarts=restarts, seed=5)
    wide = rows.double()
    for b in range(3):
        w, labels = weights[b].double(), fits.labels[:, b]
        for c in range(4):
            members = (labels == c) & (w > 0)
            if members.any():
                mean = (wide[members] * w[members, None]).sum(0) / w[members].sum()
                torch.testing.assert_close(fits.centers[b, c], mean, rtol=0, atol=1e-5)
        distances = ((wide - fits.centers[b][labels]) ** 2).sum(1)
        torch.testing.assert_close(fits.inertia[b], (distances * w).sum(), rtol=1e-9, atol=0)


def test_a_row_left_out_of_a_resample_never_becomes_its_centre():
    rows, _ = _blobs(n_per_blob=30, seed=6)
    weights = torch.zeros(2, rows.shape[0])
    weights[0, :30] = 1.0  # the first blob only
    weights[1, 30:] = 1.0  # the other two
    fits = resampled_kmeans(rows, weights, 2, seed=0)
    assert fits.centers[0, :, 0].abs().max() < 2 and fits.centers[0, :, 1].abs().max() < 2
    assert fits.centers[1, :, 0].max() > 6 and fits.centers[1, :, 1].max() > 6


def test_the_same_seed_gives_the_same_fits_whatever_the_chunk_size():
    rows, _ = _blobs(n_per_blob=50, seed=7)
    weights = _bootstrap_weights(rows.shape[0], 5, seed=8)
    whole = resampled_kmeans(rows, weights, 4, restarts=2, seed=9)
    again = resampled_kmeans(rows, weights, 4, restarts=2, seed=9)
    pieces = resampled_kmeans(rows, weights, 4, restarts=2, seed=9, chunk_size=17)
    for other in (again, pieces):
        assert torch.equal(whole.labels, other.labels)
        torch.testing.assert_close(whole.centers, other.centers, rtol=0, atol=1e-12)
        assert whole.n_iter == other.n_iter


# One cluster (k = 1): the first iteration moves the start (a weighted row) to the weighted
# mean, and no label changes after it; so the fit ends after one iteration where that move is
# at most the tolerance (1e-4 of the rows' mean variance per feature, every row counted, as
# scikit-learn's), and after two where it is more.
def _offset_pair(e):
    """Weighted rows 5 -+ e (so the move is e^2 from either start) between unweighted rows
    5 -+ 10, beside a constant feature at 1000: the tolerance is 1e-4 (200 + 2 e^2) / 3 / 2."""
    rows = [[-5.0, 1000.0], [5.0 - e, 1000.0], [5.0 + e, 1000.0], [15.0, 1000.0]]
    return rows, [0.0, 1.0, 1.0, 0.0], [5.0, 1000.0]


@pytest.mark.parametrize("rows, weights, mean, n_iter", [
    (*_offset_pair(0.05), 1),  # moves 0.0025, tolerance 0.00333
    (*_offset_pair(0.1), 2),  # moves 0.01
    # two rows: the heavy row starts (probability 1 - 1e-6; this seed draws it) and moves
    # (1/1000001)^2, within 1e-4 of their variance 0.5
    ([[0.0], [1.0]], [1e6, 1.0], [1.0 / (1e6 + 1)], 1),
    ([[0.5, 2.0]] * 3, [1.0, 2.0, 1.0], [0.5, 2.0], 1),  # identical rows: no move, a tolerance of 0
], ids=["within-tolerance", "beyond-tolerance", "two-rows", "identical-rows"])
def test_the_fit_stops_once_the_centres_move_by_at_most_the_tolerance(rows, weights, mean, n_iter):
    rows = torch.tensor(rows, dtype=torch.float64)
    fits = resampled_kmeans(rows, torch.tensor([weights]), 1, seed=0)
    assert fits.n_iter == [n_iter]
    torch.testing.assert_close(fits.centers[0, 0], torch.tensor(mean, dtype=torch.float64), rtol=1e-12, atol=0)
    weighted = torch.tensor(weights, dtype=torch.float64)
    inertia = (((rows - torch.tensor(mean, dtype=torch.float64)) ** 2).sum(dim=1) * weighted).sum()
    # the distances are expanded (|x|^2 - 2 x.c + |c|^2): about 1e-16 of |x|^2 = 1e6 each
    torch.testing.assert_close(fits.inertia[0], inertia, rtol=0, atol=1e-9)


def test_no_iteration_leaves_each_fit_at_its_start():
    rows, weights, _ = _offset_pair(0.1)
    fits = resampled_kmeans(torch.tensor(rows, dtype=torch.float64), torch.tensor([weights]), 1, seed=0, max_iter=0)
    assert fits.n_iter == [0] and fits.centers[0, 0].tolist() in (rows[1], rows[2])  # a weighted row


def test_a_one_row_table_is_its_own_centre_without_a_variance_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the variance of one row (no degrees of freedom) warns
        fits = resampled_kmeans(torch.tensor([[0.1, 3.0]], dtype=torch.float64), torch.tensor([[1.0]]), 1, seed=0)
    assert fits.n_iter == [1] and fits.centers[0, 0].tolist() == [0.1, 3.0] and fits.labels.tolist() == [[0]]


def test_weights_below_one_give_weighted_means():
    # clusters {0, 1} of weights 0.25, 0.5 and {10, 12} of weights 0.125, 0.375: each total
    # is below 1, so a mean must divide by it, not by at least 1
    rows = torch.tensor([[0.0], [1.0], [10.0], [12.0]], dtype=torch.float64)
    fits = resampled_kmeans(rows, torch.tensor([[0.25, 0.5, 0.125, 0.375]]), 2, seed=0)
    centers = sorted(fits.centers[0, :, 0].tolist())
    assert centers == pytest.approx([0.5 / 0.75, (1.25 + 4.5) / 0.5], rel=1e-12)
    assert fits.inertia[0].item() == pytest.approx(0.25 * (2 / 3) ** 2 + 0.5 * (1 / 3) ** 2 + 0.125 * 1.5**2
                                                    + 0.375 * 0.5**2, rel=1e-12)


def test_more_resamples_than_rows():
    # one centre: each resample's weighted mean of the rows 0, 1, 10
    rows = torch.tensor([[0.0], [1.0], [10.0]])
    weights = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0], [0.0, 1.0, 1.0], [3.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    fits = resampled_kmeans(rows, weights, 1, seed=0)
    assert fits.centers[:, 0, 0].tolist() == pytest.approx([11 / 3, 10 / 3, 5.5, 0.25, 0.0], rel=1e-6)
    assert fits.labels.shape == (3, 5) and not fits.labels.any()


def test_a_centre_that_loses_every_row_keeps_its_place():
    # centres 0 and 100 over rows near 0 (weights 1, 3): the second has no row
    rows = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    centers = torch.tensor([[[0.0], [100.0]]], dtype=torch.float64)
    source = InMemorySource(rows, None, 2)
    centers, n_iter = _lloyd(source, centers, torch.tensor([[1.0, 3.0]], dtype=torch.float64), 0.0, 300, None)
    assert centers[0, :, 0].tolist() == [0.5, 100.0] and n_iter == [2]


def test_the_kept_restart_has_the_lowest_inertia_of_its_resample():
    # blobs that k-means++ splits wrongly from some starts: more restarts find a lower
    # inertia for some seeds, never a higher one (the first restart's draws are the same)
    rows = torch.tensor(make_blobs(300, 2, centers=9, cluster_std=1.2, random_state=2)[0])
    weights = torch.ones(1, 300)
    one = [resampled_kmeans(rows, weights, 9, seed=seed).inertia[0].item() for seed in range(4)]
    many = [resampled_kmeans(rows, weights, 9, restarts=4, seed=seed).inertia[0].item() for seed in range(4)]
    assert all(m <= o * (1 + 1e-12) for m, o in zip(many, one))
    assert any(m < o * (1 - 1e-3) for m, o in zip(many, one)), "restarts never helped on this table"
