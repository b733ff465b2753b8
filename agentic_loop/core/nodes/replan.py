"""`replan`: show the model what the finished steps found, and let it keep the steps left,
replace them, or say the task is done. Finished steps never change, but for their numbers:
they come first in the revised plan, in their order."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agentic_loop.core import events
from agentic_loop.core.dependencies import sequential
from agentic_loop.core.nodes.schedule import tokens_used
from agentic_loop.core.parsing import clean_reply, parse_plan
from agentic_loop.core.prompts import clip
from agentic_loop.core.replies import ask
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, AgenticStep, Plan, PlanVersion
from agentic_loop.models import describe_error

logger = logging.getLogger(__name__)

_VERDICT = re.compile(r"^\W*(keep|done)\b", re.IGNORECASE)


_STATUS_NOTE = re.compile(
    r"\s*[(\[]\s*(?:completed|adapted|failed|skipped|done|finished)\s*[)\]]\s*\.?\s*$",
    re.IGNORECASE,
)
"""A status word a model copied from the finished steps into a step it writes."""


def read_revision(
    text: str, finished: Sequence[str] = ()
) -> Literal["keep", "done"] | list[str] | None:
    """`keep`, `done`, the steps to follow instead, or None if the reply says none of these.

    The steps come without status notes ("(completed)"), and without the `finished` steps
    a model lists again: a list of nothing but those is `keep`."""
    text = clean_reply(text)
    if (match := _VERDICT.match(text)) is not None:
        return "keep" if match[1].lower() == "keep" else "done"
    steps = [_STATUS_NOTE.sub("", step) for step in parse_plan(text)]
    if not steps:
        return None
    done = {_plain(step) for step in finished}
    new = [step for step in steps if _plain(step) not in done]
    return new or "keep"


def _plain(step: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", step.lower()).split())


def revised_plan(
    plan: Plan, finished: list[AgenticStep], revision: Literal["done"] | list[str]
) -> tuple[Plan, list[AgenticStep]]:
    """`plan` with the steps not finished replaced by `revision` (run in order, up to
    `max_steps` in all) or dropped when the task is done, the new version kept; and the
    finished steps, renumbered to come first in their order."""
    kept = sorted(finished, key=lambda s: s.step_num)
    number = {s.step_num: index for index, s in enumerate(kept, 1)}
    stated = plan.stated_dependencies()
    deps = [sorted(number[d] for d in stated[s.step_num - 1] if d in number) for s in kept]
    steps = [plan.steps[s.step_num - 1] for s in kept]
    if revision == "done":
        change, planned = "done", len(kept)
    else:
        added = revision[: plan.max_steps - len(kept)]
        if any(deps):  # the new steps run one after another; in order anyway otherwise
            deps += [[d + len(kept) for d in wait] for wait in sequential(len(added))]
        else:
            deps += [[] for _ in added]
        steps += added
        change, planned = "replaced", len(kept) + len(revision)
    version = PlanVersion(after_step=len(kept), steps=steps, change=change)  # type: ignore[arg-type]
    revised = plan.model_copy(
        update={
            "steps": steps,
            "depends_on": deps,
            "planned_count": planned,
            "versions": [*plan.all_versions(), version],
        }
    )
    return revised, [s.model_copy(update={"step_num": number[s.step_num]}) for s in kept]


def _finished(steps: list[AgenticStep], chars: int | None) -> list[str]:
    # No status words: a model copies them into the steps it writes back.
    return [f"{s.step_num}. {s.description}: {clip(s.result, chars)}" for s in steps]


def budget_left(state: AgenticState, settings: Settings) -> str:
    """What is left of the run's budgets, for the replanner."""
    parts = []
    started = state.get("work_started_at")
    if settings.options.max_seconds is not None and started:
        parts.append(
            f"{max(0.0, settings.options.max_seconds - (time.time() - started)):.0f} seconds"
        )
    if settings.options.max_tokens is not None:
        parts.append(f"{max(0, settings.options.max_tokens - tokens_used(state))} tokens")
    return ", ".join(parts)


async def replan(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    plan, finished = state["plan"], sorted(state.get("steps", []), key=lambda s: s.step_num)
    asked = plan.model_copy(update={"replans": plan.replans + 1, "replan_seen": len(finished)})
    done = {s.step_num for s in finished}
    left = [step for n, step in enumerate(plan.steps, 1) if n not in done]
    room = plan.max_steps - len(finished)
    messages = settings.fit(
        lambda limit, done: settings.prompts.replan_messages(
            clip(state["task"], limit),
            done,
            [clip(step, limit) for step in left],
            max(room, 0),
            budget_left(state, settings),
        ),
        _finished(finished, settings.result_chars),
    )
    try:
        reply = await ask(settings.model, messages, max_chars=settings.options.reply_chars)
    except Exception as exc:  # the plan runs as it stands
        logger.debug("Replanning failed, keeping the plan: %s", describe_error(exc, settings.model))
        return {"plan": asked}
    tokens_in, tokens_out = reply.tokens
    asked = asked.model_copy(
        update={
            "tokens_in": asked.tokens_in + tokens_in,
            "tokens_out": asked.tokens_out + tokens_out,
        }
    )
    revision = read_revision(reply.message.text, [s.description for s in finished])
    if revision is None:
        logger.debug(
            "Replanning gave no KEEP, DONE or list of steps, keeping the plan: %r",
            reply.message.text[:200],
        )
        return {"plan": asked}
    if revision == "keep" or (revision != "done" and room <= 0):
        return {"plan": asked}
    revised, renumbered = revised_plan(asked, finished, revision)
    version = revised.versions[-1]
    await events.emit(
        runtime,
        events.plan_revised(
            plan.task_id, len(revised.versions), version.after_step, version.change, version.steps
        ),
    )
    update: dict[str, Any] = {"plan": revised}
    if renumbered != finished:
        update["steps"] = Overwrite(renumbered)
    return update
