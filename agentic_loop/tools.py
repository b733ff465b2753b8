"""Background runs of the loop, and the LangChain tools an outer chat agent drives them with.

`BackgroundRuns(graph).tools()` gives `plan_and_execute`, which starts a run and returns
its id at once, and `run_progress`, `run_result` and `cancel_run`, which take that id.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field, ValidationError

from agentic_loop import events
from agentic_loop.events import Broadcaster, ProgressRelay
from agentic_loop.models import describe_error
from agentic_loop.runner import stream_run, with_thread
from agentic_loop.state import AgenticResult

logger = logging.getLogger(__name__)

STOP_WAIT_S = 1.0
"""How long the `cancel_run` tool waits for a cancelled run to stop before it answers."""

RunState = Literal["running", "completed", "partial", "failed", "cancelled", "error"]


class UnknownRun(LookupError):
    """No run with that id is kept (it never existed, or was forgotten)."""


class RunFailed(RuntimeError):
    """A background run raised or was cancelled instead of finishing."""


class RunRecord(BaseModel):
    """What is known of one background run, kept up to date from its progress events."""

    run_id: str = Field(description="The run's id, also its checkpointer thread id.")
    task: str
    state: RunState = Field(
        default="running",
        description="`running`; the loop's status once done; `cancelled`; `error` if it raised.",
    )
    task_id: str | None = Field(default=None, description="The loop's own id for the run.")
    steps_planned: int = 0
    steps_finished: int = Field(default=0, description="Steps ended so far, skipped ones too.")
    running_steps: dict[int, str] = Field(
        default_factory=dict, description="The steps in progress: number → description."
    )
    last_event: str | None = Field(default=None, description="Name of the latest event.")
    last_outcome: str | None = Field(
        default=None, description="Preview of the latest step's result, or why it failed."
    )
    tool_calls: int = Field(default=0, description="Tool calls made so far, in all steps.")
    last_tool: str | None = Field(
        default=None, description="The latest tool call: `name → status: result preview`."
    )
    result: AgenticResult | None = None
    error: str | None = Field(default=None, description="One line: why the run raised.")

    def update(self, event: str, data: dict[str, Any]) -> None:
        """Take in one progress event (see `agentic_loop.events`)."""
        self.last_event = event
        if event in (events.PLAN_READY, events.PLAN_FAILED):
            self.task_id = data["task_id"]
            self.steps_planned = data.get("total", 0)
            self.last_outcome = data.get("error")
        elif event == events.STEP_STARTED:
            self.running_steps[data["step"]] = data["description"]
            self.steps_planned = data["total"]
        elif event in _OUTCOME_KEYS:
            self.running_steps.pop(data["step"], None)
            self.steps_finished += 1
            self.last_outcome = data[_OUTCOME_KEYS[event]]
        elif event == events.TOOL_CALLED:
            self.tool_calls += 1
            self.last_tool = f"{data['tool']} {data['args']} (running)"
        elif event == events.TOOL_RESULT:
            self.last_tool = f"{data['tool']} → {data['status']}: {data['result']}"

    @property
    def current_step(self) -> int | None:
        """The first step in progress, if any."""
        return min(self.running_steps, default=None)

    def position(self) -> str:
        """`step 3/5`, `steps 2, 3/5`, `planning`, or `2/5 steps finished`."""
        if self.running_steps:
            numbers = ", ".join(str(n) for n in sorted(self.running_steps))
            label = "step" if len(self.running_steps) == 1 else "steps"
            return f"{label} {numbers}/{self.steps_planned}"
        if self.state == "running" and self.last_event is None:
            return "planning"
        return f"{self.steps_finished}/{self.steps_planned} steps finished"


_OUTCOME_KEYS = {
    events.STEP_COMPLETE: "result",
    events.STEP_ADAPTED: "adaptation",
    events.STEP_FAILED: "error",
    events.STEP_SKIPPED: "reason",
}
"""Where each step-ending event carries the step's outcome."""


class _Tracker:
    """The broadcaster a run's relay feeds: updates the record, then passes the event on."""

    def __init__(self, record: RunRecord, forward: Broadcaster | None) -> None:
        self.record = record
        self.forward = forward

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        self.record.update(event, data)
        if self.forward is not None:
            await self.forward.broadcast(event, data)


class _StartArgs(BaseModel):
    task: str = Field(description="The whole task in plain words, with everything it needs.")
    max_steps: int = Field(
        default=0, ge=0, description="Most steps to run; 0 lets the planner's default apply."
    )


class _RunArgs(BaseModel):
    run_id: str = Field(description="The id plan_and_execute returned, like bg-1a2b3c4d.")


class BackgroundRuns:
    """Runs of a compiled agentic loop as asyncio tasks on the running loop.

    The registry keeps a strong reference to every run's task and record until
    `forget`; a run that raises is logged and recorded as `error`, never lost. Each
    run's id is its thread id, so with a checkpointer an interrupted run can be resumed
    later (`run_agentic_loop(task, thread_id=run_id, checkpointer=...)`). `broadcaster`
    gets every progress event of every run. `result_wait_s` is how long the
    `run_result` tool waits for a run still going before it answers.
    """

    def __init__(
        self,
        graph: CompiledStateGraph,
        *,
        broadcaster: Broadcaster | None = None,
        result_wait_s: float = 0.0,
    ) -> None:
        if result_wait_s < 0:
            raise ValueError(f"result_wait_s must be 0 or more, got {result_wait_s}")
        self.graph = graph
        self.broadcaster = broadcaster
        self.result_wait_s = result_wait_s
        self._records: dict[str, RunRecord] = {}
        self._tasks: dict[str, asyncio.Task[AgenticResult]] = {}

    async def start(
        self, task: str, *, max_steps: int = 0, config: RunnableConfig | None = None
    ) -> str:
        """Start a run of `task` in the background and return its id at once. `config`
        (callbacks, tags, metadata) goes to the run's model and tool calls."""
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be non-empty text, got {task!r}")
        if max_steps < 0:
            raise ValueError(f"max_steps must be 0 (the default) or more, got {max_steps}")
        run_id = f"bg-{uuid.uuid4().hex[:8]}"
        while run_id in self._records:
            run_id = f"bg-{uuid.uuid4().hex[:8]}"
        record = RunRecord(run_id=run_id, task=task)
        self._launch(record, {"task": task, "max_steps": max_steps}, with_thread(config, run_id))
        return run_id

    async def resume(self, run_id: str, *, config: RunnableConfig | None = None) -> None:
        """Carry on a run that was cancelled or raised, from its last stored step (the
        graph needs a checkpointer). Its record shows it running again."""
        record, job = self._entry(run_id)
        if not job.done():
            raise ValueError(f"run {run_id} is still running")
        if self.graph.checkpointer is None:
            raise ValueError("resuming needs a graph compiled with a checkpointer")
        if record.result is not None:
            raise ValueError(f"run {run_id} has already finished ({record.state})")
        record.state, record.error = "running", None
        self._launch(record, None, with_thread(config, run_id))

    def _launch(self, record: RunRecord, graph_input: Any, config: RunnableConfig) -> None:
        relay = ProgressRelay(broadcaster=_Tracker(record, self.broadcaster))
        run = stream_run(self.graph, graph_input, config, relay, durability="sync")
        # A fresh context: the run outlives its caller (often a tool call inside another
        # graph) and must not inherit that caller's run config, namespace or callbacks
        # (those it should have come through `config`).
        job = asyncio.create_task(run, name=record.run_id, context=contextvars.Context())
        self._records[record.run_id], self._tasks[record.run_id] = record, job
        job.add_done_callback(lambda done: self._settle(record, done))

    def _settle(self, record: RunRecord, job: asyncio.Task[AgenticResult]) -> None:
        if record.state != "running" or not job.done():
            return
        record.running_steps.clear()
        if job.cancelled():
            record.state = "cancelled"
            logger.info("Background run %s was cancelled at %s", record.run_id, record.position())
        elif (exc := job.exception()) is not None:
            record.state, record.error = "error", describe_error(exc)
            logger.error(
                "Background run %s (%r) failed: %s",
                record.run_id,
                record.task,
                record.error,
                exc_info=exc,
            )
        else:
            record.result = job.result()
            record.state = record.result.status

    def _entry(self, run_id: str) -> tuple[RunRecord, asyncio.Task[AgenticResult]]:
        if run_id not in self._records:
            known = ", ".join(self._records) or "none"
            raise UnknownRun(
                f"no background run {run_id!r}; known runs: {known} "
                "(start() returns a run's id, runs() lists them)"
            )
        record, job = self._records[run_id], self._tasks[run_id]
        self._settle(record, job)
        return record, job

    def progress(self, run_id: str) -> RunRecord:
        """A snapshot of the run's record."""
        return self._entry(run_id)[0].model_copy()

    def runs(self) -> list[RunRecord]:
        """Snapshots of every kept run, oldest first."""
        return [self.progress(run_id) for run_id in self._records]

    async def wait(self, run_id: str, timeout: float | None = None) -> AgenticResult:
        """The run's result once it ends. Raises `RunFailed` if it raised or was cancelled,
        `TimeoutError` (the run goes on) if it is still running after `timeout` seconds."""
        record, job = self._entry(run_id)
        if not job.done():
            await asyncio.wait({job}, timeout=timeout)  # unlike wait_for, never cancels it
            if not job.done():
                raise TimeoutError(f"run {run_id} is still running ({record.position()})")
        record, job = self._entry(run_id)
        if record.state == "cancelled":
            raise RunFailed(f"run {run_id} was cancelled ({record.position()})")
        if record.state == "error":
            raise RunFailed(f"run {run_id} failed: {record.error}") from job.exception()
        assert record.result is not None
        return record.result

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop; False if it had already ended."""
        _, job = self._entry(run_id)
        return not job.done() and job.cancel()

    def forget(self, run_id: str) -> None:
        """Drop an ended run's record and task."""
        _, job = self._entry(run_id)
        if not job.done():
            raise ValueError(f"run {run_id} is still running; cancel it before forgetting it")
        del self._records[run_id], self._tasks[run_id]

    async def aclose(self) -> None:
        """Cancel every run still going and wait for them to stop."""
        running = [job for job in self._tasks.values() if not job.done()]
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def tools(self) -> list[BaseTool]:
        """`plan_and_execute`, `run_progress`, `run_result` and `cancel_run`, for a chat agent."""

        async def plan_and_execute(task: str, max_steps: int = 0) -> str:
            run_id = await self.start(task, max_steps=max_steps)
            return (
                f"Started background run {run_id}: it plans the task and carries out its "
                f"steps in the background. Call run_progress with run_id {run_id!r} to "
                "follow it, run_result for the outcome, cancel_run to stop it."
            )

        async def run_progress(run_id: str) -> str:
            return _progress_text(self.progress(run_id))

        async def run_result(run_id: str) -> str:
            _, job = self._entry(run_id)
            if self.result_wait_s and not job.done():
                await asyncio.wait({job}, timeout=self.result_wait_s)
            return _result_text(self.progress(run_id))

        async def cancel_run(run_id: str) -> str:
            if not self.cancel(run_id):
                return f"Run {run_id} had already ended ({self.progress(run_id).state})."
            await asyncio.wait({self._tasks[run_id]}, timeout=STOP_WAIT_S)
            return f"Run {run_id} is cancelled ({self.progress(run_id).position()})."

        specs: list[tuple[Callable[..., Awaitable[str]], type[BaseModel], str]] = [
            (
                plan_and_execute,
                _StartArgs,
                "Carry out a task that needs 3 or more sequential steps (for example: find, "
                "then compare, then write up). A planner splits it into steps and runs them "
                "one by one in the background. Returns at once with the run's id; then use "
                "run_progress and run_result. Answer simpler requests directly instead.",
            ),
            (
                run_progress,
                _RunArgs,
                "How a background run is going: its state, the step it is on, steps "
                "finished and the latest step's result or error.",
            ),
            (
                run_result,
                _RunArgs,
                "The outcome of a background run: summary, status and each step's result "
                "once it has ended, or which step it is on if it is still running.",
            ),
            (cancel_run, _RunArgs, "Stop a background run that is still going."),
        ]
        return [
            StructuredTool.from_function(
                coroutine=_as_tool_errors(function),
                name=function.__name__,
                description=description,
                args_schema=schema,
                handle_tool_error=True,
                handle_validation_error=_bad_arguments,
            )
            for function, schema, description in specs
        ]


def _as_tool_errors(function: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
    """`function` with a bad run id or argument raised as a ToolException, which the tool
    hands to the model as text."""

    @wraps(function)
    async def wrapper(**kwargs: Any) -> str:
        try:
            return await function(**kwargs)
        except (UnknownRun, ValueError) as exc:
            raise ToolException(f"{_message(exc)}. Fix the arguments and call again.") from exc

    return wrapper


def _message(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:]


def _bad_arguments(error: Exception) -> str:
    if isinstance(error, ValidationError):
        details = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
    else:
        details = str(error)
    return f"Invalid arguments ({details}). Fix them and call again."


def _progress_text(record: RunRecord) -> str:
    text = f"Run {record.run_id}: {record.state}, {record.position()}"
    if record.running_steps:
        doing = "; ".join(record.running_steps[n] for n in sorted(record.running_steps))
        text += f": {doing} ({record.steps_finished} of {record.steps_planned} steps finished)"
    text += "."
    if record.tool_calls:
        text += f"\nTool calls so far: {record.tool_calls}; latest: {record.last_tool}"
    if record.error:
        text += f"\nError: {record.error}"
    elif record.last_outcome:
        text += f"\nLatest result: {events.one_line(record.last_outcome)}"
    return text


def _result_text(record: RunRecord) -> str:
    if record.state == "running":
        return (
            f"Run {record.run_id} is still running ({record.position()}); "
            "call run_result again later."
        )
    if record.result is None:
        reason = f": {record.error}" if record.error else ""
        return f"Run {record.run_id} ended without a result ({record.state}{reason})."
    lines = [f"Run {record.run_id} {record.result.status}: {record.result.summary}"]
    for step in record.result.steps:
        lines.append(
            f"Step {step.step_num} [{step.status}] {step.description}: "
            f"{events.one_line(step.result)}"
        )
        lines += [
            f"  tool {call.tool} {events.one_line(json.dumps(call.args), 100)} → "
            f"{call.status}: {events.one_line(call.result, 100)}"
            for call in step.tool_calls
        ]
    if record.result.answer:
        lines.append(f"Answer: {record.result.answer}")
    return "\n".join(lines)
