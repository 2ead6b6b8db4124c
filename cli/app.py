"""The ``gpukmeans`` command: a thin Typer layer over the library."""

from typing import Annotated

import typer

app = typer.Typer(help="GPU-accelerated k-means for customer segmentation.", no_args_is_help=True)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Synthetic customers to generate.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
):
    """Segment a synthetic customer table with known segments, end to end."""
    import numpy as np

    from gpukmeans import KMeans

    rng = np.random.default_rng(seed)
    true_centres = rng.uniform(-10, 10, size=(5, 6))
    truth = rng.integers(0, 5, size=rows)
    X = (true_centres[truth] + rng.normal(size=(rows, 6))).astype(np.float32)
    km = KMeans(5, random_state=seed, device=device).fit(X)
    sizes = np.bincount(km.labels_, minlength=5)
    typer.echo(f"Fitted {rows} customers on {km.device_} in {km.n_iter_} iterations; inertia {km.inertia_:.1f}")
    typer.echo("Segment sizes: " + ", ".join(str(int(s)) for s in sizes))


@app.command()
def info():
    """Versions, devices and optional parts installed."""
    import torch

    import gpukmeans

    typer.echo(f"gpukmeans {gpukmeans.__version__}, torch {torch.__version__}")
    typer.echo(f"CUDA available: {torch.cuda.is_available()}")


def main():
    app()
