"""`execute`: one model call of the current step, with recent results fed forward.

With tools, a step goes back and forth between this node and `call_tool` (each call its
own superstep, so each is stored before the next starts) until the model replies without
a tool call; that reply is the step's result."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agentic_loop import events, prompts
from agentic_loop.models import describe_error
from agentic_loop.nodes.call_tool import tool_call_records
from agentic_loop.replies import ask, reply_text
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, AgenticStep, StepFailure, StepStart


def recent_results(
    steps: list[AgenticStep], settings: Settings, limit: int | None = None
) -> list[str]:
    """The last few results, each cut short, so a step's prompt stays the same size."""
    if settings.recent_results == 0:
        return []
    chars = settings.result_chars if limit is None else min(settings.result_chars, limit)
    lines = []
    for step in steps[-settings.recent_results :]:
        if step.status == "failed":
            lines.append(f"Step {step.step_num}: FAILED")
        else:
            label = " (adapted)" if step.status == "adapted" else ""
            lines.append(f"Step {step.step_num}{label}: {step.result[:chars]}")
    return lines


def tool_calls_made(messages: Sequence[BaseMessage]) -> int:
    return sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))


async def execute(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    done = state.get("steps", [])
    plan = state["plan"]
    step_num, total = len(done) + 1, len(plan.steps)
    description = plan.steps[step_num - 1]
    where = {"task_id": plan.task_id, "step": step_num, "total": total}
    current = state.get("current")
    conversation: list[BaseMessage] = list(state.get("messages", []))
    update: dict[str, Any] = {}
    if current is None or current.step_num != step_num:  # the step starts
        runtime.stream_writer(
            {"event": events.STEP_STARTED, "data": {**where, "description": description}}
        )
        current = StepStart(step_num=step_num, started_at=time.time())
        conversation = settings.fit(
            lambda limit: prompts.step_messages(
                prompts.clip(state["task"], limit),
                step_num,
                total,
                prompts.clip(description, limit),
                recent_results(done, settings, limit),
                [tool.name for tool in settings.tools],
            )
        )
        update = {"current": current, "messages": conversation}
    try:
        reply = await ask(settings.step_model, conversation, max_chars=settings.max_reply_chars)
    except Exception as exc:  # any failure of the call goes to `adapt`
        error = describe_error(exc, settings.model)
        failure = StepFailure(step_num=step_num, error=error, started_at=current.started_at)
        return {**update, "failure": failure}
    calls = reply.message.tool_calls
    if calls:
        made = tool_calls_made(conversation)
        if made + len(calls) > settings.max_tool_calls:
            error = (
                f"the step asked for {len(calls)} more tool calls after {made}, past its "
                f"limit of {settings.max_tool_calls} (max_tool_calls)"
            )
            failure = StepFailure(step_num=step_num, error=error, started_at=current.started_at)
            return {**update, "failure": failure}
        return {**update, "messages": [*update.get("messages", []), reply.message]}
    result, degenerate = reply_text(reply, conversation[:2])
    if degenerate:  # no result at all: as if the call had failed
        failure = StepFailure(step_num=step_num, error=degenerate, started_at=current.started_at)
        return {**update, "failure": failure}
    step = AgenticStep(
        step_num=step_num,
        description=description,
        result=result,
        status="completed",
        duration_ms=int((time.time() - current.started_at) * 1000),
        tool_calls=tool_call_records(conversation),
        cut_short=reply.cut_short,
    )
    runtime.stream_writer(
        {
            "event": events.STEP_COMPLETE,
            "data": {
                **where,
                "description": description,
                "result": result[: events.PREVIEW_CHARS],
            },
        }
    )
    return {"steps": [step], "current": None, "messages": Overwrite([])}
