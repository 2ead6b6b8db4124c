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

Fitting reads the table twice and never holds it whole (see
:mod:`~gpukmeans.segmentation.prepare`). The first pass gathers
:class:`~gpukmeans.segmentation.statistics.TableStatistics`, from which
:meth:`Preprocessor.learn` decides every step: which columns, codes and constants
from exact counts, the log transforms from exact skewness, the imputation values
and clipping bounds from medians and quantiles of a uniform sample (exact when the
table has at most :data:`~gpukmeans.segmentation.statistics.SAMPLE_ROWS` rows).
The second pass transforms the rows (:mod:`~gpukmeans.segmentation.transform`)
and measures the transformed columns exactly; :meth:`Preprocessor.finish` takes
their means and standard deviations for the standard scaler.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import numbers as number_formats
from ._fields import check_keys, list_of, mapping, names, number, numbers, one_of, optional, read_record, text
from .errors import InputError
from .statistics import MAX_CODE_LEVELS, MAX_LEVELS, Moments, SampleRows, TableStatistics
from .tables import NUMBER, TEXT, Batch
from .transform import MISSING_CODE, TransformParameters

SCALERS = ("standard", "robust", "minmax", "none")
MISSING_POLICIES = ("impute", "drop")
#: Skewness above which ``log="auto"`` log-transforms a non-negative column.
SKEW_THRESHOLD = 1.0
#: ``scale="none"`` keeps a column's units, shifted by its median only when the
#: median is more than this many spreads from zero: float32 then keeps at least
#: 14 of its 24 bits for the differences between customers.
_OFFSET_SPREADS = 1024.0
#: ``scale="none"`` divides a column by a power of two only when its values reach
#: beyond 2**100 or stay below 2**-100, far inside float32's range.
_MAGNITUDE_LIMIT = 100
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
        The matrix to cluster: float32 values (what the engine clusters), widened.
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
        range, to [0, 1], or none (a column far from zero is then shifted by its
        median, one beyond float32's comfortable range divided by a power of two).

    Attributes
    ----------
    id_column_ : str or None
    numeric_columns_ : list of str
        Numeric input columns kept as features (constant ones removed).
    categories_ : dict of str to list of str
        The levels of each categorical column, in one-hot order.
    feature_names_out_ : list of str
        Names of the columns of the transformed matrix.
    shift_, unit_ : ndarray of shape (n_features,)
        The conditioning of each feature, ``g = (v - shift) / unit``.
    center_, scale_ : ndarray of shape (n_features,)
        The final centring and scaling of the conditioned values ``g``.
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

    # ------------------------------------------------------------ tables in memory

    def fit(self, frame: pd.DataFrame, *, source: str = "the table") -> "Preprocessor":
        """Learn every preprocessing step from ``frame``.

        ``source`` names the table in error messages (the file path, usually).
        """
        self.fit_transform(frame, source=source)
        return self

    def fit_transform(self, frame: pd.DataFrame, *, source: str = "the table") -> PreparedData:
        """Fit on ``frame`` and transform it; the result equals ``fit(frame).transform(frame)``."""
        from .prepare import prepare_table
        from .tables import TableReader

        reader = TableReader.open(frame, name=source)
        prepared = prepare_table(self, reader, device="cpu")
        return self._prepared_data(frame, prepared.X.numpy(), prepared.rows, self.report_)

    def transform(self, frame: pd.DataFrame, *, source: str = "the table") -> PreparedData:
        """Apply the fitted steps to ``frame`` (training rows or new customers).

        Raises
        ------
        InputError
            If ``frame`` lacks a column the preprocessor was fitted with, or a
            numeric column holds text.
        """
        from .prepare import transform_table
        from .tables import TableReader

        self._check_fitted()
        missing_columns = [c for c in self.input_columns_ if c not in {str(c) for c in frame.columns}]
        if missing_columns:
            raise InputError(
                f"{source} lacks column(s) the model was trained on: {', '.join(missing_columns)}"
            )
        reader = TableReader.open(frame, name=source)
        transformed = transform_table(self, reader, device="cpu")
        report = PreprocessReport(
            n_rows=len(frame),
            id_column=self.id_column_,
            numeric_columns=list(self.numeric_columns_),
            categorical_columns=list(self.categories_),
            constant_columns=list(self.report_.constant_columns),
            log_columns=list(self.log_columns_),
            missing_counts=transformed.missing_counts,
            unknown_levels=transformed.unknown_levels,
        )
        return self._prepared_data(frame, transformed.X.numpy(), transformed.rows, report)

    def _prepared_data(self, frame, X, rows, report) -> PreparedData:
        rows = np.arange(len(frame)) if rows is None else rows
        ids = None
        if self.id_column_ is not None:
            column = frame.reset_index(drop=True).set_axis([str(c) for c in frame.columns], axis=1)[self.id_column_]
            ids = column.iloc[rows].reset_index(drop=True)
        report.n_rows_used = int(rows.size)
        report.rows_dropped_missing = int(len(frame) - rows.size)
        return PreparedData(X=X.astype(np.float64), rows=rows, ids=ids, report=report)

    # ------------------------------------------------------------ fitting

    def start(self, header: Sequence[str], source: str) -> str | None:
        """Check the parameters against the table's header before it is read; return
        the ID column when it is known by name (read untouched, never as a feature)."""
        self._validate_params()
        for name in self.categorical:
            if name not in header:
                raise InputError(f"categorical column {name!r} not found in {source}")
        if self.id_column == "auto":
            named = next((name for name in header if looks_like_id(name)), None)
        elif self.id_column is None:
            named = None
        else:
            if self.id_column not in header:
                raise InputError(f"ID column {self.id_column!r} not found in {source}")
            named = self.id_column
        if named is not None and named in self.categorical:
            raise InputError(f"column {named!r} is the ID column and cannot be categorical")
        if self.columns is not None:
            for name in self.columns:
                if name not in header:
                    raise InputError(f"column {name!r} not found in {source}")
                if name == named:
                    raise InputError(f"column {name!r} is the ID column; give --id-column to name another")
        return named

    def columns_to_read(self, header: Sequence[str], id_column: str | None) -> list[str]:
        """The columns the statistics pass reads: every one but the ID, or the named ones."""
        if self.columns is None:
            return [name for name in header if name != id_column]
        return list(dict.fromkeys(list(self.columns) + list(self.categorical)))

    def learn(self, stats: TableStatistics, *, header: Sequence[str], kinds: dict[str, str],
              id_column: str | None, source: str) -> None:
        """Decide every step from the statistics pass (the first of two fitting steps).

        ``kinds`` says how each column read: "number", "text" or "other". The
        scaling's final centre and scale wait for :meth:`finish`.
        """
        report = PreprocessReport(n_rows=stats.n_rows)
        if stats.n_rows == 0:
            raise InputError(f"{source} has a header but no data rows")
        sample = stats.sample.rows()
        if id_column is None and self.id_column == "auto":
            id_column = _distinct_text_column(header, kinds, stats, sample)
            if id_column is not None and id_column in self.categorical:
                raise InputError(f"column {id_column!r} is the ID column and cannot be categorical")
        self.id_column_ = id_column
        report.id_column = id_column
        if id_column is not None:
            report.leave_out(id_column, "ID column")
        numeric, categorical = self._resolve_features(header, kinds, stats, source, report)
        self.features_read_ = numeric + categorical
        report.missing_counts = {
            name: count for name in numeric + categorical if (count := _missing_count(stats, name))
        }
        if stats.n_kept == 0:
            raise InputError(f"every row of {source} has a missing value; try without --drop-missing")

        self.impute_values_ = {name: self._impute_value(name, stats, sample, source) for name in numeric}
        level_counts = {name: _level_counts(stats, name, source) for name in categorical}
        self.category_fill_ = {name: _most_frequent(counts, name, source) for name, counts in level_counts.items()}

        constant = [name for name in numeric if stats.numbers[name].low == stats.numbers[name].high]
        constant += [name for name, counts in level_counts.items() if len(counts) <= 1]
        for name in constant:
            report.leave_out(name, "constant")
        if constant:
            report.warnings.append(_columns_warning(constant, "is constant and was left out",
                                                    "are constant and were left out"))
        report.constant_columns = constant
        numeric = [name for name in numeric if name not in constant]
        level_counts = {name: counts for name, counts in level_counts.items() if name not in constant}
        if not numeric and not level_counts:
            raise InputError(f"{source} has no non-constant columns to cluster")

        self.numeric_columns_ = numeric
        self.log_columns_ = self._choose_log_columns(stats, numeric, source)
        report.log_columns = list(self.log_columns_)
        self.log_floor_ = {name: float(stats.numbers[name].low) for name in self.log_columns_}
        transformed = {name: self._sample_values(name, sample) for name in numeric}
        self.clip_bounds_ = {}
        if self.clip is not None:
            for name, values in transformed.items():
                low, high = np.quantile(values, [self.clip, 1.0 - self.clip])
                self.clip_bounds_[name] = [float(low), float(high)]
                np.clip(values, low, high, out=values)

        self.categories_ = {}
        for name, counts in level_counts.items():
            if len(counts) > MAX_LEVELS:
                raise InputError(
                    f"categorical column {name!r} in {source} has {len(counts)} distinct values, "
                    f"more than {MAX_LEVELS}; it looks like an identifier or free text"
                )
            self.categories_[name] = sorted(counts, key=_level_order)
        self.feature_names_out_ = numeric + [
            f"{name}={level}" for name, levels in self.categories_.items() for level in levels
        ]
        self._condition(stats, transformed, level_counts, source)

        report.numeric_columns = list(numeric)
        report.categorical_columns = list(self.categories_)
        report.n_rows_used = int(stats.n_kept)
        report.rows_dropped_missing = int(stats.n_rows - stats.n_kept)
        self.report_ = report

    def finish(self, moments: np.ndarray, source: str = "the table") -> None:
        """Take the final centre and scale from the transform pass (the second fitting step).

        ``moments`` holds, per feature, the count, mean, sum of squared deviations,
        minimum and maximum of the conditioned values over the kept rows.
        """
        center = np.zeros(len(self.feature_names_out_))
        scale = np.ones(len(self.feature_names_out_))
        if self.scale == "standard":
            n_numeric = len(self.numeric_columns_)
            count = np.maximum(moments[:n_numeric, 0], 1.0)
            center[:n_numeric] = moments[:n_numeric, 1]
            spread = np.sqrt(moments[:n_numeric, 2] / count)
            scale[:n_numeric] = np.where(spread > 0, spread, 1.0)
        self.center_, self.scale_ = center, scale
        with np.errstate(over="ignore", invalid="ignore"):
            reach = np.maximum(np.abs(moments[:, 3] - center), np.abs(moments[:, 4] - center)) / scale
        too_large = ~(reach <= np.finfo(np.float32).max)
        if too_large.any():
            j = int(np.flatnonzero(too_large)[0])
            raise InputError(
                f"column {self.feature_names_out_[j]!r} in {source} holds values too large to scale "
                f"in float32 (centre {self.shift_[j]:.3g}, spread {self.unit_[j]:.3g}); "
                f"divide it by a power of ten first"
            )

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

    def _resolve_features(self, header, kinds, stats, source, report):
        """The numeric and categorical feature columns; what is left out goes in ``report``."""
        categorical = list(self.categorical)
        if self.columns is not None:
            numeric = []
            for name in self.columns:
                if name in categorical:
                    continue
                if kinds.get(name) != NUMBER:
                    raise InputError(_not_numeric_message(stats.texts.get(name), name, source))
                numeric.append(name)
        else:
            numeric, codes = self._numeric_columns_found(header, kinds, stats, report)
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

    def _numeric_columns_found(self, header, kinds, stats, report):
        """Every numeric column but the ID and the categorical ones, and the columns of codes among them."""
        numeric, codes, empty, look_alikes = [], [], [], {}
        for name in header:
            if name == self.id_column_ or name in self.categorical:
                continue
            if kinds.get(name) != NUMBER:
                report.excluded_columns.append(name)
                text = stats.texts.get(name)
                report.leave_out(name, "not numeric", _text_detail(text) if text is not None else None)
                continue
            column = stats.numbers[name]
            if column.finite == 0:
                report.leave_out(name, "no values")
                empty.append(name)
                continue
            levels = _code_levels(column)
            if levels is not None and looks_like_code_name(name):
                codes.append(name)
                continue
            # A 0/1 flag is clustered alike as a number or as two levels: only others are flagged.
            if levels is not None and not set(levels) <= {0.0, 1.0}:
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

    def _impute_value(self, name: str, stats: TableStatistics, sample: SampleRows, source: str) -> float:
        """The median of the column's values in the kept rows (of the sample, above its size)."""
        column = stats.numbers[name]
        if column.count == 0:
            raise InputError(f"column {name!r} in {source} has no values")
        values = sample.numbers[name][sample.kept]
        observed = values[np.isfinite(values)]
        if observed.size == 0:
            # So few values that the sample holds none: their exact mean stands in.
            return _mean(column.moments)
        return float(np.median(observed))

    def _choose_log_columns(self, stats: TableStatistics, numeric: list[str], source: str) -> list[str]:
        if isinstance(self.log, str):
            if self.log == "none":
                return []
            chosen = []
            for name in numeric:
                column = stats.numbers[name]
                fill = self.impute_values_[name]
                imputed = column.moments.merged(Moments.of_constant(fill, column.kept_missing))
                if column.low >= 0 and imputed.skewness() > SKEW_THRESHOLD and _more_than_two_values(column, fill):
                    chosen.append(name)
            return chosen
        chosen = []
        for name in self.log:
            if name not in numeric:
                raise InputError(f"cannot log-transform {name!r}: it is not a numeric feature column")
            if stats.numbers[name].low <= -1:
                raise InputError(f"cannot log-transform {name!r} in {source}: it has values <= -1")
            chosen.append(name)
        return chosen

    def _sample_values(self, name: str, sample: SampleRows) -> np.ndarray:
        """The column's values in the sample's kept rows, imputed and logged (float64)."""
        values = sample.numbers[name][sample.kept].copy()
        values[~np.isfinite(values)] = self.impute_values_[name]
        if name in self.log_columns_:
            values = np.log1p(np.maximum(values, self.log_floor_[name]))
        return values

    def _condition(self, stats, transformed, level_counts, source) -> None:
        """``shift_`` and ``unit_`` of every feature (see :mod:`.transform`), the final
        centre 0 and scale 1 until :meth:`finish`."""
        shift, unit = [], []
        for name in self.numeric_columns_:
            column_shift, column_unit = self._numeric_conditioning(name, stats, transformed[name])
            shift.append(column_shift)
            unit.append(column_unit)
        for name, levels in self.categories_.items():
            counts = np.array([level_counts[name].get(level, 0) for level in levels], dtype=np.float64)
            counts[levels.index(self.category_fill_[name])] += _kept_missing(stats, name)
            if self.scale in ("standard", "robust"):
                # The block as a whole weighs as much as one standardised column.
                share = counts / max(counts.sum(), 1.0)
                spread = float(np.sqrt(np.sum(share * (1.0 - share))))
                shift += share.tolist()
                unit += [spread if spread > 0 else 1.0] * len(levels)
            else:
                shift += [0.0] * len(levels)
                unit += [1.0] * len(levels)
        self.shift_, self.unit_ = np.asarray(shift, dtype=np.float64), np.asarray(unit, dtype=np.float64)
        self.center_ = np.zeros(self.shift_.size)
        self.scale_ = np.ones(self.shift_.size)
        bad = ~(np.isfinite(self.shift_) & np.isfinite(self.unit_) & (self.unit_ > 0))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"column {self.feature_names_out_[j]!r} in {source} holds values too large to scale in float64 "
                f"(centre {self.shift_[j]:.3g}, spread {self.unit_[j]:.3g}); divide it by a power of ten first"
            )

    def _numeric_conditioning(self, name: str, stats: TableStatistics, values: np.ndarray) -> tuple[float, float]:
        """(shift, unit) of one numeric column; ``values``: its transformed sample."""
        column = stats.numbers[name]
        low, high = self._transformed(name, column.low), self._transformed(name, column.high)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.scale == "minmax":
                return low, _positive(high - low)
            if self.scale == "standard":
                if name not in self.log_columns_ and not self.clip_bounds_:
                    # Without a log or clipping the kept values' moments are exact.
                    imputed = column.moments.merged(Moments.of_constant(self.impute_values_[name], column.kept_missing))
                    return _mean(imputed), _positive(_std(imputed))
                return float(np.mean(values)), _positive(_unit_std(values))
            median = float(np.median(values))
            q1, q3 = np.quantile(values, [0.25, 0.75])
            spread = float(q3 - q1)
            if self.scale == "robust":
                # A column that is mostly one value has no interquartile range; fall
                # back to its standard deviation rather than dividing by zero.
                return median, _positive(spread if spread > 0 else _unit_std(values))
            spread = spread if spread > 0 else _unit_std(values)
            shift = median if abs(median) > _OFFSET_SPREADS * spread else 0.0
            reach = max(abs(low - shift), abs(high - shift))
            exponent = math.frexp(reach)[1] if reach > 0 and np.isfinite(reach) else 0
            unit = math.ldexp(1.0, exponent) if abs(exponent) > _MAGNITUDE_LIMIT else 1.0
            return shift, unit

    def _transformed(self, name: str, value: float) -> float:
        """One value through imputation-free steps 2 and 3 (log, clip): for the extremes."""
        if name in self.log_columns_:
            value = math.log1p(max(value, self.log_floor_[name]))
        if name in self.clip_bounds_:
            low, high = self.clip_bounds_[name]
            value = min(max(value, low), high)
        return float(value)

    # ------------------------------------------------------------ applying

    def parameters(self) -> TransformParameters:
        """The fitted steps as arrays, for :mod:`~gpukmeans.segmentation.transform`."""
        self._check_fitted()
        numeric = self.numeric_columns_
        sizes = [len(levels) for levels in self.categories_.values()]
        offsets = len(numeric) + np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        clip = [self.clip_bounds_.get(name, [-np.inf, np.inf]) for name in numeric]
        return TransformParameters(
            impute=np.array([self.impute_values_[n] for n in numeric], dtype=np.float64),
            log=np.array([n in self.log_columns_ for n in numeric], dtype=np.bool_),
            floor=np.array([self.log_floor_.get(n, -np.inf) for n in numeric], dtype=np.float64),
            low=np.array([c[0] for c in clip], dtype=np.float64).reshape(-1),
            high=np.array([c[1] for c in clip], dtype=np.float64).reshape(-1),
            fill=np.array([levels.index(self.category_fill_[name]) for name, levels in self.categories_.items()],
                          dtype=np.int32),
            offsets=offsets,
            shift=np.asarray(self.shift_, dtype=np.float64),
            unit=np.asarray(self.unit_, dtype=np.float64),
            center=np.asarray(self.center_, dtype=np.float64),
            scale=np.asarray(self.scale_, dtype=np.float64),
        )

    def level_values(self, *, present: bool = True) -> np.ndarray:
        """For each one-hot column, the float32 value of its rows where the level is
        present (or absent), computed as :mod:`~gpukmeans.segmentation.transform` does."""
        params = self.parameters()
        first = len(self.numeric_columns_)
        g = ((1.0 if present else 0.0) - params.shift[first:]) / params.unit[first:]
        return ((g.astype(np.float32).astype(np.float64) - params.center[first:]) / params.scale[first:]).astype(
            np.float32
        )

    def numeric_values(self, batch: Batch, source: str) -> list[np.ndarray]:
        """The batch's numeric feature columns, in order; text in one is an error naming the row."""
        values = []
        for name in self.numeric_columns_:
            if name not in batch.numbers:
                raise InputError(_not_numeric_message(_first_text(batch, name), name, source))
            values.append(np.ascontiguousarray(batch.numbers[name], dtype=np.float64))
        return values

    def category_codes(self, batch: Batch) -> np.ndarray:
        """Level index of every row in every categorical column (-1: a level the fit
        never saw; :data:`~.transform.MISSING_CODE`: missing), shape (n_categorical, n)."""
        codes = np.empty((len(self.categories_), batch.n_rows), dtype=np.int32)
        for c, (name, levels) in enumerate(self.categories_.items()):
            if name in batch.numbers:
                codes[c] = _numeric_codes(batch.numbers[name], levels)
            else:
                codes[c] = _text_codes(batch.texts[name], levels)
        return codes

    @property
    def input_columns_(self) -> list[str]:
        """The columns a table must have for :meth:`transform`."""
        self._check_fitted()
        ids = [self.id_column_] if self.id_column_ is not None else []
        return ids + list(self.numeric_columns_) + list(self.categories_)

    @property
    def feature_columns_(self) -> list[str]:
        """The input columns that become features (numeric, then categorical)."""
        self._check_fitted()
        return list(self.numeric_columns_) + list(self.categories_)

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
            "impute_values": {name: self.impute_values_[name] for name in self.numeric_columns_},
            "category_fill": {k: self.category_fill_[k] for k in self.categories_},
            "log_columns": list(self.log_columns_),
            "log_floor": dict(self.log_floor_),
            "clip": self.clip,
            "clip_bounds": dict(self.clip_bounds_),
            "scale": self.scale,
            "shift": np.asarray(self.shift_).tolist(),
            "unit": np.asarray(self.unit_).tolist(),
            "center": np.asarray(self.center_).tolist(),
            "scale_values": np.asarray(self.scale_).tolist(),
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
        # Files written before constant columns' imputation values were left out hold them too.
        fields["impute_values"] = {name: value for name, value in fields["impute_values"].items()
                                   if name not in fields["constant_columns"]}
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
        prep.shift_ = fields["shift"]
        prep.unit_ = fields["unit"]
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
    "shift": numbers,
    "unit": numbers,
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
    for key in ("shift", "unit", "center", "scale_values"):
        count = len(fields[key])
        if count != len(features):
            raise InputError(f"preprocessing.{key} has {count} values for {len(features)} features")
    for key, what in (("unit", "unit"), ("scale_values", "scale")):
        for name, value in zip(features, fields[key]):
            if value <= 0:
                raise InputError(f"{what} of column {name!r} is {value:g}; a model needs positive scales")


def _nth(names: list[str], at: int) -> str:
    return repr(names[at]) if at < len(names) else "none"


# ---------------------------------------------------------------- deciding from statistics


def _distinct_text_column(header, kinds, stats: TableStatistics, sample: SampleRows) -> str | None:
    """The first text column whose values are all present and, in the sample, distinct."""
    import pyarrow.compute as pc

    for name in header:
        if kinds.get(name) != TEXT or name not in stats.texts or stats.n_rows < 2:
            continue
        if stats.texts[name].missing == 0 and name in sample.texts:
            values = sample.texts[name]
            if pc.count_distinct(values).as_py() == len(values):
                return name
    return None


def _missing_count(stats: TableStatistics, name: str) -> int:
    column = stats.numbers.get(name) or stats.texts.get(name)
    return int(column.missing) if column is not None else 0


def _kept_missing(stats: TableStatistics, name: str) -> int:
    column = stats.numbers.get(name) or stats.texts.get(name)
    return int(column.kept_missing) if column is not None else 0


def _level_counts(stats: TableStatistics, name: str, source: str) -> dict[str, int]:
    """Count of every level of a categorical column over the kept rows, as text."""
    if name in stats.texts:
        return dict(stats.texts[name].levels or {})
    levels = stats.numbers[name].levels
    if levels is None:
        raise InputError(
            f"categorical column {name!r} in {source} has more than {MAX_LEVELS} distinct values; "
            f"it looks like an identifier or free text"
        )
    # Whole numbers are written without a decimal part, so that code 2 is level "2"
    # whether the column holds integers or floats (integers with a gap read as floats).
    whole = all(value == round(value) and abs(value) < 2**53 for value in levels)
    return {(str(int(value)) if whole else str(float(value))): count for value, count in levels.items()}


def _most_frequent(counts: dict[str, int], name: str, source: str) -> str:
    if not counts:
        raise InputError(f"column {name!r} in {source} has no values")
    top = max(counts.values())
    return sorted(level for level, count in counts.items() if count == top)[0]


def _code_levels(column) -> list[float] | None:
    """The distinct values of a column that looks like codes, else None.

    Codes are whole numbers of moderate size, at least two and at most
    :data:`MAX_CODE_LEVELS` distinct ones, each seen twice on average: a tiny
    table of distinct amounts is not a column of codes.
    """
    if column.codes is None or not 2 <= len(column.codes) <= MAX_CODE_LEVELS:
        return None
    if 2 * len(column.codes) > column.finite:
        return None
    return sorted(column.codes)


def _more_than_two_values(column, fill: float) -> bool:
    """Whether the imputed column takes more than two values (a 0/1 flag is never logged)."""
    if column.levels is None:
        return True
    values = set(column.levels)
    if column.kept_missing:
        values.add(fill)
    return len(values) > 2


def _mean(moments: Moments) -> float:
    return math.ldexp(moments.mean, moments.exponent)


def _std(moments: Moments) -> float:
    if moments.count == 0:
        return 0.0
    return math.ldexp(math.sqrt(moments.m2 / moments.count), moments.exponent)


def _unit_std(values: np.ndarray) -> float:
    """Standard deviation of ``values`` computed in units of their largest magnitude,
    so that squares of values near 1e300 or 1e-300 neither overflow nor vanish."""
    magnitude = float(np.max(np.abs(values))) if values.size else 0.0
    if magnitude == 0 or not np.isfinite(magnitude):
        return 0.0 if magnitude == 0 else math.inf
    exponent = math.frexp(magnitude)[1]
    return math.ldexp(float(np.std(np.ldexp(values, -exponent))), exponent)


def _positive(spread: float) -> float:
    """A spread to divide by: zero (a column clipping flattened) becomes 1."""
    return spread if spread != 0 else 1.0


# ---------------------------------------------------------------- applying


def _numeric_codes(values: np.ndarray, levels: list[str]) -> np.ndarray:
    """Level index of numeric values whose levels are numbers written as text."""
    level_values = np.array([_as_number(level) for level in levels])
    order = np.argsort(level_values, kind="stable")
    ordered = level_values[order]
    at = np.clip(np.searchsorted(ordered, values), 0, max(len(levels) - 1, 0))
    found = ordered[at] == values if len(levels) else np.zeros(values.size, dtype=bool)
    codes = np.where(found, order[at], -1).astype(np.int32)
    codes[~np.isfinite(values)] = MISSING_CODE
    return codes


def _as_number(level: str) -> float:
    try:
        return float(level)
    except ValueError:
        return math.nan


def _text_codes(texts, levels: list[str]) -> np.ndarray:
    """Level index of text values (string or dictionary arrays)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(levels, type=pa.string())
    if pa.types.is_dictionary(texts.type):
        entries = pc.index_in(texts.dictionary, value_set=value_set).fill_null(-1).to_numpy(zero_copy_only=False)
        indices = texts.indices
        codes = entries[indices.fill_null(0).to_numpy(zero_copy_only=False)].astype(np.int32) if len(entries) \
            else np.full(len(texts), -1, dtype=np.int32)
        codes[indices.is_null().to_numpy(zero_copy_only=False)] = MISSING_CODE
        return codes
    codes = pc.index_in(texts, value_set=value_set).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    codes[texts.is_null().to_numpy(zero_copy_only=False)] = MISSING_CODE
    return codes


def _first_text(batch: Batch, name: str) -> tuple[int, str] | None:
    """Row (in the table) and content of the first cell of ``name`` that is no number."""
    texts = batch.texts.get(name) if name in batch.texts else batch.raw.get(name)
    if texts is None:
        return None
    import pyarrow as pa

    plain = texts.dictionary_decode() if pa.types.is_dictionary(texts.type) else texts
    positions, _ = number_formats.non_numbers(plain.cast(pa.string()))
    if positions.size == 0:
        return None
    first = int(positions[0])
    return batch.start + first, str(plain[first].as_py())


# ---------------------------------------------------------------- helpers


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _level_order(level: str):
    """Levels that are numbers in numeric order (2 before 10), then the others alphabetically."""
    try:
        number = float(level)
    except ValueError:
        return (1, 0.0, level)
    return (0, number, level) if np.isfinite(number) else (1, 0.0, level)


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


def _check_named_once(names, option: str) -> None:
    if names is None or isinstance(names, str):
        return
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"column {name!r} is named twice in {option}")
        seen.add(name)


def _text_detail(column) -> str | None:
    """Why a column is text, in words: its first cell that is no number."""
    if column.first_non_number is None:
        return "its numbers mix formats (decimal separators, currencies)" if column.looked else None
    row, value = column.first_non_number
    example = f"row {row + 1} holds {value!r}"
    if column.mostly_numbers:
        return f"mostly numbers, but {example}"
    return example


def _not_numeric_message(first, name: str, source: str) -> str:
    """``first``: a column's statistics, or (row, value) of its first non-number, or None."""
    if first is not None and not isinstance(first, tuple):
        first = first.first_non_number
    example = f" (row {first[0] + 1} has {first[1]!r})" if first else ""
    return (
        f"column {name!r} in {source} is not numeric{example}; "
        f"list it with --categorical to one-hot encode it"
    )
