"""The release metadata agrees with itself: version, CHANGELOG, extras, pins, wheel check.

``.ci/run`` checks the built wheel with ``scripts/check_wheel.py``; these tests
keep what that script reads (the CHANGELOG's newest entry, the README's quick
start, the extras) consistent with the sources on every test run.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import remix_data

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check_wheel() -> ModuleType:
    return load_script("check_wheel")


@pytest.fixture(scope="module")
def project() -> dict[str, object]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def test_version_is_the_changelogs_newest_release(check_wheel: ModuleType) -> None:
    assert check_wheel.released_version(ROOT / "CHANGELOG.md") == remix_data.__version__
    versions = re.findall(r"^## \[(\d+)\.(\d+)\.(\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    as_tuples = [tuple(map(int, v)) for v in versions]
    assert as_tuples == sorted(as_tuples, reverse=True) and len(set(as_tuples)) == len(as_tuples)


def test_the_wheel_check_knows_every_extra(
    check_wheel: ModuleType, project: dict[str, object]
) -> None:
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    assert set(extras) == check_wheel.EXTRAS


def test_pins_satisfy_the_extras_they_pin(project: dict[str, object]) -> None:
    """Each pinned package lies inside every range the project declares for it."""
    pins = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==([0-9.]+)$",
            (ROOT / "requirements" / "pins.txt").read_text(),
            re.M,
        )
    )
    assert {"torch", "transformers", "ray", "pdoc", "build"} <= set(pins)
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    declared = [*project["dependencies"], *(r for group in extras.values() for r in group)]  # type: ignore[misc]
    checked = 0
    for requirement in declared:
        found = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?(.*)$", requirement)
        assert found is not None, requirement
        name, spec = found.groups()
        if name not in pins:
            continue
        version = tuple(int(x) for x in pins[name].split("."))
        for clause in filter(None, spec.split(",")):
            op, bound = re.fullmatch(r"(>=|<|==)([0-9.]+)", clause.strip()).groups()  # type: ignore[union-attr]
            limit = tuple(int(x) for x in bound.split("."))
            padded = version[: len(limit)]
            assert {">=": padded >= limit, "<": padded < limit, "==": padded == limit}[op], (
                f"{name}=={pins[name]} is outside {requirement}"
            )
            checked += 1
    assert checked >= 6


def test_the_quick_start_the_wheel_check_runs_is_the_readmes(check_wheel: ModuleType) -> None:
    code = check_wheel.quick_start(ROOT / "README.md")
    assert "from remix_data.presets import RECOMMENDED, build" in code
    assert code.rstrip().endswith('print(filt.stats()["counts"])')  # what the check parses
