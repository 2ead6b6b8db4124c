"""Killing ``gpukmeans segment`` at a random moment never leaves a broken output or litter.

A fault benchmark, not a test: it takes minutes. It writes a customer table
(:func:`gpukmeans.segmentation.demo.make_customers`, 1,000,000 rows by default, CSV)
into a scratch folder, and times one whole run with and one without the report:
when its output is in place and how long its staging folder exists (the writing).
Then it runs the trials. Each trial starts the installed command as a fresh process,

    gpukmeans segment customers.csv --k 4 --out out --device cpu --quiet [--no-report] [--force]

(``--force`` once ``out`` exists; every third run without ``--no-report``, so with
the report), and kills it with SIGKILL or SIGTERM, alternately, at a random moment:
in half the trials any moment before a whole run's output is in place, in the other
half during the writing (the moment its staging folder appears plus a random part of
the writing's time). Then it checks:

- ``out`` is absent or complete: ``summary.json`` parses and ``out`` holds exactly
  the files it lists;
- beside ``out`` there is nothing but the table, ``out`` and, after SIGKILL, the
  temporary names of the killed run (``.out.partial-PID-*``, ``.out.old-PID-*``),
  which are hidden and which the next run removes; after SIGTERM, not even those,
  and the command exits with 143 and one ``error:`` line;
- the next run, the same command again (so with ``--force`` when the killed one had
  it, or when ``out`` exists), exits with 0 and leaves a complete ``out`` and nothing
  else. A run killed between setting the old ``out`` aside and renaming the new one
  into place leaves no ``out``; the next run puts the old one back, then replaces it.

Results, with the machine and the commit, go to ``benchmarks/results/faults.{json,md}``.

    python benchmarks/bench_faults.py [--rows 1000000] [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, markdown_header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TABLE = "customers.csv"
OUT = "out"
# The temporary names a run makes beside ``out`` (see gpukmeans.segmentation.io).
TEMPORARY = re.compile(rf"\.{OUT}\.(?:(?:partial|old|probe)-(\d+)-[a-z0-9_]+|(\d+)-[a-z0-9_]+\.tmp)")


def command() -> list[str]:
    script = Path(sys.executable).with_name("gpukmeans")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gpukmeans_cli"]


def segment_args(*, report: bool, force: bool) -> list[str]:
    args = ["segment", TABLE, "--k", "4", "--out", OUT, "--device", "cpu", "--quiet"]
    if not report:
        args.append("--no-report")
    if force:
        args.append("--force")
    return args


def make_table(folder: Path, rows: int, seed: int) -> float:
    from gpukmeans.segmentation import write_table
    from gpukmeans.segmentation.demo import make_customers

    customers, _ = make_customers(rows, random_state=seed)
    write_table(customers, folder / TABLE, "csv")
    return (folder / TABLE).stat().st_size / 2**20


def out_state(folder: Path) -> str:
    """``absent``, ``complete`` (summary.json parses and lists exactly what is there) or what is wrong."""
    out = folder / OUT
    if not os.path.lexists(out):
        return "absent"
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        return f"broken: summary.json unreadable ({exc})"
    listed, present = set(summary["outputs"]["files"]), {p.name for p in out.iterdir()}
    if listed != present:
        return f"broken: holds {sorted(present)}, summary lists {sorted(listed)}"
    return "complete"


def litter(folder: Path) -> list[str]:
    """Everything beside ``out`` that is neither the table nor ``out``."""
    return sorted(name for name in os.listdir(folder) if name not in (TABLE, OUT))


def start(folder: Path, *, report: bool, force: bool) -> subprocess.Popen:
    return subprocess.Popen(command() + segment_args(report=report, force=force), cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_to_the_end(folder: Path, *, report: bool, force: bool) -> tuple[int, float, float | None, str]:
    """Exit code, seconds until the output was in place (the staging folder gone; None if
    it was not seen), seconds the staging folder existed, standard error."""
    started = time.perf_counter()
    process = start(folder, report=report, force=force)
    appeared = wait_for_staging(folder, process)
    written = writing = None
    if appeared is not None:
        while staging_of(folder, process) and process.poll() is None:
            time.sleep(0.002)
        written = time.perf_counter() - started
        writing = written - appeared
    _, stderr = process.communicate()
    return process.returncode, written, writing, stderr.strip()


def staging_of(folder: Path, process: subprocess.Popen) -> bool:
    prefix = f".{OUT}.partial-{process.pid}-"
    return any(name.startswith(prefix) for name in os.listdir(folder))


def wait_for_staging(folder: Path, process: subprocess.Popen) -> float | None:
    """Seconds until a staging folder of ``process`` appears; None if the run ends first."""
    started = time.perf_counter()
    while process.poll() is None:
        if staging_of(folder, process):
            return time.perf_counter() - started
        time.sleep(0.002)
    return None


def trial(folder: Path, number: int, rng: random.Random, written: dict, writing: dict) -> dict:
    kill = signal.SIGKILL if number % 2 == 0 else signal.SIGTERM
    window = "writing" if (number // 2) % 2 else "anywhere"
    report = number % 3 == 0
    had_output = (folder / OUT).exists()
    started = time.perf_counter()
    process = start(folder, report=report, force=had_output)
    if window == "anywhere":
        time.sleep(rng.uniform(0, written[report]))
    elif wait_for_staging(folder, process) is not None:
        time.sleep(rng.uniform(0, writing[report]))
    killed_at = time.perf_counter() - started
    finished_first = process.poll() is not None
    if not finished_first:
        process.send_signal(kill)
    stdout, stderr = process.communicate()
    state, left = out_state(folder), litter(folder)
    stray = [name for name in left if not TEMPORARY.fullmatch(name)]
    if finished_first:
        outcome = "finished before the kill"
    elif process.returncode == 128 + signal.SIGTERM:
        outcome = "stopped by SIGTERM (exit 143)"
    elif process.returncode == -signal.SIGTERM:
        # The command handles SIGTERM from just before it parses its arguments until
        # its result is printed; outside that (start-up, shut-down) the default applies.
        outcome = "killed by SIGTERM outside the run (start-up or shut-down)"
    else:
        outcome = f"killed by {signal.Signals(kill).name}"
    checks = {
        "out absent or complete": state in ("absent", "complete"),
        "only temporary names beside out": not stray,
        "SIGTERM leaves no temporary names": kill != signal.SIGTERM or finished_first or not left,
        "SIGTERM message is one error line": process.returncode != 128 + signal.SIGTERM or (
            len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ")
        ),
        "finished run exits 0": not finished_first or process.returncode == 0,
    }
    rerun_code, rerun_seconds, _, rerun_stderr = run_to_the_end(
        folder, report=False, force=had_output or (folder / OUT).exists()
    )
    rerun_state, rerun_left = out_state(folder), litter(folder)
    checks["next run succeeds"] = rerun_code == 0
    checks["next run leaves out complete and nothing else"] = rerun_state == "complete" and not rerun_left
    return {
        "trial": number,
        "signal": signal.Signals(kill).name,
        "window": window,
        "report": report,
        "had_output": had_output,
        "kill_at_s": round(killed_at, 3),
        "returncode": process.returncode,
        "stderr": stderr.strip()[-300:],
        "outcome": outcome,
        "out_after_kill": state,
        "beside_out_after_kill": left,
        "next_run": {"returncode": rerun_code, "seconds": round(rerun_seconds, 2), "out": rerun_state,
                     "beside_out": rerun_left, "stderr": rerun_stderr[-300:]},
        "checks": checks,
        "ok": all(checks.values()),
    }


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD")
    return head + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def write_results(report: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Killing `gpukmeans segment` at random moments",
        "",
        markdown_header(report["machine"]),
        f"Commit {report['commit']}.",
        "",
        f"Table: {report['rows']:,} customers ({report['table_mib']:.1f} MiB CSV, `make_customers`). "
        f"A whole run has its output in place after {report['written_at_s']['with report']:.1f} s with "
        f"the report and {report['written_at_s']['without report']:.1f} s without (start-up included), "
        f"of which the writing (the staging folder's life) takes {report['writing_s']['with report']:.2f} s "
        f"and {report['writing_s']['without report']:.2f} s. "
        f"{report['passed']} of {len(report['trials'])} trials pass every check.",
        "",
        "| trial | signal | when | report | earlier out | killed at s | exit | outcome | out after | "
        "beside out after | next run | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["trials"]:
        beside = ", ".join(f"`{name}`" for name in t["beside_out_after_kill"]) or "nothing"
        nxt = t["next_run"]
        lines.append(
            f"| {t['trial']} | {t['signal']} | {t['window']} | {'yes' if t['report'] else 'no'} | "
            f"{'yes' if t['had_output'] else 'no'} | {t['kill_at_s']:.2f} | {t['returncode']} | {t['outcome']} | "
            f"{t['out_after_kill']} | {beside} | exit {nxt['returncode']}, {nxt['seconds']:.1f} s, out "
            f"{nxt['out']}, {'nothing' if not nxt['beside_out'] else nxt['beside_out']} beside | "
            f"{'yes' if t['ok'] else 'NO: ' + ', '.join(k for k, v in t['checks'].items() if not v)} |"
        )
    lines += [
        "",
        "\"when\": *anywhere* is a uniform moment before a whole run's output is in place; *writing* is the moment the "
        "run's staging folder appears plus a uniform part of the writing's time (a whole run's, above). "
        "The next run is the same command again, without the report. Temporary names left by SIGKILL start with a dot "
        "and carry the killed process's ID; the next run removes them. Exit 143 is the command's own "
        "SIGTERM handling (staging removed, one `error:` line); -9 is SIGKILL.",
    ]
    (RESULTS / "faults.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", type=Path, default=None, help="Where the scratch folder goes.")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    info = machine_info()
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench-faults-") as scratch:
        folder = Path(scratch)
        table_mib = make_table(folder, args.rows, args.seed)
        written, writing = {}, {}
        for report in (True, False):
            code, seconds, staged, stderr = run_to_the_end(folder, report=report, force=True)
            if code != 0 or staged is None:
                raise SystemExit(f"a whole run failed or was not seen writing: {stderr}")
            written[report], writing[report] = seconds, staged
            print(f"whole run {'with' if report else 'without'} the report: output in place after "
                  f"{seconds:.1f} s, writing {staged:.2f} s", flush=True)
        trials = []
        for number in range(args.trials):
            if number % 4 == 0 and number:
                # Start some trials with no earlier output, so that both cases are killed.
                subprocess.run(["rm", "-rf", str(folder / OUT)], check=True)
            result = trial(folder, number, rng, written, writing)
            trials.append(result)
            print(f"trial {number}: {result['signal']} at {result['kill_at_s']:.2f} s ({result['window']}): "
                  f"{result['outcome']}, out {result['out_after_kill']}, beside {result['beside_out_after_kill']}; "
                  f"{'ok' if result['ok'] else 'FAILED ' + str(result['checks'])}", flush=True)
    report = {
        "machine": info,
        "commit": commit(),
        "rows": args.rows,
        "table_mib": round(table_mib, 1),
        "seed": args.seed,
        "written_at_s": {"with report": round(written[True], 2), "without report": round(written[False], 2)},
        "writing_s": {"with report": round(writing[True], 3), "without report": round(writing[False], 3)},
        "passed": sum(t["ok"] for t in trials),
        "trials": trials,
    }
    write_results(report)
    print(f"{report['passed']} of {len(trials)} trials pass; wrote {RESULTS / 'faults.md'}")


if __name__ == "__main__":
    main()
