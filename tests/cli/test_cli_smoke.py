"""The installed command answers and lists its commands (the commands are tested in test_cli_*.py)."""

from typer.testing import CliRunner

from gpukmeans_cli.app import app


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("segment", "sweep", "predict", "rfm", "demo", "info", "bench"):
        assert command in result.stdout


def test_every_command_has_help():
    for command in ("segment", "sweep", "predict", "rfm", "demo", "info", "bench"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.stdout
