"""The conversations of the steps in progress, which share the state's `messages`.

Steps run side by side, so each message's id starts with its step's tag: a step reads its
own messages by that tag, and removes them when it ends. (Messages stored by versions before
parallel steps have no tag: `older_runs` has the rules for them.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, RemoveMessage, ToolMessage

from agentic_loop.core.state import QUIET_KEY, ToolCallRecord

DURATION_KEY = "duration_ms"
REFUSED_KEY = "refused"
"""Keys of a ToolMessage's `response_metadata` that this loop writes."""
APPROVED_KEY = "approved_calls"
"""Key of a model turn's `response_metadata` listing the ids of the tool calls a reviewer
has answered, so they are not asked about again."""

M = TypeVar("M", bound=BaseMessage)


def step_tag(step_num: int) -> str:
    return f"step{step_num}-"


def tagged(message: M, step_num: int) -> M:
    """`message` with an id that names its step."""
    if message.id and message.id.startswith(step_tag(step_num)):
        return message
    return message.model_copy(update={"id": f"{step_tag(step_num)}{uuid.uuid4().hex}"})


def of_step(messages: Sequence[AnyMessage], step_num: int) -> list[AnyMessage]:
    """The conversation of step `step_num`, in order."""
    tag = step_tag(step_num)
    return [m for m in messages if m.id and m.id.startswith(tag)]


def quietly(messages: Sequence[BaseMessage]) -> dict[str, list[BaseMessage]]:
    """`messages` as a node writes them to the state's `messages`: wrapped, because
    LangGraph's `messages` stream shows every message a node writes, and a step writes
    its prompt and the model's turn again (under its step's tag). Wrapped, that stream
    shows only what the models said, once, as they said it. The state's reducer unwraps
    them (`state.add_step_messages`)."""
    return {QUIET_KEY: list(messages)}


def removals(messages: Sequence[BaseMessage]) -> dict[str, list[BaseMessage]]:
    """The update that removes `messages` (stored ones, with ids) from the state."""
    return quietly([RemoveMessage(id=m.id) for m in messages if m.id])


def pending_tool_calls(messages: Sequence[BaseMessage]) -> list[Any]:
    """The tool calls of the conversation's last model turn that have no result yet."""
    if not messages or not isinstance(messages[-1], AIMessage):
        return []
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [call for call in messages[-1].tool_calls if call["id"] not in answered]


def reviewed_calls(message: BaseMessage) -> set[str]:
    """Ids of the tool calls of a model turn that a reviewer has answered."""
    return set(message.response_metadata.get(APPROVED_KEY, []))


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
