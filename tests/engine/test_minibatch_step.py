"""One mini-batch step on a hand-computed batch: the centres move by counts, rare centres
are reassigned to batch rows (at most half a batch of them), with scikit-learn's rules."""

import numpy as np
import pytest
import torch

from gpukmeans.engine.minibatch import batch_inertia, minibatch_step


def _tensor(values):
    return torch.tensor(values, dtype=torch.float64)


def _batch():
    # rows 0 and 1 nearest centre 0, row 2 (weight 2) nearest centre 1, none near centre 2
    rows = _tensor([[1.0, 0.0], [3.0, 0.0], [10.0, 12.0]])
    weights = _tensor([1.0, 1.0, 2.0])
    centers = _tensor([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])
    return rows, weights, centers


def _step(counts, ratio=0.0, verbose=False, batch=None):
    rows, weights, centers = batch or _batch()
    return minibatch_step(rows, weights, centers, counts, np.random.RandomState(0),
                          random_reassign=ratio > 0, reassignment_ratio=ratio, verbose=verbose)


def test_a_centre_moves_to_the_count_weighted_mean_and_one_without_rows_stays():
    counts = _tensor([2.0, 0.0, 5.0])
    new_centers, inertia = _step(counts)
    # centre 0: (2 * (0, 0) + (1, 0) + (3, 0)) / 4; centre 1: 2 * (10, 12) / 2
    assert new_centers.tolist() == [[1.0, 0.0], [10.0, 12.0], [100.0, 100.0]]
    assert counts.tolist() == [4.0, 2.0, 5.0]
    assert inertia == 1 + 9 + 2 * 4  # against the old centres, weighted
    rows, weights, centers = _batch()
    assert batch_inertia(rows, weights, centers) == 18.0


def test_a_rare_centre_moves_to_a_batch_row_and_restarts_at_the_smallest_kept_count(capsys):
    counts = _tensor([2.0, 0.0, 5.0])  # [4, 2, 5] after the update: 2 < 0.5 * 5
    new_centers, _ = _step(counts, ratio=0.5, verbose=True)
    rows, _, _ = _batch()
    assert new_centers[0].tolist() == [1.0, 0.0] and new_centers[2].tolist() == [100.0, 100.0]
    assert new_centers[1].tolist() in rows.tolist()
    assert counts.tolist() == [4.0, 4.0, 5.0]
    assert capsys.readouterr().out == "[MiniBatchKMeans] Reassigning 1 cluster centers.\n"


def test_a_centre_exactly_at_the_threshold_stays(capsys):
    counts = _tensor([2.0, 0.0, 5.0])  # 2 is not below 0.4 * 5
    new_centers, _ = _step(counts, ratio=0.4, verbose=True)
    assert new_centers.tolist() == [[1.0, 0.0], [10.0, 12.0], [100.0, 100.0]]
    assert counts.tolist() == [4.0, 2.0, 5.0]
    assert capsys.readouterr().out == ""


def test_at_most_half_a_batch_of_centres_moves_the_rarest_first():
    # a batch of 2 rows, both nearest centre 0: centres 1 (count 1) and 2 (count 3) are
    # below 0.5 * 12, but only int(0.5 * 2) = 1 moves: the rarer one
    rows, weights = _tensor([[1.0, 0.0], [3.0, 0.0]]), _tensor([1.0, 1.0])
    centers = _tensor([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])
    counts = _tensor([10.0, 1.0, 3.0])
    new_centers, _ = _step(counts, ratio=0.5, batch=(rows, weights, centers))
    assert new_centers[1].tolist() in rows.tolist() and new_centers[2].tolist() == [100.0, 100.0]
    assert counts.tolist() == [12.0, 3.0, 3.0]  # the moved centre restarts at the smallest kept count


@pytest.mark.parametrize("ratio", [0.0, 0.3])
def test_no_centre_below_the_threshold_changes_nothing_but_the_update(ratio):
    counts = _tensor([2.0, 0.0, 5.0])
    new_centers, _ = _step(counts, ratio=ratio)
    assert new_centers.tolist() == [[1.0, 0.0], [10.0, 12.0], [100.0, 100.0]]
    assert counts.tolist() == [4.0, 2.0, 5.0]


def test_centres_are_reassigned_only_on_the_steps_that_ask_for_it():
    # scikit-learn reassigns every few steps: on the others, a rare centre only moves by counts
    rows, weights, centers = _batch()
    counts = _tensor([2.0, 0.0, 5.0])
    new_centers, _ = minibatch_step(rows, weights, centers, counts, np.random.RandomState(0),
                                    random_reassign=False, reassignment_ratio=0.5, verbose=False)
    assert new_centers.tolist() == [[1.0, 0.0], [10.0, 12.0], [100.0, 100.0]]
    assert counts.tolist() == [4.0, 2.0, 5.0]
