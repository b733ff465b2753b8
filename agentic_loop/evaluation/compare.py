"""Running a task set with each model, one task at a time, through `run_agentic_loop` with no
store, and adding up what each run cost and how it went."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from langchain_core.language_models import BaseChatModel

from agentic_loop.core.options import LoopOptions
from agentic_loop.evaluation.calls import CallCounter
from agentic_loop.evaluation.judge import judge_answer
from agentic_loop.evaluation.results import Evaluation, ModelSummary, TaskRun
from agentic_loop.evaluation.tasks import EvalTask
from agentic_loop.models import check_ollama, load_model, resolve_spec, spec_of
from agentic_loop.runs.runner import run_agentic_loop

ModelChoice = str | BaseChatModel
"""A model spec (`local`, `ollama:NAME`, `auto`) or a chat model object."""
OnRun = Callable[[TaskRun, int, int], Awaitable[None] | None]
"""Told of each run as it ends: `on_run(run, number, total)`, `number` from 1."""


class SetupError(ValueError):
    """A model or judge that cannot be used; one line saying why, before any run starts."""


async def evaluate(
    tasks: Sequence[EvalTask],
    models: Sequence[ModelChoice],
    *,
    judge: ModelChoice | None = None,
    options: LoopOptions | None = None,
    on_run: OnRun | None = None,
) -> Evaluation:
    """Run each task with each model, one run at a time and in order, and sum them up per
    model; with a `judge`, grade each answer against its task's rubric (1 to 5).

    Every model (and the judge) is loaded first, so that a model that cannot be used is a
    `SetupError` before anything runs. Runs take `options` (its `max_steps` caps every
    task's own); model call errors end up in a run's result, as they do in any run."""
    options = options or LoopOptions()
    if not tasks or not models:
        raise SetupError("an evaluation needs one task and one model at least")
    chosen = _named([(choice, _open(choice, options)) for choice in models])
    graded_by = None if judge is None else _open(judge, options)
    runs: list[TaskRun] = []
    total = len(tasks) * len(chosen)
    for name, model in chosen:
        for task in tasks:
            run = await run_task(task, model, name=name, options=options, judge=graded_by)
            runs.append(run)
            if on_run is not None:
                told = on_run(run, len(runs), total)
                if told is not None:
                    await told
    return Evaluation(
        tasks=[task.id for task in tasks],
        judge=None if judge is None else _name(judge),
        summaries=[
            ModelSummary.of(name, [run for run in runs if run.model == name]) for name, _ in chosen
        ],
        runs=runs,
    )


async def run_task(
    task: EvalTask,
    model: BaseChatModel,
    *,
    name: str,
    options: LoopOptions,
    judge: BaseChatModel | None = None,
) -> TaskRun:
    """One run of `task` by `model`, with no store, its calls counted by a callback."""
    counter = CallCounter()
    limits = [steps for steps in (task.max_steps, options.max_steps) if steps is not None]
    started = time.perf_counter()
    result = await run_agentic_loop(
        task.task,
        model=model,
        session_id="eval",
        options=options.replace(max_steps=min(limits) if limits else None),
        config={"callbacks": [counter]},
    )
    seconds = time.perf_counter() - started
    score = None
    if judge is not None:
        score = await judge_answer(judge, task.task, task.rubric, result.answer)
    return TaskRun(
        model=name,
        task_id=task.id,
        status=result.status,
        steps=sum(step.status != "skipped" for step in result.steps),
        calls=counter.calls,
        flawed=len(counter.flaws),
        flaws=counter.flaws,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        seconds=round(seconds, 3),
        answer_chars=len(result.answer),
        answer=result.answer,
        score=None if score is None else score.score,
        judge_reason="" if score is None else score.reason,
        thread_id=result.thread_id,
    )


def _open(choice: ModelChoice, options: LoopOptions) -> BaseChatModel:
    """The chat model for `choice`; a spec is resolved and, for Ollama, checked to be served."""
    if not isinstance(choice, str):
        return choice
    try:
        spec = resolve_spec(choice)
        if spec.startswith("ollama:"):
            check_ollama(spec.partition(":")[2])
        return load_model(spec, timeout_s=options.timeout, reply_tokens=options.max_reply_tokens)
    except ValueError as exc:
        raise SetupError(str(exc)) from None


def _name(choice: ModelChoice) -> str:
    return choice if isinstance(choice, str) else spec_of(choice) or type(choice).__name__


def _named(chosen: list[tuple[ModelChoice, BaseChatModel]]) -> list[tuple[str, BaseChatModel]]:
    """Each model with a name of its own: the same name twice gets `#2`, `#3`, ..."""
    named: list[tuple[str, BaseChatModel]] = []
    for choice, model in chosen:
        name = base = _name(choice)
        count = 1
        while any(name == taken for taken, _ in named):
            count += 1
            name = f"{base} #{count}"
        named.append((name, model))
    return named
