"""`call_tool`: run one tool call a step's model asked for, through LangGraph's `ToolNode`.

Each call is sent here on its own (a `Send` with the call and its step's `StepTask`), so
a call that finished is stored as it ends and never runs again on resume. A tool that
raises, an unknown tool name or invalid arguments come back to the model as a
`ToolMessage` with `status="error"`; the run goes on. A call still running at the step's
deadline is cancelled, and the step goes to `adapt`.

A call that was still running when its run stopped (a kill) is run again by LangGraph on
resume. With a store, each call is recorded before it runs (`started_calls`), so such a
call is known as cut off: an idempotent tool runs again with the same key (the tool call
id); for another, a person is asked whether to run it again when its calls need approval,
and otherwise the model is told that its outcome is unknown."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.errors import GraphInterrupt
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command

from agentic_loop.core import events
from agentic_loop.core.conversation import DURATION_KEY, tagged
from agentic_loop.core.deadlines import DeadlinePassed, timed, timeout_text
from agentic_loop.core.nodes.approve_tools import approval_request, ask
from agentic_loop.core.settings import Settings
from agentic_loop.core.started_calls import (
    CallRecord,
    StartedCall,
    call_record,
    cut_off_action,
    is_idempotent,
)
from agentic_loop.core.state import CutOffAction, RunningStep, StepTask

Execute = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]


def call_tool_node(settings: Settings) -> ToolNode:
    """The node that runs the step's tool calls, reporting each as progress events."""

    async def report(request: ToolCallRequest, execute: Execute) -> ToolMessage | Command[Any]:
        call = request.tool_call
        record = started_record(request)
        earlier = await record.read() if record is not None else None
        approved = False
        if earlier is not None:  # it started before: the run stopped while it ran
            action, reason = await settle_cut_off(request, earlier, settings)
            if action in ("declined", "unknown"):
                return await reported(request, not_run_again(call, reason), 0)
            approved = action == "approved"
        if record is not None:  # stored before the tool runs, so a kill leaves it found
            await record.start(call, earlier, approved=approved)
        return await run(request, execute, settings)

    return ToolNode(
        list(settings.tools),
        name="call_tool",
        handle_tool_errors=tool_error_text,
        awrap_tool_call=report,
    )


async def run(
    request: ToolCallRequest, execute: Execute, settings: Settings
) -> ToolMessage | Command[Any]:
    """Run the call, within the step's time, and report it."""
    task: StepTask = request.state
    step, call = task["step_num"], request.tool_call
    await events.emit(
        request.runtime,
        events.tool_called(task["plan"].task_id, step, call["name"], call["args"]),
    )
    started = time.perf_counter()
    try:
        outcome: ToolMessage | Command[Any] = await timed(execute(request), task)
    except DeadlinePassed:  # the step is out of time: it goes to `adapt`
        error = timeout_text(task, settings)
        outcome = ToolMessage(
            f"Error: {error}", tool_call_id=call["id"], name=call["name"], status="error"
        )
        running = task["running"]
        assert running is not None, "a tool call belongs to a step in progress"
        failure: dict[str, RunningStep] | None = {
            str(step): running.model_copy(update={"failure": error})
        }
    else:
        failure = None
    duration_ms = int((time.perf_counter() - started) * 1000)
    if isinstance(outcome, ToolMessage):
        outcome = await reported(request, outcome, duration_ms)
    if failure is not None:
        return Command(update={"messages": [outcome], "running": failure})
    return outcome


async def reported(request: ToolCallRequest, outcome: ToolMessage, duration_ms: int) -> ToolMessage:
    """`outcome`, the call's result, tagged with its step and its duration, once its
    `tool_result` event is sent."""
    task: StepTask = request.state
    step, name = task["step_num"], request.tool_call["name"]
    outcome.response_metadata[DURATION_KEY] = duration_ms
    outcome = tagged(outcome, step)
    await events.emit(
        request.runtime,
        events.tool_result(
            task["plan"].task_id, step, name, outcome.text, outcome.status, duration_ms
        ),
    )
    return outcome


def started_record(request: ToolCallRequest) -> CallRecord | None:
    """Where the store keeps the call's record; None without a store (or a thread), or
    for a tool that does not exist (its call runs nothing)."""
    if request.tool is None:
        return None
    task: StepTask = request.state
    turn = next((m.id for m in reversed(task["messages"]) if isinstance(m, AIMessage)), None)
    runtime = request.runtime
    return call_record(runtime.store, runtime.config, turn, request.tool_call["id"] or "")


async def settle_cut_off(
    request: ToolCallRequest, earlier: StartedCall, settings: Settings
) -> tuple[CutOffAction, str | None]:
    """What becomes of a call that was cut off (see `started_calls.cut_off_action`), told
    as a `tool_cut_off` event; and when a reviewer declines to run it again, their reason
    (else None). Asking a person pauses the run with `interrupt()`, as an approval does."""
    task: StepTask = request.state
    call = request.tool_call
    assert request.tool is not None, "only calls of a tool are recorded"
    wanted = cut_off_action(
        earlier,
        idempotent=is_idempotent(request.tool),
        approvals=call["name"] in settings.approve_tools,
    )
    action: CutOffAction = "rerun" if wanted == "rerun" else "unknown"
    reason = None
    if wanted == "ask":
        try:
            decision = ask(approval_request(task, call, cut_off=True))
        except GraphInterrupt:  # the run waits for the answer
            await tell(request, "asked")
            raise
        action = "approved" if decision["action"] == "approve" else "declined"
        reason = decision.get("reason", "") if action == "declined" else None
    await tell(request, action)
    return action, reason


async def tell(request: ToolCallRequest, action: CutOffAction) -> None:
    task: StepTask = request.state
    call = request.tool_call
    await events.emit(
        request.runtime,
        events.tool_cut_off(
            task["plan"].task_id, task["step_num"], call["name"], call["args"], action
        ),
    )


def not_run_again(call: Any, reason: str | None) -> ToolMessage:
    """What the model is told of a call cut off that does not run again: `reason` is None
    when nobody was asked, else why a reviewer declined (perhaps empty)."""
    if reason is None:
        why = "It was not run again"
    else:
        why = "A reviewer chose not to run it again" + (f": {reason.rstrip('.')}" if reason else "")
    return ToolMessage(
        "Error: this call was cut off when the run stopped: it started, but whether it "
        f"took effect is unknown. {why}. Check whether it took effect before calling it "
        "again, or carry on without it.",
        tool_call_id=call["id"],
        name=call["name"],
        status="error",
    )


def tool_error_text(error: Exception) -> str:
    """What the model is told when a tool call fails."""
    if isinstance(error, ToolInvocationError):  # bad arguments: it already says how to fix them
        return error.message
    return f"Error: {type(error).__name__}: {error}\nTry other arguments, or another way."
