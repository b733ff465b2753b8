"""Where the graph goes after each node, decided from the state alone.

The routers are coroutines only so that LangGraph calls them on the event loop: it runs
a plain function on a worker thread, which costs more than the routing itself. The same
holds for the `summarise` node.
"""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from agentic_loop.nodes.call_tool import pending_tool_calls
from agentic_loop.state import AgenticState


def _steps_left(state: AgenticState) -> bool:
    return len(state.get("steps", [])) < len(state["plan"].steps)


async def route_after_plan(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if state["plan"].steps else "summarise"


ExecuteRoute = Literal["adapt", "approve_tools", "call_tool", "execute", "summarise"]
"""Where `execute` may lead; `call_tool` is reached through one `Send` per tool call."""


async def route_after_execute(
    state: AgenticState, *, approve: frozenset[str] = frozenset()
) -> ExecuteRoute | list[Send]:
    """Tool calls the model asked for go to `call_tool`, one `Send` each, or first to
    `approve_tools` if any needs approval (a tool named in `approve`)."""
    if state.get("failure") is not None:
        return "adapt"
    calls = pending_tool_calls(state.get("messages", []))
    if any(call["name"] in approve for call in calls):
        return "approve_tools"
    if calls:
        return [Send("call_tool", [call]) for call in calls]
    return "execute" if _steps_left(state) else "summarise"


async def route_after_adapt(state: AgenticState) -> Literal["execute", "summarise"]:
    return "execute" if _steps_left(state) else "summarise"


async def route_after_review(state: AgenticState) -> Literal["execute", "summarise"]:
    return "summarise" if state["plan"].error else "execute"
