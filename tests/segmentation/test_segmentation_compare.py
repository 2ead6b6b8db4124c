"""Migration between snapshots: a planted migration counted exactly between files written by
the real ``segment`` and ``predict``, segments of different models matched by centres or by
overlap, customers in one file only, and the flow chart."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _robustness import run_cli

from gpukmeans.segmentation import predict, segment
from gpukmeans.segmentation.compare import LEFT, NEW_CUSTOMERS, compare_segments

CENTRES = {"A": (0.0, 0.0), "B": (10.0, 0.0), "C": (0.0, 10.0)}
MOVED = {("A", "B"): 20, ("B", "C"): 10}
LEFT_C, NEW_A = 15, 25


def _customers(blobs: list[str], ids: list[str], rng) -> pd.DataFrame:
    xy = np.array([CENTRES[b] for b in blobs]) + rng.normal(0, 1, (len(blobs), 2))
    return pd.DataFrame({"customer": ids, "spend": 100 + 10 * xy[:, 0], "visits": 20 + xy[:, 1]})


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """Snapshot 1: 300 customers in each of three blobs. Snapshot 2: 20 of A moved to B,
    10 of B to C, 15 of C gone, 25 new customers in A. Segmented by ``segment`` on the
    first, by ``predict`` with its model on the second, and refitted on the second."""
    folder = tmp_path_factory.mktemp("snapshots")
    rng = np.random.default_rng(11)
    blobs = [b for b in "ABC" for _ in range(300)]
    ids = [f"C{i:04d}" for i in range(len(blobs))]
    first = _customers(blobs, ids, rng)
    later = list(blobs)
    for (source, target), count in MOVED.items():
        for i in [i for i, b in enumerate(blobs) if b == source][:count]:
            later[i] = target
    gone = [i for i, b in enumerate(blobs) if b == "C"][-LEFT_C:]
    keep = [i for i in range(len(blobs)) if i not in gone]
    second = pd.concat([
        _customers([later[i] for i in keep], [ids[i] for i in keep], rng),
        _customers(["A"] * NEW_A, [f"N{i:03d}" for i in range(NEW_A)], rng),
    ]).sample(frac=1, random_state=0)  # another order: the join is on the ID
    first.to_csv(folder / "q1.csv", index=False)
    second.to_csv(folder / "q2.csv", index=False)
    segment(folder / "q1.csv", k=3, out=folder / "q1", report=False)
    (folder / "predicted").mkdir()
    predict(folder / "q1", folder / "q2.csv", out=folder / "predicted" / "q2.csv")
    segment(folder / "q2.csv", k=3, out=folder / "q2", report=False, seed=5)
    return folder, dict(zip(ids, blobs))


def _names_by_blob(folder, segments_file, blob_of) -> dict:
    """Each blob's segment name in a segments file (through the customers of snapshot 1)."""
    segments = pd.read_csv(folder / segments_file, dtype={"customer": str})
    segments["blob"] = segments["customer"].map(blob_of)
    return segments.dropna().groupby("blob")["segment_name"].agg(lambda s: s.mode()[0]).to_dict()


def test_a_planted_migration_is_counted_exactly(snapshots, tmp_path):
    folder, blob_of = snapshots
    comparison = compare_segments(folder / "q1" / "segments.csv", folder / "predicted" / "q2.csv",
                                  out=tmp_path / "t.csv")
    assert comparison.method == "name"  # predict used q1's model: segment numbers and names agree
    old = _names_by_blob(folder, "q1/segments.csv", blob_of)
    expected = pd.DataFrame(0, index=list(old.values()) + [NEW_CUSTOMERS], columns=list(old.values()) + [LEFT])
    for blob in "ABC":
        expected.loc[old[blob], old[blob]] = 300
    for (source, target), count in MOVED.items():
        expected.loc[old[source], old[source]] -= count
        expected.loc[old[source], old[target]] = count
    expected.loc[old["C"], old["C"]] -= LEFT_C
    expected.loc[old["C"], LEFT] = LEFT_C
    expected.loc[NEW_CUSTOMERS, old["A"]] = NEW_A
    written = pd.read_csv(tmp_path / "t.csv").set_index("old segment")
    pd.testing.assert_frame_equal(written.loc[expected.index, expected.columns], expected, check_names=False)
    assert written.shape == expected.shape
    in_both = 900 - LEFT_C
    assert comparison.in_both == in_both
    assert comparison.stayed == pytest.approx((in_both - sum(MOVED.values())) / in_both)
    assert comparison.flow_lines()[0] == f"{old['A']} -> {old['B']}: 20 (6.7% of {old['A']})"
    assert f"{old['C']} -> {LEFT}: 15 (5.0% of {old['C']})" in comparison.flow_lines()


def test_a_refitted_model_is_matched_by_its_centres(snapshots):
    folder, blob_of = snapshots
    comparison = compare_segments(folder / "q1" / "segments.csv", folder / "q2" / "segments.csv")
    assert comparison.method == "centres"
    old = _names_by_blob(folder, "q1/segments.csv", blob_of)
    new = _names_by_blob(folder, "q2/segments.csv", blob_of)
    assert comparison.matching == {old[b]: new[b] for b in "ABC"}
    assert comparison.stayed == pytest.approx((885 - 30) / 885)


def test_segments_without_models_are_matched_by_overlap(snapshots, tmp_path):
    folder, blob_of = snapshots
    segments = pd.read_csv(folder / "predicted" / "q2.csv", dtype={"customer": str})
    permutation = {0: 2, 1: 0, 2: 1}
    segments["segment"] = segments["segment"].map(permutation)
    segments["segment_name"] = "Group " + segments["segment"].astype(str)
    segments.to_csv(tmp_path / "renamed.csv", index=False)
    shutil.copy(folder / "q1" / "segments.csv", tmp_path / "old.csv")  # no model beside either
    comparison = compare_segments(tmp_path / "old.csv", tmp_path / "renamed.csv")
    assert comparison.method == "overlap"
    names = json.loads((folder / "q1" / "summary.json").read_text())["segments"]
    assert comparison.matching == {item["name"]: f"Group {permutation[item['segment']]}" for item in names}


def test_ids_in_one_file_only_add_no_row_or_column_when_there_are_none(snapshots):
    folder, _ = snapshots
    comparison = compare_segments(folder / "q1" / "segments.csv", folder / "q1" / "segments.csv")
    assert NEW_CUSTOMERS not in comparison.counts.index and LEFT not in comparison.counts.columns
    assert comparison.stayed == 1.0 and comparison.flows == []


def test_the_command_writes_the_table_and_the_flow_chart(snapshots, tmp_path):
    folder, _ = snapshots
    run = run_cli(["compare", str(folder / "q1" / "segments.csv"), str(folder / "predicted" / "q2.csv"),
                   "--out", str(tmp_path / "t.csv"), "--html", str(tmp_path / "t.html")], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "customers in both files stayed in their segment" in run.stdout and "-> " in run.stdout
    page = (tmp_path / "t.html").read_text()
    assert page.count("<path d=") >= 6 and "<svg" in page and "(new customers)" in page and "(left)" in page
    assert pd.read_csv(tmp_path / "t.csv").shape == (4, 5)


def test_ids_that_match_only_as_numbers_are_pointed_out(tmp_path):
    old = pd.DataFrame({"customer": ["0001", "0002", "0003"], "segment": [0, 1, 1],
                        "segment_name": ["Low", "High", "High"], "distance": [0.1, 0.2, 0.3]})
    new = old.assign(customer=["1", "2", "3"])
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)
    comparison = compare_segments(tmp_path / "old.csv", tmp_path / "new.csv")
    assert comparison.notes == [
        f"no customer is in both {tmp_path / 'old.csv'} and {tmp_path / 'new.csv'}; 3 IDs match when read as "
        "numbers (such as '0001'): IDs are compared as written, so write both files with the same ID format"
    ]
    assert comparison.counts.loc["(new customers)"].sum() == 3
