"""Each segment's stability (Hennig's bootstrap mean Jaccard): high for real groups, low
for segments forced onto noise, the same for the same seed, and written to profiles.csv,
summary.json, the terminal and the report; ``--stability 0`` skips it."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import gpukmeans
from gpukmeans.segmentation import InputError, segment
from gpukmeans.segmentation.stability import (
    best_jaccards,
    mean_over_resamples,
    segment_stability,
    stability_reading,
)
from gpukmeans_cli.app import app

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"


def _labels(X: torch.Tensor, k: int) -> torch.Tensor:
    return torch.as_tensor(gpukmeans.KMeans(n_clusters=k, n_init=3, random_state=0, device="cpu").fit(X).labels_)


def _blobs() -> torch.Tensor:
    rng = np.random.default_rng(0)
    means = [[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]]
    return torch.tensor(np.concatenate([rng.normal(m, 0.6, size=(150, 3)) for m in means]), dtype=torch.float32)


def test_well_separated_blobs_are_stable():
    X = _blobs()
    stability = segment_stability(X, _labels(X, 4), 4, resamples=10, restarts=2, seed=0)
    assert stability.values.shape == (4,) and (stability.values > 0.9).all(), stability.values
    assert stability.readings() == ["stable"] * 4 and stability.dissolving() == []
    assert stability.method == "bootstrap of all 600 rows" and stability.resamples == 10


def test_uniform_noise_forced_into_five_segments_is_clearly_less_stable():
    noise = torch.tensor(np.random.default_rng(0).uniform(size=(600, 4)), dtype=torch.float32)
    stability = segment_stability(noise, _labels(noise, 5), 5, resamples=20, restarts=3, seed=0)
    # about 0.64 at this seed (0.44 to 0.64 over four); blobs score 1.0
    assert stability.values.mean() < 0.75, stability.values


def test_a_planted_blob_is_stable_and_the_halves_of_a_cloud_are_not():
    rng = np.random.default_rng(1)
    blob = rng.normal([12, 0], 0.4, size=(200, 2))
    cloud = rng.normal(size=(150, 2))  # round: k-means cuts it in two along any direction
    X = torch.tensor(np.concatenate([blob, cloud]), dtype=torch.float32)
    labels = _labels(X, 3)
    blob_segment = int(np.bincount(labels[:200].numpy()).argmax())
    stability = segment_stability(X, labels, 3, resamples=20, restarts=3, seed=0)
    halves = [s for s in range(3) if s != blob_segment]
    assert stability.values[blob_segment] > 0.95, stability.values
    # about 0.66 at this seed (0.64 to 0.86 over seeds and cloud sizes): never "stable"
    assert (stability.values[halves] < 0.8).all(), stability.values


def test_the_same_seed_gives_the_same_numbers_whatever_the_chunk_size():
    noise = torch.tensor(np.random.default_rng(1).uniform(size=(300, 3)), dtype=torch.float32)
    labels = _labels(noise, 4)
    first = segment_stability(noise, labels, 4, resamples=6, restarts=2, seed=3)
    again = segment_stability(noise, labels, 4, resamples=6, restarts=2, seed=3)
    in_pieces = segment_stability(noise, labels, 4, resamples=6, restarts=2, seed=3, chunk_size=37)
    other_seed = segment_stability(noise, labels, 4, resamples=6, restarts=2, seed=4)
    assert np.array_equal(first.values, again.values) and np.array_equal(first.values, in_pieces.values)
    assert not np.array_equal(first.values, other_seed.values)


def test_a_large_table_is_resampled_from_a_stated_sample():
    X = _blobs()
    stability = segment_stability(X, _labels(X, 4), 4, resamples=4, seed=0, max_rows=250)
    assert stability.method == "bootstrap of 250 rows sampled from 600"
    assert (stability.values > 0.9).all()


def test_best_jaccards_match_each_segment_to_its_closest_refit_cluster():
    original = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    refit = np.array([1, 1, 1, 0, 0, 0, 2, 2])
    present = np.array([True, True, True, True, True, True, False, False])
    best = best_jaccards(original, refit, present, 3)
    # segment 0 {0,1,2,3} against cluster 1 {0,1,2}: 3/4; segment 1 {4,5} against cluster 0 {3,4,5}: 2/3
    np.testing.assert_allclose(best[:2], [0.75, 2 / 3])
    assert math.isnan(best[2])  # no member drawn: nothing to match


def test_the_mean_skips_resamples_without_members_and_a_segment_never_drawn_scores_zero():
    best = np.array([[1.0, np.nan, np.nan], [0.5, 0.8, np.nan]])
    np.testing.assert_allclose(mean_over_resamples(best), [0.75, 0.8, 0.0])


@pytest.mark.parametrize("value, reading", [
    (0.95, "stable"), (0.85, "fairly stable"), (0.75, "fairly stable"), (0.7, "a pattern without clear boundaries"),
    (0.6, "a pattern without clear boundaries"), (0.59, "dissolves"), (0.0, "dissolves"),
])
def test_hennigs_readings(value, reading):
    assert stability_reading(value) == reading


def test_segment_writes_stability_to_the_profiles_and_summary(tmp_path):
    result = segment(MALL, k=5, columns=["Annual Income (k$)", "Spending Score (1-100)"], stability=8,
                     out=tmp_path / "out", report=False)
    profiles = pd.read_csv(tmp_path / "out" / "profiles.csv")
    assert list(profiles.columns[:5]) == ["segment", "segment_name", "size", "share", "stability"]
    assert profiles["stability"].between(0, 1).all()
    text = (tmp_path / "out" / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["stability_resamples"] == 8 and summary["stability_method"] == "bootstrap of all 200 rows"
    for item, value in zip(summary["segments"], profiles["stability"]):
        assert item["stability"] == pytest.approx(value)
        assert item["stability_reading"] == stability_reading(value)
    assert result.timings["stability"] > 0


def test_stability_zero_writes_no_column_and_says_it_was_skipped(tmp_path):
    result = segment(MALL, k=3, stability=0, out=tmp_path / "out", report=False)
    assert "stability" not in pd.read_csv(tmp_path / "out" / "profiles.csv").columns
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stability_resamples"] == 0 and summary["stability_method"] == "skipped (--stability 0)"
    assert all("stability" not in item for item in summary["segments"])
    assert "stability" not in result.timings


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_a_bad_number_of_resamples_is_an_input_error(bad):
    with pytest.raises(InputError, match="stability must be a whole number of resamples"):
        segment(MALL, k=3, stability=bad, report=False)


def test_the_command_line_option_prints_and_writes_stability(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(MALL), "--k", "4", "--stability", "5", "--out", str(out),
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.split()[:2] == ["segment", "customers"])
    assert header.split()[3] == "stability"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stability_resamples"] == 5
    assert "stability" in pd.read_csv(out / "profiles.csv").columns

    bad = CliRunner().invoke(app, ["segment", str(MALL), "--stability", "-2", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == "error: stability must be a whole number of resamples (0 skips it), got -2"
    assert not (tmp_path / "bad").exists()


def test_the_command_line_warns_about_segments_that_dissolve(tmp_path):
    table = tmp_path / "noise.csv"
    rng = np.random.default_rng(1)
    pd.DataFrame(rng.uniform(size=(400, 4)), columns=["a", "b", "c", "d"]).to_csv(table, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["segment", str(table), "--k", "5", "--out", str(out), "--no-report",
                                      "--log", "none"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    weak = [item for item in summary["segments"] if item["stability"] < 0.6]
    assert weak, summary["segments"]
    warning = [line for line in result.stderr.splitlines() if "dissolve" in line]
    assert len(warning) == 1 and all(f"{item['stability']:.2f}" in warning[0] for item in weak)


def test_the_report_shows_each_segments_stability_with_its_reading(tmp_path):
    segment(MALL, k=3, stability=4, out=tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<th title='mean Jaccard" in html
    profiles = pd.read_csv(tmp_path / "out" / "profiles.csv")
    for value in profiles["stability"]:
        assert f"{value:.2f} ({stability_reading(value)})" in html


def test_overlapping_segments_that_all_come_back_are_called_a_consistent_split():
    from gpukmeans.segmentation.stability import Stability, structure_sentence

    weak = "The 3 segments overlap a lot: treat them as a convenient split, not natural groups."
    stable = Stability(values=np.array([0.95, 0.9, 0.88]), resamples=20, method="bootstrap of all 300 rows")
    one_dissolves = Stability(values=np.array([0.95, 0.9, 0.5]), resamples=20, method="bootstrap of all 300 rows")
    assert structure_sentence("weak", weak, 3, stable).startswith(
        "The 3 segments overlap (a weak silhouette), but every one comes back when the customers are resampled")
    assert structure_sentence("weak", weak, 3, one_dissolves) == weak
    assert structure_sentence("weak", weak, 3, None) == weak
    assert structure_sentence("strong", "The 3 segments are clearly separated.", 3, stable) == (
        "The 3 segments are clearly separated.")
