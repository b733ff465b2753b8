"""The messages sent to the model at each stage of a run."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

SYSTEM = (
    "You are a capable assistant carrying out a task one step at a time. "
    "Answer plainly and concisely."
)


def clip(text: str, limit: int | None) -> str:
    """`text` cut to `limit` characters (None: uncut), marking the cut."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def plan_messages(task: str, max_steps: int) -> list[BaseMessage]:
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Break this task into numbered steps (at most {max_steps}). "
            "Return ONLY the numbered list, one step per line, nothing else.\n\n"
            f"Task: {task}"
        ),
    ]


def step_messages(
    task: str,
    step_num: int,
    total: int,
    description: str,
    recent: Sequence[str],
    tools: Sequence[str] = (),
) -> list[BaseMessage]:
    progress = "\n".join(recent) if recent else "(none yet)"
    ask = "Carry out this step and report what you did."
    if tools:
        ask = (
            f"Carry out this step. You may call these tools: {', '.join(tools)}. "
            "When the step is done, reply without a tool call, reporting what you found or did."
        )
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"Step {step_num}/{total}: {description}\n"
            f"Recent progress:\n{progress}\n\n{ask}"
        ),
    ]


def adapt_messages(task: str, step_num: int, description: str, error: str) -> list[BaseMessage]:
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"Step {step_num} failed with error: {error}\n"
            f"Original step was: {description}\n\n"
            "Try an alternative approach for this step and report what you did."
        ),
    ]
