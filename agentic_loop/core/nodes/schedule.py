"""`schedule`: between rounds of steps, record the steps that will never run and say which
budget ran out; `routes.route_after_schedule` then starts the next round.

Steps run in rounds: every step that can go on (a model call, a tool call, an approval,
an adaptation) and every step whose dependencies have finished, at most `max_parallel` in
progress, run side by side, and the next round starts when they have all ended. So each
round is one superstep, stored before the next begins."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from agentic_loop.core import events
from agentic_loop.core.conversation import removals
from agentic_loop.core.older_runs import untagged
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, AgenticStep, Budget


def spent_budget(state: AgenticState, settings: Settings, now: float) -> Budget | None:
    """The budget that has run out, if one has."""
    if state.get("budget_spent"):
        return state["budget_spent"]
    started = state.get("work_started_at")
    if (
        settings.options.max_seconds is not None
        and started
        and now - started >= settings.options.max_seconds
    ):
        return "max_seconds"
    if (
        settings.options.max_tokens is not None
        and tokens_used(state) >= settings.options.max_tokens
    ):
        return "max_tokens"
    return None


def tokens_used(state: AgenticState) -> int:
    """Prompt and reply tokens of every model call of the run so far."""
    plan, answer = state["plan"], state.get("answer")
    total = plan.tokens_in + plan.tokens_out
    total += sum(s.tokens_in + s.tokens_out for s in state.get("steps", []))
    total += sum(r.tokens_in + r.tokens_out for r in state.get("running", {}).values())
    if answer is not None:
        total += answer.tokens_in + answer.tokens_out
    return total


def budget_text(budget: Budget, settings: Settings) -> str:
    if budget == "max_seconds":
        return f"the run's time budget ({settings.options.max_seconds:g} s, max_seconds) ran out"
    return f"the run's token budget ({settings.options.max_tokens}, max_tokens) ran out"


def replan_wanted(state: AgenticState, settings: Settings) -> bool:
    """Whether the steps that ended since replanning last looked call for it again: any
    of them (`after_each_step`), or one that failed and was adapted (`on_failure`). It
    waits until no step is in progress."""
    plan = state["plan"]
    if settings.options.replan == "never" or plan.replans >= settings.options.max_replans:
        return False
    if state.get("running") or state.get("budget_spent"):
        return False
    fresh = [s for s in state.get("steps", [])[plan.replan_seen :] if s.status != "skipped"]
    if settings.options.replan == "after_each_step":
        return bool(fresh)
    return any(s.status in ("adapted", "failed") for s in fresh)


def steps_to_skip(state: AgenticState, reason_for_all: str | None) -> list[tuple[int, str]]:
    """Steps not started that never will: those waiting on a failed or skipped step, or
    every one when `reason_for_all` says a budget ran out. In plan order, with why."""
    plan = state["plan"]
    ended = {s.step_num: s.status for s in state.get("steps", [])}
    running = {int(key) for key in state.get("running", {})}
    deps = plan.stated_dependencies()
    skipped: list[tuple[int, str]] = []
    changed = True
    while changed:  # a skip can make a later (or earlier) step skip in turn
        changed = False
        for n in range(1, len(plan.steps) + 1):
            if n in ended or n in running:
                continue
            reason = reason_for_all
            for dep in deps[n - 1]:
                if ended.get(dep) in ("failed", "skipped"):
                    reason = reason or f"step {dep} it depends on {ended[dep]}"
            if reason:
                skipped.append((n, reason))
                ended[n] = "skipped"
                changed = True
    return sorted(skipped)


async def schedule(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    update, skipped = round_update(state, settings, time.time())
    plan = state["plan"]
    for step, reason in skipped:
        await events.emit(
            runtime,
            events.step_skipped(
                plan.task_id, step.step_num, len(plan.steps), step.description, reason
            ),
        )
    return update


def round_update(
    state: AgenticState, settings: Settings, now: float
) -> tuple[dict[str, Any], list[tuple[AgenticStep, str]]]:
    """What `schedule` writes before the next round (empty when it has nothing to record,
    so that a step that ran alone may start the next round itself), and the steps it
    skips, with why."""
    plan = state["plan"]
    update: dict[str, Any] = {}
    if leftover := untagged(state.get("messages", [])):  # from a run stored before
        update["messages"] = removals(leftover)
    if not state.get("work_started_at"):
        update["work_started_at"] = now
    if replan_wanted(state, settings):
        return update, []  # the router goes to `replan` first: it may change the steps left
    budget = spent_budget(state, settings, now)
    if budget and not state.get("budget_spent"):
        update["budget_spent"] = budget
    skipped: list[tuple[AgenticStep, str]] = []
    for step_num, reason in steps_to_skip(state, budget and budget_text(budget, settings)):
        description = plan.steps[step_num - 1]
        step = AgenticStep(
            step_num=step_num,
            description=description,
            result=f"Skipped: {reason}.",
            status="skipped",
            duration_ms=0,
        )
        skipped.append((step, reason))
    if skipped:
        update["steps"] = [step for step, _ in skipped]
    return update, skipped
