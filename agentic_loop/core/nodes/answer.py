"""`answer`: once the last step is done, ask the model for the answer to the task, written
from what the steps found."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agentic_loop.core import events
from agentic_loop.core.prompts import clip
from agentic_loop.core.replies import ask, reply_text
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticState, Answer
from agentic_loop.models import describe_error


async def answer(state: AgenticState, runtime: Runtime, *, settings: Settings) -> dict[str, Any]:
    plan, steps = state["plan"], sorted(state.get("steps", []), key=lambda s: s.step_num)
    useful = [step for step in steps if step.status in ("completed", "adapted")]
    if not useful:  # nothing to answer from; the summary already says every step failed
        return {"answer": Answer()}
    chars = settings.prompts.answer_result_chars
    messages = settings.fit(
        lambda limit, results: settings.prompts.answer_messages(
            clip(state["task"], limit), results
        ),
        [f"{s.step_num}. {s.description}: {clip(s.result, chars)}" for s in useful],
    )
    try:
        reply = await ask(settings.model, messages, max_chars=settings.options.reply_chars)
    except Exception as exc:  # the run keeps its status; the summary says why
        return {"answer": Answer(error=describe_error(exc, settings.model))}
    tokens_in, tokens_out = reply.tokens
    text, degenerate = reply_text(reply, messages)
    if degenerate:
        return {"answer": Answer(error=degenerate, tokens_in=tokens_in, tokens_out=tokens_out)}
    await events.emit(runtime, events.answer_ready(plan.task_id, text, reply.cut_short))
    return {
        "answer": Answer(
            text=text, cut_short=reply.cut_short, tokens_in=tokens_in, tokens_out=tokens_out
        )
    }
