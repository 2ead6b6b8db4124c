"""One rule per segment in the table's own columns and units, which a person applies without the model.

A rule is a conjunction of at most :data:`MAX_CONDITIONS` conditions, each on one column
of the table, named as the table names it, in the customers' units::

    Annual Income (k$) > 70 and Spending Score (1-100) <= 40
    40 < Age <= 60 and Country is United Kingdom

A customer missing a value that a condition tests does not meet that condition.

Learning (:func:`learn_rules`) works on the uniform sample of the statistics pass, in
original units (at most :data:`RULE_ROWS` of its rows):

1. shallow decision trees (scikit-learn's ``DecisionTreeClassifier``, depth
   :data:`MAX_DEPTH`) are grown: one per segment against the rest, which gives every
   segment candidates of its own even when there are more segments than a tree has
   leaves, and one for all segments together, whose splits fall between neighbouring
   segments; a categorical column enters them as one 0/1 column per level. Every node
   of a tree is a candidate: the conditions on its path, those on one column merged
   into an interval. The classes are weighed equally (``class_weight="balanced"``), so
   that a small segment pulls the splits towards it rather than towards the majority.
   ``benchmarks/bench_rules.py`` compares the six ways (either kind of tree or both,
   balanced or not) on a panel of tables: both kinds, balanced, give the most faithful
   rules on average (0.983 against 0.976 for the next) and are within 0.001 of the
   best on every table;
2. the candidate with the highest F1 against the segment is kept: recall (the share
   of the segment the rule selects) and precision (the share of the selected who
   belong) weigh alike, since a rule that selects too many claims other segments'
   customers;
3. it is simplified: every bound that does not change which sampled rows the rule
   selects is dropped, and beyond :data:`MAX_CONDITIONS` columns, those whose loss
   costs the least F1;
4. each threshold becomes the number with the fewest significant figures that still
   selects the same sampled rows (``> 69.5`` over whole numbers reads ``>= 70``).

Fidelity is measured on every customer, not the sample: :class:`RuleTally` counts,
batch by batch in the last pass over the table, the customers each rule selects and
the customers the rule set gives their own segment (:meth:`SegmentRules.assign`: the
rules are tried in order of segment, and a customer takes the first that selects
them; one no rule selects is a miss).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from .transform import MISSING_CODE

#: Depth of each segment's decision tree: a path holds at most this many thresholds.
MAX_DEPTH = 3
#: Conditions in a rule at most (an interval on one column is one condition).
MAX_CONDITIONS = 3
#: Rows of the sample the rules are chosen, simplified and rounded on.
RULE_ROWS = 200_000
#: Rows of those that the trees are grown on: thresholds of a shallow tree settle
#: long before this, and growing costs time in proportion to rows.
TREE_ROWS = 20_000

#: A customer the rule set gives no segment (no rule selects them).
NO_RULE = -1


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Bound:
    """One side of a numeric condition: ``column > value`` (``lower``) or
    ``column <= value``, or ``>=``/``<`` where ``inclusive`` says the other."""

    column: str
    lower: bool
    value: float
    inclusive: bool = False

    def holds(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.lower:
                return values >= self.value if self.inclusive else values > self.value
            return values <= self.value if not self.inclusive else values < self.value

    @property
    def symbol(self) -> str:
        if self.lower:
            return ">=" if self.inclusive else ">"
        return "<" if self.inclusive else "<="


@dataclass(frozen=True)
class Levels:
    """A categorical condition: ``column is`` one of ``levels`` or, with ``negated``,
    none of them. ``codes`` are the levels' indices in the preprocessor's levels."""

    column: str
    codes: frozenset
    levels: tuple
    negated: bool = False

    def holds(self, codes: np.ndarray) -> np.ndarray:
        inside = np.isin(codes, list(self.codes))
        if self.negated:
            return ~inside & (codes != MISSING_CODE)
        return inside


@dataclass(frozen=True)
class SegmentRule:
    """A segment's rule: its bounds and level conditions (all must hold).

    Attributes
    ----------
    segment : int
    parts : tuple of Bound and Levels
        In order of importance; one column's parts side by side.
    fidelity : float or None
        Share of the segment's customers the rule selects (recall), counted over
        every customer (None until counted).
    precision : float or None
        Share of the customers the rule selects who belong to the segment.
    """

    segment: int
    parts: tuple = ()
    fidelity: float | None = None
    precision: float | None = None

    @property
    def columns(self) -> list[str]:
        """The columns the rule tests, in order of importance."""
        return list(dict.fromkeys(part.column for part in self.parts))

    def selects(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Which rows the rule selects; ``columns``: each tested column's values
        (categorical: level codes)."""
        chosen = np.ones(n_rows, dtype=bool)
        for part in self.parts:
            chosen &= part.holds(columns[part.column])
        return chosen

    @property
    def text(self) -> str:
        """The rule as a person reads it."""
        if not self.parts:
            return "any customer (no condition sets this segment apart)"
        return " and ".join(_column_text([p for p in self.parts if p.column == c]) for c in self.columns)

    def __str__(self) -> str:
        return self.text


def _column_text(parts: list) -> str:
    """One column's condition: ``x > 1``, ``1 < x <= 2``, ``x is A``, ``x is not one of A, B``."""
    if isinstance(parts[0], Levels):
        (part,) = parts
        levels = list(part.levels)
        if len(levels) == 1:
            return f"{part.column} is {'not ' if part.negated else ''}{levels[0]}"
        return f"{part.column} is {'not ' if part.negated else ''}one of {', '.join(levels)}"
    lower = next((p for p in parts if p.lower), None)
    upper = next((p for p in parts if not p.lower), None)
    if lower is not None and upper is not None:
        low_symbol = "<=" if lower.inclusive else "<"
        return f"{format_number(lower.value)} {low_symbol} {lower.column} {upper.symbol} {format_number(upper.value)}"
    (part,) = parts
    return f"{part.column} {part.symbol} {format_number(part.value)}"


def format_number(value: float) -> str:
    """A threshold as written in a rule: plain digits, no exponent, no trailing zeros."""
    return np.format_float_positional(float(value), trim="-")


@dataclass
class SegmentRules:
    """Every segment's rule, in order of segment.

    Attributes
    ----------
    rules : list of SegmentRule
    fidelity : float or None
        ``rules_fidelity``: the share of customers for whom the rule set gives their own
        segment (:meth:`assign`), counted over every customer (None until counted).
    sample_rows : int
        Rows of the sample the rules were learned on.
    """

    rules: list
    fidelity: float | None = None
    sample_rows: int = 0
    columns: list = field(default_factory=list)

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __getitem__(self, segment: int) -> SegmentRule:
        return self.rules[segment]

    def selections(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Which rows each rule selects, shape (segments, rows)."""
        return np.stack([rule.selects(columns, n_rows) for rule in self.rules]) if self.rules \
            else np.zeros((0, n_rows), dtype=bool)

    def assign(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Each row's segment by the rules: the first, in order of segment, whose rule
        selects it; :data:`NO_RULE` where none does."""
        return first_match(self.selections(columns, n_rows))

    def to_records(self) -> list[dict]:
        """Per segment: ``rule``, ``rule_fidelity``, ``rule_precision``."""
        return [{"segment": r.segment, "rule": r.text, "rule_fidelity": r.fidelity, "rule_precision": r.precision}
                for r in self.rules]


def first_match(selections: np.ndarray) -> np.ndarray:
    """Per row (column of ``selections``), the first rule that selects it; :data:`NO_RULE` for none."""
    if selections.shape[0] == 0:
        return np.full(selections.shape[1], NO_RULE, dtype=np.int64)
    first = np.argmax(selections, axis=0).astype(np.int64)
    first[~selections.any(axis=0)] = NO_RULE
    return first


# ---------------------------------------------------------------- the table's columns


def rule_columns(batch, prep, kept: np.ndarray | None = None,
                 codes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The values rules test, per column, for a batch's rows (``kept``: positions in
    the batch; None: all): numbers in original units (NaN: missing), and for a
    categorical column the level codes of ``prep.category_codes`` (``codes``: those
    codes where the caller has them)."""
    columns = {name: batch.numbers[name] for name in prep.numeric_columns_}
    if prep.categories_:
        if codes is None:
            codes = prep.category_codes(batch)
        for name, column_codes in zip(prep.categories_, codes):
            columns[name] = column_codes
    if kept is not None:
        columns = {name: values[kept] for name, values in columns.items()}
    return columns


# ---------------------------------------------------------------- learning


def segment_rules(sample, labels: np.ndarray, prep, n_segments: int, seed: int = 0) -> SegmentRules:
    """:func:`learn_rules` on the statistics pass's sampled rows ``sample`` (a batch in
    original units) whose segments are ``labels``, in the columns ``prep`` clusters."""
    return learn_rules(rule_columns(sample, prep), labels, n_segments, categories=prep.categories_, seed=seed)




def learn_rules(
    columns: Mapping[str, np.ndarray],
    labels: np.ndarray,
    n_segments: int,
    *,
    categories: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    class_weight: str | None = "balanced",
    trees: str = "both",
    max_depth: int = MAX_DEPTH,
) -> SegmentRules:
    """Learn one rule per segment from sampled rows (see the module's notes).

    Parameters
    ----------
    columns : mapping of str to ndarray
        Per column, the sampled rows' values: numbers in original units (NaN:
        missing), or, for a column in ``categories``, level codes.
    labels : ndarray of int
        The sampled rows' segments.
    n_segments : int
    categories : mapping of str to sequence of str, optional
        The categorical columns and their levels (code ``i`` is ``levels[i]``).
    seed : int
        Seeds the choice of rows (above :data:`RULE_ROWS`) and the trees.
    class_weight : {"balanced", None}
        Passed to each tree.
    trees : {"one-vs-rest", "multiclass", "both"}
        One tree per segment against the rest, one tree for all segments, or the
        candidates of both.
    max_depth : int
        Depth of the trees.
    """
    categories = {name: list(levels) for name, levels in (categories or {}).items()}
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    rows = _subset(labels.size, RULE_ROWS, rng)
    columns = {name: np.asarray(values)[rows] for name, values in columns.items()}
    labels = labels[rows]
    n = labels.size
    features = _Features(columns, categories)
    grow = _subset(n, TREE_ROWS, rng)
    candidates_of = _candidate_paths(features, labels, n_segments, grow, seed=seed, class_weight=class_weight,
                                     trees=trees, max_depth=max_depth)
    rules = []
    for s in range(n_segments):
        members = labels == s
        best = max(candidates_of(s), key=lambda parts: _f1(_selects(parts, columns, n), members), default=())
        parts = _simplified(best, columns, members, n)
        parts = tuple(_rounded(parts, i, columns, n) for i in range(len(parts)))
        rules.append(SegmentRule(segment=s, parts=parts))
    return SegmentRules(rules=rules, sample_rows=n, columns=list(columns))


def _subset(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` of ``n`` positions, in order (all of them when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


class _Features:
    """The trees' matrix: each numeric column as the ranks of its distinct values, each
    categorical column as one 0/1 column per level; and, per matrix column, the part a
    split on it makes.

    Ranks keep the rows' order exactly in float32, which scikit-learn's trees compute
    in, whatever the values' size (1e300 overflows float32; 1e6 + 0.5 rounds to 1e6);
    a split between two ranks becomes a threshold between the two values.
    """

    def __init__(self, columns: Mapping[str, np.ndarray], categories: Mapping[str, list]):
        blocks, self.meaning, self.values = [], [], []
        for name, values in columns.items():
            if name in categories:
                for code, level in enumerate(categories[name]):
                    blocks.append((values == code).astype(np.float32))
                    self.meaning.append((name, code, level))
                    self.values.append(None)
            else:
                values = np.asarray(values, dtype=np.float64)
                present = ~np.isnan(values)
                distinct, ranks = np.unique(values[present], return_inverse=True)
                column = np.full(values.shape, np.nan, dtype=np.float32)
                column[present] = ranks
                blocks.append(column)
                self.meaning.append((name, None, None))
                self.values.append(distinct)
        self.matrix = np.column_stack(blocks) if blocks else np.zeros((len(next(iter(columns.values()), [])), 0))

    def part(self, feature: int, threshold: float, right: bool):
        """The condition the split ``feature <= threshold`` makes on its ``right`` (>) or left side."""
        name, code, level = self.meaning[feature]
        if code is None:
            return Bound(name, lower=right, value=_between_ranks(self.values[feature], threshold))
        return Levels(name, frozenset([code]), (level,), negated=not right)


def _between_ranks(distinct: np.ndarray, threshold: float) -> float:
    """The value that splits ``distinct`` (sorted) where a split at rank ``threshold``
    does: midway between the two values around it; below the lowest value when the
    split only sets missing values (filled below every rank) apart."""
    below = int(np.floor(threshold))
    if below < 0:
        return float(np.nextafter(distinct[0], -np.inf))
    if below + 1 >= distinct.size:
        return float(distinct[-1])
    low, high = float(distinct[below]), float(distinct[below + 1])
    middle = low / 2 + high / 2  # halves first: the sum of two values near 1e308 overflows
    return middle if middle < high else low  # two neighbouring floats have no value between them


def _candidate_paths(features: _Features, labels, n_segments, grow, *, seed, class_weight, trees, max_depth):
    """A function giving segment ``s``'s candidate rules: the parts on the path to
    every node (but the root) of the trees that concern it, merged."""
    from sklearn.tree import DecisionTreeClassifier

    if trees not in ("one-vs-rest", "multiclass", "both"):
        raise ValueError(f"trees must be 'one-vs-rest', 'multiclass' or 'both', got {trees!r}")
    X, y = _filled(features.matrix[grow]), labels[grow]

    def grown(target):
        tree = DecisionTreeClassifier(max_depth=max_depth, class_weight=class_weight, random_state=seed,
                                      min_samples_leaf=max(1, y.size // 1000))
        return _node_paths(tree.fit(X, target).tree_, features)

    # The trees are independent and scikit-learn grows them without the GIL: one thread a core.
    segments = [s for s in range(n_segments) if 0 < (y == s).sum() < y.size] \
        if trees in ("one-vs-rest", "both") else []
    with ThreadPoolExecutor(max_workers=max(1, min(len(segments) + 1, os.cpu_count() or 1))) as pool:
        shared = pool.submit(grown, y) if trees in ("multiclass", "both") and np.unique(y).size > 1 else None
        own = dict(zip(segments, pool.map(lambda s: grown(y == s), segments)))
        shared = shared.result() if shared is not None else []

    def candidates(s: int) -> list:
        return [_merged(path) for path in list(shared) + own.get(s, [])]

    return candidates


def _filled(X: np.ndarray) -> np.ndarray:
    """The trees' matrix with a missing number replaced by the column's lowest value
    less one: the tree still sees every row, and a missing value sits below every
    threshold it learns. (A rule's condition is never met by a missing value; the
    rounding and F1 choice, on the real values, judge that honestly.)"""
    if not np.isnan(X).any():
        return X
    low = np.nanmin(np.where(np.isnan(X).all(axis=0), 0, X), axis=0) - 1
    return np.where(np.isnan(X), low, X)


def _node_paths(tree, features: _Features) -> list[list]:
    """The parts on the path from the root to every other node of a fitted tree."""
    paths, stack = [], [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = tree.children_left[node], tree.children_right[node]
        if left == right:  # a leaf
            continue
        feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
        for child, is_right in ((left, False), (right, True)):
            child_path = path + [features.part(feature, threshold, is_right)]
            paths.append(child_path)
            stack.append((child, child_path))
    return paths


def _merged(path: list) -> tuple:
    """A path's parts with those on one column merged: the tightest bound on each
    side, and one level condition (``is A`` wins over ``is not B``; several
    ``is not``'s gather)."""
    merged: dict = {}
    for part in path:
        if isinstance(part, Bound):
            key = (part.column, part.lower)
            held = merged.get(key)
            tighter = held is None or (part.value > held.value if part.lower else part.value < held.value)
            merged[key] = part if tighter else held
            continue
        key = (part.column, "levels")
        held = merged.get(key)
        merged[key] = part if held is None else _joined_levels(held, part)
    return tuple(merged.values())


def _joined_levels(a: Levels, b: Levels) -> Levels:
    if a.negated and b.negated:
        codes = a.codes | b.codes
        names = dict(zip(a.codes, a.levels)) | dict(zip(b.codes, b.levels))
        return Levels(a.column, codes, tuple(names[c] for c in sorted(codes)), negated=True)
    if a.negated:
        a, b = b, a
    if b.negated:  # "is A" and "is not B"
        kept = [(c, level) for c, level in zip(a.codes, a.levels) if c not in b.codes]
    else:  # both "is": only the levels in both
        kept = [(c, level) for c, level in zip(a.codes, a.levels) if c in b.codes]
    return Levels(a.column, frozenset(c for c, _ in kept), tuple(level for _, level in kept))


def _selects(parts: tuple, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    chosen = np.ones(n, dtype=bool)
    for part in parts:
        chosen &= part.holds(columns[part.column])
    return chosen


def _f1(selected: np.ndarray, members: np.ndarray) -> float:
    both = np.count_nonzero(selected & members)
    total = np.count_nonzero(selected) + np.count_nonzero(members)
    return 2.0 * both / total if total else 0.0


def _simplified(parts: tuple, columns, members: np.ndarray, n: int) -> tuple:
    """``parts`` without the parts that change no selection on the sample, on at most
    :data:`MAX_CONDITIONS` columns (keeping those whose loss costs the most F1), in
    order of importance: the F1 each column's loss costs, largest first."""
    selected = _selects(parts, columns, n)
    for part in list(parts):
        fewer = tuple(p for p in parts if p is not part)
        if np.array_equal(_selects(fewer, columns, n), selected):
            parts = fewer

    def without(column):
        return tuple(p for p in parts if p.column != column)

    def loss(column) -> float:
        return _f1(_selects(parts, columns, n), members) - _f1(_selects(without(column), columns, n), members)

    names = list(dict.fromkeys(p.column for p in parts))
    while len(names) > MAX_CONDITIONS:
        parts = without(min(names, key=loss))
        names = list(dict.fromkeys(p.column for p in parts))
    order = sorted(names, key=loss, reverse=True)
    return tuple(p for name in order for p in parts if p.column == name)


def _rounded(parts: tuple, i: int, columns, n: int):
    """Part ``i`` of ``parts`` with its threshold written in the fewest significant
    figures that select the same rows of the sample as it does, given the other parts."""
    part = parts[i]
    if not isinstance(part, Bound):
        return part
    others = _selects(parts[:i] + parts[i + 1:], columns, n)
    values = columns[part.column][others]
    values = values[np.isfinite(values)]
    chosen = part.holds(values)
    outside = values[~chosen]
    inside = values[chosen]
    if not outside.size or not inside.size:
        return part
    # The rows it selects are those beyond the gap (lo, hi) between the last value it
    # leaves out and the first it keeps (on the side it bounds).
    if part.lower:
        lo, hi = float(outside.max()), float(inside.min())
    else:
        lo, hi = float(inside.max()), float(outside.min())
    best = None
    for inclusive in (part.inclusive, not part.inclusive):
        # x > t and x <= t keep the selection for t in [lo, hi); x >= t and x < t for t in (lo, hi].
        value = _simplest_between(lo, hi, closed_low=not inclusive, near=part.value)
        if value is not None and (best is None or _figures(value) < _figures(best[0])):
            best = (value, inclusive)
    if best is None:
        return part
    return replace(part, value=best[0], inclusive=best[1])


def _figures(value: float) -> int:
    """Significant figures ``value`` is written with."""
    digits = format_number(abs(value)).replace(".", "").lstrip("0").rstrip("0")
    return max(len(digits), 1)


def _simplest_between(lo: float, hi: float, *, closed_low: bool, near: float) -> float | None:
    """The number in the gap between ``lo`` and ``hi`` with the fewest significant
    figures, nearest ``near`` among those; the gap holds ``lo`` and not ``hi`` when
    ``closed_low``, else ``hi`` and not ``lo``. None when no float fits."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return None
    magnitude = max(abs(lo), abs(hi))
    top = math.floor(math.log10(magnitude)) if magnitude > 0 else 0
    for figures in range(1, 18):
        step = 10.0 ** (top - figures + 1)
        first, last = math.ceil(lo / step), math.floor(hi / step)
        picks = []
        for m in {first, last, round(near / step)}:
            value = float(f"{m * step:.{figures + 2}g}")
            inside = (lo <= value < hi) if closed_low else (lo < value <= hi)
            if inside:
                picks.append(value)
        if picks:
            return min(picks, key=lambda v: (abs(v - near), v))
    return None


# ---------------------------------------------------------------- fidelity over every customer


class RuleTally:
    """Counts, batch by batch, what :attr:`rules` select among every clustered
    customer: :meth:`finish` writes each rule's fidelity and precision and the rule
    set's fidelity into ``rules``."""

    def __init__(self, rules: SegmentRules, n_segments: int):
        self.rules = rules
        self.sizes = np.zeros(n_segments, dtype=np.int64)
        self.selected = np.zeros(n_segments, dtype=np.int64)
        self.selected_own = np.zeros(n_segments, dtype=np.int64)
        self.first_own = np.zeros(n_segments, dtype=np.int64)

    def add(self, batch, kept, labels: np.ndarray, prep, codes: np.ndarray | None = None) -> None:
        """Add a batch's clustered rows (``kept``: their positions in the batch, None:
        all) with their segments ``labels``; ``codes``: the batch's
        ``prep.category_codes`` where the caller has them."""
        labels = np.asarray(labels, dtype=np.int64)
        k = self.sizes.size
        selections = self.rules.selections(rule_columns(batch, prep, kept, codes), labels.size)
        self.sizes += np.bincount(labels, minlength=k)[:k]
        self.selected += selections.sum(axis=1)
        own = selections[labels, np.arange(labels.size)]
        self.selected_own += np.bincount(labels[own], minlength=k)[:k]
        right = first_match(selections) == labels
        self.first_own += np.bincount(labels[right], minlength=k)[:k]

    def finish(self) -> SegmentRules:
        with np.errstate(invalid="ignore", divide="ignore"):
            fidelity = self.selected_own / self.sizes
            precision = self.selected_own / self.selected
        self.rules.rules = [
            replace(rule, fidelity=_share(fidelity[s]), precision=_share(precision[s]))
            for s, rule in enumerate(self.rules.rules)
        ]
        total = int(self.sizes.sum())
        self.rules.fidelity = float(self.first_own.sum() / total) if total else None
        return self.rules


def _share(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# ---------------------------------------------------------------- outputs

#: What ``rules_fidelity`` in the summary means.
RULES_FIDELITY_NOTE = (
    "the share of customers whose segment the rules give: each customer takes the first rule, in order of "
    "segment, that selects them; a customer no rule selects counts as a miss. A segment's rule_fidelity is "
    "the share of its customers its rule selects, rule_precision the share of those the rule selects who "
    "belong to it. A missing value meets no condition."
)


def with_rules(profiles, rules: SegmentRules):
    """The profile table with each segment's ``rule`` and ``rule_fidelity`` after its share."""
    profiles = profiles.copy()
    at = list(profiles.columns).index("share") + 1
    profiles.insert(at, "rule", [rule.text for rule in rules])
    profiles.insert(at + 1, "rule_fidelity", [rule.fidelity for rule in rules])
    return profiles


def add_rules_to_summary(summary: dict, rules: SegmentRules) -> None:
    """Each segment's ``rule``, ``rule_fidelity`` and ``rule_precision``, and the rule
    set's ``rules_fidelity`` with what it means, into ``summary``."""
    for item, record in zip(summary["segments"], rules.to_records()):
        item.update({key: value for key, value in record.items() if key != "segment"})
    summary["rules_fidelity"] = rules.fidelity
    summary["rules_note"] = RULES_FIDELITY_NOTE
