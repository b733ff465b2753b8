"""agentic-loop: a plan-and-execute agent loop as a resumable LangGraph graph.

The package's layers: `core` (the graph), `models`, `step_tools`, `runs` (the store and the
service) and `faces` (CLI, web app, LangGraph Server, background tools). The public names
load on first use, so `agentic-loop --help` does not import LangGraph.

Modules of the flat layout before the layers (`agentic_loop.graph`, `agentic_loop.storage`,
`agentic_loop.server`, ...) still import, as the modules they became: a `langgraph.json`
naming `agentic_loop.server:make_graph` keeps working.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_loader
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic_loop.core.compose import add_agentic_loop
    from agentic_loop.core.graph import build_graph, create_agentic_loop
    from agentic_loop.core.options import LoopOptions
    from agentic_loop.core.state import (
        AgenticInput,
        AgenticOutput,
        AgenticResult,
        AgenticStep,
        PlanReview,
    )
    from agentic_loop.faces.background import BackgroundRuns
    from agentic_loop.models import load_model
    from agentic_loop.runs.runner import run_agentic_loop
    from agentic_loop.runs.store import checkpointer

_EXPORTS = {
    "add_agentic_loop": "agentic_loop.core.compose",
    "build_graph": "agentic_loop.core.graph",
    "create_agentic_loop": "agentic_loop.core.graph",
    "LoopOptions": "agentic_loop.core.options",
    "load_model": "agentic_loop.models",
    "run_agentic_loop": "agentic_loop.runs.runner",
    "AgenticInput": "agentic_loop.core.state",
    "AgenticOutput": "agentic_loop.core.state",
    "AgenticResult": "agentic_loop.core.state",
    "AgenticStep": "agentic_loop.core.state",
    "PlanReview": "agentic_loop.core.state",
    "BackgroundRuns": "agentic_loop.faces.background",
    "checkpointer": "agentic_loop.runs.store",
}

__all__ = [
    "AgenticInput",
    "AgenticOutput",
    "AgenticResult",
    "AgenticStep",
    "BackgroundRuns",
    "LoopOptions",
    "PlanReview",
    "add_agentic_loop",
    "build_graph",
    "checkpointer",
    "create_agentic_loop",
    "load_model",
    "run_agentic_loop",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MOVED = {
    "agentic_loop.compose": "agentic_loop.core.compose",
    "agentic_loop.conversation": "agentic_loop.core.conversation",
    "agentic_loop.deadlines": "agentic_loop.core.deadlines",
    "agentic_loop.dependencies": "agentic_loop.core.dependencies",
    "agentic_loop.events": "agentic_loop.core.events",
    "agentic_loop.graph": "agentic_loop.core.graph",
    "agentic_loop.nodes": "agentic_loop.core.nodes",
    "agentic_loop.parsing": "agentic_loop.core.parsing",
    "agentic_loop.prompts": "agentic_loop.core.prompts",
    "agentic_loop.replies": "agentic_loop.core.replies",
    "agentic_loop.routes": "agentic_loop.core.routes",
    "agentic_loop.settings": "agentic_loop.core.settings",
    "agentic_loop.state": "agentic_loop.core.state",
    "agentic_loop.local_model": "agentic_loop.models.local",
    "agentic_loop.workspace": "agentic_loop.step_tools.workspace",
    "agentic_loop.history": "agentic_loop.runs.history",
    "agentic_loop.leases": "agentic_loop.runs.leases",
    "agentic_loop.runner": "agentic_loop.runs.runner",
    "agentic_loop.service": "agentic_loop.runs.service",
    "agentic_loop.storage": "agentic_loop.runs.store",
    "agentic_loop.cli": "agentic_loop.faces.cli",
    "agentic_loop.drawing": "agentic_loop.faces.drawing",
    "agentic_loop.server": "agentic_loop.faces.server",
    "agentic_loop.terminal": "agentic_loop.faces.terminal",
    "agentic_loop.tools": "agentic_loop.faces.background",
    "agentic_loop.web": "agentic_loop.faces.web",
}
"""Where each module of the flat layout went (a package's modules went with it)."""


def moved_to(name: str) -> str | None:
    """The module an old module path names now, if it moved."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class _OldPaths(MetaPathFinder, Loader):
    """Imports an old module path as the module it became: the same module object, so
    its classes are the same classes."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        return spec_from_loader(name, self) if moved_to(name) else None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return import_module(moved_to(spec.name) or spec.name)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already run under its new name


sys.meta_path.append(_OldPaths())
