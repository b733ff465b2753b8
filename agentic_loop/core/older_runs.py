"""Runs stored by earlier versions: every rule that lets them read and resume, in one place.

What the earlier versions stored differently, and the rule for each:

- Before the package had layers, checkpoints named the run's types under
  `agentic_loop.state` (now `agentic_loop.core.state`): `allow_list`.
- Before parallel steps, the state held `StepStart` (the step in progress) and
  `StepFailure` (a failed call). They stay in `agentic_loop.core.state`, because
  checkpoints name them by that module path, and `state.STORED_TYPES` lists them so that
  such checkpoints still decode; nothing writes them.
- Before parallel steps, the messages of the step in progress had no step tag: `untagged`
  finds them, `schedule` removes them, and `legacy_handover` has a step node pulled in
  with the whole state drop them, so that the step starts again.
- Before tool approvals, a plan review's interrupt had no `kind`: `question_kind`.
- Until 0.1 the CLI recorded its `review` flag in a run's metadata, and until 0.2
  `max_reply_tokens` was recorded as `reply_tokens`: `renamed_options`.
- Before the run's input chose the review (`Plan.review_requested`), the choice was
  recorded only in the CLI's metadata: `review_requested`.

This module imports no LangChain at its top, so `options` may use it and
`agentic-loop --help` still loads none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.messages import AnyMessage

    from agentic_loop.core.answers import QuestionKind
    from agentic_loop.core.options import LoopOptions
    from agentic_loop.core.state import Plan

LAYERLESS_STATE_MODULE = "agentic_loop.state"
"""Where runs stored before the package had layers name the run's types."""

_TAG = re.compile(r"step\d+-")
"""The start of a tagged message's id (`conversation.step_tag`)."""


def allow_list(types: Iterable[type]) -> list[tuple[str, str]]:
    """`types` as a checkpointer's allow-list names them (`with_allowlist`): under their
    module, and under `agentic_loop.state`, where runs stored before layers name them."""
    return [
        (module, cls.__name__)
        for cls in types
        for module in (cls.__module__, LAYERLESS_STATE_MODULE)
    ]


def untagged(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Messages left by a run stored before parallel steps: they belong to no step."""
    return [m for m in messages if not (m.id and _TAG.match(m.id))]


def legacy_handover(state: Any) -> dict[str, Any] | None:
    """For a run stored before parallel steps, pulled into a step node with the whole
    state: drop its step's conversation, so that `schedule` starts that step again."""
    if "step_num" in state:
        return None
    from agentic_loop.core.conversation import removals  # it imports LangChain

    return {"messages": removals(untagged(state.get("messages", [])))}


def question_kind(request: Mapping[str, Any]) -> QuestionKind:
    """What an interrupt asks: plan reviews stored before tool approvals have no kind."""
    return "tool_approval" if request.get("kind") == "tool_approval" else "plan_review"


def renamed_options(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Options a run's metadata holds under an earlier name, by their name now (a name
    recorded under both is read from the newer)."""
    values: dict[str, Any] = {}
    if "reply_tokens" in metadata and "max_reply_tokens" not in metadata:
        values["max_reply_tokens"] = metadata["reply_tokens"]  # its name until 0.2
    if "review" in metadata and "review_plan" not in metadata:
        values["review_plan"] = bool(metadata["review"])  # the CLI's flag until 0.1
    return values


def review_requested(plan: Plan | None, options: LoopOptions) -> bool:
    """Whether the run asked for its plan to be reviewed: its plan says so, or (stored
    before the plan recorded it) the options recorded with it do."""
    return bool(plan and plan.review_requested) or options.review_plan
