"""The benchmark harness: how gpukmeans and its peers are timed side by side.

It backs ``gpukmeans bench`` and the scripts in ``benchmarks/``; the library never
imports it. One module per question:

- :mod:`.protocol`: the data everyone fits, the clocks, the timing protocol, and the
  comparison of libraries shape by shape;
- :mod:`.peers`: one adapter per library (gpukmeans in several configurations, and the
  peers it is measured against);
- :mod:`.reports`: the Markdown tables of a comparison;
- :mod:`.fit_costs`: costs beside one restart's iterations (batched restarts, the CPU
  kernel's first call);
- :mod:`.environment`: the machine, its load and the library versions a result records.
"""

from .environment import cpu_model, environment
from .fit_costs import cpu_kernel_first_call, n_init_cost
from .peers import CPU_PEERS, GPU_PEERS, HALF_STORAGE, PEERS, PeerMissing, naive_torch_lloyd
from .protocol import (
    CPU_SHAPES,
    GPU_SHAPES,
    QUICK_SHAPES,
    Measurement,
    bandwidth_floor_ms,
    make_data,
    matmul_gflops,
    measure_shape,
    run_comparison,
    single_thread,
    time_per_iteration,
)
from .reports import HALF_STORAGE_TARGET, markdown_table, speedup_table, storage_speedups

__all__ = [
    "CPU_PEERS",
    "CPU_SHAPES",
    "GPU_PEERS",
    "GPU_SHAPES",
    "HALF_STORAGE",
    "HALF_STORAGE_TARGET",
    "PEERS",
    "QUICK_SHAPES",
    "Measurement",
    "PeerMissing",
    "bandwidth_floor_ms",
    "cpu_kernel_first_call",
    "cpu_model",
    "environment",
    "make_data",
    "markdown_table",
    "matmul_gflops",
    "measure_shape",
    "n_init_cost",
    "naive_torch_lloyd",
    "run_comparison",
    "single_thread",
    "speedup_table",
    "storage_speedups",
    "time_per_iteration",
]
