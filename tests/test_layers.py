"""The package's layers: the graph core imports nothing from the run store, the front ends
or the tool loaders, and the old flat module paths still import as the modules they became."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import agentic_loop

PACKAGE = Path(agentic_loop.__file__).parent
CORE_MAY_NOT_IMPORT = (
    "agentic_loop.runs",
    "agentic_loop.faces",
    "agentic_loop.step_tools",
    "agentic_loop.evaluation",
)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "core").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_the_core_imports_no_store_face_or_tool_loader(path: Path) -> None:
    moved = [agentic_loop.moved_to(name) or name for name in imported_modules(path)]
    wrong = sorted(name for name in moved if name.startswith(CORE_MAY_NOT_IMPORT))
    assert wrong == [], f"{path.name} imports {wrong}"


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if "core" not in p.relative_to(PACKAGE).parts),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_outside_the_core_nothing_imports_a_node(path: Path) -> None:
    """What the service and the faces need of a node (reading a review or an approval
    answer) lives in a public core module, `core.answers`."""
    moved = [agentic_loop.moved_to(name) or name for name in imported_modules(path)]
    wrong = sorted(name for name in moved if name.startswith("agentic_loop.core.nodes"))
    assert wrong == [], f"{path.name} imports {wrong}"


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "evaluation").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_the_evaluation_imports_no_face(path: Path) -> None:
    """`agentic_loop.evaluation` sits between the runs and the faces: the CLI prints what
    it finds (`faces.scoreboard`), and its runs go through `run_agentic_loop`."""
    wrong = sorted(name for name in imported_modules(path) if name.startswith("agentic_loop.faces"))
    assert wrong == [], f"{path.name} imports {wrong}"


def test_the_layer_check_sees_an_import_of_the_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agentic_loop.runs.store import open_store\n")
    assert "agentic_loop.runs.store" in imported_modules(bad)


@pytest.mark.parametrize(("old", "new"), sorted(agentic_loop.MOVED.items()))
def test_an_old_module_path_imports_the_module_it_became(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_paths_of_public_names_still_work() -> None:
    from agentic_loop.graph import build_graph
    from agentic_loop.storage import checkpointer, load_run
    from agentic_loop.tools import BackgroundRuns

    assert build_graph is agentic_loop.build_graph
    assert checkpointer is agentic_loop.checkpointer
    assert BackgroundRuns is agentic_loop.BackgroundRuns
    assert load_run.__module__ == "agentic_loop.runs.records"
