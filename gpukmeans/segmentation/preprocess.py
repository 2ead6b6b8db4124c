"""From a raw customer table to the numeric matrix that k-means clusters.

:class:`Preprocessor` learns every step from the training table (which columns,
imputation values, log transforms, clipping bounds, one-hot levels, scaling) and
stores it as plain JSON, so that a saved model re-applies exactly the same
transformation to new customers. The steps, in order:

1. pick the ID column (never clustered) and the feature columns: every numeric
   column by default, except one without values, and except columns of a few
   whole numbers named like codes (``Region`` 1..3, ``Channel`` 1..2), which are
   categories, not amounts (see :func:`looks_like_code_name`);
2. impute missing values (median / most frequent) or drop incomplete rows;
3. leave out constant columns, with a warning;
4. ``log1p`` skewed non-negative columns (``log="auto"``) or the ones named;
5. clip numeric columns at quantiles (``clip=q`` keeps ``[q, 1 - q]``);
6. one-hot encode the categorical columns;
7. scale every column (standard, robust, minmax or none), a categorical column's
   one-hot block as a whole so that it weighs as much as one numeric column.

Every column that is not clustered is listed with the reason in the report
(``left_out``): the ID, text, a column without values, a constant one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import numbers as number_formats
from ._fields import check_keys, list_of, mapping, names, number, numbers, one_of, optional, read_record, text
from .errors import InputError

SCALERS = ("standard", "robust", "minmax", "none")
MISSING_POLICIES = ("impute", "drop")
#: Skewness above which ``log="auto"`` log-transforms a non-negative column.
SKEW_THRESHOLD = 1.0
#: More distinct values than this in a categorical column is almost surely a mistake.
MAX_LEVELS = 100

#: At most this many distinct whole numbers, each seen at least twice on average,
#: make a column look like codes rather than amounts.
MAX_CODE_LEVELS = 12
#: Words that name a column of codes; a column whose name holds one as a whole
#: word ("Region", "customer_type", "StoreNumber") and whose values look like
#: codes is one-hot encoded without being asked.
CODE_WORDS = frozenset(
    {
        "channel", "region", "type", "code", "category", "class", "group", "status", "gender", "segment",
        "tier", "level", "zone", "area", "store", "branch",
    }
)

_ID_SUFFIX = re.compile(r"(^|[\s_.\-])(id|uuid|guid)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z0-9](ID|Id)$")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def looks_like_id(name: str) -> bool:
    """True for column names such as ``id``, ``customer_id``, ``Customer ID``, ``CustomerID``."""
    name = str(name).strip()
    return bool(_ID_SUFFIX.search(name) or _CAMEL_ID.search(name) or name.lower() == "unnamed: 0")


def looks_like_code_name(name: str) -> bool:
    """True for names holding a word of :data:`CODE_WORDS` as a whole word, in any case:
    ``Channel``, ``customer_type``, ``Store Number``, ``DeliveryZone``; not ``subregion``."""
    return any(word.lower() in CODE_WORDS for word in _WORDS.findall(str(name)))


def detect_id_column(frame: pd.DataFrame) -> str | None:
    """Return the column that identifies customers, or None.

    A column named like an ID wins; otherwise the first non-numeric column whose
    values are all present and distinct.
    """
    for name in frame.columns:
        if looks_like_id(name):
            return name
    for name in frame.columns:
        column = frame[name]
        if not _is_numeric(column) and len(column) > 1 and column.notna().all() and column.is_unique:
            return name
    return None


@dataclass
class PreprocessReport:
    """What preprocessing did to a table, for the summary and the report."""

    n_rows: int = 0
    n_rows_used: int = 0
    id_column: str | None = None
    numeric_columns: list[str] = field(default_factory=list)
    categorical_columns: list[str] = field(default_factory=list)
    excluded_columns: list[str] = field(default_factory=list)
    auto_categorical: list[str] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)
    missing_counts: dict[str, int] = field(default_factory=dict)
    rows_dropped_missing: int = 0
    constant_columns: list[str] = field(default_factory=list)
    log_columns: list[str] = field(default_factory=list)
    unknown_levels: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def leave_out(self, column: str, reason: str, detail: str | None = None) -> None:
        """Record that ``column`` is not clustered: ``reason`` is one of :data:`LEFT_OUT_REASONS`."""
        entry = {"column": column, "reason": reason}
        if detail:
            entry["detail"] = detail
        self.left_out.append(entry)


#: Why a column is not clustered, as ``PreprocessReport.left_out`` says it.
LEFT_OUT_REASONS = ("ID column", "not numeric", "no values", "constant")


@dataclass
class PreparedData:
    """The output of :meth:`Preprocessor.transform`.

    Attributes
    ----------
    X : ndarray of shape (n_used, n_features), float64
        The matrix to cluster.
    rows : ndarray of shape (n_used,), int64
        Positions (0-based) in the input table of the rows in ``X``.
    ids : pandas.Series or None
        The ID column for those rows.
    report : PreprocessReport
    """

    X: np.ndarray
    rows: np.ndarray
    ids: pd.Series | None
    report: PreprocessReport


class Preprocessor:
    """Learn and apply the cleaning, transformation and scaling of a customer table.

    Parameters
    ----------
    columns : sequence of str, optional
        Numeric columns to cluster, as numbers (an explicit choice: no column
        named here becomes categorical on its own). By default every numeric
        column except the ID, with columns of a few whole numbers named like
        codes one-hot encoded instead (see :data:`CODE_WORDS`).
    id_column : str, "auto" or None, default="auto"
        The customer identifier, carried to the output and never clustered.
        ``"auto"`` detects it (see :func:`detect_id_column`); None means there is none.
    categorical : sequence of str, default=()
        Columns to one-hot encode. Other non-numeric columns are reported and left out.
    missing : {"impute", "drop"}, default="impute"
        Fill missing values (median for numbers, most frequent level for
        categories) or drop the rows that have any.
    log : "auto", "none" or sequence of str, default="auto"
        ``log1p`` transform: ``"auto"`` takes non-negative columns whose skewness
        exceeds :data:`SKEW_THRESHOLD`; a list names the columns.
    clip : float, optional
        Clip each numeric column to its ``[clip, 1 - clip]`` quantiles (after the log).
    scale : {"standard", "robust", "minmax", "none"}, default="standard"
        Scaling of every feature: mean/standard deviation, median/interquartile
        range, to [0, 1], or none.

    Attributes
    ----------
    id_column_ : str or None
    numeric_columns_ : list of str
        Numeric input columns kept as features (constant ones removed).
    categories_ : dict of str to list of str
        The levels of each categorical column, in one-hot order.
    feature_names_out_ : list of str
        Names of the columns of the transformed matrix.
    report_ : PreprocessReport
        What fitting found (missing values, constant and excluded columns...).

    Examples
    --------
    >>> import pandas as pd
    >>> from gpukmeans.segmentation import Preprocessor
    >>> df = pd.DataFrame({"id": ["a", "b", "c"], "spend": [1.0, None, 3.0]})
    >>> prep = Preprocessor(scale="none", log="none").fit(df)
    >>> prep.transform(df).X.ravel().tolist()
    [1.0, 2.0, 3.0]
    """

    def __init__(
        self,
        *,
        columns: Sequence[str] | None = None,
        id_column: str | None = "auto",
        categorical: Sequence[str] = (),
        missing: str = "impute",
        log: str | Sequence[str] = "auto",
        clip: float | None = None,
        scale: str = "standard",
    ):
        self.columns = columns
        self.id_column = id_column
        self.categorical = categorical
        self.missing = missing
        self.log = log
        self.clip = clip
        self.scale = scale

    # ------------------------------------------------------------ fitting

    def fit(self, frame: pd.DataFrame, *, source: str = "the table") -> "Preprocessor":
        """Learn every preprocessing step from ``frame``.

        ``source`` names the table in error messages (the file path, usually).
        """
        self._validate_params()
        _check_unique_columns(frame, source)
        report = PreprocessReport(n_rows=len(frame))
        self.id_column_ = self._resolve_id(frame, source)
        report.id_column = self.id_column_
        if self.id_column_ is not None:
            report.leave_out(self.id_column_, "ID column")
        numeric, categorical = self._resolve_features(frame, source, report)

        values = _numeric_block(frame, numeric, source)
        cats = {c: _as_text(frame[c]) for c in categorical}
        missing_mask, counts = _missing(values, numeric, cats)
        report.missing_counts = counts

        keep = ~missing_mask if self.missing == "drop" else np.ones(len(frame), dtype=bool)
        if not keep.any():
            raise InputError(f"every row of {source} has a missing value; try without --drop-missing")
        values = values[keep]
        cats = {c: s[keep] for c, s in cats.items()}

        self.impute_values_ = {}
        for j, name in enumerate(numeric):
            observed = values[:, j][np.isfinite(values[:, j])]
            if observed.size == 0:
                raise InputError(f"column {name!r} in {source} has no values")
            self.impute_values_[name] = float(np.median(observed))
        self.category_fill_ = {}
        for name, series in cats.items():
            observed = series.dropna()
            if observed.empty:
                raise InputError(f"column {name!r} in {source} has no values")
            counts_by_level = observed.value_counts()
            top = counts_by_level.max()
            self.category_fill_[name] = sorted(counts_by_level.index[counts_by_level == top])[0]
        values = self._impute_numeric(values, numeric)
        cats = {c: s.fillna(self.category_fill_[c]) for c, s in cats.items()}

        constant = [name for j, name in enumerate(numeric) if values[:, j].max() == values[:, j].min()]
        constant += [name for name, series in cats.items() if series.nunique() <= 1]
        for name in constant:
            report.leave_out(name, "constant")
        if constant:
            report.warnings.append(_columns_warning(constant, "is constant and was left out",
                                                    "are constant and were left out"))
        report.constant_columns = constant
        constant_set = set(constant)
        keep_numeric = [j for j, name in enumerate(numeric) if name not in constant_set]
        numeric = [numeric[j] for j in keep_numeric]
        values = values[:, keep_numeric]
        cats = {c: s for c, s in cats.items() if c not in constant_set}
        if not numeric and not cats:
            raise InputError(f"{source} has no non-constant columns to cluster")

        self.numeric_columns_ = numeric
        self.log_columns_ = self._choose_log_columns(values, numeric, source)
        report.log_columns = list(self.log_columns_)
        position = {name: j for j, name in enumerate(numeric)}
        self.log_floor_ = {name: float(values[:, position[name]].min()) for name in self.log_columns_}
        values = self._apply_log(values)

        self.clip_bounds_ = {}
        if self.clip is not None:
            lows, highs = np.quantile(values, [self.clip, 1.0 - self.clip], axis=0)
            self.clip_bounds_ = {n: [float(lo), float(hi)] for n, lo, hi in zip(numeric, lows, highs)}
            values = self._apply_clip(values)

        self.categories_ = {}
        for name, series in cats.items():
            levels = sorted(series.unique(), key=_level_order)
            if len(levels) > MAX_LEVELS:
                raise InputError(
                    f"categorical column {name!r} in {source} has {len(levels)} distinct values, "
                    f"more than {MAX_LEVELS}; it looks like an identifier or free text"
                )
            self.categories_[name] = levels
        matrix = np.hstack([values, self._one_hot(cats, len(values))[0]])
        self.feature_names_out_ = numeric + [
            f"{name}={level}" for name, levels in self.categories_.items() for level in levels
        ]
        self.center_, self.scale_ = _scaling(matrix, self.scale, self._level_groups(len(numeric)))
        self._check_finite(np.vstack([self.center_, self.scale_]), source)

        report.numeric_columns = list(numeric)
        report.categorical_columns = list(self.categories_)
        report.n_rows_used = int(keep.sum())
        report.rows_dropped_missing = int((~keep).sum())
        self.report_ = report
        return self

    def _validate_params(self) -> None:
        if self.scale not in SCALERS:
            raise InputError(f"scale must be one of {', '.join(SCALERS)}; got {self.scale!r}")
        if self.missing not in MISSING_POLICIES:
            raise InputError(f"missing must be 'impute' or 'drop'; got {self.missing!r}")
        if isinstance(self.log, str) and self.log not in ("auto", "none"):
            raise InputError(f"log must be 'auto', 'none' or a list of columns; got {self.log!r}")
        _check_named_once(self.columns, "--columns")
        _check_named_once(self.categorical, "--categorical")
        if not isinstance(self.log, str):
            _check_named_once(self.log, "--log")
        if self.clip is not None and not 0.0 < float(self.clip) < 0.5:
            raise InputError(f"clip must be a quantile between 0 and 0.5, e.g. 0.01; got {self.clip}")

    def _resolve_id(self, frame: pd.DataFrame, source: str) -> str | None:
        if self.id_column == "auto":
            return detect_id_column(frame)
        if self.id_column is None:
            return None
        if self.id_column not in frame.columns:
            raise InputError(f"ID column {self.id_column!r} not found in {source}")
        return self.id_column

    def _resolve_features(self, frame: pd.DataFrame, source: str, report: PreprocessReport):
        """The numeric and categorical feature columns; what is left out goes in ``report``."""
        categorical = list(self.categorical)
        for name in categorical:
            if name not in frame.columns:
                raise InputError(f"categorical column {name!r} not found in {source}")
            if name == self.id_column_:
                raise InputError(f"column {name!r} is the ID column and cannot be categorical")
        if self.columns is not None:
            numeric = self._named_numeric_columns(frame, source, set(categorical))
        else:
            numeric, codes = self._numeric_columns_found(frame, set(categorical), report)
            report.auto_categorical = codes
            categorical += codes
        if not numeric and not categorical:
            excluded = report.excluded_columns
            hint = (
                f" (non-numeric: {', '.join(excluded)}; list them with --categorical to one-hot encode)"
                if excluded
                else ""
            )
            raise InputError(f"{source} has no numeric columns to cluster{hint}")
        return numeric, categorical

    def _named_numeric_columns(self, frame: pd.DataFrame, source: str, categorical: set) -> list[str]:
        numeric = []
        for name in self.columns:
            if name not in frame.columns:
                raise InputError(f"column {name!r} not found in {source}")
            if name == self.id_column_:
                raise InputError(
                    f"column {name!r} is the ID column; give --id-column to name another"
                )
            if name in categorical:
                continue
            if not _is_numeric(frame[name]):
                raise InputError(_not_numeric_message(frame[name], name, source))
            numeric.append(name)
        return numeric

    def _numeric_columns_found(self, frame: pd.DataFrame, categorical: set, report: PreprocessReport):
        """Every numeric column but the ID and the categorical ones, and the columns of codes among them."""
        numeric, codes, empty, look_alikes = [], [], [], {}
        for name in frame.columns:
            if name == self.id_column_ or name in categorical:
                continue
            column = frame[name]
            if not _is_numeric(column):
                report.excluded_columns.append(name)
                report.leave_out(name, "not numeric", _text_detail(column))
                continue
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.isfinite(values).any():
                report.leave_out(name, "no values")
                empty.append(name)
                continue
            levels = None if pd.api.types.is_bool_dtype(column) else _code_levels(values)
            if levels is not None and looks_like_code_name(name):
                codes.append(name)
                continue
            # A 0/1 flag is clustered alike as a number or as two levels: only others are flagged.
            if levels is not None and not set(levels.tolist()) <= {0.0, 1.0}:
                look_alikes[name] = levels
            numeric.append(name)
        if empty:
            report.warnings.append(_columns_warning(empty, "has no values and was left out",
                                                    "have no values and were left out"))
        if len(look_alikes) == 1:
            (name, levels), = look_alikes.items()
            report.warnings.append(
                f"column {name!r} takes only {len(levels)} whole-number values "
                f"({levels[0]:g} to {levels[-1]:g}); if they are codes, not amounts, "
                f"list it with --categorical to one-hot encode it"
            )
        elif look_alikes:
            report.warnings.append(_columns_warning(
                list(look_alikes), "", f"take only a few whole-number values (at most {MAX_CODE_LEVELS}); "
                "if they are codes, not amounts, list them with --categorical to one-hot encode them",
            ))
        return numeric, codes

    def _choose_log_columns(self, values: np.ndarray, numeric: list[str], source: str) -> list[str]:
        if isinstance(self.log, str):
            if self.log == "none":
                return []
            chosen = []
            for j, name in enumerate(numeric):
                column = values[:, j]
                if column.min() >= 0 and _skewness(column) > SKEW_THRESHOLD and _more_than_two_values(column):
                    chosen.append(name)
            return chosen
        chosen = []
        for name in self.log:
            if name not in numeric:
                raise InputError(f"cannot log-transform {name!r}: it is not a numeric feature column")
            if values[:, numeric.index(name)].min() <= -1:
                raise InputError(f"cannot log-transform {name!r} in {source}: it has values <= -1")
            chosen.append(name)
        return chosen

    # ------------------------------------------------------------ applying

    def transform(self, frame: pd.DataFrame, *, source: str = "the table") -> PreparedData:
        """Apply the fitted steps to ``frame`` (training rows or new customers).

        Raises
        ------
        InputError
            If ``frame`` lacks a column the preprocessor was fitted with, or a
            numeric column holds text.
        """
        self._check_fitted()
        missing_columns = [c for c in self.input_columns_ if c not in frame.columns]
        if missing_columns:
            raise InputError(
                f"{source} lacks column(s) the model was trained on: {', '.join(missing_columns)}"
            )
        report = PreprocessReport(
            n_rows=len(frame),
            id_column=self.id_column_,
            numeric_columns=list(self.numeric_columns_),
            categorical_columns=list(self.categories_),
            constant_columns=list(self.report_.constant_columns),
            log_columns=list(self.log_columns_),
        )
        values = _numeric_block(frame, self.numeric_columns_, source)
        cats = {c: _as_text(frame[c]) for c in self.categories_}
        missing_mask, report.missing_counts = _missing(values, self.numeric_columns_, cats)
        if self.missing == "drop":
            keep = ~missing_mask
        else:
            keep = np.ones(len(frame), dtype=bool)
        rows = np.flatnonzero(keep)
        values = self._impute_numeric(values[rows], self.numeric_columns_)
        cats = {c: s.iloc[rows].fillna(self.category_fill_[c]) for c, s in cats.items()}
        values = self._apply_clip(self._apply_log(values))
        dummies, report.unknown_levels = self._one_hot(cats, len(values))
        with np.errstate(over="ignore", invalid="ignore"):
            X = (np.hstack([values, dummies]) - self.center_) / self.scale_
        self._check_finite(X, source)
        ids = None
        if self.id_column_ is not None:
            ids = frame[self.id_column_].iloc[rows].reset_index(drop=True)
        report.n_rows_used = int(rows.size)
        report.rows_dropped_missing = int(len(frame) - rows.size)
        return PreparedData(X=X, rows=rows, ids=ids, report=report)

    def fit_transform(self, frame: pd.DataFrame, *, source: str = "the table") -> PreparedData:
        """Fit on ``frame`` and transform it; the result equals ``fit(frame).transform(frame)``."""
        return self.fit(frame, source=source).transform(frame, source=source)

    def original_units(self, frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """The features of ``rows`` as the user knows them, for profiling.

        Numeric columns are the raw values (missing ones stay missing); each
        categorical level becomes a 0/1 column named ``column=level``.
        """
        self._check_fitted()
        out = {}
        for name in self.numeric_columns_:
            out[name] = pd.to_numeric(frame[name].iloc[rows], errors="coerce").to_numpy(dtype=np.float64)
        for name, levels in self.categories_.items():
            text = _as_text(frame[name].iloc[rows])
            for level in levels:
                column = (text == level).to_numpy(dtype=np.float64)
                column[text.isna().to_numpy()] = np.nan
                out[f"{name}={level}"] = column
        return pd.DataFrame(out)

    @property
    def input_columns_(self) -> list[str]:
        """The columns a table must have for :meth:`transform`."""
        self._check_fitted()
        ids = [self.id_column_] if self.id_column_ is not None else []
        return ids + list(self.numeric_columns_) + list(self.categories_)

    def _level_groups(self, offset: int) -> list[slice]:
        """Where each categorical column's one-hot block sits in the matrix."""
        groups = []
        for levels in self.categories_.values():
            groups.append(slice(offset, offset + len(levels)))
            offset += len(levels)
        return groups

    def _impute_numeric(self, values: np.ndarray, numeric: list[str]) -> np.ndarray:
        values = values.copy()
        for j, name in enumerate(numeric):
            bad = ~np.isfinite(values[:, j])
            if bad.any():
                values[bad, j] = self.impute_values_[name]
        return values

    def _apply_log(self, values: np.ndarray) -> np.ndarray:
        position = self._numeric_positions()
        for name in self.log_columns_:
            j = position[name]
            # New customers below the training minimum are raised to it, so that
            # the log stays defined for any value a model meets later.
            values[:, j] = np.log1p(np.maximum(values[:, j], self.log_floor_[name]))
        return values

    def _apply_clip(self, values: np.ndarray) -> np.ndarray:
        position = self._numeric_positions()
        for name, (low, high) in self.clip_bounds_.items():
            j = position[name]
            np.clip(values[:, j], low, high, out=values[:, j])
        return values

    def _numeric_positions(self) -> dict[str, int]:
        return {name: j for j, name in enumerate(self.numeric_columns_)}

    def _one_hot(self, cats: dict[str, pd.Series], n_rows: int) -> tuple[np.ndarray, dict[str, int]]:
        blocks, unknown = [], {}
        for name, series in cats.items():
            levels = self.categories_[name]
            codes = pd.Index(levels).get_indexer(series.to_numpy(dtype=object))
            block = np.zeros((len(series), len(levels)))
            known = codes >= 0
            block[np.flatnonzero(known), codes[known]] = 1.0
            if (~known).any():
                unknown[name] = int((~known).sum())
            blocks.append(block)
        if not blocks:
            return np.zeros((n_rows, 0)), unknown
        return np.hstack(blocks), unknown

    def _check_finite(self, X: np.ndarray, source: str) -> None:
        """A scaled value (or a centre or spread) beyond float64's range is an error naming
        its column, never a silent infinity."""
        finite = np.isfinite(X).all(axis=0)
        if finite.all():
            return
        j = int(np.flatnonzero(~finite)[0])
        name = self.feature_names_out_[j]
        raise InputError(
            f"column {name!r} in {source} holds values too large to scale in float64 "
            f"(centre {self.center_[j]:.3g}, spread {self.scale_[j]:.3g}); divide it by a power of ten first"
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "center_"):
            raise RuntimeError("this Preprocessor is not fitted yet; call fit first")

    # ------------------------------------------------------------ saving

    def to_dict(self) -> dict:
        """Everything needed to re-apply the fitted preprocessing, as JSON-ready data."""
        self._check_fitted()
        return {
            "id_column": self.id_column_,
            "numeric_columns": list(self.numeric_columns_),
            "categories": {k: list(v) for k, v in self.categories_.items()},
            "missing": self.missing,
            "impute_values": dict(self.impute_values_),
            "category_fill": {k: self.category_fill_[k] for k in self.categories_},
            "log_columns": list(self.log_columns_),
            "log_floor": dict(self.log_floor_),
            "clip": self.clip,
            "clip_bounds": dict(self.clip_bounds_),
            "scale": self.scale,
            "center": self.center_.tolist(),
            "scale_values": self.scale_.tolist(),
            "feature_names_out": list(self.feature_names_out_),
            "constant_columns": list(self.report_.constant_columns),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessor":
        """Rebuild a fitted preprocessor from :meth:`to_dict`'s output.

        Raises
        ------
        InputError
            If a field is missing, unknown, of the wrong type or not finite, or the
            fields disagree (see :func:`_check_fitted_fields`); the message names
            the field as ``preprocessing.<field>``.
        """
        fields = read_record(data, _FITTED_FIELDS, "preprocessing")
        _check_fitted_fields(fields)
        prep = cls(
            columns=list(fields["numeric_columns"]),
            id_column=fields["id_column"],
            categorical=list(fields["categories"]),
            missing=fields["missing"],
            log=list(fields["log_columns"]),
            clip=fields["clip"],
            scale=fields["scale"],
        )
        prep.id_column_ = fields["id_column"]
        prep.numeric_columns_ = fields["numeric_columns"]
        prep.categories_ = fields["categories"]
        prep.impute_values_ = fields["impute_values"]
        prep.category_fill_ = fields["category_fill"]
        prep.log_columns_ = fields["log_columns"]
        prep.log_floor_ = fields["log_floor"]
        prep.clip_bounds_ = fields["clip_bounds"]
        prep.center_ = fields["center"]
        prep.scale_ = fields["scale_values"]
        prep.feature_names_out_ = fields["feature_names_out"]
        prep.report_ = PreprocessReport(
            id_column=prep.id_column_,
            numeric_columns=list(prep.numeric_columns_),
            categorical_columns=list(prep.categories_),
            constant_columns=fields["constant_columns"],
            log_columns=list(prep.log_columns_),
        )
        return prep


#: What :meth:`Preprocessor.to_dict` writes, field by field, as :func:`read_record` checks it.
_FITTED_FIELDS = {
    "id_column": optional(text),
    "numeric_columns": names,
    "categories": mapping(names),
    "missing": one_of(*MISSING_POLICIES),
    "impute_values": mapping(number),
    "category_fill": mapping(text),
    "log_columns": names,
    "log_floor": mapping(number),
    "clip": optional(number),
    "clip_bounds": mapping(list_of(number, length=2)),
    "scale": one_of(*SCALERS),
    "center": numbers,
    "scale_values": numbers,
    "feature_names_out": names,
    "constant_columns": names,
}


def _check_fitted_fields(fields: dict) -> None:
    """The rules between the fields of a fitted preprocessor, which no type check sees.

    Each one keeps :meth:`Preprocessor.transform` from failing or, worse, quietly
    turning every row into the same point (a zero scale, an inverted clip range).
    """
    numeric, categories = fields["numeric_columns"], fields["categories"]
    id_column = fields["id_column"]
    both = [name for name in numeric if name in categories]
    if both:
        raise InputError(f"column {both[0]!r} is both numeric and categorical")
    if id_column is not None and (id_column in numeric or id_column in categories):
        raise InputError(f"the ID column {id_column!r} is also a feature column")
    if not numeric and not categories:
        raise InputError("preprocessing has no feature columns")
    for name, levels in categories.items():
        if not levels:
            raise InputError(f"categorical column {name!r} has no levels")

    check_keys(fields["impute_values"], numeric, "preprocessing.impute_values", "numeric column")
    check_keys(fields["category_fill"], categories, "preprocessing.category_fill", "categorical column")
    for name, fill in fields["category_fill"].items():
        if fill not in categories[name]:
            raise InputError(f"the fill value {fill!r} of {name!r} is not one of its levels")

    outside = [name for name in fields["log_columns"] if name not in numeric]
    if outside:
        raise InputError(f"log column {outside[0]!r} is not a numeric column")
    check_keys(fields["log_floor"], fields["log_columns"], "preprocessing.log_floor", "log column")
    for name, floor in fields["log_floor"].items():
        if floor <= -1:
            raise InputError(f"log floor of {name!r} is {floor}; log1p needs values above -1")

    clip = fields["clip"]
    if clip is None and fields["clip_bounds"]:
        raise InputError("preprocessing.clip is null but preprocessing.clip_bounds is not empty")
    if clip is not None:
        if not 0.0 < clip < 0.5:
            raise InputError(f"preprocessing.clip is {clip}; a clip quantile lies between 0 and 0.5")
        check_keys(fields["clip_bounds"], numeric, "preprocessing.clip_bounds", "numeric column")
    for name, (low, high) in fields["clip_bounds"].items():
        if low > high:
            raise InputError(f"clip bounds of {name!r} are inverted ({low} > {high})")

    features = numeric + [f"{name}={level}" for name, levels in categories.items() for level in levels]
    listed = fields["feature_names_out"]
    if listed != features:
        at = next(
            i for i in range(max(len(listed), len(features))) if listed[i : i + 1] != features[i : i + 1]
        )
        raise InputError(
            f"preprocessing.feature_names_out[{at}] is {_nth(listed, at)} but the numeric columns "
            f"and category levels give {_nth(features, at)}"
        )
    for key in ("center", "scale_values"):
        count = len(fields[key])
        if count != len(features):
            raise InputError(f"preprocessing.{key} has {count} values for {len(features)} features")
    for name, value in zip(features, fields["scale_values"]):
        if value <= 0:
            raise InputError(f"scale of column {name!r} is {value:g}; a model needs positive scales")


def _nth(names: list[str], at: int) -> str:
    return repr(names[at]) if at < len(names) else "none"


# ---------------------------------------------------------------- helpers


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _as_text(series: pd.Series) -> pd.Series:
    """Categorical values as strings, with missing values kept missing.

    Whole numbers are written without a decimal part whatever their dtype, so
    that code 2 is level ``"2"`` both in a column of integers and in one of
    floats (a column of integers with a missing value is read as floats).
    """
    if _is_numeric(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        whole = np.all(values[finite] == np.round(values[finite])) and np.all(np.abs(values[finite]) < 2**53)
        if whole:
            text = np.full(len(values), None, dtype=object)
            text[finite] = values[finite].astype(np.int64).astype(str)
            return pd.Series(text, index=series.index, dtype="string")
    text = series.astype("string")
    return text.where(text.str.strip() != "", pd.NA)


def _level_order(level: str):
    """Levels that are numbers in numeric order (2 before 10), then the others alphabetically."""
    try:
        number = float(level)
    except ValueError:
        return (1, 0.0, level)
    return (0, number, level) if np.isfinite(number) else (1, 0.0, level)


def _code_levels(values: np.ndarray) -> np.ndarray | None:
    """The distinct values of a column that looks like codes, else None.

    Codes are whole numbers of moderate size, at least two and at most
    :data:`MAX_CODE_LEVELS` distinct ones, each seen twice on average: a tiny
    table of distinct amounts is not a column of codes.
    """
    finite = values[np.isfinite(values)]
    # Most columns fail on their first values; only columns that might be codes are sorted whole.
    if np.unique(finite[:1000]).size > MAX_CODE_LEVELS:
        return None
    if np.any(np.abs(finite) >= 2**31) or np.any(finite != np.round(finite)):
        return None
    levels = np.unique(finite)
    if not 2 <= levels.size <= MAX_CODE_LEVELS or 2 * levels.size > finite.size:
        return None
    return levels


#: Column names quoted in one warning; a wide table's long lists end in "and N more".
_NAMES_IN_A_WARNING = 10


def _columns_warning(names: list[str], one: str, many: str) -> str:
    """One warning line about one column or many (a wide table must not print thousands)."""
    if len(names) == 1:
        return f"column {names[0]!r} {one}"
    quoted = ", ".join(repr(name) for name in names[:_NAMES_IN_A_WARNING])
    if len(names) > _NAMES_IN_A_WARNING:
        quoted += f" and {len(names) - _NAMES_IN_A_WARNING:,} more"
    return f"columns {quoted} {many}"


def _check_unique_columns(frame: pd.DataFrame, source: str) -> None:
    duplicated = frame.columns[frame.columns.duplicated()]
    if len(duplicated):
        name = duplicated[0]
        places = [str(p) for p, other in enumerate(frame.columns, start=1) if other == name]
        raise InputError(
            f"{source} has more than one column named {name!r} (columns {', '.join(places[:-1])} "
            f"and {places[-1]}); rename all but one"
        )


def _check_named_once(names, option: str) -> None:
    if names is None or isinstance(names, str):
        return
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"column {name!r} is named twice in {option}")
        seen.add(name)


def _text_detail(series: pd.Series) -> str | None:
    """Why a column is text, in words: its first cell that is no number."""
    positions, present = number_formats.non_numbers(series.astype("string"))
    if positions.size == 0:
        return "its numbers mix formats (decimal separators, currencies)" if present else None
    first = int(positions[0])
    example = f"row {first + 1} holds {str(series.iloc[first])!r}"
    if positions.size * 2 < present:
        return f"mostly numbers, but {example}"
    return example


def _numeric_block(frame: pd.DataFrame, columns: list[str], source: str) -> np.ndarray:
    if not columns:
        return np.zeros((len(frame), 0))
    for name in columns:
        if not _is_numeric(frame[name]):
            raise InputError(_not_numeric_message(frame[name], name, source))
    # Column-major: every fitting step works column by column.
    return np.asfortranarray(frame[columns].to_numpy(dtype=np.float64, na_value=np.nan))


def _not_numeric_message(series: pd.Series, name: str, source: str) -> str:
    bad, _ = number_formats.non_numbers(series.astype("string"))
    example = ""
    if bad.size:
        example = f" (row {bad[0] + 1} has {str(series.iloc[bad[0]])!r})"
    return (
        f"column {name!r} in {source} is not numeric{example}; "
        f"list it with --categorical to one-hot encode it"
    )


def _missing(values: np.ndarray, numeric: list[str], cats: dict[str, pd.Series]):
    """Per-row mask of rows with any missing value, and the count per column."""
    bad = ~np.isfinite(values)
    mask = bad.any(axis=1) if values.shape[1] else np.zeros(len(values), dtype=bool)
    counts = {name: int(n) for name, n in zip(numeric, bad.sum(axis=0)) if n}
    for name, series in cats.items():
        isna = series.isna().to_numpy()
        if isna.any():
            counts[name] = int(isna.sum())
            mask = mask | isna
    return mask, counts


def _skewness(column: np.ndarray) -> float:
    # Skewness does not depend on scale; dividing by the largest magnitude keeps the
    # cubes finite and non-zero for values anywhere from 1e-300 to 1e300.
    magnitude = np.max(np.abs(column))
    if magnitude > 0:
        column = column / magnitude
    centered = column - column.mean()
    squared = centered * centered  # products, not **: numpy's pow is several times slower
    variance = squared.mean()
    if variance == 0:
        return 0.0
    return float(np.mean(squared * centered) / variance**1.5)


def _more_than_two_values(column: np.ndarray) -> bool:
    first = column[0]
    other = column[column != first]
    return other.size > 0 and bool((other != other[0]).any())


def _scaling(
    matrix: np.ndarray, scale: str, level_groups: list[slice]
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and spread of every column of ``matrix`` for the chosen scaler.

    One-hot blocks (``level_groups``) are not scaled level by level: that would
    make a three-level column weigh three times a numeric one and let the
    categories dominate the clustering. With the standard and robust scalers a
    block is centred and divided by the square root of its total variance, so
    that, as for a standardised numeric column, two random customers are on
    average at squared distance 2 in it. The other scalers leave 0/1 as it is.

    Every column is first divided by its largest magnitude, and its centre and
    spread multiplied back: squares and differences of values anywhere from
    1e-300 to 1e300 then neither overflow to infinity nor vanish to zero.
    """
    d = matrix.shape[1]
    if scale == "none":
        return np.zeros(d), np.ones(d)
    magnitude = np.max(np.abs(matrix), axis=0) if len(matrix) else np.ones(d)
    magnitude = np.where((magnitude > 0) & np.isfinite(magnitude), magnitude, 1.0)
    unit = matrix / magnitude
    if scale == "standard":
        center, spread = unit.mean(axis=0), unit.std(axis=0)
    elif scale == "robust":
        center = np.median(unit, axis=0)
        q1, q3 = np.quantile(unit, [0.25, 0.75], axis=0)
        spread = q3 - q1
        # A column that is mostly one value has no interquartile range; fall back
        # to its standard deviation rather than dividing by zero.
        spread = np.where(spread > 0, spread, unit.std(axis=0))
    else:  # minmax
        center = unit.min(axis=0)
        spread = unit.max(axis=0) - center
    with np.errstate(over="ignore"):  # beyond float64: an error in Preprocessor.fit
        center, spread = center * magnitude, spread * magnitude
    for block in level_groups:
        if scale == "minmax":
            center[block], spread[block] = 0.0, 1.0
        else:
            center[block] = matrix[:, block].mean(axis=0)
            spread[block] = np.sqrt(matrix[:, block].var(axis=0).sum())
    # Clipping can flatten a column completely; leave such a column unscaled.
    spread = np.where(spread > 0, spread, 1.0)
    return center, spread
