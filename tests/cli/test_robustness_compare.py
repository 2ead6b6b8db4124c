"""The robustness corpus for ``gpukmeans compare``: each class of bad input fails with one
``error:`` line naming the file (and the ID or column), exit code 2, and writes nothing."""

from __future__ import annotations

import pandas as pd
import pytest
from _robustness import assert_fails_and_touches_nothing


def _segments(path, key="customer", ids=("C1", "C2", "C3"), columns=("segment", "segment_name", "distance")):
    frame = pd.DataFrame({key: list(ids), "segment": [0, 1, 0], "segment_name": ["Low", "High", "Low"],
                          "distance": [0.1, 0.2, 0.3]})
    frame[[key, *columns]].to_csv(path, index=False)
    return path.name


@pytest.fixture
def folder(tmp_path):
    _segments(tmp_path / "old.csv")
    return tmp_path


def test_files_without_a_common_id_column_are_refused(folder):
    new = _segments(folder / "new.csv", key="row", ids=(0, 1, 2))
    assert_fails_and_touches_nothing(["compare", "old.csv", new, "--out", "t.csv"],
                                     "old.csv identifies customers by 'customer'", "new.csv by 'row'",
                                     "no common ID column", cwd=folder)


def test_an_id_given_twice_is_refused_naming_the_file_and_the_id(folder):
    new = _segments(folder / "new.csv", ids=("C1", "C7", "C7"))
    assert_fails_and_touches_nothing(["compare", "old.csv", new, "--out", "t.csv"],
                                     "new.csv: ID 'C7' appears more than once in column 'customer'", cwd=folder)


def test_a_table_that_is_not_a_segments_file_is_refused(folder):
    new = _segments(folder / "new.csv", columns=("segment", "distance"))
    assert_fails_and_touches_nothing(["compare", "old.csv", new, "--out", "t.csv"],
                                     "new.csv is not a segments file", "lacks 'segment_name'", cwd=folder)


def test_an_existing_output_is_kept_without_force(folder):
    _segments(folder / "new.csv")
    (folder / "t.csv").write_text("keep me\n")
    assert_fails_and_touches_nothing(["compare", "old.csv", "new.csv", "--out", "t.csv"],
                                     "output file t.csv exists; use --force", cwd=folder)


def test_an_input_is_never_the_output_even_with_force(folder):
    _segments(folder / "new.csv")
    assert_fails_and_touches_nothing(["compare", "old.csv", "new.csv", "--out", "new.csv", "--force"],
                                     "output new.csv is the new segments file", "never replaced", cwd=folder)
