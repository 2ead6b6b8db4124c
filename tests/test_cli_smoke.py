"""The installed command answers, through Typer's runner (the CLI issue adds the rest)."""

from typer.testing import CliRunner

from gpukmeans_cli.app import app


def test_demo_fits_synthetic_customers():
    result = CliRunner().invoke(app, ["demo", "--rows", "2000", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Fitted 2000 customers on cpu" in result.output
    sizes = [int(s) for s in result.output.split("Segment sizes: ")[1].split(",")]
    assert sum(sizes) == 2000 and len(sizes) == 5
