"""``report.html``: one self-contained page (tables, PNG images inlined) about a segmentation.

The page opens with the number of segments, why that k, and how distinct the
segments are (the structure verdict, in one sentence), then a card per segment
(:mod:`~gpukmeans.segmentation.cards`) and each segment's rule in the table's own columns
with its fidelity. Features are shown by their
labels (see :mod:`~gpukmeans.segmentation.labels`), as in the segment names.

Figures: the elbow and the silhouette plots of the sweep (when k was chosen by
one), the per-segment silhouette of the chosen k, a 2-D PCA projection of a
sample coloured by segment with the centres, and a profile heatmap whose cells
show each segment's mean in original units, coloured by how far it is from the
population mean.

The page's size does not grow with the table's width: the heatmap and the
profile table show the :data:`SHOWN_FEATURES` features that most set the
segments apart, and link ``profiles.csv`` (written beside the report) for all.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .cards import CARD_CSS, format_mean, segment_cards
from .stability import stability_reading

if TYPE_CHECKING:
    from .pipeline import SegmentationResult

#: Points drawn in the PCA projection; more only blur the picture.
PCA_POINTS = 5_000
#: Features in the heatmap and the profile table: those with the largest
#: standardised contrast of any segment.
SHOWN_FEATURES = 25
#: Above this many rows and features, PCA takes its two components from a
#: randomised SVD, whose time and memory grow with rows times features only.
_EXACT_SVD_LIMIT = 50
_NAME_WIDTH = 60


def render_report(
    result: "SegmentationResult", *, X: np.ndarray, labels: np.ndarray, seed: int = 0,
    sample_size: int = 10_000,
) -> str:
    """Return the HTML of the report for ``result`` (``X``/``labels``: the clustered rows)."""
    return finish_report(result, draw_matrix_figures(result, X=X, labels=labels, seed=seed, sample_size=sample_size))


def draw_matrix_figures(
    result: "SegmentationResult", *, X: np.ndarray, labels: np.ndarray, seed: int = 0,
    sample_size: int = 10_000,
) -> list[tuple[str, str]]:
    """The report's figures that need the clustered rows but not the profiles (the
    sweep, the silhouettes, the projection), as (title, PNG data URI) pairs.

    They take a few seconds whatever the table's size, so :func:`segment` draws them
    in a thread while its last pass over the table computes the profiles.
    """
    summary = result.summary
    names = result.model.segment_names
    centers = result.model.cluster_centers
    rng = np.random.default_rng(seed)

    figures = []
    if result.sweep is not None:
        figures.append(("Choosing k: elbow and silhouette", _png(result.sweep.plot_elbow())))
    if summary["metrics"].get("silhouette") is not None:
        figure = silhouette_figure(X, labels, rng=rng, sample_size=sample_size,
                                   mean=summary["metrics"]["silhouette"])
        figures.append((f"Silhouette per segment (k = {summary['k']})", _png(figure)))
    prep = result.model.preprocessor
    changed = prep.scale != "none" or prep.log_columns_ or prep.clip_bounds_
    features = [f"{name} (as clustered)" if changed else name for name in prep.feature_names_out_]
    projection = "a sample" if X.shape[1] == 2 else "PCA of a sample"
    figures.append(
        (f"Segments in two dimensions ({projection})",
         _png(pca_figure(X, labels, centers, names, rng=rng, feature_names=features)))
    )
    return figures


def finish_report(result: "SegmentationResult", figures: list[tuple[str, str]]) -> str:
    """The report's HTML: ``figures`` (from :func:`draw_matrix_figures`), the profile
    heatmap and the tables; ``result.profiles`` must be filled in."""
    prep = result.model.preprocessor
    names = result.model.segment_names
    numeric = set(prep.numeric_columns_)
    levels = [c for c in result.contrasts.columns if c not in numeric]
    shown = distinguishing_features(result.contrasts, SHOWN_FEATURES)
    title = "Segment profiles"
    if len(shown) < result.contrasts.shape[1]:
        title += f": the {len(shown)} of {result.contrasts.shape[1]:,} features that most set segments apart"
    heatmap = profile_heatmap(result.contrasts, result.profiles, names, levels,
                              feature_labels=result.summary.get("feature_labels"))
    return _page(result, [*figures, (title, _png(heatmap))], levels, shown)


def distinguishing_features(contrasts: pd.DataFrame, limit: int) -> list[str]:
    """The ``limit`` features whose contrast is largest in some segment, in column order."""
    z = np.abs(contrasts.to_numpy(dtype=np.float64))
    if z.shape[1] <= limit:
        return list(contrasts.columns)
    strength = np.max(np.where(np.isnan(z), -np.inf, z), axis=0)  # an empty segment has no contrast
    chosen = np.sort(np.argsort(-strength, kind="stable")[:limit])
    return [contrasts.columns[j] for j in chosen]


# ---------------------------------------------------------------- figures


def silhouette_figure(X, labels, *, rng, sample_size, mean=None):
    """Per-segment silhouette bars of the clustered rows (a stratified sample above
    ``sample_size``); ``mean`` is the overall score to mark (default: the sample's mean)."""
    from gpukmeans import metrics
    from gpukmeans.plots import plot_silhouette

    rows = _stratified_sample(labels, sample_size, rng)
    # The report's sample is on one process, also in a torch.distributed run.
    values = np.asarray(metrics.silhouette_samples(X[rows], labels[rows], device="cpu", distributed=False))
    scope = f"all {len(rows):,} rows" if len(rows) == len(labels) else (
        f"stratified sample of {len(rows):,} of {len(labels):,} rows")
    k = int(labels.max()) + 1
    return plot_silhouette(values, labels[rows], title=f"Silhouette by segment, k={k} ({scope})", mean=mean)


def pca_figure(X, labels, centers, names, *, rng, feature_names=None):
    """Scatter of a sample on its first two principal components, centres marked.

    With exactly two features there is nothing to project: the features
    themselves are the axes (named by ``feature_names``).
    """
    from matplotlib.figure import Figure

    rows = _stratified_sample(labels, PCA_POINTS, rng)
    sample = X[rows]
    if X.shape[1] == 2:
        points, projected_centers = sample, np.asarray(centers)
        names_xy = list(feature_names) if feature_names is not None else ["feature 1", "feature 2"]
        axis_labels = names_xy
    else:
        mean = sample.mean(axis=0)
        centered = sample - mean
        singular, components = _top_components(centered, 2, rng)
        explained = singular**2 / max(float(np.sum(centered * centered)), np.finfo(float).tiny)
        axes_2d = components[:2]
        points = (sample - mean) @ axes_2d.T
        projected_centers = (centers - mean) @ axes_2d.T
        axis_labels = [f"PC{i + 1} ({100 * explained[i]:.0f}% of variance)" for i in range(points.shape[1])]
        if points.shape[1] == 1:  # a single feature: spread the points on a line
            points = np.column_stack([points[:, 0], np.zeros(len(points))])
            projected_centers = np.column_stack([projected_centers[:, 0], np.zeros(len(centers))])
            axis_labels.append("")

    k = len(centers)
    fig = Figure(figsize=(9.0, 6.2 + 0.22 * k))
    ax = fig.subplots()
    colors = _colors(k)
    for s in range(k):
        mine = labels[rows] == s
        ax.scatter(points[mine, 0], points[mine, 1], s=9, alpha=0.5, color=colors[s], linewidths=0,
                   label=f"{s}: {_short(names[s], 90)}", rasterized=True)
    ax.scatter(projected_centers[:, 0], projected_centers[:, 1], s=200, marker="X", c=colors,
               edgecolors="black", linewidths=1.2, zorder=3)
    for s, (x, y) in enumerate(projected_centers):
        ax.annotate(str(s), (x, y), xytext=(8, 8), textcoords="offset points", fontsize=12,
                    fontweight="bold", zorder=4)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(f"{len(rows):,} customers; X marks each segment's centre")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, fontsize=9.5, markerscale=2.5,
              frameon=False)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


def _top_components(centered: np.ndarray, n: int, rng: np.random.Generator):
    """The largest ``n`` singular values and right singular vectors of ``centered``."""
    if min(centered.shape) <= _EXACT_SVD_LIMIT:
        _, singular, components = np.linalg.svd(centered, full_matrices=False)
        return singular[:n], components[:n]
    from sklearn.utils.extmath import randomized_svd

    _, singular, components = randomized_svd(
        centered, n_components=n, random_state=int(rng.integers(2**31 - 1))
    )
    return singular, components


def profile_heatmap(
    contrasts: pd.DataFrame, profiles: pd.DataFrame, names, level_columns=(), max_features: int = SHOWN_FEATURES,
    *, feature_labels: dict | None = None,
):
    """Segments x features; colour: standardised difference from the population, text: the mean.

    ``level_columns`` are one-hot category levels, whose mean is shown as a share;
    ``feature_labels`` how each feature reads (default: its name).
    A feature takes 1.1 inch of width, so of a wide table only the ``max_features``
    that most set segments apart are drawn (see :func:`distinguishing_features`).
    """
    from matplotlib.figure import Figure

    contrasts = contrasts[distinguishing_features(contrasts, max_features)]
    z = contrasts.to_numpy(dtype=np.float64)
    k, d = z.shape
    limit = float(min(max(np.nanmax(np.abs(z)), 1.0), 3.0))
    row_labels = [f"{s}: {_short(names[s], 70)}" for s in range(k)]
    # Room for the longest segment name on the left, about 0.07 inch a character.
    label_inches = 0.07 * max(len(label) for label in row_labels)
    fig = Figure(figsize=(label_inches + 1.1 * d + 2.0, max(2.8, 0.55 * k + 2.2)))
    ax = fig.subplots()
    image = ax.imshow(z, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    for s in range(k):
        for j, feature in enumerate(contrasts.columns):
            mean = profiles[f"{feature} mean"].iloc[s]
            text = format_mean(mean, is_share=feature in level_columns)
            ax.text(j, s, text, ha="center", va="center", fontsize=8.5,
                    color="white" if abs(z[s, j]) > 0.6 * limit else "black")
    shown_as = feature_labels or {}
    ax.set_xticks(range(d), [_short(shown_as.get(c, c), 28) for c in contrasts.columns], rotation=30, ha="right")
    ax.set_yticks(range(k), row_labels)
    ax.set_xticks(np.arange(-0.5, d), minor=True)
    ax.set_yticks(np.arange(-0.5, k), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    colorbar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
    colorbar.set_label("segment mean vs population\n(standard deviations)")
    ax.set_title("Segment means (text) against the population (colour)")
    fig.tight_layout()
    return fig


def _stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row positions of a sample with every segment in proportion (small ones kept)."""
    n = len(labels)
    if n <= size:
        return np.arange(n)
    chosen = []
    for s in np.unique(labels):
        members = np.flatnonzero(labels == s)
        take = max(2, int(round(size * members.size / n)))
        chosen.append(rng.choice(members, size=min(take, members.size), replace=False))
    return np.sort(np.concatenate(chosen))


def _colors(k: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def _short(text: str, width: int = _NAME_WIDTH) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _png_bytes(fig) -> bytes:
    # Figures are built with matplotlib.figure.Figure, not pyplot: no display or
    # global figure registry is involved, so this works on any headless machine.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _png(fig) -> str:
    return base64.b64encode(_png_bytes(fig)).decode("ascii")


def save_png(fig, path) -> None:
    """Write ``fig`` as a PNG file, atomically, and close it."""
    from .io import atomic_path

    data = _png_bytes(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1150px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.meta{color:#666;margin-top:0}table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f5f5f5}
td.text,th.text{text-align:left}img{max-width:100%;border:1px solid #eee}.why{background:#f7f9fc;
border-left:4px solid #4a7bd0;padding:.5rem .8rem}.scroll{overflow-x:auto}ul{margin:.3rem 0}
.verdict{padding:.5rem .8rem;border-left:4px solid}.strong,.reasonable{background:#f3faf4;border-color:#3a9a4f}
.weak{background:#fdf8ec;border-color:#d49a1f}.none{background:#fcf1f0;border-color:#c8453a}
.notes{color:#555;font-size:.9rem}tr.chosen td{font-weight:bold;background:#f7f9fc}
"""

#: How each structure verdict is headed at the top of the report.
_STRUCTURE_HEADINGS = {
    "strong": "Clear segments",
    "reasonable": "Reasonably distinct segments",
    "weak": "Weak structure",
    "none": "No real structure",
}


def _page(result: "SegmentationResult", figures: list[tuple[str, str]], levels, shown) -> str:
    summary = result.summary
    metrics = summary["metrics"]
    prep = summary["preprocessing"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Customer segments: gpukmeans report</title>",
        f"<style>{_CSS}{CARD_CSS}</style></head><body>",
        f"<h1>{summary['k']} customer segments</h1>",
        f"<p class='meta'>{_e(summary['input']['path'])}: {summary['input']['rows']:,} rows, "
        f"{prep['n_rows_used']:,} segmented; device {_e(summary.get('device') or 'unknown')}; "
        f"gpukmeans {_e(summary['versions']['gpukmeans'])}</p>",
        f"<p class='why'><b>Why k = {summary['k']}:</b> {_e(summary['k_reason'])}</p>",
        _verdict(summary),
        _notes(summary.get("notes")),
        "<h2>Segments</h2>",
        segment_cards(result),
        _rules_table(summary),
        "<h2>Figures</h2>",
    ]
    for title, png in figures:
        parts.append(f"<h3>{_e(title)}</h3><img alt='{_e(title)}' src='data:image/png;base64,{png}'>")
    link = "<a href='profiles.csv'>profiles.csv</a>"
    scope = f"Also in {link}."
    if len(shown) < result.contrasts.shape[1]:
        scope = (f"The {len(shown)} of {result.contrasts.shape[1]:,} features that most set segments apart; "
                 f"every feature is in {link}.")
    parts += [
        "<h2>Profiles (mean per segment in original units; hover for median)</h2>",
        f"<p class='meta'>{scope}</p>",
        f"<div class='scroll'>{_profile_table(result.profiles, levels, shown, summary.get('feature_labels'))}</div>",
        "<h2>Quality</h2>",
        _metrics_list(metrics, summary.get("silhouette_note")),
    ]
    if summary.get("sweep"):
        parts += ["<h2>Sweep</h2>", f"<div class='scroll'>{_sweep_table(summary['sweep'], summary['k'])}</div>"]
    parts += ["<h2>Preprocessing</h2>", _preprocessing_list(prep, summary["input"])]
    if summary.get("command"):
        parts.append(f"<p class='meta'>Command: <code>{_e(summary['command'])}</code></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(value) -> str:
    return html.escape(str(value))


def _verdict(summary: dict) -> str:
    """The structure verdict, headed by a phrase and coloured by its band."""
    structure = summary.get("structure")
    if structure not in _STRUCTURE_HEADINGS:
        return ""
    return (f"<p class='verdict {structure}'><b>{_STRUCTURE_HEADINGS[structure]}:</b> "
            f"{_e(summary.get('structure_note', ''))}</p>")


def _notes(notes) -> str:
    if not notes:
        return ""
    return "<ul class='notes'>" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>"


def _rules_table(summary: dict) -> str:
    """Each segment's rule with its fidelity and precision, and the rule set's fidelity."""
    if summary.get("rules_fidelity") is None:
        return ""
    rows = ["<h2>Rules: each segment in the table's own columns</h2>",
            f"<p class='meta'>Together the rules, tried in this order, give {100 * summary['rules_fidelity']:.1f}% "
            f"of the customers their own segment. Fidelity: the share of the segment's customers its rule "
            f"selects; precision: the share of those it selects who belong to the segment.</p>",
            "<table><tr><th>segment</th><th class='text'>name</th><th class='text'>rule</th>"
            "<th>fidelity</th><th>precision</th></tr>"]
    for item in summary["segments"]:
        rows.append(
            f"<tr><td>{item['segment']}</td><td class='text'>{_e(item['name'])}</td>"
            f"<td class='text'><code>{_e(item['rule'])}</code></td><td>{_percent_or_dash(item['rule_fidelity'])}</td>"
            f"<td>{_percent_or_dash(item['rule_precision'])}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _percent_or_dash(share) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _profile_table(profiles: pd.DataFrame, levels, features, feature_labels: dict | None = None) -> str:
    levels = set(levels)
    shown_as = feature_labels or {}
    head = "".join(f"<th title='{_e(f)}'>{_e(shown_as.get(f, f))}</th>" for f in features)
    with_stability = "stability" in profiles.columns
    stability_head = ("<th title='mean Jaccard of the segment over bootstrap refits (Hennig): above 0.85 stable, "
                      "below 0.6 it dissolves'>stability</th>") if with_stability else ""
    rows = [f"<table><tr><th>segment</th><th class='text'>name</th><th>share</th>{stability_head}{head}</tr>"]
    for _, row in profiles.iterrows():
        cells = "".join(
            f"<td title='median {row[f + ' median']:.4g}; {row[f + ' vs population']:.2f}x the population mean'>"
            f"{format_mean(row[f + ' mean'], is_share=f in levels)}</td>"
            for f in features
        )
        name = _e(row["segment_name"]) if "segment_name" in row else ""
        stability = (f"<td class='text'>{row['stability']:.2f} ({_e(stability_reading(row['stability']))})</td>"
                     if with_stability else "")
        rows.append(f"<tr><td>{int(row['segment'])}</td><td class='text'>{name}</td>"
                    f"<td>{100 * row['share']:.1f}%</td>{stability}{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _metrics_list(metrics: dict, silhouette_note: str | None = None) -> str:
    items = [f"<li>inertia (sum of squared distances, scaled space): {metrics['inertia']:,.2f}</li>"]
    if metrics.get("silhouette") is not None:
        text = f"silhouette: {metrics['silhouette']:.3f}"
        if metrics.get("silhouette_low") is not None:
            text += f" (95% interval {metrics['silhouette_low']:.3f} to {metrics['silhouette_high']:.3f})"
        text += f", {_e(metrics.get('silhouette_method', ''))}"
        if silhouette_note:
            text += f" ({_e(silhouette_note)})"
        items.append(f"<li>{text}</li>")
    if metrics.get("calinski_harabasz") is not None:
        items.append(f"<li>Calinski-Harabasz: {metrics['calinski_harabasz']:,.1f}</li>")
        items.append(f"<li>Davies-Bouldin: {metrics['davies_bouldin']:.3f}</li>")
    if metrics.get("n_iter") is not None:
        items.append(f"<li>Lloyd iterations: {metrics['n_iter']}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _sweep_table(records: list[dict], chosen_k: int) -> str:
    """The sweep's table, the chosen k in bold; shares as percentages, and a k below
    the minimum share marked "below"."""
    columns = list(records[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = [f"<table><tr>{head}</tr>"]
    for record in records:
        cells = "".join(f"<td>{_sweep_cell(c, record[c])}</td>" for c in columns)
        chosen = " class='chosen'" if record.get("k") == chosen_k else ""
        rows.append(f"<tr{chosen}>{cells}</tr>")
    rows.append("</table>")
    return "".join(rows)


def _sweep_cell(column: str, value) -> str:
    if column == "smallest_share" and value is not None:
        return f"{100 * value:.1f}%"
    if column == "below_min_share":
        return "below" if value else ""
    return _format_cell(value)


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        magnitude = abs(value)
        return f"{value:,.0f}" if magnitude >= 1000 else f"{value:.1f}" if magnitude >= 10 else f"{value:.3f}"
    return _e(value)


def _preprocessing_list(prep: dict, reading: dict) -> str:
    items = []
    if prep.get("id_column"):
        items.append(f"ID column (not clustered): {_e(prep['id_column'])}")
    items.append(f"features clustered ({len(prep['features']):,}): {_e(_listed(prep['features']))}")
    if prep.get("left_out"):
        entries = [
            f"{e['column']} ({e['reason']}{': ' + e['detail'] if e.get('detail') else ''})"
            for e in prep["left_out"]
        ]
        items.append(f"columns left out ({len(entries):,}): {_e(_listed(entries))}")
    if prep.get("auto_categorical"):
        items.append(
            "columns of codes one-hot encoded as categories (name them in --columns to cluster them "
            f"as numbers): {_e(_listed(prep['auto_categorical']))}"
        )
    if reading.get("units"):
        units = [f"{c} in {u}" for c, u in reading["units"].items()]
        items.append(f"units read from the cells (values as written: 12% is 12): {_e(_listed(units))}")
    if reading.get("placeholders"):
        counts = [
            f"{c}: " + ", ".join(f"{n:,} × {spelling!r}" for spelling, n in kinds.items())
            for c, kinds in reading["placeholders"].items()
        ]
        items.append(f"placeholders read as missing values: {_e(_listed(counts))}")
    if prep.get("missing_counts"):
        counts = _e(_listed([f"{c}: {n:,}" for c, n in prep["missing_counts"].items()]))
        action = (
            f"{prep['rows_dropped_missing']:,} rows dropped"
            if prep.get("missing") == "drop"
            else "imputed with the median or most frequent value"
        )
        items.append(f"missing values per column ({action}): {counts}")
    if prep.get("log_columns"):
        items.append(f"log1p-transformed: {_e(', '.join(prep['log_columns']))}")
    if prep.get("clip"):
        items.append(f"clipped at the {prep['clip']:g} and {1 - prep['clip']:g} quantiles")
    items.append(f"scaling: {_e(prep.get('scale'))}")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _listed(names: list[str], limit: int = 50) -> str:
    """Names joined by commas, at most ``limit`` of them, so that a wide table's list stays short."""
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "")
