"""`adapt`: ask the model for another way to do a step whose call failed."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agentic_loop import events, prompts
from agentic_loop.models import describe_error
from agentic_loop.nodes.call_tool import tool_call_records
from agentic_loop.replies import Reply, ask, reply_text
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, AgenticStep, StepFailure, StepStatus


async def adapt(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    failure: StepFailure | None = state.get("failure")
    if failure is None:
        raise ValueError("adapt needs a failed step in the state's `failure` field")
    plan = state["plan"]
    description = plan.steps[failure.step_num - 1]
    where = {"task_id": plan.task_id, "step": failure.step_num, "total": len(plan.steps)}
    status: StepStatus
    messages = settings.fit(
        lambda limit: prompts.adapt_messages(
            prompts.clip(state["task"], limit),
            failure.step_num,
            prompts.clip(description, limit),
            prompts.clip(failure.error, limit),
        )
    )
    reply: Reply | None = None
    reason: str | None
    try:
        reply = await ask(settings.model, messages, max_chars=settings.max_reply_chars)
    except Exception as exc:  # the step is recorded as failed and the run goes on
        result, reason = "", describe_error(exc, settings.model)
    else:
        result, reason = reply_text(reply, messages)
    if reason:
        result = f"Failed: {failure.error}; adaptation also failed: {reason}"
        status, event = (
            "failed",
            {
                "event": events.STEP_FAILED,
                "data": {**where, "description": description, "error": result},
            },
        )
    else:
        status, event = (
            "adapted",
            {
                "event": events.STEP_ADAPTED,
                "data": {
                    **where,
                    "description": description,
                    "error": failure.error,
                    "adaptation": result[: events.PREVIEW_CHARS],
                },
            },
        )
    step = AgenticStep(
        step_num=failure.step_num,
        description=description,
        result=result,
        status=status,
        duration_ms=max(0, int((time.time() - failure.started_at) * 1000)),
        tool_calls=tool_call_records(state.get("messages", [])),
        cut_short=reply is not None and reply.cut_short,
    )
    runtime.stream_writer(event)
    return {"steps": [step], "failure": None, "current": None, "messages": Overwrite([])}
