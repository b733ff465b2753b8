"""Where the graph goes after each node, decided from the state alone.

The routers are coroutines only so that LangGraph calls them on the event loop: it runs
a plain function on a worker thread, which costs more than the routing itself. The same
holds for the `summarise` node.
"""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from agentic_loop.nodes.call_tool import pending_tool_calls
from agentic_loop.state import AgenticState, ReplanMode


def _steps_left(state: AgenticState) -> bool:
    return len(state.get("steps", [])) < len(state["plan"].steps)


async def route_after_plan(state: AgenticState) -> Literal["review", "execute", "summarise"]:
    plan = state["plan"]
    if not plan.steps:
        return "summarise"
    return "review" if plan.review_requested else "execute"


def _after_step(
    state: AgenticState, replan: ReplanMode, max_replans: int, *, failed: bool
) -> Literal["replan", "execute", "answer"]:
    wanted = replan == "after_each_step" or (replan == "on_failure" and failed)
    if wanted and state["plan"].replans < max_replans:
        return "replan"
    return "execute" if _steps_left(state) else "answer"


ExecuteRoute = Literal["adapt", "answer", "approve_tools", "call_tool", "execute", "replan"]
"""Where `execute` may lead; `call_tool` is reached through one `Send` per tool call."""


async def route_after_execute(
    state: AgenticState,
    *,
    approve: frozenset[str] = frozenset(),
    replan: ReplanMode = "on_failure",
    max_replans: int = 0,
) -> ExecuteRoute | list[Send]:
    """Tool calls the model asked for go to `call_tool`, one `Send` each, or first to
    `approve_tools` if any needs approval (a tool named in `approve`). A finished step
    goes to `replan` when `replan` asks for it after every step."""
    if state.get("failure") is not None:
        return "adapt"
    calls = pending_tool_calls(state.get("messages", []))
    if any(call["name"] in approve for call in calls):
        return "approve_tools"
    if calls:
        return [Send("call_tool", [call]) for call in calls]
    return _after_step(state, replan, max_replans, failed=False)


async def route_after_adapt(
    state: AgenticState, *, replan: ReplanMode = "on_failure", max_replans: int = 0
) -> Literal["replan", "execute", "answer"]:
    return _after_step(state, replan, max_replans, failed=True)


async def route_after_replan(state: AgenticState) -> Literal["execute", "answer"]:
    return "execute" if _steps_left(state) else "answer"


async def route_after_review(state: AgenticState) -> Literal["execute", "summarise"]:
    return "summarise" if state["plan"].error else "execute"
