"""`summarise`: the run's status and summary, from what the steps did."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from agentic_loop.core import events
from agentic_loop.core.state import (
    AgenticResult,
    AgenticState,
    AgenticStep,
    Answer,
    Budget,
    RunStatus,
)


def run_status(steps: list[AgenticStep], total: int, plan_error: str | None) -> RunStatus:
    """`failed` when nothing could be done, `partial` when some of it was (a step failed,
    was skipped or did not run), else `completed`. A plan cut to `max_steps` is the
    user's own choice, not a failure: the status comes from the steps kept."""
    done = [s for s in steps if s.status in ("completed", "adapted")]
    if plan_error or not total or (steps and not done):
        return "failed"
    return "partial" if len(done) < total else "completed"


def summary_text(
    task: str, steps: list[AgenticStep], total: int, planned: int, max_steps: int
) -> str:
    """`"<task>: Completed X/Y steps, N adapted, M failed, K skipped."`, Y the steps of
    the plan as last shown; then what `max_steps` cut and what did not run."""
    counts = {
        status: sum(s.status == status for s in steps)
        for status in ("completed", "adapted", "failed", "skipped")
    }
    parts = [f"Completed {counts['completed']}/{total} steps"]
    parts += [f"{counts[s]} {s}" for s in ("adapted", "failed", "skipped") if counts[s]]
    text = f"{task}: {', '.join(parts)}."
    if planned > total:
        text += f" Planned {planned} steps, kept {total} (max_steps={max_steps})."
    if len(steps) < total:
        text += f" Only {len(steps)} of the {total} planned steps ran."
    return text


def answer_note(answer: Answer | None) -> str:
    """What the summary says of the answer when it is missing or cut short."""
    if answer is None:
        return ""
    if answer.error:
        return f" No answer: {answer.error}."
    return " The answer was cut short at its length cap." if answer.cut_short else ""


def working_ms(state: AgenticState, steps: list[AgenticStep]) -> int:
    """Time from the first step's start to now; the steps' own times added up, for runs
    stored before steps ran side by side."""
    started = state.get("work_started_at")
    if started:
        return max(0, int((time.time() - started) * 1000))
    return sum(s.duration_ms for s in steps)


def budget_note(budget: Budget | None) -> str:
    if budget is None:
        return ""
    return f" Stopped early: the run's {budget} budget ran out."


async def summarise(state: AgenticState, runtime: Runtime) -> dict[str, Any]:
    plan, steps = state["plan"], sorted(state.get("steps", []), key=lambda s: s.step_num)
    total = len(plan.steps)
    status = run_status(steps, total, plan.error)
    answer = state.get("answer")
    budget = state.get("budget_spent")
    summary = plan.error or (
        summary_text(state["task"], steps, total, plan.planned_count, plan.max_steps)
        + budget_note(budget)
        + answer_note(answer)
    )
    answer_tokens = (answer.tokens_in, answer.tokens_out) if answer else (0, 0)
    result = AgenticResult(
        task_id=plan.task_id,
        task=state["task"],
        summary=summary,
        steps=steps,
        status=status,
        total_duration_ms=plan.duration_ms + working_ms(state, steps),
        thread_id=plan.thread_id,
        planned_steps=plan.planned_count,
        answer=answer.text if answer else "",
        plan_versions=plan.all_versions(),
        depends_on=plan.stated_dependencies(),
        tokens_in=plan.tokens_in + sum(s.tokens_in for s in steps) + answer_tokens[0],
        tokens_out=plan.tokens_out + sum(s.tokens_out for s in steps) + answer_tokens[1],
        budget_spent=budget,
    )
    await events.emit(
        runtime,
        events.task_complete(
            result.task_id,
            status,
            len(steps),
            summary,
            result.answer,
            result.total_duration_ms,
            result.tokens_in,
            result.tokens_out,
        ),
    )
    return {"result": result}
