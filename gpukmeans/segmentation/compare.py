"""Where customers moved between two snapshots: two segments files joined on the customer ID.

:func:`compare_segments` reads two files written by ``segment`` or ``predict`` (CSV or
Parquet: the ID column or ``row``, ``segment``, ``segment_name``, ``distance``), joins
them on the ID, and counts customers by their old and new segment (:class:`Comparison`):
rows are the old snapshot's segments, columns the new one's, with a row
``(new customers)`` for IDs only in the new file and a column ``(left)`` for IDs only in
the old one, each only when there are any.

To say who *stayed*, each old segment is matched to a new one (:attr:`Comparison.matching`):

- ``"name"``: both files come from one model (their models are the same, or, with a
  model for at most one of them, every segment number carries the same name in both
  files), so a segment is the segment of the same number;
- ``"centres"``: two different models over the same features: each new centre is taken
  to the customers' units and then into the old model's space, and the pairs of
  nearest centres are chosen together (the Hungarian assignment,
  ``scipy.optimize.linear_sum_assignment``);
- ``"overlap"``: otherwise, the Hungarian assignment that keeps the most customers in
  matched pairs, on the table of counts.

A model is found beside each segments file (``model.safetensors`` in ``segment``'s
output folder) or given (``old_model``, ``new_model``). :func:`transitions_html` draws
the flows as an inline SVG (an alluvial diagram) above the table, in one
self-contained page.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .io import PARQUET_SUFFIXES, check_output_file, read_columns, write_table, write_text
from .model_io import MODEL_FILE, SegmentModel, load_model

#: The row of customers only in the new file, and the column of those only in the old.
NEW_CUSTOMERS, LEFT = "(new customers)", "(left)"
#: Flows printed and shown, largest first.
TOP_FLOWS = 5
_SEGMENT_COLUMNS = ("segment", "segment_name")


@dataclass
class SegmentsFile:
    """A segments file read for comparing: its ID column's name and, per customer, the
    ID (as text), segment number and name."""

    path: Path
    key: str
    ids: pd.Series
    segments: np.ndarray
    names: list[str]


@dataclass
class Comparison:
    """What :func:`compare_segments` found.

    Attributes
    ----------
    counts : pandas.DataFrame
        Customers by old segment (rows, by name) and new segment (columns, by name),
        with ``(new customers)`` and ``(left)`` when there are any.
    matching : dict of str to str
        Each matched old segment's name to its new segment's name.
    method : {"name", "centres", "overlap"}
        How segments were matched (see the module's notes).
    stayed : float or None
        Share of the customers in both files whose new segment is their old one's match.
    flows : list of (str, str, int, float)
        The largest moves: old segment, new segment (or ``(left)``), customers, and
        their share of the old segment.
    key : str
        The ID column joined on.
    """

    counts: pd.DataFrame
    matching: dict
    method: str
    stayed: float | None
    flows: list
    key: str
    in_both: int = 0
    notes: list = field(default_factory=list)

    def flow_lines(self) -> list[str]:
        """The largest flows as ``A -> B: n (x% of A)``."""
        return [f"{a} -> {b}: {n:,} ({100 * share:.1f}% of {a})" for a, b, n, share in self.flows]


def compare_segments(
    old: str | os.PathLike,
    new: str | os.PathLike,
    *,
    old_model: str | os.PathLike | None = None,
    new_model: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    html_out: str | os.PathLike | None = None,
    force: bool = False,
) -> Comparison:
    """Compare two segments files (see the module's notes).

    ``out`` (CSV, or Parquet by its suffix) receives :attr:`Comparison.counts` with the
    old segment's name in the first column; ``html_out`` the flow chart and the table.
    Each is refused when it exists (unless ``force``), is an input, or is not a
    regular file, before anything is read; both are written atomically.

    Raises
    ------
    InputError
        A file missing or not a segments file, no ID column common to both, an ID
        that repeats in a file, an output that would replace something.
    """
    inputs = {"old segments file": old, "new segments file": new}
    inputs.update({name: path for name, path in (("old model", old_model), ("new model", new_model)) if path})
    outputs = [Path(p) for p in (out, html_out) if p is not None]
    if len(outputs) == 2 and outputs[0].absolute() == outputs[1].absolute():
        raise InputError(f"--out and --html name the same file {outputs[0]}")
    for path in outputs:
        check_output_file(path, force=force, inputs=inputs)
    before, after = read_segments_file(old), read_segments_file(new)
    if before.key != after.key:
        raise InputError(
            f"{before.path} identifies customers by {before.key!r} and {after.path} by {after.key!r}: "
            f"the files have no common ID column"
        )
    models = (_model_beside(before.path, old_model), _model_beside(after.path, new_model))
    comparison = _compare(before, after, models)
    if out is not None:
        path = Path(out)
        fmt = "parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv"
        write_table(comparison.counts.reset_index(), path, fmt, replace=force)
    if html_out is not None:
        write_text(transitions_html(comparison, before.path, after.path), html_out)
    return comparison


def read_segments_file(path: str | os.PathLike) -> SegmentsFile:
    """A segments file, checked: the segment columns present, every ID given once."""
    path = Path(path)
    columns = read_columns(path)
    missing = [c for c in _SEGMENT_COLUMNS if c not in columns]
    keys = [c for c in columns if c not in (*_SEGMENT_COLUMNS, "distance")]
    if missing or not keys:
        lacking = ", ".join(repr(c) for c in missing) if missing else "an ID column"
        raise InputError(f"{path} is not a segments file of gpukmeans segment or predict: it lacks {lacking}")
    key = keys[0]
    frame = _read(path, key)
    ids = frame[key]
    if ids.isna().any():
        raise InputError(f"{path} has a customer without an ID in column {key!r} (data row {int(ids.isna().argmax()) + 1})")
    ids = ids.astype(str)
    repeated = ids.duplicated()
    if repeated.any():
        raise InputError(f"{path}: ID {ids[repeated].iloc[0]!r} appears more than once in column {key!r}; "
                         f"IDs must be unique to join the snapshots")
    segments = pd.to_numeric(frame["segment"], errors="coerce")
    if segments.isna().any() or (segments < 0).any() or (segments % 1 != 0).any():
        raise InputError(f"{path}: column 'segment' must hold segment numbers (0, 1, ...)")
    segments = segments.to_numpy(dtype=np.int64)
    names = {}
    for number, name in zip(segments, frame["segment_name"].astype(str)):
        if names.setdefault(int(number), name) != name:
            raise InputError(f"{path}: segment {int(number)} carries two names, {names[int(number)]!r} and {name!r}")
    ordered = [names.get(s, f"segment {s}") for s in range(max(names, default=-1) + 1)]
    return SegmentsFile(path, key, ids.reset_index(drop=True), segments, ordered)


def _read(path: Path, key: str) -> pd.DataFrame:
    import pyarrow as pa

    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=[key, *_SEGMENT_COLUMNS]).to_pandas()
        import pyarrow.csv as pacsv

        options = pacsv.ConvertOptions(column_types={key: pa.string()}, include_columns=[key, *_SEGMENT_COLUMNS])
        return pacsv.read_csv(path, convert_options=options).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read {path} as a segments file: {str(exc).splitlines()[0]}") from None


def _model_beside(path: Path, given) -> SegmentModel | None:
    """The model given, else the one ``segment`` wrote beside the file, else None."""
    if given is not None:
        return load_model(given)
    beside = path.parent / MODEL_FILE
    return load_model(beside) if beside.is_file() else None


def _numeric_id_hint(old_ids, new_ids) -> str:
    """A hint when IDs that match nowhere as written match as numbers ("0001" and "1"):
    one of the files was written by a tool that dropped the leading zeros."""
    old_numbers = pd.to_numeric(pd.Series(old_ids, dtype=object).astype(str), errors="coerce").dropna()
    new_numbers = pd.to_numeric(pd.Series(new_ids, dtype=object).astype(str), errors="coerce").dropna()
    shared = np.intersect1d(old_numbers.to_numpy(), new_numbers.to_numpy())
    if shared.size == 0:
        return ""
    return (f"; {shared.size:,} IDs match when read as numbers (such as {_example(old_ids, shared[0])}): "
            "IDs are compared as written, so write both files with the same ID format")


def _example(ids, number) -> str:
    for value in ids:
        try:
            if float(str(value)) == number:
                return repr(str(value))
        except ValueError:
            continue
    return repr(str(number))


def _compare(before: SegmentsFile, after: SegmentsFile, models) -> Comparison:
    old_at = pd.Series(before.segments, index=before.ids)
    new_at = pd.Series(after.segments, index=after.ids)
    both = old_at.index.intersection(new_at.index)
    table = np.zeros((len(before.names), len(after.names)), dtype=np.int64)
    np.add.at(table, (old_at.loc[both].to_numpy(), new_at.loc[both].to_numpy()), 1)
    left = np.bincount(old_at.drop(both).to_numpy(), minlength=len(before.names))
    arrived = np.bincount(new_at.drop(both).to_numpy(), minlength=len(after.names))
    method, pairs = _matching(before, after, models, table)
    counts = pd.DataFrame(table, index=pd.Index(before.names, name="old segment"), columns=after.names)
    if left.sum():
        counts[LEFT] = left
    if arrived.sum():
        counts.loc[NEW_CUSTOMERS] = list(arrived) + ([0] if left.sum() else [])
    stayed = float(sum(table[a, b] for a, b in pairs) / len(both)) if len(both) else None
    notes = [] if len(both) else [f"no customer is in both {before.path} and {after.path}"
                                  + _numeric_id_hint(before.ids, after.ids)]
    return Comparison(
        counts=counts, matching={before.names[a]: after.names[b] for a, b in pairs}, method=method, stayed=stayed,
        flows=_largest_flows(table, left, pairs, before.names, after.names), key=before.key, in_both=len(both),
        notes=notes,
    )


def _matching(before, after, models, table) -> tuple[str, list[tuple[int, int]]]:
    """How segments are matched and the matched (old, new) pairs."""
    from scipy.optimize import linear_sum_assignment

    old_model, new_model = models
    if _same_model(before, after, old_model, new_model):
        return "name", [(s, s) for s in range(min(len(before.names), len(after.names)))]
    if old_model is not None and new_model is not None and _same_features(old_model, new_model):
        old_centres = old_model.cluster_centers
        new_centres = into_space(old_model, original_centres(new_model))
        cost = ((old_centres[:, None, :] - new_centres[None, :, :]) ** 2).sum(axis=2)
        rows, cols = linear_sum_assignment(cost)
        return "centres", sorted(zip(rows.tolist(), cols.tolist()))
    rows, cols = linear_sum_assignment(table, maximize=True)
    return "overlap", sorted(zip(rows.tolist(), cols.tolist()))


def _same_model(before, after, old_model, new_model) -> bool:
    if old_model is not None and new_model is not None:
        return (old_model.segment_names == new_model.segment_names
                and np.array_equal(old_model.cluster_centers, new_model.cluster_centers)
                and old_model.preprocessor.to_dict() == new_model.preprocessor.to_dict())
    known = old_model or new_model
    if known is not None and not all(_names_fit(f.names, known.segment_names) for f in (before, after)):
        return False
    return _names_fit(before.names, after.names) or _names_fit(after.names, before.names)


def _names_fit(names: list[str], model_names: list[str]) -> bool:
    """Whether every segment number in ``names`` carries the name it has in ``model_names``."""
    return len(names) <= len(model_names) and all(a == b for a, b in zip(names, model_names))


def _same_features(a: SegmentModel, b: SegmentModel) -> bool:
    return list(a.preprocessor.feature_names_out_) == list(b.preprocessor.feature_names_out_)


def original_centres(model: SegmentModel) -> np.ndarray:
    """The model's centres in the customers' units (a level's column: its share)."""
    params = model.preprocessor.parameters()
    g = (model.cluster_centers * params.scale + params.center) * params.unit + params.shift
    n_numeric = params.impute.size
    with np.errstate(over="ignore"):
        g[:, :n_numeric] = np.where(params.log, np.expm1(g[:, :n_numeric]), g[:, :n_numeric])
    return g


def into_space(model: SegmentModel, centres: np.ndarray) -> np.ndarray:
    """Points in the customers' units taken into ``model``'s clustered space, as its
    preprocessing takes a customer."""
    params = model.preprocessor.parameters()
    g = np.array(centres, dtype=np.float64)
    n_numeric = params.impute.size
    numeric = g[:, :n_numeric]
    with np.errstate(invalid="ignore", divide="ignore"):
        logged = np.log1p(np.maximum(numeric, params.floor))
    numeric = np.clip(np.where(params.log, logged, numeric), params.low, params.high)
    g[:, :n_numeric] = numeric
    return ((g - params.shift) / params.unit - params.center) / params.scale


def _largest_flows(table, left, pairs, old_names, new_names) -> list:
    """The :data:`TOP_FLOWS` largest moves out of a segment (to another, or away)."""
    matched = dict(pairs)
    sizes = table.sum(axis=1) + left
    moves = [(int(table[a, b]), a, new_names[b]) for a in range(table.shape[0]) for b in range(table.shape[1])
             if matched.get(a) != b and table[a, b]]
    moves += [(int(left[a]), a, LEFT) for a in range(left.size) if left[a]]
    moves.sort(key=lambda move: (-move[0], move[1], move[2]))
    return [(old_names[a], b, n, n / sizes[a]) for n, a, b in moves[:TOP_FLOWS]]


# ---------------------------------------------------------------- the flow chart


_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
            "#bab0ac"]


def transitions_html(comparison: Comparison, old_path, new_path) -> str:
    """A self-contained page: the flows as an alluvial diagram (inline SVG) and the table."""
    e = html.escape
    stayed = "" if comparison.stayed is None else (
        f"<p>{100 * comparison.stayed:.1f}% of the {comparison.in_both:,} customers in both snapshots stayed in "
        f"their segment (segments matched by {e(comparison.method)}).</p>")
    flows = "".join(f"<li>{e(line)}</li>" for line in comparison.flow_lines())
    matching = "".join(f"<li>{e(a)} &rarr; {e(b)}</li>" for a, b in comparison.matching.items())
    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Segment transitions</title>",
        "<style>body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;"
        "max-width:1150px;color:#222;padding:0 1rem}table{border-collapse:collapse;font-size:.85rem}"
        "th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f5f5f5}"
        "td.text,th.text{text-align:left}.meta{color:#666}</style></head><body>",
        "<h1>Where customers moved</h1>",
        f"<p class='meta'>From {e(str(old_path))} to {e(str(new_path))}, joined on {e(comparison.key)}.</p>",
        stayed,
        _flow_svg(comparison.counts),
        f"<h2>Largest moves</h2><ul>{flows or '<li>none</li>'}</ul>",
        f"<h2>Matching ({e(comparison.method)})</h2><ul>{matching}</ul>",
        "<h2>Customers by old segment (rows) and new segment (columns)</h2>",
        _counts_table(comparison.counts),
        "</body></html>",
    ])


def _flow_svg(counts: pd.DataFrame, width: int = 1100, height: int = 560) -> str:
    """The table as an alluvial diagram: old segments on the left, new on the right,
    each band as wide as its customers."""
    e = html.escape
    table = counts.to_numpy(dtype=np.float64)
    total = table.sum()
    if total <= 0:
        return "<p>No customers to draw.</p>"
    gap, top, bar, label_width = 10.0, 20.0, 18.0, 300.0
    usable_left = height - 2 * top - gap * (table.shape[0] - 1)
    usable_right = height - 2 * top - gap * (table.shape[1] - 1)
    scale = min(usable_left, usable_right) / total
    left_x, right_x = label_width, width - label_width

    def stacks(sizes):
        y, spans = top, []
        for size in sizes:
            spans.append((y, y + size * scale))
            y += size * scale + gap
        return spans

    lefts, rights = stacks(table.sum(axis=1)), stacks(table.sum(axis=0))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' role='img' aria-label='flows between segments'>"]
    out_y = [span[0] for span in lefts]
    in_y = [span[0] for span in rights]
    for a in range(table.shape[0]):
        colour = _COLOURS[a % len(_COLOURS)]
        for b in range(table.shape[1]):
            band = table[a, b] * scale
            if band <= 0:
                continue
            y0, y1 = out_y[a], in_y[b]
            out_y[a] += band
            in_y[b] += band
            x0, x1 = left_x + bar, right_x
            middle = (x0 + x1) / 2
            parts.append(
                f"<path d='M{x0:.1f},{y0:.1f} C{middle:.1f},{y0:.1f} {middle:.1f},{y1:.1f} {x1:.1f},{y1:.1f} "
                f"L{x1:.1f},{y1 + band:.1f} C{middle:.1f},{y1 + band:.1f} {middle:.1f},{y0 + band:.1f} "
                f"{x0:.1f},{y0 + band:.1f} Z' fill='{colour}' fill-opacity='0.45'>"
                f"<title>{e(str(counts.index[a]))} -> {e(str(counts.columns[b]))}: {int(table[a, b]):,}</title></path>")
    for spans, names, sizes, x, anchor, dx in (
        (lefts, counts.index, table.sum(axis=1), left_x, "end", -6),
        (rights, counts.columns, table.sum(axis=0), right_x, "start", bar + 6),
    ):
        for i, ((y0, y1), name) in enumerate(zip(spans, names)):
            colour = _COLOURS[i % len(_COLOURS)] if anchor == "end" else "#555"
            parts.append(f"<rect x='{x:.1f}' y='{y0:.1f}' width='{bar}' height='{max(y1 - y0, 1):.1f}' "
                         f"fill='{colour}'/>")
            parts.append(f"<text x='{x + dx:.1f}' y='{(y0 + y1) / 2 + 4:.1f}' text-anchor='{anchor}' "
                         f"font-size='12'>{e(_short(str(name)))} ({int(sizes[i]):,})</text>")
    parts.append("</svg>")
    return "".join(parts)


def _short(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _counts_table(counts: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in counts.columns)
    rows = [f"<table><tr><th class='text'>old \\ new</th>{head}</tr>"]
    for name, row in counts.iterrows():
        cells = "".join(f"<td>{int(v):,}</td>" for v in row)
        rows.append(f"<tr><td class='text'>{e(str(name))}</td>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)
