"""`plan`: ask the model for numbered steps and keep at most max_steps of them."""

from __future__ import annotations

import time
import uuid
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agentic_loop import events, prompts
from agentic_loop.models import describe_error
from agentic_loop.parsing import parse_plan
from agentic_loop.replies import ask
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, Plan


async def plan(
    state: AgenticState, config: RunnableConfig, runtime: Runtime, *, settings: Settings
) -> dict[str, Any]:
    if "task" not in state:
        raise ValueError(
            "the loop's input has no `task`: give the parent graph's state a `task` key "
            "(inherit agentic_loop.AgenticInput) and set it before the loop runs"
        )
    task = state["task"]
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"task must be non-empty text, got {task!r}")
    max_steps = state.get("max_steps") or 0
    if max_steps <= 0:
        max_steps = settings.max_steps
    task_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()

    def build(limit: int | None) -> list[BaseMessage]:
        return prompts.plan_messages(prompts.clip(task, limit), max_steps)

    limit = settings.fit_limit(build)
    messages = build(limit)
    error: str | None
    try:
        reply = await ask(settings.model, messages, max_chars=settings.max_reply_chars)
    except Exception as exc:  # any model or transport failure ends planning
        steps, error = [], f"Planning failed: {describe_error(exc, settings.model)}"
    else:
        steps = parse_plan(reply.message.text)
        error = None if steps else "Planning produced no steps."
        if not steps and limit is not None and len(task) > limit:
            error = (
                f"Planning produced no steps from the task cut to its first {limit} "
                "characters to fit the model's context window; shorten the task, or use a "
                "model with a larger window"
            )
    outcome = Plan(
        task_id=task_id,
        thread_id=config.get("configurable", {}).get("thread_id"),
        steps=steps[:max_steps],
        planned_count=len(steps),
        max_steps=max_steps,
        error=error,
        duration_ms=int((time.perf_counter() - started) * 1000),
        review_requested=state.get("review_plan", settings.review_plan),
    )
    payload: dict[str, Any]
    if error:
        payload = {"task_id": task_id, "task": task, "error": error}
        runtime.stream_writer({"event": events.PLAN_FAILED, "data": payload})
    else:
        payload = {
            "task_id": task_id,
            "task": task,
            "steps": outcome.steps,
            "total": len(outcome.steps),
        }
        runtime.stream_writer({"event": events.PLAN_READY, "data": payload})
    # A thread reused for a new task starts from an empty record.
    return {
        "plan": outcome,
        "steps": Overwrite([]),
        "failure": None,
        "current": None,
        "messages": Overwrite([]),
        "answer": None,
    }
