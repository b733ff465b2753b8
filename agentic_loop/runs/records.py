"""Runs as the store holds them (`StoredRun`, `load_run`, `list_runs`), and the one rule
for a run's status (`StoredRun.status`) that every face shows: the CLI's `runs` and
`show`, the run picture, the web pages and their API, the background tools."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.core import conversation, older_runs
from agentic_loop.core.dependencies import ready_steps
from agentic_loop.core.options import LoopOptions
from agentic_loop.core.state import (
    AgenticResult,
    AgenticStep,
    Answer,
    Plan,
    PlanVersion,
    RunningStep,
)
from agentic_loop.runs.store import ALLOWED_TYPES, UnreadableRun, is_postgres, postgres_connection

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from agentic_loop.runs.leases import Holder

RunStatus = Literal[
    "completed",
    "partial",
    "failed",
    "running",
    "running elsewhere",
    "awaiting review",
    "awaiting approval",
    "interrupted",
    "unreadable",
]
"""What a run is doing: finished (`completed`, `partial`, `failed`); run by this process
(`running`) or by another that holds its lease (`running elsewhere`); stopped waiting for
an answer (`awaiting review`, `awaiting approval`); stopped, to be resumed
(`interrupted`); or not readable (`unreadable`)."""

LIVE: tuple[RunStatus, ...] = ("running", "running elsewhere")

StepStatus = Literal["completed", "adapted", "failed", "skipped", "running", "pending", "not run"]
"""A planned step: how it ended; `running` while a live run has it in progress;
`pending` until it runs; `not run` in a run that finished without it."""


@dataclass(frozen=True)
class StoredRun:
    """A run as its latest checkpoint holds it, and who runs it now."""

    thread_id: str
    task: str
    steps: list[AgenticStep]
    """The steps that ended (or were skipped), by number."""
    plan: list[str]
    updated_at: str
    result: AgenticResult | None
    options: LoopOptions
    """What it was run with (its model among them), as recorded with it."""
    plan_versions: list[PlanVersion]
    """The plan as first made, then each revision replanning made."""
    waits_for: list[list[int]] = field(default_factory=list)
    """For each planned step, the steps it waits for (the one before, in a plan that runs
    in order)."""
    waiting: Literal["review", "approval"] | None = None
    """What it stopped to wait for, if it did: a plan review or a tool approval."""
    in_flight: tuple[int, ...] = ()
    """The steps its checkpoint has in progress."""
    readable: bool = True
    here: bool = False
    """Whether this process runs it now (set by the service that runs it)."""
    holder: Holder | None = None
    """Another process that holds its lease and runs it now, if one does."""

    @property
    def model(self) -> str | None:
        """The model spec it ran with, if it recorded one."""
        return self.options.model

    @property
    def status(self) -> RunStatus:
        """The one rule for what the run is doing (see `RunStatus`)."""
        if not self.readable:
            return "unreadable"
        if self.result is not None:
            return self.result.status
        if self.waiting is not None:
            return "awaiting review" if self.waiting == "review" else "awaiting approval"
        if self.here:
            return "running"
        return "running elsewhere" if self.holder is not None else "interrupted"

    def step_status(self, number: int) -> StepStatus:
        """What became of planned step `number` (see `StepStatus`)."""
        for step in self.steps:
            if step.step_num == number:
                return step.status
        if number in self.in_flight and self.status in LIVE:
            return "running"
        return "not run" if self.result is not None else "pending"

    @property
    def steps_done(self) -> int:
        """How many steps ran to an end (completed, adapted or failed; not skipped)."""
        return sum(step.status != "skipped" for step in self.steps)

    def seen_running(self, *, here: bool, holder: Holder | None) -> StoredRun:
        """The run as it stands now that who runs it is known."""
        return dataclasses.replace(self, here=here, holder=None if here else holder)


async def load_run(saver: BaseCheckpointSaver[Any], thread_id: str) -> StoredRun | None:
    """The run stored under `thread_id` in a checkpointer (a store from `open_store`, an
    `InMemorySaver`, ...), or None if there is none. Raises `UnreadableRun` if its latest
    checkpoint cannot be read."""
    # A saver outside a compiled graph has no allowlist for the run's types under strict mode.
    try:
        found = await saver.with_allowlist(ALLOWED_TYPES).aget_tuple(
            {"configurable": {"thread_id": thread_id}}
        )
    except UnreadableRun as exc:
        raise UnreadableRun(f"run {thread_id!r} cannot be read: {exc}") from exc
    if found is None:
        return None
    values: dict[str, Any] = found.checkpoint["channel_values"]
    if misfit := _misfit(values):
        raise UnreadableRun(
            f"run {thread_id!r} cannot be read: {misfit} (written by another program, or "
            "another version of agentic-loop)"
        )
    plan: Plan | None = values.get("plan")
    result = values.get("result")
    if not isinstance(result, AgenticResult) or plan is None or result.task_id != plan.task_id:
        result = None  # unfinished, or the result of an earlier task on this thread
    metadata = cast(dict[str, Any], found.metadata)
    options = LoopOptions.from_metadata(metadata)
    review_plan = older_runs.review_requested(plan, options)
    waiting: Literal["review", "approval"] | None = None
    if result is None and review_plan and plan and plan.review is None and not plan.error:
        waiting = "review"
    elif result is None and _waits_for_approval(values, options.approve_tools):
        waiting = "approval"
    elif result is None:
        waiting = _asked_in_a_node(found.pending_writes)
    return StoredRun(
        thread_id=thread_id,
        task=values.get("task", ""),
        steps=sorted(values.get("steps", []), key=lambda step: step.step_num),
        plan=plan.steps if plan else [],
        updated_at=found.checkpoint["ts"],
        result=result,
        options=options,
        plan_versions=plan.all_versions() if plan else [],
        waits_for=plan.dependencies() if plan else [],
        waiting=waiting,
        in_flight=_in_flight(values, plan, options) if result is None and plan else (),
    )


def _in_flight(values: dict[str, Any], plan: Plan, options: LoopOptions) -> tuple[int, ...]:
    """The steps in progress: those the checkpoint has started, and those the scheduler
    starts next by its own rule (whose first model call is under way before the step
    writes anything)."""
    started = {int(key) for key in values.get("running", {})}
    finished = {step.step_num for step in values.get("steps", [])}
    room = max(0, options.max_parallel - len(started))
    starting = ready_steps(plan.dependencies(), finished, started)[:room]
    return tuple(sorted(started | set(starting)))


_CHANNEL_TYPES: dict[str, tuple[type, type | None]] = {
    "task": (str, None),
    "plan": (Plan, None),
    "answer": (Answer, None),
    "result": (AgenticResult, None),
    "steps": (AgenticStep, list),
    "messages": (BaseMessage, list),
    "running": (RunningStep, dict),
}
"""The type of each channel the run's readers use, and of the list or dict holding them."""


def _misfit(values: dict[str, Any]) -> str | None:
    """Which of a checkpoint's values is not of the run's types, if one is: a type outside
    the allow-list, or one whose fields no longer fit its class, comes back as raw data."""
    for channel, (kind, holder) in _CHANNEL_TYPES.items():
        value = values.get(channel)
        if value is None:
            continue
        if holder is None:
            if not isinstance(value, kind):
                return f"its {channel} is stored as {type(value).__name__}, not {kind.__name__}"
            continue
        if not isinstance(value, holder):
            return f"its {channel} is stored as {type(value).__name__}, not {holder.__name__}"
        for item in value.values() if isinstance(value, dict) else cast(list[Any], value):
            if not isinstance(item, kind):
                return (
                    f"one of its {channel} is stored as {type(item).__name__}, not {kind.__name__}"
                )
    return None


INTERRUPT_CHANNEL = "__interrupt__"
"""The channel of a checkpoint's pending writes that holds the questions a node asked with
`interrupt()` (LangGraph's name for it, as in its streams)."""


def _asked_in_a_node(pending_writes: Any) -> Literal["review", "approval"] | None:
    """What a question asked inside a node waits for, which the state cannot show (a tool
    call cut off when the run stopped, asked about again in `call_tool`), or None."""
    for _, channel, value in pending_writes or ():
        if channel != INTERRUPT_CHANNEL:
            continue
        for asked in value if isinstance(value, list | tuple) else [value]:
            payload = getattr(asked, "value", None)
            if isinstance(payload, dict):
                return "review" if payload.get("kind") == "plan_review" else "approval"
    return None


def _waits_for_approval(values: dict[str, Any], approve_tools: bool | tuple[str, ...]) -> bool:
    """Whether a step's last model turn asked for a call that needs approval, not yet
    answered. Messages of a run stored before parallel steps belong to no step."""
    messages = values.get("messages", [])
    steps = [conversation.of_step(messages, int(key)) for key in values.get("running", {})]
    for turns in [*steps, older_runs.untagged(messages)]:
        calls = conversation.pending_tool_calls(turns)
        answered = conversation.reviewed_calls(turns[-1]) if turns else set()
        needs = [
            c
            for c in calls
            if approve_tools is True
            or (not isinstance(approve_tools, bool) and c["name"] in approve_tools)
        ]
        if any(c["id"] not in answered for c in needs):
            return True
    return False


async def list_runs(saver: BaseCheckpointSaver[Any]) -> list[StoredRun]:
    """Every stored run, most recently updated first: in a store from `open_store`, or any
    other checkpointer (an `InMemorySaver`, ...)."""
    runs = []
    for thread_id in await _thread_ids(saver):
        try:
            run = await load_run(saver, thread_id)
        except UnreadableRun:
            run = _unreadable(thread_id)
        if run is not None:
            runs.append(run)
    return runs


_LATEST_THREADS_SQL = (
    "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
    "GROUP BY thread_id ORDER BY MAX(checkpoint_id) DESC"
)


async def _thread_ids(saver: BaseCheckpointSaver[Any]) -> list[str]:
    """The stored threads, the one with the newest checkpoint first (checkpoint ids grow
    with time)."""
    if isinstance(saver, AsyncSqliteSaver):
        async with saver.conn.execute(_LATEST_THREADS_SQL) as cursor:
            return [row[0] async for row in cursor]
    if is_postgres(saver):
        async with postgres_connection(cast("AsyncPostgresSaver", saver)) as conn:
            rows = await (await conn.execute(_LATEST_THREADS_SQL)).fetchall()
            return [row["thread_id"] for row in rows]
    latest: dict[str, str] = {}
    async for found in saver.alist(None):
        configurable = found.config["configurable"]
        if configurable.get("checkpoint_ns", ""):
            continue
        thread_id, checkpoint_id = configurable["thread_id"], configurable["checkpoint_id"]
        latest[thread_id] = max(latest.get(thread_id, ""), checkpoint_id)
    return sorted(latest, key=lambda thread_id: latest[thread_id], reverse=True)


def _unreadable(thread_id: str) -> StoredRun:
    """A run listed by its thread id alone, as its checkpoint cannot be read."""
    return StoredRun(
        thread_id=thread_id,
        task="",
        steps=[],
        plan=[],
        updated_at="",
        result=None,
        options=LoopOptions(),
        plan_versions=[],
        readable=False,
    )
