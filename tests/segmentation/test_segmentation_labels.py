"""Column labels: names written as code read as words, the user's labels win, and mistakes are one line."""

import json

import pytest

from gpukmeans.segmentation import InputError
from gpukmeans.segmentation.labels import (
    check_labels,
    column_labels,
    feature_labels,
    in_a_name,
    parse_label,
    read_labels_file,
    readable_label,
)


@pytest.mark.parametrize(
    "column, label",
    [
        ("PURCHASES_INSTALLMENTS_FREQUENCY", "Purchases installments frequency"),
        ("CASH_ADVANCE", "Cash advance"),
        ("TENURE", "Tenure"),
        ("avg_order_value", "Avg order value"),
        ("avgOrderValue", "Avg order value"),
        ("AnnualIncome", "Annual income"),
        ("customer_ID", "Customer ID"),
        ("CUST_ID", "Cust ID"),
        ("recency", "Recency"),
        ("ANNUAL INCOME", "Annual income"),
        # Already readable: kept.
        ("Annual Income (k$)", "Annual Income (k$)"),
        ("Spending Score (1-100)", "Spending Score (1-100)"),
        ("Days since last order", "Days since last order"),
        ("Age", "Age"),
        ("ID", "ID"),
        ("client.id", "Client.id"),
    ],
)
def test_names_written_as_code_read_as_words(column, label):
    assert readable_label(column) == label


def test_a_label_in_sentence_case_is_lowered_inside_a_name_and_others_are_kept():
    assert in_a_name("Cash advance") == "cash advance"
    assert in_a_name("Age") == "age"
    assert in_a_name("Annual Income (k$)") == "Annual Income (k$)"
    assert in_a_name("Customer ID") == "Customer ID"


def test_given_labels_win_and_readable_labels_that_coincide_keep_the_column_names():
    labels = column_labels(["CASH_ADVANCE", "cash_advance", "TENURE", "BALANCE"], {"BALANCE": "Money owed"})
    assert labels == {
        "CASH_ADVANCE": "CASH_ADVANCE", "cash_advance": "cash_advance",  # "Cash advance" twice: ambiguous
        "TENURE": "Tenure", "BALANCE": "Money owed",
    }


def test_a_category_level_reads_as_its_column_label_and_level():
    labels = feature_labels(["SPEND", "CHANNEL=web"], {"SPEND": "Spend", "CHANNEL": "Channel"}, {"CHANNEL": ["web"]})
    assert labels == {"SPEND": "Spend", "CHANNEL=web": "Channel: web"}


def test_labels_are_checked_against_the_table():
    assert check_labels({"Age": "  Age in years "}, ["Age", "Income"], "t.csv") == {"Age": "Age in years"}
    with pytest.raises(InputError, match="a label is given for column 'Agee', which t.csv does not have"):
        check_labels({"Agee": "Age"}, ["Age"], "t.csv")
    with pytest.raises(InputError, match="the label of column 'Age' must be non-empty text"):
        check_labels({"Age": " "}, ["Age"], "t.csv")
    with pytest.raises(InputError, match="columns 'a' and 'b' are both labelled 'spend'; labels must differ"):
        check_labels({"a": "Spend", "b": "spend"}, ["a", "b"], "t.csv")


def test_a_labels_file_is_one_json_object_of_text(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"CASH_ADVANCE": "Cash advances", "Å": "Ä"}), encoding="utf-8")
    assert read_labels_file(path) == {"CASH_ADVANCE": "Cash advances", "Å": "Ä"}
    for text, message in [
        ('{"AGE": ', "is not valid JSON"),
        ('["AGE"]', "must hold one JSON object of column names to labels"),
        ('{"AGE": 3}', "the label of column 'AGE' must be non-empty text, got 3"),
    ]:
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            read_labels_file(path)
    with pytest.raises(InputError, match="labels file .*missing.json does not exist"):
        read_labels_file(tmp_path / "missing.json")


def test_a_label_option_is_column_equals_label():
    assert parse_label("CASH_ADVANCE=Cash advances (USD)") == ("CASH_ADVANCE", "Cash advances (USD)")
    assert parse_label(" a = b=c ") == ("a", "b=c")
    for text in ("CASH_ADVANCE", "=Cash", "CASH="):
        with pytest.raises(InputError, match="--label must look like COLUMN=Label"):
            parse_label(text)
