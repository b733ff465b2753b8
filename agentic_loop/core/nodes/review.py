"""`review`: pause so a person can approve, edit or reject the plan before any step runs."""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agentic_loop.core import events
from agentic_loop.core.dependencies import checked_dependencies, split_dependency_note
from agentic_loop.core.state import AgenticState, Plan, PlanReview

QUESTION = (
    "Approve, edit or reject this plan. Resume with Command(resume=...): 'approve', "
    "a list of steps to run instead, or {'action': 'reject', 'reason': '...'}."
)


_NUMBERING = re.compile(r"^\s*\d+[.)]\s*")


def typed_step(line: str) -> str:
    """A step of a plan a reviewer typed, one a line: its numbering ("2. ", "3) ") dropped."""
    return _NUMBERING.sub("", line).strip()


def read_review(answer: object, max_steps: int) -> PlanReview:
    """The reviewer's answer in its full form; ValueError says what a valid answer is."""
    if answer is True or answer == "approve":
        return {"action": "approve"}
    if answer is False or answer == "reject":
        return {"action": "reject"}
    if isinstance(answer, list):
        answer = {"action": "edit", "steps": answer}
    if not isinstance(answer, dict) or answer.get("action") not in ("approve", "edit", "reject"):
        raise ValueError(
            f"unreadable review answer {answer!r}: use 'approve', 'reject', a list of steps, "
            "or a dict with action 'approve', 'edit' or 'reject'"
        )
    if answer["action"] == "edit":
        steps = answer.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ValueError("an edit needs `steps`, a list of texts")
        steps = [s.strip() for s in steps if s.strip()]
        if not 1 <= len(steps) <= max_steps:
            raise ValueError(f"an edited plan needs 1 to {max_steps} steps, got {len(steps)}")
        return {"action": "edit", "steps": steps}
    if answer["action"] == "reject":
        return {"action": "reject", "reason": str(answer.get("reason") or "").strip()}
    return {"action": "approve"}


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
    runtime.stream_writer(
        events.plan_reviewed(plan.task_id, outcome.review, outcome.steps, outcome.error)
    )
    return {"plan": outcome}
