"""The robustness corpus: the choice of k and the labels. A wrong --min-share, a --k that breaks
it, or a wrong label is one ``error:`` line naming the problem, and nothing is written.

Each case runs the installed ``gpukmeans`` in a scratch folder holding the Mall table.
"""

import shutil
from pathlib import Path

import pytest

from _robustness import assert_fails_and_touches_nothing

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"


@pytest.fixture
def place(tmp_path) -> Path:
    shutil.copy(MALL, tmp_path / "m.csv")
    (tmp_path / "broken.json").write_text('{"Age": "Age in years",')
    return tmp_path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--k", "3", "--min-share", "0.6"],
         ["the minimum segment share must be a fraction of the customers between 0 and 0.5", "got 0.6"]),
        (["--k", "9", "--min-share", "0.08"],
         ["at k=9 the smallest segment holds", "below the minimum share of 8%"]),
        (["--k", "3", "--labels", "broken.json"], ["labels file broken.json is not valid JSON"]),
        (["--k", "3", "--label", "Income=Income"], ["a label is given for column 'Income', which m.csv does not have"]),
        (["--k", "3", "--label", "Age"], ["--label must look like COLUMN=Label, got 'Age'"]),
    ],
    ids=["min-share out of range", "k below the min share", "labels not JSON", "unknown column", "label without ="],
)
def test_a_wrong_choice_or_label_is_one_line_and_writes_nothing(place, args, expected):
    assert_fails_and_touches_nothing(["segment", "m.csv", *args, "--no-report", "--out", "out"], *expected, cwd=place)
