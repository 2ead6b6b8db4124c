"""The gpukmeans command line (installed as the ``gpukmeans_cli`` package).

Importing it, or its benchmark harness (:mod:`.benchmarking`), changes no process-wide
state: the command sets what it needs for itself when :mod:`.app` loads.
"""
