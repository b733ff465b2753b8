"""`run_agentic_loop`: one call that runs (or resumes) a task and returns its result,
through the same service as the CLI and the web app."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Durability

from agentic_loop.core.events import Broadcaster, OnProgress
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.options import LoopOptions
from agentic_loop.core.state import AgenticResult
from agentic_loop.models import load_model, model_spec_from_env, spec_of
from agentic_loop.runs import store as storage
from agentic_loop.runs.service import Hooks, RunRequest, RunService
from agentic_loop.runs.streaming import (
    ApprovalHandler,
    AwaitingAnswer,
    ReviewHandler,
    new_thread_id,
)

__all__ = ["AwaitingAnswer", "run_agentic_loop"]


async def run_agentic_loop(
    task: str,
    *,
    model: Runnable[Any, Any] | None = None,
    session_id: str = "agentic",
    max_steps: int = 0,
    on_progress: OnProgress | None = None,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    thread_id: str | None = None,
    broadcaster: Broadcaster | None = None,
    review: ReviewHandler | None = None,
    durability: Durability = "sync",
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    approve: ApprovalHandler | None = None,
    options: LoopOptions | None = None,
    config: RunnableConfig | None = None,
    busy_wait_s: float = 0.0,
    **choices: Any,
) -> AgenticResult:
    """Plan `task` into steps, run them (side by side where they allow), adapt failures,
    and summarise: a run through `agentic_loop.runs.service.RunService`, as the CLI and the
    web app make them.

    Each run gets its own thread, `"{session_id}-{8 hex digits}"` unless `thread_id` is
    given. With a checkpointer, a `thread_id` that holds an unfinished run of the same
    task resumes it, and one that holds a finished run returns its stored result. A
    thread that another runner runs now (another process sharing a SQLite or PostgreSQL
    store, or another call in this one) is refused with `leases.RunBusy` naming it (or
    `service.RunActive`), unless it is free within `busy_wait_s` seconds. The run
    records its options and its model (`models.spec_of`: `ollama:NAME`, `local`), so
    `agentic-loop resume` carries it on as it was started.

    What the run may choose is `options` (`agentic_loop.LoopOptions`) or its keywords
    (`max_parallel=1`, `replan="never"`, `approve_tools=["send"]`, ...; see `build_graph`);
    `max_steps=0` means `AGENTIC_LOOP_MAX_STEPS`, else 10. The model defaults to
    `AGENTIC_LOOP_MODEL`, else `auto` (see `agentic_loop.models.resolve_spec`).
    `on_progress(description, step_num, total_steps)` (sync or async) is called as each
    step ends, and `broadcaster.broadcast(event, data)` gets every progress event; neither
    can change or fail the run. With `review`, the plan waits for `review(request)` to
    approve, edit or reject it before any step runs; calls of the tools named in
    `approve_tools` (`True`: all) wait for `approve(request)`. A paused run needs a
    checkpointer: an in-memory one is used if none is given. `config` (callbacks, tags,
    metadata, run_name) goes to every model and tool call of the run, so an outer
    agent's tracing sees them.
    """
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"task must be non-empty text, got {task!r}")
    options = (options or LoopOptions()).replace(
        **choices, **({"max_steps": max_steps} if max_steps else {})
    )
    if review is not None:
        options = options.replace(review_plan=True)
    if options.approve_tools and approve is None:
        raise ValueError("approve_tools needs an `approve` handler to answer the approvals")
    if model is None:
        model = load_model(
            options.model or model_spec_from_env(),
            timeout_s=options.timeout,
            reply_tokens=options.max_reply_tokens,
        )
    if (options.review_plan or options.approve_tools) and checkpointer is None:
        checkpointer = storage.checkpointer()  # a paused graph needs somewhere to wait
    options = options.replace(model=spec_of(model) or options.model)
    graph = create_agentic_loop(model, checkpointer=checkpointer, tools=tools, options=options)
    service = RunService(
        checkpointer,
        where="the checkpointer",
        graph=graph,
        options=options,
        busy_wait_s=busy_wait_s,
        durability=durability,
    )
    hooks = Hooks(progress=broadcaster, on_progress=on_progress, review=review, approve=approve)
    if thread_id is not None:
        stored = await service.find(thread_id)
        if stored is not None:
            if stored.task != task:
                raise ValueError(
                    f"thread {thread_id!r} holds a run of another task ({stored.task!r}); "
                    "pass a new thread_id, or the same task to resume it"
                )
            if stored.result is not None:
                return stored.result
            outcome = await service.resume(thread_id, hooks, config=config)
            return _result_of(outcome.result, outcome.waiting)
    request = RunRequest(
        task=task, options=options, thread_id=thread_id or new_thread_id(session_id)
    )
    outcome = await service.start(request, hooks, config=config)
    return _result_of(outcome.result, outcome.waiting)


def _result_of(result: AgenticResult | None, waiting: list[Any]) -> AgenticResult:
    if result is None:  # only when a handler is missing, which the checks above rule out
        raise AwaitingAnswer(waiting[0].request if waiting else {})
    return result
