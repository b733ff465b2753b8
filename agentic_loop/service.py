"""Runs over a run store: start, resume, re-run from a step, cancel, list and read them, and
answer the plan reviews and tool approvals they wait for.

The CLI and the web app are faces of this module: they parse input, render output, and
turn its typed errors (`ServiceError`, and the store's `StoreError`) into their own form.
A run goes in the foreground (`start`, `resume`, `answer`: the caller awaits its end) or
in the background (`launch`: the service keeps the task, `cancel` stops it). A run whose
review or approval has no handler stops there, stored, with `Outcome.waiting` saying what
it waits for; `answer` carries it on.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from agentic_loop.events import Broadcaster, ProgressRelay
from agentic_loop.graph import create_agentic_loop
from agentic_loop.history import Checkpoint, fork_from_step, planning_point, run_history
from agentic_loop.leases import Holder, current_holder, hold_run
from agentic_loop.models import (
    DEFAULT_TIMEOUT_S,
    check_ollama,
    load_model,
    model_spec_from_env,
    resolve_spec,
)
from agentic_loop.nodes.approve_tools import read_approval
from agentic_loop.nodes.review import read_review
from agentic_loop.runner import (
    ApprovalHandler,
    AwaitingAnswer,
    ReviewHandler,
    new_thread_id,
    stream_run,
    with_thread,
)
from agentic_loop.settings import CHARS_PER_TOKEN, DEFAULT_MAX_STEPS, MOST_STEPS, check_whole
from agentic_loop.state import AgenticResult
from agentic_loop.step_tools import ToolSetupError, load_tools
from agentic_loop.storage import (
    RunOptions,
    StoredRun,
    StoreError,
    describe_location,
    is_postgres,
    list_runs,
    load_run,
    open_store,
    store_location,
)

__all__ = [
    "BadAnswer",
    "BadSetup",
    "Hooks",
    "NotWaiting",
    "Outcome",
    "Question",
    "RunActive",
    "RunRequest",
    "RunService",
    "ServiceError",
    "Starting",
    "StoreError",
    "ThreadTaken",
    "UnknownThread",
    "new_thread_id",
]


class ServiceError(Exception):
    """A request the service refuses; the message is one line saying what to do."""


class UnknownThread(ServiceError):
    """No run is stored under the thread id."""

    def __init__(self, thread_id: str, where: str) -> None:
        self.thread_id = thread_id
        super().__init__(
            f"no run with thread id {thread_id!r} in {where}; `agentic-loop runs` lists them"
        )


class ThreadTaken(ServiceError):
    """A new run was asked for on a thread that already holds one."""


class RunActive(ServiceError):
    """The run is already running here."""


class NotWaiting(ServiceError):
    """An answer came for a run that waits for none (or not for that one)."""


class BadAnswer(ServiceError):
    """An answer to a plan review or tool approval that does not fit its question."""


class BadSetup(ServiceError):
    """The model, the tools or a setting of the run cannot be used."""


ModelFactory = Callable[[str, RunOptions], Runnable]
"""Builds the chat model for a model spec (already resolved: `local`, `ollama:NAME`, ...)
and the run's options."""


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A new run: its task and the choices it keeps for its whole life."""

    task: str
    model: str | None = None
    """A model spec; None: `AGENTIC_LOOP_MODEL`, else `auto`."""
    max_steps: int = 0
    """0: `AGENTIC_LOOP_MAX_STEPS`, else the default."""
    review_plan: bool = False
    options: RunOptions = RunOptions()
    approve_all_tools: bool = False
    """Every tool call waits for approval (the tools are known only once loaded)."""
    thread_id: str | None = None
    """None: a new id (`new_thread_id`)."""


@dataclass(frozen=True)
class Starting:
    """What a run is about to run with, told to `Hooks.starting` before its first model call."""

    thread_id: str
    model: str
    tools: list[str]
    rerun_from: int | Literal["planning"] | None
    """A re-run's first step, or "planning" when it plans again; None for a plain run."""


@dataclass
class Hooks:
    """What a front end hears and answers while a run goes."""

    progress: Broadcaster | None = None
    """Gets every progress event (`agentic.*`)."""
    review: ReviewHandler | None = None
    """Answers a plan review; None: the run stops, waiting, and `answer` carries it on."""
    approve: ApprovalHandler | None = None
    """Answers a tool approval; None: as for `review`."""
    starting: Callable[[Starting], Awaitable[None] | None] | None = None


@dataclass(frozen=True)
class Question:
    """A plan review or tool approval a run waits for."""

    id: str
    """The interrupt id: answers are given by it."""
    kind: Literal["plan_review", "tool_approval"]
    request: dict[str, Any]
    """The interrupt's payload: the plan's `steps` and `max_steps`, or the call's `tool`,
    `args` and `step`; `problem` when the last answer could not be read."""


@dataclass(frozen=True)
class Outcome:
    """How a run went in this call: ended with a result, or stopped waiting for answers."""

    thread_id: str
    result: AgenticResult | None
    waiting: list[Question] = field(default_factory=list)
    already_finished: bool = False
    """The run had ended before; nothing ran."""


def default_model_factory(reply_timeout: float) -> ModelFactory:
    """Models from their specs, as `agentic_loop.models.load_model` builds them."""

    def build(spec: str, options: RunOptions) -> Runnable:
        return load_model(spec, timeout_s=reply_timeout, reply_tokens=options.reply_tokens)

    return build


def graph_shape(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The graph over a stand-in model, for graphs that are drawn or read but never run.
    Its step limit is set, so that $AGENTIC_LOOP_MAX_STEPS plays no part."""
    stand_in = RunnableLambda(lambda messages: messages)
    return create_agentic_loop(stand_in, checkpointer=checkpointer, max_steps=DEFAULT_MAX_STEPS)


class RunService:
    """Runs stored in one checkpointer (see `open`)."""

    def __init__(
        self,
        saver: BaseCheckpointSaver | None,
        *,
        where: str,
        model_factory: ModelFactory | None = None,
        reply_timeout: float = DEFAULT_TIMEOUT_S,
        graph: CompiledStateGraph | None = None,
    ) -> None:
        """`where` names the store in messages; `model_factory` builds each run's model
        (default: from its spec, each reply waited for `reply_timeout` seconds). With
        `graph`, every run runs on that compiled loop instead (its model, tools and
        settings; a run's stored model and options play no part), and `saver` should be
        its checkpointer. Without a saver nothing is stored: runs cannot pause or be read."""
        self.saver = saver
        self.where = where
        self._graph = graph
        self._custom_factory = model_factory is not None
        self._model_factory = model_factory or default_model_factory(reply_timeout)
        self._running: set[str] = set()
        self._background: dict[str, asyncio.Task[Outcome]] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        location: str | Path | None = None,
        *,
        read_only: bool = False,
        model_factory: ModelFactory | None = None,
        reply_timeout: float = DEFAULT_TIMEOUT_S,
    ) -> AsyncIterator[RunService]:
        """The service over the store at `location`, a SQLite path or a `postgresql://`
        URL (None: `AGENTIC_LOOP_DB`, else the default; see `storage.store_location`), for
        the length of the `async with`; background runs still going are cancelled at its
        end, and stay stored, to be resumed."""
        location = store_location(location)
        async with open_store(location, read_only=read_only) as saver:
            service = cls(
                saver,
                where=describe_location(location),
                model_factory=model_factory,
                reply_timeout=reply_timeout,
            )
            try:
                yield service
            finally:
                await service.aclose()

    # --- reading ---------------------------------------------------------------------------

    async def runs(self) -> list[StoredRun]:
        """Every stored run, most recently updated first."""
        return [] if self.saver is None else await list_runs(self.saver)

    async def run(self, thread_id: str) -> StoredRun:
        stored = await self.find(thread_id)
        if stored is None:
            raise UnknownThread(thread_id, self.where)
        return stored

    async def find(self, thread_id: str) -> StoredRun | None:
        return None if self.saver is None else await load_run(self.saver, thread_id)

    async def history(self, thread_id: str) -> tuple[StoredRun, list[Checkpoint]]:
        """The run and its checkpoints, newest first, on every branch."""
        stored = await self.run(thread_id)
        return stored, await run_history(self._shape, thread_id)

    async def questions(self, thread_id: str) -> list[Question]:
        """What the run waits for: its pending plan review and tool approvals."""
        if self.saver is None:
            return []
        snapshot = await self._shape.aget_state(with_thread(None, thread_id))
        return [
            Question(
                id=waiting.id,
                kind="tool_approval"
                if waiting.value.get("kind") == "tool_approval"
                else "plan_review",
                request=waiting.value,
            )
            for task in snapshot.tasks
            for waiting in task.interrupts
        ]

    @functools.cached_property
    def _shape(self) -> CompiledStateGraph:
        """The graph over the store, for reading runs and branching them (built once)."""
        return graph_shape(self.saver)

    def is_running(self, thread_id: str) -> bool:
        """Whether this service is running the thread now."""
        return thread_id in self._running

    async def holder(self, thread_id: str) -> Holder | None:
        """Who runs the thread now, in any process sharing the store, if anyone."""
        return await current_holder(self.saver, thread_id) if _has_leases(self.saver) else None

    # --- running in the foreground ---------------------------------------------------------

    async def start(
        self,
        request: RunRequest,
        hooks: Hooks | None = None,
        *,
        config: RunnableConfig | None = None,
    ) -> Outcome:
        """Plan and run a new task to its end, or until it waits for an answer nobody gives.
        `config` (callbacks, tags, metadata) goes to the run's model and tool calls."""
        thread_id = request.thread_id or new_thread_id()
        graph_input = self._check_new(request)
        async with self._hold(thread_id):
            if await self.find(thread_id) is not None:
                raise ThreadTaken(
                    f"thread {thread_id!r} already holds a run; resume it with "
                    f"`agentic-loop resume {thread_id}` or pick another thread id"
                )
            return await self._go(
                thread_id,
                graph_input,
                request.model,
                request.options,
                hooks or Hooks(),
                approve_all=request.approve_all_tools,
                config=config,
            )

    async def resume(
        self,
        thread_id: str,
        hooks: Hooks | None = None,
        *,
        model: str | None = None,
        from_step: int | None = None,
        config: RunnableConfig | None = None,
    ) -> Outcome:
        """Carry on a stopped run from where it stopped, or run it again from step
        `from_step` as a new branch. A run whose planning failed (or whose plan was
        rejected) plans again. A finished run is returned as it is, unless `from_step`."""
        if from_step is not None and not 1 <= from_step <= MOST_STEPS:
            raise BadSetup(f"the step to run again from must be 1 to {MOST_STEPS}, got {from_step}")
        async with self._hold(thread_id):
            stored = await self.run(thread_id)
            from_planning = stored.result is not None and not stored.steps
            if stored.result is not None and not from_planning and from_step is None:
                return Outcome(thread_id, stored.result, already_finished=True)
            return await self._go(
                thread_id,
                None,
                model or stored.model,
                stored.options,
                hooks or Hooks(),
                rerun_from="planning" if from_planning else from_step,
                config=config,
            )

    async def answer(
        self,
        thread_id: str,
        answers: dict[str, Any],
        hooks: Hooks | None = None,
        *,
        model: str | None = None,
    ) -> Outcome:
        """Answer questions the run waits for (by `Question.id`), and carry it on. Each
        answer is checked against its question first: one that does not fit is a
        `BadAnswer` and nothing changes."""
        async with self._hold(thread_id):
            stored = await self.run(thread_id)
            self._check_answers(thread_id, answers, await self.questions(thread_id))
            return await self._go(
                thread_id,
                Command(resume=answers),
                model or stored.model,
                stored.options,
                hooks or Hooks(),
            )

    # --- running in the background ---------------------------------------------------------

    async def launch(
        self, run: Callable[[], Coroutine[Any, Any, Outcome]], thread_id: str
    ) -> asyncio.Task[Outcome]:
        """Run `run()` (a call of `start`, `resume` or `answer` for `thread_id`) as a
        background task the service keeps until it ends; `cancel` stops it. Refuses a
        thread this service runs already."""
        running = self._background.get(thread_id)
        if (running is not None and not running.done()) or thread_id in self._running:
            raise RunActive(f"run {thread_id!r} is running already; wait for it or cancel it")
        # A fresh context: the run outlives its caller (a web request, or a tool call inside
        # another graph) and must not inherit that caller's run config or callbacks.
        job = asyncio.create_task(run(), name=thread_id, context=contextvars.Context())
        self._background[thread_id] = job
        job.add_done_callback(lambda _: self._forget(thread_id, job))
        await asyncio.sleep(0)  # let it take the run, so a second launch is refused
        return job

    def _forget(self, thread_id: str, job: asyncio.Task[Outcome]) -> None:
        if self._background.get(thread_id) is job:
            del self._background[thread_id]

    def background(self, thread_id: str) -> asyncio.Task[Outcome] | None:
        return self._background.get(thread_id)

    def cancel(self, thread_id: str) -> bool:
        """Stop the thread's background run: what it finished stays stored, and it can be
        resumed. False if it runs no background run here."""
        job = self._background.get(thread_id)
        if job is None or job.done():
            return False
        job.cancel()
        return True

    async def aclose(self) -> None:
        """Cancel the background runs still going and wait for them to store what finished."""
        jobs = list(self._background.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    # --- inside ----------------------------------------------------------------------------

    def _check_new(self, request: RunRequest) -> dict[str, Any]:
        if not request.task.strip():
            raise BadSetup("the task is empty; say what to do")
        if request.max_steps:
            try:
                check_whole("max_steps", request.max_steps, 1, MOST_STEPS)
            except ValueError as exc:
                raise BadSetup(str(exc)) from None
        if request.approve_all_tools and not request.options.tools:
            raise BadSetup("approving every tool call needs tools: name some tools to load")
        return {
            "task": request.task,
            "max_steps": request.max_steps,
            "review_plan": request.review_plan,
        }

    @asynccontextmanager
    async def _hold(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread for one run at a time: here, and with a lease in the store
        against other processes (`leases.RunBusy` if one of them runs it)."""
        if thread_id in self._running:
            raise RunActive(f"run {thread_id!r} is running already; wait for it or cancel it")
        self._running.add(thread_id)
        try:
            if _has_leases(self.saver):
                async with hold_run(self.saver, thread_id):
                    yield
            else:
                yield
        finally:
            self._running.discard(thread_id)

    def _check_answers(
        self, thread_id: str, answers: dict[str, Any], questions: list[Question]
    ) -> None:
        if not questions:
            raise NotWaiting(f"run {thread_id!r} waits for no answer")
        if not answers:
            raise BadAnswer("no answer given; answer at least one question")
        asked = {question.id: question for question in questions}
        for question_id, answer in answers.items():
            question = asked.get(question_id)
            if question is None:
                raise NotWaiting(
                    f"run {thread_id!r} does not wait for an answer to {question_id!r}"
                )
            try:
                if question.kind == "plan_review":
                    read_review(answer, question.request["max_steps"])
                else:
                    read_approval(answer)
            except ValueError as exc:
                raise BadAnswer(str(exc)) from None

    async def _go(
        self,
        thread_id: str,
        graph_input: dict[str, Any] | Command | None,
        model: str | None,
        options: RunOptions,
        hooks: Hooks,
        *,
        rerun_from: int | Literal["planning"] | None = None,
        approve_all: bool = False,
        config: RunnableConfig | None = None,
    ) -> Outcome:
        config = with_thread(config, thread_id)
        if rerun_from is not None:  # checked before the model loads
            try:
                point = await (
                    planning_point(self._shape, thread_id)
                    if rerun_from == "planning"
                    else fork_from_step(self._shape, thread_id, rerun_from)
                )
            except ValueError as exc:
                raise BadSetup(str(exc)) from None
            config["configurable"]["checkpoint_id"] = point.checkpoint_id
        if self._graph is not None:
            graph, starting = self._graph, Starting(thread_id, "", [], rerun_from)
        else:
            graph, starting, options = await self._build(model, options, approve_all)
            starting = dataclasses.replace(starting, thread_id=thread_id, rerun_from=rerun_from)
            metadata = {**config.get("metadata", {}), "model": starting.model}
            config["metadata"] = metadata | options.to_metadata()
        if hooks.starting is not None:
            told = hooks.starting(starting)
            if told is not None:
                await told
        relay = ProgressRelay(broadcaster=hooks.progress)
        try:
            result = await stream_run(
                graph, graph_input, config, relay, review=hooks.review, approve=hooks.approve
            )
        except AwaitingAnswer:
            return Outcome(thread_id, None, waiting=await self.questions(thread_id))
        return Outcome(thread_id, result)

    async def _build(
        self, model: str | None, options: RunOptions, approve_all: bool
    ) -> tuple[CompiledStateGraph, Starting, RunOptions]:
        """The loop for a run of `model` (a spec) with `options`, and the options as run."""
        try:
            spec = resolve_spec(model or model_spec_from_env())
            step_tools = await load_tools(options.tools)
            if approve_all:
                every_tool = tuple(tool.name for tool in step_tools)
                options = dataclasses.replace(options, approve_tools=every_tool)
            graph = create_agentic_loop(
                self._model_factory(spec, options),
                checkpointer=self.saver,
                tools=step_tools,
                approve_tools=options.approve_tools,
                max_tool_calls=options.max_tool_calls,
                replan=options.replan,
                max_replans=options.max_replans,
                max_reply_chars=CHARS_PER_TOKEN * options.reply_tokens,
                max_parallel=options.max_parallel,
                step_timeout=options.step_timeout,
                max_seconds=options.max_seconds,
                max_tokens=options.max_tokens,
            )
            if spec.startswith("ollama:") and not self._custom_factory:
                check_ollama(spec.partition(":")[2])  # a run that cannot start is not stored
        except (ToolSetupError, ValueError) as exc:
            raise BadSetup(str(exc)) from None
        return graph, Starting("", spec, [tool.name for tool in step_tools], None), options


def _has_leases(saver: BaseCheckpointSaver | None) -> TypeGuard[BaseCheckpointSaver]:
    """Whether runs in `saver` are held by leases: those of a store from `open_store`.
    Another checkpointer (a user's own, for background runs) is this process's alone."""
    return isinstance(saver, AsyncSqliteSaver) or (saver is not None and is_postgres(saver))
