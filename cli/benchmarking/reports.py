"""The Markdown tables of a comparison: every record, and the bfloat16-storage speed-ups."""

from .peers import HALF_STORAGE
from .protocol import Measurement

HALF_STORAGE_TARGET = 1.7  # bfloat16 storage must be at least this much faster than float32


def markdown_table(records: list[Measurement]) -> str:
    """One row per (device, shape, library): the figures, or why there are none."""
    lines = ["| device | n | d | k | library | ms / iter | points x iter / s | x floor | warm-up s | status |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in records:
        def fmt(value, spec):
            return "" if value is None else format(value, spec)
        lines.append(
            f"| {r.device} | {r.n_samples:,} | {r.n_features} | {r.n_clusters} | {r.library} | "
            f"{fmt(r.ms_per_iter, '.2f')} | {fmt(r.points_iters_per_s, '.3g')} | {fmt(r.x_floor, '.2f')} | "
            f"{fmt(r.warmup_s, '.2f')} | {r.status}{f' ({r.note})' if r.note else ''} |")
    return "\n".join(lines)


def storage_speedups(records: list[Measurement]) -> list[dict]:
    """gpukmeans' float32 over bfloat16-storage time per iteration, per device and shape
    where both were measured (same data, same centres, same run)."""
    float32 = {(r.device, r.n_samples, r.n_features, r.n_clusters): r for r in records
               if r.library == "gpukmeans" and r.ms_per_iter}
    speedups = []
    for r in records:
        base = float32.get((r.device, r.n_samples, r.n_features, r.n_clusters))
        if r.library != HALF_STORAGE or not r.ms_per_iter or base is None:
            continue
        speedups.append({"device": r.device, "shape": [r.n_samples, r.n_features, r.n_clusters],
                         "float32_ms": base.ms_per_iter, "bfloat16_ms": r.ms_per_iter,
                         "speedup": base.ms_per_iter / r.ms_per_iter})
    return speedups


def speedup_table(speedups: list[dict]) -> str:
    """The bfloat16-storage speed-ups as a Markdown table, against the target."""
    lines = [f"| device | n | d | k | float32 ms / iter | bfloat16 ms / iter | speed-up "
             f"(target >= {HALF_STORAGE_TARGET}x) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in speedups:
        n, d, k = s["shape"]
        lines.append(f"| {s['device']} | {n:,} | {d} | {k} | {s['float32_ms']:.2f} | {s['bfloat16_ms']:.2f} | "
                     f"{s['speedup']:.2f}x |")
    return "\n".join(lines)
