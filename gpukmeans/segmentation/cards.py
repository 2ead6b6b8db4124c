"""One card per segment for ``report.html``: what a marketer reads first.

A card gives the segment's name, its size and share, how stable it is under
resampling and the rule that describes it (when the run computed them), the
:data:`TRAITS` features that most set it apart from the population, in the table's
own units and labels, and the most common level of each categorical column.

Traits are ranked by the standardised contrasts that name the segments (see
:func:`~gpukmeans.segmentation.profiles.trait_contrasts`), so a card and its name
agree; the figures they quote are the exact means of ``profiles.csv``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .profiles import MILD

if TYPE_CHECKING:
    from .pipeline import SegmentationResult

#: Traits listed on each card.
TRAITS = 5
#: Categorical columns whose leading level a card names.
CATEGORY_COLUMNS = 5

CARD_CSS = """
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:.8rem;margin:.6rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem;background:#fff}
.card h3{margin:.1rem 0 .3rem;font-size:1.02rem}.card .size{color:#555;font-size:.88rem;margin:0}
.card ul{padding-left:1.1rem;font-size:.88rem}.card .rule{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.82rem;background:#f6f6f6;padding:.2rem .4rem;border-radius:3px}
.card .stable{color:#2f7d3f}.card .pattern{color:#9a6b0b}.card .dissolves{color:#b3362c}
"""


def segment_cards(result: "SegmentationResult") -> str:
    """The HTML of every segment's card, in segment order."""
    summary = result.summary
    labels = summary.get("feature_labels") or {}
    column_labels = summary.get("labels") or {}
    categories = dict(getattr(result.model.preprocessor, "categories_", {}) or {})
    level_columns = {f"{column}={level}": column for column, levels in categories.items() for level in levels}
    profiles = result.profiles.set_index("segment")
    cards = [
        _card(item, result.contrasts.iloc[item["segment"]], profiles.loc[item["segment"]],
              labels, column_labels, categories, level_columns)
        for item in summary["segments"]
    ]
    return "<div class='cards'>" + "".join(cards) + "</div>"


def distinctive_features(contrasts: pd.Series, level_columns: dict | None = None, limit: int = TRAITS) -> list[str]:
    """Up to ``limit`` features whose contrast for one segment is largest and at least
    :data:`~gpukmeans.segmentation.profiles.MILD`, strongest first.

    ``level_columns`` maps each category-level feature (``"Genre=Female"``) to its
    column; a column gives at most one feature, since the levels of one column mirror
    each other: the level the segment holds most more of than the population when
    that stands out too ("100% Genre: Female" rather than "0% Genre: Male").
    """
    level_columns = level_columns or {}
    strength = np.nan_to_num(contrasts.abs().to_numpy(dtype=np.float64), nan=-1.0)
    features, columns_said = [], set()
    for j in np.argsort(-strength, kind="stable"):
        if len(features) == limit or strength[j] < MILD:
            break
        feature = contrasts.index[j]
        column = level_columns.get(feature, feature)
        if column in columns_said:
            continue
        columns_said.add(column)
        if feature in level_columns:
            feature = _most_over_represented(contrasts, feature, level_columns)
        features.append(feature)
    return features


def _most_over_represented(contrasts: pd.Series, feature: str, level_columns: dict) -> str:
    """Of ``feature``'s column, the level with the largest positive contrast, if it is
    at least MILD; else ``feature``."""
    siblings = [f for f, column in level_columns.items() if column == level_columns[feature] and f in contrasts]
    best = max(siblings, key=lambda f: np.nan_to_num(contrasts[f], nan=-np.inf))
    return best if contrasts[best] >= MILD else feature


def segment_traits(contrasts: pd.Series, profile: pd.Series, labels: dict, level_columns: dict | None = None,
                   limit: int = TRAITS) -> list[str]:
    """The :func:`distinctive_features` of one segment, each as a phrase such as
    ``"Annual Income (k$): 86.5 on average, 1.43x the population's 60.6"``."""
    level_columns = level_columns or {}
    return [
        _trait(labels.get(feature, feature), profile, feature, float(contrasts[feature]),
               is_level=feature in level_columns)
        for feature in distinctive_features(contrasts, level_columns, limit)
    ]


def leading_levels(
    profile: pd.Series, categories: dict, column_labels: dict, limit: int = CATEGORY_COLUMNS
) -> list[str]:
    """Per categorical column (the first ``limit``), its most common level in the segment
    and that level's share, e.g. ``"Country: United Kingdom (91%, 84% overall)"``."""
    phrases = []
    for column, levels in list(categories.items())[:limit]:
        shares = [(profile.get(f"{column}={level} mean", np.nan), level) for level in levels]
        shares = [(float(share), level) for share, level in shares if np.isfinite(share)]
        if not shares:
            continue
        share, level = max(shares, key=lambda pair: pair[0])
        overall = _population(profile, f"{column}={level}")
        against = f", {100 * overall:.0f}% overall" if overall is not None else ""
        phrases.append(f"{column_labels.get(column, column)}: {level} ({100 * share:.0f}%{against})")
    return phrases


def _card(item: dict, contrasts: pd.Series, profile: pd.Series, labels: dict, column_labels: dict,
          categories: dict, level_columns: dict) -> str:
    parts = [
        "<div class='card'>",
        f"<h3>{item['segment']}: {_e(item['name'])}</h3>",
        f"<p class='size'>{item['size']:,} customers, {100 * item['share']:.1f}% of those segmented</p>",
        "<ul>",
    ]
    if item.get("stability") is not None:
        parts.append(f"<li>{_stability(item)}</li>")
    if item.get("rule"):
        fidelity = item.get("rule_fidelity")
        selects = f" (selects {100 * fidelity:.0f}% of its customers)" if fidelity is not None else ""
        parts.append(f"<li>Rule: <span class='rule'>{_e(item['rule'])}</span>{selects}</li>")
    parts.append("</ul><b>Sets it apart</b><ul>")
    traits = segment_traits(contrasts, profile, labels, level_columns)
    parts += [f"<li>{_e(phrase)}</li>" for phrase in traits] or ["<li>close to the population on every feature</li>"]
    parts.append("</ul>")
    # A column whose level is already a trait is not repeated under "Most common".
    said = {level_columns[f] for f in distinctive_features(contrasts, level_columns) if f in level_columns}
    common = leading_levels(profile, {c: v for c, v in categories.items() if c not in said}, column_labels)
    if common:
        parts.append("<b>Most common</b><ul>" + "".join(f"<li>{_e(p)}</li>" for p in common) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


def _stability(item: dict) -> str:
    value = float(item["stability"])
    css = "stable" if value > 0.75 else "pattern" if value >= 0.6 else "dissolves"
    reading = item.get("stability_reading")
    said = f": {_e(reading)}" if reading else ""
    return f"Stability <span class='{css}'>{value:.2f}{said}</span>"


def _trait(label: str, profile: pd.Series, feature: str, contrast: float, *, is_level: bool) -> str:
    mean = profile.get(f"{feature} mean", np.nan)
    direction = "above" if contrast > 0 else "below"
    if not np.isfinite(mean):
        return f"{label}: {direction} the population"
    overall = _population(profile, feature)
    if is_level:
        against = f", against {100 * overall:.0f}% overall" if overall is not None else ""
        return f"{100 * mean:.0f}% {label}{against}"
    if overall is None or overall == 0:
        return (f"{label}: {format_mean(mean)} on average ({abs(contrast):.1f} standard deviations {direction} "
                "the population)")
    return f"{label}: {format_mean(mean)} on average, {mean / overall:.2f}x the population's {format_mean(overall)}"


def _population(profile: pd.Series, feature: str) -> float | None:
    """The population's mean of ``feature``: the segment mean over its ratio to it
    (None where that ratio is undefined, as for a population mean of zero)."""
    mean = profile.get(f"{feature} mean", np.nan)
    ratio = profile.get(f"{feature} vs population", np.nan)
    if not (np.isfinite(mean) and np.isfinite(ratio)) or ratio == 0:
        return None
    return float(mean / ratio)


def format_mean(value: float, *, is_share: bool = False) -> str:
    """A mean as the report shows it: a share as a percentage, a number with the digits
    its size calls for."""
    if not np.isfinite(value):
        return ""
    if is_share:
        return f"{100 * value:.0f}%"
    magnitude = abs(value)
    if magnitude >= 1e9 or 0 < magnitude < 0.01:
        return f"{value:.3g}"
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _e(value) -> str:
    return html.escape(str(value))
