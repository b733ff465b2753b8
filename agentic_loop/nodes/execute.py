"""`execute`: run the next step of the plan, with recent results fed forward."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from agentic_loop import events, prompts
from agentic_loop.models import describe_error
from agentic_loop.parsing import clean_reply
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, AgenticStep, StepFailure


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


async def execute(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    done = state.get("steps", [])
    plan = state["plan"]
    step_num, total = len(done) + 1, len(plan.steps)
    description = plan.steps[step_num - 1]
    where = {"task_id": plan.task_id, "step": step_num, "total": total}
    runtime.stream_writer(
        {"event": events.STEP_STARTED, "data": {**where, "description": description}}
    )
    started_at = time.time()
    messages = settings.fit(
        lambda limit: prompts.step_messages(
            prompts.clip(state["task"], limit),
            step_num,
            total,
            prompts.clip(description, limit),
            recent_results(done, settings, limit),
        )
    )
    try:
        reply = await settings.model.ainvoke(messages)
    except Exception as exc:  # any failure of the call goes to `adapt`
        error = describe_error(exc, settings.model)
        return {"failure": StepFailure(step_num=step_num, error=error, started_at=started_at)}
    result = clean_reply(reply.text)
    step = AgenticStep(
        step_num=step_num,
        description=description,
        result=result,
        status="completed",
        duration_ms=int((time.time() - started_at) * 1000),
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
    return {"steps": [step]}
