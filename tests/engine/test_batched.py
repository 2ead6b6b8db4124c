"""k-means on many small tables at once (the criteria's fits) against scikit-learn."""

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs

from gpukmeans.engine.batched import _TOL, _draw, _nearest, batched_kmeans


@pytest.fixture(scope="module")
def tables():
    return np.stack([make_blobs(400, 3, centers=4, cluster_std=1.0, random_state=seed)[0] for seed in range(3)])


def test_each_table_and_k_matches_scikit_learns_best_of_ten(tables):
    ks = [1, 2, 4, 6]
    fits = batched_kmeans(tables, ks, restarts=5, seed=0)
    assert fits.inertia.shape == (3, 4) and fits.centers.shape == (3, 4, 6, 3) and fits.labels.shape == (3, 4, 400)
    assert fits.ks == ks
    for t, table in enumerate(tables):
        for j, k in enumerate(ks):
            reference = SklearnKMeans(k, n_init=10, random_state=0).fit(table).inertia_
            assert float(fits.inertia[t, j]) <= reference * 1.02
            # the inertia, labels and centres describe one solution
            centers = fits.centers[t, j, :k].numpy()
            labels = fits.labels[t, j].numpy()
            assert labels.max() < k
            distances = ((table[:, None, :] - centers[None]) ** 2).sum(axis=2)
            np.testing.assert_array_equal(labels, distances.argmin(axis=1))
            assert float(fits.inertia[t, j]) == pytest.approx(distances.min(axis=1).sum(), rel=1e-12)
            np.testing.assert_array_equal(fits.centers[t, j, k:].numpy(), 0.0)


def test_one_cluster_is_the_mean(tables):
    fits = batched_kmeans(tables, [1], restarts=1, seed=3)
    for t, table in enumerate(tables):
        np.testing.assert_allclose(fits.centers[t, 0, 0].numpy(), table.mean(axis=0), rtol=1e-12)


def test_a_seed_gives_the_same_fits_whatever_the_threads(tables):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=11)
        torch.set_num_threads(2)
        two = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=11)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one.inertia, two.inertia, rtol=0, atol=0)
    torch.testing.assert_close(one.labels, two.labels, rtol=0, atol=0)
    other = batched_kmeans(tables, [2, 3, 5], restarts=2, seed=12)
    assert not torch.equal(other.labels, one.labels)


def test_identical_rows_and_too_many_clusters():
    same = np.ones((1, 10, 2))
    fits = batched_kmeans(same, [1, 3], restarts=2, seed=0)
    assert fits.inertia.tolist() == [[0.0, 0.0]]
    with pytest.raises(ValueError, match="more than the 10 rows"):
        batched_kmeans(same, [11], restarts=1, seed=0)


def test_as_many_clusters_as_rows_put_each_row_alone():
    rows = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0]]])
    fits = batched_kmeans(rows, [4], restarts=1, seed=0)
    assert fits.inertia.tolist() == [[0.0]]
    assert sorted(map(tuple, fits.centers[0, 0].tolist())) == sorted(map(tuple, rows[0].tolist()))


def test_the_default_iterations_are_scikit_learns():
    assert inspect.signature(batched_kmeans).parameters["max_iter"].default == SklearnKMeans().max_iter


def _greedy_kmeans_plusplus(rows, k, uniforms):
    """Greedy k-means++ from the definition: the first centre is the row at ``u * n``; each
    next one the best (lowest potential, the first of equals) of ``2 + int(ln k)`` rows drawn
    by squared distance to the nearest centre so far, the first row whose cumulative distance
    reaches ``u * total`` (the row at ``u * n`` where every distance is 0)."""
    n_rows = len(rows)
    first = min(int(uniforms[0] * n_rows), n_rows - 1)
    used, chosen = 1, [first]
    closest = ((rows - rows[first]) ** 2).sum(axis=1)
    for _ in range(1, k):
        cumulative = np.cumsum(closest)
        best = (np.inf, None, None)
        for _ in range(2 + int(math.log(k))):
            if cumulative[-1] > 0:
                row = min(int(np.searchsorted(cumulative, uniforms[used] * cumulative[-1])), n_rows - 1)
            else:  # every row is a centre already: the row at u * n
                row = min(int(uniforms[used] * n_rows), n_rows - 1)
            used += 1
            trial = np.minimum(closest, ((rows - rows[row]) ** 2).sum(axis=1))
            if trial.sum() < best[0]:
                best = (trial.sum(), row, trial)
        chosen.append(best[1])
        closest = best[2]
    return rows[chosen]


def test_the_starts_are_greedy_kmeans_plusplus_from_each_fits_own_uniforms():
    # no iteration: each fit returns its start; fit f = (table, k) in order draws from row f
    # of one (fits, 1 + k_max (2 + int(ln k_max))) table of uniforms made from the seed
    rng = np.random.default_rng(5)
    tables = rng.normal(size=(2, 60, 2))
    ks = [2, 3, 5]
    fits = batched_kmeans(tables, ks, restarts=1, seed=7, max_iter=0)
    uniforms = np.random.default_rng(7).random((len(tables) * len(ks), 1 + 5 * (2 + int(math.log(5)))))
    for t, table in enumerate(tables):
        for j, k in enumerate(ks):
            start = _greedy_kmeans_plusplus(table, k, uniforms[t * len(ks) + j])
            np.testing.assert_array_equal(fits.centers[t, j, :k].numpy(), start)
            distances = ((table[:, None, :] - start[None]) ** 2).sum(axis=2)
            np.testing.assert_array_equal(fits.labels[t, j].numpy(), distances.argmin(axis=1))


def test_the_tolerance_is_relative_to_each_tables_own_variance():
    # Lloyd stops where the centres move by at most 1e-4 of the table's mean variance per
    # feature: scaling a table by a power of two (exact) or moving it changes no label,
    # and neither does a table of another scale fitted beside it
    rng = np.random.default_rng(0)
    table = np.round(rng.random((300, 2)) * 1024) / 1024  # uniform rows: Lloyd creeps, the tolerance stops it
    ks = [5, 8]
    alone = batched_kmeans(table[None], ks, restarts=2, seed=3)
    scaled = batched_kmeans(table[None] * 1024, ks, restarts=2, seed=3)
    moved = batched_kmeans(table[None] + [0.0, 1024.0], ks, restarts=2, seed=3)
    beside = batched_kmeans(np.stack([table, table * 1024]), ks, restarts=2, seed=3)
    # a table of tiny values too: its squared distances, near 1e-19, are compared as they are
    tiny = batched_kmeans(table[None] * 2.0**-32, ks, restarts=2, seed=3)
    for other in (scaled, moved, beside, tiny):
        np.testing.assert_array_equal(other.labels[0].numpy(), alone.labels[0].numpy())


def test_a_draw_is_the_first_row_whose_cumulative_distance_reaches_the_target():
    cumulative = np.array([1.0, 1.0, 3.0, 3.0, 6.0])  # rows 1 and 3 at distance 0
    targets = [0.0, 0.5, 1.0, 1.5, 3.0, 5.9, 6.0]
    assert [_draw(cumulative, target) for target in targets] == [0, 0, 0, 2, 2, 4, 4]


def test_the_nearest_centre_is_the_first_of_equals():
    row = np.array([0.0, 0.0])
    centers = np.array([[3.0, 3.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert _nearest(row, centers, 4) == (1, 1.0)
    assert _nearest(row, centers, 1) == (0, 18.0)


def _lloyd_as_documented(rows, centers, tolerance, max_iter):
    """Lloyd from ``centers`` in numpy: rows to the first nearest centre; stop when no label
    changes, else move each centre with rows to their mean (one without rows stays) and stop
    when the squared moves add up to at most ``tolerance``. Returns the centres, labels,
    inertia and what happened on the way."""
    centers, labels, events = centers.copy(), None, set()
    for iteration in range(max_iter):
        nearest = ((rows[:, None] - centers[None]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and (nearest != labels).sum() == 1:
            events.add("one label changes")
        if labels is not None and (nearest == labels).all():
            break
        labels = nearest
        shift = 0.0
        for c in range(len(centers)):
            members = rows[labels == c]
            if len(members) == 0:
                events.add("a centre without rows")
                continue
            if len(members) == 1 and not np.array_equal(members[0], centers[c]):
                events.add("a lone row draws its centre")
            total = np.zeros(rows.shape[1])
            for member in members:  # in row order, as the kernel adds them
                total = total + member
            shift += ((total / len(members) - centers[c]) ** 2).sum()
            centers[c] = total / len(members)
        if shift <= tolerance:
            events.add("the tolerance stops it")
            break
    distances = ((rows[:, None] - centers[None]) ** 2).sum(axis=2)
    return centers, distances.argmin(axis=1), distances.min(axis=1).sum(), events


def _lone_row_table(rng):
    return np.concatenate([rng.normal(size=(12, 2)), rng.normal(size=(3, 2)) * 0.3 + [6, 0], [[3.0, 4.0]]])


@pytest.mark.parametrize("event, make_table, ks, seeds", [
    ("one label changes", lambda rng: rng.normal(size=(40, 2)) + rng.integers(0, 3, size=(40, 1)) * 2.0,
     [3, 4, 6], [1]),
    ("the tolerance stops it", lambda rng: rng.random((800, 2)), [9], [0]),
    # two distinct points, alternating, and k = 3: the third start repeats one of them (the
    # row at u * n, the last row as often as another), and its cluster stays empty
    ("a centre without rows", lambda rng: np.array([[0.0, 0.0], [4.0, 1.0]] * 4), [3], range(12)),
    ("a lone row draws its centre", _lone_row_table, [3, 4, 5], [20]),
])
def test_each_fit_is_lloyd_from_its_start_as_documented(event, make_table, ks, seeds):
    # the whole fit against numpy: the start rebuilt from the fit's uniforms, then Lloyd's
    # iterations, on tables chosen so that ``event`` happens on the way
    happened = set()
    for seed in seeds:
        table = make_table(np.random.default_rng(seed))
        fits = batched_kmeans(table[None], ks, restarts=1, seed=seed)
        uniforms = np.random.default_rng(seed).random((len(ks), 1 + max(ks) * (2 + int(math.log(max(ks))))))
        tolerance = _TOL * table.var(axis=0).mean()
        for j, k in enumerate(ks):
            start = _greedy_kmeans_plusplus(table, k, uniforms[j])
            centers, labels, inertia, events = _lloyd_as_documented(table, start, tolerance, 300)
            happened |= events
            np.testing.assert_array_equal(fits.labels[0, j].numpy(), labels)
            np.testing.assert_allclose(fits.centers[0, j, :k].numpy(), centers, rtol=1e-12, atol=1e-15)
            assert float(fits.inertia[0, j]) == pytest.approx(inertia, rel=1e-12)
    assert event in happened
