"""Figures for the embedded model (SmolLM2-135M through llama-cpp-python) on this machine.

Run from the repository root, with the `local` extra installed:

    python bench/local_model.py

Reports the model's load time, the time to plan a task, the time per step of a whole
run, and generation speed in tokens per second. Decoding is greedy, so the replies (and
their lengths) are the same on each run.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

from langchain_core.messages import AIMessage

from agentic_loop import local_model, prompts
from agentic_loop.local_model import LocalChatModel
from agentic_loop.runner import run_agentic_loop

TASKS = [
    "Plan a weekend trip to the coast",
    "Organise a birthday party",
    "Clean the kitchen",
    "Start a vegetable garden",
]


def reply_tokens(model: LocalChatModel, text: str) -> int:
    return model.get_num_tokens_from_messages([AIMessage(text)]) - local_model._TEMPLATE_TOKENS


def main() -> None:
    model = LocalChatModel()
    started = time.perf_counter()
    local_model._load(model.model_path, model.context_window)
    load_s = time.perf_counter() - started

    plan_s, tokens, gen_s = [], 0, 0.0
    for task in TASKS:
        started = time.perf_counter()
        reply = model.invoke(prompts.plan_messages(task, 10)).text
        elapsed = time.perf_counter() - started
        plan_s.append(elapsed)
        tokens += reply_tokens(model, reply)
        gen_s += elapsed

    result = asyncio.run(run_agentic_loop(TASKS[0], model=model, max_steps=5))
    step_ms = [step.duration_ms for step in result.steps]
    for step in result.steps:
        tokens += reply_tokens(model, step.result)
        gen_s += step.duration_ms / 1000

    figures = {
        "cpus": os.cpu_count(),
        "load_s": round(load_s, 3),
        "plan_s_median": round(statistics.median(plan_s), 3),
        "step_ms_median": statistics.median(step_ms),
        "steps": len(step_ms),
        "tokens_per_s": round(tokens / gen_s, 1),
        "run_status": result.status,
        "run_total_ms": result.total_duration_ms,
    }
    print(f"model load            {figures['load_s']:.2f} s")
    print(f"time to plan          {figures['plan_s_median']:.2f} s (median of {len(TASKS)} tasks)")
    print(
        f"time per step         {figures['step_ms_median']:.0f} ms (median of {len(step_ms)} steps)"
    )
    print(
        f"generation speed      {figures['tokens_per_s']:.0f} tokens/s (prompt processing included)"
    )
    print(
        f"whole run             {result.total_duration_ms / 1000:.1f} s, "
        f"{len(step_ms)} steps, {result.status}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
