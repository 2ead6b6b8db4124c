"""The gpukmeans command line (installed as the ``gpukmeans_cli`` package)."""
