"""Segment names a marketer reads, end to end: readable labels, named for what sets each
segment apart in the user's units, no bare "Average", and the same names in every output."""

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _credit_cards import CASH_ADVANCE_SEGMENT, credit_card_table
from gpukmeans.segmentation import load_model, read_table, segment

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
INCOME, SPENDING = "Annual Income (k$)", "Spending Score (1-100)"


def test_mall_names_at_k5_read_as_words_and_none_is_plain_average():
    result = segment(MALL, k=5, report=False)  # Age, income and spending, standardised
    assert result.model.segment_names == [
        f"Low age, low {INCOME}",
        "High age",
        f"High {INCOME}, high {SPENDING}",
        f"High {INCOME}, low {SPENDING}",
        f"Low {INCOME}, low {SPENDING}",
    ]


def test_the_middle_of_mall_is_typical_customers_with_its_mildest_trait():
    result = segment(MALL, columns=[INCOME, SPENDING], k=5, report=False)
    names = result.model.segment_names
    assert "Average" not in names
    middle = names[0]  # the largest: 81 customers near the mean on both
    assert middle.startswith("Typical customers, ") and (INCOME in middle or SPENDING in middle)


@pytest.fixture(scope="module")
def credit_cards(tmp_path_factory):
    """The credit-card table segmented into its four planted segments, with every output written."""
    folder = tmp_path_factory.mktemp("cards")
    table, planted = credit_card_table(2000, seed=0)
    table.to_csv(folder / "cards.csv", index=False)
    result = segment(folder / "cards.csv", k=4, out=folder / "out")
    return table, planted, result, folder / "out"


def test_the_cash_advance_segment_is_named_for_its_cash_advance(credit_cards):
    table, planted, result, _ = credit_cards
    found = result.segments.set_index("CUST_ID")["segment"].reindex(table["CUST_ID"]).to_numpy()
    cash_segment = np.bincount(found[planted == CASH_ADVANCE_SEGMENT]).argmax()
    ratio = result.profiles.loc[cash_segment, "CASH_ADVANCE vs population"]
    assert ratio == pytest.approx(2.2, abs=0.3)  # about twice the population's cash advance
    assert "cash advance" in result.model.segment_names[cash_segment].lower()


def test_upper_case_columns_read_as_words_in_names(credit_cards):
    _, _, result, _ = credit_cards
    labels = result.summary["labels"]
    assert labels["PURCHASES_INSTALLMENTS_FREQUENCY"] == "Purchases installments frequency"
    assert labels["CASH_ADVANCE"] == "Cash advance"
    for name in result.model.segment_names:
        assert not re.search(r"[A-Z]{2,}", name), name  # no column name in capitals, no "_"
        assert "_" not in name


def test_the_same_names_in_every_output(credit_cards):
    _, _, result, out = credit_cards
    names = result.model.segment_names
    assert len(set(names)) == len(names)
    summary = json.loads((out / "summary.json").read_text())
    assert [item["name"] for item in summary["segments"]] == names
    profiles = pd.read_csv(out / "profiles.csv")
    assert profiles["segment_name"].tolist() == names
    segments = read_table(out / "segments.csv", string_columns=["CUST_ID"]).frame
    by_segment = segments.groupby("segment")["segment_name"].unique()
    assert [list(by_segment[s]) for s in range(len(names))] == [[name] for name in names]
    assert load_model(out).segment_names == names
    report = (out / "report.html").read_text()
    for name in names:
        assert f"<td class='text'>{html.escape(name)}</td>" in report


def test_given_labels_name_the_segments_and_head_the_report(tmp_path):
    labels = {INCOME: "Income", SPENDING: "spending"}
    result = segment(MALL, columns=[INCOME, SPENDING], k=5, labels=labels, out=tmp_path / "out")
    assert "High income, low spending" in result.model.segment_names
    assert result.summary["labels"] == {INCOME: "Income", SPENDING: "spending"}
    report = (tmp_path / "out" / "report.html").read_text()
    assert f"<th title='{html.escape(INCOME)}'>Income</th>" in report
    # Files keep the column names.
    assert f"{INCOME} mean" in pd.read_csv(tmp_path / "out" / "profiles.csv").columns
