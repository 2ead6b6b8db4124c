"""RFM from a transaction log: the drop rules, the snapshot, the UCI sample."""

from pathlib import Path

import pandas as pd
import pytest

from gpukmeans.segmentation import InputError, RFMColumns, read_table, rfm, rfm_file

DATA = Path(__file__).parents[1] / "data"


def _log():
    return pd.DataFrame(
        {
            "InvoiceNo": ["1", "1", "2", "C3", "4", "5", "6", "7", "8"],
            "CustomerID": ["a", "a", "a", "a", "b", None, "b", "c", "c"],
            "InvoiceDate": [
                "2011-01-01 10:00", "2011-01-01 10:00", "2011-01-05 09:00", "2011-01-06 09:00",
                "2011-01-09 18:00", "2011-01-09 19:00", "2011-01-02 08:00", "2011-01-03 08:00", "not a date",
            ],
            "Quantity": [2, 1, 1, -1, 5, 3, 0, 4, 1],
            "UnitPrice": [1.5, 2.0, 4.0, 4.0, 1.0, 9.0, 1.0, -2.0, 1.0],
        }
    )


def test_rules_snapshot_and_values():
    result = rfm(_log())
    assert result.dropped == {
        "unreadable quantity, price or date": 1,
        "no customer": 1,
        "cancellation": 1,
        "non-positive quantity": 1,
        "non-positive price": 1,
    }
    assert result.n_transactions == 9 and result.n_used == 4
    assert result.snapshot == pd.Timestamp("2011-01-10 18:00")
    table = result.table.set_index("CustomerID")
    assert table.index.tolist() == ["a", "b"]  # c has no valid transaction left
    # a: last purchase 2011-01-05 09:00, 5 days 9 hours before the snapshot.
    assert table.loc["a"].tolist() == [5, 2, 1.5 * 2 + 2.0 * 1 + 4.0 * 1]
    assert table.loc["b"].tolist() == [1, 1, 5.0]


def test_column_names_can_be_changed():
    log = _log().rename(columns={"CustomerID": "client", "UnitPrice": "price"})
    result = rfm(log, columns=RFMColumns(customer="client", price="price"))
    assert list(result.table.columns) == ["client", "Recency", "Frequency", "Monetary"]
    with pytest.raises(InputError, match="lacks column\\(s\\) 'CustomerID', 'UnitPrice' needed for RFM"):
        rfm(log)


def test_unreadable_dates_ask_for_a_format():
    log = _log().assign(InvoiceDate="someday")
    with pytest.raises(InputError, match="could not read the dates in column 'InvoiceDate'.*--date-format"):
        rfm(log)


def test_day_first_dates_with_a_format():
    log = _log().iloc[:3].assign(InvoiceDate=["13/01/2011 10:00", "13/01/2011 10:00", "20/01/2011 10:00"])
    result = rfm(log, date_format="%d/%m/%Y %H:%M")
    assert result.snapshot == pd.Timestamp("2011-01-21 10:00")


def test_uci_sample_through_rfm_file(tmp_path):
    out = tmp_path / "rfm.csv"
    result = rfm_file(DATA / "OnlineRetail_sample.csv", out)
    assert result.skipped_lines == [121, 172, 175, 179]
    assert result.dropped["malformed line"] == 4
    assert result.dropped["cancellation"] == 1
    assert result.n_transactions == 183
    assert len(result.table) == 14
    assert result.snapshot == pd.Timestamp("2010-12-02 09:59")  # last line: 12/1/10 9:59
    written = read_table(out, string_columns=["CustomerID"]).frame
    pd.testing.assert_frame_equal(written, result.table, check_dtype=False)
    # Customer 17850 has six invoices in the sample.
    assert written.set_index("CustomerID").loc["17850", "Frequency"] == 6
