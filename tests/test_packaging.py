"""The package's metadata keeps its promises: every extra a message or a document tells users
to install exists, the license it declares is the one it ships, and its type annotations
ship with it."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# "gpukmeans[plot]", "gpukmeans[a,b]" and, in install commands, ".[test]".
_EXTRAS = re.compile(r"(?:gpukmeans|(?<![\w\]])\.)\[([\w, -]+)\]")


def _places_that_tell_users_what_to_install() -> list[Path]:
    places = [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("docker/*")]
    places += [*ROOT.glob("gpukmeans/**/*.py"), *ROOT.glob("cli/**/*.py")]
    return [path for path in places if path.is_file()]


def _named_extras(text: str) -> set[str]:
    return {name.strip() for group in _EXTRAS.findall(text) for name in group.split(",")}


def test_the_extra_pattern_finds_what_users_type():
    assert _named_extras("pip install 'gpukmeans[plot]'; pip install -e \".[test, docs]\"") == {
        "plot", "test", "docs"
    }
    assert _named_extras("values[0] and x.shape[1] and c[k]") == set()


def test_every_extra_named_in_messages_and_documents_exists():
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    named = {}
    for path in _places_that_tell_users_what_to_install():
        for name in _named_extras(path.read_text(errors="replace")):
            named.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert named, "the README tells how to install the test extra"
    missing = {name: places for name, places in named.items() if name not in declared}
    assert missing == {}, f"extras named but not declared in pyproject.toml: {missing}"


def test_the_license_shipped_is_the_one_declared():
    project = PYPROJECT["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) the gpukmeans developers" in text
    assert "Neither the name of the copyright holder nor the names of its" in text


def test_type_annotations_ship_with_the_package():
    assert (ROOT / "gpukmeans" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["gpukmeans"]
    assert "Typing :: Typed" in PYPROJECT["project"]["classifiers"]
