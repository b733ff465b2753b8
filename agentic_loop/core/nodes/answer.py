"""`answer`: once the last step is done, ask the model for the answer to the task, written
from what the steps found."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agentic_loop.core import events, prompts
from agentic_loop.core.replies import ask, reply_text
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, Answer
from agentic_loop.models import describe_error

RESULT_CHARS = 1000
"""How much of each step's result the answer's prompt carries (less if the window is small)."""


async def answer(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    plan, steps = state["plan"], sorted(state.get("steps", []), key=lambda s: s.step_num)
    useful = [step for step in steps if step.status in ("completed", "adapted")]
    if not useful:  # nothing to answer from; the summary already says every step failed
        return {"answer": Answer()}
    messages = settings.fit(
        lambda limit: prompts.answer_messages(
            prompts.clip(state["task"], limit),
            [
                f"{s.step_num}. {prompts.clip(s.description, limit)}: "
                f"{prompts.clip(s.result, min(RESULT_CHARS, limit or RESULT_CHARS))}"
                for s in useful
            ],
        )
    )
    try:
        reply = await ask(settings.model, messages, max_chars=settings.options.reply_chars)
    except Exception as exc:  # the run keeps its status; the summary says why
        return {"answer": Answer(error=describe_error(exc, settings.model))}
    tokens_in, tokens_out = reply.tokens
    text, degenerate = reply_text(reply, messages)
    if degenerate:
        return {"answer": Answer(error=degenerate, tokens_in=tokens_in, tokens_out=tokens_out)}
    runtime.stream_writer(events.answer_ready(plan.task_id, text, reply.cut_short))
    return {
        "answer": Answer(
            text=text, cut_short=reply.cut_short, tokens_in=tokens_in, tokens_out=tokens_out
        )
    }
