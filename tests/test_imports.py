"""The package's import graph, read from the source with ``ast`` (nothing is imported).

Every ``import metastasis...`` statement counts, at module level or inside a function (a lazy
import is still a dependency); only ``if TYPE_CHECKING:`` blocks are left out. Data flows one
way (DESIGN.md): no module imports itself back through others, the engine never reaches the
report layers nor the exports, and nothing that uses a trained model (checkpoint, inference,
slides, serve, export) reaches the training package. A private name (``_x``) stays in its module:
no ``from <module> import _x``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import metastasis

SRC = Path(metastasis.__file__).parent
UPSTREAM_OF_REPORTS = ("metastasis.engine",)
REPORT_LAYERS = ("metastasis.reports", "metastasis.eda")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _import_nodes(node)


def imports_of(module: str) -> set[str]:
    """The package's modules that ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` depends on the submodule, else on pkg itself
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        found.update(n for n in names if n in MODULES and n != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in GRAPH[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_graph_is_read() -> None:
    assert len(MODULES) > 50
    assert "metastasis.checkpoint" in GRAPH["metastasis.engine.trainer"]
    assert "metastasis.engine.trainer" in GRAPH["metastasis.training"]
    assert "metastasis.tune.result" in GRAPH["metastasis.tune.report"]  # module-level
    assert "metastasis.training" in GRAPH["metastasis.tune.search"]  # inside a function
    assert GRAPH["metastasis"] == set()  # only TYPE_CHECKING and importlib there


# No cycle remains (the registry and the slide readers had one each): a new one fails the test.
KNOWN_CYCLES: list[list[str]] = []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == KNOWN_CYCLES


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


READERS = "metastasis.slides.readers"


def test_the_slide_readers_import_one_way() -> None:
    """The backends build on ``base`` and never on ``open_slide``'s package, nor on each other
    (a lazy import inside a function counts too)."""
    inside = {m for m in GRAPH if _in(m, (READERS,))}
    assert {f"{READERS}.{m}" for m in ("base", "openslide", "tifffile", "image")} <= inside
    assert _cycles({m: GRAPH[m] & inside for m in inside}) == []
    for module in inside - {READERS}:
        assert READERS not in GRAPH[module], f"{module} imports the readers' package"
        others = GRAPH[module] & inside - {f"{READERS}.base"}
        assert not others, f"{module} imports {sorted(others)}"


def private_imports(module: str, path: Path) -> list[str]:
    """``from <a module of the package> import _name`` statements in ``module``, anywhere in it
    (``if TYPE_CHECKING:`` included): a private name belongs to its own module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if not (node.level or (node.module or "").split(".")[0] == "metastasis"):
            continue
        for alias in node.names:
            name = alias.name
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                source = "." * node.level + (node.module or "")
                found.append(f"{module}:{node.lineno}: from {source} import {name}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    found = [
        line for module, path in sorted(MODULES.items()) for line in private_imports(module, path)
    ]
    assert not found, "private names imported from other modules:\n" + "\n".join(found)


def test_the_private_import_finder_finds_one(tmp_path: Path) -> None:
    code = "from metastasis.a import _b, c\nif x:\n    from .d import _e\nfrom os import _exit\n"
    (tmp_path / "m.py").write_text(code)
    found = private_imports("metastasis.m", tmp_path / "m.py")
    assert [f.split(": ", 1)[1] for f in found] == [
        "from metastasis.a import _b",
        "from .d import _e",
    ]


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, UPSTREAM_OF_REPORTS)))
def test_the_engine_never_reaches_the_reports(module: str) -> None:
    direct = {m for m in GRAPH[module] if _in(m, REPORT_LAYERS)}
    assert not direct, f"{module} imports {sorted(direct)}"
    reached = {m for m in _reachable(module) if _in(m, REPORT_LAYERS)}
    assert not reached, f"{module} reaches {sorted(reached)} through its imports"


TRAINING = ("metastasis.engine", "metastasis.training")
# What inference shares with training (the checkpoint, the prediction loop, the malloc settings,
# the package versions) lives outside the training package, in rooms of its own ...
SHARED_ROOMS = (
    "metastasis.checkpoint",
    "metastasis.inference.batches",
    "metastasis.memory",
    "metastasis.versions",
)
# ... so that using a trained model never imports the training package.
USES_OF_A_MODEL = (
    *SHARED_ROOMS,
    "metastasis.inference",
    "metastasis.slides",
    "metastasis.serve",
    "metastasis.export",
)


def test_the_shared_rooms_are_outside_the_training_package() -> None:
    assert set(SHARED_ROOMS) <= set(MODULES)
    assert not {m for m in MODULES if _in(m, ("metastasis.engine",))} & {
        "metastasis.engine.checkpoint",
        "metastasis.engine.memory",
    }
    assert "metastasis.inference.batches" in GRAPH["metastasis.engine.learner"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, USES_OF_A_MODEL)))
def test_using_a_model_never_imports_the_training_package(module: str) -> None:
    direct = {m for m in GRAPH[module] if _in(m, TRAINING)}
    assert not direct, f"{module} imports {sorted(direct)}"
    reached = {m for m in _reachable(module) if _in(m, TRAINING)}
    assert not reached, f"{module} reaches {sorted(reached)} through its imports"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, ("metastasis.engine",))))
def test_the_engine_never_imports_the_exports(module: str) -> None:
    """The exports of a run (``model.onnx``, ``MODEL_CARD.md``) are written by
    ``metastasis.training``, above both."""
    direct = {m for m in GRAPH[module] if _in(m, ("metastasis.export",))}
    assert not direct, f"{module} imports {sorted(direct)}"
    reached = {m for m in _reachable(module) if _in(m, ("metastasis.export",))}
    assert not reached, f"{module} reaches {sorted(reached)} through its imports"


def test_tune_trains_through_the_public_train() -> None:
    search = GRAPH["metastasis.tune.search"]
    assert "metastasis.training" in search and "metastasis.data.splits" in search
    assert not {m for m in search if _in(m, ("metastasis.engine",))}


def _in_models(module: str) -> bool:
    return _in(module, ("metastasis.models",))


REGISTRY = "metastasis.models.registry"
FAMILIES = {m for m in MODULES if _in_models(m)} - {"metastasis.models", REGISTRY}
# What the registry may import from the package: the families import it, never the other way.
REGISTRY_NEEDS = {"metastasis.errors", "metastasis.transforms.presets"}


def test_the_registry_imports_no_family() -> None:
    assert {"metastasis.models.baseline_cnn", "metastasis.models.timm_backbones"} <= FAMILIES
    imported = GRAPH[REGISTRY]
    assert imported <= REGISTRY_NEEDS, f"the registry imports {sorted(imported - REGISTRY_NEEDS)}"
    reached = {m for m in _reachable(REGISTRY) if _in_models(m)}
    assert not reached, f"the registry reaches {sorted(reached)} through its imports"
    for family in sorted(FAMILIES):
        assert REGISTRY in GRAPH[family], f"{family} does not import the registry"
    assert GRAPH["metastasis.models"] >= FAMILIES, "metastasis.models must import every family"


def package_imports_in_functions(tree: ast.AST) -> list[str]:
    """``function: import`` for each import of a ``metastasis`` module inside a function.

    Third-party imports inside a function (timm, the hub's helpers) are fine: only a deferred
    import of the package itself hides a cycle."""
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            ours = [n for n in names if n.startswith(".") or _in(n, ("metastasis",))]
            found += [f"{func.name}: {n}" for n in ours]
    return sorted(set(found))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in_models(m)))
def test_the_models_never_import_the_package_inside_a_function(module: str) -> None:
    path = MODULES[module]
    assert package_imports_in_functions(ast.parse(path.read_text(), str(path))) == []


def test_imports_inside_functions_are_found() -> None:
    source = (
        "import metastasis.errors\n"
        "def f():\n"
        "    import timm\n"
        "    from metastasis.models import baseline_cnn\n"
        "    def g():\n"
        "        from . import registry\n"
        "class C:\n"
        "    async def h(self):\n"
        "        import metastasis.io as io\n"
    )
    assert package_imports_in_functions(ast.parse(source)) == [
        "f: .",
        "f: metastasis.models",
        "g: .",
        "h: metastasis.io",
    ]


def test_command_line_start_up_imports_only_what_the_command_needs() -> None:
    """``metastasis --version`` and ``predict --help`` import no PyTorch nor pandas (start-up
    time: the other commands' modules are listed from their source, not imported)."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom metastasis.cli import main\n"
        "for argv in (['--version'], ['predict', '--help'], ['--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('MODULES', sorted(m for m in ('torch', 'pandas', 'matplotlib') "
        "if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "MODULES []", done.stderr
    assert "usage: metastasis predict" in done.stdout and "slides" in done.stdout
