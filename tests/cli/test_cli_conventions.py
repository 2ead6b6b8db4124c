"""The command line keeps the conventions its users expect of one: ``--version``, ``-`` for
standard input and output, fixed sets of values as choices, flags that take no value, shell
completion, and the device set once per machine with ``GPUKMEANS_DEVICE``.

Reading standard input and writing standard output run as real processes, with a table
piped in and what comes out parsed; the rest runs through Typer's runner, with the library
replaced by a recorder where only the arguments it would get matter.
"""

import io
import re
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

import gpukmeans.segmentation
from _robustness import run_cli
from gpukmeans_cli.app import app

DATA = Path(__file__).parents[1] / "data"
MALL = DATA / "Mall_Customers.csv"
RETAIL = DATA / "OnlineRetail_sample.csv"
WIDE = {"COLUMNS": "200"}


def invoke(args, **kwargs):
    return CliRunner().invoke(app, [str(a) for a in args], **kwargs)


def record_calls(monkeypatch, name: str) -> list[tuple]:
    """Replace the library function ``name`` by one that records its arguments, then stops the
    command with an error the CLI prints as one line."""
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        raise ValueError("arguments recorded")

    monkeypatch.setattr(gpukmeans.segmentation, name, record)
    return calls


# ---------------------------------------------------------------- --version, completion


def test_version_prints_the_installed_version(tmp_path):
    done = run_cli(["--version"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"gpukmeans {version('gpukmeans')}\n"


def test_help_offers_shell_completion_and_the_version():
    result = invoke(["--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    for option in ("--install-completion", "--show-completion", "--version"):
        assert option in result.stdout


# ---------------------------------------------------------------- --help of every command

COMMANDS = sorted(get_command(app).commands)
# The values as --help lists them (Typer's brackets around them differ between versions).
CHOICES = {
    "--scale": "standard|robust|minmax|none",
    "--device": "auto|cpu|cuda|cuda:N",
    "--decimal": ".|,",
    "--log": "auto|none|COLUMNS",
}
DEVICE_COMMANDS = ["segment", "sweep", "predict", "demo"]


def _option_line(help_text: str, option: str) -> str:
    return next(line for line in help_text.splitlines() if re.search(rf"\s{re.escape(option)}\s", line))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_without_a_type_and_choices_with_their_values(command):
    result = invoke([command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout
    params = {param.opts[0]: param for param in get_command(app).commands[command].params}
    for name, param in params.items():
        if name in CHOICES and not (command == "bench" and name == "--device"):
            assert CHOICES[name] in _option_line(result.stdout, name), (command, name)
        if getattr(param, "is_flag", False):
            line = _option_line(result.stdout, name)
            assert re.search(rf"{re.escape(name)}\s+(-\w\s+)?[A-Z]", line), line  # straight to the help text
    if command in DEVICE_COMMANDS:
        assert "[env var: GPUKMEANS_DEVICE]" in result.stdout


def test_every_command_but_bench_reads_the_device_from_the_environment():
    # bench's --device picks which devices to time (cpu, cuda, all), not where to run.
    takes_device = [name for name in COMMANDS if "--device" in
                    [param.opts[0] for param in get_command(app).commands[name].params]]
    assert sorted(takes_device) == sorted([*DEVICE_COMMANDS, "bench"])
    for name in DEVICE_COMMANDS:
        device = next(p for p in get_command(app).commands[name].params if p.opts[0] == "--device")
        assert device.envvar == "GPUKMEANS_DEVICE", name


# ---------------------------------------------------------------- choices and flags

OUTSIDE_THE_CHOICES = [
    (["segment", MALL, "--scale", "zscore"], "--scale", "'zscore' is not one of 'standard', 'robust', 'minmax', 'none'"),
    (["sweep", MALL, "--device", "tpu"], "--device", "'tpu' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    (["predict", "model", MALL, "--out", "p.csv", "--decimal", ";"], "--decimal", "';' is not one of '.', ','"),
    (["bench", "--device", "gpu"], "--device", "'gpu' is not one of 'cpu', 'cuda', 'all'"),
]


@pytest.mark.parametrize("args, option, message", OUTSIDE_THE_CHOICES, ids=lambda a: str(a)[:30])
def test_a_value_outside_the_choices_is_a_usage_error(monkeypatch, tmp_path, args, option, message):
    calls = record_calls(monkeypatch, {"segment": "segment", "sweep": "sweep_k", "predict": "predict"}.get(
        args[0], "segment"))
    monkeypatch.chdir(tmp_path)
    result = invoke(args)
    assert result.exit_code == 2, result.output
    error = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in error and message in error, error
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_device_cuda_n_is_within_the_choices(monkeypatch, tmp_path):
    calls = record_calls(monkeypatch, "segment")
    result = invoke(["segment", MALL, "--device", "cuda:1", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "error: arguments recorded" in result.stderr, result.output
    assert calls[0][1]["device"] == "cuda:1"


def test_a_flag_takes_no_value(monkeypatch, tmp_path):
    calls = record_calls(monkeypatch, "segment")
    result = invoke(["segment", MALL, "--out", tmp_path / "o", "--force", "true"])
    assert result.exit_code == 2, result.output
    assert "unexpected extra argument" in result.stderr and "(true)" in result.stderr
    assert calls == []


# ---------------------------------------------------------------- GPUKMEANS_DEVICE


@pytest.mark.parametrize("command, library_function", [
    ("segment", "segment"), ("sweep", "sweep_k"), ("predict", "predict"), ("demo", "run_demo"),
])
def test_the_device_comes_from_GPUKMEANS_DEVICE_unless_given(monkeypatch, tmp_path, command, library_function):
    calls = record_calls(monkeypatch, library_function)
    args = {"segment": [MALL], "sweep": [MALL], "predict": ["model", MALL], "demo": []}[command]
    base = [command, *args, "--out", tmp_path / "o.csv"]

    from_environment = invoke(base, env={"GPUKMEANS_DEVICE": "cpu"})
    assert "error: arguments recorded" in from_environment.stderr, from_environment.output
    given = invoke([*base, "--device", "cuda:0"], env={"GPUKMEANS_DEVICE": "cpu"})
    assert "error: arguments recorded" in given.stderr, given.output
    assert [kwargs["device"] for _, kwargs in calls] == ["cpu", "cuda:0"]

    refused = invoke(base, env={"GPUKMEANS_DEVICE": "gpu"})
    assert refused.exit_code == 2 and len(calls) == 2
    error = " ".join(refused.stderr.replace("│", " ").split())
    assert "'--device' (env var: 'GPUKMEANS_DEVICE')" in error and "'gpu' is not one of" in error, error


# ---------------------------------------------------------------- standard input and output


def test_segment_reads_standard_input_and_predict_writes_standard_output(tmp_path):
    # Two real processes: the table piped into segment, then five new rows piped into predict,
    # whose standard output must be exactly the segments table (every message on standard error).
    spool = tmp_path / "tmp"
    spool.mkdir()
    env = {"TMPDIR": str(spool)}
    trained = run_cli(["segment", "-", "--k", "3", "--no-report", "--device", "cpu", "-q"], cwd=tmp_path,
                      stdin=MALL.read_bytes(), env=env)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "stdin_segments" / "model.safetensors").exists()
    segments = pd.read_csv(tmp_path / "stdin_segments" / "segments.csv", dtype={"CustomerID": str})
    assert len(segments) == 200

    new_rows = b"".join(MALL.read_bytes().splitlines(keepends=True)[:6])  # the header and five customers
    predicted = run_cli(["predict", "stdin_segments", "-", "--out", "-", "--device", "cpu"], cwd=tmp_path,
                        stdin=new_rows, env=env)
    assert predicted.returncode == 0, predicted.stderr
    table = pd.read_csv(io.StringIO(predicted.stdout), dtype={"CustomerID": str})
    assert list(table.columns) == ["CustomerID", "segment", "segment_name", "distance"]
    assert table["CustomerID"].tolist() == ["0001", "0002", "0003", "0004", "0005"]
    expected = segments.set_index("CustomerID").loc[table["CustomerID"], "segment"].tolist()
    assert table["segment"].tolist() == expected
    assert "Wrote 5 rows to standard output" in predicted.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdin_segments", "tmp"]  # no file named "-"
    assert list(spool.iterdir()) == []  # the spooled input and output are deleted


def test_rfm_reads_standard_input_and_writes_standard_output(tmp_path):
    done = run_cli(["rfm", "-", "--out", "-"], cwd=tmp_path, stdin=RETAIL.read_bytes())
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(io.StringIO(done.stdout), dtype={"CustomerID": str})
    assert list(table.columns)[:4] == ["CustomerID", "Recency", "Frequency", "Monetary"]
    assert len(table) > 1 and table["CustomerID"].is_unique
    assert f"{len(table):,} customers" in done.stderr and "wrote standard output" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_sweep_reads_standard_input_named_as_such(monkeypatch, tmp_path):
    seen = []

    def record(data, **kwargs):
        seen.append((Path(data).read_bytes(), kwargs["source"], Path(data)))
        raise ValueError("arguments recorded")

    monkeypatch.setattr(gpukmeans.segmentation, "sweep_k", record)
    result = invoke(["sweep", "-", "--out", tmp_path / "s"], input=MALL.read_bytes())
    assert result.exit_code == 2 and "error: arguments recorded" in result.stderr, result.output
    content, source, spooled = seen[0]
    assert (content, source) == (MALL.read_bytes(), "standard input")
    assert not spooled.parent.exists()  # deleted once the command ends, here with an error


def test_a_failed_run_writes_nothing_to_standard_output(tmp_path):
    model = tmp_path / "m"
    assert invoke(["segment", MALL, "--k", "3", "--out", model, "--no-report", "-q"]).exit_code == 0
    result = invoke(["predict", model, "-", "--out", "-"], input=b"CustomerID,Age\n1,20\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: standard input does not fit the model"), result.stderr


@pytest.mark.parametrize("args, message", [
    (["segment", "-"], "error: standard input is empty"),
    (["predict", "m", MALL, "--out", "-", "--json"], "error: --out - and --json both write to standard output"),
    (["rfm", RETAIL, "--out", "-", "--json"], "error: --out - and --json both write to standard output"),
    (["segment", MALL, "--out", "-"], "error: --out names a folder here"),
])
def test_standard_streams_misused_are_one_line_errors(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = invoke(args, input=b"")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []
