"""Tables on disk as data sources: a Parquet file, a folder of Parquet files, a CSV file.

Rows are read in batches with pyarrow on every pass and never held all at once; only
per-row state (labels, weights, a distance during initialisation) stays in memory.
A :class:`FileSource` covers a contiguous slice of the table's rows, so that
torch.distributed ranks each read their own share (the row groups that overlap
their slice, for Parquet). Decoding runs in a background thread one batch ahead of
the computation; on CUDA the batches then go to the device through pinned buffers.
"""

import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from .._prefetch import prefetched
from .base import DataSource
from .storage import compute_dtype, to_storage

# Rows pyarrow decodes at once: large enough that per-batch overhead vanishes, small
# enough that a batch of a wide table stays a few MiB.
READ_ROWS = 1 << 16
_CSV_BLOCK_BYTES = 16 << 20
_PARQUET_BUFFER_BYTES = 4 << 20


def is_path(X) -> bool:
    return isinstance(X, (str, os.PathLike))


def open_table(path, columns: Optional[Sequence[str]] = None) -> "Table":
    """The table at ``path``: a ``.csv`` file, a Parquet file, or a folder of Parquet files.

    ``columns`` names the features; None takes every numeric column. A missing or
    non-numeric column, an empty folder or an unreadable file is a ValueError.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder.")
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"columns must be a list of column names, got {columns!r}.")
        columns = list(columns)
        if not columns:
            raise ValueError("columns must name at least one column.")
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*.parquet") if not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        if not files:
            raise ValueError(f"{path}: the folder holds no .parquet files.")
        return ParquetTable(path, files, columns)
    if path.name.lower().endswith((".csv", ".csv.gz", ".csv.bz2")):
        return CsvTable(path, columns)
    return ParquetTable(path, [path], columns)


def _choose_columns(path, fields: dict, columns):
    """Selected names and the float dtype: float32 when every column is float32."""
    import pyarrow as pa

    def numeric(arrow_type):
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)

    if columns is None:
        columns = [name for name, arrow_type in fields.items() if numeric(arrow_type)]
        if not columns:
            raise ValueError(f"{path}: no numeric columns; name them with columns=[...].")
    for name in columns:
        if name not in fields:
            raise ValueError(f"{path}: no column {name!r}; the columns are {list(fields)}.")
        if not numeric(fields[name]):
            raise ValueError(f"{path}: column {name!r} is {fields[name]}, not numeric.")
    all_float32 = all(pa.types.is_float32(fields[name]) for name in columns)
    return columns, (np.float32 if all_float32 else np.float64)


def _batch_to_numpy(batch, columns, dtype, path, rows) -> np.ndarray:
    """An (m, d) C-ordered array of ``batch``'s columns; missing values are an error.

    ``rows`` numbers the batch's rows in the table, for the messages: the first row's
    number (a contiguous batch) or every row's (rows picked by index).
    """

    def data_row(position: int) -> int:  # counted from 1, the header apart, as a user counts
        return (rows + position if np.isscalar(rows) else int(rows[position])) + 1

    out = np.empty((batch.num_rows, len(columns)), dtype=dtype)
    for j, name in enumerate(columns):
        column = batch.column(name)
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise ValueError(
                f"{path}: column {name!r} has a missing value in data row {data_row(first)}; "
                "fill or drop the missing values before clustering."
            )
        out[:, j] = column.to_numpy(zero_copy_only=False)
    finite = np.isfinite(out)
    if not finite.all():
        position, j = np.argwhere(~finite)[0]
        raise ValueError(f"{path}: column {columns[j]!r} holds NaN or infinity in data row {data_row(position)}.")
    return out


class Table:
    """A table on disk: ``n_rows``, ``columns``, ``dtype``; reads row ranges and row sets."""

    path: Path
    columns: list
    dtype: type
    n_rows: int

    def batches(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """(m, d) arrays covering rows ``start:stop`` in order."""
        raise NotImplementedError

    def rows_at(self, indices: np.ndarray) -> np.ndarray:
        """The rows at sorted global ``indices``, as one (len, d) array."""
        raise NotImplementedError


class ParquetTable(Table):
    """Parquet files read in order; row groups are the unit of seeking."""

    def __init__(self, path: Path, files, columns):
        import pyarrow.parquet as pq

        self.path = path
        self.files = files
        fields = None
        group_files, group_indices, group_rows = [], [], []
        for position, file in enumerate(files):
            try:
                metadata = pq.ParquetFile(file).metadata
                schema = pq.read_schema(file)
            except Exception as error:  # pyarrow raises several types for a bad file
                raise ValueError(f"{file}: not a readable Parquet file ({error}).") from None
            file_fields = {field.name: field.type for field in schema}
            if fields is None:
                fields = file_fields
                self.columns, self.dtype = _choose_columns(path, fields, columns)
            else:
                missing = [c for c in self.columns if c not in file_fields]
                if missing:
                    raise ValueError(f"{file}: lacks column(s) {missing} that {files[0]} has.")
            for group in range(metadata.num_row_groups):
                group_files.append(position)
                group_indices.append(group)
                group_rows.append(metadata.row_group(group).num_rows)
        self._group_file = np.array(group_files, dtype=np.int64)
        self._group_index = np.array(group_indices, dtype=np.int64)
        self._group_start = np.concatenate([[0], np.cumsum(group_rows, dtype=np.int64)])
        self.n_rows = int(self._group_start[-1])

    def _open(self, position):
        import pyarrow.parquet as pq

        # Buffered reads decode a column chunk a page run at a time instead of reading
        # whole row groups into Arrow's memory pool, which keeps freed pages for a while.
        return pq.ParquetFile(self.files[position], buffer_size=_PARQUET_BUFFER_BYTES)

    def _groups_overlapping(self, start, stop):
        first = int(np.searchsorted(self._group_start, start, side="right")) - 1
        last = int(np.searchsorted(self._group_start, stop, side="left"))
        return range(max(first, 0), min(last, len(self._group_file)))

    def batches(self, start, stop):
        handles = {}
        for group in self._groups_overlapping(start, stop):
            position = int(self._group_file[group])
            if position not in handles:
                handles.clear()  # one open file at a time
                handles[position] = self._open(position)
            row = int(self._group_start[group])
            for batch in handles[position].iter_batches(
                batch_size=READ_ROWS, row_groups=[int(self._group_index[group])], columns=self.columns
            ):
                lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
                if lo < hi:
                    yield _batch_to_numpy(batch.slice(lo, hi - lo), self.columns, self.dtype, self.path, row + lo)
                row += batch.num_rows

    def rows_at(self, indices):
        out = np.empty((len(indices), len(self.columns)), dtype=self.dtype)
        groups = np.searchsorted(self._group_start, indices, side="right") - 1
        for group in np.unique(groups):
            chosen = np.nonzero(groups == group)[0]
            local = indices[chosen] - self._group_start[group]
            row = 0
            # Batch by batch, so that only one batch of the row group is ever decoded.
            for batch in self._open(int(self._group_file[group])).iter_batches(
                batch_size=READ_ROWS, row_groups=[int(self._group_index[group])], columns=self.columns
            ):
                inside = (local >= row) & (local < row + batch.num_rows)
                if inside.any():
                    picked = batch.take(local[inside] - row)
                    out[chosen[inside]] = _batch_to_numpy(
                        picked, self.columns, self.dtype, self.path, indices[chosen[inside]]
                    )
                row += batch.num_rows
                if row > local.max():
                    break
        return out


class CsvTable(Table):
    """A CSV file, streamed with pyarrow's CSV reader; selected columns parse as float64.

    CSV has no index: the rows are counted once when the table is opened, and reading
    rows at given indices streams the file up to the last of them.
    """

    def __init__(self, path: Path, columns):
        import pyarrow.csv as csv

        self.path = path
        try:
            reader = csv.open_csv(path, read_options=csv.ReadOptions(block_size=_CSV_BLOCK_BYTES))
        except Exception as error:
            raise ValueError(f"{path}: not a readable CSV file ({error}).") from None
        fields = {field.name: field.type for field in reader.schema}
        self.columns, _ = _choose_columns(path, fields, columns)
        self.dtype = np.float64
        self.n_rows = sum(batch.num_rows for batch in self._reader(self.columns[:1]))

    def _reader(self, columns):
        import pyarrow as pa
        import pyarrow.csv as csv

        convert = csv.ConvertOptions(include_columns=columns, column_types={c: pa.float64() for c in columns})
        try:
            reader = csv.open_csv(
                self.path, read_options=csv.ReadOptions(block_size=_CSV_BLOCK_BYTES), convert_options=convert
            )
            yield from reader
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"{self.path}: a selected column does not parse as a number ({error}).") from None

    def batches(self, start, stop):
        row = 0
        for batch in self._reader(self.columns):
            lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
            if lo < hi:
                for offset in range(lo, hi, READ_ROWS):
                    piece = batch.slice(offset, min(READ_ROWS, hi - offset))
                    yield _batch_to_numpy(piece, self.columns, self.dtype, self.path, row + offset)
            row += batch.num_rows
            if row >= stop:
                return

    def rows_at(self, indices):
        out = np.empty((len(indices), len(self.columns)), dtype=self.dtype)
        if len(indices) == 0:
            return out
        row = 0
        for batch in self._reader(self.columns):
            chosen = np.nonzero((indices >= row) & (indices < row + batch.num_rows))[0]
            if chosen.size:
                picked = batch.take(indices[chosen] - row)
                out[chosen] = _batch_to_numpy(picked, self.columns, self.dtype, self.path, indices[chosen])
            row += batch.num_rows
            if row > indices[-1]:
                break
        return out


def shard_bounds(n_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice of ``n_rows`` rows: sizes differ by at most one."""
    base, extra = divmod(n_rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class FileSource(DataSource):
    """Rows ``start:stop`` of a table on disk, read anew on every pass.

    Parameters
    ----------
    table : :class:`Table`
    bounds : (start, stop) global rows this source covers (a rank's shard, or all).
    chunk_size : rows per chunk handed to the kernel.
    device : where the work runs; on CUDA, batches are uploaded through pinned buffers.
    sample_weight : (stop - start,) tensor on ``device`` in the compute dtype, or None.
    storage_dtype : torch dtype of the rows handed to the kernels, or None for the
        table's (float32 when every column is float32, else float64). Rows are
        converted on the host, so 16-bit storage also halves the bytes uploaded.
    conditioning : :class:`~gpukmeans.sources.conditioning.Conditioning` applied to every batch
        as it is read, before the conversion; None for the rows as they are.
    """

    def __init__(self, table: Table, bounds, chunk_size: int, device: torch.device, sample_weight=None,
                 storage_dtype: Optional[torch.dtype] = None, conditioning=None):
        self.table = table
        self._storage_dtype = storage_dtype
        if conditioning is not None:
            self.conditioning = conditioning
        self.start, self.stop = bounds
        self.row_offset = self.start
        self.chunk_size = max(1, int(chunk_size))
        self._device = device
        self.sample_weight = sample_weight
        self._feeder = None

    @property
    def n_samples(self) -> int:
        return self.stop - self.start

    @property
    def n_features(self) -> int:
        return len(self.table.columns)

    @property
    def storage_dtype(self) -> torch.dtype:
        if self._storage_dtype is not None:
            return self._storage_dtype
        return torch.float32 if self.table.dtype == np.float32 else torch.float64

    @property
    def dtype(self) -> torch.dtype:
        return compute_dtype(self.storage_dtype)

    @property
    def device(self) -> torch.device:
        return self._device

    def _host_chunks(self):
        position = 0
        for batch in prefetched(self.table.batches(self.start, self.stop), depth=2):
            for lo in range(0, batch.shape[0], self.chunk_size):
                rows = self._stored(torch.from_numpy(batch[lo : lo + self.chunk_size]))
                yield position, rows
                position += rows.shape[0]

    def chunks(self):
        host_chunks = self._host_chunks()
        if self._device.type == "cuda":
            from .host_stream import DeviceFeeder

            if self._feeder is None:
                self._feeder = DeviceFeeder(self._device, self.chunk_size, self.n_features, self.storage_dtype)
            host_chunks = self._feeder.feed(host_chunks)
        for start, rows in host_chunks:
            weights = None if self.sample_weight is None else self.sample_weight[start : start + rows.shape[0]]
            yield start, rows, weights

    def take_local(self, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.cpu().numpy().astype(np.int64)
        order = np.argsort(indices, kind="stable")
        rows = np.empty((len(indices), self.n_features), dtype=self.table.dtype)
        rows[order] = self.table.rows_at(indices[order] + self.start)
        # Conditioned and rounded as the chunks are, so that a centre taken from a row is that row.
        return self._stored(torch.from_numpy(rows)).to(device=self._device, dtype=self.dtype)

    def _stored(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows as read, conditioned and converted to the storage dtype (on the host)."""
        if not self.conditioning.is_identity:
            return self.conditioning.rows(rows, self.storage_dtype)
        return to_storage(rows, self.storage_dtype, str(self.table.path))

    def conditioned(self, conditioning, storage_dtype=None) -> "FileSource":
        """The same rows of the same file, conditioned as they are read."""
        return FileSource(self.table, (self.start, self.stop), self.chunk_size, self._device, self.sample_weight,
                          storage_dtype=storage_dtype or self._storage_dtype, conditioning=conditioning)

    def minibatches(self, batch_size: int, random_state: np.random.RandomState):
        """Endless mini-batches streamed from the file: each epoch visits every row once.

        Reading random rows of a file is one pass per batch, so instead each epoch
        reads the file in order, shuffles every read batch with ``random_state``, and
        cuts it into mini-batches of ``batch_size`` rows (carrying the remainder to
        the next). Rows keep their sample weights, which weight the update.
        """
        carry_rows, carry_weights = [], []
        while True:
            for start, rows, weights in self.chunks():
                order = torch.from_numpy(random_state.permutation(rows.shape[0])).to(rows.device)
                carry_rows.append(rows[order])
                if weights is not None:
                    carry_weights.append(weights[order])
                pending = sum(r.shape[0] for r in carry_rows)
                if pending < batch_size:
                    continue
                all_rows = torch.cat(carry_rows)
                all_weights = torch.cat(carry_weights) if carry_weights else None
                n_full = pending // batch_size * batch_size
                for lo in range(0, n_full, batch_size):
                    yield all_rows[lo : lo + batch_size], None if all_weights is None else all_weights[lo : lo + batch_size]
                carry_rows = [all_rows[n_full:]]
                carry_weights = [all_weights[n_full:]] if all_weights is not None else []
