"""The structure verdict: silhouette bands, and "none" where uniform reference data splits as well."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from gpukmeans._structure import (
    REFERENCE_ROWS,
    REFERENCE_Z,
    STRUCTURES,
    StructureVerdict,
    assess_structure,
    principal_box,
    structure_from_silhouette,
    uniform_references,
)

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
MALL_COLUMNS = ["Age", "Annual Income (k$)", "Spending Score (1-100)"]


def _verdict(X, k, seed=0):
    labels = SklearnKMeans(k, n_init=3, random_state=0).fit_predict(X)
    return assess_structure(X, labels, silhouette=silhouette_score(X, labels), seed=seed)


@pytest.mark.parametrize("k", [2, 4, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_uniform_noise_has_no_structure(k, seed):
    X = np.random.default_rng(seed).uniform(size=(3000, 3))
    verdict = _verdict(X, k, seed)
    assert verdict.structure == "none"
    assert verdict.details["reference_z"] <= REFERENCE_Z
    # a silhouette alone would have called some of these splits "weak" structure
    assert "evenly spread" in verdict.sentence


@pytest.mark.parametrize("k", [2, 3, 5])
def test_a_single_gaussian_has_no_structure(k):
    X = np.random.default_rng(2).normal(size=(4000, 5)) * [3.0, 2.0, 1.0, 1.0, 0.5]
    verdict = _verdict(X, k)
    assert verdict.structure == "none"
    assert verdict.details["reference_z"] < 0 and verdict.details["sum_of_squares_z"] < 0


def test_a_skewed_cloud_has_no_structure_though_its_split_has_a_fair_silhouette():
    X = np.random.default_rng(3).lognormal(0.0, 0.5, size=(1500, 3))
    verdict = _verdict(X, 4, seed=0)
    assert verdict.structure == "none" and verdict.details["sum_of_squares_z"] < 0


def test_well_separated_blobs_are_strong():
    X, y = make_blobs(3000, 4, centers=5, cluster_std=0.6, center_box=(-20, 20), random_state=1)
    verdict = assess_structure(X, y, silhouette=silhouette_score(X, y), seed=0)
    assert verdict.structure == "strong"
    assert verdict.details["reference_z"] > 5 * REFERENCE_Z and verdict.details["sum_of_squares_z"] > 0
    assert verdict.sentence == "The 5 segments are clearly separated."


def test_mall_customers_have_some_structure(mall_three_columns, mall_income_spending):
    for X, k, band in ((mall_three_columns, 5, "weak"), (mall_three_columns, 6, "weak"),
                       (mall_income_spending, 5, "reasonable")):
        for seed in range(3):
            verdict = _verdict(X, k, seed)
            assert verdict.structure == band
            assert verdict.details["reference_z"] > REFERENCE_Z


def test_the_silhouette_bands_of_kaufman_and_rousseeuw():
    assert [structure_from_silhouette(s) for s in (0.71, 0.7, 0.51, 0.5, 0.26, 0.25, None, math.nan)] == [
        "strong", "reasonable", "reasonable", "weak", "weak", "none", "none", "none"]
    assert STRUCTURES == ("strong", "reasonable", "weak", "none")


def test_clustered_rows_with_a_low_silhouette_are_none_by_the_bands():
    X, y = make_blobs(3000, 4, centers=5, cluster_std=0.6, center_box=(-20, 20), random_state=1)
    verdict = assess_structure(X, y, silhouette=0.2, seed=0)
    assert verdict.structure == "none" and verdict.details["reference_z"] > REFERENCE_Z
    assert "arbitrary split" in verdict.sentence and "evenly spread" not in verdict.sentence


def test_details_are_json_ready_and_the_verdict_serialises():
    X, y = make_blobs(600, 3, centers=3, random_state=0)
    verdict = assess_structure(X, y, silhouette=None, seed=0)
    text = json.dumps(verdict.to_dict(), allow_nan=False)
    record = json.loads(text)
    assert record["structure"] == "none" and record["silhouette"] is None and record["silhouette_band"] == "none"
    assert record["rows"] == 600 and record["references"] > 0
    assert isinstance(verdict, StructureVerdict)


def test_one_segment_or_identical_rows_have_no_structure():
    X = np.random.default_rng(0).normal(size=(50, 2))
    assert assess_structure(X, np.zeros(50, dtype=int), silhouette=None).structure == "none"
    same = np.ones((40, 3))
    verdict = assess_structure(same, np.arange(40) % 2, silhouette=0.9)
    assert verdict.structure == "none"
    json.dumps(verdict.to_dict(), allow_nan=False)


def test_the_verdict_is_reproducible_and_uses_a_bounded_sample():
    X, y = make_blobs(30_000, 3, centers=4, random_state=0)
    first = assess_structure(X, y, silhouette=0.6, seed=3)
    assert first.to_dict() == assess_structure(X, y, silhouette=0.6, seed=3).to_dict()
    assert first.details["rows"] == REFERENCE_ROWS


def test_references_fill_the_principal_box():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 3)) @ np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.2]])
    turned, low, high = principal_box(rows)
    assert np.allclose(turned.mean(axis=0), 0.0) and np.allclose(np.cov(turned.T), np.diag(np.diag(np.cov(turned.T))))
    references = uniform_references(rows, 4, rng)
    assert references.shape == (4, 500, 3)
    assert (references >= low).all() and (references <= high).all()


def test_mismatched_labels_are_a_clear_error():
    with pytest.raises(ValueError, match="one label per row"):
        assess_structure(np.zeros((10, 2)), np.zeros(9), silhouette=0.5)


@pytest.fixture
def mall_three_columns():
    return StandardScaler().fit_transform(pd.read_csv(MALL)[MALL_COLUMNS])
