"""How ``segment`` and ``sweep_k`` choose k and say what they found: one default range,
narrowed on small tables; a minimum segment share; the structure verdict; one silhouette
per result; a reason that does not repeat k."""

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import gpukmeans._structure
from gpukmeans._structure import STRUCTURES, StructureVerdict
from gpukmeans.segmentation import InputError, read_table, segment, sweep_k
from gpukmeans.segmentation.pipeline import (
    DEFAULT_K_RANGE,
    _fit_within_share,
    _silhouette_note,
    _Stages,
    _structure_verdict,
)

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"


def _first_rows(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"mall{n}.csv"
    path.write_text("\n".join(MALL.read_text().splitlines()[: n + 1]) + "\n")
    return path


def test_segment_and_sweep_share_one_default_range():
    assert DEFAULT_K_RANGE == (2, 12)
    ks = sweep_k(MALL, seed=0).table["k"].tolist()
    assert ks == list(range(2, 13))
    assert segment(MALL, report=False).summary["k_range"] == [2, 12]


def test_a_small_table_narrows_the_range_with_a_note(tmp_path):
    ten = _first_rows(tmp_path, 10)
    note = "k range narrowed to 2:9: the most that 10 rows allow"
    run = sweep_k(ten)
    assert run.summary["k_range"] == [2, 9] and run.summary["notes"] == [note]
    assert run.table["k"].tolist() == list(range(2, 10))
    result = segment(ten, report=False)
    assert result.summary["k_range"] == [2, 9] and result.summary["notes"] == [note]
    fourteen = _first_rows(tmp_path, 14)
    assert sweep_k(fourteen).summary["notes"] == []  # 2:12 fits 14 rows
    with pytest.raises(InputError, match="k range 5:12 does not fit the table: the most that 5 rows allow is 4"):
        segment(_first_rows(tmp_path, 5), k_range=(5, 12), report=False)


def test_a_minimum_share_narrows_the_range_to_what_segments_that_large_allow(tmp_path):
    run = sweep_k(_first_rows(tmp_path, 14), min_share=0.2)  # at least 3 customers each: at most 4 segments
    assert run.summary["k_range"] == [2, 4]
    assert run.summary["notes"][0] == (
        "k range narrowed to 2:4: the most segments that can each hold 20% of the 14 customers")


def test_the_sweep_skips_ks_below_the_minimum_share_and_takes_the_nearest_allowed():
    free = sweep_k(MALL)
    recommended = free.summary["recommended_k"]
    smallest = free.table.set_index("k")["smallest_share"]
    min_share = round(float(smallest[recommended]) + 0.005, 4)  # the recommended k falls below it
    result = segment(MALL, min_share=min_share, report=False)
    summary = result.summary
    table = pd.DataFrame(summary["sweep"]).set_index("k")
    assert (table["below_min_share"] == (table["smallest_share"] < min_share)).all()
    assert table.loc[recommended, "below_min_share"]
    skipped = table.index[table["below_min_share"]].tolist()
    assert f"k = {', '.join(map(str, skipped))} skipped: a segment below the minimum share of {100 * min_share:.4g}% " \
        "of the customers" in summary["notes"]
    # The allowed k's nearest the recommendation first; one whose final fit falls short is skipped with a note.
    allowed = sorted(table.index[~table["below_min_share"]], key=lambda k: (abs(k - recommended), k))
    fell_short = [k for k in allowed
                  if any(note.startswith(f"k={k} skipped: in its final fit") for note in summary["notes"])]
    assert summary["k"] == allowed[len(fell_short)] and fell_short == allowed[:len(fell_short)]
    assert min(s["size"] for s in summary["segments"]) >= min_share * 200
    assert summary["k_reason"].startswith(f"the nearest k to the sweep's choice k={recommended} whose segments ")
    assert summary["min_share"] == min_share


def test_a_final_fit_below_the_minimum_share_moves_to_the_next_candidate():
    result = segment(MALL, k=5, report=False)  # its final fit's smallest segment: 20 of 200
    assert min(s["size"] for s in result.summary["segments"]) == 20
    frame = read_table(MALL, string_columns=["CustomerID"]).frame
    X = torch.as_tensor(np.asarray(result.model.preprocessor.transform(frame).X, dtype=np.float32))
    fit = dict(seed=0, n_init=10, max_iter=300, device="cpu", ranks=None)
    notes = []
    k, _, _ = _fit_within_share(_Stages(None), X, [5, 4], 200, 0.1025, notes, given=False, **fit)
    assert k == 4
    assert notes == ["k=5 skipped: in its final fit the smallest segment holds 10% of the customers (20 of 200), "
                     "below the minimum share of 10.25%"]
    with pytest.raises(InputError, match="no k the sweep allowed keeps every segment at or above 10.25%"):
        _fit_within_share(_Stages(None), X, [5], 200, 0.1025, [], given=False, **fit)


def test_a_given_k_whose_fit_breaks_the_minimum_share_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"at k=9 the smallest segment holds .*% of the customers \(\d+ of 200\), "
                                         r"below the minimum share of 8%; choose a smaller k"):
        segment(MALL, k=9, min_share=0.08, out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    kept = segment(MALL, k=5, min_share=0.08, report=False)
    assert min(s["share"] for s in kept.summary["segments"]) >= 0.08


def test_no_k_within_the_minimum_share_is_an_error():
    rng = np.random.default_rng(0)
    # 90 customers in one tight group, 10 far away: no k gives every segment 30%.
    table = pd.DataFrame(np.vstack([rng.normal(0, 0.1, (90, 2)), rng.normal(20, 0.1, (10, 2))]), columns=["a", "b"])
    with pytest.raises(InputError, match="no k from 2 to 3 keeps every segment at or above 30% of the customers"):
        segment(table, min_share=0.3, report=False)


def test_the_structure_verdict_judges_the_report_sample_and_the_final_silhouette(monkeypatch):
    calls = []
    real = gpukmeans._structure.assess_structure

    def recorded(X, labels, *, silhouette, seed):
        calls.append((X, labels, silhouette, seed))
        return real(X, labels, silhouette=silhouette, seed=seed)

    monkeypatch.setattr(gpukmeans._structure, "assess_structure", recorded)
    result = segment(MALL, k=5, seed=3, report=False)
    summary = result.summary
    (X, labels, silhouette, seed), = calls
    frame = read_table(MALL, string_columns=["CustomerID"]).frame
    clustered = np.asarray(result.model.preprocessor.transform(frame).X, dtype=np.float64)
    np.testing.assert_allclose(X, clustered, rtol=1e-6)  # every row: the table is smaller than the sample
    np.testing.assert_array_equal(labels, result.segments["segment"].to_numpy())
    assert silhouette == summary["metrics"]["silhouette"] and seed == 3
    verdict = real(X, labels, silhouette=silhouette, seed=seed)
    assert summary["structure"] == verdict.structure in STRUCTURES
    assert summary["structure_note"] == verdict.sentence


def test_a_verdict_the_sweep_reached_is_taken_only_for_the_same_fit():
    sample = (np.random.default_rng(0).normal(size=(50, 2)), np.repeat([0, 1], 25))
    reached = StructureVerdict("strong", "The sweep's verdict.", {"silhouette": 0.8})
    sweep = SimpleNamespace(recommended_k=2, structure=reached)
    assert _structure_verdict(sweep, 2, 0.8, sample, 0) is reached
    assert _structure_verdict(sweep, 2, 0.3, sample, 0).sentence != reached.sentence  # another fit
    assert _structure_verdict(SimpleNamespace(recommended_k=3, structure=reached), 2, 0.8, sample, 0) is not reached
    per_k = SimpleNamespace(recommended_k=2, structure={2: reached})
    assert _structure_verdict(per_k, 2, 0.8, sample, 0) is reached


def test_a_silhouette_the_sweep_scored_differently_gets_a_note():
    sweep = SimpleNamespace(table=pd.DataFrame({"k": [2, 3], "silhouette": [0.41, 0.5]}), silhouette_method="sampled")
    assert _silhouette_note(sweep, 3, {"silhouette": 0.4996}) is None  # the same to three decimals
    assert _silhouette_note(sweep, 3, {"silhouette": 0.52}) == "the sweep's own fit at k=3 scored 0.500 on a sample"
    sweep.silhouette_method = "exact"
    assert _silhouette_note(sweep, 2, {"silhouette": 0.42}) == "the sweep's own fit at k=2 scored 0.410"
    assert _silhouette_note(None, 2, {"silhouette": 0.42}) is None


def test_the_reason_for_k_does_not_repeat_it_and_shows_the_final_silhouette():
    summary = segment(MALL, report=False).summary
    assert not re.match(r"\s*k\s*=", summary["k_reason"]), summary["k_reason"]
    swept = {row["k"]: row["silhouette"] for row in summary["sweep"]}[summary["k"]]
    final = summary["metrics"]["silhouette"]
    if f"{swept:.3f}" == f"{final:.3f}":
        assert summary["silhouette_note"] is None
    else:
        assert summary["silhouette_note"] == f"the sweep's own fit at k={summary['k']} scored {swept:.3f}"
        assert summary["k_reason"].endswith(
            f"The final fit's silhouette is {final:.3f} ({summary['silhouette_note']}).")


def test_the_report_opens_with_the_verdict_and_marks_the_sweep(tmp_path):
    free = sweep_k(MALL)
    min_share = round(float(free.table["smallest_share"].min()) + 0.001, 4)  # some k fall below
    result = segment(MALL, min_share=min_share, out=tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    verdict = f"<p class='verdict {result.summary['structure']}'>"
    assert verdict in page and page.index(verdict) < page.index("<h2>Segments</h2>")
    assert result.summary["structure_note"] in page
    for note in result.summary["notes"]:
        assert f"<li>{note}</li>" in page
    below = sum(row["below_min_share"] for row in result.summary["sweep"])
    assert below and page.count("<td>below</td>") == below
    assert f"<tr class='chosen'><td>{result.summary['k']}</td>" in page
    quality = page[page.index("<h2>Quality</h2>"):page.index("<h2>Sweep</h2>")]
    assert f"silhouette: {result.summary['metrics']['silhouette']:.3f}" in quality
    assert quality.count("silhouette: ") == 1
