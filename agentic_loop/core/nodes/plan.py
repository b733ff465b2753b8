"""`plan`: ask the model for the steps and what each waits on, keep at most max_steps of
them, and check their dependencies so that the plan can always run."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agentic_loop.core import events
from agentic_loop.core.dependencies import (
    PlannedStep,
    checked_dependencies,
    plan_schema,
    read_typed_plan,
    split_dependency_note,
)
from agentic_loop.core.options import MOST_STEPS, Bound, PlanFormat
from agentic_loop.core.parsing import parse_plan
from agentic_loop.core.prompts import clip
from agentic_loop.core.replies import ask
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, Plan
from agentic_loop.models import describe_error

logger = logging.getLogger(__name__)

_ATTEMPTS: dict[PlanFormat, tuple[bool, ...]] = {
    "typed": (True,),
    "text": (False,),
    "text_then_typed": (False, True),
}
"""For each way of planning, whether each attempt asks for a typed plan."""


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
    max_steps = state.get("max_steps") or settings.max_steps
    steps_bound = Bound(int, 1, MOST_STEPS)
    if not steps_bound.accepts(max_steps):
        raise ValueError(
            f"the input's max_steps must be {steps_bound.describe()}, got {max_steps!r}"
        )
    task_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()

    steps: list[PlannedStep] = []
    error: str | None = "Planning produced no steps."
    tokens_in = tokens_out = 0
    limit: int | None = None
    # A model that falls back to typed plans is small: dependency notes only confuse it.
    with_notes = settings.plan_format == "text"
    for typed in _ATTEMPTS[settings.plan_format]:  # the next one only if this gave no plan

        def build(
            limit: int | None, _: Sequence[str] = (), typed: bool = typed
        ) -> list[BaseMessage]:
            return settings.prompts.plan_messages(
                clip(task, limit), max_steps, typed=typed, notes=with_notes
            )

        limit, _ = settings.fitting(build)
        planner = settings.model.bind(format=plan_schema(max_steps)) if typed else settings.model
        try:
            reply = await ask(planner, build(limit), max_chars=settings.options.reply_chars)
        except Exception as exc:  # any model or transport failure ends planning
            error = f"Planning failed: {describe_error(exc, settings.model)}"
            break
        tokens_in, tokens_out = tokens_in + reply.tokens[0], tokens_out + reply.tokens[1]
        if steps := read_plan(reply.message.text):
            error = None
            break
    if error and not steps and limit is not None and len(task) > limit:
        error = (
            f"Planning produced no steps from the task cut to its first {limit} "
            "characters to fit the model's context window; shorten the task, or use a "
            "model with a larger window"
        )
    kept = steps[:max_steps]
    depends_on, notes = checked_dependencies(
        [s.id for s in kept], [s.depends_on for s in kept], cut=[s.id for s in steps[max_steps:]]
    )
    for note in notes:  # the plan's event and record carry them too
        logger.debug("Plan %s: %s", task_id, note)
    outcome = Plan(
        task_id=task_id,
        thread_id=config.get("configurable", {}).get("thread_id"),
        steps=[s.description for s in kept],
        depends_on=depends_on,
        notes=notes,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        planned_count=len(steps),
        max_steps=max_steps,
        error=error,
        duration_ms=int((time.perf_counter() - started) * 1000),
        review_requested=state.get("review_plan", settings.options.review_plan),
    )
    if error:
        await events.emit(runtime, events.plan_failed(task_id, task, error))
    else:
        await events.emit(
            runtime, events.plan_ready(task_id, task, outcome.steps, outcome.depends_on, notes)
        )
    # A thread reused for a new task starts from an empty record.
    return {
        "plan": outcome,
        "steps": Overwrite([]),
        "running": Overwrite({}),
        "messages": Overwrite([]),
        "answer": None,
        "budget_spent": None,
        "work_started_at": None,
    }


def read_plan(text: str) -> list[PlannedStep]:
    """The steps of a typed plan, or else of a numbered list with its dependency notes
    ("(after 1, 3)", by the list's numbers)."""
    typed = read_typed_plan(text)
    if typed is not None:
        return typed
    steps = []
    for number, line in enumerate(parse_plan(text), 1):
        description, after = split_dependency_note(line)
        steps.append(PlannedStep(id=number, description=description, depends_on=after))
    return steps
