"""The robustness corpus for model files: every part of a real ``model.safetensors``, mutated.

A model written by ``segment`` is taken apart (the file's bytes, the safetensors
header, its metadata, the JSON inside the metadata, the centres) and each part is
changed in each way a damaged or edited file can change: deleted, of another type,
one item short or long, NaN, infinite, zero, negative, unknown. The mutations are
enumerated from the file's own content, so a field added to the format is fuzzed
without touching this file.

``predict`` must refuse every mutated file with exit code 2 and one ``error:`` line
naming the model file, unless :data:`EXPECTED` declares the change harmless (a
different but valid model) or left to ``predict`` (a valid model that the table
does not fit). Every mutation runs through the library's ``predict``, where a
refusal must be one :class:`InputError` (the command prints it as its one line);
the first of each kind of change also runs through the command in this process
(Typer's runner), and a few through the installed command as a process.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _robustness import assert_fails_and_touches_nothing
from safetensors.numpy import load, save
from typer.testing import CliRunner

from gpukmeans.segmentation import InputError, load_model
from gpukmeans.segmentation import predict as run_predict
from gpukmeans_cli.app import app

MALL = Path(__file__).parents[1] / "data" / "Mall_Customers.csv"
# Options that fill every field of the preprocessing: a categorical column, a log
# column, clip bounds.
TRAINING = ["--k", "3", "--categorical", "Genre", "--log", "Age", "--clip", "0.01",
            "--no-report", "--quiet"]

REFUSED = "refused on load"
HARMLESS = "harmless"
LEFT_TO_PREDICT = "refused by predict"

#: Mutations that are not refused when the model is loaded: (field path pattern,
#: change pattern, outcome, why). The first match decides; any other mutation must be
#: refused on load.
EXPECTED = [
    (r"metadata\.info\.decimal$", r"^(deleted|set to null)$", HARMLESS,
     "without the training table's decimal separator, predict detects it"),
    (r"metadata\.info\.(?!k$|decimal$)", r".", HARMLESS,
     "info's facts other than k and decimal are for people; nothing reads them"),
    (r"metadata\.info\.k$", r"^deleted$", HARMLESS,
     "info.k is checked when present; a model saved from Python may carry no facts"),
    (r"metadata\.info$", r"^an unknown member$", HARMLESS,
     "info is free-form facts"),
    (r"metadata\.segment_names(\[\d+\])?$", r"^(unknown text|reversed)$", HARMLESS,
     "a segment's name is free text"),
    (r"metadata\.preprocessing\.(center|scale_values|shift|unit)$", r"^reversed$", HARMLESS,
     "any finite shifts and centres and positive units and scales of the features are valid"),
    (r"metadata\.preprocessing\.id_column$", r"^set to null$", HARMLESS,
     "a model without an ID column numbers the rows instead"),
    (r"metadata\.preprocessing\.id_column$", r"^unknown text$", LEFT_TO_PREDICT,
     "a valid model whose ID column the table lacks: predict names the missing column"),
    (r"metadata\.preprocessing\.(center|shift|impute_values)\b.*", r"^(zero|negative)$", HARMLESS,
     "any finite centre or shift of scaling, or fill-in value, is valid"),
    (r"metadata\.preprocessing\.log_floor\..*", r"^zero$", HARMLESS,
     "a log floor above -1 is valid"),
    (r"metadata\.preprocessing\.clip_bounds\..*\[0\]$", r"^(zero|negative)$", HARMLESS,
     "a lower clip bound below the upper one is valid"),
]


def expected_outcome(where: str, change: str) -> str:
    for path_pattern, change_pattern, outcome, _why in EXPECTED:
        if re.match(path_pattern, where) and re.search(change_pattern, change):
            return outcome
    return REFUSED


# ---------------------------------------------------------------- the file, taken apart


@dataclass
class ModelFile:
    """A safetensors file as its parts: the header (tensor entries and metadata) and the data."""

    header: dict
    data: bytes

    @classmethod
    def read(cls, raw: bytes) -> "ModelFile":
        length = int.from_bytes(raw[:8], "little")
        return cls(json.loads(raw[8 : 8 + length]), raw[8 + length :])

    @property
    def metadata(self) -> dict:
        return self.header["__metadata__"]

    def tensors(self) -> dict[str, np.ndarray]:
        return load(self.encode())

    def encode(self, header: dict | None = None) -> bytes:
        """The bytes of a safetensors file with ``header`` (this one's by default) and this data."""
        text = json.dumps(self.header if header is None else header).encode()
        text += b" " * (-len(text) % 8)
        return len(text).to_bytes(8, "little") + text + self.data

    def with_metadata(self, metadata) -> bytes:
        header = {k: v for k, v in self.header.items() if k != "__metadata__"}
        if metadata is not None:
            header["__metadata__"] = metadata
        return self.encode(header)


@dataclass
class Mutation:
    where: str
    change: str
    contents: bytes

    @property
    def name(self) -> str:
        return f"{self.where}: {self.change}"

    @property
    def part(self) -> str:
        """metadata, tensor, tensors or file."""
        return re.split(r"[. ]", self.where)[0]


WRONG_TYPES = {"a text": "x", "a number": 7, "true": True, "a list": [], "an object": {}, "null": None}
NON_FINITE = {"NaN": float("nan"), "infinity": float("inf"), "minus infinity": float("-inf"),
              "an integer beyond float64": 10**400}


def json_kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def node_changes(value):
    """(change, replacement) for one JSON value, by its kind."""
    for name, replacement in WRONG_TYPES.items():
        if json_kind(replacement) != json_kind(value):
            yield f"set to {name}", replacement
    if json_kind(value) == "number":
        yield from NON_FINITE.items()
        yield "zero", type(value)(0)
        yield "negative", type(value)(-1)
    if isinstance(value, str):
        yield "unknown text", "bogus"
    if isinstance(value, list) and value:
        yield "one item fewer", value[:-1]
        yield "one item more", value + value[-1:]
    if isinstance(value, list) and value != value[::-1]:
        yield "reversed", value[::-1]
    if isinstance(value, dict):
        yield "an unknown member", {**value, "unexpected": 1}


def json_variants(value, where: str):
    """(field path, change, new value of the whole tree) for every node under ``value``."""
    for change, replacement in node_changes(value):
        yield where, change, replacement
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}", "deleted", {k: v for k, v in value.items() if k != key}
            for path, change, new_item in json_variants(item, f"{where}.{key}"):
                yield path, change, {**value, key: new_item}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for path, change, new_item in json_variants(item, f"{where}[{i}]"):
                yield path, change, value[:i] + [new_item] + value[i + 1 :]


def json_paths(value, where: str):
    """Every node's path, as :func:`json_variants` names them."""
    yield where
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from json_paths(item, f"{where}[{i}]")


def decoded(text: str):
    """The JSON object or list a metadata string holds, or None for plain text."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def metadata_mutations(model: ModelFile):
    metadata = model.metadata
    yield Mutation("metadata", "absent", model.with_metadata(None))
    yield Mutation("metadata", "an unknown member", model.with_metadata({**metadata, "unexpected": "1"}))
    for key, text in metadata.items():
        where = f"metadata.{key}"
        rest = {k: v for k, v in metadata.items() if k != key}
        yield Mutation(where, "deleted", model.with_metadata(rest))
        # The safetensors header holds texts only; another type makes it unreadable.
        for name, replacement in WRONG_TYPES.items():
            if name != "a text":
                yield Mutation(where, f"set to {name}", model.with_metadata({**metadata, key: replacement}))
        tree = decoded(text)
        if tree is None:
            yield Mutation(where, "unknown text", model.with_metadata({**metadata, key: "bogus"}))
            yield Mutation(where, "empty text", model.with_metadata({**metadata, key: ""}))
            continue
        yield Mutation(where, "not JSON", model.with_metadata({**metadata, key: text[:-1]}))
        yield Mutation(where, "nested too deep", model.with_metadata({**metadata, key: "[" * 100_000}))
        for path, change, new_tree in json_variants(tree, where):
            yield Mutation(path, change, model.with_metadata({**metadata, key: json.dumps(new_tree)}))


def tensor_mutations(model: ModelFile):
    tensors, metadata = model.tensors(), model.metadata

    def written(new_tensors) -> bytes:
        return save(new_tensors, metadata=metadata)

    for name, array in tensors.items():
        where = f"tensor {name}"
        others = {k: v for k, v in tensors.items() if k != name}
        reshaped = {
            "one row fewer": array[:-1],
            "one row more": np.vstack([array, array[-1:]]),
            "no rows": array[:0],
            "one column fewer": array[:, :-1],
            "one column more": np.hstack([array, array[:, -1:]]),
            "flattened": array.ravel(),
            "an extra axis": array[None],
        }
        for change, new in reshaped.items():
            yield Mutation(where, change, written({**others, name: np.ascontiguousarray(new)}))
        for change, value in [("NaN", np.nan), ("infinity", np.inf), ("minus infinity", -np.inf)]:
            spoiled = array.copy()
            spoiled.flat[spoiled.size // 2] = value
            yield Mutation(where, change, written({**others, name: spoiled}))
        for dtype in (np.float32, np.float16, np.int64, np.bool_):
            retyped = written({**others, name: array.astype(dtype)})
            yield Mutation(where, f"stored as {np.dtype(dtype).name}", retyped)
        # dtypes numpy cannot hold: the same bytes, relabelled in the header.
        for dtype, width in [("BF16", 2), ("F8_E4M3", 1)]:
            header = copy.deepcopy(model.header)
            header[name]["dtype"] = dtype
            header[name]["shape"] = [array.nbytes // width]
            yield Mutation(where, f"stored as {dtype}", model.encode(header))
        yield Mutation(where, "renamed", written({**others, f"{name}_renamed": array}))
        yield Mutation(where, "deleted", written(others))
    yield Mutation("tensors", "an unknown tensor", written({**tensors, "unexpected": np.zeros(2)}))


def byte_mutations(raw: bytes, model: ModelFile):
    length = int.from_bytes(raw[:8], "little")
    for change, size in [("empty", 0), ("cut to 4 bytes", 4), ("cut after the length", 8),
                         ("cut mid-header", 8 + length // 2), ("cut after the header", 8 + length),
                         ("last byte missing", len(raw) - 1)]:
        yield Mutation("file", change, raw[:size])
    yield Mutation("file", "one byte more", raw + b"\0")

    def patched(offset: int, replacement: bytes) -> bytes:
        return raw[:offset] + replacement + raw[offset + len(replacement) :]

    yield Mutation("file", "header length too long", patched(0, (length + 8).to_bytes(8, "little")))
    yield Mutation("file", "header length huge", patched(0, (2**63).to_bytes(8, "little")))
    yield Mutation("file", "header not JSON", patched(8, b"x"))
    yield Mutation("file", "a zero byte mid-header", patched(8 + length // 2, b"\0"))
    yield Mutation("file", "header a list", model.encode([]))
    yield Mutation("file", "a CSV table", MALL.read_bytes())


def all_mutations(raw: bytes) -> list[Mutation]:
    model = ModelFile.read(raw)
    return [*metadata_mutations(model), *tensor_mutations(model), *byte_mutations(raw, model)]


# ---------------------------------------------------------------- running predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ``segment`` output folder on the Mall table, model.safetensors and segments.csv in it."""
    out = tmp_path_factory.mktemp("trained") / "mall"
    result = CliRunner().invoke(app, ["segment", str(MALL), "--out", str(out), *TRAINING])
    assert result.exit_code == 0, result.output
    return out


def predict(model_path: Path, out: Path):
    return CliRunner(env={"GPUKMEANS_DEBUG": ""}).invoke(
        app, ["predict", str(model_path), str(MALL), "--out", str(out), "--quiet"]
    )


def _written(mutation: Mutation, folder: Path) -> tuple[Path, Path]:
    """The mutated model in ``folder`` and a fresh output path beside it."""
    model_path, out = folder / "model.safetensors", folder / "segments.csv"
    model_path.write_bytes(mutation.contents)
    out.unlink(missing_ok=True)
    return model_path, out


def _named(expected: str, model_path: Path) -> str:
    """What a refusal's message must start with: the model file, or the table it does not fit."""
    return f"{model_path}: " if expected == REFUSED else f"{MALL} "


def library_problem(mutation: Mutation, folder: Path) -> str | None:
    """Predict through the library; what is wrong with what it did, or None.

    A refusal must be an InputError (the command prints it as one line, exit code 2)
    of one line naming the file, with nothing written.
    """
    model_path, out = _written(mutation, folder)
    expected = expected_outcome(mutation.where, mutation.change)
    try:
        run_predict(model_path, MALL, out=out)
    except InputError as exc:
        message = str(exc)
        if expected == HARMLESS:
            return f"refused: {message}"
        if "\n" in message or not message.startswith(_named(expected, model_path)) or out.exists():
            return f"not one line naming {_named(expected, model_path)!r}, or wrote: {message}"
        return None
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        return f"{type(exc).__name__}: {exc}"
    return None if expected == HARMLESS and out.exists() else "accepted"


def command_problem(mutation: Mutation, folder: Path) -> str | None:
    """Run the ``predict`` command in this process; what is wrong with what it did, or None."""
    model_path, out = _written(mutation, folder)
    result = predict(model_path, out)
    expected = expected_outcome(mutation.where, mutation.change)
    if expected == HARMLESS:
        return None if result.exit_code == 0 and out.exists() else f"exit {result.exit_code}: {result.output}"
    lines = result.stderr.strip().splitlines()
    if result.exit_code != 2 or not isinstance(result.exception, SystemExit) or len(lines) != 1:
        return f"exit {result.exit_code}, {result.exception!r}: {result.output}"
    if "Traceback" in result.output or out.exists():
        return f"a traceback, or wrote: {result.output}"
    if not lines[0].startswith(f"error: {_named(expected, model_path)}"):
        return f"not an error line naming {_named(expected, model_path)!r}: {lines[0]}"
    return None


def test_the_unmutated_model_and_its_re_encoding_predict_the_training_labels(trained, tmp_path):
    raw = (trained / "model.safetensors").read_bytes()
    training = pd.read_csv(trained / "segments.csv", dtype={"CustomerID": str})
    # The fuzz rewrites files through ModelFile; unchanged, its output must be a valid model.
    for attempt, contents in enumerate((raw, ModelFile.read(raw).encode())):
        (tmp_path / "model.safetensors").write_bytes(contents)
        out = tmp_path / f"p{attempt}.csv"
        result = predict(tmp_path / "model.safetensors", out)
        assert result.exit_code == 0, result.output
        predicted = pd.read_csv(out, dtype={"CustomerID": str})
        pd.testing.assert_frame_equal(predicted, training)


@pytest.mark.slow
def test_every_mutation_of_every_field_is_refused_or_declared(trained, tmp_path):
    raw = (trained / "model.safetensors").read_bytes()
    mutations = all_mutations(raw)
    # Every mutation through the library; through the command, the first of each kind of
    # change to each part (metadata, tensor, file), which shows the command's one line
    # for every kind of refusal at a twentieth of the cost.
    first_of_each_kind = {}
    for mutation in mutations:
        first_of_each_kind.setdefault((mutation.part, mutation.change), mutation)
    through_command = {id(mutation) for mutation in first_of_each_kind.values()}
    problems = {}
    for mutation in mutations:
        problem = library_problem(mutation, tmp_path)
        if problem is None and id(mutation) in through_command:
            problem = command_problem(mutation, tmp_path)
        if problem is not None:
            problems[mutation.name] = problem
    assert problems == {}, "\n".join(f"{name} -> {problem}" for name, problem in problems.items())

    # Every node of the metadata's JSON and every tensor was mutated, several ways.
    model = ModelFile.read(raw)
    paths = {f"metadata.{key}" for key in model.metadata}
    for key, text in model.metadata.items():
        tree = decoded(text)
        if tree is not None:
            paths |= set(json_paths(tree, f"metadata.{key}"))
    paths |= {f"tensor {name}" for name in model.header if name != "__metadata__"}
    changes_by_path = {}
    for mutation in mutations:
        changes_by_path.setdefault(mutation.where, set()).add(mutation.change)
    assert {path for path in paths if len(changes_by_path.get(path, ())) < 3} == set()
    outcomes = Counter(expected_outcome(m.where, m.change) for m in mutations)
    assert len(mutations) >= 550 and len(through_command) >= 50
    assert outcomes[REFUSED] >= 450 and outcomes[HARMLESS] >= 20 and outcomes[LEFT_TO_PREDICT] == 1


# ---------------------------------------------------------------- named problems, their messages


@dataclass
class Parts:
    """A model file's decoded contents, for a named case to edit."""

    preprocessing: dict
    metadata: dict
    centers: np.ndarray

    @classmethod
    def of(cls, raw: bytes) -> "Parts":
        model = ModelFile.read(raw)
        metadata = dict(model.metadata)
        return cls(json.loads(metadata.pop("preprocessing")), metadata, model.tensors()["cluster_centers"])

    def encode(self) -> bytes:
        metadata = {**self.metadata, "preprocessing": json.dumps(self.preprocessing)}
        return save({"cluster_centers": self.centers}, metadata=metadata)


#: case: (raw bytes -> bad model bytes, a text of the expected message)
NAMED = {}


def named(case: str, expected: str, *, on_bytes: bool = False):
    """Register the decorated edit of :class:`Parts` (or of the raw bytes) as a named case."""

    def register(edit):
        make = edit if on_bytes else lambda raw: _applied(edit, raw)
        NAMED[case] = (make, expected)
        return edit

    return register


def _applied(edit, raw: bytes) -> bytes:
    parts = Parts.of(raw)
    edit(parts)
    return parts.encode()


@named("NaN centres", "centres hold NaN or infinity")
def _nan_centres(m):
    m.centers[1, 2] = np.nan


@named("float32 centres", "the centres are stored as F32; a model stores F64")
def _float32_centres(m):
    m.centers = m.centers.astype(np.float32)


@named("zero scale", "scale of column 'Age' is 0; a model needs positive scales")
def _zero_scale(m):
    m.preprocessing["scale_values"][0] = 0.0


@named("inverted clip bounds", "clip bounds of 'Annual Income (k$)' are inverted (90.0 > 10.0)")
def _inverted_clip(m):
    m.preprocessing["clip_bounds"]["Annual Income (k$)"] = [90.0, 10.0]


@named("more names than centres", "4 segment names for 3 centres")
def _four_names(m):
    m.metadata["segment_names"] = json.dumps(["A", "B", "C", "D"])


@named("newer format", "format version '3', written by a newer gpukmeans; this gpukmeans reads format versions 1 and 2")
def _newer_version(m):
    m.metadata["format_version"] = "3"


@named("no format version", "has no format_version; this gpukmeans reads format versions 1 and 2")
def _no_version(m):
    del m.metadata["format_version"]


@named("log column not numeric", "log column 'Genre' is not a numeric column")
def _log_column_not_numeric(m):
    m.preprocessing["log_columns"] = ["Genre"]
    m.preprocessing["log_floor"] = {"Genre": 0.0}


@named("one-hot wider than the centres", "the centres have 5 columns for 6 features after preprocessing")
def _level_added_but_not_to_the_centres(m):
    m.preprocessing["categories"]["Genre"].append("Other")
    m.preprocessing["feature_names_out"].append("Genre=Other")
    m.preprocessing["shift"].append(0.0)
    m.preprocessing["unit"].append(1.0)
    m.preprocessing["center"].append(0.0)
    m.preprocessing["scale_values"].append(1.0)


@named("unknown scaler", 'preprocessing.scale must be one of standard, robust, minmax, none; got "zscore"')
def _unknown_scaler(m):
    m.preprocessing["scale"] = "zscore"


@named("truncated", "not a readable safetensors file", on_bytes=True)
def _truncated(raw):
    return raw[:-7]


@pytest.mark.parametrize("case", list(NAMED))
def test_a_bad_model_is_one_message_naming_the_file_and_the_problem(trained, tmp_path, case):
    make, expected = NAMED[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(make((trained / "model.safetensors").read_bytes()))
    with pytest.raises(InputError) as caught:
        load_model(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message


class _Marker:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    import pickle

    marker = tmp_path / "executed"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"cluster_centers": _Marker(marker)}))
    result = predict(path, tmp_path / "p.csv")
    assert result.exit_code == 2 and "not a readable safetensors file" in result.stderr, result.output
    assert not marker.exists()


# ---------------------------------------------------------------- the installed command


@pytest.mark.parametrize("case", ["NaN centres", "zero scale", "newer format", "truncated"])
def test_the_installed_command_refuses_a_bad_model_and_writes_nothing(trained, tmp_path, case):
    make, expected = NAMED[case]
    (tmp_path / "model.safetensors").write_bytes(make((trained / "model.safetensors").read_bytes()))
    (tmp_path / "customers.csv").write_bytes(MALL.read_bytes())
    assert_fails_and_touches_nothing(
        ["predict", "model.safetensors", "customers.csv", "--out", "segments.csv"],
        "model.safetensors: ", expected, cwd=tmp_path,
    )
