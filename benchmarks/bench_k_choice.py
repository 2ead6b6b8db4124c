"""Choosing k on a panel of tables with a planted number of clusters: gpukmeans.sweep's
recommendation against the by-hand baseline.

The panel: for each planted k from 2 to 10, Gaussian clusters in four settings (dimension
2 to 12; clusters well apart or close; equal sizes or a largest cluster up to twenty times
the smallest; round or stretched), and unclustered tables whose right answer is "no
structure" (uniform noise, a single round, stretched or skewed cloud). Every table comes
from its own fixed seed, so the panel is the same on every run.

- The baseline is what tutorials do: ``sklearn.cluster.KMeans(k, n_init=10)`` for every k
  of 2..12 and the k of the best ``silhouette_score``. It always names a k.
- gpukmeans: ``gpukmeans.sweep(X, k=range(2, 13))`` with its defaults; its answer is
  ``"none"`` where its structure verdict is ``"none"``, else its recommended k.

A table is a hit when the answer is the planted k ("none" for the unclustered ones).
Also recorded per table: each method's answer and seconds, and the sweep's worst inertia
over k relative to scikit-learn's best of ten (the sweep's restarts and its runs from
neighbouring k's must stay within 1%); the same for one table of 200,000 rows, where the
sweep searches its neighbours on a sample. Mall's customers (Age, income and spending score,
standardised) are run too, over five seeds, outside the hit rates: no k is planted there.
Both methods run in this process on ``--threads`` threads.

    python benchmarks/bench_k_choice.py            # writes benchmarks/results/k_choice.{json,md}
    python benchmarks/bench_k_choice.py --quick --out /tmp/k   # three small tables, to see that it runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MALL = Path(__file__).resolve().parents[1] / "tests" / "data" / "Mall_Customers.csv"
K_RANGE = range(2, 13)

# (dimension, rows, separation in cluster spreads, largest / smallest cluster, stretch)
SETTINGS = {
    "apart": (3, 2000, 5.0, 1.0, 1.0),
    "close, unequal": (5, 3000, 3.5, 5.0, 1.0),
    "stretched, unequal": (4, 3000, 4.0, 20.0, 2.5),
    "wide, close": (12, 2500, 3.0, 3.0, 1.5),
}
UNCLUSTERED = [("uniform", 2, 2000), ("uniform", 6, 3000), ("gaussian", 3, 2500), ("gaussian", 8, 3000),
               ("stretched gaussian", 4, 2500), ("skewed", 3, 2500)]


@dataclass
class Table:
    name: str
    planted: object  # an int, or "none"
    X: np.ndarray


def planted_table(k, dimension, n_rows, separation, imbalance, stretch, seed) -> np.ndarray:
    """``k`` Gaussian clusters whose centres lie at least ``separation`` spreads apart, with
    sizes from 1 to ``imbalance`` (geometric) and each stretched ``stretch`` times along a
    random direction."""
    rng = np.random.default_rng(seed)
    weights = imbalance ** -np.linspace(0.0, 1.0, k)
    sizes = np.maximum(30, np.round(rng.permutation(weights) / weights.sum() * n_rows)).astype(int)
    spreads = rng.uniform(0.7, 1.3, size=k)
    box = separation * k ** (1 / dimension) * 1.5
    centres = []
    while len(centres) < k:
        centre = rng.uniform(-box, box, size=dimension)
        i = len(centres)
        if all(np.linalg.norm(centre - other) >= separation * (spreads[i] + spreads[j]) / 2
               for j, other in enumerate(centres)):
            centres.append(centre)
        else:
            box *= 1.001  # a crowded box grows until every centre fits
    rows = []
    for centre, spread, size in zip(centres, spreads, sizes):
        points = rng.standard_normal((size, dimension)) * spread
        if stretch != 1.0:
            axes = np.ones(dimension)
            axes[0] = stretch
            turn, _ = np.linalg.qr(rng.standard_normal((dimension, dimension)))
            points = (points * axes / np.sqrt(stretch)) @ turn
        rows.append(points + centre)
    return rng.permutation(np.concatenate(rows))


def unclustered_table(kind, dimension, n_rows, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(size=(n_rows, dimension))
    if kind == "gaussian":
        return rng.standard_normal((n_rows, dimension))
    if kind == "stretched gaussian":
        return rng.standard_normal((n_rows, dimension)) * np.linspace(3.0, 1.0, dimension)
    if kind == "skewed":
        return rng.lognormal(0.0, 0.5, size=(n_rows, dimension))
    raise ValueError(kind)


def panel(ks=range(2, 11), settings=None, unclustered=None, rows=None) -> list[Table]:
    """The planted tables for every k of ``ks`` and setting, then the unclustered ones
    (``rows``: every table's rows, instead of the settings')."""
    settings = SETTINGS if settings is None else settings
    unclustered = UNCLUSTERED if unclustered is None else unclustered
    tables = []
    for k in ks:
        for position, (setting, (dimension, n_rows, *shape)) in enumerate(settings.items()):
            X = planted_table(k, dimension, rows or n_rows, *shape, seed=1000 * k + position)
            tables.append(Table(f"k={k}, {setting}", k, X))
    for position, (kind, dimension, n_rows) in enumerate(unclustered):
        X = unclustered_table(kind, dimension, rows or n_rows, 7 + position)
        tables.append(Table(f"{kind}, {dimension}-d", "none", X))
    return tables


def quick_panel() -> list[Table]:
    """Three small tables: one planted, two unclustered."""
    return panel(ks=[3], settings={"apart": SETTINGS["apart"]}, unclustered=UNCLUSTERED[:2], rows=600)


def baseline(X) -> dict:
    """scikit-learn's KMeans(n_init=10) for every k, and the k of the best silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    start = time.perf_counter()
    inertia, silhouette = [], []
    for k in K_RANGE:
        model = KMeans(k, n_init=10, random_state=0).fit(X)
        inertia.append(float(model.inertia_))
        silhouette.append(float(silhouette_score(X, model.labels_)))
    return {"answer": int(K_RANGE[int(np.argmax(silhouette))]), "seconds": time.perf_counter() - start,
            "inertia": inertia}


def ours(X, seed=0) -> dict:
    import gpukmeans

    start = time.perf_counter()
    result = gpukmeans.sweep(X, k=K_RANGE, random_state=seed, device="cpu")
    seconds = time.perf_counter() - start
    structure = result.structure.structure
    return {"answer": "none" if structure == "none" else int(result.recommended_k), "seconds": seconds,
            "recommended_k": int(result.recommended_k), "structure": structure, "reason": result.reason,
            "reference_z": result.structure.details["reference_z"],
            "inertia": result.table["inertia"].tolist()}


def large_table(progress=print) -> dict:
    """A table above the sweep's SEARCH_ROWS, where its neighbours are searched on a sample:
    its worst inertia over k against scikit-learn's best of ten."""
    from gpukmeans.engine.every_k import SEARCH_ROWS

    X = planted_table(9, 5, 4 * SEARCH_ROWS, 3.0, 5.0, 1.0, seed=11)
    theirs, mine = baseline_inertia(X), ours(X)
    excess = max(a / b - 1 for a, b in zip(mine["inertia"], theirs["inertia"]))
    progress(f"  {X.shape[0]:,} rows, planted 9: gpukmeans {mine['answer']} in {mine['seconds']:.1f}s, "
             f"inertia excess {excess:+.4f} (scikit-learn's fits {theirs['seconds']:.1f}s)")
    return {"rows": int(X.shape[0]), "planted": 9, "gpukmeans": mine["answer"], "gpukmeans_seconds": mine["seconds"],
            "baseline_fit_seconds": theirs["seconds"], "worst_inertia_excess": excess}


def baseline_inertia(X) -> dict:
    """scikit-learn's best of ten inertia for every k (no silhouettes: too slow at this size)."""
    from sklearn.cluster import KMeans

    start = time.perf_counter()
    inertia = [float(KMeans(k, n_init=10, random_state=0).fit(X).inertia_) for k in K_RANGE]
    return {"inertia": inertia, "seconds": time.perf_counter() - start}


def run(tables, *, mall_seeds=range(5), progress=print) -> dict:
    rows = []
    for table in tables:
        theirs, mine = baseline(table.X), ours(table.X)
        excess = max(a / b - 1 for a, b in zip(mine["inertia"], theirs["inertia"]))
        rows.append({"table": table.name, "planted": table.planted, "rows": int(table.X.shape[0]),
                     "dimension": int(table.X.shape[1]),
                     "baseline": theirs["answer"], "baseline_seconds": theirs["seconds"],
                     "gpukmeans": mine["answer"], "gpukmeans_seconds": mine["seconds"],
                     "gpukmeans_structure": mine["structure"], "reference_z": mine["reference_z"],
                     "gpukmeans_reason": mine["reason"], "worst_inertia_excess": excess})
        progress(f"  {table.name:28s} planted {table.planted!s:5s} baseline {theirs['answer']!s:5s} "
                 f"gpukmeans {mine['answer']!s:5s} ({theirs['seconds']:.1f}s / {mine['seconds']:.1f}s, "
                 f"inertia excess {excess:+.4f})")
    mall = _mall_rows(mall_seeds, progress) if mall_seeds else []
    return {"tables": rows, "hit_rates": hit_rates(rows), "mall": mall}


def hit_rates(rows) -> dict:
    def rate(subset, method):
        return sum(row[method] == row["planted"] for row in subset) / len(subset) if subset else None

    clustered = [row for row in rows if row["planted"] != "none"]
    flat = [row for row in rows if row["planted"] == "none"]
    return {method: {"all": rate(rows, method), "clustered": rate(clustered, method), "unclustered": rate(flat, method),
                     "hits": sum(row[method] == row["planted"] for row in rows)}
            for method in ("baseline", "gpukmeans")} | {"tables": len(rows)}


def _mall_rows(seeds, progress) -> list[dict]:
    import pandas as pd
    from sklearn.preprocessing import StandardScaler

    X = StandardScaler().fit_transform(pd.read_csv(MALL)[["Age", "Annual Income (k$)", "Spending Score (1-100)"]])
    theirs = baseline(X)
    rows = []
    for seed in seeds:
        mine = ours(X, seed)
        rows.append({"seed": seed, "gpukmeans": mine["answer"], "recommended_k": mine["recommended_k"],
                     "structure": mine["structure"], "reason": mine["reason"], "baseline": theirs["answer"]})
        progress(f"  Mall, seed {seed}: gpukmeans {mine['answer']} ({mine['structure']}), baseline {theirs['answer']}")
    return rows


def markdown(payload) -> str:
    rates = payload["hit_rates"]
    lines = [
        "# Choosing k on a panel of tables with a planted number of clusters", "",
        markdown_header(payload["machine"]) + f" Both methods on {payload['threads']} thread(s).", "",
        f"k = {K_RANGE.start}..{K_RANGE.stop - 1}. Baseline: scikit-learn `KMeans(k, n_init=10)` per k, the best "
        "`silhouette_score`. gpukmeans: `gpukmeans.sweep(X, k=range(2, 13))` with its defaults, answering "
        "\"none\" where its structure verdict is \"none\". See the script's docstring for the panel.", "",
        "| method | hits | all tables | planted k | unclustered |", "|---|---|---|---|---|",
    ]
    for method, label in (("baseline", "scikit-learn + silhouette"), ("gpukmeans", "gpukmeans.sweep")):
        r = rates[method]
        lines.append(f"| {label} | {r['hits']} of {rates['tables']} | {r['all']:.0%} | {r['clustered']:.0%} | "
                     f"{_percent(r['unclustered'])} |")
    tables = payload["tables"]
    worst = max(row["worst_inertia_excess"] for row in tables)
    lines += [
        "", f"Seconds over the panel: baseline {sum(r['baseline_seconds'] for r in tables):.1f}, gpukmeans "
        f"{sum(r['gpukmeans_seconds'] for r in tables):.1f}. The sweep's inertia is at most {worst:+.2%} from "
        "scikit-learn's best of ten at any k of any table.", "",
        "| table | planted | baseline | gpukmeans | verdict | seconds (baseline / gpukmeans) |",
        "|---|---|---|---|---|---|",
    ]
    for row in tables:
        baseline_answer, our_answer = (f"{row[m]}{'' if row[m] == row['planted'] else ' ✗'}"
                                       for m in ("baseline", "gpukmeans"))
        lines.append(f"| {row['table']} | {row['planted']} | {baseline_answer} | {our_answer} "
                     f"| {row['gpukmeans_structure']} | {row['baseline_seconds']:.1f} / {row['gpukmeans_seconds']:.1f} |")
    if payload.get("large"):
        large = payload["large"]
        lines += ["", f"A table of {large['rows']:,} rows (9 planted clusters, close, unequal), where the sweep "
                  f"searches its neighbours on a sample: it names {large['gpukmeans']} in "
                  f"{large['gpukmeans_seconds']:.1f} s, every k within {large['worst_inertia_excess']:+.2%} of "
                  f"scikit-learn's best of ten ({large['baseline_fit_seconds']:.1f} s of fits)."]
    if payload["mall"]:
        picks = ", ".join(f"seed {row['seed']}: {row['gpukmeans']}" for row in payload["mall"])
        lines += ["", f"Mall's customers (no planted k): baseline {payload['mall'][0]['baseline']}; gpukmeans {picks}, "
                  f"verdict {payload['mall'][0]['structure']}.", "", f"Reason (seed 0): {payload['mall'][0]['reason']}"]
    return "\n".join(lines) + "\n"


def _percent(value):
    return "-" if value is None else f"{value:.0%}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads for both methods (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="three small tables and one Mall seed, written only where --out says")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for k_choice.{json,md}")
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    tables = quick_panel() if args.quick else panel()
    info = machine_info()
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads):
            payload = run(tables, mall_seeds=range(1) if args.quick else range(5))
            payload["large"] = None if args.quick else large_table()
    finally:
        torch.set_num_threads(threads_before)
    payload.update(machine=info, threads=args.threads, seconds=time.perf_counter() - started)
    rates = payload["hit_rates"]
    print(f"hit rates: baseline {rates['baseline']['all']:.0%}, gpukmeans {rates['gpukmeans']['all']:.0%} "
          f"({payload['seconds']:.0f} s)")
    if not args.quick or args.out != RESULTS:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "k_choice.json").write_text(json.dumps(payload, indent=2) + "\n")
        (args.out / "k_choice.md").write_text(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
