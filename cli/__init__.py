"""The gpukmeans command line (installed as the ``gpukmeans_cli`` package)."""

import os

# OpenMP threads that spin while waiting at the end of each parallel region lose
# whole scheduler time slices when other processes share the cores: on a busy
# 2-core machine a k-means fit took 74-110 s spinning and 7 s waiting passively
# (benchmarks/results/segment_cli.md). This must be set before torch loads its
# OpenMP runtime, hence here, before any command imports the library; a value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
