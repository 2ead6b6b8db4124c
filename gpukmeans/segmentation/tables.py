"""Reading a customer table in batches of rows, in memory that does not grow with the table.

A :class:`TableReader` opens a CSV file, a Parquet file or a pandas DataFrame and
hands out :class:`Batch` es of rows, column by column, as the pipeline's passes ask
for them: Parquet row group by row group, CSV block by block (pyarrow's streaming
readers), a DataFrame slice by slice. Every pass over the table reads it again; none
holds it whole.

How a column is read is a :class:`ColumnPlan`, learned from the first batch and
checked on every later one:

- ``number``: a column the file stores as numbers (a CSV column whose first block
  holds only numbers), read as float64, missing values NaN;
- ``text``: read as text, placeholders (``N/A``, ``-``...) as nulls;
- ``text-number``: text whose every cell is a number in one format (``$1,200.50``,
  ``3,5``), parsed in the format that all batches seen so far allow
  (:class:`~gpukmeans.segmentation.numbers.NumberStyles`);
- ``raw``: a column carried through untouched (the customer ID);
- ``other``: a Parquet type that is neither numbers nor text (dates, lists).

A later batch can contradict a plan: a CSV column of numbers with ``N/A`` in its
millionth row, a column of numbers with a word further down, a cell that only a
decimal comma reads. The reader then widens the plan and raises
:class:`PlanChanged`; the pass starts again from the first row with the new plan
(:func:`read_pass`), so that every row of a column is read the same way, as reading
the whole column at once would. A plan only ever widens, so a pass restarts at most
a few times.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import pandas as pd

from .. import _prefetch
from . import numbers
from .errors import InputError
from .io import (
    _check_columns,
    _csv_error,
    _csv_layout,
    _existing_file,
    _first_line,
    _header_rows,
    _parquet_schema,
    check_decimal,
    table_format,
)

#: Rows per batch of a Parquet file or a DataFrame (a Parquet row group larger than
#: this is read in several batches).
BATCH_ROWS = 1 << 20
#: Bytes of CSV text per batch (pyarrow's block size): a 64th of the file, between
#: these bounds, so that a file of a few MB still splits across the ranks of a
#: torch.distributed run, and the batches never depend on how many ranks there are.
CSV_BLOCK_BYTES = 16 << 20
CSV_MIN_BLOCK_BYTES = 1 << 20
#: Restarts of one pass before the reader gives up (each one widens a plan).
MAX_RESTARTS = 16

NUMBER, TEXT, TEXT_NUMBER, RAW, OTHER = "number", "text", "text-number", "raw", "other"


class PlanChanged(Exception):
    """A batch showed that a column must be read another way; restart the pass."""


@dataclass
class ColumnPlan:
    """How one column is read (see the module's notes).

    Attributes
    ----------
    name : str
    kind : {"number", "text", "text-number", "raw", "other"}
    styles : NumberStyles or None
        For ``text-number``: the formats every batch so far allows; None until the
        first batch is seen.
    """

    name: str
    kind: str
    styles: numbers.NumberStyles | None = None


@dataclass
class Batch:
    """Consecutive rows of the table, column by column.

    Attributes
    ----------
    start : int
        Position (0-based) of the first row in the whole table.
    n_rows : int
    numbers : dict of str to ndarray of float64
        ``number`` and ``text-number`` columns; NaN where a value is missing.
    texts : dict of str to pyarrow.Array
        ``text`` columns (string or dictionary arrays), placeholders as nulls.
    raw : dict of str to pyarrow.Array
        ``raw`` columns as the file holds them.
    """

    start: int
    n_rows: int
    numbers: dict = field(default_factory=dict)
    texts: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


S = TypeVar("S")


def read_pass(reader: "TableReader", columns: Sequence[str], start: Callable[[], S], add: Callable[[S, Batch], None],
              *, raw: Sequence[str] = (), part: tuple[int, int] | None = None) -> S:
    """One pass over ``columns``: ``start()`` makes a fresh state, ``add(state, batch)``
    takes each batch; when a plan changes the pass starts over with a fresh state."""
    for _ in range(MAX_RESTARTS):
        state = start()
        try:
            for batch in reader.batches(columns, raw=raw, part=part):
                add(state, batch)
        except PlanChanged:
            continue
        return state
    raise InputError(f"{reader.name} could not be read consistently: its columns kept changing type")


def _release_cached_memory() -> None:
    """Hand back to the system what pyarrow's memory pool keeps of freed batches.

    Its allocator keeps freed pages for reuse; over a pass of decoded batches of
    different sizes that is hundreds of MB the process holds and never uses again.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


class TableReader:
    """A CSV file, a Parquet file or a DataFrame, read in batches of rows.

    Use :meth:`open`. The attributes describe the table; ``plans`` grow as columns
    are read; ``placeholders`` counts the placeholders of the last complete pass.

    Attributes
    ----------
    name : str
        What to call the table in messages (its path, or "the table").
    format : {"csv", "parquet"}
        The file's format; results are written back in the same one (CSV for a DataFrame).
    columns : list of str
        The header.
    decimal : {".", ","}
        The decimal separator preferred for cells that read two ways.
    n_rows : int or None
        Known up front for Parquet and a DataFrame; for CSV after a first pass.
    """

    def __init__(self, name: str, format: str, columns: list[str], decimal: str):
        self.name = name
        self.format = format
        self.columns = columns
        self.decimal = decimal
        self.n_rows: int | None = None
        self.delimiter: str | None = None
        self.plans: dict[str, ColumnPlan] = {}
        self.placeholders: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------ opening

    @staticmethod
    def open(data, *, decimal: str | None = None, name: str | None = None) -> "TableReader":
        """A reader for a path (CSV or Parquet, by suffix or content), a DataFrame or
        a 2-D numpy array (columns ``x0``, ``x1``, ...).

        Raises
        ------
        InputError
            If the file is missing, empty, not a table, or names two columns alike.
        """
        check_decimal(decimal)
        if isinstance(data, np.ndarray):
            data = array_table(data)
        if isinstance(data, pd.DataFrame):
            return _FrameReader(data, decimal or ".", name or "the table")
        path = _existing_file(data)
        if table_format(path) == "parquet":
            return _ParquetReader(path, decimal, name or str(path))
        return _CsvReader(path, decimal, name or str(path))

    def check_columns(self, wanted: Sequence[str] | None) -> None:
        """Refuse names that are not columns of the table, listing the ones that are."""
        _check_columns(self.name, self.columns, wanted)

    @property
    def number_formats(self) -> dict[str, numbers.NumberFormat]:
        """The formats of the columns read from text as numbers, other than plain ones."""
        formats = {}
        for name, plan in self.plans.items():
            if plan.kind == TEXT_NUMBER and plan.styles is not None:
                chosen = plan.styles.choose(self._decimals())
                if chosen is not None and not chosen.is_plain:
                    formats[name] = chosen
        return formats

    def column_kind(self, name: str) -> str:
        """How ``name`` is read so far: "number" for both numbers and text that holds numbers."""
        kind = self.plans[name].kind
        return NUMBER if kind == TEXT_NUMBER else kind

    def adopt_plans(self, plans: dict[str, ColumnPlan]) -> None:
        """Read columns as ``plans`` say (another process's reader learned them)."""
        self.plans.update({name: replace(plan) for name, plan in plans.items()})

    # ------------------------------------------------------------ batches

    def batches(self, columns: Sequence[str], *, raw: Sequence[str] = (),
                part: tuple[int, int] | None = None) -> Iterator[Batch]:
        """The rows of ``columns`` (plus ``raw`` columns, untouched) in order.

        ``part=(rank, n_parts)`` keeps one share of the batches, the same whatever
        the number of processes asking: Parquet row groups in contiguous runs, CSV
        blocks in turn, DataFrame slices in contiguous runs. A pass starts by
        clearing the placeholder counts.

        Raises
        ------
        PlanChanged
            When a batch contradicts a column's plan (the plan is widened first).
        InputError
            When the table cannot be read.
        """
        self.check_columns(list(columns) + list(raw))
        self.placeholders = {}
        for name in raw:
            self.plans[name] = ColumnPlan(name, RAW)
        for batch in _prefetch.prefetched(self._batches(list(columns), list(raw), part)):
            yield batch
            _release_cached_memory()
        _release_cached_memory()

    def _batches(self, columns, raw, part) -> Iterator[Batch]:
        raise NotImplementedError

    def _decimals(self) -> tuple[str, ...]:
        return (self.decimal, *(d for d in numbers.DECIMAL_SEPARATORS if d != self.decimal))

    def _batch(self, start: int, n_rows: int, arrays: dict, raw: Sequence[str]) -> Batch:
        """A batch from the columns as read (pyarrow arrays), each converted by its plan."""
        batch = Batch(start=start, n_rows=n_rows)
        for name, array in arrays.items():
            if name in raw:
                batch.raw[name] = array
                continue
            plan = self.plans[name]
            if plan.kind == NUMBER:
                batch.numbers[name] = _float64(array)
            elif plan.kind in (TEXT, TEXT_NUMBER):
                self._add_text(batch, plan, array)
        return batch

    def _add_text(self, batch: Batch, plan: ColumnPlan, array) -> None:
        import pyarrow as pa

        if plan.kind == TEXT_NUMBER:
            texts = numbers.as_text_array(_decoded(array))
            if plan.styles is None and not numbers.head_reads_as_numbers(texts):
                plan.kind = TEXT
            else:
                cells = numbers.NumberCells.of(texts)
                styles = cells.styles()
                merged = None if styles is None else (styles if plan.styles is None else plan.styles.merge(styles))
                if merged is None:
                    parsed_before = plan.styles is not None
                    plan.kind, plan.styles = TEXT, None
                    if parsed_before:  # earlier batches of this pass read it as numbers
                        raise PlanChanged(plan.name)
                else:
                    chosen = merged.choose(self._decimals())
                    if plan.styles is not None and chosen != plan.styles.choose(self._decimals()):
                        plan.styles = merged
                        raise PlanChanged(plan.name)
                    plan.styles = merged
                    batch.numbers[plan.name] = cells.values(chosen)
                    self._count_placeholders(plan.name, cells.placeholders)
                    return
        if pa.types.is_dictionary(array.type):
            # Placeholders are blanked in the dictionary: the rows keep their codes.
            dictionary, counts = numbers.blank_placeholders(array.dictionary)
            blanked = pa.DictionaryArray.from_arrays(array.indices, dictionary)
            if counts:
                counts = _row_counts(array.indices, array.dictionary, dictionary)
        else:
            blanked, counts = numbers.blank_placeholders(array)
        batch.texts[plan.name] = blanked
        self._count_placeholders(plan.name, counts)

    def _count_placeholders(self, name: str, counts: dict[str, int]) -> None:
        if not counts:
            return
        total = self.placeholders.setdefault(name, {})
        for spelling, count in counts.items():
            total[spelling] = total.get(spelling, 0) + count

    def _first_plans(self, kinds: dict[str, str]) -> None:
        """Plans for columns seen for the first time, from the kind their storage suggests."""
        for name, kind in kinds.items():
            if name not in self.plans:
                self.plans[name] = ColumnPlan(name, TEXT_NUMBER if kind == TEXT else kind)


# ---------------------------------------------------------------- Parquet


class _ParquetReader(TableReader):
    def __init__(self, path: Path, decimal: str | None, name: str):
        import pyarrow.parquet as pq

        schema = _parquet_schema(path)
        super().__init__(name, "parquet", list(schema.names), decimal or ".")
        self.path = path
        self._schema = schema
        try:
            self._file = pq.ParquetFile(path)
            metadata = self._file.metadata
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"{path} is not a readable Parquet file ({_first_line(exc)})") from None
        self.n_rows = metadata.num_rows
        self._group_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        self._decimal_given = decimal is not None

    def _batches(self, columns, raw, part) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        self._first_plans({name: _arrow_kind(self._schema.field(name).type) for name in columns})
        text = [name for name in columns if self.plans[name].kind in (TEXT, TEXT_NUMBER)]
        groups = range(len(self._group_rows)) if part is None else _contiguous_share(self._group_rows, *part)
        starts = np.concatenate([[0], np.cumsum(self._group_rows)]).astype(np.int64)
        try:
            # Text columns stay dictionary-encoded where the file stores them so: a
            # column of a few levels is then read as codes, not as millions of strings.
            reader = pq.ParquetFile(self.path, read_dictionary=text)
            for group in groups:
                start = int(starts[group])
                for record_batch in reader.iter_batches(batch_size=BATCH_ROWS, row_groups=[group],
                                                        columns=columns + raw, use_threads=True):
                    if start == 0 and not self._decimal_given:
                        self._learn_decimal(record_batch, text)
                    arrays = dict(zip(record_batch.schema.names, record_batch.columns))
                    yield self._batch(start, record_batch.num_rows, arrays, raw)
                    start += record_batch.num_rows
        except (InputError, PlanChanged):
            raise
        except Exception as exc:
            raise InputError(f"{self.path} is not a readable Parquet file ({_first_line(exc)})") from None

    def _learn_decimal(self, record_batch, text: list[str]) -> None:
        """The decimal separator the first text cells write (as reading the whole file does)."""
        cells: list[str] = []
        for name in text:
            cells += _decoded(record_batch.column(name)).slice(0, 50).drop_null().to_pylist()
        self.decimal = numbers.detect_decimal(cells) or "."
        self._decimal_given = True


def array_table(array: np.ndarray) -> pd.DataFrame:
    """A 2-D array of numbers as a table with columns ``x0``, ``x1``, ..."""
    if array.ndim != 2:
        raise InputError(f"an array to segment must have 2 dimensions (rows, columns), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"an array to segment must hold numbers, got dtype {array.dtype}")
    return pd.DataFrame(array, columns=[f"x{j}" for j in range(array.shape[1])])


def _contiguous_share(sizes: Sequence[int], rank: int, n_parts: int) -> range:
    """The groups of part ``rank`` when ``sizes`` are cut into ``n_parts`` runs of about
    equal rows (a part may be empty when there are fewer groups than parts)."""
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    total = bounds[-1]
    cut = [int(np.searchsorted(bounds, total * p / n_parts, side="left")) for p in range(n_parts + 1)]
    cut[-1] = len(sizes)
    return range(min(cut[rank], len(sizes)), min(cut[rank + 1], len(sizes)))


def _arrow_kind(arrow_type) -> str:
    import pyarrow as pa

    if (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
            or pa.types.is_decimal(arrow_type) or pa.types.is_null(arrow_type)):
        return NUMBER
    if pa.types.is_dictionary(arrow_type):
        return _arrow_kind(arrow_type.value_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return TEXT
    return OTHER


# ---------------------------------------------------------------- CSV


_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error")


class _CsvReader(TableReader):
    def __init__(self, path: Path, decimal: str | None, name: str):
        layout = _csv_layout(path)
        super().__init__(name, "csv", layout.columns, decimal or layout.decimal or ".")
        self.path = path
        self.delimiter = layout.delimiter
        self._layout = layout
        self._encoding = layout.encoding
        self._newlines_in_values = False
        self._booleans: set[str] = set()  # number columns written true/false
        self._block_rows: list[int] | None = None  # rows per block, once a pass has read them all
        self._block_bytes = int(min(CSV_BLOCK_BYTES, max(CSV_MIN_BLOCK_BYTES, path.stat().st_size // 64)))

    def _options(self, columns, raw, types):
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(
            encoding=self._encoding, column_names=self._layout.columns,
            skip_rows=_header_rows(self.path, self._encoding), block_size=self._block_bytes,
        )
        parse = pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=self._newlines_in_values)
        # Only empty cells are null to the reader: placeholders stay text, so that they
        # are counted by spelling.
        convert = pacsv.ConvertOptions(
            include_columns=columns + raw, column_types=types, null_values=[""], strings_can_be_null=True,
            decimal_point=self.decimal,
        )
        return read, parse, convert

    def _learn_kinds(self, columns) -> None:
        """Plans for new columns from the types pyarrow infers from the first block."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        new = [name for name in columns if name not in self.plans]
        if not new:
            return
        read, parse, convert = self._options(new, [], {})
        try:
            schema = pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert).schema
        except pa.ArrowInvalid as exc:
            self._on_error(exc)
            return self._learn_kinds(columns)
        kinds = {}
        for name in new:
            arrow_type = schema.field(name).type
            if pa.types.is_boolean(arrow_type):
                self._booleans.add(name)
            numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type)
            kinds[name] = NUMBER if numeric else TEXT
        self._first_plans(kinds)

    def _batches(self, columns, raw, part) -> Iterator[Batch]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self._learn_kinds(columns)
        types = {name: pa.string() for name in raw}
        for name in columns:
            if self.plans[name].kind != NUMBER:
                types[name] = pa.string()
            else:
                types[name] = pa.bool_() if name in self._booleans else pa.float64()
        read, parse, convert = self._options(columns, raw, types)
        start, index, block_rows = 0, 0, []
        # A share is a contiguous run of blocks once a pass has counted them, blocks in
        # turn before (block boundaries depend only on the bytes, so every pass agrees).
        share = None
        if part is not None and self._block_rows is not None:
            share = set(_contiguous_share(self._block_rows, *part))
        try:
            reader = pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert)
            for record_batch in reader:
                n_rows = record_batch.num_rows
                mine = index in share if share is not None else (part is None or index % part[1] == part[0])
                if mine:
                    arrays = dict(zip(record_batch.schema.names, record_batch.columns))
                    yield self._batch(start, n_rows, arrays, raw)
                block_rows.append(n_rows)
                start += n_rows
                index += 1
        except pa.ArrowInvalid as exc:
            self._on_error(exc)
            raise PlanChanged(str(exc)) from None
        self.n_rows = start
        self._block_rows = block_rows
        if start == 0:
            raise InputError(f"{self.path} has a header but no data rows")

    def _on_error(self, exc: Exception) -> None:
        """Widen the plans for an error pyarrow raised, or raise the user's error."""
        message = str(exc)
        conversion = _CONVERSION_ERROR.search(message)
        if conversion is not None:
            name = self._layout.columns[int(conversion.group(1))]
            if name in self.plans and self.plans[name].kind == NUMBER:
                # Numbers until this block: the column is read as text from the start.
                self.plans[name] = ColumnPlan(name, TEXT_NUMBER)
                self._booleans.discard(name)
                return
        if "UTF8" in message and self._encoding == "utf8":
            self._encoding = "latin1"  # Excel exports are often Latin-1 beyond their first lines
            return
        if ("parse error" in message or "Expected" in message) and not self._newlines_in_values:
            self._newlines_in_values = True  # a quoted value may hold a line break
            return
        if "parse error" in message or "Expected" in message:
            raise _csv_error(self.path, self._layout, exc) from None
        raise InputError(f"{self.path} could not be read as a table: {_first_line(exc)}") from None


# ---------------------------------------------------------------- DataFrame


class _FrameReader(TableReader):
    def __init__(self, frame: pd.DataFrame, decimal: str, name: str):
        columns = [str(c) for c in frame.columns]
        frame = frame.reset_index(drop=True).set_axis(columns, axis=1)
        super().__init__(name, "csv", columns, decimal)
        self.n_rows = len(frame)
        self._frame = frame
        self._arrays: dict[str, object] = {}

    def check_columns(self, wanted) -> None:
        duplicated = self._frame.columns[self._frame.columns.duplicated()]
        if len(duplicated):
            name = duplicated[0]
            places = [str(p) for p, other in enumerate(self._frame.columns, start=1) if other == name]
            raise InputError(
                f"{self.name} has more than one column named {name!r} (columns {', '.join(places[:-1])} "
                f"and {places[-1]}); rename all but one"
            )
        super().check_columns(wanted)

    def _column(self, name: str):
        """The column as an arrow array (numbers as float64), converted once."""
        if name not in self._arrays:
            self._arrays[name] = _frame_column(self._frame[name])
        return self._arrays[name]

    def _raw_column(self, name: str):
        """The column as arrow keeps it: an ID of integers stays integers."""
        import pyarrow as pa

        series = self._frame[name]
        try:
            return pa.Array.from_pandas(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array(series.astype(str).to_numpy(dtype=object), type=pa.string())

    def _batches(self, columns, raw, part) -> Iterator[Batch]:
        arrays = {name: self._column(name) for name in columns}
        arrays.update({name: self._raw_column(name) for name in raw})
        self._first_plans({name: _frame_kind(arrays[name]) for name in columns})
        starts = range(0, max(self.n_rows, 1), BATCH_ROWS)
        if part is not None:
            starts = [starts[i] for i in _contiguous_share([BATCH_ROWS] * len(starts), *part)]
        for start in starts:
            stop = min(start + BATCH_ROWS, self.n_rows)
            sliced = {name: array.slice(start, stop - start) for name, array in arrays.items()}
            yield self._batch(start, stop - start, sliced, raw)


def _frame_column(series: pd.Series):
    """A DataFrame column as arrow: numbers and booleans as float64, text as strings,
    anything else (dates, Python objects) as it converts."""
    import pyarrow as pa

    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return pa.array(series.to_numpy(dtype=np.float64, na_value=np.nan), type=pa.float64())
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(series) \
            or pd.api.types.is_string_dtype(series):
        values = series.astype(object).to_numpy()
        try:
            return pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Python objects other than strings: their text, missing values kept missing.
            missing = pd.isna(series).to_numpy()
            text = np.where(missing, None, series.astype(str).to_numpy(dtype=object))
            return pa.array(text, type=pa.string())
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(series.astype(str).to_numpy(dtype=object), type=pa.string())


def _frame_kind(array) -> str:
    return _arrow_kind(array.type)


# ---------------------------------------------------------------- helpers


def _float64(array) -> np.ndarray:
    """A numeric (or null) arrow array as float64, nulls as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not pa.types.is_float64(array.type):
        array = pc.cast(array, pa.float64())
    return array.to_numpy(zero_copy_only=False)


def _decoded(array):
    """A dictionary array as plain strings (other arrays as they are)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.dictionary_decode() if pa.types.is_dictionary(array.type) else array


def _row_counts(indices, dictionary, blanked) -> dict[str, int]:
    """Placeholder counts over the rows of a dictionary array, not over its dictionary
    (``blanked``: the dictionary with its placeholders as nulls)."""
    import pyarrow.compute as pc

    spellings = pc.utf8_trim_whitespace(dictionary)
    is_placeholder = blanked.is_null().to_numpy(zero_copy_only=False)
    counts: dict[str, int] = {}
    for item in pc.value_counts(indices.drop_null()).to_pylist():
        entry = int(item["values"])
        spelling = spellings[entry].as_py()
        if is_placeholder[entry] and spelling:
            counts[spelling] = counts.get(spelling, 0) + int(item["counts"])
    return counts


def table_rows(path: str | os.PathLike) -> int | None:
    """Rows of a Parquet file from its metadata (None for CSV: known after reading)."""
    reader = TableReader.open(path)
    return reader.n_rows
