"""``segment``: from a customer table to named segments, a report and a reusable model.

This is what ``gpukmeans segment`` runs; the command line only parses arguments
and prints. Every stage is timed, and a listener (the command line's progress
bar) is told when each starts and ends.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import pandas as pd

import gpukmeans

from .errors import InputError
from .io import (
    PARQUET_SUFFIXES,
    Table,
    check_decimal,
    check_output_dir,
    check_output_file,
    frame_text_numbers,
    read_columns,
    read_table,
    staged_output_dir,
    write_json,
    write_table,
    write_text,
)
from .model_io import MODEL_FILE, SegmentModel, nearest_centers, save_model, segments_frame
from .preprocess import Preprocessor, looks_like_id
from .profiles import name_segments, profile_segments, segment_contrasts, segment_means

#: Default range of k tried when no k is given.
DEFAULT_K_RANGE = (2, 12)

#: Every file :func:`segment` may write into its folder: a folder holding nothing
#: else is an earlier output, which ``force`` replaces.
SEGMENT_FILES = (
    "segments.csv", "segments.parquet", "profiles.csv", "sweep.csv", MODEL_FILE, "report.html", "summary.json",
)

#: Every file :func:`sweep_k` writes into its folder.
SWEEP_FILES = ("sweep.csv", "elbow.png", "silhouette.png", "summary.json")


class StageListener(Protocol):
    """Told when each stage of :func:`segment` starts and ends (a progress display)."""

    def started(self, key: str, label: str) -> None: ...

    def finished(self, key: str, label: str, seconds: float) -> None: ...


class _Stages:
    """Times stages and forwards start and end to an optional listener."""

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


@dataclass
class SegmentationResult:
    """Everything :func:`segment` produced.

    Attributes
    ----------
    segments : pandas.DataFrame
        Per customer: the ID column (or ``row``), ``segment``, ``segment_name``, ``distance``.
    profiles : pandas.DataFrame
        Per segment: size, share, mean/median per feature, mean relative to the population.
    contrasts : pandas.DataFrame
        Per segment and feature, the standardised difference from the population mean.
    model : SegmentModel
    summary : dict
        The content of ``summary.json``.
    sweep : object or None
        The :func:`gpukmeans.sweep` result when k was chosen by a sweep.
    timings : dict of str to float
        Seconds per stage.
    out : pathlib.Path or None
        The output folder, when one was written.
    """

    segments: pd.DataFrame
    profiles: pd.DataFrame
    contrasts: pd.DataFrame
    model: SegmentModel
    summary: dict
    sweep: object | None = None
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None


def parse_k_range(text: str) -> tuple[int, int]:
    """Parse ``"2:12"`` (both ends included) into ``(2, 12)``."""
    try:
        low, high = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise InputError(f"k range must look like 2:12, got {text!r}") from None
    return low, high


def segment(
    data: str | os.PathLike | pd.DataFrame,
    *,
    k: int | None = None,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    columns: Sequence[str] | None = None,
    id_column: str | None = "auto",
    categorical: Sequence[str] = (),
    missing: str = "impute",
    log: str | Sequence[str] = "auto",
    clip: float | None = None,
    scale: str = "standard",
    decimal: str | None = None,
    n_init: int | str = 10,
    sweep_n_init: int | str = "auto",
    max_iter: int = 300,
    seed: int = 0,
    device: str = "auto",
    sample_size: int = 10_000,
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
    data : path or pandas.DataFrame
        A CSV (any delimiter) or Parquet file, or a table already in memory.
    k : int, optional
        Number of segments. Without it a sweep over ``k_range`` runs and its
        recommended k is taken.
    k_range : (int, int), default=(2, 12)
        Smallest and largest k of the sweep, both included.
    columns, id_column, categorical, missing, log, clip, scale
        Preprocessing; see :class:`~gpukmeans.segmentation.Preprocessor`.
    decimal : {".", ","}, optional
        Decimal separator of numbers written as text that read two ways
        (``1.234``); detected from the file by default. See
        :func:`~gpukmeans.segmentation.read_table`.
    n_init : int or "auto", default=10
        Restarts of the final fit (restarts share each pass over the data, so
        they cost far less than separate fits). Ten restarts find the textbook
        optimum on tables where a single k-means++ start often does not.
    sweep_n_init : int or "auto", default="auto"
        Restarts per k in the sweep, which only has to rank the k's. The
        recommended k is then fitted like a given one, so that ``segment`` and
        ``segment(k=<the recommended k>)`` give the same segments.
    max_iter, seed, device
        Passed to :class:`gpukmeans.KMeans` (``seed`` as ``random_state``).
    sample_size : int, default=10_000
        Rows used for the silhouette (sampled above this) and the report's plots.
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

    Raises
    ------
    InputError
        For any problem with the data or the arguments, before anything is written.
    OutputError
        If ``out`` is not writable (before any work), or writing fails (a full disk).
    """
    target = None
    if out is not None:
        target = check_output_dir(out, force=force, own_files=SEGMENT_FILES, inputs=_data_input(data))
    if k is not None and k < 2:
        raise InputError(f"k must be at least 2, got {k}")
    _check_device(device)
    stages = _Stages(listener)
    started = time.perf_counter()

    table, source, preprocessor, prepared = _prepare(
        stages, data, source, columns=columns, id_column=id_column, categorical=categorical,
        missing=missing, log=log, clip=clip, scale=scale, decimal=decimal,
    )
    frame = table.frame
    X = prepared.X
    n_rows = len(X)

    sweep_result, k_reason = None, None
    if k is None:
        low, high = _check_k_range(k_range, n_rows, source)
        with stages("sweep", f"Sweeping k = {low}..{high}"):
            sweep_result = _run_sweep(X, range(low, high + 1), seed, sample_size, device, sweep_n_init, max_iter)
        k = int(sweep_result.recommended_k)
        k_reason = str(sweep_result.reason)
    else:
        if k > n_rows:
            raise InputError(f"k={k} is larger than the number of rows ({n_rows}) in {source}")
        k_reason = "k was given"
    with stages("fit", f"Fitting k-means with k = {k}"):
        centers, fit_info = _fit(X, k, seed, n_init, max_iter, device)

    with stages("assign", "Assigning customers to segments"):
        labels, distances = nearest_centers(X, centers)
    with stages("score", "Scoring the segments"):
        metrics = _metrics(X, labels, distances, k, seed, sample_size, device)
        metrics.update(fit_info)

    with stages("profile", "Profiling and naming segments"):
        features = preprocessor.original_units(frame, prepared.rows)
        contrasts = segment_contrasts(X, labels, k, preprocessor.feature_names_out_)
        numeric_columns = set(preprocessor.numeric_columns_)
        level_columns = [c for c in features.columns if c not in numeric_columns]
        shares = None
        if level_columns:
            shares = pd.DataFrame(
                segment_means(features[level_columns].to_numpy(), labels, k), columns=level_columns
            )
        names = name_segments(contrasts, shares)
        profiles = profile_segments(features, labels, k, names)
        segments = segments_frame(
            prepared.ids, prepared.rows, labels, distances, names, preprocessor.id_column_
        )

    model = SegmentModel(
        preprocessor=preprocessor,
        cluster_centers=np.asarray(centers, dtype=np.float64),
        segment_names=names,
        info={"k": k, "n_rows": n_rows, "inertia": metrics["inertia"], "trained_on": source,
              "decimal": table.decimal, "gpukmeans": _version()},
    )
    summary = _summary(
        source=source, table=table, command=command, prepared=prepared,
        preprocessor=preprocessor, k=k, k_reason=k_reason, metrics=metrics,
        sweep_result=sweep_result, names=names, labels=labels, device=fit_info.get("device"),
    )
    result = SegmentationResult(
        segments=segments, profiles=profiles, contrasts=contrasts, model=model,
        summary=summary, sweep=sweep_result, timings=stages.timings,
    )

    html = None
    if report:
        with stages("report", "Drawing the report"):
            from .report import render_report

            html = render_report(result, X=X, labels=labels, seed=seed, sample_size=sample_size)

    if out is not None:
        with stages("write", "Writing results"):
            _write(result, target, table.format, html, stages, started)
            result.out = Path(out)
    summary["timings"] = _timings(stages.timings, started)
    return result


@dataclass
class SweepRun:
    """What :func:`sweep_k` produced: the sweep result, the summary, the output folder."""

    sweep: object
    summary: dict
    timings: dict[str, float]
    out: Path | None = None


def sweep_k(
    data: str | os.PathLike | pd.DataFrame,
    *,
    k_range: tuple[int, int] = (2, 15),
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
) -> SweepRun:
    """Only choose k: preprocess as :func:`segment` does, sweep, and plot.

    Writes ``sweep.csv``, ``elbow.png``, ``silhouette.png`` (of the recommended
    k) and ``summary.json`` into ``out`` when given. Parameters as for :func:`segment`;
    ``force`` replaces a folder holding only these files (:data:`SWEEP_FILES`).
    """
    target = None
    if out is not None:
        target = check_output_dir(out, force=force, own_files=SWEEP_FILES, inputs=_data_input(data))
    _check_device(device)
    stages = _Stages(listener)
    started = time.perf_counter()
    table, source, preprocessor, prepared = _prepare(
        stages, data, None, columns=columns, id_column=id_column, categorical=categorical,
        missing=missing, log=log, clip=clip, scale=scale, decimal=decimal,
    )
    low, high = _check_k_range(k_range, len(prepared.X), source)
    with stages("sweep", f"Sweeping k = {low}..{high}"):
        result = _run_sweep(prepared.X, range(low, high + 1), seed, sample_size, device, n_init, max_iter)
    summary = {
        "command": command,
        "input": _input_facts(source, table, prepared.report.n_rows),
        "preprocessing": {**preprocessor.report_.to_dict(), "features": list(preprocessor.feature_names_out_)},
        "recommended_k": int(result.recommended_k),
        "reason": str(result.reason),
        "sweep": _records(result.table),
        "versions": _versions(),
    }
    run = SweepRun(sweep=result, summary=summary, timings=stages.timings)
    if out is not None:
        from .report import save_png

        with stages("write", "Writing the table and plots"):
            with staged_output_dir(target) as staging:
                write_table(result.table, staging / "sweep.csv", "csv")
                save_png(result.plot_elbow(), staging / "elbow.png")
                save_png(result.plot_silhouette(), staging / "silhouette.png")
                summary["timings"] = _timings(stages.timings, started)
                write_json(summary, staging / "summary.json")
        run.out = Path(out)
    summary["timings"] = _timings(stages.timings, started)
    return run


def predict(
    model: str | os.PathLike | SegmentModel,
    data: str | os.PathLike | pd.DataFrame,
    *,
    out: str | os.PathLike | None = None,
    decimal: str | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Segment new customers with a saved model; optionally write the table to ``out``.

    ``out`` ending in ``.parquet`` is written as Parquet, anything else as CSV.
    The result has the columns of ``segments`` from :func:`segment`. Numbers
    written as text are read as in training: ``decimal`` defaults to the
    decimal separator of the training table. An existing ``out`` is replaced
    only with ``force``, and never when it is the data, the model or anything
    but a regular file (see :func:`~gpukmeans.segmentation.io.check_output_file`);
    it is checked before the model is read.
    """
    from .model_io import load_model

    check_decimal(decimal)
    if out is not None:
        out = check_output_file(out, force=force, inputs={**_data_input(data), **_model_input(model)})
    if not isinstance(model, SegmentModel):
        model = load_model(model)
    prep = model.preprocessor
    decimal = decimal or model.info.get("decimal")
    ids = [prep.id_column_] if prep.id_column_ is not None else []
    if isinstance(data, pd.DataFrame):
        frame, source = data.reset_index(drop=True), "the table"
        frame = frame_text_numbers(frame, decimal or ".", keep_text=ids)[0]
    else:
        source = str(data)
        header = set(read_columns(data))
        absent = [c for c in prep.input_columns_ if c not in header]
        if absent:
            raise InputError(
                f"{source} does not fit the model: it lacks column(s) {', '.join(repr(c) for c in absent)}"
            )
        frame = read_table(data, prep.input_columns_, string_columns=ids, decimal=decimal).frame
    segments = model.predict_frame(frame, source=source)
    if out is not None:
        write_table(segments, out, "parquet" if out.suffix.lower() in PARQUET_SUFFIXES else "csv", replace=force)
    return segments


def _data_input(data) -> dict:
    """The data as an input an output must not replace (nothing for a table in memory)."""
    return {} if isinstance(data, pd.DataFrame) else {"input table": data}


def _model_input(model) -> dict:
    if isinstance(model, SegmentModel):
        return {}
    path = Path(model)
    return {"model": path / MODEL_FILE if path.is_dir() else path}


# ---------------------------------------------------------------- stages


def _prepare(stages, data, source, *, columns, id_column, categorical, missing, log, clip, scale, decimal):
    """Read and preprocess: the first two stages of both ``segment`` and ``sweep_k``."""
    check_decimal(decimal)
    with stages("read", "Reading the table"):
        table, default_source = _load(data, columns, id_column, categorical, decimal)
    source = source or default_source
    with stages("preprocess", "Preprocessing"):
        preprocessor = Preprocessor(
            columns=columns, id_column=id_column, categorical=categorical,
            missing=missing, log=log, clip=clip, scale=scale,
        )
        prepared = preprocessor.fit_transform(table.frame, source=source)
    return table, source, preprocessor, prepared


def _check_device(device) -> None:
    """Refuse a device this machine lacks before reading anything, not after."""
    try:
        gpukmeans.resolve_device(device)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _check_k_range(k_range, n_rows, source) -> tuple[int, int]:
    low, high = k_range
    if not 2 <= low < high:
        raise InputError(f"k range must go from at least 2 to a larger k, got {low}:{high}")
    if high > n_rows - 1:
        raise InputError(
            f"k range {low}:{high} goes beyond the {n_rows} rows of {source}; "
            f"the largest k the silhouette allows is {n_rows - 1}"
        )
    return low, high


def _load(data, columns, id_column, categorical, decimal) -> tuple[Table, str]:
    if isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
        id_guess = _id_guess(frame.columns, id_column)
        decimal = decimal or "."
        frame, formats, placeholders = frame_text_numbers(frame, decimal, keep_text=[id_guess] if id_guess else ())
        table = Table(frame=frame, format="csv", decimal=decimal, number_formats=formats, placeholders=placeholders)
        return table, "the table"
    path = Path(data)
    header = read_columns(path)
    id_guess = _id_guess(header, id_column)
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys(([id_guess] if id_guess else []) + list(columns) + list(categorical)))
    if id_guess is not None and id_guess not in header:
        raise InputError(f"ID column {id_guess!r} not found in {path}; its columns are: {', '.join(header)}")
    table = read_table(path, wanted, string_columns=[id_guess] if id_guess else (), decimal=decimal)
    return table, str(path)


def _id_guess(header, id_column) -> str | None:
    """The column to keep as text while reading: the named ID, or the first named like one."""
    if id_column == "auto":
        return next((name for name in header if looks_like_id(name)), None)
    return id_column


def _fit(X, k, seed, n_init, max_iter, device):
    km = gpukmeans.KMeans(
        n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed, device=device
    ).fit(_engine_input(X))
    info = {"n_iter": int(km.n_iter_), "device": km.device_, "engine_inertia": float(km.inertia_)}
    # Number segments by size, largest first, so that segment 0 means the same
    # kind of thing from run to run instead of whatever order the fit produced.
    sizes = np.bincount(np.asarray(km.labels_), minlength=k)
    order = np.argsort(-sizes, kind="stable")
    return np.asarray(km.cluster_centers_, dtype=np.float64)[order], info


def _run_sweep(X, ks, seed, sample_size, device, n_init, max_iter):
    return gpukmeans.sweep(
        _engine_input(X), k=ks, n_init=n_init, max_iter=max_iter, random_state=seed,
        silhouette="auto", sample_size=sample_size, device=device,
    )


def _engine_input(X: np.ndarray) -> np.ndarray:
    # The engine runs in float32 (what GPUs are fast at); the exact assignment
    # afterwards is float64.
    return np.ascontiguousarray(X, dtype=np.float32)


def _metrics(X, labels, distances, k, seed, sample_size, device) -> dict:
    metrics = gpukmeans.metrics
    result = {"inertia": float(np.sum(distances**2))}
    present = np.unique(labels).size
    if present < 2 or present > len(X) - 1:
        result["silhouette"] = None
        return result
    silhouette = metrics.silhouette_score(
        X, labels, sample_size=sample_size if len(X) > sample_size else None,
        random_state=seed, device=device,
    )
    result.update(_silhouette_fields(silhouette))
    result["calinski_harabasz"] = float(metrics.calinski_harabasz_score(X, labels))
    result["davies_bouldin"] = float(metrics.davies_bouldin_score(X, labels))
    return result


def _silhouette_fields(silhouette) -> dict:
    """The silhouette as plain numbers: exact (a float) or estimated (with its interval)."""
    if isinstance(silhouette, (float, int, np.floating)):
        return {"silhouette": float(silhouette), "silhouette_method": "exact"}
    return {
        "silhouette": float(silhouette.value),
        "silhouette_low": float(silhouette.low),
        "silhouette_high": float(silhouette.high),
        "silhouette_method": str(silhouette.method),
        "silhouette_sample_size": int(silhouette.sample_size),
    }


def _input_facts(source: str, table: Table, n_rows: int) -> dict:
    """What reading the table found, for the summary.

    ``units`` names each column's currency or ``%``; numbers keep the value as
    written (``12%`` is 12, ``$1,200`` is 1200).
    """
    facts = {
        "path": source,
        "format": table.format,
        "rows": n_rows,
        "decimal": table.decimal,
        "units": {name: f.unit for name, f in table.number_formats.items() if f.unit},
        "number_formats": {name: f.to_dict() for name, f in table.number_formats.items()},
        "placeholders": table.placeholders,
    }
    if facts["units"]:
        facts["units_note"] = "numbers are kept as written: 12% is 12, $1,200.50 is 1200.5"
    return facts


def _summary(*, source, table, command, prepared, preprocessor, k, k_reason, metrics,
             sweep_result, names, labels, device) -> dict:
    sizes = np.bincount(labels, minlength=k)
    return {
        "command": command,
        "input": _input_facts(source, table, prepared.report.n_rows),
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
        "sweep": _records(sweep_result.table) if sweep_result is not None else None,
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


def _write(result, target, table_format, html, stages, started) -> None:
    suffix = ".parquet" if table_format == "parquet" else ".csv"
    with staged_output_dir(target) as staging:
        write_table(result.segments, staging / f"segments{suffix}", table_format)
        write_table(result.profiles, staging / "profiles.csv", "csv")
        if result.sweep is not None:
            write_table(result.sweep.table, staging / "sweep.csv", "csv")
        save_model(result.model, staging / MODEL_FILE)
        if html is not None:
            write_text(html, staging / "report.html")
        files = sorted(p.name for p in staging.iterdir()) + ["summary.json"]
        result.summary["outputs"] = {"files": files}
        # The summary's own write is the last thing timed; it records everything before it.
        result.summary["timings"] = _timings(stages.timings, started)
        write_json(result.summary, staging / "summary.json")


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
