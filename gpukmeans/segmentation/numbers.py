"""Numbers as people write them in tables: placeholders, separators, currencies, percents.

A column of text is a column of numbers when every cell is either missing (null,
empty, blank, or a placeholder such as ``N/A``, ``-`` or ``?``) or a number, and
all its numbers follow one format:

- one decimal separator, ``.`` or ``,``;
- at most one thousands separator (``,``, ``.``, ``'``, or a space of any width),
  always between groups of three digits (``1,234,567``; ``999`` needs none);
- at most one unit: a currency symbol or code before or after the number
  (``$1,200.50``, ``€ 3.400,50``, ``1 234 kr``), or ``%`` after it;
- a sign (``-``, ``+``, or the Unicode minus), or accounting parentheses for
  negatives (``(1,234)`` is -1234).

A percent keeps the number as written: ``12%`` is 12, and the column's unit is
``%``. A column whose cells follow no single format (text, mixed currencies, a
number beside a word) is not numeric at all: nothing in it is silently dropped.

Some cells read two ways: ``1.234`` is 1.234 with a decimal point or 1234 with
``.`` between thousands, ``1,234`` is 1234 or 1.234. The caller resolves them by
the order of decimal separators it prefers (:func:`detect_decimal` finds the
file's own): a column is read with the first separator under which all its cells
are numbers, so ``1.234`` is 1.234 unless the file writes decimal commas, while a
column such as ``3,5`` or ``1.234,50`` can only have decimal commas and is read so
whatever the preference.

Every function takes a column of text as a pyarrow string array (or anything
pyarrow turns into one: a list, a numpy object array, a pandas Series) and works
on the whole column at once, with pyarrow's compute kernels; they know nothing
of tables or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

#: Cells meaning "no value", compared after trimming and lower-casing. They include
#: every default null spelling of pyarrow's CSV reader and of pandas.read_csv.
PLACEHOLDERS = frozenset(
    {
        "", "-", "--", "---", "\u2013", "\u2014", "?", "??", ".", "na", "n/a", "n.a.", "#na", "#n/a",
        "#n/a n/a", "<na>", "null", "#null!", "none", "nil", "nan", "-nan", "1.#ind", "-1.#ind",
        "1.#qnan", "-1.#qnan", "#value!", "#div/0!",
    }
)

DECIMAL_SEPARATORS = (".", ",")

#: Currency signs and codes accepted as a column's unit, longest first (an
#: alternation takes the first that matches).
CURRENCIES = (
    "US$", "CA$", "AU$", "NZ$", "HK$", "R$", "USD", "EUR", "GBP", "JPY", "CNY", "INR", "CHF", "CAD",
    "AUD", "SEK", "NOK", "DKK", "PLN", "BRL", "ZAR", "kr", "zł", "$", "€", "£", "¥", "₹", "₩",
    "₽", "₺", "₪", "฿", "₫", "₴", "₦", "₱", "¢",
)

_SPACES = " \u00a0\u202f\u2009"  # space, no-break space, narrow no-break space, thin space
_THOUSANDS = (None, ",", ".", "'", " ")
_MINUS = ("-", "\u2212")


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "$.^()[]{}|*+?\\" else c for c in text)


_S = f"[{_SPACES}]*"
_UNIT = "|".join(_escape(c) for c in CURRENCIES)
#: A cell split into its parts; "core" holds the digits and separators. RE2 syntax.
_CELL = (
    f"^(?P<open>\\(?){_S}(?P<sign>[-+\u2212]?){_S}(?P<pre>(?:{_UNIT})?){_S}(?P<sign2>[-+\u2212]?){_S}"
    f"(?P<core>[.,]?[0-9](?:[0-9.,'{_SPACES}]*[0-9])?(?:[eE][-+]?[0-9]+)?)"
    f"{_S}(?P<post>(?:{_UNIT}|%)?){_S}(?P<close>\\)?)$"
)


def _core_pattern(decimal: str, thousands: str | None) -> str:
    """The digits of a number with this decimal separator and thousands separator."""
    point = _escape(decimal)
    if thousands is None:
        exponent = "(?:[eE][-+]?[0-9]+)?"
        return f"^(?:[0-9]+(?:{point}[0-9]+)?|{point}[0-9]+){exponent}$"
    group = f"[{_SPACES}]" if thousands == " " else _escape(thousands)
    return f"^(?:[0-9]{{1,3}}(?:{group}[0-9]{{3}})+|[0-9]+)(?:{point}[0-9]+)?$"


_STYLES = {
    decimal: [(thousands, _core_pattern(decimal, thousands)) for thousands in _THOUSANDS if thousands != decimal]
    for decimal in DECIMAL_SEPARATORS
}


@dataclass(frozen=True)
class NumberFormat:
    """How a column writes its numbers.

    Attributes
    ----------
    decimal : {".", ","}
    thousands : {",", ".", "'", " "} or None
        ``" "`` stands for any width of space.
    unit : str or None
        The currency sign or code, or ``"%"``; the numbers are as written (``12%`` is 12).
    parentheses : bool
        Whether negatives are written in parentheses.
    """

    decimal: str = "."
    thousands: str | None = None
    unit: str | None = None
    parentheses: bool = False

    @property
    def is_plain(self) -> bool:
        """True for numbers a CSV reader understands on its own (``-1234.5``)."""
        return self == NumberFormat()

    def to_dict(self) -> dict:
        return {"decimal": self.decimal, "thousands": self.thousands, "unit": self.unit,
                "parentheses": self.parentheses}


@dataclass
class ParsedNumbers:
    """A column of text read as numbers.

    Attributes
    ----------
    values : ndarray of shape (n,), float64
        NaN where a cell is missing or a placeholder.
    format : NumberFormat
    placeholders : dict of str to int
        How many cells held each placeholder, by its spelling (``{"N/A": 3, "-": 1}``);
        empty and blank cells are not counted here.
    """

    values: np.ndarray
    format: NumberFormat
    placeholders: dict[str, int] = field(default_factory=dict)


def as_text_array(texts):
    """``texts`` as one pyarrow string array (nulls kept)."""
    import pyarrow as pa

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        texts = pa.array(np.asarray(texts, dtype=object), type=pa.string(), from_pandas=True)
    if pa.types.is_large_string(texts.type) or pa.types.is_string_view(texts.type):
        texts = texts.cast(pa.string())
    return texts


def find_placeholders(texts) -> tuple[np.ndarray, dict[str, int]]:
    """Which cells are missing (null, blank or a placeholder), and how often each placeholder appears.

    Returns
    -------
    missing : ndarray of shape (n,), bool
    counts : dict of str to int
        Per placeholder spelling (trimmed), blank cells excluded.
    """
    import pyarrow.compute as pc

    texts = as_text_array(texts)
    trimmed = pc.utf8_trim_whitespace(texts)
    placeholder = pc.is_in(pc.utf8_lower(trimmed), value_set=_placeholder_values())
    missing = pc.or_kleene(pc.is_null(texts), placeholder).fill_null(True)
    spelled = pc.filter(trimmed, pc.and_(placeholder, pc.not_equal(trimmed, "")).fill_null(False))
    counts = {}
    if len(spelled):
        for item in pc.value_counts(spelled).to_pylist():
            counts[item["values"]] = int(item["counts"])
    return missing.to_numpy(zero_copy_only=False), counts


def blank_placeholders(texts):
    """``texts`` with every placeholder and blank cell as null: for text that stays text.

    Returns
    -------
    texts : pyarrow.StringArray
    counts : dict of str to int
        As :func:`find_placeholders` counts them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = as_text_array(texts)
    missing, counts = find_placeholders(texts)
    if missing.any():
        # An array of nulls, not a null scalar: pyarrow's scalar shortcut of if_else copies
        # a sliced string array's bytes from the start of its buffer (apache/arrow#41479,
        # fixed in pyarrow 24), which turns the text of every batch but the first into garbage.
        texts = pc.if_else(pa.array(missing), pa.nulls(len(texts), pa.string()), texts)
    return texts, counts


def parse_numbers(texts, decimals: Sequence[str] = DECIMAL_SEPARATORS) -> ParsedNumbers | None:
    """Read a column of text as numbers, or return None if it is not one.

    Parameters
    ----------
    texts : pyarrow string array or array-like of str
    decimals : sequence of {".", ","}, default=(".", ",")
        Decimal separators to try, preferred first; the first under which every
        cell is a number wins (see the module's notes on ambiguous cells).

    Returns
    -------
    ParsedNumbers or None
        None when a present cell is not a number, or the cells mix formats (two
        currencies, two decimal separators...). A column with no present cell
        is all missing values.

    Examples
    --------
    >>> parse_numbers(["$1,200.50", "N/A", "(30)"]).values.tolist()
    [1200.5, nan, -30.0]
    >>> parse_numbers(["1.234,50", "3,5"]).format.decimal
    ','
    >>> parse_numbers(["12", "many"]) is None
    True
    """
    texts = as_text_array(texts)
    if not head_reads_as_numbers(texts):
        return None
    cells = NumberCells.of(texts)
    styles = cells.styles()
    if styles is None:
        return None
    number_format = styles.choose(decimals)
    if number_format is None:
        return None
    return ParsedNumbers(cells.values(number_format), number_format, cells.placeholders)


@dataclass(frozen=True)
class NumberStyles:
    """The formats under which every cell seen so far is a number.

    A column read in parts (batches of a file) is a column of numbers when every
    part is, and the parts agree: :meth:`merge` keeps what all parts allow, so
    that the format chosen from the merged styles is the one :func:`parse_numbers`
    would choose for the whole column at once.

    Attributes
    ----------
    readings : frozenset of (decimal, thousands)
        Separator pairs under which every cell's digits are a number.
    unit : str or None
        The one currency or ``%`` the cells carry (None: none).
    parentheses : bool
        Whether some cell writes a negative in parentheses.
    """

    readings: frozenset = frozenset((d, t) for d in DECIMAL_SEPARATORS for t, _ in _STYLES[d])
    unit: str | None = None
    parentheses: bool = False

    def merge(self, other: "NumberStyles") -> "NumberStyles | None":
        """The styles both allow, or None when they disagree (two units, no common reading)."""
        if self.unit is not None and other.unit is not None and self.unit != other.unit:
            return None
        readings = self.readings & other.readings
        if not readings:
            return None
        return NumberStyles(readings, self.unit or other.unit, self.parentheses or other.parentheses)

    def choose(self, decimals: Sequence[str] = DECIMAL_SEPARATORS) -> NumberFormat | None:
        """The first reading in order of preference (``decimals``, then thousands
        separators from none to space), as a format."""
        for decimal in decimals:
            if decimal not in _STYLES:
                raise ValueError(f"decimal separators must be '.' or ',', got {decimal!r}")
            for thousands, _ in _STYLES[decimal]:
                if (decimal, thousands) in self.readings:
                    return NumberFormat(decimal, thousands, self.unit, self.parentheses)
        return None


@dataclass
class NumberCells:
    """The cells of one part of a column, split into sign, unit and digits.

    Attributes
    ----------
    missing : ndarray of shape (n,), bool
        Null, blank or placeholder cells.
    placeholders : dict of str to int
        As :func:`find_placeholders` counts them.
    parts : pyarrow.StructArray or None
        The fields of :data:`_CELL` for every present cell; None when a present
        cell is not shaped like a number at all.
    """

    missing: np.ndarray
    placeholders: dict
    parts: object

    @classmethod
    def of(cls, texts) -> "NumberCells":
        import pyarrow as pa
        import pyarrow.compute as pc

        texts = as_text_array(texts)
        missing, counts = find_placeholders(texts)
        present = np.flatnonzero(~missing)
        parts = pc.extract_regex(pc.utf8_trim_whitespace(texts.take(pa.array(present))), _CELL)
        return cls(missing, counts, None if parts.null_count else parts)

    def styles(self) -> NumberStyles | None:
        """The formats under which every present cell is a number; None if there are none."""
        import pyarrow.compute as pc

        if self.parts is None:
            return None
        if len(self.parts) == 0:
            return NumberStyles()
        field = self._fields()
        unit = _single_unit(field["pre"], field["post"])
        if unit is False or not _consistent_signs(field):
            return None
        readings = frozenset(
            (decimal, thousands)
            for decimal in DECIMAL_SEPARATORS
            for thousands, pattern in _STYLES[decimal]
            if pc.all(pc.match_substring_regex(field["core"], pattern)).as_py()
        )
        if not readings:
            return None
        parentheses = bool(pc.any(pc.equal(field["open"], "(")).as_py())
        return NumberStyles(readings, unit, parentheses)

    def values(self, number_format: NumberFormat) -> np.ndarray:
        """The cells as float64 read in ``number_format`` (NaN where missing); every
        present cell must be a number in it (see :meth:`styles`)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        values = np.full(len(self.missing), np.nan)
        if self.parts is None or len(self.parts) == 0:
            return values
        field = self._fields()
        digits = field["core"]
        if number_format.thousands == " ":
            digits = pc.replace_substring_regex(digits, f"[{_SPACES}]", "")
        elif number_format.thousands is not None:
            digits = pc.replace_substring(digits, number_format.thousands, "")
        if number_format.decimal != ".":
            digits = pc.replace_substring(digits, number_format.decimal, ".")
        magnitudes = pc.cast(digits, pa.float64()).to_numpy(zero_copy_only=False)
        negative = (
            pc.is_in(field["sign"], value_set=pa.array(_MINUS)).to_numpy(zero_copy_only=False)
            | pc.is_in(field["sign2"], value_set=pa.array(_MINUS)).to_numpy(zero_copy_only=False)
            | pc.equal(field["open"], "(").to_numpy(zero_copy_only=False)
        )
        values[~self.missing] = np.where(negative, -magnitudes, magnitudes)
        return values

    def _fields(self) -> dict:
        return {name: self.parts.field(name) for name in ("open", "sign", "pre", "sign2", "core", "post", "close")}


def non_numbers(texts) -> tuple[np.ndarray, int]:
    """Positions of the cells that are neither missing nor a number in any format.

    Returns
    -------
    positions : ndarray of int64
        0-based, in order.
    present : int
        How many cells are not missing.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = as_text_array(texts)
    missing, _ = find_placeholders(texts)
    present = np.flatnonzero(~missing)
    if present.size == 0:
        return present, 0
    parts = pc.extract_regex(pc.utf8_trim_whitespace(texts.take(pa.array(present))), _CELL)
    number_like = parts.is_valid().to_numpy(zero_copy_only=False).copy()
    if number_like.any():
        cores = parts.field("core").fill_null("")
        readable = np.zeros(len(present), dtype=bool)
        for decimal in DECIMAL_SEPARATORS:
            for _, pattern in _STYLES[decimal]:
                readable |= pc.match_substring_regex(cores, pattern).to_numpy(zero_copy_only=False)
        number_like &= readable
    return present[~number_like], int(present.size)


def detect_decimal(cells: Iterable[str]) -> str | None:
    """The decimal separator a sample of cells (from any columns) writes, or None.

    Only cells that read one way count: ``1.5`` or ``1,234.5`` for a point,
    ``3,5`` or ``1.234,5`` for a comma; ``1.234``, ``1,234`` and whole numbers
    say nothing. The separator with more such cells wins; a tie is None.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pa.array([str(c) for c in cells], type=pa.string())
    if len(texts) == 0:
        return None
    parts = pc.extract_regex(pc.utf8_trim_whitespace(texts), _CELL)
    cores = pc.drop_null(parts).field("core") if parts.null_count < len(parts) else None
    if cores is None or len(cores) == 0:
        return None
    fits = {}
    for decimal in DECIMAL_SEPARATORS:
        fit = np.zeros(len(cores), dtype=bool)
        for _, pattern in _STYLES[decimal]:
            fit |= pc.match_substring_regex(cores, pattern).to_numpy(zero_copy_only=False)
        fits[decimal] = fit
    points = int(np.sum(fits["."] & ~fits[","]))
    commas = int(np.sum(fits[","] & ~fits["."]))
    if points == commas:
        return None
    return "." if points > commas else ","


# ---------------------------------------------------------------- helpers


def head_reads_as_numbers(texts, cells: int = 256) -> bool:
    """Whether the first cells could be numbers: a column of text is told by them, cheaply."""
    import pyarrow.compute as pc

    head = pc.utf8_trim_whitespace(pc.drop_null(texts.slice(0, cells)))
    head = pc.filter(head, pc.invert(pc.is_in(pc.utf8_lower(head), value_set=_placeholder_values())))
    return len(head) == 0 or pc.extract_regex(head, _CELL).null_count == 0


def _placeholder_values():
    import pyarrow as pa

    return pa.array(sorted(PLACEHOLDERS), type=pa.string())


def _single_unit(pre, post):
    """The column's one unit (or None), or False when cells disagree or carry two."""
    import pyarrow.compute as pc

    both = pc.and_(pc.not_equal(pre, ""), pc.not_equal(post, ""))
    if pc.any(both).as_py():
        return False
    if pc.any(pc.equal(pre, "%")).as_py():
        return False
    units = set(pc.unique(pre).to_pylist()) | set(pc.unique(post).to_pylist())
    units.discard("")
    if len(units) > 1:
        return False
    return units.pop() if units else None


def _consistent_signs(field) -> bool:
    """Parentheses come in pairs and never beside a sign; a cell has one sign at most."""
    import pyarrow.compute as pc

    opened = pc.equal(field["open"], "(")
    closed = pc.equal(field["close"], ")")
    signed = pc.not_equal(field["sign"], "")
    signed2 = pc.not_equal(field["sign2"], "")
    if pc.any(pc.not_equal(opened, closed)).as_py():
        return False
    if pc.any(pc.and_(signed, signed2)).as_py():
        return False
    return not pc.any(pc.and_(opened, pc.or_(signed, signed2))).as_py()
