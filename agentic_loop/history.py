"""A run's stored checkpoints, and the one to fork from to run it again from a chosen step."""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph


@dataclass(frozen=True)
class Checkpoint:
    """One stored checkpoint of a run, as `run_history` lists it."""

    checkpoint_id: str
    parent_id: str | None
    created_at: str
    source: str
    """`input`, `loop`, `fork` (the start of a re-run) or `update`."""
    next: tuple[str, ...]
    """The nodes that run after it; empty once the run has finished."""
    steps_done: int
    on_current_branch: bool
    """Whether it leads to the thread's latest checkpoint (not to an older branch)."""
    config: RunnableConfig
    """Pass as the config with input `None` to run the graph again from here."""


async def run_history(graph: CompiledStateGraph, thread_id: str) -> list[Checkpoint]:
    """Every checkpoint of the thread, newest first, across all its branches.

    `graph` must have the stored run's shape (with its `review` node if it had one).
    """
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    snapshots = [snapshot async for snapshot in graph.aget_state_history(config)]
    parents = {_id(s.config): _id(s.parent_config) if s.parent_config else None for s in snapshots}
    current: set[str] = set()
    cursor = _id(snapshots[0].config) if snapshots else None
    while cursor is not None:
        current.add(cursor)
        cursor = parents.get(cursor)
    return [
        Checkpoint(
            checkpoint_id=_id(s.config),
            parent_id=parents[_id(s.config)],
            created_at=s.created_at or "",
            source=str((s.metadata or {}).get("source", "")),
            next=tuple(s.next),
            steps_done=len(s.values.get("steps", [])),
            on_current_branch=_id(s.config) in current,
            config=s.config,
        )
        for s in snapshots
    ]


async def fork_point(graph: CompiledStateGraph, thread_id: str, step: int) -> Checkpoint:
    """The checkpoint on the run's current branch from which step `step` runs next.

    Running the graph from its `config` keeps steps 1 to `step - 1` and runs `step`
    onwards again, as a new branch: the older checkpoints stay in the history.
    """
    history = await run_history(graph, thread_id)
    if not history:
        raise ValueError(f"no run with thread id {thread_id!r}")
    state = await graph.aget_state(history[0].config)
    plan = state.values.get("plan")
    if plan is None or not plan.steps or plan.error:
        raise ValueError(
            f"run {thread_id!r} has no plan to run again; "
            f"`agentic-loop resume {thread_id}` plans it again"
        )
    if not 1 <= step <= len(plan.steps):
        raise ValueError(f"the step must be between 1 and {len(plan.steps)}, got {step}")
    # Oldest first: a step that calls tools passes through `execute` several times, and
    # only the first of those checkpoints is before the step began.
    for checkpoint in reversed(history):
        if (
            checkpoint.on_current_branch
            and checkpoint.next == ("execute",)
            and checkpoint.steps_done == step - 1
        ):
            return checkpoint
    raise ValueError(f"run {thread_id!r} has not reached step {step}; resume it instead")


async def planning_point(graph: CompiledStateGraph, thread_id: str) -> Checkpoint:
    """The checkpoint on the run's current branch from which it plans: running the graph
    from it plans the task again, as a new branch."""
    for checkpoint in await run_history(graph, thread_id):
        if checkpoint.on_current_branch and checkpoint.next == ("plan",):
            return checkpoint
    raise ValueError(f"no run with thread id {thread_id!r}")


def _id(config: RunnableConfig) -> str:
    return str(config["configurable"]["checkpoint_id"])
