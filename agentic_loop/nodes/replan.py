"""`replan`: show the model what the finished steps found, and let it keep the steps left,
replace them, or say the task is done. Finished steps never change."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from langgraph.runtime import Runtime

from agentic_loop import events, prompts
from agentic_loop.models import describe_error
from agentic_loop.parsing import clean_reply, parse_plan
from agentic_loop.replies import ask
from agentic_loop.settings import Settings
from agentic_loop.state import AgenticState, AgenticStep, Plan, PlanVersion

logger = logging.getLogger(__name__)

_VERDICT = re.compile(r"^\W*(keep|done)\b", re.IGNORECASE)


def read_revision(text: str) -> Literal["keep", "done"] | list[str] | None:
    """`keep`, `done`, the steps to follow instead, or None if the reply says none of these."""
    text = clean_reply(text)
    if (match := _VERDICT.match(text)) is not None:
        return "keep" if match[1].lower() == "keep" else "done"
    return parse_plan(text) or None


def revised_plan(plan: Plan, done: int, revision: Literal["done"] | list[str]) -> Plan:
    """`plan` with its steps after the first `done` replaced (at most up to `max_steps`),
    or dropped when the task is done, the new version kept."""
    kept = plan.steps[:done]
    if revision == "done":
        steps, planned, change = kept, done, "done"
    else:
        steps = kept + revision[: plan.max_steps - done]
        planned, change = done + len(revision), "replaced"
    version = PlanVersion(after_step=done, steps=steps, change=change)  # type: ignore[arg-type]
    return plan.model_copy(
        update={
            "steps": steps,
            "planned_count": planned,
            "versions": [*plan.all_versions(), version],
        }
    )


def _finished(steps: list[AgenticStep], chars: int) -> list[str]:
    return [f"{s.step_num}. {s.description} ({s.status}): {s.result[:chars]}" for s in steps]


async def replan(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    plan, steps = state["plan"], state.get("steps", [])
    asked = plan.model_copy(update={"replans": plan.replans + 1})
    room = plan.max_steps - len(steps)
    messages = settings.fit(
        lambda limit: prompts.replan_messages(
            prompts.clip(state["task"], limit),
            [prompts.clip(step, limit) for step in plan.steps],
            _finished(steps, min(settings.result_chars, limit or settings.result_chars)),
            max(room, 0),
        )
    )
    try:
        reply = await ask(settings.model, messages, max_chars=settings.max_reply_chars)
    except Exception as exc:  # the plan runs as it stands
        logger.warning(
            "Replanning failed, keeping the plan: %s", describe_error(exc, settings.model)
        )
        return {"plan": asked}
    revision = read_revision(reply.message.text)
    if revision is None:
        logger.warning(
            "Replanning gave no KEEP, DONE or list of steps, keeping the plan: %r",
            reply.message.text[:200],
        )
        return {"plan": asked}
    if revision == "keep" or (revision != "done" and room <= 0):
        return {"plan": asked}
    revised = revised_plan(asked, len(steps), revision)
    version = revised.versions[-1]
    runtime.stream_writer(
        {
            "event": events.PLAN_REVISED,
            "data": {
                "task_id": plan.task_id,
                "version": len(revised.versions),
                "after_step": version.after_step,
                "change": version.change,
                "steps": version.steps,
                "total": len(version.steps),
            },
        }
    )
    return {"plan": revised}
