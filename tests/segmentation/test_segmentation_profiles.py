"""Profiles in original units, contrasts, distinct segment names a reader reads, and the heatmap of a wide table."""

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import name_segments, profile_segments, segment_contrasts
from gpukmeans.segmentation.profiles import TRAIT_QUANTILES, trait_contrasts
from gpukmeans.segmentation.report import SHOWN_FEATURES, distinguishing_features, profile_heatmap


def test_profiles_match_a_groupby():
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"income": rng.normal(50, 10, 300), "score": rng.uniform(0, 100, 300)})
    features.loc[::7, "income"] = np.nan
    labels = rng.integers(0, 3, 300)
    profiles = profile_segments(features, labels, 3, names=["a", "b", "c"])
    grouped = features.groupby(labels)
    assert profiles["segment_name"].tolist() == ["a", "b", "c"]
    assert profiles["size"].tolist() == np.bincount(labels).tolist()
    assert profiles["share"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(profiles["income mean"], grouped["income"].mean())
    np.testing.assert_allclose(profiles["score median"], grouped["score"].median())
    np.testing.assert_allclose(
        profiles["income vs population"], grouped["income"].mean() / features["income"].mean()
    )


def test_empty_segment_has_size_zero_and_no_means():
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    profiles = profile_segments(features, np.array([0, 0, 2]), 3)
    assert profiles["size"].tolist() == [2, 0, 1]
    assert np.isnan(profiles.loc[1, "x mean"])


def test_contrasts_are_standardised_and_scale_free():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 2))
    labels = (X[:, 0] > 0).astype(int)
    contrasts = segment_contrasts(X, labels, 2, ["a", "b"])
    expected = (X[labels == 1, 0].mean() - X[:, 0].mean()) / X[:, 0].std()
    assert contrasts.loc[1, "a"] == pytest.approx(expected)
    scaled = segment_contrasts(X * [100.0, 0.01] + 7, labels, 2, ["a", "b"])
    np.testing.assert_allclose(scaled.to_numpy(), contrasts.to_numpy())


def test_textbook_mall_names():
    contrasts = pd.DataFrame(
        [[1.2, 1.2], [-0.3, 0.05], [-1.3, 1.1], [1.2, -1.3], [-1.3, -1.1]],
        columns=["Annual Income (k$)", "Spending Score (1-100)"],
    )
    assert name_segments(contrasts) == [
        "High Annual Income (k$), high Spending Score (1-100)",
        "Typical customers, below-average Annual Income (k$)",
        "Low Annual Income (k$), high Spending Score (1-100)",
        "High Annual Income (k$), low Spending Score (1-100)",
        "Low Annual Income (k$), low Spending Score (1-100)",
    ]


def test_names_show_the_strongest_features_very_high_and_in_column_order():
    contrasts = pd.DataFrame([[0.6, -2.0, 0.1, 1.7]], columns=["a", "b", "c", "d"])
    assert name_segments(contrasts) == ["Very low b, very high d"]
    assert name_segments(contrasts, max_terms=3) == ["High a, very low b, very high d"]


def test_a_segment_near_the_mean_is_typical_customers_with_its_mildest_traits():
    contrasts = pd.DataFrame(
        [[0.3, -0.28, 0.1], [0.2, 0.1, 0.05], [1.0, 0.0, 0.0]], columns=["age", "income", "visits"]
    )
    names = name_segments(contrasts)
    assert names[0] == "Typical customers, above-average age, below-average income"  # both lie MILD out
    assert names[1] == "Typical customers, above-average age"  # the second does not
    assert not any(name == "Average" or name.startswith("Average") for name in names)


def test_labels_are_how_features_read_in_names():
    contrasts = pd.DataFrame([[2.0, -0.7], [-0.6, 0.9]], columns=["CASH_ADVANCE", "Annual Income (k$)"])
    labels = {"CASH_ADVANCE": "Cash advance", "Annual Income (k$)": "Annual Income (k$)"}
    assert name_segments(contrasts, labels=labels) == [
        "Very high cash advance, low Annual Income (k$)",
        "Low cash advance, high Annual Income (k$)",
    ]


def test_a_segment_with_more_of_one_thing_and_less_of_another_is_named_for_both():
    columns = ["purchases", "purchase count", "cash advance"]
    both_sides = pd.DataFrame([[-1.4, -1.3, 0.9], [-1.4, -1.3, 0.6], [2.0, 1.9, -0.55]], columns=columns)
    assert name_segments(both_sides) == [
        "Low purchases, high cash advance",
        "Low purchases, low purchase count",  # 0.6 is under half the runner-up's 1.3
        "Very high purchases, very high purchase count",  # -0.55 is under half of 1.9
    ]


def test_clashing_names_grow_until_distinct():
    contrasts = pd.DataFrame(
        [[1.0, 0.3, 0.0], [1.0, -0.3, 0.0], [0.1, 0.0, 0.2], [-0.1, 0.0, 0.2]],
        columns=["spend", "age", "tenure"],
    )
    names = name_segments(contrasts, max_terms=1)
    assert names == [
        "High spend, above-average age",
        "High spend, below-average age",
        "Typical customers, above-average spend, above-average tenure",
        "Typical customers, below-average spend, above-average tenure",
    ]


def test_a_segment_without_customers_is_empty():
    contrasts = pd.DataFrame([[1.0], [np.nan], [-1.0]], columns=["x"])
    assert name_segments(contrasts) == ["High x", "Empty", "Low x"]


def test_identical_segments_get_numbered():
    contrasts = pd.DataFrame([[1.0], [1.0], [-1.0]], columns=["x"])
    assert name_segments(contrasts) == ["High x", "High x #2", "Low x"]


def test_category_levels_are_named_by_share_and_only_when_over_represented():
    contrasts = pd.DataFrame([[0.1, 1.5, -1.5], [0.9, -1.5, 1.5]], columns=["x", "sex=F", "sex=M"])
    shares = pd.DataFrame([[0.95, 0.05], [0.4, 0.6]], columns=["sex=F", "sex=M"])
    labels = {"x": "x", "sex=F": "sex: F", "sex=M": "sex: M"}
    assert name_segments(contrasts, shares, labels=labels) == ["Mostly sex: F", "High x, mostly sex: M"]
    shares.loc[1, "sex=M"] = 0.45
    assert name_segments(contrasts, shares, labels=labels)[1] == "High x, often sex: M"


def test_trait_contrasts_are_standardised_differences_in_original_units():
    rng = np.random.default_rng(4)
    values = np.column_stack([rng.normal(50, 10, 400), rng.uniform(0, 1, 400)])
    labels = np.repeat([0, 1], 200)
    values[labels == 1, 0] += 15
    values[::9, 1] = np.nan  # missing values are ignored
    contrasts = trait_contrasts(values, labels, 2, ["spend", "share"], n_numeric=2)
    for j, name in enumerate(["spend", "share"]):
        column = values[:, j]
        low, high = np.nanquantile(column, TRAIT_QUANTILES)
        limited = np.clip(column, low, high)
        expected = (np.nanmean(limited[labels == 1]) - np.nanmean(limited)) / np.nanstd(limited)
        assert contrasts.loc[1, name] == pytest.approx(expected)


def test_a_few_wild_values_do_not_hide_what_sets_a_segment_apart():
    # Segment 1 spends three times the others; two customers of segment 0 spend a fortune.
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [900, 100])
    spend = np.where(labels == 1, 300.0, 100.0) * rng.lognormal(0, 0.2, 1000)
    spend[:2] = 1e7
    contrasts = trait_contrasts(spend[:, None], labels, 2, ["spend"], n_numeric=1)
    raw = (spend[labels == 1].mean() - spend.mean()) / spend.std()
    assert abs(raw) < 0.5 <= contrasts.loc[1, "spend"]  # unlimited, the fortunes would make it "typical"


def test_a_rare_flag_and_category_levels_keep_their_extremes():
    labels = np.repeat([0, 1], [995, 5])
    flag = (labels == 1).astype(float)  # 0.5% of rows, all in segment 1: beyond the 99th percentile
    contrasts = trait_contrasts(np.column_stack([flag, flag]), labels, 2, ["flag", "level=x"], n_numeric=1)
    expected = (1.0 - flag.mean()) / flag.std()
    assert contrasts.loc[1, "flag"] == pytest.approx(expected)
    assert contrasts.loc[1, "level=x"] == pytest.approx(expected)


def _wide_profiles(n_features: int, k: int = 3):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(90, n_features))
    labels = np.repeat(np.arange(k), 90 // k)
    X[:, 5] += 3 * labels  # the features that set segments apart: 5 and the last one
    X[:, -1] -= 2 * labels
    names = [f"f{j}" for j in range(n_features)]
    features = pd.DataFrame(X, columns=names)
    segment_names = [f"segment {s}" for s in range(k)]
    return segment_contrasts(X, labels, k, names), profile_segments(features, labels, k, segment_names), segment_names


def test_the_report_shows_the_features_that_most_set_segments_apart():
    contrasts, _, _ = _wide_profiles(2_000)
    shown = distinguishing_features(contrasts, SHOWN_FEATURES)
    assert len(shown) == SHOWN_FEATURES
    assert {"f5", "f1999"} <= set(shown)
    assert shown == sorted(shown, key=lambda name: int(name[1:]))  # in the table's order
    narrow, _, _ = _wide_profiles(10)
    assert distinguishing_features(narrow, SHOWN_FEATURES) == list(narrow.columns)


def test_the_heatmap_does_not_grow_with_the_width_of_the_table():
    sizes = []
    for n_features in (SHOWN_FEATURES, 2_000):
        contrasts, profiles, names = _wide_profiles(n_features)
        figure = profile_heatmap(contrasts, profiles, names)
        shown = [label.get_text() for label in figure.axes[0].get_xticklabels()]
        assert len(shown) == SHOWN_FEATURES and {"f5", f"f{n_features - 1}"} <= set(shown)
        sizes.append(tuple(figure.get_size_inches()))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_trait_contrasts_hold_near_the_ends_of_float64(scale):
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 200)
    values = np.column_stack([labels * 2.0 + rng.normal(0, 1, labels.size), rng.normal(0, 1, labels.size)])
    expected = trait_contrasts(values, labels, 3, ["a", "b"], n_numeric=2)
    with np.errstate(all="raise"):  # no overflow or underflow on the way
        scaled = trait_contrasts(values * scale, labels, 3, ["a", "b"], n_numeric=2)
    np.testing.assert_allclose(scaled.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)
    assert expected.loc[2, "a"] > 1.0
