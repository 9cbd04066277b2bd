"""The package's import graph flows one way, and the benchmarks use no private names.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` and
``from ... import`` of a module, at any depth, is one edge. The checkers are tested
on small made-up packages first, so a rule that could never fail would show.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from remix_data.vocabulary import __all__ as VOCABULARY

ROOT = Path(__file__).resolve().parents[1]
#: The benchmarks' shared harness module: the one private-named module they may import.
SHARED_HARNESS = "benchmarks._common"

Imports = dict[str, list[tuple[str, tuple[str, ...]]]]


def module_name(path: Path, root: Path) -> str:
    """``remix_data/datasets/hapt.py`` -> ``remix_data.datasets.hapt`` (a package: its name)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, tuple[str, ...]]]:
    """``(module, names)`` per import statement of ``path``, relative imports resolved.

    ``from . import hapt`` inside a package gives the submodule ``pkg.hapt``.
    """
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if node.module is None:  # ``from . import a, b``: the submodules themselves
                out.extend((f"{target}.{n}", ()) for n in names)
            else:
                out.append((target, names))
    return out


def package_imports(root: Path, package: str) -> Imports:
    """Every module of ``package`` (under ``root``) -> its imports of the package's modules."""
    found: Imports = {}
    for path in sorted((root / package).rglob("*.py")):
        own = [
            (target, names)
            for target, names in imports_of(path, root)
            if target == package or target.startswith(package + ".")
        ]
        found[module_name(path, root)] = own
    return found


def graph_of(imports: Imports) -> dict[str, set[str]]:
    """Module -> the modules it imports (a ``from pkg import sub`` of a submodule counts)."""
    graph: dict[str, set[str]] = {}
    for module, targets in imports.items():
        edges = graph.setdefault(module, set())
        for target, names in targets:
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in imports]
            edges.update(submodules or [target])
        edges.discard(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None`` when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def vocabulary_detours(imports: Imports, vocabulary: str, words: set[str]) -> list[str]:
    """Imports of a shared word from any module other than the vocabulary or the package root."""
    root = vocabulary.rpartition(".")[0]
    bad = []
    for module, targets in imports.items():
        for target, names in targets:
            taken = sorted(words.intersection(names))
            if taken and target not in (vocabulary, root):
                bad.append(f"{module} imports {taken} from {target}")
    return bad


def private_imports(path: Path, root: Path, allowed: set[str]) -> list[str]:
    """Private names (``_x``) a script imports from another module, or private modules."""
    bad = []
    for target, names in imports_of(path, root):
        if target == "__future__" or target in allowed:
            continue
        hidden = [part for part in target.split(".") if part.startswith("_")]
        if hidden:
            bad.append(f"{path.name} imports the private module {target}")
        for n in names:
            if n.startswith("_") and not n.startswith("__"):
                bad.append(f"{path.name} imports the private name {n} from {target}")
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            bad.append(f"{path.name}:{node.lineno} reads {ast.unparse(node)}")
    return bad


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------- the checkers catch faults
def test_the_checkers_catch_a_cycle_a_detour_and_a_private_import(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",
            "pkg/words.py": "WORD = 1\n",
            "pkg/b.py": "from .words import WORD\nB = WORD\n",
            "pkg/a.py": "from .b import WORD, B\nA = B\n",
            "pkg/sub/__init__.py": "from .. import words\n",
            "bench/run.py": "from bench.other import _step\nimport x\nx.y._z\n",
        },
    )
    imports = package_imports(tmp_path, "pkg")
    graph = graph_of(imports)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.words"},
        "pkg.sub": {"pkg.words"},
        "pkg.words": set(),
    }
    assert find_cycle(graph) is None
    graph["pkg.words"].add("pkg.a")
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.words", "pkg.a"]
    assert vocabulary_detours(imports, "pkg.words", {"WORD"}) == [
        "pkg.a imports ['WORD'] from pkg.b"
    ]
    assert private_imports(tmp_path / "bench/run.py", tmp_path, set()) == [
        "run.py imports the private name _step from bench.other",
        "run.py:3 reads x.y._z",
    ]


def test_find_cycle_sees_the_import_inside_a_function(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .b import B\n",
            "pkg/b.py": "def f():\n    from .a import A\nB = 1\n",
        },
    )
    assert find_cycle(graph_of(package_imports(tmp_path, "pkg"))) == ["pkg.a", "pkg.b", "pkg.a"]


# ------------------------------------------------------------------- the package
@pytest.fixture(scope="module")
def imports() -> Imports:
    return package_imports(ROOT, "remix_data")


def test_the_vocabulary_imports_nothing_of_the_package(imports: Imports) -> None:
    assert "remix_data.vocabulary" in imports
    assert imports["remix_data.vocabulary"] == []


def test_shared_words_come_from_the_vocabulary(imports: Imports) -> None:
    """``ALL``, ``FILTERED``, ``Key`` ... are never taken from the sampler or the filter."""
    assert {"ALL", "FILTERED", "Key", "Batch"} <= set(VOCABULARY)
    assert vocabulary_detours(imports, "remix_data.vocabulary", set(VOCABULARY)) == []


def test_the_package_import_graph_is_acyclic(imports: Imports) -> None:
    graph = graph_of(imports)
    assert len(graph) >= 25  # every module was read
    assert find_cycle(graph) is None
    # and it flows one way: the score rule and the table sit below the filter
    assert "remix_data.filter" not in graph["remix_data.assignment"]
    assert {"remix_data.assignment", "remix_data.table"} <= graph["remix_data.filter"]


def test_no_benchmark_imports_a_private_name() -> None:
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(scripts) >= 10
    assert (ROOT / "benchmarks" / "_common.py").exists()  # the shared harness module
    bad = [b for s in scripts for b in private_imports(s, ROOT, {SHARED_HARNESS})]
    assert bad == []


# ------------------------------------------- no class reads another one's private state
#: Names with a leading underscore that are public by their owner's protocol.
PUBLIC_BY_PROTOCOL = {
    "_replace", "_fields", "_asdict", "_make",  # namedtuple's API
    "_is_accelerate_prepared",  # the flag Accelerate reads on a prepared loader
    "_exit",  # os._exit: the standard library's exit without teardown
}  # fmt: skip


def foreign_private_reads(path: Path, root: Path) -> list[str]:
    """``x._name`` in ``path`` where ``x`` is not ``self``, ``cls`` or ``type(self)``."""
    own = {"self", "cls"}
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in PUBLIC_BY_PROTOCOL:
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in own:
            continue
        if isinstance(value, ast.Call) and ast.unparse(value) in ("type(self)", "super()"):
            continue
        bad.append(f"{path.relative_to(root).as_posix()}: {ast.unparse(node)}")
    return bad


def test_the_private_read_checker_sees_reads_of_another_object(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/a.py": (
                "class A:\n"
                "    def __init__(self, other):\n"
                "        self._mine = other._theirs\n"
                "        type(self)._shared, super().__init__()\n"
                "        other.public, other.__class__, cls_ = 1, 2, 3\n"
                "        point._replace(x=1)\n"
            ),
        },
    )
    assert foreign_private_reads(tmp_path / "pkg/a.py", tmp_path) == ["pkg/a.py: other._theirs"]


def test_no_module_reads_another_objects_private_attributes() -> None:
    found = {
        read
        for path in sorted((ROOT / "remix_data").rglob("*.py"))
        for read in foreign_private_reads(path, ROOT)
    }
    assert found == set()
    # the filter's parts are reached through public hooks: table, queue, pairing, checkpoint
    assert not {read for read in found if "filter" in read or "filt." in read}
