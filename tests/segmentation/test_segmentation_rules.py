"""Segment rules in the table's own columns and units: learned on the sample, counted over
every customer, written to profiles.csv, summary.json and the report, and readable: each
rule's text, applied to the table by a parser that knows nothing of the library, selects
the customers the fidelities count."""

import json
import operator
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import segment
from gpukmeans.segmentation.rules import (
    NO_RULE, Bound, Levels, RuleTally, SegmentRule, SegmentRules, first_match, format_number, learn_rules,
)
from gpukmeans.segmentation.tables import Batch

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
INCOME, SPENDING = "Annual Income (k$)", "Spending Score (1-100)"

_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_NUMBER = r"-?\d+(?:\.\d+)?"


def _apply(text: str, frame: pd.DataFrame) -> np.ndarray:
    """Which rows of ``frame`` the rule ``text`` selects, read as a person reads it."""
    chosen = np.ones(len(frame), dtype=bool)
    for clause in text.split(" and "):
        column = max((c for c in frame.columns if c in clause), key=len)
        values = frame[column]
        rest = clause.replace(column, "COLUMN")
        if m := re.fullmatch(rf"({_NUMBER}) (<=?) COLUMN (<=?) ({_NUMBER})", rest):
            low, low_op, high_op, high = m.groups()
            low_op = ">=" if low_op == "<=" else ">"
            chosen &= (_OPERATORS[low_op](values, float(low)) & _OPERATORS[high_op](values, float(high))).to_numpy()
        elif m := re.fullmatch(rf"COLUMN (<=?|>=?) ({_NUMBER})", rest):
            chosen &= _OPERATORS[m.group(1)](values, float(m.group(2))).to_numpy()
        elif m := re.fullmatch(r"COLUMN is (not )?(?:one of )?(.+)", rest):
            inside = values.astype(str).isin(m.group(2).split(", ")).to_numpy()
            chosen &= ~inside & values.notna().to_numpy() if m.group(1) else inside
        else:
            raise AssertionError(f"unreadable clause {clause!r}")
    return chosen


def _fidelities(frame: pd.DataFrame, labels: np.ndarray, rules: list[str]) -> tuple[list[float], float]:
    """Per segment the share its rule selects, and the share of rows the first matching rule gives their own."""
    selections = np.stack([_apply(rule, frame) for rule in rules])
    per_segment = [float(selections[s, labels == s].mean()) for s in range(len(rules))]
    return per_segment, float((first_match(selections) == labels).mean())


@pytest.fixture(scope="module")
def mall(tmp_path_factory):
    out = tmp_path_factory.mktemp("mall") / "out"
    result = segment(MALL, columns=[INCOME, SPENDING], k=5, out=out)
    return result, out


def test_mall_rules_give_at_least_90_percent_of_customers_their_segment(mall):
    result, out = mall
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rules_fidelity"] >= 0.9
    assert result.rules.fidelity == summary["rules_fidelity"]
    for item, rule in zip(summary["segments"], result.rules):
        assert item["rule"] == rule.text and len(rule.columns) <= 3
        assert set(rule.columns) <= {INCOME, SPENDING}
        assert 0.8 <= item["rule_fidelity"] <= 1 and 0.8 <= item["rule_precision"] <= 1


def test_the_rules_as_written_select_what_the_fidelities_count(mall):
    result, out = mall
    table = pd.read_csv(MALL, dtype={"CustomerID": str})
    segments = pd.read_csv(out / "segments.csv", dtype={"CustomerID": str})
    labels = segments.set_index("CustomerID")["segment"].reindex(table["CustomerID"]).to_numpy()
    profiles = pd.read_csv(out / "profiles.csv")
    per_segment, overall = _fidelities(table, labels, list(profiles["rule"]))
    assert per_segment == pytest.approx(list(profiles["rule_fidelity"]), abs=1e-12)
    assert overall == pytest.approx(result.summary["rules_fidelity"], abs=1e-12)
    assert list(profiles.columns[:7]) == ["segment", "segment_name", "size", "share", "stability", "rule",
                                         "rule_fidelity"]


def test_the_report_shows_every_rule(mall):
    result, out = mall
    page = (out / "report.html").read_text()
    assert "Rules: each segment in the table's own columns" in page
    for rule in result.rules:
        assert f"<code>{rule.text.replace('<', '&lt;').replace('>', '&gt;')}</code>" in page


def _boxes(seed: int, n_per_box: int = 150) -> tuple[pd.DataFrame, np.ndarray]:
    """Four boxes at the corners of a square in (x, y), 2 apart, with z noise that tells nothing."""
    rng = np.random.default_rng(seed)
    corners = [(0, 0), (3, 0), (0, 3), (3, 3)]
    x = np.concatenate([rng.uniform(cx, cx + 1, n_per_box) for cx, _ in corners])
    y = np.concatenate([rng.uniform(cy, cy + 1, n_per_box) for _, cy in corners])
    truth = np.repeat(np.arange(4), n_per_box)
    frame = pd.DataFrame({"x": x * 100, "y": y, "z": rng.uniform(0, 4, truth.size)})
    return frame, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_axis_aligned_boxes_are_recovered_exactly(seed):
    frame, truth = _boxes(seed)
    result = segment(frame, k=4, report=False, seed=seed)
    assert result.rules.fidelity == 1.0
    labels = result.segments["segment"].to_numpy()
    assert pd.crosstab(labels, truth).gt(0).sum(axis=1).eq(1).all()  # the fit found the boxes
    for rule in result.rules:
        assert rule.fidelity == 1.0 and rule.precision == 1.0
        assert rule.columns and set(rule.columns) <= {"x", "y"}
        for part in rule.parts:
            gap = (100, 300) if part.column == "x" else (1, 3)
            assert gap[0] <= part.value <= gap[1], rule.text  # between the boxes
    assert _fidelities(frame, labels, [rule.text for rule in result.rules])[1] == 1.0


def test_a_categorical_column_reads_as_its_levels():
    rng = np.random.default_rng(3)
    n = 900
    country = rng.choice(["France", "Spain", "United Kingdom"], n)
    # Spend overlaps between countries, so that only the country sets a segment apart exactly.
    offset = pd.Series(country).map({"France": 0.0, "Spain": 1.0, "United Kingdom": 2.0}).to_numpy()
    frame = pd.DataFrame({"Country": country, "spend": offset + rng.uniform(0, 2, n)})
    frame.loc[frame.index[:20], "Country"] = None
    result = segment(frame, k=3, categorical=["Country"], report=False)
    texts = [rule.text for rule in result.rules]
    assert all(re.fullmatch(r"Country is (not )?(one of )?[A-Za-z ,]+", text) for text in texts), texts
    labels = result.segments["segment"].to_numpy()
    per_segment, overall = _fidelities(frame, labels, texts)
    assert overall == pytest.approx(result.rules.fidelity, abs=1e-12)
    assert per_segment == pytest.approx([rule.fidelity for rule in result.rules], abs=1e-12)
    assert result.rules.fidelity >= 0.95  # all but some of the customers missing a country


def test_thresholds_take_the_fewest_figures_that_select_the_same_sampled_rows():
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 100, 2000).astype(float)
    labels = (whole >= 70).astype(np.int64)
    rules = learn_rules({"spend": whole}, labels, 2)
    assert [rule.text for rule in rules] == ["spend < 70", "spend >= 70"]
    fine = np.round(rng.uniform(0, 1, 2000), 4)
    labels = (fine > 0.3712).astype(np.int64)
    rules = learn_rules({"share": fine}, labels, 2)
    bound = rules[1].parts[0]
    assert bound.lower and fine[fine > 0.3712].min() >= bound.value >= fine[fine <= 0.3712].max()
    assert np.array_equal(bound.holds(fine), labels == 1)
    assert len(format_number(bound.value).replace("0.", "")) <= 4


def test_numbers_read_without_exponents():
    assert format_number(1_500_000.0) == "1500000"
    assert format_number(0.00025) == "0.00025"
    assert format_number(70.0) == "70"


def _tally(rules: SegmentRules, values: dict, labels: np.ndarray) -> SegmentRules:
    class Plain:  # numeric columns only, as a fitted preprocessor describes them
        numeric_columns_ = list(values)
        categories_ = {}

    tally = RuleTally(rules, len(rules))
    batch = Batch(start=0, n_rows=labels.size, numbers=values)
    tally.add(batch, None, labels, Plain())
    return tally.finish()


def test_a_customer_an_earlier_rule_claims_or_no_rule_selects_is_a_miss():
    income = np.array([10.0, 20.0, 80.0, 90.0, np.nan])
    labels = np.array([0, 0, 1, 1, 1])
    rules = SegmentRules([SegmentRule(0, (Bound("income", lower=False, value=85.0),)),  # claims 80 too
                          SegmentRule(1, (Bound("income", lower=True, value=50.0),))])
    counted = _tally(rules, {"income": income}, labels)
    assert counted.fidelity == pytest.approx(3 / 5)  # 10, 20, 90; 80 is claimed by rule 0, NaN by none
    assert [r.fidelity for r in counted] == pytest.approx([1.0, 2 / 3])
    assert [r.precision for r in counted] == pytest.approx([2 / 3, 1.0])
    assert list(rules.assign({"income": income}, 5)) == [0, 0, 0, 1, NO_RULE]


def test_a_missing_value_meets_no_condition():
    codes = np.array([0, 1, -2, -1])  # France, Spain, missing, a level never seen
    assert list(Levels("Country", frozenset([0]), ("France",), negated=True).holds(codes)) == [False, True, False, True]
    assert list(Bound("age", lower=True, value=3.0).holds(np.array([np.nan, 4.0]))) == [False, True]
    assert list(Bound("age", lower=False, value=3.0).holds(np.array([np.nan, 2.0]))) == [False, True]


def test_a_rule_keeps_at_most_three_conditions():
    rng = np.random.default_rng(5)
    columns = {name: rng.uniform(0, 1, 4000) for name in "abcde"}
    inside = np.all([columns[name] > 0.3 for name in "abcde"], axis=0)
    rules = learn_rules(columns, inside.astype(np.int64), 2, seed=0)
    assert all(len(rule.columns) <= 3 for rule in rules)
    assert len(rules[1].columns) == 3


@pytest.mark.parametrize("scale, offset", [(1e300, 0.0), (1.0, 1e9)])
def test_values_float32_cannot_hold_still_split_exactly(scale, offset):
    # Near 1e300 float32 overflows; at 1e9 its steps are 64 apart, so 1e9 + 3 and 1e9 + 12
    # would be one value: the trees see ranks, and the thresholds fall between the values.
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 150)
    x = offset + scale * (group * 10.0 + rng.uniform(0, 4, group.size))
    frame = pd.DataFrame({"x": x, "y": rng.normal(0, 1, group.size)})
    result = segment(frame, columns=["x"], k=2, report=False, stability=0)
    (low,) = [rule for rule in result.rules if rule.parts[0].symbol in ("<=", "<")]
    assert result.rules.fidelity == 1.0
    assert offset + 4 * scale <= low.parts[0].value <= offset + 10 * scale, low.text
