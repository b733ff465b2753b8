"""What a person may answer to a paused run, and reading an answer: a plan review
(`read_review`), a tool approval (`read_approval`), a plan step typed at a review
(`typed_step`) and a tool call's arguments typed at an approval (`typed_args`). The
`review` and `approve_tools` nodes read answers with these, and so do the faces, to check
one before the run resumes with it.

It imports no LangChain or LangGraph, so a face may import it before they load."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from agentic_loop.core.parsing import read_json

if TYPE_CHECKING:
    from agentic_loop.core.state import PlanReview, ToolApproval

QuestionKind = Literal["plan_review", "tool_approval"]
"""What a paused run asks: a review of its plan, or approval of a tool call. A tool call
that was cut off when the run stopped is asked about as a tool approval whose request says
`cut_off: true`: whether to run it again."""

_NUMBERING = re.compile(r"^\s*\d+[.)]\s*")


def typed_step(line: str) -> str:
    """A step of a plan a reviewer typed, one a line: its numbering ("2. ", "3) ") dropped."""
    return _NUMBERING.sub("", line).strip()


def typed_args(text: str) -> Any:
    """A tool call's arguments as a reviewer typed them, in JSON (`read_json`: at most
    `JSON_DEPTH` levels deep, no NaN or Infinity, integers within 64 bits); ValueError
    says what is wrong, in one line. `read_approval` checks that they are an object."""
    try:
        return read_json(text)
    except ValueError as exc:
        raise ValueError(f"unreadable arguments: {exc}; write them as a JSON object") from None


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


def read_approval(answer: object, *, cut_off: bool = False) -> ToolApproval:
    """The reviewer's answer in its full form; ValueError says what a valid answer is. For
    a call that was `cut_off` (run it again?), an edit is no answer: it runs again as it
    was, or not at all."""
    if cut_off and isinstance(answer, dict) and answer.get("action") == "edit":
        raise ValueError(
            "this call was cut off: it runs again as it was, or not at all; answer "
            "'approve' to run it again or 'reject'"
        )
    if answer is True or answer == "approve":
        return {"action": "approve"}
    if answer is False or answer == "reject":
        return {"action": "reject"}
    if not isinstance(answer, dict) or answer.get("action") not in ("approve", "edit", "reject"):
        raise ValueError(
            f"unreadable approval {answer!r}: use 'approve', 'reject', or a dict with action "
            "'approve', 'edit' (with 'args', the arguments to use) or 'reject'"
        )
    if answer["action"] == "edit":
        args = answer.get("args")
        if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
            raise ValueError("an edit needs `args`, a dict of the tool's arguments by name")
        return {"action": "edit", "args": args}
    if answer["action"] == "reject":
        return {"action": "reject", "reason": str(answer.get("reason") or "").strip()}
    return {"action": "approve"}
