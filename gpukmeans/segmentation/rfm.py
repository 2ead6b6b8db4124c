"""Recency, frequency and monetary value per customer from a transaction log.

The default column names are those of the UCI Online Retail data set
(InvoiceNo, InvoiceDate, Quantity, UnitPrice, CustomerID); each can be renamed.
Rows are dropped, and counted, in this order: unreadable quantity, price or
date; no customer; cancellations (invoice number starting with "C"); non-positive
quantity; non-positive price. The snapshot date is the last transaction plus one
day, so the most recent customer has a recency of 1 (whole days, rounded down).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import PARQUET_SUFFIXES, check_output_file, read_table, write_table


@dataclass(frozen=True)
class RFMColumns:
    """Names of the transaction-log columns that RFM needs."""

    customer: str = "CustomerID"
    invoice: str = "InvoiceNo"
    date: str = "InvoiceDate"
    quantity: str = "Quantity"
    price: str = "UnitPrice"

    def as_list(self) -> list[str]:
        return [self.customer, self.invoice, self.date, self.quantity, self.price]


@dataclass
class RFMResult:
    """Per-customer RFM features and what was dropped to compute them.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per customer: the customer column under its own name, then
        ``Recency`` (days before the snapshot), ``Frequency`` (distinct invoices)
        and ``Monetary`` (sum of quantity times price).
    snapshot : pandas.Timestamp
        The last transaction plus one day.
    dropped : dict of str to int
        Rows dropped per reason, in the order the rules were applied.
    n_transactions : int
        Rows in the log, and ``n_used``: rows that counted.
    skipped_lines : list of int
        Malformed lines of a CSV log that were skipped (see :func:`rfm_file`).
    """

    table: pd.DataFrame
    snapshot: pd.Timestamp
    n_transactions: int
    n_used: int
    dropped: dict[str, int] = field(default_factory=dict)
    skipped_lines: list[int] = field(default_factory=list)


def rfm(
    transactions: pd.DataFrame,
    *,
    columns: RFMColumns = RFMColumns(),
    date_format: str | None = None,
    source: str = "the transactions",
) -> RFMResult:
    """Compute recency, frequency and monetary value for each customer.

    Parameters
    ----------
    transactions : pandas.DataFrame
        One row per invoice line.
    columns : RFMColumns, default=RFMColumns()
        Column names, UCI Online Retail's by default.
    date_format : str, optional
        A :func:`~datetime.datetime.strptime` format for the date column; by
        default pandas infers it from the first date (month first for
        ``12/1/10 8:26``, as in the UCI file).
    source : str
        Name of the table in error messages.

    Returns
    -------
    RFMResult

    Examples
    --------
    >>> import pandas as pd
    >>> from gpukmeans.segmentation import rfm
    >>> log = pd.DataFrame({
    ...     "InvoiceNo": ["1", "2", "C3", "4"], "CustomerID": ["a", "a", "a", "b"],
    ...     "InvoiceDate": ["2011-01-01", "2011-01-05", "2011-01-06", "2011-01-09"],
    ...     "Quantity": [2, 1, -1, 5], "UnitPrice": [1.5, 4.0, 4.0, 1.0]})
    >>> rfm(log).table.to_dict("list")
    {'CustomerID': ['a', 'b'], 'Recency': [5, 1], 'Frequency': [2, 1], 'Monetary': [7.0, 5.0]}
    """
    missing = [c for c in columns.as_list() if c not in transactions.columns]
    if missing:
        raise InputError(
            f"{source} lacks column(s) {', '.join(repr(c) for c in missing)} needed for RFM; "
            f"its columns are: {', '.join(map(str, transactions.columns))}"
        )
    n_rows = len(transactions)
    quantity = pd.to_numeric(transactions[columns.quantity], errors="coerce").to_numpy(np.float64)
    price = pd.to_numeric(transactions[columns.price], errors="coerce").to_numpy(np.float64)
    dates = _parse_dates(transactions[columns.date], date_format, source, columns.date)
    customer = transactions[columns.customer].astype("string").str.strip()
    invoice = transactions[columns.invoice].astype("string").str.strip()

    rules = [
        ("unreadable quantity, price or date", ~np.isfinite(quantity) | ~np.isfinite(price) | dates.isna().to_numpy()),
        ("no customer", (customer.isna() | (customer == "")).to_numpy(dtype=bool, na_value=True)),
        ("cancellation", invoice.str.upper().str.startswith("C").to_numpy(dtype=bool, na_value=False)),
        ("non-positive quantity", ~(quantity > 0)),
        ("non-positive price", ~(price > 0)),
    ]
    keep = np.ones(n_rows, dtype=bool)
    dropped = {}
    for reason, bad in rules:
        dropped[reason] = int((keep & bad).sum())
        keep &= ~bad
    if not keep.any():
        raise InputError(f"no transactions in {source} are left after dropping {_describe(dropped)}")

    lines = pd.DataFrame(
        {
            "customer": _tidy_ids(customer[keep]).to_numpy(),
            "invoice": invoice[keep].to_numpy(),
            "date": dates[keep].to_numpy(),
            "amount": quantity[keep] * price[keep],
        }
    )
    snapshot = lines["date"].max() + pd.Timedelta(days=1)
    per_customer = lines.groupby("customer", sort=True).agg(
        last=("date", "max"), Frequency=("invoice", "nunique"), Monetary=("amount", "sum")
    )
    table = pd.DataFrame(
        {
            columns.customer: per_customer.index.astype(str),
            "Recency": (snapshot - per_customer["last"]).dt.days.astype(np.int64).to_numpy(),
            "Frequency": per_customer["Frequency"].astype(np.int64).to_numpy(),
            "Monetary": per_customer["Monetary"].round(2).to_numpy(),
        }
    )
    return RFMResult(
        table=table, snapshot=snapshot, n_transactions=n_rows, n_used=int(keep.sum()), dropped=dropped
    )


def rfm_file(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    columns: RFMColumns = RFMColumns(),
    date_format: str | None = None,
    force: bool = False,
    source: str | None = None,
) -> RFMResult:
    """Read a transaction log (CSV or Parquet), compute :func:`rfm`, write it to ``out``.

    Only the five needed columns are read. Malformed CSV lines (a wrong number
    of fields, as in some exports of the UCI file) are skipped and listed in
    ``skipped_lines``. ``out`` ending in ``.parquet`` is written as Parquet,
    anything else as CSV, atomically. It is checked before the log is read: an
    existing ``out`` is replaced only with ``force``, and never when it is the log
    itself or anything but a regular file (see
    :func:`~gpukmeans.segmentation.io.check_output_file`). ``source`` names the log in
    messages (default: its path).
    """
    if out is not None:
        out = check_output_file(out, force=force, inputs={"transaction log": path})
    table = read_table(path, columns.as_list(), string_columns=[columns.customer, columns.invoice],
                       bad_lines="skip")
    result = rfm(table.frame, columns=columns, date_format=date_format, source=source or str(path))
    result.skipped_lines = table.skipped_lines
    result.n_transactions += len(table.skipped_lines)
    result.dropped = {"malformed line": len(table.skipped_lines), **result.dropped}
    if out is not None:
        write_table(result.table, out, "parquet" if out.suffix.lower() in PARQUET_SUFFIXES else "csv", replace=force)
    return result


def _parse_dates(values: pd.Series, date_format: str | None, source: str, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    with warnings.catch_warnings():
        # Without a format pandas warns when it falls back to parsing value by value.
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, format=date_format, errors="coerce")
    present = values.notna().sum()
    if present and parsed.notna().sum() < 0.5 * present:
        example = values[values.notna() & parsed.isna()].iloc[0]
        raise InputError(
            f"could not read the dates in column {name!r} of {source} (e.g. {str(example)!r}); "
            f"give their format with --date-format, e.g. '%d/%m/%Y %H:%M'"
        )
    return parsed


def _tidy_ids(ids: pd.Series) -> pd.Series:
    """Undo the ``17850.0`` that spreadsheets make of integer customer IDs."""
    if ids.str.fullmatch(r"\d+\.0").all():
        return ids.str.slice(stop=-2)
    return ids


def _describe(dropped: dict[str, int]) -> str:
    parts = [f"{n} {reason}" for reason, n in dropped.items() if n]
    return ", ".join(parts) if parts else "nothing"
