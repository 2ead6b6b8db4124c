"""The options ``segment`` and ``sweep`` share are declared once (option groups), yet each
command still lists every option, in the same order with the same defaults, and hands
each one to the library."""

import re
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

import gpukmeans.segmentation
from gpukmeans_cli._options import expand_option_groups
from gpukmeans_cli.app import Engine, Preprocessing, app

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"

# Every option of each command, in --help's order, with its default.
SEGMENT_OPTIONS = {
    "--k": None, "--k-range": "2:12", "--min-share": None, "--columns": None, "--id-column": "auto",
    "--categorical": None, "--drop-missing": False, "--log": "auto", "--clip": None, "--scale": "standard",
    "--decimal": None, "--labels": None, "--label": None, "--out": None, "--force": False, "--n-init": "10",
    "--max-iter": 300, "--seed": 0, "--device": "auto",
    "--sample-size": 10_000, "--sweep-n-init": "auto", "--stability": 20, "--no-report": False, "--quiet": False,
    "--json": False,
}
SWEEP_OPTIONS = {
    "--k-range": "2:12", "--min-share": None, "--columns": None, "--id-column": "auto", "--categorical": None,
    "--drop-missing": False, "--log": "auto", "--clip": None, "--scale": "standard", "--decimal": None,
    "--out": None, "--force": False, "--n-init": "auto", "--max-iter": 300, "--seed": 0, "--device": "auto",
    "--sample-size": 10_000, "--quiet": False, "--json": False,
}
COMMANDS = [("segment", SEGMENT_OPTIONS), ("sweep", SWEEP_OPTIONS)]


@pytest.mark.parametrize("command, options", COMMANDS)
def test_help_lists_every_option(command, options):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in options:
        # Whole names only: "--k" must not be found inside "--k-range".
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.stdout), option
    assert "-q" in result.stdout


# Defaults that a help text describes in words, in the brackets Typer puts its own defaults in.
DESCRIBED_DEFAULTS = [
    ("segment", "--columns", "[default: every numeric column but the ID]"),
    ("segment", "--out", "[default: DATA's name + _segments]"),
    ("sweep", "--columns", "[default: every numeric column but the ID]"),
    ("sweep", "--out", "[default: DATA's name + _sweep]"),
    ("rfm", "--date-format", "[default: inferred]"),
    ("segment", "--k-range", "[default: 2:12]"),
    ("sweep", "--k-range", "[default: 2:12]"),
]


@pytest.mark.parametrize("command, option, described", DESCRIBED_DEFAULTS)
def test_help_shows_defaults_described_in_words(command, option, described):
    # rich renders help as markup: an unescaped "[default: ...]" would be dropped as a style tag.
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    option_line = next(line for line in result.stdout.splitlines() if re.search(rf"\s{re.escape(option)}\s", line))
    assert described in option_line and "\\[" not in option_line, option_line
    assert "[default: None]" not in option_line, option_line  # the described default only


@pytest.mark.parametrize("command, options", COMMANDS)
def test_options_keep_their_order_and_defaults(command, options):
    params = [p for p in get_command(app).commands[command].params if p.opts[0].startswith("--")]
    assert [p.opts[0] for p in params] == list(options)
    assert {p.opts[0]: p.default for p in params} == options
    help_texts = {p.opts[0]: p.help for p in params}
    assert help_texts["--n-init"] == "k-means restarts (they share passes over the data), or 'auto'."
    assert help_texts["--drop-missing"] == "Drop rows with missing values instead of imputing them."


@pytest.mark.parametrize("command, library_function", [("segment", "segment"), ("sweep", "sweep_k")])
def test_shared_options_reach_the_library(monkeypatch, tmp_path, command, library_function):
    calls = []

    def record(data, **kwargs):
        calls.append(kwargs)
        raise ValueError("arguments recorded")  # the CLI's part ends here

    monkeypatch.setattr(gpukmeans.segmentation, library_function, record)
    result = CliRunner().invoke(app, [
        command, str(MALL), "--out", str(tmp_path / "o"), "--columns", "Age, Annual Income (k$)",
        "--id-column", "none", "--categorical", "Genre", "--drop-missing", "--log", "Age", "--clip", "0.01",
        "--scale", "robust", "--decimal", ",", "--n-init", "3", "--max-iter", "7", "--seed", "11", "--device", "cpu",
        "--sample-size", "500", "--k-range", "3:9", "--min-share", "0.05",
    ])
    assert result.exit_code == 2 and "error: arguments recorded" in result.stderr, result.output
    passed = calls[0]
    assert {key: passed[key] for key in (
        "columns", "id_column", "categorical", "missing", "log", "clip", "scale", "decimal",
        "n_init", "max_iter", "seed", "device", "sample_size",
    )} == {
        "columns": ["Age", "Annual Income (k$)"], "id_column": None, "categorical": ["Genre"],
        "missing": "drop", "log": ["Age"], "clip": 0.01, "scale": "robust", "decimal": ",",
        "n_init": 3, "max_iter": 7, "seed": 11, "device": "cpu", "sample_size": 500,
    }
    assert (passed["k_range"], passed["min_share"]) == ((3, 9), 0.05)
    if command == "segment":  # the sweep's restarts have their own option
        assert passed["sweep_n_init"] == "auto"

    calls.clear()
    defaults = CliRunner().invoke(app, [command, str(MALL), "--out", str(tmp_path / "d")])
    assert defaults.exit_code == 2, defaults.output
    passed = calls[0]
    assert passed["n_init"] == (10 if command == "segment" else "auto")
    assert (passed["columns"], passed["id_column"], passed["categorical"], passed["missing"]) == (
        None, "auto", (), "impute"
    )
    assert (passed["max_iter"], passed["seed"], passed["device"], passed["sample_size"]) == (300, 0, "auto", 10_000)
    assert (passed["k_range"], passed["min_share"]) == ((2, 12), None)


@pytest.fixture
def segment_calls(monkeypatch):
    """The keyword arguments of each call the CLI makes to the library's ``segment``,
    which records them and stops there."""
    calls = []

    def record(data, **kwargs):
        calls.append(kwargs)
        raise ValueError("arguments recorded")

    monkeypatch.setattr(gpukmeans.segmentation, "segment", record)
    return calls


def test_segment_passes_the_sweeps_restarts_apart_from_the_final_fits(segment_calls, tmp_path):
    calls = segment_calls
    result = CliRunner().invoke(app, ["segment", str(MALL), "--out", str(tmp_path / "o"), "--n-init", "4",
                                      "--sweep-n-init", "6"])
    assert result.exit_code == 2 and "error: arguments recorded" in result.stderr, result.output
    assert (calls[0]["n_init"], calls[0]["sweep_n_init"]) == (4, 6)
    bad = CliRunner().invoke(app, ["segment", str(MALL), "--out", str(tmp_path / "b"), "--sweep-n-init", "0"])
    assert bad.exit_code == 2 and "--sweep-n-init must be 'auto' or a positive integer" in bad.stderr


def test_labels_from_a_file_and_options_reach_the_library(segment_calls, tmp_path):
    calls = segment_calls
    (tmp_path / "labels.json").write_text('{"Age": "Age in years", "Annual Income (k$)": "Income"}')
    result = CliRunner().invoke(app, [
        "segment", str(MALL), "--out", str(tmp_path / "o"), "--labels", str(tmp_path / "labels.json"),
        "--label", "Annual Income (k$)=Yearly income", "--label", "Spending Score (1-100)=Spending",
    ])
    assert result.exit_code == 2 and "error: arguments recorded" in result.stderr, result.output
    assert calls[0]["labels"] == {
        "Age": "Age in years", "Annual Income (k$)": "Yearly income", "Spending Score (1-100)": "Spending",
    }


def test_a_bad_n_init_is_one_line_naming_the_option(tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(MALL), "--n-init", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --n-init must be 'auto' or a positive integer, got '0'"
    assert not (tmp_path / "o").exists()


def test_groups_are_built_from_the_expanded_options():
    seen = []
    tiny = typer.Typer()

    @tiny.command()
    @expand_option_groups
    def fit(name: str, engine: Engine = Engine(seed=5), preprocessing: Preprocessing = Preprocessing()):
        seen.append((name, engine, preprocessing))

    result = CliRunner().invoke(tiny, ["x", "--max-iter", "9", "--scale", "none"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", Engine(seed=5, max_iter=9), Preprocessing(scale="none"))]


def test_an_option_named_twice_fails_at_declaration():
    with pytest.raises(ValueError, match="duplicate parameter name: 'seed'"):

        @expand_option_groups
        def clash(seed: int = 0, engine: Engine = Engine()):
            pass
