"""``segment``: from a customer table to named segments, a report and a reusable model.

This is what ``gpukmeans segment`` runs; the command line only parses arguments
and prints. The table is never held whole: it is read in batches, three times.

1. ``statistics``: the first pass learns every preprocessing step
   (:func:`~gpukmeans.segmentation.prepare.learn_table`);
2. ``transform``: the second pass transforms the rows, on the fit's device, into
   the float32 matrix the engine clusters (``sweep``, then ``fit``);
3. ``assign``, ``score``, ``stability``, ``name``: on that matrix, on the device:
   each customer's segment and distance through the engine's float64 assignment, the
   quality metrics, each segment's bootstrap stability
   (:mod:`~gpukmeans.segmentation.stability`), and the contrasts that name the segments;
4. ``profile``: the third pass sums each segment's raw values for the profiles and
   writes the segments file as it goes
   (:func:`~gpukmeans.segmentation.assignments.profile_and_write`);
5. ``report`` and ``write``: the report, the model, the profiles and the summary.

Every stage is timed, and a listener (the command line's progress display) is told
when each starts and ends, and how many rows each pass over the table has read.

Under torchrun (an initialised process group of 2+ ranks), every rank reads,
transforms and clusters its share of the table, and rank 0 profiles, reports and
writes, with the same outputs as a single process (see
:mod:`~gpukmeans.segmentation.ranks`).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

import gpukmeans

from .assignments import SegmentsWriter, profile_and_write, segment_key
from .errors import InputError
from .io import (
    PARQUET_SUFFIXES,
    check_decimal,
    check_output_dir,
    check_output_file,
    staged_output_dir,
    write_json,
    write_table,
    write_text,
)
from .labels import check_labels, column_labels, feature_labels
from .model_io import MODEL_FILE, SegmentModel, load_model, save_model
from .prepare import PreparedTable, learn_table, transform_table, transformed_batches
from .preprocess import Preprocessor
from .profiles import name_segments, segment_means, segment_medians, trait_contrasts
from .ranks import Ranks, gather_rows
from .rules import RuleTally, SegmentRules, add_rules_to_summary, segment_rules, with_rules
from .stability import (
    DEFAULT_RESAMPLES,
    MIN_ROWS_PER_SEGMENT,
    check_resamples,
    method_of,
    resampled_rows,
    restarts_for,
    segment_stability,
    stability_of_rows,
    structure_sentence,
    with_stability_column,
)
from .stability import segment_fields as stability_segment
from .stability import summary_fields as stability_summary
from .tables import Batch, TableReader

#: Default range of k tried when no k is given, by ``segment`` and ``sweep`` alike;
#: its top is lowered on a table too small for it.
DEFAULT_K_RANGE = (2, 12)

#: Every file :func:`segment` may write into its folder: a folder holding nothing
#: else is an earlier output, which ``force`` replaces.
SEGMENT_FILES = (
    "segments.csv", "segments.parquet", "profiles.csv", "sweep.csv", MODEL_FILE, "report.html", "summary.json",
)

#: Every file :func:`sweep_k` writes into its folder.
SWEEP_FILES = ("sweep.csv", "elbow.png", "silhouette.png", "summary.json")

#: Rows of the clustered matrix handed to the report (a stratified sample).
_REPORT_ROWS = 20_000


class StageListener(Protocol):
    """Told when each stage of :func:`segment` starts and ends (a progress display),
    and, during a pass over the table, how many rows it has read (``rows_read``,
    optional: a listener without it is not told)."""

    def started(self, key: str, label: str) -> None: ...

    def finished(self, key: str, label: str, seconds: float) -> None: ...


class _Stages:
    """Times stages and forwards start, rows read and end to an optional listener."""

    def __init__(self, listener: StageListener | None):
        self.listener = listener
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, key: str, label: str) -> Iterator[None]:
        if self.listener is not None:
            self.listener.started(key, label)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[key] = self.timings.get(key, 0.0) + seconds
        if self.listener is not None:
            self.listener.finished(key, label, seconds)

    def rows(self, total: int | None):
        """A ``progress(stage, rows)`` callback for a pass over ``total`` rows."""
        told = getattr(self.listener, "rows_read", None)
        if told is None:
            return None
        return lambda key, rows: told(key, rows, total)


@dataclass
class SegmentationResult:
    """Everything :func:`segment` produced.

    Attributes
    ----------
    segments : pandas.DataFrame
        Per customer: the ID column (or ``row``), ``segment``, ``segment_name``,
        ``distance``. Read back from the segments file on first use when one was
        written (the run itself never holds it whole).
    profiles : pandas.DataFrame
        Per segment: size, share, mean/median per feature, mean relative to the population.
    contrasts : pandas.DataFrame
        Per segment and feature, the standardised difference from the population mean
        in original units (see :func:`~gpukmeans.segmentation.profiles.trait_contrasts`).
    model : SegmentModel
    summary : dict
        The content of ``summary.json``.
    sweep : object or None
        The :func:`gpukmeans.sweep` result when k was chosen by a sweep.
    rules : SegmentRules or None
        One rule per segment in the table's columns and units, with its fidelity over
        every customer (see :mod:`~gpukmeans.segmentation.rules`).
    timings : dict of str to float
        Seconds per stage.
    out : pathlib.Path or None
        The output folder, when one was written.
    segments_file : pathlib.Path or None
        The segments file, when one was written.
    """

    profiles: pd.DataFrame
    contrasts: pd.DataFrame
    model: SegmentModel
    summary: dict
    sweep: object | None = None
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None
    segments_file: Path | None = None
    rules: SegmentRules | None = None
    _segments: pd.DataFrame | None = None

    @property
    def segments(self) -> pd.DataFrame:
        if self._segments is None:
            if self.segments_file is None:
                raise RuntimeError("no segments: the run wrote no segments file and kept none in memory")
            self._segments = read_segments(self.segments_file, self.model.preprocessor.id_column_)
        return self._segments


def read_segments(path: str | os.PathLike, id_column: str | None) -> pd.DataFrame:
    """A segments file (CSV or Parquet) as a DataFrame, the ID column as written."""
    import pyarrow as pa

    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pandas()
    import pyarrow.csv as pacsv

    types = {id_column: pa.string()} if id_column is not None else {}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types)).to_pandas()


def parse_k_range(text: str) -> tuple[int, int]:
    """Parse ``"2:12"`` (both ends included) into ``(2, 12)``."""
    try:
        low, high = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise InputError(f"k range must look like 2:12, got {text!r}") from None
    return low, high


def segment(
    data: str | os.PathLike | pd.DataFrame | np.ndarray,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    min_share: float | None = None,
    columns: Sequence[str] | None = None,
    id_column: str | None = "auto",
    categorical: Sequence[str] = (),
    missing: str = "impute",
    log: str | Sequence[str] = "auto",
    clip: float | None = None,
    scale: str = "standard",
    decimal: str | None = None,
    labels: Mapping[str, str] | None = None,
    n_init: int | str = 10,
    sweep_n_init: int | str = "auto",
    max_iter: int = 300,
    seed: int = 0,
    device: str = "auto",
    sample_size: int = 10_000,
    stability: int = DEFAULT_RESAMPLES,
    out: str | os.PathLike | None = None,
    force: bool = False,
    report: bool = True,
    listener: StageListener | None = None,
    command: str | None = None,
    source: str | None = None,
) -> SegmentationResult:
    """Segment a customer table: clean, scale, choose k, cluster, profile, name, report.

    Parameters
    ----------
    data : path, pandas.DataFrame or numpy.ndarray
        A CSV (any delimiter) or Parquet file, or a table already in memory (a 2-D
        array's columns are named ``x0``, ``x1``, ...).
    k : int, optional
        Number of segments. Without it a sweep over ``k_range`` runs and its
        recommended k is taken.
    k_range : (int, int), default=(2, 12)
        Smallest and largest k of the sweep, both included. On a small table the
        largest is lowered to what its rows allow (the silhouette needs more rows
        than segments), with a note in ``summary["notes"]``.
    min_share : float, optional
        No segment smaller than this share of the customers (between 0 and 0.5,
        e.g. 0.05). The sweep skips every k whose fit has a smaller segment (its
        table marks them) and takes the allowed k nearest to its recommendation;
        a given ``k`` whose fit has one is an :class:`InputError`, since the
        segments it would write break the requirement.
    columns, id_column, categorical, missing, log, clip, scale
        Preprocessing; see :class:`~gpukmeans.segmentation.Preprocessor`.
    decimal : {".", ","}, optional
        Decimal separator of numbers written as text that read two ways
        (``1.234``); detected from the file by default. See
        :func:`~gpukmeans.segmentation.read_table`.
    labels : mapping of str to str, optional
        How columns read in segment names and the report, e.g.
        ``{"CASH_ADVANCE": "Cash advances"}``; other columns read as their names made
        readable (see :mod:`~gpukmeans.segmentation.labels`). Each must name a
        column of the table.
    n_init : int or "auto", default=10
        Restarts of the final fit (restarts share each pass over the data, so
        they cost far less than separate fits). Ten restarts find the textbook
        optimum on tables where a single k-means++ start often does not.
    sweep_n_init : int or "auto", default="auto"
        Restarts per k in the sweep, which only has to rank the k's. The
        recommended k is then fitted like a given one, so that ``segment`` and
        ``segment(k=<the recommended k>)`` give the same segments.
    max_iter, seed, device
        Passed to :class:`gpukmeans.KMeans` (``seed`` as ``random_state``); the
        preprocessing runs on ``device`` too.
    sample_size : int, default=10_000
        Rows used for the silhouette (sampled above this) and the report's plots.
    stability : int, default=20
        Bootstrap resamples for each segment's stability (Hennig's mean Jaccard, see
        :mod:`~gpukmeans.segmentation.stability`): a ``stability`` column in the
        profiles, and per segment in the summary. 0 skips it (no column; the summary
        says it was skipped).
    out : path, optional
        Folder to write ``segments``, ``profiles.csv``, ``summary.json``,
        ``report.html`` and ``model.safetensors`` into. It must be new or empty
        unless ``force``; it appears only when everything in it is written.
    force : bool, default=False
        Replace an earlier output at ``out``: a folder holding only files this
        function writes (:data:`SEGMENT_FILES`). A folder holding anything else, or
        the data, is never replaced (see
        :func:`~gpukmeans.segmentation.io.check_output_dir`).
    report : bool, default=True
        Render ``report.html`` (needs matplotlib).
    listener : StageListener, optional
        Told when each stage starts and ends.
    command : str, optional
        The command line, recorded in the summary.
    source : str, optional
        What to call the data in messages and the summary (default: its path).

    Returns
    -------
    SegmentationResult
        On rank 0 of a torch.distributed run, and in a single process; None on the
        other ranks, which write nothing.

    Raises
    ------
    InputError
        For any problem with the data or the arguments, before anything is written.
    OutputError
        If ``out`` is not writable (before any work), or writing fails (a full disk).
    """
    ranks = Ranks.current()
    target = None
    if out is not None:
        target = _on_rank_0(ranks, lambda: check_output_dir(
            out, force=force, own_files=SEGMENT_FILES, inputs=_data_input(data)))
    if k is not None and k < 2:
        raise InputError(f"k must be at least 2, got {k}")
    _check_min_share(min_share)
    resamples = check_resamples(stability)
    device = _check_device(device)
    stages = _Stages(listener)
    started = time.perf_counter()

    reader, preprocessor, prepared, given_labels = _prepare(
        stages, data, source, device, ranks, labels=labels, columns=columns, id_column=id_column,
        categorical=categorical, missing=missing, log=log, clip=clip, scale=scale, decimal=decimal,
    )
    X = prepared.X
    n_rows = int(prepared.stats.n_kept) if ranks is not None else int(X.shape[0])

    notes: list[str] = []
    sweep_result, choice, sweep_table, tried = None, None, None, None
    if k is None:
        tried = _k_range_for(k_range, n_rows, min_share, notes)
        with stages("sweep", f"Sweeping k = {tried[0]}..{tried[1]}"):
            sweep_result = _run_sweep(X, range(tried[0], tried[1] + 1), seed, sample_size, device, sweep_n_init,
                                      max_iter)
        choice = _sweep_choice(sweep_result, ranks, n_rows, min_share, notes)
        sweep_table, candidates = choice.table, choice.candidates
    else:
        if k > n_rows:
            raise InputError(f"k={k} is larger than the number of rows ({n_rows}) in {reader.name}")
        candidates = [k]
    k, centers, fit_info = _fit_within_share(
        stages, X, candidates, n_rows, min_share, notes, given=sweep_result is None,
        seed=seed, n_init=n_init, max_iter=max_iter, device=device, ranks=ranks,
    )
    k_reason = choice.reason_for(k) if choice is not None else "given by the user; no sweep ran"

    with stages("assign", "Assigning customers to segments"):
        labels_t, distances = _assign(X, centers, device)
    with stages("score", "Scoring the segments"):
        metrics = _metrics(X, labels_t, distances, k, seed, sample_size, device, ranks, n_rows)
        metrics.update(fit_info)
    stability_result, stability_skipped = _stability(stages, X, labels_t, k, resamples, n_init, seed, max_iter, ranks,
                                                     prepared)
    labels_np, distances_np = labels_t.cpu().numpy(), distances.cpu().numpy()
    if ranks is not None:
        labels_np, distances_np, prepared.rows, report_rows = _gather_to_rank_0(
            ranks, X, labels_np, distances_np, prepared, seed)
        if not ranks.leads:
            return None
        prepared.n_rows = int(prepared.stats.n_rows)
    else:
        report_rows = _report_sample(X, labels_np, seed)
    prepared.X = X = labels_t = distances = None  # the matrix is not needed past this point

    with stages("name", "Naming the segments"):
        sample, sample_labels = _clustered_sample(prepared, labels_np)
        traits = _sample_traits(sample, sample_labels, preprocessor, k)
        readable = column_labels(preprocessor.numeric_columns_ + list(preprocessor.categories_), given_labels)
        shown_as = feature_labels(preprocessor.feature_names_out_, readable, preprocessor.categories_)
        names = name_segments(traits.contrasts, traits.level_shares, labels=shown_as)
    with stages("rules", "Learning a rule per segment"):
        rules = segment_rules(sample, sample_labels, preprocessor, k, seed)
    with stages("structure", "Judging how distinct the segments are"):
        verdict = _structure_verdict(sweep_result, k, metrics.get("silhouette"), report_rows, seed)
    silhouette_note = _silhouette_note(sweep_result, k, metrics)
    if silhouette_note:
        k_reason = (f"{k_reason.rstrip('.')}. The final fit's silhouette is {metrics['silhouette']:.3f} "
                    f"({silhouette_note}).")

    model = SegmentModel(
        preprocessor=preprocessor,
        cluster_centers=centers,
        segment_names=names,
        info={"k": k, "n_rows": n_rows, "inertia": metrics["inertia"], "trained_on": reader.name,
              "decimal": reader.decimal, "gpukmeans": _version()},
    )
    summary = _summary(
        reader=reader, prepared=prepared, command=command, preprocessor=preprocessor, k=k, k_reason=k_reason,
        metrics=metrics, sweep_table=sweep_table, names=names, labels=labels_np, device=fit_info.get("device"),
    )
    summary.update({
        "k_range": list(tried) if tried is not None else None,
        "min_share": min_share,
        "notes": notes,
        "structure": verdict.structure,
        "structure_note": structure_sentence(verdict.structure, verdict.sentence, k, stability_result),
        "structure_details": verdict.details,
        "silhouette_note": silhouette_note,
        "labels": readable,
        "feature_labels": shown_as,
        **stability_summary(stability_result, stability_skipped),
    })
    for item in summary["segments"]:
        item.update(stability_segment(stability_result, item["segment"]))
    if ranks is not None:
        summary["ranks"] = ranks.world
    result = SegmentationResult(profiles=pd.DataFrame(), contrasts=traits.contrasts, model=model,
                                summary=summary, sweep=sweep_result, timings=stages.timings)
    key = preprocessor.id_column_ if preprocessor.id_column_ is not None else "row"

    def finish(staging: Path | None) -> None:
        path = None if staging is None else staging / f"segments{'.parquet' if reader.format == 'parquet' else '.csv'}"
        writer = SegmentsWriter(path, reader.format, names, key)
        with _drawn_meanwhile(report, result, report_rows, seed, sample_size) as figures:
            with stages("profile", "Profiling segments and writing each customer's segment"):
                tally = RuleTally(rules, k)
                sums = profile_and_write(preprocessor, reader, labels_np, distances_np, prepared.rows, k, writer,
                                         progress=stages.rows(prepared.n_rows), tallies=(tally,))
                result.rules = tally.finish()
                result.profiles = with_stability_column(with_rules(sums.table(names, traits.medians), result.rules),
                                                        stability_result)
                add_rules_to_summary(summary, result.rules)
            if staging is None:
                result._segments = writer.frame()
            html = None
            if report:
                with stages("report", "Drawing the report"):
                    from .report import finish_report

                    html = finish_report(result, figures.result())
        if staging is None:
            return
        with stages("write", "Writing the model, profiles and summary"):
            write_table(result.profiles, staging / "profiles.csv", "csv")
            if sweep_table is not None:
                write_table(sweep_table, staging / "sweep.csv", "csv")
            save_model(model, staging / MODEL_FILE)
            if html is not None:
                write_text(html, staging / "report.html")
            files = sorted(p.name for p in staging.iterdir()) + ["summary.json"]
            summary["outputs"] = {"files": files}
        # The summary's own write is the last thing done; it records every stage before it.
        summary["timings"] = _timings(stages.timings, started)
        write_json(summary, staging / "summary.json")

    if target is None:
        finish(None)
    else:
        with staged_output_dir(target) as staging:
            finish(staging)
        result.out = Path(out)
        result.segments_file = Path(out) / f"segments{'.parquet' if reader.format == 'parquet' else '.csv'}"
    summary["timings"] = _timings(stages.timings, started)
    return result


@dataclass
class SweepRun:
    """What :func:`sweep_k` produced: the sweep result, its table with each k's smallest
    segment share (and, with a minimum share, whether it falls below), the summary,
    the output folder."""

    sweep: object
    table: pd.DataFrame
    summary: dict
    timings: dict[str, float]
    out: Path | None = None


def sweep_k(
    data: str | os.PathLike | pd.DataFrame,
    *,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    min_share: float | None = None,
    columns: Sequence[str] | None = None,
    id_column: str | None = "auto",
    categorical: Sequence[str] = (),
    missing: str = "impute",
    log: str | Sequence[str] = "auto",
    clip: float | None = None,
    scale: str = "standard",
    decimal: str | None = None,
    n_init: int | str = "auto",
    max_iter: int = 300,
    seed: int = 0,
    device: str = "auto",
    sample_size: int = 10_000,
    out: str | os.PathLike | None = None,
    force: bool = False,
    listener: StageListener | None = None,
    command: str | None = None,
    source: str | None = None,
) -> SweepRun:
    """Only choose k: preprocess as :func:`segment` does, sweep, and plot.

    Writes ``sweep.csv``, ``elbow.png``, ``silhouette.png`` (of the recommended
    k) and ``summary.json`` into ``out`` when given. Parameters as for
    :func:`segment`; ``force`` replaces a folder holding only these files
    (:data:`SWEEP_FILES`). With ``min_share``, the recommended k is the allowed k
    nearest to the sweep's recommendation, as :func:`segment` takes it. ``source``
    names the data in messages and the summary (default: its path).
    """
    _check_min_share(min_share)
    ranks = Ranks.current()
    target = None
    if out is not None:
        target = _on_rank_0(ranks, lambda: check_output_dir(
            out, force=force, own_files=SWEEP_FILES, inputs=_data_input(data)))
    device = _check_device(device)
    stages = _Stages(listener)
    started = time.perf_counter()
    reader, preprocessor, prepared, _ = _prepare(
        stages, data, source, device, ranks, columns=columns, id_column=id_column, categorical=categorical,
        missing=missing, log=log, clip=clip, scale=scale, decimal=decimal,
    )
    n_rows = int(prepared.stats.n_kept) if ranks is not None else int(prepared.X.shape[0])
    notes: list[str] = []
    low, high = _k_range_for(k_range, n_rows, min_share, notes)
    with stages("sweep", f"Sweeping k = {low}..{high}"):
        result = _run_sweep(prepared.X, range(low, high + 1), seed, sample_size, device, n_init, max_iter)
    choice = _sweep_choice(result, ranks, n_rows, min_share, notes)
    if ranks is not None and not ranks.leads:
        return None
    summary = {
        "command": command,
        "input": _input_facts(reader, prepared),
        "preprocessing": {**preprocessor.report_.to_dict(), "features": list(preprocessor.feature_names_out_)},
        "k_range": [low, high],
        "min_share": min_share,
        "notes": notes,
        "recommended_k": choice.candidates[0],
        "reason": choice.reason_for(choice.candidates[0]),
        "sweep": _records(choice.table),
        "versions": _versions(),
    }
    run = SweepRun(sweep=result, table=choice.table, summary=summary, timings=stages.timings)
    if out is not None:
        from .report import save_png

        with staged_output_dir(target) as staging:
            with stages("write", "Writing the table and plots"):
                write_table(choice.table, staging / "sweep.csv", "csv")
                save_png(result.plot_elbow(), staging / "elbow.png")
                save_png(result.plot_silhouette(choice.candidates[0]), staging / "silhouette.png")
            summary["timings"] = _timings(stages.timings, started)
            write_json(summary, staging / "summary.json")
        run.out = Path(out)
    summary["timings"] = _timings(stages.timings, started)
    return run


@dataclass
class Prediction:
    """What :func:`predict` produced.

    Attributes
    ----------
    rows : int
        Customers segmented.
    counts : dict of (int, str) to int
        Customers per segment number and name.
    out : pathlib.Path or None
        The file written, if any.
    unknown_levels : dict of str to int
        Rows per categorical column holding a level the model never saw (all-zero one-hot).
    """

    rows: int
    counts: dict
    out: Path | None = None
    unknown_levels: dict = field(default_factory=dict)
    _segments: pd.DataFrame | None = None
    _id_column: str | None = None

    @property
    def segments(self) -> pd.DataFrame:
        """The segments table: in memory without ``out``, else read back from it."""
        if self._segments is None:
            self._segments = read_segments(self.out, self._id_column)
        return self._segments


def predict(
    model: str | os.PathLike | SegmentModel,
    data: str | os.PathLike | pd.DataFrame,
    *,
    out: str | os.PathLike | None = None,
    decimal: str | None = None,
    force: bool = False,
    device: str = "auto",
    listener: StageListener | None = None,
    source: str | None = None,
) -> Prediction:
    """Segment new customers with a saved model, batch by batch.

    Each batch of rows is read, transformed and assigned on ``device``, and its
    rows of the segments table written to ``out`` before the next is read, so
    memory does not grow with the table. ``out`` ending in ``.parquet`` is written
    as Parquet, anything else as CSV; without ``out`` the table is kept in memory
    (:attr:`Prediction.segments`). It has the columns of ``segments`` from
    :func:`segment`, and on the training table it equals that run's segments.

    Numbers written as text are read as in training: ``decimal`` defaults to the
    decimal separator of the training table. An existing ``out`` is replaced only
    with ``force``, and never when it is the data, the model or anything but a
    regular file (see :func:`~gpukmeans.segmentation.io.check_output_file`); it is
    checked before the model is read. ``source`` names the data in messages
    (default: its path, or "the table").
    """
    check_decimal(decimal)
    if out is not None:
        out = check_output_file(out, force=force, inputs={**_data_input(data), **_model_input(model)})
    device = _check_device(device)
    if not isinstance(model, SegmentModel):
        model = load_model(model)
    prep = model.preprocessor
    reader = TableReader.open(data, decimal=decimal or model.info.get("decimal"), name=source)
    absent = [c for c in prep.input_columns_ if c not in reader.columns]
    if absent:
        raise InputError(
            f"{reader.name} does not fit the model: it lacks column(s) {', '.join(repr(c) for c in absent)}"
        )
    stages = _Stages(listener)
    assigner = gpukmeans.KMeans.from_centers(_centers_on(model.cluster_centers, device), device=device)
    key = prep.id_column_ if prep.id_column_ is not None else "row"
    file_format = "parquet" if out is not None and out.suffix.lower() in PARQUET_SUFFIXES else "csv"
    writer = SegmentsWriter(out, file_format, model.segment_names, key, replace=force)
    raw = [prep.id_column_] if prep.id_column_ is not None else []
    unknown: dict[str, int] = {}
    progress = stages.rows(reader.n_rows)
    seen = 0
    with stages("predict", "Segmenting customers"), writer.open():
        for batch, X, transformed in transformed_batches(prep, reader, device=device, raw=raw):
            labels, distances = assigner.predict(X, return_distance=True)
            writer.write(segment_key(batch, transformed.rows, prep.id_column_), labels.cpu().numpy(),
                         distances.cpu().numpy())
            for name, count in zip(prep.categories_, transformed.unknown):
                if count:
                    unknown[name] = unknown.get(name, 0) + int(count)
            seen += batch.n_rows
            if progress is not None:
                progress("predict", seen)
    counts = {(s, name): int(n) for s, (name, n) in enumerate(zip(model.segment_names, writer.counts))}
    result = Prediction(rows=writer.rows, counts=counts, out=out, unknown_levels=unknown, _id_column=prep.id_column_)
    if out is None:
        result._segments = writer.frame()
    return result


def _data_input(data) -> dict:
    """The data as an input an output must not replace (nothing for a table in memory)."""
    return {} if isinstance(data, (pd.DataFrame, np.ndarray)) else {"input table": data}


def _model_input(model) -> dict:
    if isinstance(model, SegmentModel):
        return {}
    path = Path(model)
    return {"model": path / MODEL_FILE if path.is_dir() else path}


# ---------------------------------------------------------------- stages


def _prepare(stages, data, source, device, ranks, *, labels=None, columns, id_column, categorical, missing, log,
             clip, scale, decimal):
    """The two passes that make the matrix: ``statistics`` and ``transform`` (of this
    rank's share, with ``ranks``); also the checked ``labels``, checked before the
    first pass so that a mistyped column costs no reading."""

    def passes():
        check_decimal(decimal)
        reader = TableReader.open(data, decimal=decimal, name=source)
        checked = check_labels(labels or {}, reader.columns, reader.name)
        preprocessor = Preprocessor(
            columns=columns, id_column=id_column, categorical=categorical,
            missing=missing, log=log, clip=clip, scale=scale,
        )
        share = reader.n_rows if ranks is None else None
        with stages("statistics", "Reading the table: statistics"):
            stats = learn_table(preprocessor, reader, ranks=ranks, progress=stages.rows(share))
        n_kept = stats.n_kept if ranks is None else stats.kept_by_rank[ranks.rank]
        with stages("transform", "Reading the table: transforming the rows"):
            prepared = transform_table(preprocessor, reader, device=device, n_kept=n_kept, ranks=ranks,
                                       fitting=True, progress=stages.rows(stats.n_rows if ranks is None else None))
        prepared.stats = stats
        return reader, preprocessor, prepared, checked

    return passes() if ranks is None else ranks.together(passes)


@contextlib.contextmanager
def _drawn_meanwhile(report: bool, result: SegmentationResult, rows, seed: int, sample_size: int):
    """The report's figures of the matrix, drawn in a thread while the caller goes on
    (yields a future; None without a report). Drawing is mostly Python, and the last
    pass mostly pyarrow and numba, which leave the interpreter to it."""
    if not report:
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor

    from .report import draw_matrix_figures

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpukmeans-report") as pool:
        yield pool.submit(draw_matrix_figures, result, X=rows[0], labels=rows[1], seed=seed,
                          sample_size=sample_size)


def _on_rank_0(ranks: Ranks | None, check):
    """``check()`` (an output check) on rank 0 only, its error raised on every rank."""
    if ranks is None:
        return check()
    return ranks.together(lambda: check() if ranks.leads else None)


def _summed(ranks: Ranks | None, arrays):
    """Each of ``arrays`` summed over the ranks."""
    return arrays if ranks is None else tuple(ranks.sum(a) for a in arrays)


def _gather_to_rank_0(ranks: Ranks, X, labels: np.ndarray, distances: np.ndarray, prepared: PreparedTable, seed: int):
    """Every customer's segment and distance, the table positions of the clustered rows
    (None when every row is), and the report's sample of the matrix, on rank 0."""
    offsets = np.concatenate([[0], np.cumsum(prepared.stats.kept_by_rank)])
    rows = prepared.rows if prepared.rows is not None else np.zeros(0, dtype=np.int64)
    gathered = gather_rows(ranks, [labels, distances, rows])
    picked = ranks.broadcast(None if gathered is None else _report_rows(gathered[0], seed))
    if picked is None:
        local = np.arange(X.shape[0])
    else:
        mine = picked[(picked >= offsets[ranks.rank]) & (picked < offsets[ranks.rank + 1])]
        local = mine - offsets[ranks.rank]
    block = X[_index_on(local, X)].cpu().numpy().astype(np.float64)
    blocks = ranks.gather(block)
    if gathered is None:
        return None, None, None, None
    all_labels, all_distances, all_rows = gathered
    sample_labels = all_labels if picked is None else all_labels[picked]
    return (all_labels, all_distances, all_rows if prepared.rows is not None else None,
            (np.concatenate(blocks), sample_labels))


def _check_device(device):
    """The device to run on; a device this machine lacks is refused before anything is read."""
    try:
        return gpukmeans.resolve_device(device)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _check_min_share(min_share) -> None:
    if min_share is None:
        return
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 < min_share < 0.5:
        raise InputError(
            f"the minimum segment share must be a fraction of the customers between 0 and 0.5 "
            f"(e.g. 0.05 for 5%), got {min_share!r}"
        )


def _percent(share: float) -> str:
    """A share as a percentage with the digits it needs: 0.05 is "5%", 0.1025 is "10.25%"."""
    return f"{100 * share:.4g}%"


def _min_size(min_share: float, n_rows: int) -> int:
    """The fewest customers a segment of at least ``min_share`` of ``n_rows`` holds."""
    return max(1, math.ceil(min_share * n_rows - 1e-9))


def _k_range_for(k_range, n_rows: int, min_share: float | None, notes: list[str]) -> tuple[int, int]:
    """The k's to sweep: ``k_range``, its top lowered to what ``n_rows`` allow (the
    silhouette needs more rows than segments) and, with ``min_share``, to the most
    segments that can each hold that share; a note says so."""
    low, high = k_range
    if not 2 <= low < high:
        raise InputError(f"k range must go from at least 2 to a larger k, got {low}:{high}")
    limit, why = n_rows - 1, f"the most that {n_rows:,} rows allow"
    if min_share is not None and n_rows // _min_size(min_share, n_rows) < limit:
        limit = n_rows // _min_size(min_share, n_rows)
        why = f"the most segments that can each hold {_percent(min_share)} of the {n_rows:,} customers"
    if high <= limit:
        return low, high
    if limit < low:
        raise InputError(f"k range {low}:{high} does not fit the table: {why} is {limit}")
    notes.append(f"k range narrowed to {low}:{limit}: {why}")
    return low, limit


def _without_k(reason: str, k: int) -> str:
    """The sweep's reason without a leading "k=5:", which the caller shows beside it."""
    return re.sub(rf"^\s*k\s*=\s*{k}\s*:\s*", "", reason)


def _segment_sizes(models: dict, ranks) -> dict[int, np.ndarray]:
    """Customers per segment of every fit in ``models`` (summed over the ranks)."""
    import torch

    ks = sorted(models)
    sizes = [torch.bincount(torch.as_tensor(models[kk].labels_).long().cpu(), minlength=kk).numpy() for kk in ks]
    return dict(zip(ks, _summed(ranks, tuple(sizes))))


@dataclass
class _SweepChoice:
    """What a sweep offers the final fit: its table with each k's smallest segment share
    (and, with a minimum share, whether it falls below), the k's in order of
    preference, and the sweep's own choice and reason."""

    table: pd.DataFrame
    candidates: list[int]
    recommended: int
    reason: str
    min_share: float | None = None

    def reason_for(self, k: int) -> str:
        """Why ``k``, one of :attr:`candidates`, is the one fitted."""
        if k == self.recommended:
            return self.reason
        return (f"the nearest k to the sweep's choice k={self.recommended} whose segments all hold at least "
                f"{_percent(self.min_share)} of the customers (the notes list the k's that fall short); "
                f"for k={self.recommended} the sweep found: {self.reason}")


def _sweep_choice(sweep_result, ranks, n_rows: int, min_share: float | None, notes: list[str]) -> _SweepChoice:
    """The :class:`_SweepChoice` of ``sweep_result``.

    Without ``min_share`` the one candidate is the recommended k. With it, the
    candidates are the k's whose segments all hold at least that share, nearest to
    the recommended k first (the smaller of two as near): where the recommendation
    breaks the requirement, the nearest k that keeps it is the one the sweep's
    reasoning favours most."""
    sizes = _segment_sizes(sweep_result.models, ranks)
    table = sweep_result.table.copy()
    ks = [int(kk) for kk in table["k"]]
    table["smallest_share"] = [float(sizes[kk].min()) / n_rows for kk in ks]
    recommended = int(sweep_result.recommended_k)
    reason = _without_k(str(sweep_result.reason), recommended)
    if min_share is None:
        return _SweepChoice(table, [recommended], recommended, reason)
    allowed = [kk for kk in ks if sizes[kk].min() >= _min_size(min_share, n_rows)]
    table["below_min_share"] = [kk not in allowed for kk in ks]
    skipped = [kk for kk in ks if kk not in allowed]
    if not allowed:
        best = max(ks, key=lambda kk: sizes[kk].min())
        raise InputError(
            f"no k from {ks[0]} to {ks[-1]} keeps every segment at or above {_percent(min_share)} of the customers "
            f"(the best, k={best}, has a segment of {_percent(sizes[best].min() / n_rows)}); lower the minimum share"
        )
    if skipped:
        notes.append(f"k = {', '.join(map(str, skipped))} skipped: a segment below the minimum share of "
                     f"{_percent(min_share)} of the customers")
    candidates = sorted(allowed, key=lambda kk: (abs(kk - recommended), kk))
    return _SweepChoice(table, candidates, recommended, reason, min_share)


def _fit_within_share(stages, X, candidates, n_rows, min_share, notes, *, given, seed, n_init, max_iter, device,
                      ranks):
    """The final fit of the first of ``candidates`` whose segments all hold at least
    ``min_share`` of the customers: ``(k, centres, fit facts)``. A ``given`` k that does
    not is an :class:`InputError`: the segments it would write break the requirement."""
    for k in candidates:
        with stages("fit", f"Fitting k-means with k = {k}"):
            centers, fit_info, sizes = _fit(X, k, seed, n_init, max_iter, device, ranks)
        if min_share is None or sizes.min() >= _min_size(min_share, n_rows):
            return k, centers, fit_info
        shortfall = (f"the smallest segment holds {_percent(sizes.min() / n_rows)} of the customers "
                     f"({int(sizes.min()):,} of {n_rows:,}), below the minimum share of {_percent(min_share)}")
        if given:
            raise InputError(f"at k={k} {shortfall}; choose a smaller k or a lower minimum share")
        notes.append(f"k={k} skipped: in its final fit {shortfall}")
    raise InputError(f"no k the sweep allowed keeps every segment at or above {_percent(min_share)} of the customers "
                     f"in the final fit; lower the minimum share")


def _fit(X, k, seed, n_init, max_iter, device, ranks):
    import torch

    km = gpukmeans.KMeans(
        n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed, device=device
    ).fit(X)
    info = {"n_iter": int(km.n_iter_), "device": km.device_, "engine_inertia": float(km.inertia_)}
    # Number segments by size, largest first, so that segment 0 means the same
    # kind of thing from run to run instead of whatever order the fit produced.
    sizes = torch.bincount(torch.as_tensor(km.labels_).long(), minlength=k).cpu().numpy()
    sizes = _summed(ranks, (sizes,))[0]
    order = np.argsort(-sizes, kind="stable")
    centers = torch.as_tensor(km.cluster_centers_).double().cpu().numpy()
    return centers[order], info, sizes[order]


def _stability(stages, X, labels, k, resamples, n_init, seed, max_iter, ranks, prepared):
    """``(Stability or None, why it was skipped or None)``: each segment's bootstrap
    stability on the clustered rows, on the fit's device. Across torchrun ranks, rank 0
    gathers the rows one process would resample and refits them (the others get None)."""
    import torch

    if resamples == 0:
        return None, "--stability 0"
    n_rows = int(prepared.stats.n_kept) if ranks is not None else int(X.shape[0])
    if n_rows < MIN_ROWS_PER_SEGMENT * k:
        return None, f"{n_rows:,} rows are too few to resample {k} segments"
    options = dict(resamples=resamples, restarts=restarts_for(n_init), max_iter=max_iter)
    with stages("stability", f"Refitting {resamples} resamples for each segment's stability"):
        if ranks is None:
            return segment_stability(X, labels, k, seed=seed, **options), None
        sample, rng = resampled_rows(n_rows, seed=seed)
        picked = np.arange(n_rows) if sample is None else sample
        first, end = np.concatenate([[0], np.cumsum(prepared.stats.kept_by_rank)])[ranks.rank:ranks.rank + 2]
        local = picked[(picked >= first) & (picked < end)] - first
        gathered = gather_rows(ranks, [X[_index_on(local, X)].cpu().numpy(), labels.cpu().numpy()[local]])
        if gathered is None:
            return None, None
        rows = torch.as_tensor(gathered[0], device=X.device)
        return stability_of_rows(rows, gathered[1].astype(np.int64), k, rng, chunk_size=None,
                                 method=method_of(n_rows, sample), **options), None


def _centers_on(centers: np.ndarray, device):
    import torch

    return torch.as_tensor(np.asarray(centers, dtype=np.float64)).to(device)


def _assign(X, centers: np.ndarray, device):
    """Each row's segment and distance: the engine's float64 assignment against the
    model's centres, the same computation :func:`predict` makes."""
    assigner = gpukmeans.KMeans.from_centers(_centers_on(centers, device), device=device)
    labels, distances = assigner.predict(X, return_distance=True)
    return labels, distances


def _run_sweep(X, ks, seed, sample_size, device, n_init, max_iter):
    return gpukmeans.sweep(
        X, k=ks, n_init=n_init, max_iter=max_iter, random_state=seed,
        silhouette="auto", sample_size=sample_size, device=device,
    )


def _metrics(X, labels, distances, k, seed, sample_size, device, ranks, n_rows) -> dict:
    """Inertia, silhouette (on a sample above ``sample_size`` rows), Calinski-Harabasz
    and Davies-Bouldin; ``n_rows``: the rows of every rank."""
    import torch

    metrics = gpukmeans.metrics
    inertia, sizes = _summed(ranks, (np.array([float((distances * distances).sum())]),
                                     torch.bincount(labels, minlength=k).cpu().numpy()))
    result = {"inertia": float(inertia[0])}
    present = int((sizes > 0).sum())
    if present < 2 or present > n_rows - 1:
        result["silhouette"] = None
        return result
    silhouette = metrics.silhouette_score(
        X, labels, sample_size=sample_size if n_rows > sample_size else None,
        random_state=seed, device=device,
    )
    result.update(_silhouette_fields(silhouette))
    scores = metrics.centroid_scores(X, labels, device=device)
    result["calinski_harabasz"] = float(scores.calinski_harabasz)
    result["davies_bouldin"] = float(scores.davies_bouldin)
    return result


def _silhouette_fields(silhouette) -> dict:
    """The silhouette as plain numbers: exact (a plain float) or estimated (a float that
    carries its interval)."""
    if not isinstance(silhouette, gpukmeans.metrics.SampledSilhouetteScore):
        return {"silhouette": float(silhouette), "silhouette_method": "exact"}
    return {
        "silhouette": float(silhouette.value),
        "silhouette_low": float(silhouette.low),
        "silhouette_high": float(silhouette.high),
        "silhouette_method": str(silhouette.method),
        "silhouette_sample_size": int(silhouette.sample_size),
    }


@dataclass
class _Traits:
    """Per segment, from the uniform sample's rows in original units: the medians, the
    contrasts that name the segments, and the share of each category level (None
    without categorical columns)."""

    medians: np.ndarray
    contrasts: pd.DataFrame
    level_shares: pd.DataFrame | None


def _clustered_sample(prepared: PreparedTable, labels: np.ndarray) -> tuple[Batch, np.ndarray]:
    """The uniform sample's clustered rows in original units (every row, for a table no
    larger than the sample) as a batch, and their segments."""
    sample = prepared.stats.sample.rows()
    positions = sample.positions
    if prepared.rows is None:
        clustered = positions < labels.size
        index = positions
    else:
        index = np.clip(np.searchsorted(prepared.rows, positions), 0, max(prepared.rows.size - 1, 0))
        clustered = prepared.rows[index] == positions if prepared.rows.size else np.zeros(positions.size, bool)
    batch = Batch(start=0, n_rows=int(clustered.sum()),
                  numbers={n: v[clustered] for n, v in sample.numbers.items()},
                  texts={n: v.filter(_arrow_mask(clustered)) for n, v in sample.texts.items()})
    return batch, labels[index[clustered]]


def _sample_traits(batch: Batch, sample_labels: np.ndarray, prep: Preprocessor, k: int) -> _Traits:
    """The :class:`_Traits` of the segments over the sample's rows ``batch``, whose
    segments are ``sample_labels``."""
    columns = [batch.numbers[name] for name in prep.numeric_columns_]
    if prep.categories_:
        codes = prep.category_codes(batch)
        for c, levels in enumerate(prep.categories_.values()):
            for level in range(len(levels)):
                indicator = (codes[c] == level).astype(np.float64)
                indicator[codes[c] == -2] = np.nan
                columns.append(indicator)
    values = np.column_stack(columns) if columns else np.zeros((batch.n_rows, 0))
    n_numeric = len(prep.numeric_columns_)
    features = prep.feature_names_out_
    shares = None
    if prep.categories_:
        shares = pd.DataFrame(segment_means(values[:, n_numeric:], sample_labels, k), columns=features[n_numeric:])
    return _Traits(
        medians=segment_medians(values, sample_labels, k),
        contrasts=trait_contrasts(values, sample_labels, k, features, n_numeric=n_numeric),
        level_shares=shares,
    )


def _arrow_mask(mask: np.ndarray):
    import pyarrow as pa

    return pa.array(mask)


def _report_sample(X, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified sample of the clustered rows for the report's figures, on the host."""
    rows = _report_rows(labels, seed)
    if rows is None:
        return X.cpu().numpy().astype(np.float64), labels
    return X[_index_on(rows, X)].cpu().numpy().astype(np.float64), labels[rows]


def _report_rows(labels: np.ndarray, seed: int) -> np.ndarray | None:
    """The rows of the report's stratified sample, in order; None for every row."""
    n = labels.size
    if n <= _REPORT_ROWS:
        return None
    rng = np.random.default_rng(seed)
    sizes = np.bincount(labels)
    take = np.maximum(1, np.round(sizes / n * _REPORT_ROWS)).astype(int)
    return np.sort(np.concatenate([
        rng.choice(np.flatnonzero(labels == s), size=min(int(take[s]), int(sizes[s])), replace=False)
        for s in range(sizes.size) if sizes[s]
    ]))


def _index_on(rows: np.ndarray, X):
    import torch

    return torch.as_tensor(rows, dtype=torch.int64, device=X.device)


def _structure_verdict(sweep_result, k: int, silhouette: float | None, sample, seed: int):
    """How much structure the final segments show (:func:`gpukmeans._structure.assess_structure`
    on the report's sample of the clustered rows). A verdict the sweep already reached
    for this k is taken when it judged the same silhouette, i.e. the same fit."""
    from gpukmeans._structure import assess_structure

    swept = getattr(sweep_result, "structure", None)
    if isinstance(swept, Mapping):
        swept = swept.get(k)
    if (swept is not None and int(sweep_result.recommended_k) == k and silhouette is not None
            and np.isclose(getattr(swept, "details", {}).get("silhouette", np.nan), silhouette, rtol=1e-9, atol=0)):
        return swept
    X_sample, labels_sample = sample
    return assess_structure(X_sample, labels_sample, silhouette=silhouette, seed=seed)


def _silhouette_note(sweep_result, k: int, metrics: dict) -> str | None:
    """Where the sweep's own fit at the chosen k scored a different silhouette than the
    final fit (fewer starts, or a sample where the final fit scores every row), a
    note that says where the sweep's figure comes from; None where the two agree to
    three decimals."""
    final = metrics.get("silhouette")
    if sweep_result is None or final is None:
        return None
    row = sweep_result.table.loc[sweep_result.table["k"] == k, "silhouette"]
    if row.empty or not np.isfinite(float(row.iloc[0])) or f"{float(row.iloc[0]):.3f}" == f"{final:.3f}":
        return None
    sampled = " on a sample" if sweep_result.silhouette_method == "sampled" else ""
    return f"the sweep's own fit at k={k} scored {float(row.iloc[0]):.3f}{sampled}"


def _input_facts(reader: TableReader, prepared: PreparedTable) -> dict:
    """What reading the table found, for the summary.

    ``units`` names each column's currency or ``%``; numbers keep the value as
    written (``12%`` is 12, ``$1,200`` is 1200).
    """
    formats = reader.number_formats
    facts = {
        "path": reader.name,
        "format": reader.format,
        "rows": int(prepared.stats.n_rows),
        "decimal": reader.decimal,
        "units": {name: f.unit for name, f in formats.items() if f.unit},
        "number_formats": {name: f.to_dict() for name, f in formats.items()},
        "placeholders": prepared.stats.placeholders,
    }
    if facts["units"]:
        facts["units_note"] = "numbers are kept as written: 12% is 12, $1,200.50 is 1200.5"
    return facts


def _summary(*, reader, prepared, command, preprocessor, k, k_reason, metrics,
             sweep_table, names, labels, device) -> dict:
    sizes = np.bincount(labels, minlength=k)
    return {
        "command": command,
        "input": _input_facts(reader, prepared),
        "preprocessing": {
            **preprocessor.report_.to_dict(),
            "features": list(preprocessor.feature_names_out_),
            "scale": preprocessor.scale,
            "missing": preprocessor.missing,
            "clip": preprocessor.clip,
        },
        "k": k,
        "k_reason": k_reason,
        "metrics": metrics,
        "sweep": _records(sweep_table) if sweep_table is not None else None,
        "segments": [
            {"segment": s, "name": names[s], "size": int(sizes[s]), "share": float(sizes[s] / len(labels))}
            for s in range(k)
        ],
        "device": device,
        "versions": _versions(),
    }


def _records(table: pd.DataFrame) -> list[dict]:
    return [
        {key: (None if isinstance(v, float) and not np.isfinite(v) else v) for key, v in row.items()}
        for row in table.astype(object).to_dict("records")
    ]


def _timings(timings: dict[str, float], started: float) -> dict[str, float]:
    rounded = {key: round(seconds, 4) for key, seconds in timings.items()}
    rounded["total"] = round(time.perf_counter() - started, 4)
    return rounded


def _version() -> str:
    return str(gpukmeans.__version__)


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    versions = {
        "gpukmeans": _version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }
    if torch.cuda.is_available():
        versions["cuda"] = str(torch.version.cuda)
    return versions
