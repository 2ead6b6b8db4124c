"""Column labels a marketer reads, for segment names and the report.

A column's label is the user's, when given (``--labels FILE.json``, ``--label
COLUMN=Label``, or ``labels=`` in Python), else its name made readable by
:func:`readable_label`: a name written as code (``PURCHASES_INSTALLMENTS_FREQUENCY``,
``avg_order_value``, ``avgOrderValue``) becomes words in sentence case ("Purchases
installments frequency", "Avg order value"); a name that already reads as words
("Annual Income (k$)") is kept. Files and tables keep the column names; only names
and the report speak in labels.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

from .errors import InputError

#: A word in capitals this short is an acronym (ID, CLV), kept as written: up to two
#: letters in a name written all in capitals (``CUST_ID``), where every word is in
#: capitals, and up to three elsewhere (``customer_ID``, ``avgCLV``).
_ACRONYM_LETTERS = {"in capitals": 2, "mixed": 3}

#: Words of a name written in camelCase: capital runs (acronyms), capitalised or
#: lower-case words, numbers.
_CAMEL_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def readable_label(column: str) -> str:
    """``column``'s name as words a reader expects.

    >>> readable_label("PURCHASES_INSTALLMENTS_FREQUENCY")
    'Purchases installments frequency'
    >>> readable_label("avg_order_value"), readable_label("avgOrderValue")
    ('Avg order value', 'Avg order value')
    >>> readable_label("Annual Income (k$)"), readable_label("CUST_ID"), readable_label("TENURE")
    ('Annual Income (k$)', 'Cust ID', 'Tenure')
    """
    text = str(column).strip()
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return text
    in_capitals = all(c.isupper() for c in letters)
    if " " in text:  # words already: kept, but a name in capitals is lowered
        return _capitalised(text.lower() if in_capitals else text)
    if "_" in text:
        words = [word for word in text.split("_") if word]
    elif in_capitals or text.islower():
        words = [text]
    else:
        words = _CAMEL_WORDS.findall(text)
        if "".join(words) != text:  # other characters between the words: kept as written
            return _capitalised(text)
    style = "in capitals" if in_capitals else "mixed"
    return _capitalised(" ".join(_word(word, _ACRONYM_LETTERS[style]) for word in words))


def _word(word: str, acronym_letters: int) -> str:
    """One word of a code name: lower case, but an acronym."""
    letters = sum(c.isalpha() for c in word)
    if word.isupper() and letters <= acronym_letters:
        return word
    return word.lower()


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def in_a_name(label: str) -> str:
    """``label`` as it reads after a word such as "high": a label in sentence case (one
    capital, the first letter) is lowered ("Cash advance" -> "cash advance"); a label
    with other capitals ("Annual Income (k$)", "Customer ID") is kept."""
    if label[:1].isupper() and not any(c.isupper() for c in label[1:]):
        return label[:1].lower() + label[1:]
    return label


def column_labels(columns: Iterable[str], given: Mapping[str, str] | None = None) -> dict[str, str]:
    """The label of every column: the given one, else :func:`readable_label`. Two columns
    whose readable labels coincide keep their names, so that labels tell columns apart."""
    given = dict(given or {})
    columns = list(columns)
    labels = {column: given.get(column) or readable_label(column) for column in columns}
    seen: dict[str, list[str]] = {}
    for column, label in labels.items():
        seen.setdefault(label.casefold(), []).append(column)
    for same in seen.values():
        if len(same) > 1:
            for column in same:
                if column not in given:
                    labels[column] = column
    return labels


def feature_labels(feature_names: Iterable[str], labels: Mapping[str, str], categories: Mapping[str, list]) -> dict:
    """The label of every clustered feature: a numeric column's label, or for a category
    level (the feature ``column=level``) the column's label and the level ("Channel: web")."""
    result = {}
    levels = {f"{column}={level}": (column, level) for column, values in categories.items() for level in values}
    for feature in feature_names:
        if feature in levels:
            column, level = levels[feature]
            result[feature] = f"{labels.get(column, column)}: {level}"
        else:
            result[feature] = labels.get(feature, feature)
    return result


def check_labels(given: Mapping[str, str], columns: Iterable[str], source: str) -> dict[str, str]:
    """The given labels, each stripped, after checking that each names a column of the
    table (``columns``) and is text, and that no two columns share one."""
    available = set(columns)
    checked: dict[str, str] = {}
    for column, label in given.items():
        if column not in available:
            raise InputError(f"a label is given for column {column!r}, which {source} does not have")
        if not isinstance(label, str) or not label.strip():
            raise InputError(f"the label of column {column!r} must be non-empty text, got {label!r}")
        checked[column] = label.strip()
    owners: dict[str, str] = {}
    for column, label in checked.items():
        other = owners.setdefault(label.casefold(), column)
        if other != column:
            raise InputError(f"columns {other!r} and {column!r} are both labelled {label!r}; labels must differ")
    return checked


def read_labels_file(path: str | os.PathLike) -> dict[str, str]:
    """A JSON file holding one object of column names to labels, e.g.
    ``{"CASH_ADVANCE": "Cash advances"}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path}: {exc}") from None
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"labels file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(labels, dict):
        raise InputError(
            f'labels file {path} must hold one JSON object of column names to labels, e.g. {{"AGE": "Age"}}'
        )
    for column, label in labels.items():
        if not isinstance(label, str) or not label.strip():
            raise InputError(
                f"labels file {path}: the label of column {column!r} must be non-empty text, got {label!r}"
            )
    return labels


def parse_label(text: str) -> tuple[str, str]:
    """``"COLUMN=Label"`` as ``(column, label)``; the first ``=`` separates them."""
    column, equals, label = str(text).partition("=")
    if not equals or not column.strip() or not label.strip():
        raise InputError(f"--label must look like COLUMN=Label, got {text!r}")
    return column.strip(), label.strip()


__all__ = [
    "check_labels",
    "column_labels",
    "feature_labels",
    "in_a_name",
    "parse_label",
    "read_labels_file",
    "readable_label",
]
