"""From a table on disk to the float32 matrix that k-means clusters, in two passes.

:func:`prepare_table` fits a :class:`~gpukmeans.segmentation.Preprocessor` and
transforms the table with it:

1. the statistics pass: :class:`~gpukmeans.segmentation.statistics.TableStatistics`
   over every batch, then :meth:`Preprocessor.learn` decides every step (with
   ``missing="drop"``, a second statistics pass follows when the columns a kept row
   needs turn out to differ from the ones assumed: a column without any value);
2. the transform pass: every batch transformed on the fit's device into one
   preallocated float32 matrix, and the exact moments of the transformed columns,
   then :meth:`Preprocessor.finish` and the final centring and scaling of the
   matrix in place.

:func:`transform_table` is the second pass alone, with a fitted preprocessor, and
:func:`transformed_batches` the same one batch at a time (prediction streams it).
Memory: the matrix, one batch, and the statistics; never the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from . import _kernels
from .errors import InputError
from .preprocess import Preprocessor
from .ranks import Ranks, agree_on_plans, merge_statistics
from .statistics import TableStatistics
from .tables import Batch, TableReader, read_pass
from .transform import TransformedBatch, merge_parts, transform_numpy, transform_torch

#: Rows of the matrix centred and scaled at a time (in float64) after the transform pass.
_FINISH_ROWS = 1 << 20


@dataclass
class PreparedTable:
    """A table as the matrix to cluster.

    Attributes
    ----------
    X : torch.Tensor of shape (n_kept, n_features), float32
        On the device asked for.
    rows : ndarray of int64 or None
        Positions (0-based) in the table of the rows of ``X``; None when every row is kept.
    n_rows : int
        Rows read.
    stats : TableStatistics or None
        The statistics pass (fitting only).
    missing_counts : dict of str to int
        Missing values per feature column (transforming only).
    unknown_levels : dict of str to int
        Rows per categorical column whose level the fit never saw.
    """

    X: object
    rows: np.ndarray | None
    n_rows: int
    stats: TableStatistics | None = None
    missing_counts: dict = field(default_factory=dict)
    unknown_levels: dict = field(default_factory=dict)


def prepare_table(prep: Preprocessor, reader: TableReader, *, device="cpu", ranks: Ranks | None = None,
                  progress: Callable[[str, int], None] | None = None) -> PreparedTable:
    """Fit ``prep`` on the table and return the table transformed (see the module's notes);
    with ``ranks``, this rank's share of it.

    ``progress(pass_name, rows)`` is told the rows read after every batch.
    """
    stats = learn_table(prep, reader, ranks=ranks, progress=progress)
    n_kept = stats.n_kept if ranks is None else stats.kept_by_rank[ranks.rank]
    prepared = transform_table(prep, reader, device=device, ranks=ranks, n_kept=n_kept,
                               progress=progress, fitting=True)
    prepared.stats = stats
    return prepared


def learn_table(prep: Preprocessor, reader: TableReader, *, ranks: Ranks | None = None,
                progress: Callable[[str, int], None] | None = None) -> TableStatistics:
    """The statistics pass and :meth:`Preprocessor.learn`; with ``ranks``, over this
    rank's share, then merged so that every rank learns the same steps."""
    id_column = prep.start(reader.columns, reader.name)
    columns = prep.columns_to_read(reader.columns, id_column)
    drop = prep.missing == "drop"
    candidates = None
    expected = reader.n_rows
    while True:
        stats = read_pass(
            reader, columns,
            lambda: TableStatistics(categorical=prep.categorical, candidates=candidates, drop_missing=drop,
                                    expected_rows=expected),
            _counted(TableStatistics.add, "statistics", progress), part=None if ranks is None else ranks.part,
        )
        stats.placeholders = dict(reader.placeholders)
        if ranks is not None:
            widened = agree_on_plans(ranks, reader.plans)
            if widened is not None:  # another rank's rows need a column read another way
                reader.adopt_plans(widened)
                continue
            stats = merge_statistics(ranks, stats, reader.name)
        if not stats.sample.complete():
            expected = None  # the sample's threshold left too few rows: read again without one
            continue
        kinds = {name: reader.column_kind(name) for name in columns}
        prep.learn(stats, header=reader.columns, kinds=kinds, id_column=id_column, source=reader.name)
        assumed = [name for name in columns if kinds[name] == "number" or name in prep.categorical]
        if not drop or candidates is not None or set(prep.features_read_) == set(assumed):
            return stats
        # A kept row was taken to need a value in a column that has none: count again
        # over the rows complete in the feature columns only.
        candidates = prep.features_read_


def transform_table(prep: Preprocessor, reader: TableReader, *, device="cpu", n_kept: int | None = None,
                    ranks: Ranks | None = None, progress: Callable[[str, int], None] | None = None,
                    fitting: bool = False) -> PreparedTable:
    """The transform pass: the table (or, with ``ranks``, this rank's share of it) as
    one float32 matrix on ``device``. With ``fitting``, the pass ends the fit
    (:meth:`Preprocessor.finish`) with the moments of every rank's batches in table order."""
    import torch

    device = torch.device(device)
    part = None if ranks is None else ranks.part
    if n_kept is None:
        # Rows with a missing value may be dropped: allocate for every row, keep what is used.
        n_kept = _count_rows(reader, prep, part)
    X = torch.empty((n_kept, len(prep.feature_names_out_)), dtype=torch.float32, device=device)
    kept_rows, moments, written, n_rows = [], [], 0, 0
    missing = np.zeros(len(prep.feature_columns_), dtype=np.int64)
    unknown = np.zeros(len(prep.categories_), dtype=np.int64)
    for batch, rows, result in _transform_batches(prep, reader, device, X, part, progress, fitting):
        if written + rows > n_kept:
            raise InputError(f"{reader.name} changed while it was read: it has more rows than before")
        written += rows
        n_rows += batch.n_rows
        moments.append(result.moments)
        unknown += result.unknown
        if result.rows is not None:
            kept_rows.append(result.rows + batch.start)
        if not fitting:
            missing += _missing_per_column(prep, batch)
    X = X[:written]
    if fitting:
        if ranks is not None:
            moments = [batch for rank_moments in ranks.all_gather(moments) for batch in rank_moments]
        prep.finish(merge_parts(np.stack(moments)) if moments else _no_moments(prep), reader.name)
        _center_and_scale(X, prep.center_, prep.scale_)
    rows = None if prep.missing != "drop" else (np.concatenate(kept_rows) if kept_rows else np.zeros(0, np.int64))
    return PreparedTable(
        X=X, rows=rows, n_rows=n_rows,
        missing_counts={name: int(n) for name, n in zip(prep.feature_columns_, missing) if n},
        unknown_levels={name: int(n) for name, n in zip(prep.categories_, unknown) if n},
    )


def transformed_batches(prep: Preprocessor, reader: TableReader, *, device="cpu", raw: Sequence[str] = (),
                        part=None) -> Iterator[tuple[Batch, object, TransformedBatch]]:
    """Each batch with its transformed rows (a float32 tensor on ``device``): the
    transform pass one batch at a time, for streaming prediction."""
    import torch

    device = torch.device(device)
    params = prep.parameters()
    for batch in reader.batches(prep.feature_columns_, raw=raw, part=part):
        out = torch.empty((batch.n_rows, params.n_features), dtype=torch.float32, device=device)
        rows, result = _transform_batch(prep, params, batch, device, out, 0, reader.name)
        yield batch, out[:rows], result


def _transform_batches(prep, reader, device, X, part, progress, fitting):
    params = prep.parameters()
    written = 0
    rows_read = 0
    for batch in reader.batches(prep.feature_columns_, part=part):
        if written + batch.n_rows > X.shape[0] and prep.missing != "drop":
            raise InputError(f"{reader.name} changed while it was read: it has more rows than before")
        rows, result = _transform_batch(prep, params, batch, X.device, X, written, reader.name)
        written += rows
        rows_read += batch.n_rows
        if progress is not None:
            progress("transform", rows_read)
        yield batch, rows, result


def _transform_batch(prep, params, batch, device, out, out_start, source):
    """Transform one batch into ``out[out_start:]``; return the rows written and the result."""
    import torch

    numbers = prep.numeric_values(batch, source)
    codes = prep.category_codes(batch)
    drop = prep.missing == "drop"
    if device.type == "cpu":
        numbers = np.stack(numbers) if numbers else np.zeros((0, batch.n_rows))
        target = out.numpy()
        if drop:
            # The kept rows are known only after the kernel's first look: write into a
            # batch-sized buffer when the matrix may not have room for all of them.
            room = target.shape[0] - out_start
            if room < batch.n_rows:
                buffer = np.empty((batch.n_rows, params.n_features), dtype=np.float32)
                result = transform_numpy(numbers, codes, True, params, buffer, 0)
                kept = result.rows.size
                target[out_start:out_start + kept] = buffer[:kept]
                return kept, result
        result = transform_numpy(numbers, codes, drop, params, target, out_start)
        return (batch.n_rows if result.rows is None else result.rows.size), result
    stacked = torch.from_numpy(np.stack(numbers)) if numbers else torch.zeros((0, batch.n_rows), dtype=torch.float64)
    rows_out, result = transform_torch(stacked.to(device, non_blocking=True), torch.from_numpy(codes).to(device),
                                       drop, params, device)
    out[out_start:out_start + rows_out.shape[0]] = rows_out
    return rows_out.shape[0], result


def _center_and_scale(X, center: np.ndarray, scale: np.ndarray) -> None:
    """``X = float32((float64(X) - center) / scale)`` in place, in blocks of rows,
    for the columns whose centre or scale is not 0 or 1."""
    import torch

    changed = np.flatnonzero((center != 0) | (scale != 1))
    if changed.size == 0 or X.shape[0] == 0:
        return
    if X.device.type == "cpu":
        _kernels.center_and_scale(X.numpy(), changed, center[changed], scale[changed])
        return
    columns = torch.as_tensor(changed, device=X.device)
    center_t = torch.as_tensor(center[changed], dtype=torch.float64, device=X.device)
    scale_t = torch.as_tensor(scale[changed], dtype=torch.float64, device=X.device)
    for start in range(0, X.shape[0], _FINISH_ROWS):
        block = X[start:start + _FINISH_ROWS]
        block[:, columns] = ((block[:, columns].double() - center_t) / scale_t).float()


def _no_moments(prep) -> np.ndarray:
    moments = np.zeros((len(prep.feature_names_out_), 5))
    moments[:, 3], moments[:, 4] = np.inf, -np.inf
    return moments


def _count_rows(reader: TableReader, prep: Preprocessor, part) -> int:
    """Rows of the table (or of this process's part) without reading their values
    where the file says; a CSV file is counted in one pass over its first column."""
    if part is None and reader.n_rows is not None:
        return reader.n_rows
    columns = prep.feature_columns_[:1]
    return read_pass(reader, columns, lambda: [0], lambda state, batch: state.__setitem__(0, state[0] + batch.n_rows),
                     part=part)[0]


def _missing_per_column(prep: Preprocessor, batch: Batch) -> np.ndarray:
    counts = [int((~np.isfinite(batch.numbers[name])).sum()) for name in prep.numeric_columns_]
    for name in prep.categories_:
        if name in batch.numbers:
            counts.append(int((~np.isfinite(batch.numbers[name])).sum()))
        else:
            counts.append(int(batch.texts[name].null_count))
    return np.asarray(counts, dtype=np.int64)


def _counted(add, name, progress):
    """``add`` that reports the rows the pass has taken so far (``state.n_rows``, which
    starts again with the pass) to ``progress``."""
    if progress is None:
        return add

    def counted(state, batch):
        add(state, batch)
        progress(name, state.n_rows)

    return counted


__all__ = ["PreparedTable", "learn_table", "prepare_table", "transform_table", "transformed_batches"]
