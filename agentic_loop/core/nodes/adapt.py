"""`adapt`: ask the model for another way to do a step whose call failed."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from agentic_loop.core import events
from agentic_loop.core.conversation import removals, tool_call_records
from agentic_loop.core.deadlines import DeadlinePassed, stopped_by_budget, timed
from agentic_loop.core.older_runs import legacy_handover
from agentic_loop.core.parsing import repeats_step
from agentic_loop.core.prompts import clip
from agentic_loop.core.replies import Reply, ask, reply_text
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticStep, StepStatus, StepTask
from agentic_loop.models import describe_error


async def adapt(state: StepTask, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    if (handover := legacy_handover(state)) is not None:
        return handover
    running = state["running"]
    if running is None or running.failure is None:
        raise ValueError("adapt needs a step whose call failed")
    plan, step_num, failure = state["plan"], state["step_num"], running.failure
    description = plan.steps[step_num - 1]
    total = len(plan.steps)
    status: StepStatus
    messages = settings.fit(
        lambda limit, _: settings.prompts.adapt_messages(
            clip(state["task"], limit), step_num, clip(description, limit), clip(failure, limit)
        )
    )
    reply: Reply | None = None
    reason: str | None
    if stopped_by_budget(state):  # no time left to try another way
        result, reason = "", "the run's time budget ran out"
    else:
        try:
            reply = await timed(
                ask(
                    settings.model,
                    messages,
                    max_chars=settings.options.reply_chars,
                    step_num=step_num,
                ),
                {**state, "step_deadline": None},
            )
        except DeadlinePassed:
            result, reason = "", "the run's time budget ran out"
        except Exception as exc:  # the step is recorded as failed and the run goes on
            result, reason = "", describe_error(exc, settings.model)
        else:
            result, reason = reply_text(reply, messages)
            reason = reason or repeats_step(result, plan.steps)
    event: events.StepFailedEvent | events.StepAdaptedEvent
    if reason:
        result = f"Failed: {failure}; adaptation also failed: {reason}"
        status = "failed"
        event = events.step_failed(plan.task_id, step_num, total, description, result)
    else:
        status = "adapted"
        event = events.step_adapted(plan.task_id, step_num, total, description, failure, result)
    tokens_in, tokens_out = reply.tokens if reply is not None else (0, 0)
    step = AgenticStep(
        step_num=step_num,
        description=description,
        result=result,
        status=status,
        duration_ms=max(0, int((time.time() - running.started_at) * 1000)),
        tool_calls=tool_call_records(state["messages"]),
        cut_short=reply is not None and reply.cut_short,
        failure=failure,
        tokens_in=running.tokens_in + tokens_in,
        tokens_out=running.tokens_out + tokens_out,
    )
    await events.emit(runtime, event)
    return {
        "steps": [step],
        "running": {str(step_num): None},
        "messages": removals(state["messages"]),
    }
