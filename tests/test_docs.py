"""Every ```python block of README.md and docs/*.md runs verbatim, and prints what its text says.

Each block is written to a file as it stands (imports included) and run in a fresh
interpreter from the repository root, with the repository on ``PYTHONPATH``; it
must exit with status 0. A block whose imports need an optional extra that is
not installed (Lightning, Accelerate, WebDataset, Hugging Face ``datasets``,
torchdata, hypothesis, matplotlib, transformers, Ray) is skipped, naming the package.
A block that starts a Ray cluster is marked ``slow`` (deselected by default; ``.ci/run``
runs it).

Where the paragraph just before a block says what it prints -- the word
``prints`` followed by one backticked span per output line -- the block's
standard output must be exactly those lines, ``...`` standing for any text
(the gap example in docs/results.md "How to check whether your data has a gap" and
the streaming examples do so).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
#: Top-level packages of the optional extras; a block importing a missing one is skipped.
OPTIONAL = frozenset(
    {
        "lightning",
        "accelerate",
        "webdataset",
        "datasets",
        "torchdata",
        "hypothesis",
        "matplotlib",
        "transformers",
        "ray",
    }
)
#: Blocks importing these start a cluster (about a minute): marked ``slow``, run by .ci/run.
SLOW = frozenset({"ray"})
#: Fence info strings a document may use; only ``python`` blocks are run.
FENCES = frozenset({"", "bash", "python", "text"})
TIMEOUT_S = 120

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
_ANY_FENCE = re.compile(r"^([ \t]*)```(.*)$", re.M)
_PRINTS = re.compile(r"\bprints\s+((?:`[^`]+`(?:,?\s*(?:and\s+)?)?)+)")


@dataclass(frozen=True)
class Block:
    """One ```python block: where it is, its code, and the output its text states."""

    path: Path
    line: int  # line of the opening fence, 1-based
    code: str
    prints: tuple[str, ...] | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def stated_output(prose: str) -> tuple[str, ...] | None:
    """The lines a paragraph says its block prints: ``prints `a`, `b` and `c``` -> (a, b, c)."""
    found = _PRINTS.search(prose)
    return tuple(re.findall(r"`([^`]+)`", found.group(1))) if found else None


def find_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in _PYTHON_BLOCK.finditer(text):
        before = text[: match.start()].rstrip()
        paragraph = re.split(r"\n\s*\n|\n```\n|\n#+ ", before)[-1]
        blocks.append(
            Block(
                path,
                text.count("\n", 0, match.start()) + 1,
                match.group(1),
                stated_output(paragraph),
            )
        )
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in find_blocks(path)]


def imported_packages(code: str) -> set[str]:
    """Top-level packages a block imports (absolute imports only)."""
    packages = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def matches(expected: str, line: str) -> bool:
    """``line`` equals ``expected`` where each ``...`` of ``expected`` stands for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, line) is not None


def test_documents_fence_code_only_in_known_ways() -> None:
    """A ```py or indented ```python block would escape this test: refuse them."""
    for path in DOCUMENTS:
        text = path.read_text()
        fences = _ANY_FENCE.findall(text)
        assert len(fences) % 2 == 0, f"{path.name}: an unclosed code fence"
        for (indent, info), _ in zip(fences[::2], fences[1::2]):
            assert info.strip() in FENCES, f"{path.name}: fence ```{info} (allowed: {FENCES})"
            assert not (indent and info.strip() == "python"), f"{path.name}: indented python"
    assert len({b.id for b in BLOCKS}) == len(BLOCKS) >= 8


def test_stated_output_reads_every_backticked_line() -> None:
    assert stated_output("and prints `1 {'a': 2}`, `x` and `y...`):") == ("1 {'a': 2}", "x", "y...")
    assert stated_output("print(x) shows nothing") is None
    assert matches("{'a': None, 'b': 1.02...}", "{'a': None, 'b': 1.0243}")
    assert not matches("{'a': '+0.5'}", "{'a': '+0.6'}")


def test_optional_extras_are_read_from_the_imports() -> None:
    code = "import lightning.pytorch as L\nfrom torchdata.nodes import Loader\nfrom . import x\n"
    assert imported_packages(code) == {"lightning", "torchdata"}
    assert imported_packages("import torch, webdataset as wds") & OPTIONAL == {"webdataset"}


def _param(block: Block) -> Any:
    slow = imported_packages(block.code) & SLOW
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block_runs_verbatim(block: Block, tmp_path: Path) -> None:
    missing = sorted(
        name
        for name in imported_packages(block.code) & OPTIONAL
        if importlib.util.find_spec(name) is None
    )
    if missing:
        pytest.skip(f"{block.id} needs {', '.join(missing)} (an optional extra), not installed")
    script = tmp_path / "block.py"
    script.write_text(block.code)
    # One torch thread unless told otherwise: the blocks' tiny models run fastest so.
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
    if block.prints is not None:
        lines = done.stdout.splitlines()
        assert len(lines) == len(block.prints) and all(
            matches(want, got) for want, got in zip(block.prints, lines)
        ), f"{block.id} should print {list(block.prints)}, but printed {lines}"
