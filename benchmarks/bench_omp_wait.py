"""Why the CLI sets OMP_WAIT_POLICY=PASSIVE: one k-means fit, three OpenMP settings.

Each setting runs in a fresh process (the policy is read when torch loads its
OpenMP runtime): torch's default (threads spin at the end of each parallel
region), ``OMP_WAIT_POLICY=PASSIVE`` (they sleep), and a single thread. On a
machine whose cores are shared with other work, spinning threads wait whole
scheduler time slices for each other at every one of a fit's many small
parallel regions.

    python benchmarks/bench_omp_wait.py [--rows 1000000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "spin (torch default)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_NUM_THREADS": "1"},
}
FIT = """
import json, os, sys, time
import numpy as np
from gpukmeans import KMeans
X = np.load(sys.argv[1])
start = time.perf_counter()
km = KMeans(8, n_init=3, random_state=0, device="cpu").fit(X)
print(json.dumps({"seconds": time.perf_counter() - start, "n_iter": km.n_iter_,
                  "load_average_1m": os.getloadavg()[0]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from bench_segment import make_table
    from gpukmeans.segmentation import Preprocessor

    info = machine_info()
    X = Preprocessor().fit_transform(make_table(args.rows)).X.astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "X.npy"
        np.save(path, X)
        runs = []
        for repeat in range(args.repeats):
            for name, env in SETTINGS.items():
                clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
                done = subprocess.run([sys.executable, "-c", FIT, str(path)], env=clean | env,
                                      capture_output=True, text=True, check=True)
                runs.append({"setting": name, "repeat": repeat, **json.loads(done.stdout)})
                print(json.dumps(runs[-1]), file=sys.stderr)
    record = {"machine": info, "rows": args.rows, "features": X.shape[1], "k": 8, "n_init": 3, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "omp_wait_policy.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# OpenMP wait policy: one `KMeans(8, n_init=3)` fit on the CPU",
        "",
        markdown_header(info),
        "",
        f"{args.rows:,} x {X.shape[1]} float32 (the table of `bench_segment.py`, preprocessed); "
        "each run a fresh process.",
        "",
        "| setting | seconds | iterations | 1-min load |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['seconds']:.1f} | {r['n_iter']} | {r['load_average_1m']:.1f} |" for r in runs
    ]
    (RESULTS / "omp_wait_policy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
