"""Segment rules on a panel of tables: which trees give the most faithful rules.

For each table the segments come from ``gpukmeans.segmentation.segment`` (its defaults,
a given k); the rules are then learned by :func:`gpukmeans.segmentation.rules.learn_rules`
from every row (the pipeline learns them from its sample, which for these tables is every
row) in six ways: one tree per segment against the rest (``one-vs-rest``), one tree for all
segments (``multiclass``), or the candidates of both, each with the classes weighed as they
come or equally (``class_weight="balanced"``). The measure is ``rules_fidelity``: the share
of customers whose first matching rule, in order of segment, is their own segment's.

The panel: Mall's customers (income and spending score at k=5; age, gender, income and
spending at k=6), the demo's customers (7 numbers and two categorical columns, k=5), four
axis-aligned boxes with a column of noise (k=4), Gaussian clusters in 6 dimensions (k=8,
more segments than a depth-3 tree has leaves), and uniform noise (k=4).

    python benchmarks/bench_rules.py     # writes benchmarks/results/rules.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MALL = Path(__file__).resolve().parents[1] / "tests" / "data" / "Mall_Customers.csv"
STRATEGIES = [(trees, weight) for trees in ("one-vs-rest", "multiclass", "both") for weight in ("balanced", None)]


def panel() -> dict:
    """Each table as (frame, k, options for segment)."""
    from gpukmeans.segmentation import make_customers

    rng = np.random.default_rng(0)
    mall = pd.read_csv(MALL, dtype={"CustomerID": str})
    customers, _ = make_customers(5000, random_state=0)
    corners = rng.integers(0, 2, size=(2000, 2)) * 3.0
    boxes = pd.DataFrame({"x": corners[:, 0] + rng.uniform(0, 1, 2000), "y": corners[:, 1] + rng.uniform(0, 1, 2000),
                          "noise": rng.uniform(0, 4, 2000)})
    centres = rng.uniform(-6, 6, size=(8, 6))
    gaussian = pd.DataFrame(centres[rng.integers(0, 8, 4000)] + rng.normal(0, 1, (4000, 6)),
                            columns=[f"x{j}" for j in range(6)])
    uniform = pd.DataFrame(rng.uniform(0, 1, (3000, 2)), columns=["a", "b"])
    return {
        "Mall, income and spending (k=5)": (mall, 5, {"columns": ["Annual Income (k$)", "Spending Score (1-100)"]}),
        "Mall, all columns (k=6)": (mall, 6, {"categorical": ["Genre"]}),
        "demo customers (k=5)": (customers, 5, {"categorical": ["Channel", "Region"]}),
        "axis-aligned boxes (k=4)": (boxes, 4, {}),
        "Gaussian clusters, 6-d (k=8)": (gaussian, 8, {}),
        "uniform noise (k=4)": (uniform, 4, {}),
    }


def measure(frame: pd.DataFrame, k: int, options: dict) -> dict:
    import pyarrow as pa

    from gpukmeans.segmentation import segment
    from gpukmeans.segmentation.rules import learn_rules, rule_columns
    from gpukmeans.segmentation.tables import Batch

    result = segment(frame, k=k, report=False, device="cpu", **options)
    prep = result.model.preprocessor
    labels = result.segments["segment"].to_numpy()
    batch = Batch(start=0, n_rows=len(frame),
                  numbers={c: frame[c].to_numpy(dtype=np.float64) for c in prep.numeric_columns_},
                  texts={c: pa.array(frame[c].astype(object).where(frame[c].notna(), None).astype(str)
                                     .where(frame[c].notna(), None)) for c in prep.categories_})
    columns = rule_columns(batch, prep)
    fidelity = {}
    for trees, weight in STRATEGIES:
        rules = learn_rules(columns, labels, k, categories=prep.categories_, class_weight=weight, trees=trees)
        fidelity[f"{trees}, {weight or 'as they come'}"] = float((rules.assign(columns, labels.size) == labels).mean())
    return {"pipeline": result.rules.fidelity, "fidelity": fidelity, "rules": [r.text for r in result.rules]}


def markdown(payload: dict) -> str:
    names = list(next(iter(payload["tables"].values()))["fidelity"])
    lines = ["# Segment rules: fidelity of six ways to grow the trees", "",
             markdown_header(payload["machine"]), "",
             "rules_fidelity (share of customers whose first matching rule is their segment's) per table; "
             "see the script's docstring for the panel.", "",
             "| table | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for table, row in payload["tables"].items():
        lines.append(f"| {table} | " + " | ".join(f"{row['fidelity'][n]:.3f}" for n in names) + " |")
    means = {n: np.mean([row["fidelity"][n] for row in payload["tables"].values()]) for n in names}
    lines.append("| **mean** | " + " | ".join(f"**{means[n]:.3f}**" for n in names) + " |")
    lines += ["", "The rules the pipeline writes (both kinds of tree, balanced):", ""]
    for table, row in payload["tables"].items():
        lines.append(f"- {table}: fidelity {row['pipeline']:.3f}")
        lines += [f"  - `{rule}`" for rule in row["rules"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    payload = {"machine": machine_info(), "tables": {name: measure(*spec) for name, spec in panel().items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rules.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "rules.md").write_text(markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
