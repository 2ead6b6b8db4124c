"""Each customer's segment written out as it is produced, and the sums that profile segments.

The segments table has one row per clustered customer: the ID column as the table
holds it (or ``row``, the position in the table, when there is none), ``segment``,
``segment_name`` and ``distance`` (to the segment's centre, in the clustered space).
:class:`SegmentsWriter` writes it batch by batch, Parquet in row groups or CSV in
blocks, to a temporary file that replaces the output only once complete
(:func:`~gpukmeans.segmentation.io.atomic_path`); with no path it collects the table
in memory instead.

:func:`profile_and_write` is the pipeline's last pass over the table: for every
batch it looks up the batch's rows' segments, adds their raw values to
:class:`~gpukmeans.segmentation.profiles.ProfileSums`, and writes their rows of the
segments table.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from .io import atomic_path
from .preprocess import Preprocessor
from .profiles import ProfileSums
from .tables import Batch, TableReader


class SegmentsWriter:
    """Writes the segments table in batches (see the module's notes).

    Parameters
    ----------
    path : path or None
        Where to write (``format`` decides how); None keeps the table in memory.
    format : {"csv", "parquet"}
    names : sequence of str
        The segment names, by segment number.
    key : str
        The first column: the ID column's name, or ``row``.
    replace : bool
        Whether an existing ``path`` may be replaced (see :func:`atomic_path`).
    """

    def __init__(self, path, format: str, names: Sequence[str], key: str, *, replace: bool = True):
        import pyarrow as pa

        if format not in ("csv", "parquet"):
            raise ValueError(f"format must be 'csv' or 'parquet', got {format!r}")
        self.path = None if path is None else Path(path)
        self.format = format
        self.key = key
        self.replace = replace
        self.rows = 0
        self.counts = np.zeros(len(names), dtype=np.int64)
        self._names = pa.array(list(names), type=pa.string())
        self._parts: list = []
        self._writer = None

    @contextlib.contextmanager
    def open(self) -> Iterator["SegmentsWriter"]:
        """Write inside the ``with``; the file is in place when it ends without an error."""
        if self.path is None:
            yield self
            return
        with atomic_path(self.path, replace=self.replace) as tmp:
            self._tmp = tmp
            try:
                yield self
                if self._writer is None:  # no rows at all: still a table, with its header
                    self._start(self._table(_empty_key(), np.zeros(0, np.int64), np.zeros(0)).schema)
            finally:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None

    def write(self, key, labels: np.ndarray, distances: np.ndarray) -> None:
        """Add rows: ``key`` (an arrow array of IDs or row positions), their segments
        and distances."""
        table = self._table(key, labels, distances)
        self.rows += len(labels)
        self.counts += np.bincount(labels, minlength=self.counts.size)[: self.counts.size]
        if self.path is None:
            self._parts.append(table)
            return
        if self._writer is None:
            self._start(table.schema)
        if self.format == "parquet":
            self._writer.write_table(table)
        else:
            self._writer.write_table(table)

    def frame(self) -> pd.DataFrame:
        """The table written, as a DataFrame (kept in memory only without a path)."""
        import pyarrow as pa

        if self.path is not None:
            raise RuntimeError("the segments went to a file; read it back from there")
        if not self._parts:
            return self._table(_empty_key(), np.zeros(0, np.int64), np.zeros(0)).to_pandas()
        return pa.concat_tables(self._parts).to_pandas()

    def _table(self, key, labels, distances):
        import pyarrow as pa

        labels = np.asarray(labels, dtype=np.int64)
        return pa.table({
            self.key: key,
            "segment": pa.array(labels),
            "segment_name": self._names.take(pa.array(labels)),
            "distance": pa.array(np.asarray(distances, dtype=np.float64)),
        })

    def _start(self, schema) -> None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._tmp, schema)
        else:
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(self._tmp, schema)


def _empty_key():
    import pyarrow as pa

    return pa.array([], type=pa.int64())


def profile_and_write(prep: Preprocessor, reader: TableReader, labels: np.ndarray, distances: np.ndarray,
                      rows: np.ndarray | None, n_segments: int, writer: SegmentsWriter,
                      progress=None, tallies: Sequence = ()) -> ProfileSums:
    """The last pass: profile sums over the clustered rows and the segments table.

    ``labels`` and ``distances`` are those of the clustered rows, which are the
    table's rows ``rows`` (None: every row). Each of ``tallies`` is handed every batch
    as :class:`ProfileSums` is (``add(batch, kept, labels, prep, codes=...)``, ``codes``
    the batch's ``prep.category_codes``), to count more over every customer in the same pass.
    """
    sums = ProfileSums(n_segments, prep.numeric_columns_, prep.categories_)
    raw = [prep.id_column_] if prep.id_column_ is not None else []
    seen = 0
    with writer.open():
        for batch in reader.batches(prep.feature_columns_, raw=raw):
            kept, first = _kept_in(batch, rows)
            batch_labels = labels[first:first + (batch.n_rows if kept is None else kept.size)]
            batch_distances = distances[first:first + batch_labels.size]
            codes = prep.category_codes(batch)  # once per batch: the sums and every tally read them
            sums.add(batch, kept, batch_labels, prep, codes=codes)
            for tally in tallies:
                tally.add(batch, kept, batch_labels, prep, codes=codes)
            writer.write(segment_key(batch, kept, prep.id_column_), batch_labels, batch_distances)
            seen += batch.n_rows
            if progress is not None:
                progress("profile", seen)
    return sums


def _kept_in(batch: Batch, rows: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """The batch's clustered rows (positions in the batch; None: all of them) and the
    index of the first one among all clustered rows."""
    if rows is None:
        return None, batch.start
    first, stop = np.searchsorted(rows, [batch.start, batch.start + batch.n_rows])
    return rows[first:stop] - batch.start, int(first)


def segment_key(batch: Batch, kept: np.ndarray | None, id_column: str | None):
    """The first column of the segments table for a batch's clustered rows (``kept``:
    their positions in the batch, None: all): the IDs as read, or row positions."""
    import pyarrow as pa

    if id_column is not None:
        ids = batch.raw[id_column]
        return ids if kept is None else ids.take(pa.array(kept))
    positions = np.arange(batch.start, batch.start + batch.n_rows, dtype=np.int64)
    return pa.array(positions if kept is None else positions[kept])
