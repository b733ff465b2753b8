"""Where the graph goes after each node, decided from the state alone.

The routers are coroutines only so that LangGraph calls them on the event loop: it runs
a plain function on a worker thread, which costs more than the routing itself. The same
holds for the `summarise` node.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from langgraph.prebuilt.tool_node import ToolCallWithContext
from langgraph.runtime import Runtime
from langgraph.types import Send

from agentic_loop.core.conversation import of_step, pending_tool_calls, reviewed_calls
from agentic_loop.core.dependencies import ready_steps
from agentic_loop.core.nodes.schedule import replan_wanted, round_update, spent_budget
from agentic_loop.core.prompts import clip
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, AgenticStep, RunningStep, StepTask


async def route_after_plan(state: AgenticState) -> Literal["review", "schedule", "summarise"]:
    plan = state["plan"]
    if not plan.steps:
        return "summarise"
    return "review" if plan.review_requested else "schedule"


async def route_after_review(state: AgenticState) -> Literal["schedule", "summarise"]:
    return "summarise" if state["plan"].error else "schedule"


StepNode = Literal["execute", "call_tool", "approve_tools", "adapt"]
"""The nodes that do a step's work, each reached through one `Send` per step (per tool
call for `call_tool`), from `schedule` or from a step node that ran alone; each leads back
to `schedule`, or (`route_after_step`) straight to the next round."""


async def route_after_schedule(
    state: AgenticState, *, settings: Settings
) -> Literal["replan", "answer"] | list[Send]:
    """`replan` when the steps that ended call for it; else one `Send` for each thing a
    step in progress does next (adapt its failure, ask for approvals, run each tool call,
    or ask the model again) and one for each step ready to start, up to `max_parallel` in
    progress; `answer` once nothing is left to run."""
    if replan_wanted(state, settings):
        return "replan"
    sends: list[Send] = []
    running = state.get("running", {})
    messages = state.get("messages", [])
    for key in sorted(running, key=int):
        step = running[key]
        conversation = of_step(messages, step.step_num)
        task = step_task(state, step.step_num, step, conversation, settings)
        calls = pending_tool_calls(conversation)
        if step.failure is not None:
            sends.append(Send("adapt", task))
        elif any(
            call["name"] in settings.approve_tools
            and call["id"] not in reviewed_calls(conversation[-1])
            for call in calls
        ):
            sends.append(Send("approve_tools", task))
        elif calls:
            # `ToolNode` takes a call with the state it needs as this payload, the one
            # `langchain.agents.create_agent` sends it; LangGraph exports it, public.
            sends += [
                Send(
                    "call_tool",
                    ToolCallWithContext(
                        __type="tool_call_with_context", tool_call=call, state=dict(task)
                    ),
                )
                for call in calls
            ]
        else:
            sends.append(Send("execute", task))
    if spent_budget(state, settings, time.time()) is None:
        finished = {s.step_num for s in state.get("steps", [])}
        room = settings.options.max_parallel - len(running)
        started = {int(key) for key in running}
        for step_num in ready_steps(state["plan"].dependencies(), finished, started)[:room]:
            sends.append(Send("execute", step_task(state, step_num, None, [], settings)))
    if len(sends) == 1 and sends[0].node != "call_tool":
        sends[0].arg["solo"] = True  # its node runs alone: it may start the next round
    return sends or "answer"


class StepNodeRun(Protocol):
    def __call__(self, state: StepTask, *, runtime: Runtime) -> Awaitable[dict[str, Any]]: ...


def telling_if_alone(node: Callable[..., Awaitable[dict[str, Any]]]) -> StepNodeRun:
    """`node` writing `solo` when its `Send` said it runs alone, for `route_after_step`."""

    async def run(state: StepTask, *, runtime: Runtime) -> dict[str, Any]:
        update = await node(state, runtime=runtime)
        return {**update, "solo": True} if state.get("solo") else update

    return run


StepRoute = Literal["schedule", "replan", "answer"] | list[Send]


async def route_after_step(state: AgenticState, *, settings: Settings) -> StepRoute:
    """After a step node: where `schedule` would lead, straight away, when the node ran
    alone in its superstep (so the state holds every write of it) and `schedule` would
    record nothing; else `schedule`, which waits for every node of the superstep. A
    sequential plan so needs no `schedule` superstep between its steps."""
    if not state.get("solo") or round_update(state, settings, time.time())[0]:
        return "schedule"
    return await route_after_schedule(state, settings=settings)


def after_step(settings: Settings) -> Callable[[AgenticState], Awaitable[StepRoute]]:
    """`route_after_step` for the graph. A function, not a `partial`: LangGraph reads what
    state a router gets from its first parameter's annotation, and without one it would
    get the step node's `StepTask` rather than the whole state."""

    async def route(state: AgenticState) -> StepRoute:
        return await route_after_step(state, settings=settings)

    return route


def step_task(
    state: AgenticState,
    step_num: int,
    running: RunningStep | None,
    conversation: list[Any],
    settings: Settings,
) -> StepTask:
    """What a step node needs of the state for step `step_num`."""
    plan = state["plan"]
    step_deadline = run_deadline = None
    if settings.options.step_timeout is not None:
        started = running.started_at if running else time.time()
        step_deadline = started + settings.options.step_timeout
    work_started_at = state.get("work_started_at")
    if settings.options.max_seconds is not None and work_started_at:
        run_deadline = work_started_at + settings.options.max_seconds
    return {
        "task": state["task"],
        "plan": plan,
        "step_num": step_num,
        "running": running,
        "messages": conversation,
        "inputs": step_inputs(state.get("steps", []), plan.dependencies(), step_num, settings)
        if running is None
        else [],
        "step_deadline": step_deadline,
        "run_deadline": run_deadline,
    }


def step_inputs(
    ended: list[AgenticStep], deps: list[list[int]], step_num: int, settings: Settings
) -> list[str]:
    """The results a step's prompt carries: those of the steps it depends on, then (up to
    `recent_results` in all) of the steps those depend on, nearest first; in plan order,
    each cut to `result_chars` if that is set. (`execute` fits them to the window.)"""
    if settings.recent_results == 0:
        return []
    by_num = {s.step_num: s for s in ended}
    chosen = list(deps[step_num - 1])
    frontier = list(chosen)
    while frontier and len(chosen) < settings.recent_results:
        ancestors = sorted({d for n in frontier for d in deps[n - 1]} - set(chosen), reverse=True)
        ancestors = ancestors[: settings.recent_results - len(chosen)]
        chosen += ancestors
        frontier = ancestors
    whole = settings.prompts.whole_results
    lines = []
    for n in sorted(chosen):
        step = by_num.get(n)
        if step is None:
            continue
        result = clip(step.result, settings.result_chars)
        if whole:
            done = " failed, no result" if step.status == "failed" else f"\n{result}"
            lines.append(f"Step {n} ({step.description}):{done}")
        elif step.status == "failed":
            lines.append(f"Step {n}: FAILED")
        else:
            label = " (adapted)" if step.status == "adapted" else ""
            lines.append(f"Step {n}{label}: {result}")
    return lines
