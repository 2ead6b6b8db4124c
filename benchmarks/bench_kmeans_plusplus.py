"""Greedy k-means++ alone: gpukmeans checkouts side by side with scikit-learn.

Times each library's public ``kmeans_plusplus`` (the same default of ``2 + int(log k)``
candidates a step) on the suite's rows (``make_data``: planted blobs), in separate
processes taken in turn, so that another checkout of gpukmeans (an older commit, say
``git worktree add /tmp/before <commit>``) is timed on equal terms and a busy spell of
the shared machine hits every one alike. Reports every run, the best, and whether the
checkouts chose the same rows.

    python benchmarks/bench_kmeans_plusplus.py [--checkout PATH ...] [--clusters 8 32] [--rounds 2]

Writes benchmarks/results/kmeans-plusplus-cpu.{json,md}.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

# Run in a fresh process with the checkout first on the path: seconds of each run, and
# the rows the last run chose, as one JSON line. The rows come from the installed harness
# (gpukmeans_cli), so that every checkout seeds the same data.
_TIMER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
library, rows, features, clusters, repeats = sys.argv[2], *map(int, sys.argv[3:7])
from gpukmeans_cli.benchmarking import make_data
X = make_data(rows, features, 8, "cpu")[0].numpy()
if library == "scikit-learn":
    from sklearn.cluster import kmeans_plusplus
    seed = lambda: kmeans_plusplus(X, clusters, random_state=0)
else:
    from gpukmeans import kmeans_plusplus
    kmeans_plusplus(X[:10_000], clusters, random_state=0, device="cpu")  # the CPU kernel's compilation
    seed = lambda: kmeans_plusplus(X, clusters, random_state=0, device="cpu")
seconds = []
for _ in range(repeats):
    start = time.perf_counter()
    _, indices = seed()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds, "rows": [int(i) for i in indices]}))
"""


def _commit_of(checkout: Path) -> str:
    """The short commit a checkout is at, or "" (a copy without git metadata)."""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def timed(checkout, library, rows, features, clusters, repeats):
    done = subprocess.run([sys.executable, "-c", _TIMER, str(checkout), library, str(rows), str(features),
                           str(clusters), str(repeats)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, action="append", default=[],
                        help="another gpukmeans checkout to time beside this one (repeatable)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clusters", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=2, help="turns of every contender, one process each")
    parser.add_argument("--repeats", type=int, default=3, help="runs in each process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    contenders = {f"gpukmeans (this checkout, {_commit_of(ROOT)})": (ROOT, "gpukmeans")}
    contenders.update({f"gpukmeans ({path}, {_commit_of(path)})": (path.resolve(), "gpukmeans")
                       for path in args.checkout})
    contenders["scikit-learn"] = (ROOT, "scikit-learn")
    info = machine_info()
    results = []
    for clusters in args.clusters:
        runs = {name: [] for name in contenders}
        chosen = {}
        for turn in range(args.rounds):
            for name in (list(contenders) if turn % 2 == 0 else list(reversed(contenders))):
                measured = timed(*contenders[name], args.rows, args.features, clusters, args.repeats)
                runs[name] += measured["seconds"]
                chosen[name] = measured["rows"]
        same = len({tuple(rows) for name, rows in chosen.items() if name != "scikit-learn"}) == 1
        results.append({"n_clusters": clusters, "runs": runs, "best": {n: min(s) for n, s in runs.items()},
                        "gpukmeans_checkouts_chose_the_same_rows": same})
        print(f"k={clusters}: " + ", ".join(f"{n} best {min(s):.3f} s" for n, s in runs.items())
              + f"; same rows: {same}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    shape = [args.rows, args.features]
    (args.out / "kmeans-plusplus-cpu.json").write_text(json.dumps(
        {"machine": info, "shape": shape, "results": results}, indent=2) + "\n")
    lines = ["# Greedy k-means++ alone on the CPU", "", markdown_header(info), "",
             f"{args.rows:,} x {args.features} float32 (`make_data`), each library's `kmeans_plusplus` with its "
             f"default candidates a step; {args.rounds} turns of one process each, {args.repeats} runs a process; "
             "seconds (the best in bold).", "",
             "| k | library | runs (s) | best (s) | best against scikit-learn |", "|---:|---|---|---:|---:|"]
    for r in results:
        for name, seconds in r["runs"].items():
            lines.append(f"| {r['n_clusters']} | {name} | {', '.join(f'{s:.3f}' for s in seconds)} | "
                         f"**{r['best'][name]:.3f}** | {r['best'][name] / r['best']['scikit-learn']:.2f} |")
    if args.checkout:
        lines += ["", "The gpukmeans checkouts chose the same rows: "
                  + ", ".join(f"k={r['n_clusters']} {'yes' if r['gpukmeans_checkouts_chose_the_same_rows'] else 'no'}"
                              for r in results) + "."]
    (args.out / "kmeans-plusplus-cpu.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'kmeans-plusplus-cpu.md'}")


if __name__ == "__main__":
    main()
