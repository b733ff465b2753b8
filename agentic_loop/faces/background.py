"""Background runs of the loop, and the LangChain tools an outer chat agent drives them with.

`BackgroundRuns(graph).tools()` gives `plan_and_execute`, which starts a run and returns
its id at once, and `run_progress`, `run_result` and `cancel_run`, which take that id.
The registry keeps each run's record in memory until it is forgotten (the service keeps
each run's job while it runs); a forgotten run is read back from the graph's checkpointer,
if it has one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from agentic_loop.core import events
from agentic_loop.core.events import Broadcaster
from agentic_loop.core.options import MOST_STEPS, LoopOptions
from agentic_loop.core.state import AgenticResult
from agentic_loop.models import describe_error
from agentic_loop.runs.records import RunStatus, StoredRun
from agentic_loop.runs.service import Hooks, Outcome, RunRequest, RunService, new_thread_id

logger = logging.getLogger(__name__)

STOP_WAIT_S = 1.0
"""How long the `cancel_run` tool waits for a cancelled run to stop before it answers."""

KNOWN_RUNS_SHOWN = 10
"""How many run ids (the newest) the error for an unknown id lists."""

RunState = RunStatus | Literal["cancelled", "error"]
"""A run's status (`records.RunStatus`, the rule every face shows), or what became of it
in this process: `cancelled`, or `error` if it raised."""


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
        description="`running`; the loop's status once done; `cancelled`; `error` if it raised; "
        "read back from the store: its status there (`interrupted` if it was cancelled or "
        "raised before it finished, `running elsewhere` if another process runs it).",
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
    _raised: BaseException | None = PrivateAttr(default=None)
    """What the run raised, if it did, for `BackgroundRuns.wait` to raise from."""

    @classmethod
    def from_stored(cls, stored: StoredRun) -> RunRecord:
        """The record of a run read back from the store, as far as its latest checkpoint
        tells: whether it was cancelled or raised, and why, was only kept in memory."""
        if stored.steps:
            last_outcome: str | None = events.one_line(stored.steps[-1].result)
        else:  # a run whose planning failed says why in its summary
            last_outcome = stored.result.summary if stored.result else None
        calls = [call for step in stored.steps for call in step.tool_calls]
        return cls(
            run_id=stored.thread_id,
            task=stored.task,
            state=stored.status,
            task_id=stored.result.task_id if stored.result else None,
            steps_planned=len(stored.plan),
            steps_finished=len(stored.steps),
            last_outcome=last_outcome,
            tool_calls=len(calls),
            last_tool=(
                f"{calls[-1].tool} → {calls[-1].status}: {events.one_line(calls[-1].result)}"
                if calls
                else None
            ),
            result=stored.result,
        )

    def update(self, event: str, data: dict[str, Any]) -> None:
        """Take in one progress event (see `agentic_loop.core.events`)."""
        self.last_event = event
        item = events.parse(event, data)
        if item is None:  # not one of the loop's events
            return
        if item["event"] == events.PLAN_READY:
            self.task_id, self.steps_planned = item["data"]["task_id"], item["data"]["total"]
            self.last_outcome = None
        elif item["event"] == events.PLAN_FAILED:
            self.task_id, self.steps_planned = item["data"]["task_id"], 0
            self.last_outcome = item["data"]["error"]
        elif item["event"] == events.STEP_STARTED:
            self.running_steps[item["data"]["step"]] = item["data"]["description"]
            self.steps_planned = item["data"]["total"]
        elif (ended := events.step_outcome(item)) is not None:
            self.running_steps.pop(ended.step, None)
            self.steps_finished += 1
            self.last_outcome = ended.text
        elif item["event"] == events.TOOL_CALLED:
            called = item["data"]
            self.tool_calls += 1
            self.last_tool = f"{called['tool']} {called['args']} (running)"
        elif item["event"] == events.TOOL_RESULT:
            back = item["data"]
            self.last_tool = f"{back['tool']} → {back['status']}: {back['result']}"

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
        default=0,
        ge=0,
        le=MOST_STEPS,
        description="Most steps to run; 0 lets the planner's default apply.",
    )


class _RunArgs(BaseModel):
    run_id: str = Field(description="The id plan_and_execute returned, like bg-1a2b3c4d.")


class BackgroundRuns:
    """Runs of a compiled agentic loop as asyncio tasks on the running loop, through
    `agentic_loop.runs.service.RunService`, plus a record of each for the tools to report.

    The service keeps each run's task while it runs; the registry keeps each run's record
    until it is forgotten: by `forget`, or, with `keep_finished=N`, once N runs that ended
    after it are kept (a run has ended when it finished, was cancelled or raised). A run that
    raises is logged and recorded as `error`, never lost. Each run's id is its thread id,
    so with a checkpointer an interrupted run can be resumed later, and a forgotten run
    is read back from it by `aprogress`, `wait`, `resume` and the tools (what the store
    holds: its steps and result, not why it was cancelled or raised). `broadcaster` gets
    every progress event of every run. `result_wait_s` is how long the `run_result` tool
    waits for a run still going before it answers.
    """

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        *,
        broadcaster: Broadcaster | None = None,
        result_wait_s: float = 0.0,
        keep_finished: int | None = None,
    ) -> None:
        if result_wait_s < 0:
            raise ValueError(f"result_wait_s must be 0 or more, got {result_wait_s}")
        if keep_finished is not None and keep_finished < 0:
            raise ValueError(
                f"keep_finished must be None (keep every run) or 0 or more, got {keep_finished}"
            )
        self.graph = graph
        saver = graph.checkpointer
        self._service = RunService(
            saver if isinstance(saver, BaseCheckpointSaver) else None,
            where="the graph's checkpointer",
            graph=graph,
        )
        self.broadcaster = broadcaster
        self.result_wait_s = result_wait_s
        self.keep_finished = keep_finished
        self._records: dict[str, RunRecord] = {}
        self._ended: dict[str, None] = {}
        """The kept runs that have ended, in the order they ended: the oldest go first."""

    async def start(
        self, task: str, *, max_steps: int = 0, config: RunnableConfig | None = None
    ) -> str:
        """Start a run of `task` in the background and return its id at once. `config`
        (callbacks, tags, metadata) goes to the run's model and tool calls."""
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task must be non-empty text, got {task!r}")
        options = LoopOptions(max_steps=max_steps or None)  # 0 means the default
        run_id = await self._new_id()
        request = RunRequest(task=task, options=options, thread_id=run_id)
        record = RunRecord(run_id=run_id, task=task)
        await self._launch(record, lambda hooks: self._service.start(request, hooks, config=config))
        return run_id

    async def _new_id(self) -> str:
        """An id no kept run has, nor a stored one (a forgotten run, or another process's):
        a new run under a stored thread id would carry on that thread."""
        while True:
            run_id = new_thread_id("bg")
            if run_id not in self._records and await self._load(run_id) is None:
                return run_id

    async def resume(self, run_id: str, *, config: RunnableConfig | None = None) -> None:
        """Carry on a run that was cancelled or raised, from its last stored step (the
        graph needs a checkpointer). Its record shows it running again; a forgotten run
        (or one another process started) is read back from the store and kept again."""
        kept = self._kept(run_id)
        if kept is None:
            record = RunRecord.from_stored(await self._stored(run_id))
            if run_id in self._records:  # resumed by another caller while the store was read
                return await self.resume(run_id, config=config)
        elif self._running(run_id) is not None:
            raise ValueError(f"run {run_id} is still running")
        else:
            record = kept
        if self.graph.checkpointer is None:
            raise ValueError("resuming needs a graph compiled with a checkpointer")
        if record.result is not None:
            raise ValueError(f"run {run_id} has already finished ({record.state})")
        await self._launch(record, lambda hooks: self._service.resume(run_id, hooks, config=config))

    async def _launch(
        self, record: RunRecord, run: Callable[[Hooks], Coroutine[Any, Any, Outcome]]
    ) -> None:
        """Run `run(hooks)` (a start or resume of the service) in the background, its
        progress kept in `record`, which shows it running."""
        hooks = Hooks(progress=_Tracker(record, self.broadcaster))
        job = await self._service.launch(lambda: run(hooks), record.run_id)
        record.state, record.error, record._raised = "running", None, None
        self._ended.pop(record.run_id, None)
        self._records[record.run_id] = record
        job.add_done_callback(lambda done: self._settle(record, done))

    def _settle(self, record: RunRecord, job: asyncio.Task[Outcome]) -> None:
        """Record how the run's `job` ended, once it has."""
        if (
            record.state != "running"
            or not job.done()
            or self._records.get(record.run_id) is not record
        ):
            return  # settled already, still going, or forgotten
        if self._service.background(record.run_id) not in (None, job):
            return  # a job that ended before its run was resumed, calling back after
        record.running_steps.clear()
        if job.cancelled():
            record.state = "cancelled"
            logger.info("Background run %s was cancelled at %s", record.run_id, record.position())
        elif (exc := job.exception()) is not None:
            record.state, record.error, record._raised = "error", describe_error(exc), exc
            logger.error(
                "Background run %s (%r) failed: %s",
                record.run_id,
                record.task,
                record.error,
                exc_info=exc,
            )
        elif (result := job.result().result) is None:
            record.state = "error"
            record.error = (
                "the run waits for a plan review or a tool approval, which background runs "
                "do not answer: build the loop without them"
            )
        else:
            record.result, record.state = result, result.status
        self._ended[record.run_id] = None
        if self.keep_finished is not None:
            while len(self._ended) > self.keep_finished:
                self._drop(next(iter(self._ended)))

    def _drop(self, run_id: str) -> None:
        self._records.pop(run_id, None)
        self._ended.pop(run_id, None)

    def _running(self, run_id: str) -> asyncio.Task[Outcome] | None:
        """The run's task while it runs: the service's background job."""
        job = self._service.background(run_id)
        return job if job is not None and not job.done() else None

    def _kept(self, run_id: str) -> RunRecord | None:
        """The run's record, settled if it has ended; None if it is not kept."""
        record = self._records.get(run_id)
        if record is not None and (job := self._service.background(run_id)) is not None:
            self._settle(record, job)
        return record

    def _entry(self, run_id: str) -> RunRecord:
        if (kept := self._kept(run_id)) is None:
            hint = "; `await aprogress(run_id)` reads a forgotten run from the store"
            raise self._unknown(run_id, hint=hint if self._saver() else "")
        return kept

    def _saver(self) -> BaseCheckpointSaver[Any] | None:
        return self._service.saver

    async def _load(self, run_id: str) -> StoredRun | None:
        return await self._service.find(run_id)

    async def _stored(self, run_id: str) -> StoredRun:
        """The run as the store holds it; `UnknownRun` if there is no store or no such run."""
        if (stored := await self._load(run_id)) is None:
            raise self._unknown(run_id, where=", kept or stored" if self._saver() else "")
        return stored

    def _unknown(self, run_id: str, *, where: str = "", hint: str = "") -> UnknownRun:
        kept = list(self._records)
        known = ", ".join(kept[-KNOWN_RUNS_SHOWN:]) or "none"
        if len(kept) > KNOWN_RUNS_SHOWN:
            known += f" and {len(kept) - KNOWN_RUNS_SHOWN} older ones"
        return UnknownRun(
            f"no background run {run_id!r}{where}; known runs: {known} "
            f"(start() returns a run's id, runs() lists them{hint})"
        )

    def progress(self, run_id: str) -> RunRecord:
        """A snapshot of a kept run's record. `UnknownRun` for a forgotten run:
        `aprogress` reads it from the store."""
        return self._entry(run_id).model_copy()

    async def aprogress(self, run_id: str) -> RunRecord:
        """A snapshot of the run's record, kept or, once forgotten, read back from the
        store (`RunRecord.from_stored`). `UnknownRun` if neither has it."""
        if (kept := self._kept(run_id)) is not None:
            return kept.model_copy()
        return RunRecord.from_stored(await self._stored(run_id))

    def runs(self) -> list[RunRecord]:
        """Snapshots of every kept run, oldest first (forgotten runs are not listed)."""
        return [self.progress(run_id) for run_id in self._records]

    async def wait(self, run_id: str, timeout: float | None = None) -> AgenticResult:
        """The run's result once it ends. Raises `RunFailed` if it raised or was cancelled,
        `TimeoutError` (the run goes on) if it is still running after `timeout` seconds.
        A forgotten run's result is read from the store: `RunFailed` if it has none."""
        if (record := self._kept(run_id)) is None:
            stored = await self._stored(run_id)
            if stored.result is None:
                raise RunFailed(
                    f"run {run_id} has no result in the store ({stored.status}): it stopped "
                    "before finishing; resume() carries it on"
                )
            return stored.result
        if (job := self._running(run_id)) is not None:
            await asyncio.wait({job}, timeout=timeout)  # unlike wait_for, never cancels it
            if not job.done():
                raise TimeoutError(f"run {run_id} is still running ({record.position()})")
            # The record, not a new look-up: with keep_finished the run may be forgotten by now.
            self._settle(record, job)
        if record.state == "cancelled":
            raise RunFailed(f"run {run_id} was cancelled ({record.position()})")
        if record.state == "error":
            raise RunFailed(f"run {run_id} failed: {record.error}") from record._raised
        assert record.result is not None
        return record.result

    def cancel(self, run_id: str) -> bool:
        """Ask a running run to stop; False if it had already ended. `UnknownRun` for a
        run that is not kept (a forgotten run has ended)."""
        self._entry(run_id)
        return self._service.cancel(run_id)

    def forget(self, run_id: str) -> None:
        """Drop an ended run's record and task; a graph's checkpointer still has the run.
        Refuses (`ValueError`) a run still going: `cancel` it first, or wait for it."""
        self._entry(run_id)
        if self._running(run_id) is not None:
            raise ValueError(f"run {run_id} is still running; cancel it before forgetting it")
        self._drop(run_id)

    async def aclose(self) -> None:
        """Cancel every run still going and wait for them to stop."""
        await self._service.aclose()

    def tools(self) -> list[BaseTool]:
        """`plan_and_execute`, `run_progress`, `run_result` and `cancel_run`, for a chat agent."""

        async def plan_and_execute(task: str, config: RunnableConfig, max_steps: int = 0) -> str:
            run_id = await self.start(task, max_steps=max_steps, config=traced(config))
            return (
                f"Started background run {run_id}: it plans the task and carries out its "
                f"steps in the background. Call run_progress with run_id {run_id!r} to "
                "follow it, run_result for the outcome, cancel_run to stop it."
            )

        async def run_progress(run_id: str) -> str:
            return _progress_text(await self.aprogress(run_id))

        async def run_result(run_id: str) -> str:
            if self.result_wait_s and (job := self._running(run_id)) is not None:
                await asyncio.wait({job}, timeout=self.result_wait_s)
            return _result_text(await self.aprogress(run_id))

        async def cancel_run(run_id: str) -> str:
            record, job = self._kept(run_id), self._running(run_id)
            if record is None or job is None or not self.cancel(run_id):
                shown = record or await self.aprogress(run_id)
                return f"Run {run_id} had already ended ({shown.state})."
            await asyncio.wait({job}, timeout=STOP_WAIT_S)
            self._settle(record, job)
            return f"Run {run_id} is cancelled ({record.position()})."

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


def traced(config: RunnableConfig) -> RunnableConfig:
    """What a background run takes of the tool call's config: its callbacks and tags, so
    that the outer agent's tracing sees the run's model and tool calls. Not the outer
    graph's `configurable` or metadata (its thread, checkpoint namespace, step), which
    belong to that graph's run, not to this one's."""
    passed: RunnableConfig = {}
    if "callbacks" in config:
        passed["callbacks"] = config["callbacks"]
    if "tags" in config:
        passed["tags"] = config["tags"]
    return passed


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
            f"  tool {call.tool} {events.one_line(json.dumps(call.args))} → "
            f"{call.status}: {events.one_line(call.result)}"
            for call in step.tool_calls
        ]
    if record.result.answer:
        lines.append(f"Answer: {record.result.answer}")
    return "\n".join(lines)
