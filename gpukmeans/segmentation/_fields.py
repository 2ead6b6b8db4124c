"""Type checks for JSON read from a file: each field present, of its type, finite, none unknown.

A check is a function ``check(value, label)`` that returns ``value`` in the form its
reader uses (a float, a list of names, an array) or raises
:class:`~gpukmeans.segmentation.errors.InputError` saying which field is wrong and
how. ``label`` names the field as a path, ``preprocessing.center[2]``.
:func:`read_record` applies a table of checks to a JSON object. The messages name no
file: the reader of a file puts its path in front of them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np

from .errors import InputError

Check = Callable[[Any, str], Any]


def read_record(value: Any, fields: dict[str, Check], label: str) -> dict:
    """The fields of a JSON object, each checked; every field must be there and no other."""
    if not isinstance(value, dict):
        raise InputError(f"{label} must be an object; got {shown(value)}")
    check_keys(value, fields, label, "field")
    return {key: check(value[key], f"{label}.{key}") for key, check in fields.items()}


def check_keys(found: dict, expected, label: str, kind: str) -> None:
    """``found`` has one entry per name in ``expected`` (a ``kind`` of thing) and no other."""
    absent = [name for name in expected if name not in found]
    if absent:
        raise InputError(f"{label} lacks the {kind} {absent[0]!r}")
    extra = [name for name in found if name not in expected]
    if extra:
        raise InputError(f"{label} names {extra[0]!r}, which is not a {kind}")


def json_text(check: Check) -> Check:
    """A string holding JSON whose decoded value passes ``check``."""

    def read(value, label):
        if not isinstance(value, str):
            raise InputError(f"{label} must be JSON text; got {shown(value)}")
        try:
            decoded = json.loads(value)
        # Nesting deep enough to exhaust the parser's recursion is not JSON a writer makes.
        except (ValueError, RecursionError):
            raise InputError(f"{label} is not valid JSON") from None
        return check(decoded, label)

    return read


def any_value(value, label):
    """Any JSON value: a field checked by its own reader, or free-form facts."""
    return value


def text(value, label) -> str:
    if not isinstance(value, str):
        raise InputError(f"{label} must be a text; got {shown(value)}")
    return value


def optional(check: Check) -> Check:
    """``check``, or null."""

    def read(value, label):
        return None if value is None else check(value, label)

    return read


def one_of(*choices: str) -> Check:
    """A text among ``choices``."""

    def read(value, label):
        if not isinstance(value, str) or value not in choices:
            raise InputError(f"{label} must be one of {', '.join(choices)}; got {shown(value)}")
        return value

    return read


def number(value, label) -> float:
    """A finite number (JSON's true and false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{label} must be a number; got {shown(value)}")
    try:
        as_float = float(value)
    except OverflowError:  # an integer beyond float64's range
        as_float = math.inf
    if not math.isfinite(as_float):
        raise InputError(f"{label} is {shown(value)}; a model needs finite numbers")
    return as_float


def whole_number(value, label) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{label} must be a whole number; got {shown(value)}")
    return value


def list_of(check: Check, *, length: int | None = None) -> Check:
    """A list whose items pass ``check`` (and that has ``length`` items, when given)."""

    def read(value, label):
        if not isinstance(value, list):
            raise InputError(f"{label} must be a list; got {shown(value)}")
        if length is not None and len(value) != length:
            raise InputError(f"{label} must have {length} items; it has {len(value)}")
        return [check(item, f"{label}[{i}]") for i, item in enumerate(value)]

    return read


def names(value, label) -> list[str]:
    """A list of distinct texts: column names, category levels."""
    items = list_of(text)(value, label)
    seen = set()
    for item in items:
        if item in seen:
            raise InputError(f"{label} names {item!r} twice")
        seen.add(item)
    return items


def numbers(value, label) -> np.ndarray:
    """A list of finite numbers, as a float64 array."""
    return np.asarray(list_of(number)(value, label), dtype=np.float64)


def mapping(check: Check) -> Check:
    """An object whose every value passes ``check``, keys kept in their order."""

    def read(value, label):
        if not isinstance(value, dict):
            raise InputError(f"{label} must be an object; got {shown(value)}")
        return {key: check(item, f"{label}[{key!r}]") for key, item in value.items()}

    return read


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as JSON, cut short: what a message shows of a wrong value."""
    rendered = json.dumps(value, default=str)
    return rendered if len(rendered) <= limit else rendered[: limit - 3] + "..."
