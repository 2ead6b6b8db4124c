"""``python -m gpukmeans_cli`` runs the ``gpukmeans`` command."""

from .app import main

main()
