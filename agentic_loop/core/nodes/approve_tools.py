"""`approve_tools`: pause so a person can approve, edit or reject tool calls before they run.

How a call is asked about (`approval_request`, `ask`) serves `call_tool` too, which asks
whether to run again a call that was cut off when its run stopped."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agentic_loop.core import events
from agentic_loop.core.answers import read_approval
from agentic_loop.core.conversation import (
    APPROVED_KEY,
    DURATION_KEY,
    REFUSED_KEY,
    pending_tool_calls,
    quietly,
    reviewed_calls,
    tagged,
)
from agentic_loop.core.older_runs import legacy_handover
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import StepTask, ToolApproval

QUESTION = (
    "Approve, edit or reject this tool call. Resume with Command(resume=...): 'approve', "
    "{'action': 'edit', 'args': {...}}, or {'action': 'reject', 'reason': '...'}."
)
CUT_OFF_QUESTION = (
    "This call was cut off when the run stopped: it started, and whether it took effect is "
    "unknown. Run it again? Resume with Command(resume=...): 'approve' runs it again; "
    "'reject' or {'action': 'reject', 'reason': '...'} does not, and the model is told that "
    "its outcome is unknown."
)


def approval_request(state: StepTask, call: Any, *, cut_off: bool = False) -> dict[str, Any]:
    """The interrupt's payload that asks about `call`: whether it may run, or (`cut_off`)
    whether it may run again."""
    plan, step = state["plan"], state["step_num"]
    request = {
        "kind": "tool_approval",
        "task_id": plan.task_id,
        "task": state["task"],
        "step": step,
        "description": plan.steps[step - 1],
        "tool": call["name"],
        "args": call["args"],
        "question": CUT_OFF_QUESTION if cut_off else QUESTION,
    }
    return {**request, "cut_off": True} if cut_off else request


def ask(request: dict[str, Any]) -> ToolApproval:
    """The answer to `request`, asked with `interrupt()`, and asked again, with the
    problem, while it cannot be read."""
    cut_off = bool(request.get("cut_off"))
    answer = interrupt(request)
    while True:
        try:
            return read_approval(answer, cut_off=cut_off)
        except ValueError as exc:
            answer = interrupt({**request, "problem": str(exc)})


def refusal(call: dict[str, Any], reason: str) -> ToolMessage:
    """What the model is told of a call a reviewer rejected."""
    why = f": {reason.rstrip('.')}." if reason else "."
    return ToolMessage(
        f"A reviewer refused this call{why} It did not run. Carry on without it, "
        "or try another way.",
        tool_call_id=call["id"],
        name=call["name"],
        status="error",
        response_metadata={REFUSED_KEY: True, DURATION_KEY: 0},
    )


async def approve_tools(state: StepTask, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    if (handover := legacy_handover(state)) is not None:
        return handover
    plan, step = state["plan"], state["step_num"]
    messages = state["messages"]
    reply = messages[-1]
    assert isinstance(reply, AIMessage), "approve_tools follows a model turn with tool calls"
    reviewed = reviewed_calls(reply)
    refused: list[BaseMessage] = []
    edits: dict[str, dict[str, Any]] = {}
    # On resume the node starts again and each interrupt() returns its answer in turn.
    for call in pending_tool_calls(messages):
        if call["name"] not in settings.approve_tools or call["id"] in reviewed:
            continue
        decision = ask(approval_request(state, call))
        reviewed.add(call["id"])
        if decision["action"] == "reject":
            refused.append(tagged(refusal(call, decision.get("reason", "")), step))
            await events.emit(
                runtime, events.tool_called(plan.task_id, step, call["name"], call["args"])
            )
            await events.emit(
                runtime,
                events.tool_result(
                    plan.task_id, step, call["name"], refused[-1].text, "refused", 0
                ),
            )
        elif decision["action"] == "edit":
            edits[call["id"]] = decision["args"]
    # The model's turn, marked as answered, with the arguments the calls will run with.
    calls = [
        {**call, "args": edits.get(call["id"] or "", call["args"])} for call in reply.tool_calls
    ]
    metadata = {**reply.response_metadata, APPROVED_KEY: sorted(reviewed)}
    answered = reply.model_copy(update={"tool_calls": calls, "response_metadata": metadata})
    return {"messages": quietly([answered, *refused])}
