"""Choosing k: the gap statistic and the rule that weighs the criteria."""

import numpy as np
import pandas as pd
from sklearn.datasets import make_blobs

from gpukmeans._k_choice import CH_TOLERANCE, criteria, gap_statistic, recommend


def _table(silhouette, ch, gap=None, gap_sd=None, low=None, high=None, first_k=2):
    ks = list(range(first_k, first_k + len(silhouette)))
    silhouette = np.asarray(silhouette, dtype=float)
    return pd.DataFrame({
        "k": ks, "inertia": np.linspace(100, 10, len(ks)), "silhouette": silhouette,
        "silhouette_low": silhouette if low is None else low, "silhouette_high": silhouette if high is None else high,
        "calinski_harabasz": ch, "davies_bouldin": np.ones(len(ks)),
        "gap": np.full(len(ks), np.nan) if gap is None else gap,
        "gap_sd": np.full(len(ks), np.nan) if gap_sd is None else gap_sd,
    })


# k:               2     3     4     5     6     7
SILHOUETTE = [0.50, 0.62, 0.58, 0.55, 0.40, 0.38]
CH_PEAK_AT_5 = [100, 150, 180, 200, 160, 150]


def test_each_criterion_names_a_k():
    gap = [0.2, 0.5, 0.9, 0.85, 0.7, 0.6]
    gap_sd = [0.05, 0.05, 0.1, 0.05, 0.05, 0.05]
    picks = criteria(_table(SILHOUETTE, CH_PEAK_AT_5, gap=gap, gap_sd=gap_sd), knee_k=4)
    # the gap's smallest k within one standard error of its best (0.9 - 0.1): 4
    assert picks == {"silhouette": 3, "calinski_harabasz": 5, "gap": 4, "knee": 4}
    assert criteria(_table([np.nan] * 6, [np.nan] * 6), knee_k=None) == {}


def test_calinski_harabasz_names_the_smallest_k_within_its_tolerance():
    best = 200.0
    just_in, just_out = best * (1 - CH_TOLERANCE) + 1e-6, best * (1 - CH_TOLERANCE) - 1e-6
    assert criteria(_table(SILHOUETTE, [100, just_out, just_in, best, 100, 100]), None)["calinski_harabasz"] == 4
    assert criteria(_table(SILHOUETTE, [100, just_out, 150, best, just_in, 100]), None)["calinski_harabasz"] == 5


def test_sampled_silhouettes_tied_with_the_best_name_the_smallest():
    silhouette = [0.50, 0.60, 0.61, 0.62, 0.40, 0.30]
    low = [v - 0.015 for v in silhouette]
    high = [v + 0.015 for v in silhouette]
    assert criteria(_table(silhouette, CH_PEAK_AT_5, low=low, high=high), None)["silhouette"] == 3
    assert criteria(_table(silhouette, CH_PEAK_AT_5), None)["silhouette"] == 5  # exact: no ties


def test_the_k_most_criteria_name_wins_and_the_reason_names_every_one():
    gap = [0.2, 0.5, 0.6, 0.9, 0.7, 0.6]
    table = _table(SILHOUETTE, CH_PEAK_AT_5, gap=gap, gap_sd=[0.05] * 6)
    k, reason = recommend(table, 4, "exact")
    assert k == 5
    assert reason == ("k=5: chosen by Calinski-Harabasz and the gap statistic; silhouette 0.550; "
                      "the silhouette prefers k=3 and the inertia knee k=4.")


def test_a_tie_goes_to_the_better_silhouette():
    table = _table(SILHOUETTE, CH_PEAK_AT_5, gap=[0.2, 0.5, 0.6, 0.9, 0.7, 0.6], gap_sd=[0.05] * 6)
    k, reason = recommend(table, 3, "exact")  # 3: silhouette and knee; 5: Calinski-Harabasz and gap
    assert k == 3
    assert "as many choose k=5 (Calinski-Harabasz and the gap statistic), and the better silhouette decides" in reason


def test_every_criterion_agreeing_is_said_so():
    table = _table(SILHOUETTE, [100, 200, 150, 140, 130, 120], gap=[0.2, 0.9, 0.6, 0.5, 0.4, 0.3],
                   gap_sd=[0.05] * 6)
    assert recommend(table, 3, "exact") == (3, "k=3: chosen by every criterion (the silhouette, Calinski-Harabasz, "
                                               "the gap statistic and the inertia knee); silhouette 0.620.")


def test_a_sampled_silhouette_shows_its_interval_and_a_simplified_one_is_named():
    silhouette = [0.50, 0.62, 0.58, 0.55, 0.40, 0.38]
    low = [v - 0.004 for v in silhouette]
    high = [v + 0.004 for v in silhouette]
    _, reason = recommend(_table(silhouette, CH_PEAK_AT_5, low=low, high=high), None, "sampled")
    assert "silhouette 0.620 [0.616, 0.624]" in reason
    _, reason = recommend(_table(silhouette, CH_PEAK_AT_5), None, "simplified")
    assert "the simplified silhouette" in reason


def test_without_a_silhouette_a_tie_goes_to_the_knee_else_the_smaller_k():
    nan = [np.nan] * 6
    table = _table(nan, CH_PEAK_AT_5)
    assert recommend(table, 5, "none")[0] == 5
    k, reason = recommend(table, 2, "none")  # 5 (Calinski-Harabasz) and 2 (the knee) tie
    assert k == 2 and "the knee decides" in reason and "no silhouette was computed" in reason
    assert recommend(_table(nan, CH_PEAK_AT_5, gap=[0.9, 0.1, 0.1, 0.1, 0.1, 0.1], gap_sd=[0.01] * 6),
                     None, "none")[0] == 2


def test_nothing_to_choose_by_gives_the_smallest_k():
    table = _table([np.nan, np.nan], [np.nan, np.nan], first_k=1)
    k, reason = recommend(table, None, "none")
    assert k == 1 and "nothing to choose by" in reason


def test_the_gap_rises_to_the_planted_k_and_is_flat_on_noise():
    X, _ = make_blobs(1000, 3, centers=4, cluster_std=0.5, center_box=(-10, 10), random_state=5)
    ks = [1, 2, 3, 4, 5, 6]
    gap = gap_statistic(X, ks, seed=0)
    assert gap.ks == ks and np.isfinite(gap.gap).all() and (gap.sd > 0).all()
    assert int(np.argmax(gap.gap)) == ks.index(4)
    noise = np.random.default_rng(0).uniform(size=(1000, 3))
    flat = gap_statistic(noise, ks, seed=0)
    assert np.ptp(flat.gap) < 0.1


def test_the_gap_is_reproducible_and_skips_ks_beyond_the_sample():
    X = np.random.default_rng(1).normal(size=(30, 2))
    first = gap_statistic(X, [2, 5, 30, 40], seed=4)
    again = gap_statistic(X, [2, 5, 30, 40], seed=4)
    np.testing.assert_array_equal(first.gap, again.gap)
    assert np.isfinite(first.gap[:2]).all() and np.isnan(first.gap[2:]).all()
    assert np.isnan(first.of(40)[0])
