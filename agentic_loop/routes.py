"""Where the graph goes after each node, decided from the state alone.

The routers are coroutines only so that LangGraph calls them on the event loop: it runs
a plain function on a worker thread, which costs more than the routing itself. The same
holds for the `summarise` node.
"""

from __future__ import annotations

from typing import Literal

from agentic_loop.state import AgenticState


def _steps_left(state: AgenticState) -> bool:
    return len(state.get("steps", [])) < len(state["plan"].steps)


async def route_after_plan(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if state["plan"].steps else "summarise"


async def route_after_execute(state: AgenticState) -> Literal["adapt", "execute", "summarise"]:
    if state.get("failure") is not None:
        return "adapt"
    return "execute" if _steps_left(state) else "summarise"


async def route_after_adapt(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if _steps_left(state) else "summarise"


async def route_after_review(state: AgenticState) -> Literal["execute", "summarise"]:
    return "summarise" if state["plan"].error else "execute"
