"""`review`: pause so a person can approve, edit or reject the plan before any step runs."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agentic_loop.core import events
from agentic_loop.core.answers import read_review
from agentic_loop.core.dependencies import checked_dependencies, split_dependency_note
from agentic_loop.core.state import AgenticState, Plan, PlanReview

QUESTION = (
    "Approve, edit or reject this plan. Resume with Command(resume=...): 'approve', "
    "a list of steps to run instead, or {'action': 'reject', 'reason': '...'}."
)


def reviewed_plan(plan: Plan, review: PlanReview) -> Plan:
    if review["action"] == "edit":
        # Edited steps may carry dependency notes too: "Choose (after 1, 2)".
        read = [split_dependency_note(step) for step in review["steps"]]
        depends_on, notes = checked_dependencies(range(1, len(read) + 1), [a for _, a in read])
        steps = [text for text, _ in read]
        return plan.model_copy(
            update={
                "steps": steps,
                "depends_on": depends_on,
                "notes": notes,
                "planned_count": len(steps),
                "review": "edited",
            }
        )
    if review["action"] == "reject":
        reason = review.get("reason")
        error = f"Plan rejected at review: {reason}" if reason else "Plan rejected at review."
        return plan.model_copy(update={"error": error, "review": "rejected"})
    return plan.model_copy(update={"review": "approved"})


async def review(state: AgenticState, runtime: Runtime) -> dict[str, Any]:
    plan = state["plan"]
    if plan.error:  # planning failed: nothing to review
        return {}
    request = {
        "kind": "plan_review",
        "task_id": plan.task_id,
        "task": state["task"],
        "steps": plan.steps,
        "max_steps": plan.max_steps,
        "question": QUESTION,
    }
    # On resume the node starts again and each interrupt() returns its answer in turn,
    # so an unreadable answer asks again, saying what was wrong.
    answer = interrupt(request)
    while True:
        try:
            decision = read_review(answer, plan.max_steps)
            break
        except ValueError as exc:
            answer = interrupt({**request, "problem": str(exc)})
    outcome = reviewed_plan(plan, decision)
    assert outcome.review is not None, "reviewed_plan says how the reviewer answered"
    await events.emit(
        runtime, events.plan_reviewed(plan.task_id, outcome.review, outcome.steps, outcome.error)
    )
    return {"plan": outcome}
