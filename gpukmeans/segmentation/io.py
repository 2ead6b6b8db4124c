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

Writing never leaves a half-written file behind and never destroys what it was
not asked to replace: each file is written to a temporary name in the same folder
and moved into place with :func:`os.replace`, and an output folder is assembled
under a temporary name beside its final place and renamed only once everything in
it has been written. Output paths are checked before any work (see
:func:`check_output_file` and :func:`check_output_dir`) and again at the final
rename.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from . import numbers
from .errors import InputError, OutputError

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
#
# Every temporary name made beside an output NAME starts with ".NAME." and carries
# the ID of the process that made it:
#
#     .NAME.PID-XXXXXXXX.tmp        a file being written (atomic_path)
#     .NAME.partial-PID-XXXXXXXX    a folder being assembled (staged_output_dir)
#     .NAME.old-PID-XXXXXXXX        the folder being replaced, set aside for a moment
#     .NAME.probe-PID-XXXXXXXX      the check that the place is writable
#
# A run that is killed cannot remove them. The next run into the same place removes
# those whose process is gone, and leaves those of a run still going.


def _temporary_prefix(name: str, kind: str | None = None) -> str:
    return f".{name}.{kind}-{os.getpid()}-" if kind else f".{name}.{os.getpid()}-"


def _leftover_pattern(name: str) -> re.Pattern:
    # tempfile's random part is made of lower-case letters, digits and "_".
    folder = rf"(?P<kind>partial|old|probe)-(?P<pid>\d+)-[a-z0-9_]+"
    file = rf"(?P<file_pid>\d+)-[a-z0-9_]+\.tmp"
    return re.compile(rf"\.{re.escape(name)}\.(?:{folder}|{file})")


def _remove_leftovers(folder: Path, name: str) -> None:
    """Remove the temporary names of runs into ``folder / name`` whose process is gone.

    A run killed between setting the old output aside and moving the new one into
    place leaves nothing at ``name`` and the old output at ``.NAME.old-*``: that one
    is put back, not removed. Removal is best effort; what cannot be removed stays
    for a later run. A process ID means something on this machine only: runs on two
    machines into one shared folder may remove each other's staging, which makes the
    other run fail at its final rename, never lose an output.
    """
    if os.name != "posix":  # os.kill(pid, 0) asks whether a process exists only on POSIX
        return
    pattern = _leftover_pattern(name)
    try:
        with os.scandir(folder) as found:
            entries = list(found)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _process_alive(int(match["pid"] or match["file_pid"])):
            continue
        with contextlib.suppress(OSError):
            is_folder = entry.is_dir(follow_symlinks=False)
            if match["kind"] == "old" and is_folder and not os.path.lexists(folder / name):
                os.rename(entry.path, folder / name)
            elif is_folder:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OverflowError, OSError):
        return False
    return True


def _existing_kind(path: Path) -> str | None:
    """What is at ``path`` itself (a link is not followed), in words; None if nothing."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file where a folder on the way should be
        return None
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _unreplaceable(path: Path, kind: str) -> str:
    """Why ``path`` is never replaced, whatever the options."""
    if kind == "symbolic link":
        # Replacing the link would turn the user's link into a plain file and leave
        # what it points to as it was; writing through it would write somewhere
        # other than the path given, possibly onto an input. So neither is done.
        return f"output {path} is a symbolic link; it is never replaced, even with --force (give the path it points to)"
    if kind == "folder":
        return f"output {path} is a folder, not a file; it is never replaced, even with --force"
    return f"output {path} is a {kind}, not a regular file; it is never replaced, even with --force"


def _same_entry(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file or folder: through links, ``./``, hard links."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _refuse_inputs(out: Path, inputs: Mapping[str, str | os.PathLike | None] | None, *, folder: bool) -> None:
    """Refuse an output that is one of the run's inputs or, for a folder, holds one."""
    for label, given in (inputs or {}).items():
        if given is None or not os.path.exists(given):  # what is not there cannot be lost
            continue
        if _same_entry(out, given):
            raise InputError(
                f"output {out} is the {label} {given}; an input is never replaced, even with --force "
                f"(choose another output path)"
            )
        if folder and any(_same_entry(out, above) for above in Path(os.path.realpath(given)).parents):
            raise InputError(
                f"output folder {out} holds the {label} {given}; replacing the folder would delete it, "
                f"even with --force (choose another output folder)"
            )


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else _first_line(exc)


def _write_failure(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"could not write {path}: {_reason(exc)}", exc.errno)


def _probe_writable(folder: Path, name: str, shown: Path) -> None:
    """Create and remove a folder in ``folder``: permission bits, read-only mounts,
    quotas and the like all answer the same way as they would at the end of a run."""
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=_temporary_prefix(name, "probe")))
    except OSError as exc:
        raise OutputError(f"cannot write {shown}: {folder} is not writable ({_reason(exc)})", exc.errno) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success.

    On any exception the temporary file is removed and ``path`` is untouched. The
    move re-checks ``path``: only a regular file is ever replaced, and with
    ``replace=False`` nothing is (a file that appeared at ``path`` in the meantime
    is left as it is, and the write fails with an
    :class:`~gpukmeans.segmentation.errors.InputError`). An :class:`OSError` while
    writing (a full disk, an I/O error) becomes an
    :class:`~gpukmeans.segmentation.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp")
    except OSError as exc:
        raise _write_failure(path, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600 files
        except OutputError:
            raise
        except OSError as exc:
            raise _write_failure(path, exc) from exc
        _move_file_into_place(tmp, path, replace=replace)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: errno values of a file system that has no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def _move_file_into_place(tmp: Path, path: Path, *, replace: bool) -> None:
    appeared = f"output file {path} appeared during the run; it is left as it is (use --force to replace it)"
    if replace:
        kind = _existing_kind(path)
        if kind not in (None, "file"):
            raise InputError(_unreplaceable(path, kind))
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise InputError(_unreplaceable(path, "folder")) from None
        except OSError as exc:
            raise _write_failure(path, exc) from exc
        return
    try:
        os.link(tmp, path)  # unlike a rename, a new link never replaces what is there
    except FileExistsError:
        raise InputError(appeared) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise _write_failure(path, exc) from exc
        # A file system without hard links: look, then rename (a narrow window remains).
        if os.path.lexists(path):
            raise InputError(appeared) from None
        try:
            os.replace(tmp, path)
        except OSError as replace_exc:
            raise _write_failure(path, replace_exc) from replace_exc
    else:
        tmp.unlink()


def write_table(frame: pd.DataFrame, path: str | os.PathLike, format: str = "csv", *, replace: bool = True) -> Path:
    """Write ``frame`` as CSV or Parquet to ``path`` atomically and return the path.

    With ``replace=False`` an existing ``path`` is never replaced (see :func:`atomic_path`).
    """
    import pyarrow as pa

    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path, replace=replace) as tmp:
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


def check_output_file(
    path: str | os.PathLike,
    *,
    force: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Refuse an output file that would destroy something, before any work.

    The rules:

    - an input (``inputs`` maps what it is, e.g. ``"input table"``, to its path) is
      never replaced, even with ``force``: the same file by any name counts, through
      symbolic links, ``./``, relative or absolute paths and hard links;
    - only a regular file is ever replaced, and only with ``force``; a folder, a
      symbolic link or a special file (FIFO, socket, device) never is;
    - the folder it goes into must exist (it is not created, so that a mistyped
      folder is an error rather than a new tree) and be writable.

    Temporary files left beside ``path`` by killed runs are removed. Write the file
    with ``replace=force`` (:func:`write_table`), so that a file that appears at
    ``path`` during the run is not replaced either without ``force``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        If one of the rules refuses ``path``.
    OutputError
        If its folder is not writable.
    """
    path = Path(path)
    _refuse_inputs(path, inputs, folder=False)
    kind = _existing_kind(path)
    if kind not in (None, "file"):
        raise InputError(_unreplaceable(path, kind))
    if kind == "file" and not force:
        raise InputError(f"output file {path} exists; use --force to replace it")
    parent = path.absolute().parent
    if not parent.exists():
        raise InputError(f"folder {path.parent} for output {path} does not exist")
    if not parent.is_dir():
        raise InputError(f"{path.parent} is a file, not a folder, so output {path} cannot go there")
    _remove_leftovers(parent, path.name)
    _probe_writable(parent, path.name, path)
    return path


@dataclass(frozen=True)
class OutputFolder:
    """An output folder as :func:`check_output_dir` found it before a run.

    Attributes
    ----------
    path : pathlib.Path
        Where it goes (absolute).
    force : bool
        Whether an earlier output of the same command may be replaced.
    own_files : tuple of str
        Paths relative to the folder of every file the command writes there.
    existed : bool
        Whether a folder was there at the check; a folder that appears later is
        never replaced.
    """

    path: Path
    force: bool
    own_files: tuple[str, ...]
    existed: bool


def check_output_dir(
    out: str | os.PathLike,
    *,
    force: bool = False,
    own_files: Sequence[str] = (),
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> OutputFolder:
    """Refuse an output folder that would destroy something, before any work.

    The rules, for what is at ``out``:

    - nothing, or an empty folder: fine (missing parent folders are created later);
    - a folder holding only files the command writes (``own_files``, relative
      paths such as ``"summary.json"`` or ``"segments/report.html"``): an earlier
      output, replaced only with ``force``;
    - a folder holding anything else (the message names one such entry), a file, a
      symbolic link or a special file: never replaced, even with ``force``;
    - a folder that is, or holds, one of ``inputs`` (what it is mapped to its path):
      never replaced, even with ``force``.

    The place must be writable: the nearest existing folder on the way is probed.
    Leftovers of killed runs into ``out`` are removed first.

    Returns an :class:`OutputFolder` to hand to :func:`staged_output_dir`, which checks
    again at the end of the run; raises :class:`InputError` when a rule refuses ``out``,
    :class:`OutputError` when the place is not writable.
    """
    given = Path(out)
    out = given.absolute()
    _remove_leftovers(out.parent, out.name)
    _refuse_inputs(given, inputs, folder=True)
    kind = _existing_kind(out)
    if kind == "symbolic link":
        raise InputError(_unreplaceable(given, kind))
    if kind not in (None, "folder"):
        raise InputError(f"output path {given} exists and is not a folder (it is a {kind}); it is never replaced")
    if kind == "folder":
        foreign = _first_foreign(out, own_files)
        if foreign is not None:
            raise InputError(
                f"output folder {given} holds {foreign!r}, which gpukmeans does not write there; "
                f"it is never replaced, even with --force (choose another folder)"
            )
        if not force and _holds_anything(out):
            raise InputError(f"output folder {given} is not empty; use --force to replace it")
    nearest = _nearest_existing(out.parent)
    if not nearest.is_dir():
        raise InputError(f"cannot create output folder {given}: {nearest} is a file, not a folder")
    _probe_writable(nearest, out.name, given)
    return OutputFolder(path=out, force=force, own_files=tuple(own_files), existed=kind == "folder")


def _first_foreign(folder: Path, own_files: Sequence[str]) -> str | None:
    """The first entry under ``folder`` (a relative path) that is not one of
    ``own_files`` or a folder on the way to one; None if there is none."""
    own = set(own_files)
    own_folders = {str(parent) for name in own for parent in Path(name).parents} - {"."}

    def visit(current: str, prefix: str) -> str | None:
        with os.scandir(current) as found:
            entries = sorted(found, key=lambda entry: entry.name)
        for entry in entries:
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False) and relative in own_folders:
                inner = visit(entry.path, relative + "/")
                if inner is not None:
                    return inner
            elif not (entry.is_file(follow_symlinks=False) and relative in own):
                return relative
        return None

    return visit(str(folder), "")


def _holds_anything(folder: Path) -> bool:
    with os.scandir(folder) as found:
        return next(found, None) is not None


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def staged_output_dir(
    out: str | os.PathLike | OutputFolder,
    *,
    force: bool = False,
    own_files: Sequence[str] = (),
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``out`` only if the block succeeds.

    ``out`` is an :class:`OutputFolder` from :func:`check_output_dir` at the start
    of the run, or a path, checked here (with ``force``, ``own_files`` and
    ``inputs``, as :func:`check_output_dir` describes). The staging folder is
    created beside ``out`` (same file system, so the final rename is atomic). On
    failure it is removed, together with any parent folders this function had to
    create, so nothing is left behind.

    The final move checks again and refuses, leaving what is there as it is, when a
    folder appeared at ``out`` that was not there at the check, when something other
    than a folder is there now, when an empty folder filled without ``force``, or
    when a folder to be replaced now holds something the command does not write.
    """
    target = out if isinstance(out, OutputFolder) else check_output_dir(
        out, force=force, own_files=own_files, inputs=inputs
    )
    out = target.path
    created = _missing_ancestors(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=_temporary_prefix(out.name, "partial")))
    except OSError as exc:
        _remove_folders(created)
        raise _write_failure(out, exc) from exc
    try:
        try:
            yield staging
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
        except OutputError as exc:
            # Name the file where it was going, not where it was being written.
            raise OutputError(str(exc).replace(str(staging), str(out)), exc.errno) from exc
        except OSError as exc:
            raise _write_failure(out, exc) from exc
        _move_folder_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_folders(created)
        raise


def _move_folder_into_place(staging: Path, target: OutputFolder) -> None:
    out = target.path
    left = "it is left as it is and nothing was written"
    kind = _existing_kind(out)
    if kind is None:
        _rename_folder(staging, out, left)
        return
    if kind != "folder":
        raise InputError(f"output {out} became a {kind} during the run; {left}")
    if not target.existed:
        raise InputError(f"output folder {out} appeared during the run; {left}")
    if not _holds_anything(out):
        _rename_folder(staging, out, left)  # a rename replaces an empty folder, and only that
        return
    if not target.force:
        raise InputError(f"output folder {out} filled during the run; {left} (use --force to replace it)")
    # Set the old output aside first: once it has a name only this run knows, what
    # is checked is what gets removed.
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=_temporary_prefix(out.name, "old")))
    try:
        os.rename(out, aside)  # onto the empty folder just made
    except OSError as exc:
        os.rmdir(aside)
        raise InputError(f"output folder {out} changed during the run; {left}") from exc
    try:
        foreign = _first_foreign(aside, target.own_files)
        if foreign is not None:
            raise InputError(f"output folder {out} changed during the run (it holds {foreign!r}); {left}")
        _rename_folder(staging, out, left)
    except BaseException:
        if not os.path.lexists(out):
            with contextlib.suppress(OSError):  # else the next run puts it back
                os.rename(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _rename_folder(staging: Path, out: Path, left: str) -> None:
    try:
        os.rename(staging, out)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise InputError(f"output {out} appeared or changed during the run; {left}") from None
        raise _write_failure(out, exc) from exc


def _missing_ancestors(folder: Path) -> list[Path]:
    """Folders from ``folder`` upwards that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove these folders, deepest first, where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
