"""`approve_tools`: pause so a person can approve, edit or reject tool calls before they run."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import Command, Send, interrupt

from agentic_loop import events
from agentic_loop.nodes.call_tool import DURATION_KEY, REFUSED_KEY, pending_tool_calls
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, ToolApproval

QUESTION = (
    "Approve, edit or reject this tool call. Resume with Command(resume=...): 'approve', "
    "{'action': 'edit', 'args': {...}}, or {'action': 'reject', 'reason': '...'}."
)


def read_approval(answer: object) -> ToolApproval:
    """The reviewer's answer in its full form; ValueError says what a valid answer is."""
    if answer is True or answer == "approve":
        return {"action": "approve"}
    if answer is False or answer == "reject":
        return {"action": "reject"}
    if not isinstance(answer, dict) or answer.get("action") not in ("approve", "edit", "reject"):
        raise ValueError(
            f"unreadable approval {answer!r}: use 'approve', 'reject', or a dict with action "
            "'approve', 'edit' (with 'args', the arguments to use) or 'reject'"
        )
    if answer["action"] == "edit":
        args = answer.get("args")
        if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
            raise ValueError("an edit needs `args`, a dict of the tool's arguments by name")
        return {"action": "edit", "args": args}
    if answer["action"] == "reject":
        return {"action": "reject", "reason": str(answer.get("reason") or "").strip()}
    return {"action": "approve"}


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


async def approve_tools(
    state: AgenticState, runtime: Runtime, *, settings: Settings
) -> Command[Literal["call_tool", "execute"]]:
    plan = state["plan"]
    step = len(state.get("steps", [])) + 1
    messages = state["messages"]
    reply = messages[-1]
    assert isinstance(reply, AIMessage), "approve_tools follows a model turn with tool calls"
    to_run: list[Any] = []
    refused: list[ToolMessage] = []
    edited = False
    # On resume the node starts again and each interrupt() returns its answer in turn.
    for call in pending_tool_calls(messages):
        if call["name"] not in settings.approve_tools:
            to_run.append(call)
            continue
        request = {
            "kind": "tool_approval",
            "task_id": plan.task_id,
            "task": state["task"],
            "step": step,
            "description": plan.steps[step - 1],
            "tool": call["name"],
            "args": call["args"],
            "question": QUESTION,
        }
        answer = interrupt(request)
        while True:
            try:
                decision = read_approval(answer)
                break
            except ValueError as exc:
                answer = interrupt({**request, "problem": str(exc)})
        if decision["action"] == "reject":
            refused.append(refusal(call, decision.get("reason", "")))
            runtime.stream_writer(
                events.tool_called(plan.task_id, step, call["name"], call["args"])
            )
            runtime.stream_writer(
                events.tool_result(plan.task_id, step, call["name"], refused[-1].text, "refused", 0)
            )
        elif decision["action"] == "edit":
            to_run.append({**call, "args": decision["args"]})
            edited = True
        else:
            to_run.append(call)
    update: list[Any] = list(refused)
    if edited:  # the model's turn, with the arguments the calls really ran with
        by_id = {call["id"]: call for call in to_run}
        calls = [by_id.get(call["id"], call) for call in reply.tool_calls]
        update.insert(0, reply.model_copy(update={"tool_calls": calls}))
    if not to_run:  # every call was refused: the model reads why
        return Command(update={"messages": update}, goto="execute")
    return Command(update={"messages": update}, goto=[Send("call_tool", [call]) for call in to_run])
