"""The robustness corpus, tables: what real customer exports hold, through the installed command.

Each case writes a small table as people and spreadsheets write them (placeholders for
missing values, thousands separators, currencies, decimal commas, duplicate names, codes,
extreme magnitudes, thousands of columns) and runs ``gpukmeans`` as a process. A table is
either read right, with what was done to it in summary.json, or refused with one line.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _robustness import assert_fails_and_touches_nothing, run_cli

PLACEHOLDERS = ["-", "N/A", "n/a", "NA", "?", "null", "NULL", "None", "#N/A", "NaN", "", "   "]


def _csv(folder, name, header, rows, delimiter=","):
    path = folder / name
    path.write_text("\n".join([delimiter.join(header)] + [delimiter.join(row) for row in rows]) + "\n",
                    encoding="utf-8")
    return path


def _segment(folder, data, *options):
    run = run_cli(["segment", data, "--out", "out", *options], cwd=folder)
    assert run.returncode == 0, run.stderr
    summary = json.loads((folder / "out" / "summary.json").read_text())
    return run, summary


def _means_by_hand(folder, values: dict[str, list[float]], ids: list[str]) -> pd.DataFrame:
    """Each segment's mean of every column, from the segments written and the values as intended."""
    segments = pd.read_csv(folder / "out" / "segments.csv", dtype={"customer_id": str})
    table = pd.DataFrame(values, index=ids).loc[segments["customer_id"]]
    return table.groupby(segments["segment"].to_numpy()).mean()


def _assert_profile_means(folder, expected: pd.DataFrame) -> None:
    profiles = pd.read_csv(folder / "out" / "profiles.csv").set_index("segment")
    for column in expected.columns:
        written = profiles.loc[expected.index, f"{column} mean"].to_numpy()
        assert written == pytest.approx(expected[column].to_numpy(), rel=1e-12), column


def test_placeholders_are_missing_values_counted_by_spelling(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        spend = PLACEHOLDERS[i] if i < len(PLACEHOLDERS) else f"{rng.uniform(10, 500):.2f}"
        rows.append([f"c{i:02d}", spend, str(rng.integers(1, 40))])
    _csv(tmp_path, "customers.csv", ["customer_id", "spend", "visits"], rows)

    _, summary = _segment(tmp_path, "customers.csv", "--k", "2", "--drop-missing", "--no-report", "--log", "none")

    prep = summary["preprocessing"]
    assert prep["features"] == ["spend", "visits"]
    assert prep["missing_counts"] == {"spend": 12}
    assert (prep["rows_dropped_missing"], prep["n_rows_used"]) == (12, 18)
    spelled = {p: 1 for p in PLACEHOLDERS if p.strip()}  # blank cells are missing, not placeholders
    assert summary["input"]["placeholders"] == {"spend": spelled}
    segments = pd.read_csv(tmp_path / "out" / "segments.csv")
    assert sorted(segments["customer_id"]) == [f"c{i:02d}" for i in range(12, 30)]


def test_currency_thousands_and_percent_are_read_exactly(tmp_path):
    rng = np.random.default_rng(1)
    ids, spend, balance, units, rate, rows = [], [], [], [], [], []
    for i in range(24):
        cents = int(rng.integers(100, 900_000_00)) * (1 if i % 2 else 7)
        owed = int(rng.integers(1, 5_000_00)) * (-1 if i % 3 == 0 else 1)
        count = int(rng.integers(1, 3_000_000))
        percent = int(rng.integers(0, 1000)) / 10
        ids.append(f"c{i:02d}")
        spend.append(cents / 100)
        balance.append(owed / 100)
        units.append(float(count))
        rate.append(percent)
        owed_text = f"(${-owed / 100:,.2f})" if owed < 0 else f"${owed / 100:,.2f}"
        space = "\u202f" if i % 2 else " "  # a narrow no-break space, or a plain one
        rows.append([ids[-1], f'"${cents / 100:,.2f}"', f'"{owed_text}"', f"{count:,}".replace(",", space),
                     f"{percent}%"])
    _csv(tmp_path, "export.csv", ["customer_id", "spend", "balance", "units", "rate"], rows)

    _, summary = _segment(tmp_path, "export.csv", "--k", "3", "--no-report", "--log", "none")

    assert summary["preprocessing"]["features"] == ["spend", "balance", "units", "rate"]
    assert summary["preprocessing"]["left_out"] == [{"column": "customer_id", "reason": "ID column"}]
    assert summary["input"]["units"] == {"spend": "$", "balance": "$", "rate": "%"}
    assert "12% is 12" in summary["input"]["units_note"]
    formats = summary["input"]["number_formats"]
    assert formats["balance"] == {"decimal": ".", "thousands": ",", "unit": "$", "parentheses": True}
    assert formats["units"]["thousands"] == " "
    expected = _means_by_hand(tmp_path, {"spend": spend, "balance": balance, "units": units, "rate": rate}, ids)
    _assert_profile_means(tmp_path, expected)


@pytest.mark.slow
def test_a_semicolon_file_with_decimal_commas_is_read_as_numbers(tmp_path):
    rng = np.random.default_rng(2)
    ids, revenue, share, quantity, rows = [], [], [], [], []
    for i in range(24):
        cents = int(rng.integers(1, 9_000_000)) * (3 if i % 2 else 1)
        tenths = int(rng.integers(0, 100))
        thousands = int(rng.integers(1, 90))
        ids.append(f"k{i:02d}")
        revenue.append(cents / 100)
        share.append(tenths / 10)
        quantity.append(thousands * 1000.0)
        euros = f"{cents / 100:,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
        # "1.000" alone reads two ways; the file's decimal commas make it one thousand.
        rows.append([ids[-1], f"€ {euros}", f"{tenths / 10}".replace(".", ","), f"{thousands}.000"])
    _csv(tmp_path, "umsatz.csv", ["customer_id", "umsatz", "anteil", "menge"], rows, delimiter=";")

    _, summary = _segment(tmp_path, "umsatz.csv", "--k", "2", "--no-report", "--log", "none")

    assert summary["input"]["decimal"] == ","
    assert summary["input"]["units"] == {"umsatz": "€"}
    assert summary["preprocessing"]["features"] == ["umsatz", "anteil", "menge"]
    expected = _means_by_hand(tmp_path, {"umsatz": revenue, "anteil": share, "menge": quantity}, ids)
    _assert_profile_means(tmp_path, expected)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_two_columns_with_one_name_are_refused(tmp_path, kind):
    names = ["customer_id", "spend", "visits", "spend"]
    columns = [[f"c{i}" for i in range(6)], [1.0, 2, 3, 4, 5, 6], [3.0, 1, 4, 1, 5, 9], [2.0, 7, 1, 8, 2, 8]]
    if kind == "csv":
        _csv(tmp_path, "t.csv", names, [[str(c[i]) for c in columns] for i in range(6)])
    else:
        pq.write_table(pa.Table.from_arrays([pa.array(c) for c in columns], names=names), tmp_path / "t.parquet")
    assert_fails_and_touches_nothing(
        ["segment", f"t.{kind}", "--k", "2", "--categorical", "spend", "--out", "out"],
        "more than one column named 'spend'", "columns 2 and 4", f"t.{kind}", cwd=tmp_path,
    )


def test_a_column_named_twice_in_an_option_is_refused(tmp_path):
    _csv(tmp_path, "t.csv", ["spend", "visits"], [[str(i), str(i * i % 7)] for i in range(8)])
    assert_fails_and_touches_nothing(
        ["segment", "t.csv", "--k", "2", "--columns", "spend,visits,spend", "--out", "out"],
        "'spend' is named twice in --columns", cwd=tmp_path,
    )


def test_integer_codes_are_categories_and_look_alikes_are_flagged(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        channel, region = 1 + i % 2, 1 + i % 3
        fresh = rng.lognormal(8 + channel, 0.3)
        rows.append([str(channel), str(region), str(i % 5), f"{fresh:.0f}", f"{rng.lognormal(7, 0.5):.0f}"])
    _csv(tmp_path, "wholesale.csv", ["Channel", "Region", "children", "Fresh", "Milk"], rows)

    run, summary = _segment(tmp_path, "wholesale.csv", "--k", "2", "--no-report")

    prep = summary["preprocessing"]
    assert prep["auto_categorical"] == ["Channel", "Region"]
    assert prep["features"] == [
        "children", "Fresh", "Milk", "Channel=1", "Channel=2", "Region=1", "Region=2", "Region=3",
    ]
    names = [s["name"].lower() for s in summary["segments"]]
    assert not any("high channel" in name or "low channel" in name for name in names)
    flagged = [w for w in prep["warnings"] if "'children'" in w]
    assert len(flagged) == 1 and "--categorical" in flagged[0] and "5 whole-number values" in flagged[0]
    assert "codes one-hot encoded as categories: Channel, Region" in run.stderr
    assert "warning: column 'children' takes only 5 whole-number values" in run.stderr


@pytest.mark.slow
def test_every_column_left_out_is_listed_with_its_reason(tmp_path):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(20):
        amount = "oops" if i == 2 else str(int(rng.integers(1, 100)))
        rows.append([f"c{i:02d}", ["Paris", "Lyon", "Nice"][i % 3], f"{rng.uniform(0, 100):.1f}",
                     str(int(rng.integers(1, 50))), amount, "7", ""])
    _csv(tmp_path, "mixed.csv", ["customer_id", "city", "spend", "visits", "amount", "flat", "blank"], rows)

    run, summary = _segment(tmp_path, "mixed.csv", "--k", "2")

    assert summary["preprocessing"]["left_out"] == [
        {"column": "customer_id", "reason": "ID column"},
        {"column": "city", "reason": "not numeric", "detail": "row 1 holds 'Paris'"},
        {"column": "amount", "reason": "not numeric", "detail": "mostly numbers, but row 3 holds 'oops'"},
        {"column": "blank", "reason": "no values"},
        {"column": "flat", "reason": "constant"},
    ]
    assert summary["preprocessing"]["features"] == ["spend", "visits"]
    assert "non-numeric column(s) left out: city, amount" in run.stderr
    assert "warning: column 'amount' is left out: mostly numbers, but row 3 holds 'oops'" in run.stderr
    assert "'blank' has no values" in run.stderr and "'flat' is constant" in run.stderr
    html = (tmp_path / "out" / "report.html").read_text()
    for shown in ("customer_id (ID column)", "amount (not numeric: mostly numbers, but row 3 holds",
                  "blank (no values)", "flat (constant)"):
        assert shown in html, shown


@pytest.mark.slow
def test_columns_near_1e300_and_1e_minus_300_are_clustered(tmp_path):
    rng = np.random.default_rng(5)
    planted = np.repeat([0, 1, 2], 12)
    centres = np.array([[1.0, 1.0], [1.0, 5.0], [5.0, 3.0]])  # big tells 2 apart, tiny tells 0 from 1
    values = centres[planted] + rng.uniform(-0.4, 0.4, size=(len(planted), 2))
    rows = [[f"c{i:02d}", repr(float(b) * 1e300), repr(float(t) * 1e-300)] for i, (b, t) in enumerate(values)]
    _csv(tmp_path, "extreme.csv", ["customer_id", "big", "tiny"], rows)

    _, summary = _segment(tmp_path, "extreme.csv", "--k", "3", "--no-report", "--log", "none")

    assert summary["preprocessing"]["features"] == ["big", "tiny"]
    segments = pd.read_csv(tmp_path / "out" / "segments.csv")
    found = segments.set_index("customer_id").loc[[f"c{i:02d}" for i in range(len(planted))], "segment"]
    pairs = set(zip(planted, found))
    assert len(pairs) == 3 and len({f for _, f in pairs}) == 3  # the planted groups, exactly


@pytest.mark.slow
def test_a_table_of_two_thousand_columns_is_segmented_with_its_report(tmp_path):
    rng = np.random.default_rng(6)
    n, d = 200, 2_000
    X = rng.normal(size=(n, d))
    X[:, :300] += np.repeat([0.0, 3.0, 6.0], [70, 70, 60])[:, None]  # 300 columns set three groups apart
    frame = pd.DataFrame(X, columns=[f"f{j:04d}" for j in range(d)])
    frame.to_csv(tmp_path / "wide.csv", index=False, float_format="%.5g")

    _, summary = _segment(tmp_path, "wide.csv", "--k", "3", "--log", "none")

    assert len(summary["preprocessing"]["features"]) == d
    assert sorted(s["size"] for s in summary["segments"]) == [60, 70, 70]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "the 25 of 2,000 features that most set segments apart" in html
    assert "<a href='profiles.csv'>profiles.csv</a>" in html
    profiles = pd.read_csv(tmp_path / "out" / "profiles.csv")
    assert sum(c.endswith(" mean") for c in profiles.columns) == d
    # The report shows a bounded number of features: its size does not grow with the width.
    assert len(html) < 1_500_000
