"""`summarise`: the run's status and summary, from what the steps did."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agentic_loop import events
from agentic_loop.state import AgenticResult, AgenticState, AgenticStep, Answer, RunStatus


def run_status(
    steps: list[AgenticStep], total: int, planned: int, plan_error: str | None
) -> RunStatus:
    """`failed` when nothing could be done, `partial` when some of it was, else `completed`."""
    if plan_error or not total or (steps and all(s.status == "failed" for s in steps)):
        return "failed"
    if planned > total or len(steps) < total or any(s.status == "failed" for s in steps):
        return "partial"
    return "completed"


def summary_text(
    task: str, steps: list[AgenticStep], total: int, planned: int, max_steps: int
) -> str:
    """`"<task>: Completed X/Y steps, N adapted, M failed."`, then what was cut or not run."""
    counts = {
        status: sum(s.status == status for s in steps)
        for status in ("completed", "adapted", "failed")
    }
    parts = [f"Completed {counts['completed']}/{total} steps"]
    parts += [f"{counts[s]} {s}" for s in ("adapted", "failed") if counts[s]]
    text = f"{task}: {', '.join(parts)}."
    if planned > total:
        text += (
            f" The plan had {planned} steps; only the first {total} ran (max_steps={max_steps})."
        )
    elif len(steps) < total:
        text += f" Only {len(steps)} of the {total} planned steps ran."
    return text


def answer_note(answer: Answer | None) -> str:
    """What the summary says of the answer when it is missing or cut short."""
    if answer is None:
        return ""
    if answer.error:
        return f" No answer: {answer.error}."
    return " The answer was cut short at its length cap." if answer.cut_short else ""


async def summarise(state: AgenticState, runtime: Runtime) -> dict[str, Any]:
    plan, steps = state["plan"], state.get("steps", [])
    total = len(plan.steps)
    status = run_status(steps, total, plan.planned_count, plan.error)
    answer = state.get("answer")
    summary = plan.error or (
        summary_text(state["task"], steps, total, plan.planned_count, plan.max_steps)
        + answer_note(answer)
    )
    result = AgenticResult(
        task_id=plan.task_id,
        task=state["task"],
        summary=summary,
        steps=steps,
        status=status,
        total_duration_ms=plan.duration_ms + sum(s.duration_ms for s in steps),
        thread_id=plan.thread_id,
        planned_steps=plan.planned_count,
        answer=answer.text if answer else "",
        plan_versions=plan.all_versions(),
    )
    runtime.stream_writer(
        {
            "event": events.TASK_COMPLETE,
            "data": {
                "task_id": result.task_id,
                "status": status,
                "steps_completed": len(steps),
                "summary": summary[:300],
                "answer": result.answer[:300],
                "duration_ms": result.total_duration_ms,
            },
        }
    )
    return {"result": result}
