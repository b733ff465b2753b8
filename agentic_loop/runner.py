"""`run_agentic_loop`: one call that runs (or resumes) a task and returns its result."""

from __future__ import annotations

import uuid
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability

from agentic_loop.events import (
    Broadcaster,
    OnProgress,
    ProgressEvent,
    ProgressRelay,
    is_progress_event,
)
from agentic_loop.graph import create_agentic_loop
from agentic_loop.models import load_model, model_spec_from_env
from agentic_loop.state import AgenticResult


async def run_agentic_loop(
    task: str,
    *,
    model: Runnable | None = None,
    session_id: str = "agentic",
    max_steps: int = 0,
    on_progress: OnProgress | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    thread_id: str | None = None,
    broadcaster: Broadcaster | None = None,
    durability: Durability = "sync",
) -> AgenticResult:
    """Plan `task` into steps, run them one by one, adapt failures, and summarise.

    Each run gets its own thread, `"{session_id}-{8 hex digits}"` unless `thread_id` is
    given. With a checkpointer, a `thread_id` that holds an unfinished run of the same
    task resumes it, and one that holds a finished run returns its stored result.
    `max_steps=0` means `AGENTIC_LOOP_MAX_STEPS`, else 10. `on_progress(description,
    step_num, total_steps)` (sync or async) is called as each step ends, and
    `broadcaster.broadcast(event, data)` gets every progress event; neither can change
    or fail the run. The model defaults to `AGENTIC_LOOP_MODEL`, else `auto` (see
    `agentic_loop.models.resolve_spec`).
    """
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"task must be non-empty text, got {task!r}")
    if max_steps < 0:
        raise ValueError(f"max_steps must be 0 (the default) or more, got {max_steps}")
    graph = create_agentic_loop(
        model if model is not None else load_model(model_spec_from_env()),
        checkpointer=checkpointer,
    )
    config: RunnableConfig = {
        "configurable": {"thread_id": thread_id or f"{session_id}-{uuid.uuid4().hex[:8]}"}
    }
    graph_input: dict[str, Any] | None = {"task": task, "max_steps": max_steps}
    if checkpointer is not None and thread_id is not None:
        stored = await stored_run(graph, config)
        if stored is not None:
            if stored.get("task") != task:
                raise ValueError(
                    f"thread {thread_id!r} holds a run of another task ({stored.get('task')!r}); "
                    "pass a new thread_id, or the same task to resume it"
                )
            if "result" in stored:
                return AgenticResult.model_validate(stored["result"])
            graph_input = None  # carry on from the last stored node
    return await stream_run(
        graph, graph_input, config, ProgressRelay(on_progress, broadcaster), durability
    )


async def stored_run(graph: CompiledStateGraph, config: RunnableConfig) -> dict[str, Any] | None:
    """The stored state of a thread: None if it has no run, with "result" once finished."""
    snapshot = await graph.aget_state(config)
    if not snapshot.values:
        return None
    values = dict(snapshot.values)
    if snapshot.next:
        values.pop("result", None)  # a result from an earlier task on the same thread
    return values


async def stream_run(
    graph: CompiledStateGraph,
    graph_input: dict[str, Any] | None,
    config: RunnableConfig,
    relay: ProgressRelay,
    durability: Durability = "sync",
) -> AgenticResult:
    """Run (or with `graph_input=None`, resume) the graph, relaying progress as it streams."""
    result: AgenticResult | None = None
    async for mode, chunk in graph.astream(
        graph_input,
        config,
        stream_mode=["custom", "updates"],
        durability=durability if graph.checkpointer else None,
    ):
        if mode == "custom" and is_progress_event(chunk):
            await relay.deliver(cast(ProgressEvent, chunk))
        elif mode == "updates" and "summarise" in chunk:
            result = cast(dict[str, Any], chunk)["summarise"]["result"]
    if result is None:
        raise RuntimeError("the run stopped before its summary; resume it with the same thread_id")
    return result
