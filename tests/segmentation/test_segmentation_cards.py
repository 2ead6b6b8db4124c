"""The report's card per segment: traits quoted from the profiles, one per column, in order."""

import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import segment
from gpukmeans.segmentation.cards import distinctive_features, segment_cards, segment_traits
from gpukmeans.segmentation.profiles import MILD

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"


@pytest.fixture(scope="module")
def mall():
    return segment(MALL, categorical=["Genre"], k=5, report=False)


def _levels(result):
    return {f"{c}={level}": c for c, levels in result.model.preprocessor.categories_.items() for level in levels}


def test_traits_are_the_strongest_contrasts_one_per_column(mall):
    levels = _levels(mall)
    for s in range(5):
        contrasts = mall.contrasts.iloc[s]
        features = distinctive_features(contrasts, levels)
        strengths = [abs(contrasts[f]) for f in features]
        assert all(strength >= MILD for strength in strengths)
        columns = [levels.get(f, f) for f in features]
        assert len(columns) == len(set(columns)), features
        # Strongest first, and nothing left out that is stronger than the last one listed.
        by_column = {}
        for feature, value in contrasts.abs().items():
            column = levels.get(feature, feature)
            by_column[column] = max(by_column.get(column, 0.0), value)
        assert sorted(by_column.values(), reverse=True)[:len(features)] == pytest.approx(
            sorted(strengths, reverse=True))


def test_a_category_level_is_named_by_what_the_segment_holds(mall):
    levels = _levels(mall)
    profiles = mall.profiles.set_index("segment")
    for s in range(5):
        for feature in distinctive_features(mall.contrasts.iloc[s], levels):
            if feature in levels:  # Genre splits these segments: the level they are made of is named
                assert profiles.loc[s, f"{feature} mean"] == 1.0


def test_trait_figures_are_the_profiles_means_against_the_population(mall):
    profiles = mall.profiles.set_index("segment")
    population_age = float(pd.read_csv(MALL)["Age"].mean())
    for s in range(5):
        for phrase in segment_traits(mall.contrasts.iloc[s], profiles.loc[s], {}, _levels(mall)):
            if phrase.startswith("Age:"):
                mean = profiles.loc[s, "Age mean"]
                assert phrase == (f"Age: {mean:.1f} on average, {mean / population_age:.2f}x the population's "
                                  f"{population_age:.1f}")
            elif "Genre" in phrase:
                assert re.fullmatch(r"100% Genre=(Female|Male), against (56|44)% overall", phrase), phrase


def test_a_segment_like_the_population_says_so():
    contrasts = pd.Series({"a": 0.1, "b": -0.2})
    profile = pd.Series({"a mean": 1.0, "a vs population": 1.0, "b mean": 2.0, "b vs population": 1.0})
    assert segment_traits(contrasts, profile, {}) == []


def test_a_population_mean_of_zero_is_described_in_standard_deviations():
    contrasts = pd.Series({"balance": -1.25})
    profile = pd.Series({"balance mean": -3.0, "balance vs population": np.nan})
    assert segment_traits(contrasts, profile, {"balance": "Balance"}) == [
        "Balance: -3.0 on average (1.2 standard deviations below the population)"
    ]


def test_cards_show_each_segments_stability_and_rule(mall):
    html = segment_cards(mall)
    assert html.count("class='card'") == 5
    for item in mall.summary["segments"]:
        assert f"{item['stability']:.2f}: {item['stability_reading']}</span>" in html
        assert (f"<span class='rule'>{escape(item['rule'])}</span> "
                f"(selects {100 * item['rule_fidelity']:.0f}% of its customers)") in html


def test_cards_leave_out_what_the_run_skipped():
    result = segment(MALL, categorical=["Genre"], k=3, stability=0, report=False)
    assert "Stability" not in segment_cards(result)


def test_the_report_opens_with_the_cards(tmp_path):
    segment(MALL, categorical=["Genre"], k=3, out=tmp_path / "run")
    html = (tmp_path / "run" / "report.html").read_text()
    assert html.index("<h2>Segments</h2>") < html.index("class='card'") < html.index("<h2>Figures</h2>")
    assert html.count("class='card'") == 3
