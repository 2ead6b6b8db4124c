"""k-means on many weightings of one table's rows (``resampled_kmeans``): each resample's
fit is k-means of its own weighted rows, the resamples share each pass, and the answer
does not depend on how the rows are cut into pieces."""

import numpy as np
import torch

from gpukmeans.engine.resampled import resampled_kmeans


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


def test_each_centre_is_the_weighted_mean_of_its_rows_and_the_inertia_is_weighted():
    rows, _ = _blobs(n_per_blob=40, seed=3)
    weights = _bootstrap_weights(rows.shape[0], 3, seed=4)
    fits = resampled_kmeans(rows, weights, 4, seed=5)
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
