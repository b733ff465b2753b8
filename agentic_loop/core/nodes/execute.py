"""`execute`: one model call of a step, with the results of the steps it depends on.

With tools, a step goes back and forth between this node and `call_tool` (each call its
own task, stored as it ends) until the model replies without a tool call; that reply is
the step's result. Each step in progress gets its own `Send`, so steps run side by side."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.runtime import Runtime

from agentic_loop.core import events
from agentic_loop.core.conversation import quietly, removals, tagged, tool_call_records
from agentic_loop.core.deadlines import DeadlinePassed, timed, timeout_text
from agentic_loop.core.older_runs import legacy_handover
from agentic_loop.core.parsing import repeats_step
from agentic_loop.core.prompts import clip
from agentic_loop.core.replies import Reply, ask, reply_text
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticStep, RunningStep, StepTask
from agentic_loop.models import describe_error


def tool_calls_made(messages: Sequence[BaseMessage]) -> int:
    return sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))


async def execute(state: StepTask, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    if (handover := legacy_handover(state)) is not None:
        return handover
    plan, step_num = state["plan"], state["step_num"]
    total = len(plan.steps)
    description = plan.steps[step_num - 1]
    running = state["running"]
    key = str(step_num)
    conversation: list[BaseMessage] = list(state["messages"])
    new: list[BaseMessage] = []
    if running is None:  # the step starts
        await events.emit(runtime, events.step_started(plan.task_id, step_num, total, description))
        running = RunningStep(step_num=step_num, started_at=time.time())
        new = [
            tagged(m, step_num)
            for m in settings.fit(
                lambda limit, earlier: settings.prompts.step_messages(
                    clip(state["task"], limit),
                    step_num,
                    total,
                    clip(description, limit),
                    earlier,
                    [tool.name for tool in settings.tools],
                ),
                state["inputs"],
            )
        ]
        conversation = new

    def failed(error: str, spent: RunningStep) -> dict[str, Any]:
        return {
            "running": {key: spent.model_copy(update={"failure": error})},
            "messages": quietly(new),
        }

    reply: Reply
    try:
        reply = await timed(
            ask(
                settings.step_model,
                conversation,
                max_chars=settings.options.reply_chars,
                step_num=step_num,
            ),
            state,
        )
    except DeadlinePassed:
        return failed(timeout_text(state, settings), running)
    except Exception as exc:  # any failure of the call goes to `adapt`
        return failed(describe_error(exc, settings.model), running)
    tokens_in, tokens_out = reply.tokens
    running = running.model_copy(
        update={
            "tokens_in": running.tokens_in + tokens_in,
            "tokens_out": running.tokens_out + tokens_out,
        }
    )
    calls = reply.message.tool_calls
    if calls:
        made = tool_calls_made(conversation)
        if made + len(calls) > settings.options.max_tool_calls:
            error = (
                f"the step asked for {len(calls)} more tool calls after {made}, past its "
                f"limit of {settings.options.max_tool_calls} (max_tool_calls)"
            )
            return failed(error, running)
        return {
            "running": {key: running},
            "messages": quietly([*new, tagged(reply.message, step_num)]),
        }
    result, degenerate = reply_text(reply, conversation[:2])
    degenerate = degenerate or repeats_step(result, plan.steps)
    if degenerate:  # no result at all: as if the call had failed
        return failed(degenerate, running)
    step = AgenticStep(
        step_num=step_num,
        description=description,
        result=result,
        status="completed",
        duration_ms=int((time.time() - running.started_at) * 1000),
        tool_calls=tool_call_records(conversation),
        cut_short=reply.cut_short,
        tokens_in=running.tokens_in,
        tokens_out=running.tokens_out,
    )
    await events.emit(
        runtime,
        events.step_complete(plan.task_id, step_num, total, description, result, step.duration_ms),
    )
    return {
        "steps": [step],
        "running": {key: None},
        "messages": removals(state["messages"]),
    }
