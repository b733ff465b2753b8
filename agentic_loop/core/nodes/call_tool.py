"""`call_tool`: run one tool call a step's model asked for, through LangGraph's `ToolNode`.

Each call is sent here on its own (a `Send` with the call and its step's `StepTask`), so
a call that finished is stored as it ends and never runs again on resume. A tool that
raises, an unknown tool name or invalid arguments come back to the model as a
`ToolMessage` with `status="error"`; the run goes on. A call still running at the step's
deadline is cancelled, and the step goes to `adapt`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command

from agentic_loop.core import events
from agentic_loop.core.conversation import DURATION_KEY, tagged
from agentic_loop.core.deadlines import DeadlinePassed, timed, timeout_text
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import RunningStep, StepTask


def call_tool_node(settings: Settings) -> ToolNode:
    """The node that runs the step's tool calls, reporting each as progress events."""

    async def report(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        task: StepTask = request.state
        task_id, step = task["plan"].task_id, task["step_num"]
        call = request.tool_call
        runtime = request.runtime
        await events.emit(runtime, events.tool_called(task_id, step, call["name"], call["args"]))
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
            outcome.response_metadata[DURATION_KEY] = duration_ms
            outcome = tagged(outcome, step)
            await events.emit(
                runtime,
                events.tool_result(
                    task_id, step, call["name"], outcome.text, outcome.status, duration_ms
                ),
            )
        if failure is not None:
            return Command(update={"messages": [outcome], "running": failure})
        return outcome

    return ToolNode(
        list(settings.tools),
        name="call_tool",
        handle_tool_errors=tool_error_text,
        awrap_tool_call=report,
    )


def tool_error_text(error: Exception) -> str:
    """What the model is told when a tool call fails."""
    if isinstance(error, ToolInvocationError):  # bad arguments: it already says how to fix them
        return error.message
    return f"Error: {type(error).__name__}: {error}\nTry other arguments, or another way."
