"""agentic-loop: a plan-and-execute agent loop as a resumable LangGraph graph.

The public names load on first use, so `agentic-loop --help` does not import LangGraph.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic_loop.compose import add_agentic_loop
    from agentic_loop.graph import build_graph, create_agentic_loop
    from agentic_loop.models import load_model
    from agentic_loop.runner import run_agentic_loop
    from agentic_loop.state import (
        AgenticInput,
        AgenticOutput,
        AgenticResult,
        AgenticStep,
        PlanReview,
    )
    from agentic_loop.storage import checkpointer
    from agentic_loop.tools import BackgroundRuns

_EXPORTS = {
    "add_agentic_loop": "agentic_loop.compose",
    "build_graph": "agentic_loop.graph",
    "create_agentic_loop": "agentic_loop.graph",
    "load_model": "agentic_loop.models",
    "run_agentic_loop": "agentic_loop.runner",
    "AgenticInput": "agentic_loop.state",
    "AgenticOutput": "agentic_loop.state",
    "AgenticResult": "agentic_loop.state",
    "AgenticStep": "agentic_loop.state",
    "PlanReview": "agentic_loop.state",
    "BackgroundRuns": "agentic_loop.tools",
    "checkpointer": "agentic_loop.storage",
}

__all__ = [
    "AgenticInput",
    "AgenticOutput",
    "AgenticResult",
    "AgenticStep",
    "BackgroundRuns",
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
