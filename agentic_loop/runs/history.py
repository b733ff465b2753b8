"""A run's stored checkpoints, and the branches that run it again from a chosen step or
from planning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite, StateSnapshot

from agentic_loop.core.conversation import of_step, removals


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


async def run_history(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str
) -> list[Checkpoint]:
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


async def fork_from_step(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str, step: int
) -> Checkpoint:
    """A new branch of the run from which steps `step` onwards run again: it grows from
    the last checkpoint before any of them started, holds every step before `step` as
    the run last recorded it, and leads to `schedule`. Run the graph from its `config`;
    the older checkpoints stay in the history."""
    history = await run_history(graph, thread_id)
    if not history:
        raise ValueError(f"no run with thread id {thread_id!r}")
    latest = (await graph.aget_state(history[0].config)).values
    _check_reached(latest, thread_id, step)
    base = await _last_before(graph, history, thread_id, step)
    await graph.aupdate_state(
        base.config, _branch_update(latest, base.values, step), as_node="review"
    )
    return (await run_history(graph, thread_id))[0]


def _check_reached(values: dict[str, Any], thread_id: str, step: int) -> None:
    """A ValueError, saying why, unless the run's plan has step `step` and the run has
    reached it: the step ended or is in progress, or the steps it depends on ended."""
    plan = values.get("plan")
    if plan is None or not plan.steps or plan.error:
        raise ValueError(
            f"run {thread_id!r} has no plan to run again; "
            f"`agentic-loop resume {thread_id}` plans it again"
        )
    if not 1 <= step <= len(plan.steps):
        raise ValueError(f"the step must be between 1 and {len(plan.steps)}, got {step}")
    recorded = {s.step_num for s in values.get("steps", [])}
    reached = step in recorded or str(step) in values.get("running", {})
    if not (reached or set(plan.dependencies()[step - 1]) <= recorded):
        raise ValueError(f"run {thread_id!r} has not reached step {step}; resume it instead")


async def _last_before(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    history: list[Checkpoint],
    thread_id: str,
    step: int,
) -> StateSnapshot:
    """The newest checkpoint on the current branch that leads to `schedule` before any
    step from `step` onwards started."""
    for checkpoint in history:
        if checkpoint.on_current_branch and checkpoint.next == ("schedule",):
            base = await graph.aget_state(checkpoint.config)
            if all(n < step for n in _started(base.values)):
                return base
    raise ValueError(f"run {thread_id!r} has no checkpoint before step {step} began")


def _started(values: dict[str, Any]) -> set[int]:
    """The steps that ended or are in progress."""
    return {s.step_num for s in values.get("steps", [])} | {
        int(key) for key in values.get("running", {})
    }


def _branch_update(latest: dict[str, Any], base: dict[str, Any], step: int) -> dict[str, Any]:
    """What the branch writes over `base`: the steps before `step` as the run last
    recorded them, the steps `base` has in progress that are not among them (with their
    conversations, every other message removed), and no answer or spent budget."""
    kept = [s for s in latest.get("steps", []) if s.step_num < step]
    done = {s.step_num for s in kept}
    running = {key: run for key, run in base.get("running", {}).items() if int(key) not in done}
    messages = base.get("messages", [])
    stale = [m for m in messages if not any(m in of_step(messages, int(key)) for key in running)]
    return {
        "steps": Overwrite(kept),
        "running": Overwrite(running),
        "messages": removals(stale),
        "answer": None,
        "budget_spent": None,
    }


async def planning_point(
    graph: CompiledStateGraph[Any, Any, Any, Any], thread_id: str
) -> Checkpoint:
    """The checkpoint on the run's current branch from which it plans: running the graph
    from it plans the task again, as a new branch."""
    for checkpoint in await run_history(graph, thread_id):
        if checkpoint.on_current_branch and checkpoint.next == ("plan",):
            return checkpoint
    raise ValueError(f"no run with thread id {thread_id!r}")


def _id(config: RunnableConfig) -> str:
    return str(config["configurable"]["checkpoint_id"])
