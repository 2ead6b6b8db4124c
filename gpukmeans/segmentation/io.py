"""Reading customer tables (CSV or Parquet) and writing results atomically.

Reading goes through pyarrow: it is several times faster than pandas' own CSV
parser on wide numeric files and, unlike pandas, it refuses rows with too few
fields instead of silently padding them with missing values. Every failure a user
can cause becomes an :class:`~gpukmeans.segmentation.errors.InputError` whose
message names the file, and where it can, the column and the line. Two columns
with the same name are such a failure: which one a name means would be a guess.

Numbers are read as people write them (see :mod:`~gpukmeans.segmentation.numbers`):
a column of text whose cells are all numbers in one format (``$1,200.50``,
``3.400,50``, ``12%``) or missing (``N/A``, ``-``, ``?``) becomes a column of
numbers, and every placeholder a missing value, counted by spelling. A CSV file's
decimal separator is detected from its first lines (or given): it decides cells
that read two ways, such as ``1.234``.

Writing never leaves a half-written file behind: each file is written to a
temporary name in the same folder and moved into place with :func:`os.replace`,
and an output folder is assembled under a temporary name beside its final place
and renamed only once everything in it has been written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import numbers
from .errors import InputError

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024
_MAX_HEAD_BYTES = 64 * 1024 * 1024
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_DELIMITERS = ",;\t|"


@dataclass
class Table:
    """A table read from disk, with what was learned while reading it.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows, restricted to the requested columns.
    format : {"csv", "parquet"}
        The file's format; results are written back in the same one.
    delimiter : str or None
        The CSV delimiter that was detected (None for Parquet).
    skipped_lines : list of int
        1-based line numbers of malformed CSV rows that were skipped
        (only with ``bad_lines="skip"``).
    decimal : {".", ","}
        The decimal separator preferred for cells that read two ways.
    number_formats : dict of str to NumberFormat
        Columns of text read as numbers, other than plain ones (``-1234.5``):
        thousands separators, decimal commas, currency, percent.
    placeholders : dict of str to dict of str to int
        Per column, how many cells held each placeholder (``{"N/A": 3}``).
    """

    frame: pd.DataFrame
    format: str
    delimiter: str | None = None
    skipped_lines: list[int] = field(default_factory=list)
    decimal: str = "."
    number_formats: dict[str, numbers.NumberFormat] = field(default_factory=dict)
    placeholders: dict[str, dict[str, int]] = field(default_factory=dict)


def table_format(path: str | os.PathLike) -> str:
    """Return ``"parquet"`` or ``"csv"`` for ``path``, by suffix, else by content."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    with open(path, "rb") as fh:
        return "parquet" if fh.read(4) == _PARQUET_MAGIC else "csv"


def read_columns(path: str | os.PathLike) -> list[str]:
    """Return the column names of a CSV or Parquet file without reading its rows."""
    path = _existing_file(path)
    if table_format(path) == "parquet":
        return list(_parquet_schema(path).names)
    return _csv_layout(path).columns


def read_table(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    *,
    string_columns: Sequence[str] = (),
    bad_lines: str = "error",
    decimal: str | None = None,
) -> Table:
    """Read a CSV (delimiter detected) or Parquet file.

    Parameters
    ----------
    path : path-like
        The file. Parquet is recognised by its suffix or its magic bytes.
    columns : sequence of str, optional
        Read only these columns (all by default). A name that is not in the
        file is an error that lists the columns that are.
    string_columns : sequence of str, default=()
        Columns to keep as text (an ID such as ``0001`` must not become ``1``).
    bad_lines : {"error", "skip"}, default="error"
        What to do with a CSV row whose number of fields differs from the header's.
    decimal : {".", ","}, optional
        The decimal separator of cells that read two ways (``1.234``); detected
        from the file by default, ``"."`` when it gives no sign either way.

    Returns
    -------
    Table

    Raises
    ------
    InputError
        If the file is missing, empty, not a table, has two columns of the same
        name, lacks a column, or has no rows.
    """
    path = _existing_file(path)
    if bad_lines not in ("error", "skip"):
        raise ValueError(f"bad_lines must be 'error' or 'skip', got {bad_lines!r}")
    check_decimal(decimal)
    if table_format(path) == "parquet":
        table = _read_parquet(path, columns, string_columns, decimal)
    else:
        table = _read_csv(path, columns, string_columns, bad_lines, decimal)
    if len(table.frame) == 0:
        raise InputError(f"{path} has a header but no data rows")
    return table


def check_decimal(decimal: str | None) -> None:
    """Refuse a decimal separator other than ``"."`` or ``","`` (None means detect)."""
    if decimal is not None and decimal not in numbers.DECIMAL_SEPARATORS:
        raise InputError(f"the decimal separator must be '.' or ',', got {decimal!r}")


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a table file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty")
    return path


def _check_unique_names(path: Path, names: Sequence[str]) -> None:
    """Refuse a header that names two columns alike, naming the name and where it is."""
    first_seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name not in first_seen:
            first_seen[name] = position
            continue
        places = [str(p) for p, other in enumerate(names, start=1) if other == name]
        where = f"columns {', '.join(places[:-1])} and {places[-1]}"
        if name == "":
            raise InputError(f"{path} has more than one column without a name ({where}); name them")
        raise InputError(f"{path} has more than one column named {name!r} ({where}); rename all but one")


def _check_columns(path: Path, available: Sequence[str], wanted: Sequence[str] | None) -> None:
    if wanted is None:
        return
    present = set(available)
    missing = [c for c in wanted if c not in present]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise InputError(
            f"{noun} {names} not found in {path}; its columns are: {', '.join(available)}"
        )


# ---------------------------------------------------------------- Parquet


def _parquet_schema(path: Path):
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path} is not a readable Parquet file ({_first_line(exc)})") from None
    _check_unique_names(path, schema.names)
    return schema


def _read_parquet(
    path: Path, columns: Sequence[str] | None, string_columns: Sequence[str], decimal: str | None
) -> Table:
    import pyarrow.parquet as pq

    _check_columns(path, _parquet_schema(path).names, columns)
    try:
        arrow = pq.read_table(path, columns=list(columns) if columns is not None else None)
    except Exception as exc:
        raise InputError(f"{path} is not a readable Parquet file ({_first_line(exc)})") from None
    if decimal is None:
        decimal = _sample_decimal(arrow, string_columns) or "."
    arrow, formats, placeholders = read_text_numbers(arrow, decimal, keep_text=string_columns)
    return Table(frame=_to_pandas(arrow), format="parquet", decimal=decimal, number_formats=formats,
                 placeholders=placeholders)


def _sample_decimal(arrow, keep_text: Sequence[str]) -> str | None:
    """The decimal separator that the first text cells of every column write, if any."""
    import pyarrow as pa

    cells: list[str] = []
    for name, column in zip(arrow.column_names, arrow.columns):
        if name not in keep_text and pa.types.is_string(column.type):
            cells += column.slice(0, 50).drop_null().to_pylist()
    return numbers.detect_decimal(cells)


# ---------------------------------------------------------------- numbers in text


def read_text_numbers(arrow, decimal: str, *, keep_text: Sequence[str] = ()):
    """Turn every text column of ``arrow`` that holds numbers into float64.

    Parameters
    ----------
    arrow : pyarrow.Table
    decimal : {".", ","}
        The preferred decimal separator (see :func:`numbers.parse_numbers`).
    keep_text : sequence of str
        Columns to leave as they are (identifiers).

    Returns
    -------
    arrow : pyarrow.Table
        Number columns as float64 (placeholders as NaN); text columns with their
        placeholders as nulls.
    formats : dict of str to NumberFormat
        The columns read from text whose format is not plain.
    placeholders : dict of str to dict of str to int
    """
    import pyarrow as pa

    keep = set(keep_text)
    formats: dict[str, numbers.NumberFormat] = {}
    placeholders: dict[str, dict[str, int]] = {}
    numeric: list[str] = []
    for i, name in enumerate(arrow.column_names):
        column = arrow.column(i)
        if name in keep or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        converted, number_format, counts = _text_column(column, decimal)
        arrow = arrow.set_column(i, name, converted)
        if number_format is not None:
            numeric.append(name)
            if not number_format.is_plain:
                formats[name] = number_format
        if counts:
            placeholders[name] = counts
    return _as_numbers_to_pandas(arrow, numeric), formats, placeholders


def _as_numbers_to_pandas(arrow, names: list[str]):
    """Tell the pandas metadata of a Parquet file written by pandas that ``names`` are
    numbers now; it would otherwise turn them back into strings."""
    metadata = arrow.schema.metadata or {}
    if not names or b"pandas" not in metadata:
        return arrow
    pandas_metadata = json.loads(metadata[b"pandas"])
    retyped = set(names)
    for column in pandas_metadata.get("columns", []):
        if column.get("field_name") in retyped:
            column.update(pandas_type="float64", numpy_type="float64", metadata=None)
    return arrow.replace_schema_metadata({**metadata, b"pandas": json.dumps(pandas_metadata).encode()})


def frame_text_numbers(frame: pd.DataFrame, decimal: str, *, keep_text: Sequence[str] = ()):
    """:func:`read_text_numbers` for a table already in memory: its columns of strings.

    Returns the new frame (``frame`` itself is not changed), the formats and the
    placeholder counts.
    """
    import pyarrow as pa

    keep = set(keep_text)
    formats: dict[str, numbers.NumberFormat] = {}
    placeholders: dict[str, dict[str, int]] = {}
    frame = frame.copy(deep=False)
    for name in frame.columns:
        series = frame[name]
        if name in keep or not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        try:
            texts = pa.array(series.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue  # a column of Python objects other than strings is left to the caller
        converted, number_format, counts = _text_column(texts, decimal)
        if number_format is not None:
            frame[name] = converted.to_numpy(zero_copy_only=False)
            if not number_format.is_plain:
                formats[name] = number_format
        elif counts:
            frame[name] = pd.Series(converted.to_numpy(zero_copy_only=False), index=frame.index, dtype=series.dtype)
        if counts:
            placeholders[name] = counts
    return frame, formats, placeholders


def _text_column(texts, decimal: str):
    """One column of text: as float64 with its format if it holds numbers, else as text
    with placeholders as nulls (format None); and the placeholder counts."""
    import pyarrow as pa

    decimals = (decimal, *(d for d in numbers.DECIMAL_SEPARATORS if d != decimal))
    parsed = numbers.parse_numbers(texts, decimals)
    if parsed is None:
        text, counts = numbers.blank_placeholders(texts)
        return text, None, counts
    return pa.array(parsed.values), parsed.format, parsed.placeholders


# ---------------------------------------------------------------- CSV


@dataclass
class _CsvLayout:
    columns: list[str]
    delimiter: str
    encoding: str
    decimal: str | None = None


def _csv_layout(path: Path) -> _CsvLayout:
    """Detect encoding and delimiter from the start of the file and read the header."""
    head = _head(path)
    if b"\x00" in head[:_SNIFF_BYTES]:
        raise InputError(f"{path} is not a table: it holds binary data, not CSV or Parquet")
    try:
        text, encoding = head.decode("utf-8-sig"), "utf8"
    except UnicodeDecodeError:
        # Excel exports (the UCI Online Retail CSVs among them) are often Latin-1.
        text, encoding = head.decode("latin-1"), "latin1"
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path} is empty")
    opening = lines[0].lstrip()[:1]
    if opening in ("{", "["):
        raise InputError(f"{path} is not a table: it looks like JSON, not CSV or Parquet")
    if opening == "<":
        raise InputError(f"{path} is not a table: it looks like HTML or XML, not CSV or Parquet")
    delimiter = _sniff_delimiter(lines[:50])
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    columns = [name.strip() for name in header]
    if not any(columns):
        raise InputError(f"{path} is not a table: its first line has no column names")
    _check_unique_names(path, columns)
    cells = [cell for row in csv.reader(lines[1:50], delimiter=delimiter) for cell in row]
    return _CsvLayout(columns=columns, delimiter=delimiter, encoding=encoding,
                      decimal=numbers.detect_decimal(cells))


def _head(path: Path) -> bytes:
    """The file's first complete lines: 64 KiB of them, and at least the header and one
    more line however wide the table (a header of 10,000 names is longer than 64 KiB),
    up to :data:`_MAX_HEAD_BYTES`."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
        if b"\x00" in head:
            return head
        chunk = _SNIFF_BYTES
        while len(_LINE_BREAK.split(head.lstrip(), 2)) < 3 and len(head) < _MAX_HEAD_BYTES:
            chunk *= 2
            more = fh.read(chunk)
            if not more:
                return head
            head += more
        at_end = not fh.read(1)
    # Cut at the last complete line so a multi-byte character is never split.
    cut = max(head.rfind(b"\n"), head.rfind(b"\r"))
    return head if at_end or cut <= 0 else head[:cut]


def _sniff_delimiter(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    # The sniffer gives up on some files; fall back to the candidate that splits
    # the header into the most fields, consistently on every sampled line.
    best, best_fields = ",", 1
    for candidate in _DELIMITERS:
        counts = {len(next(csv.reader([line], delimiter=candidate))) for line in lines}
        if len(counts) == 1 and (n := counts.pop()) > best_fields:
            best, best_fields = candidate, n
    return best


def _read_csv(
    path: Path, columns: Sequence[str] | None, string_columns: Sequence[str], bad_lines: str,
    decimal: str | None,
) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    layout = _csv_layout(path)
    _check_columns(path, layout.columns, columns)
    decimal = decimal or layout.decimal or "."
    skipped: list[str] = []

    def skip_bad_row(row) -> str:
        skipped.append(row.text)
        return "skip"

    # A Python invalid_row_handler is owned by Arrow's reader, and with threads the last
    # reference to the reader (hence to the handler) can be dropped by a pool worker after
    # read_csv has returned. That worker then has to take the GIL; if the interpreter is
    # already finalizing (a CLI that stops right after reading, e.g. "no numeric
    # columns"), CPython ends the worker with pthread_exit, whose unwinding through the
    # destructor calls std::terminate: "terminate called without an active exception",
    # exit code 134. So: no Python handler when bad rows are errors (Arrow raises on them
    # itself), and when they are skipped, the handler is used on this thread only.
    skipping = bad_lines == "skip"

    def attempt(encoding: str, newlines_in_values: bool):
        read = pacsv.ReadOptions(
            encoding=encoding, column_names=layout.columns, skip_rows=_header_rows(path, encoding),
            use_threads=not skipping,
        )
        parse = pacsv.ParseOptions(
            delimiter=layout.delimiter,
            newlines_in_values=newlines_in_values,
            invalid_row_handler=skip_bad_row if skipping else None,
        )
        # Only empty cells are null to the reader: placeholders stay text, so that
        # read_text_numbers counts them by spelling.
        convert = pacsv.ConvertOptions(
            include_columns=list(columns) if columns is not None else None,
            column_types={c: pa.string() for c in string_columns},
            null_values=[""],
            strings_can_be_null=True,
            decimal_point=decimal,
        )
        return pacsv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)

    encoding = layout.encoding
    try:
        arrow = attempt(encoding, newlines_in_values=False)
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "UTF8" in message and encoding == "utf8":
            encoding, newlines_in_values = "latin1", False
        elif "parse error" in message:
            # A quoted value may hold a line break; only then is the slower parse needed.
            newlines_in_values = True
        else:
            raise InputError(f"{path} could not be read as a table: {_first_line(exc)}") from None
        skipped.clear()
        try:
            arrow = attempt(encoding, newlines_in_values=newlines_in_values)
        except pa.ArrowInvalid as retry_exc:
            raise _csv_error(path, layout, retry_exc) from None
    if any(pa.types.is_binary(t) for t in arrow.schema.types) and encoding == "utf8":
        skipped.clear()
        arrow = attempt("latin1", newlines_in_values=False)
    lines = _line_numbers(path, layout, skipped) if skipped else []
    arrow, formats, placeholders = read_text_numbers(arrow, decimal, keep_text=string_columns)
    return Table(frame=_to_pandas(arrow), format="csv", delimiter=layout.delimiter, skipped_lines=lines,
                 decimal=decimal, number_formats=formats, placeholders=placeholders)


def _header_rows(path: Path, encoding: str) -> int:
    """Lines before the first data row: blank lines, then the header itself."""
    with open(path, encoding="latin-1" if encoding == "latin1" else "utf-8-sig", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                return number
    return 1


def _csv_error(path: Path, layout: _CsvLayout, exc: Exception) -> InputError:
    """Turn a pyarrow parse error into one line that names the offending line."""
    expected = len(layout.columns)
    line_no, fields = _first_malformed_line(path, layout)
    if line_no is not None:
        return InputError(
            f"{path} is not a well-formed table: line {line_no} has {fields} "
            f"field{'s' if fields != 1 else ''} where the header has {expected}"
        )
    return InputError(f"{path} is not a well-formed table: {_first_line(exc)}")


def _first_malformed_line(path: Path, layout: _CsvLayout) -> tuple[int | None, int]:
    encoding = "latin-1" if layout.encoding == "latin1" else "utf-8-sig"
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=layout.delimiter)
        expected = len(layout.columns)
        for row in reader:
            if row and any(cell.strip() for cell in row) and len(row) != expected:
                return reader.line_num, len(row)
    return None, 0


def _line_numbers(path: Path, layout: _CsvLayout, texts: list[str]) -> list[int]:
    """1-based line numbers of the given raw row texts (for reporting skipped rows)."""
    wanted = set(texts)
    found: list[int] = []
    encoding = "latin-1" if layout.encoding == "latin1" else "utf-8-sig"
    with open(path, encoding=encoding, errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if line.rstrip("\r\n") in wanted:
                found.append(number)
    return found


def _to_pandas(arrow) -> pd.DataFrame:
    import pyarrow as pa

    frame = arrow.to_pandas()
    # A column that is empty throughout comes back as Python None objects; make it
    # numeric missing values so that it is reported as missing, not as text.
    for name, dtype in zip(arrow.schema.names, arrow.schema.types):
        if pa.types.is_null(dtype):
            frame[name] = np.full(len(frame), np.nan)
    return frame


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table(frame: pd.DataFrame, path: str | os.PathLike, format: str = "csv") -> Path:
    """Write ``frame`` as CSV or Parquet to ``path`` atomically and return the path."""
    import pyarrow as pa

    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        if format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(arrow, tmp)
        elif format == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(arrow, tmp)
        else:
            raise ValueError(f"format must be 'csv' or 'parquet', got {format!r}")
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_dir(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an output folder that would overwrite something, before any work.

    Raises
    ------
    InputError
        If ``out`` is a file, or a non-empty folder and ``force`` is false.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise InputError(f"output path {out} exists and is not a folder")
        if any(out.iterdir()) and not force:
            raise InputError(f"output folder {out} is not empty; use --force to replace it")
    return out


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``out`` only if the block succeeds.

    The staging folder is created beside ``out`` (same file system, so the final
    rename is atomic). On failure it is removed, together with any parent folders
    this function had to create, so nothing is left behind. With ``force`` an
    existing non-empty ``out`` is replaced.
    """
    out = check_output_dir(out, force=force).absolute()
    created = _missing_ancestors(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
        old = None
        if out.exists():
            if any(out.iterdir()):
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
                os.replace(out, old / out.name)
            else:
                out.rmdir()
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _missing_ancestors(folder: Path) -> list[Path]:
    """Folders from ``folder`` upwards that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing
