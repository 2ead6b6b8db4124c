"""Every k of a sweep: restarts, growths from the k before, merges from the k after."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from gpukmeans.engine import every_k
from gpukmeans.engine.every_k import fit_every_k
from gpukmeans.engine.initialisation import extend_kmeans_plusplus, kmeans_plusplus_tensor
from gpukmeans.engine.lloyd import lloyd
from gpukmeans.sources.memory import InMemorySource


def _source(X, chunk_size=None):
    X = torch.as_tensor(X, dtype=torch.float64)
    return InMemorySource(X, None, chunk_size=chunk_size or X.shape[0])


def _nested_starts(source, ks, restarts, seed):
    generator = torch.Generator().manual_seed(seed)
    starts = {k: [] for k in ks}
    for _ in range(restarts):
        draw = kmeans_plusplus_tensor(source, max(ks), generator)[0]
        for k in ks:
            starts[k].append(draw[:k].clone())
    return starts


@pytest.fixture(scope="module")
def crowded():
    # eleven clusters of varied size and spread, some touching: single starts end in
    # different local minima at different k
    X, _ = make_blobs(n_samples=1500, n_features=3, centers=11, cluster_std=[0.6, 1.4] * 5 + [1.0],
                      center_box=(-8, 8), random_state=4)
    return X


def test_each_k_keeps_a_run_at_least_as_good_as_every_restart(crowded):
    source = _source(crowded)
    ks = list(range(2, 12))
    starts = _nested_starts(source, ks, restarts=2, seed=0)
    kept = fit_every_k(source, starts, seed=1, max_iter=300, tol=0.0)
    alone = lloyd(source, [start for k in ks for start in starts[k]], max_iter=300, tol=0.0)
    for position, k in enumerate(ks):
        restarts = alone.inertia[2 * position : 2 * position + 2]
        assert kept[k].inertia <= float(restarts.min()) * (1 + 1e-12)
        assert kept[k].centers.shape == (k, 3) and kept[k].labels.shape == (len(crowded),)
        assert kept[k].origin in ("restart", "growth", "merge")
    assert any(fit.origin != "restart" for fit in kept.values()), "neighbours never helped on this table"


def _random_starts(X, ks, seed):
    """One start per k of random rows, drawn for each k apart: single runs from these end
    in local minima of any depth, so their curve rises in places."""
    rng = np.random.default_rng(seed)
    return {k: [torch.as_tensor(X[rng.choice(len(X), k, replace=False)])] for k in ks}


def test_inertia_never_rises_with_k_even_where_single_starts_do(crowded):
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    single = lloyd(source, [starts[k][0] for k in ks], max_iter=300, tol=0.0).inertia.numpy()
    assert (np.diff(single) > 0).any(), "single starts are monotone here: the table tests nothing"
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all()
    assert (inertia <= single).all()


def test_a_k_above_its_predecessor_takes_its_growth(crowded, monkeypatch):
    # With no run kept for being better (every gain counts as a tie), the rule that keeps
    # the curve from rising is all that lowers it.
    monkeypatch.setattr(every_k, "TIE", 1.0)
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all()
    assert {kept[k].origin for k in ks} == {"restart", "growth"}


def test_gaps_in_the_ks_grow_by_several_centres(crowded):
    source = _source(crowded)
    ks = [2, 5, 9]
    kept = fit_every_k(source, _nested_starts(source, ks, 1, seed=2), seed=2, max_iter=300, tol=0.0)
    assert [kept[k].centers.shape[0] for k in ks] == ks
    assert kept[2].inertia >= kept[5].inertia >= kept[9].inertia


def test_the_result_does_not_depend_on_the_chunk_size(crowded):
    ks = list(range(2, 10))
    results = []
    for chunk_size in (None, 997, 250):
        source = _source(crowded, chunk_size)
        results.append(fit_every_k(source, _nested_starts(source, ks, 2, seed=5), seed=5, max_iter=300, tol=1e-8))
    for other in results[1:]:
        for k in ks:
            torch.testing.assert_close(other[k].labels, results[0][k].labels, rtol=0, atol=0)
            assert other[k].inertia == pytest.approx(results[0][k].inertia, rel=1e-12)
            assert other[k].origin == results[0][k].origin


def test_extensions_keep_the_given_centres_and_add_rows_of_the_table(crowded):
    source = _source(crowded)
    given = torch.as_tensor(crowded[[3, 500]])
    generators = [torch.Generator().manual_seed(seed) for seed in range(3)]
    extensions = extend_kmeans_plusplus(source, given, 6, generators)
    assert len(extensions) == 3
    for centers, indices in extensions:
        assert centers.shape == (6, 3) and indices.shape == (4,)
        torch.testing.assert_close(centers[:2], given)
        torch.testing.assert_close(centers[2:], torch.as_tensor(crowded[indices.numpy()]))
    assert len({tuple(indices.tolist()) for _, indices in extensions}) > 1, "independent draws differ"
    one = lloyd(source, [given], max_iter=0).inertia
    every = lloyd(source, [centers for centers, _ in extensions], max_iter=0).inertia
    assert (every <= one).all()



@pytest.mark.parametrize("n_clusters", [4, 6])
def test_each_extension_is_the_one_its_generator_makes_alone(crowded, n_clusters):
    # the extensions share passes (and the distances to the given centres), never
    # what one extension's own steps lower
    source = _source(crowded)
    given = torch.as_tensor(crowded[[3, 500]])
    together = extend_kmeans_plusplus(source, given, n_clusters, [torch.Generator().manual_seed(s) for s in range(3)])
    for seed, (centers, indices) in enumerate(together):
        (alone, alone_indices), = extend_kmeans_plusplus(source, given, n_clusters, [torch.Generator().manual_seed(seed)])
        assert indices.tolist() == alone_indices.tolist()
        assert torch.equal(centers, alone)

def test_extending_one_draw_continues_kmeans_plusplus(crowded):
    source = _source(crowded)
    whole, indices = kmeans_plusplus_tensor(source, 5, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    first, _ = kmeans_plusplus_tensor(source, 1, generator)
    (extended, added), = extend_kmeans_plusplus(source, first, 5, [generator])
    torch.testing.assert_close(extended, whole)
    assert added.tolist() == indices[1:].tolist()


@pytest.fixture
def search_a_sample(monkeypatch):
    """Tables above 600 rows search a sample of 600 for growths and merges."""
    monkeypatch.setattr(every_k, "SEARCH_ROWS", 600)


def test_a_large_table_searches_a_sample_and_keeps_what_the_table_confirms(crowded, search_a_sample):
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    alone = lloyd(source, [starts[k][0] for k in ks], max_iter=300, tol=0.0).inertia.numpy()
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all() and (inertia <= alone).all()
    assert (inertia < alone * 0.99).any(), "the search found nothing better on this table"
    for k in ks:  # every kept run is the table's own Lloyd from its start
        again = lloyd(source, [kept[k].start], max_iter=300, tol=0.0)
        assert float(again.inertia[0]) == pytest.approx(kept[k].inertia, rel=1e-12)


def test_the_sample_search_does_not_depend_on_the_chunk_size(crowded, search_a_sample):
    ks = list(range(2, 10))
    results = []
    for chunk_size in (None, 250):
        source = _source(crowded, chunk_size)
        results.append(fit_every_k(source, _nested_starts(source, ks, 2, seed=5), seed=5, max_iter=300, tol=1e-8))
    for k in ks:
        torch.testing.assert_close(results[1][k].labels, results[0][k].labels, rtol=0, atol=0)
        assert results[1][k].origin == results[0][k].origin


@pytest.fixture
def recorded_lloyd(monkeypatch):
    """Every Lloyd call of the sweep: its rows, the k of each group, the options, each
    group's iterations."""
    calls = []

    def recording(source, starts, **options):
        result = lloyd(source, starts, **options)
        group_ks = [start.shape[0] for start in starts]
        calls.append((source.n_samples, group_ks, options, [int(n) for n in result.n_iter]))
        return result

    monkeypatch.setattr(every_k, "lloyd", recording)
    return calls


class _Rounds(list):
    """Rounds of runs, each a list of ``(k, origin)``; ``inertias`` holds each run's inertia."""

    def __init__(self):
        super().__init__()
        self.inertias = []


@pytest.fixture
def recorded_runs(monkeypatch):
    """Every round of runs of the sweep: the (k, origin) of each."""
    rounds = _Rounds()
    run = every_k._run

    def recording(source, starts, max_iter, tol, verbose):
        runs = run(source, starts, max_iter, tol, verbose)
        rounds.append([(one.k, one.origin) for one in runs])
        rounds.inertias.append([one.inertia for one in runs])
        return runs

    monkeypatch.setattr(every_k, "_run", recording)
    return rounds


def _growths(ks):
    return [k for k in ks for _ in range(every_k.GROWTHS)]


@pytest.mark.parametrize("search_rows", [every_k.SEARCH_ROWS, 1500, 600],
                         ids=["whole-table", "as-many-rows-as-the-search", "sample-search"])
def test_every_run_takes_the_options_asked_and_each_k_counts_its_work(crowded, recorded_lloyd, recorded_runs,
                                                                         monkeypatch, capsys, search_rows):
    monkeypatch.setattr(every_k, "SEARCH_ROWS", search_rows)
    source = _source(crowded)
    ks = [3, 4, 6]
    starts = _nested_starts(source, ks, restarts=2, seed=1)
    kept = fit_every_k(source, starts, seed=4, max_iter=40, tol=1e-6, verbose=1)
    rows = [n_rows for n_rows, _, _, _ in recorded_lloyd]
    # first one cluster (the smallest k grows from it) and every restart, on the table
    assert recorded_lloyd[0][:2] == (1500, [1, 3, 3, 4, 4, 6, 6])
    if search_rows == 600:  # each k's kept run, then growths and merges, on the sample
        assert recorded_lloyd[1][:2] == (600, [1, 3, 4, 6])
        first_round = recorded_lloyd[2]
    else:
        first_round = recorded_lloyd[1]
    # growths of every k but one cluster, and of one k more (which merges back), then merges
    assert first_round[0] == min(search_rows, 1500) and first_round[1][:12] == _growths([3, 4, 6, 7])
    # merges into each k from the k after it, where that k has a run: one cluster from 3
    # centres (one way: the two cheapest merged first), 3 from 4 and 4 from 6 (MERGES ways)
    assert first_round[1][12:] == [1, 3, 3, 3, 4, 4, 4]
    assert set(rows) <= {1500, search_rows}
    if search_rows == 600:  # the ks the sample improved, run again on the table, once each
        confirmed = next(group_ks for n_rows, group_ks, _, _ in recorded_lloyd[3:] if n_rows == 1500)
        assert len(set(confirmed)) == len(confirmed) and set(confirmed) <= set(ks)
    assert all(options == {"max_iter": 40, "tol": 1e-6, "verbose": 1} for _, _, options, _ in recorded_lloyd)
    assert "Iteration" in capsys.readouterr().out
    # work: k times the Lloyd iterations (at least one) of every run of that k on the table
    for k in ks:
        work = sum(k * max(1, n_iter) for n_rows, group_ks, _, n_iters in recorded_lloyd if n_rows == 1500
                   for group_k, n_iter in zip(group_ks, n_iters) if group_k == k)
        assert kept[k].work == work
        assert kept[k].n_iter in [n_iter for _, group_ks, _, n_iters in recorded_lloyd
                                  for group_k, n_iter in zip(group_ks, n_iters) if group_k == k]
    if search_rows != 600:  # what the first round improved merges again in the second
        assert any(origin == "merge" for _, origin in recorded_runs[2])


def test_after_a_fruitless_search_growths_bring_down_every_rising_k(crowded, search_a_sample, recorded_lloyd,
                                                                     recorded_runs, monkeypatch):
    monkeypatch.setattr(every_k, "_search_a_sample", lambda *args, **kwargs: None)
    source = _source(crowded)
    ks = list(range(2, 16))
    starts = _random_starts(crowded, ks, seed=0)
    single = lloyd(source, [starts[k][0] for k in ks], max_iter=300, tol=0.0).inertia.numpy()
    rising = [k for k, before, after in zip(ks[1:], single, single[1:]) if after > before]
    assert rising, "single starts are monotone here: the table tests nothing"
    ks = ks[: ks.index(rising[-1]) + 1]  # the largest k rises too
    starts, single = {k: starts[k] for k in ks}, single[: len(ks)]
    kept = fit_every_k(source, starts, seed=3, max_iter=300, tol=0.0, verbose=0)
    inertia = np.array([kept[k].inertia for k in ks])
    assert (np.diff(inertia) <= 0).all() and (inertia <= single).all()
    # the first round grows exactly the rising ks, on the whole table, and merges nothing
    assert recorded_lloyd[1][:2] == (1500, _growths(rising))
    assert all(options == {"max_iter": 300, "tol": 0.0, "verbose": 0} for _, _, options, _ in recorded_lloyd)
    assert len(recorded_runs) > 2 and all(origin == "growth" for runs in recorded_runs[1:] for _, origin in runs)


def test_a_quiet_sweep_prints_nothing(crowded, capsys):
    source = _source(crowded)
    fit_every_k(source, _nested_starts(source, [2, 3], restarts=1, seed=0), seed=0, max_iter=300, tol=0.0)
    assert capsys.readouterr().out == ""


def test_one_cluster_a_single_k_and_as_many_clusters_as_rows(recorded_lloyd):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 4.0], [9.0, 9.0], [10.0, 9.0]])
    source = _source(X)
    one = fit_every_k(source, {1: [torch.tensor(X[[3]])]}, seed=0, max_iter=300, tol=0.0)
    assert list(one) == [1] and recorded_lloyd[0][1] == [1]  # the start given, once
    np.testing.assert_allclose(one[1].centers.numpy(), X.mean(axis=0, keepdims=True), rtol=1e-12)
    assert one[1].inertia == pytest.approx(((X - X.mean(axis=0)) ** 2).sum(), rel=1e-12)
    # k = 2 alone: the two groups {0, 1, 2} and {3, 4}, whatever the start
    two = fit_every_k(source, {2: [torch.tensor(X[[0, 1]])]}, seed=0, max_iter=300, tol=0.0)
    assert list(two) == [2]
    # (0, 0), (1, 0), (0, 4) about (1/3, 4/3): (17 + 20 + 65) / 9; (9, 9), (10, 9) about (9.5, 9): 0.5
    assert two[2].inertia == pytest.approx(102 / 9 + 0.5, rel=1e-12)
    # k = 5 on 5 rows: each row alone, and no k beyond the rows is grown
    recorded_lloyd.clear()
    five = fit_every_k(source, {5: [torch.tensor(X)]}, seed=0, max_iter=300, tol=0.0)
    assert five[5].inertia == 0.0
    assert max(k for _, group_ks, _, _ in recorded_lloyd for k in group_ks) == 5


def test_rounds_stop_where_ks_beyond_the_distinct_rows_tie_at_zero(recorded_lloyd):
    # three distinct rows: every k from 3 up has inertia 0, ties that must not start new rounds
    X = np.repeat(np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]), 4, axis=0)
    source = _source(X)
    kept = fit_every_k(source, {k: [torch.tensor(X[[0, 4, 8, 1, 5][:k]])] for k in (2, 3, 4, 5)}, seed=0,
                       max_iter=300, tol=0.0)
    assert [kept[k].inertia for k in (3, 4, 5)] == [0.0, 0.0, 0.0]
    assert len(recorded_lloyd) < 12
    # a run that only ties the kept one (or a k that only ties the k before) replaces nothing
    assert [kept[k].origin for k in (3, 4, 5)] == ["restart"] * 3


@pytest.mark.parametrize("weighted", [False, True])
def test_merges_join_the_pairs_of_least_ward_cost(weighted):
    # centres 0, 1, 10, 30 of sizes 1, 1, 2, 1 (rows repeated, or weighted) merged down to two:
    # first 0 and 1 (Ward's cost 1 * 1 / 2 * 1^2 = 0.5) into 0.5 of size 2, put last; then the
    # three ways, cheapest first: 10 with 0.5 (2 * 2 / 4 * 9.5^2 = 90.25) into 5.25, 10 with 30
    # (2 / 3 * 400) into 50 / 3, and 30 with 0.5 (2 / 3 * 29.5^2) into 31 / 3
    centers = torch.tensor([[0.0], [1.0], [10.0], [30.0]], dtype=torch.float64)
    if weighted:
        source = InMemorySource(centers.clone(), torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64), 4)
        labels = torch.tensor([0, 1, 2, 3])
    else:
        source = _source(np.array([[0.0], [1.0], [10.0], [10.0], [30.0]]))
        labels = torch.tensor([0, 1, 2, 2, 3])
    fit = every_k.KFit(centers=centers, labels=labels, inertia=0.0, n_iter=1, start=centers, origin="restart")
    ways = every_k._merged(source, fit, 2)
    assert [way[:, 0].tolist() for way in ways] == [[30.0, 5.25], [0.5, pytest.approx(50 / 3)],
                                                    [10.0, pytest.approx(31 / 3)]]


def _fit_of(centers, labels):
    centers = torch.tensor(centers, dtype=torch.float64)
    return every_k.KFit(centers=centers, labels=torch.tensor(labels), inertia=0.0, n_iter=1, start=centers,
                        origin="restart")


def test_merges_of_light_clusters_weigh_by_their_total_weight():
    # sizes 0.5, 0.5 at 0, 1 (cost 0.25 / 1 * 1 = 0.25) and 0.01, 0.01 at 100, 110 (cost
    # 1e-4 / 0.02 * 100 = 0.5): the heavy pair is cheaper, then the light one, then 1 with 100
    rows = torch.tensor([[0.0], [1.0], [100.0], [110.0]], dtype=torch.float64)
    source = InMemorySource(rows, torch.tensor([0.5, 0.5, 0.01, 0.01], dtype=torch.float64), 4)
    ways = every_k._merged(source, _fit_of(rows.tolist(), [0, 1, 2, 3]), 3)
    assert [way[:, 0].tolist() for way in ways] == [[100.0, 110.0, 0.5], [0.0, 1.0, pytest.approx(105.0)],
                                                    [0.0, 110.0, pytest.approx((0.5 + 1.0) / 0.51)]]


def test_two_centres_without_rows_merge_into_the_first():
    # centres 30, 31 hold no row: merging them costs 0 and keeps 30 (there is no mean)
    source = _source(np.array([[0.0], [10.0]]))
    ways = every_k._merged(source, _fit_of([[30.0], [31.0], [0.0], [10.0]], [2, 3]), 3)
    assert [way[:, 0].tolist() for way in ways] == [[0.0, 10.0, 30.0], [31.0, 10.0, 0.0], [31.0, 0.0, 10.0]]


@pytest.mark.parametrize("merge_rounds", [every_k._MERGE_ROUNDS, 1])
def test_each_round_grows_and_merges_from_what_the_round_before_improved(crowded, recorded_runs, monkeypatch,
                                                                          merge_rounds):
    # The rounds' rule from the module's description, replayed on each round's inertias: a run
    # is kept if better than the kept one by more than TIE; a k improved if it gained more
    # than RETRY (or got its first run); the next round grows each k whose predecessor
    # improved or which lies above it, and merges (MERGES ways; one from two centres) into
    # each k whose successor improved.
    monkeypatch.setattr(every_k, "_MERGE_ROUNDS", merge_rounds)
    source = _source(crowded)
    asked = list(range(2, 9))
    fit_every_k(source, _random_starts(crowded, asked, seed=0), seed=3, max_iter=300, tol=0.0)
    ks = [1, *asked, 9]
    below, above = dict(zip(ks[1:], ks[:-1])), dict(zip(ks[:-1], ks[1:]))
    kept = {}
    for attempt, (runs, inertias) in enumerate(zip(recorded_runs, recorded_runs.inertias)):
        improved = set()
        for (k, _), inertia in zip(runs, inertias):
            before = kept.get(k)
            if before is None or inertia < before - every_k.TIE * abs(before):
                kept[k] = inertia
                if before is None or inertia < before - every_k.RETRY * abs(before):
                    improved.add(k)
        for k in {k for k, origin in runs if origin == "growth"}:
            if kept[k] > kept[below[k]]:
                kept[k] = min(inertia for (run_k, origin), inertia in zip(runs, inertias)
                              if run_k == k and origin == "growth")
        if attempt == 0:
            to_grow, to_merge = ks[1:], [k for k in above if above[k] in kept]
        else:
            to_grow = [k for k in below if below[k] in improved or kept[k] > kept[below[k]]]
            to_merge = [k for k in above if above[k] in improved] if attempt - 1 < merge_rounds else []
        expected = [(k, "growth") for k in to_grow for _ in range(every_k.GROWTHS)]
        expected += [(k, "merge") for k in to_merge for _ in range(1 if k == 1 else every_k.MERGES)]
        if attempt + 1 < len(recorded_runs):
            assert recorded_runs[attempt + 1] == expected, f"round {attempt + 1}"
        else:
            assert not expected, "the rounds stopped with work left"
    assert len(recorded_runs) >= 3, "too few rounds here to test the rule"
