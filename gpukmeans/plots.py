"""Plots for choosing k, drawn with matplotlib's object API (no pyplot, no display).

Figures are built on :class:`matplotlib.figure.Figure` directly, so nothing
touches the global backend or needs a display; ``path`` writes a PNG through
the Agg renderer. matplotlib is imported only here, when a plot is asked for.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Optional

import numpy as np

__all__ = ["plot_elbow", "plot_silhouette"]

_INERTIA_COLOR = "#1f4e79"
_SILHOUETTE_COLOR = "#c0504d"
_KNEE_COLOR = "#7f7f7f"


def _new_figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "gpukmeans plots need matplotlib, one of its dependencies: pip install matplotlib"
        ) from error
    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Any) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")


def plot_elbow(result, path: Any = None, *, title: Optional[str] = None):
    """Inertia by k with the knee marked, and the silhouette on a second axis.

    Parameters
    ----------
    result : SweepResult
        What :func:`gpukmeans.sweep` returned.
    path : str or Path, optional
        Where to write the PNG.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = result.table
    ks = table["k"].to_numpy()
    figure = _new_figure(7.5, 5.0)
    axis = figure.add_subplot()
    axis.plot(ks, table["inertia"], "o-", color=_INERTIA_COLOR, label="inertia")
    axis.set_xlabel("number of clusters k")
    axis.set_ylabel("inertia (within-cluster sum of squares)", color=_INERTIA_COLOR)
    axis.tick_params(axis="y", colors=_INERTIA_COLOR)
    axis.set_xticks(ks)
    axis.grid(True, alpha=0.3)
    if result.knee_k is not None:
        knee_inertia = float(table.loc[table["k"] == result.knee_k, "inertia"].iloc[0])
        axis.axvline(result.knee_k, color=_KNEE_COLOR, linestyle="--", linewidth=1)
        axis.plot([result.knee_k], [knee_inertia], "o", markersize=13, markerfacecolor="none",
                  markeredgecolor="black", markeredgewidth=1.5, label=f"knee (k={result.knee_k})")

    handles, labels = axis.get_legend_handles_labels()
    silhouette = table["silhouette"]
    if not silhouette.isna().all():
        twin = axis.twinx()
        name = "simplified silhouette" if result.silhouette_method == "simplified" else "silhouette"
        if result.silhouette_method == "sampled":
            lower = (silhouette - table["silhouette_low"]).to_numpy()
            upper = (table["silhouette_high"] - silhouette).to_numpy()
            twin.errorbar(ks, silhouette, yerr=[lower, upper], fmt="s-", color=_SILHOUETTE_COLOR,
                          capsize=3, label=f"{name} (95% CI, sampled)")
        else:
            twin.plot(ks, silhouette, "s-", color=_SILHOUETTE_COLOR, label=f"{name} ({result.silhouette_method})")
        best = result.best_k.get("silhouette")
        if best is not None:
            best_value = float(table.loc[table["k"] == best, "silhouette"].iloc[0])
            twin.plot([best], [best_value], "*", markersize=16, color=_SILHOUETTE_COLOR,
                      markeredgecolor="black", label=f"best {name} (k={best})")
        twin.set_ylabel(name, color=_SILHOUETTE_COLOR)
        twin.tick_params(axis="y", colors=_SILHOUETTE_COLOR)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    # Below the axes, so that it can never hide a point.
    figure.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)),
                  fontsize="small", frameon=False)
    figure.suptitle(title or f"Choosing k: recommended k={result.recommended_k}")
    # The reason goes under the title, wrapped, where constrained layout makes room for it.
    axis.set_title(textwrap.fill(result.reason, 95), fontsize="small", color="#404040")
    _save(figure, path)
    return figure


def plot_silhouette(
    values: Any,
    labels: Any,
    *,
    path: Any = None,
    title: Optional[str] = None,
    mean: Optional[float] = None,
):
    """The per-cluster silhouette plot: each cluster's values as sorted bars, and the mean.

    Parameters
    ----------
    values : array-like of shape (n,)
        Per-sample silhouettes (e.g. :func:`gpukmeans.metrics.silhouette_samples`).
    labels : array-like of shape (n,)
        Cluster of each sample.
    path : str or Path, optional
        Where to write the PNG.
    title : str, optional
    mean : float, optional
        The overall score to draw as the dashed line (default: mean of ``values``;
        pass the estimate when ``values`` come from a stratified sample).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps

    values = np.asarray(values, dtype=float).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if values.shape != labels.shape:
        raise ValueError(f"values has {values.size} entries but labels has {labels.size}")
    if values.size == 0:
        raise ValueError("no silhouette values to plot")
    clusters = np.unique(labels)
    mean = float(values.mean()) if mean is None else float(mean)
    figure = _new_figure(7.0, max(4.0, min(10.0, 1.5 + 0.45 * len(clusters))))
    axis = figure.add_subplot()
    cmap = colormaps["tab20" if len(clusters) > 10 else "tab10"]
    gap = max(2, int(0.02 * values.size))
    bottom = gap
    for index, cluster in enumerate(clusters):
        members = np.sort(values[labels == cluster])
        positions = np.arange(bottom, bottom + members.size)
        color = cmap(index % cmap.N)
        axis.fill_betweenx(positions, 0, members, facecolor=color, edgecolor=color, linewidth=0.5)
        axis.text(-0.02, bottom + members.size / 2, str(cluster), ha="right", va="center",
                  fontsize="small")
        bottom += members.size + gap
    axis.axvline(mean, color="red", linestyle="--", linewidth=1.2, label=f"mean {mean:.3f}")
    axis.axvline(0.0, color="black", linewidth=0.6)
    lowest = float(values.min())
    axis.set_xlim(min(-0.1, math.floor(lowest * 10) / 10), 1.0)
    axis.set_ylim(0, bottom)
    axis.set_yticks([])
    axis.set_xlabel("silhouette coefficient")
    axis.set_ylabel("cluster (rows sorted within each)")
    axis.legend(loc="lower right", fontsize="small")
    axis.set_title(title or f"Silhouette by cluster ({values.size:,} rows)")
    _save(figure, path)
    return figure
