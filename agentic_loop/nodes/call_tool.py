"""`call_tool`: run one tool call a step's model asked for, through LangGraph's `ToolNode`.

Each call is sent here on its own (`Send("call_tool", [call])`), so a call that finished
is stored as it ends and never runs again on resume. A tool that raises, an unknown tool
name or invalid arguments come back to the model as a `ToolMessage` with
`status="error"`; the run goes on."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolInvocationError
from langgraph.types import Command

from agentic_loop import events
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, ToolCallRecord

DURATION_KEY = "duration_ms"
REFUSED_KEY = "refused"
"""Keys of a ToolMessage's `response_metadata` that this loop writes."""


def call_tool_node(settings: Settings) -> ToolNode:
    """The node that runs the step's tool calls, reporting each as progress events."""

    async def report(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]],
    ) -> ToolMessage | Command:
        state: AgenticState = request.state
        task_id, step = state["plan"].task_id, len(state.get("steps", [])) + 1
        call = request.tool_call
        write = request.runtime.stream_writer
        write(events.tool_called(task_id, step, call["name"], call["args"]))
        started = time.perf_counter()
        outcome = await execute(request)
        duration_ms = int((time.perf_counter() - started) * 1000)
        if isinstance(outcome, ToolMessage):
            outcome.response_metadata[DURATION_KEY] = duration_ms
            write(
                events.tool_result(
                    task_id, step, call["name"], outcome.text, outcome.status, duration_ms
                )
            )
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


def pending_tool_calls(messages: Sequence[BaseMessage]) -> list[Any]:
    """The tool calls of the step's last model turn that have no result yet."""
    if not messages or not isinstance(messages[-1], AIMessage):
        return []
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [call for call in messages[-1].tool_calls if call["id"] not in answered]


def tool_call_records(messages: Sequence[BaseMessage]) -> list[ToolCallRecord]:
    """The step's tool calls that got a result, in the order the model asked for them."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    records = []
    for message in messages:
        if not isinstance(message, AIMessage):
            continue
        for call in message.tool_calls:
            result = results.get(call["id"] or "")
            if result is None:
                continue
            metadata = result.response_metadata
            records.append(
                ToolCallRecord(
                    tool=call["name"],
                    args=call["args"],
                    result=result.text,
                    status="refused" if metadata.get(REFUSED_KEY) else result.status,
                    duration_ms=metadata.get(DURATION_KEY, 0),
                )
            )
    return records
