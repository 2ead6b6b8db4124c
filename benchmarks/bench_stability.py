"""What each segment's stability costs beside the final fit, in ``segment``.

Stability (:mod:`gpukmeans.segmentation.stability`) refits k-means on B bootstrap
resamples of the clustered rows (a uniform sample of 100,000 above that), the resamples
sharing each pass (:mod:`gpukmeans.engine.resampled`). Each case runs
:func:`gpukmeans.segmentation.segment` once in this process with ``k=8`` and the
default 10 restarts, and reads the stages ``fit`` and ``stability`` from its timings:

- ``1m``: the 1,000,000 x 12 table of ``bench_segment.make_table`` (in memory);
- ``10m``: the 10,000,000-row Parquet table of ``bench_segment`` (``--parquet``, or
  generated into ``--data-dir``), ``channel`` one-hot encoded.

Target: at 1,000,000 rows, stability (B=20) at most 3x the final fit. Results go to
``benchmarks/results/stability.{json,md}`` with the machine.

    python benchmarks/bench_stability.py [--only 1m] [--resamples 20] [--device cpu]
        [--parquet /path/customers_10m.parquet] [--data-dir /path/to/cache]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segment import cached_parquet, make_table  # noqa: E402
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("1m", "10m")
TARGET_RATIO = 3.0  # stability seconds per final-fit second, at 1,000,000 rows


def run_case(case: str, args) -> dict:
    from gpukmeans.segmentation import segment

    if case == "1m":
        data, extra, rows = make_table(1_000_000), {}, 1_000_000
    else:
        data = args.parquet or cached_parquet(args.data_dir or Path(tempfile.mkdtemp()), 10_000_000)[0]
        extra, rows = {"categorical": ["channel"]}, 10_000_000
    result = segment(data, k=8, stability=args.resamples, device=args.device, report=False, seed=0, **extra)
    timings, summary = result.timings, result.summary
    return {
        "case": case,
        "rows": rows,
        "features": len(summary["preprocessing"]["features"]),
        "k": summary["k"],
        "resamples": summary["stability_resamples"],
        "stability_method": summary["stability_method"],
        "fit_s": round(timings["fit"], 2),
        "stability_s": round(timings["stability"], 2),
        "ratio": round(timings["stability"] / timings["fit"], 2),
        "stability": [item["stability"] for item in summary["segments"]],
    }


def markdown(record: dict) -> str:
    lines = [
        "# Stability per segment against the final fit", "",
        markdown_header(record["machine"]), "",
        f"`segment(k=8, stability={record['resamples']})` on the {record['device']}, the final fit with 10 "
        "restarts; seconds of the stages `fit` and `stability` from the run's timings.", "",
        "| case | rows | features | resampled | fit s | stability s | stability/fit | per segment |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for run in record["runs"]:
        values = ", ".join(f"{value:.2f}" for value in run["stability"])
        lines.append(f"| {run['case']} | {run['rows']:,} | {run['features']} | {run['stability_method']} | "
                     f"{run['fit_s']:.1f} | {run['stability_s']:.1f} | {run['ratio']:.2f} | {values} |")
    lines += ["", f"Target at 1,000,000 rows: stability/fit <= {TARGET_RATIO:.0f}."]
    for run in record["runs"]:
        if run["case"] == "1m":
            lines.append(f"Measured {run['ratio']:.2f}: {'passes' if run['ratio'] <= TARGET_RATIO else 'fails'}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help=f"Comma-separated cases among {', '.join(CASES)}.")
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parquet", type=Path, help="The 10,000,000-row table of bench_segment, if at hand.")
    parser.add_argument("--data-dir", type=Path, help="Folder caching the generated Parquet table.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Folder for stability.{json,md}.")
    args = parser.parse_args(argv)
    cases = [case for part in (args.only or [",".join(CASES)]) for case in part.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose among {', '.join(CASES)}")

    record = {"machine": machine_info(), "device": args.device, "resamples": args.resamples, "runs": []}
    for case in cases:
        record["runs"].append(run_case(case, args))
        print(json.dumps(record["runs"][-1]), file=sys.stderr)
    args.results.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}"
    (args.results / f"stability{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.results / f"stability{suffix}.md").write_text(markdown(record))
    print((args.results / f"stability{suffix}.md").read_text())
    return record


if __name__ == "__main__":
    main()
