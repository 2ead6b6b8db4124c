"""The gpukmeans command line (installed as the ``gpukmeans_cli`` package)."""

import os

# OpenMP threads that spin while waiting at the end of each parallel region lose
# whole scheduler time slices when other processes share the cores: a fit on a busy
# machine is several times slower spinning (benchmarks/bench_omp_wait.py). This must
# be set before torch loads its OpenMP runtime, hence here, before any command
# imports the library; a value the user set is kept. The library itself changes no
# process-wide setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
