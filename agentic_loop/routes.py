"""Where the graph goes after each node, decided from the state alone."""

from __future__ import annotations

from typing import Literal

from agentic_loop.state import AgenticState


def _steps_left(state: AgenticState) -> bool:
    return len(state.get("steps", [])) < len(state.get("plan", []))


def route_after_plan(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if state.get("plan") else "summarise"


def route_after_execute(state: AgenticState) -> Literal["adapt", "execute", "summarise"]:
    if state.get("failure") is not None:
        return "adapt"
    return "execute" if _steps_left(state) else "summarise"


def route_after_adapt(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if _steps_left(state) else "summarise"
