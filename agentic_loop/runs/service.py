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
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability

from agentic_loop.core.answers import QuestionKind, read_approval, read_review
from agentic_loop.core.events import Broadcaster, OnProgress, ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.older_runs import question_kind
from agentic_loop.core.options import DEFAULT_MAX_STEPS, MOST_STEPS, LoopOptions, ToolSetupError
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticResult
from agentic_loop.models import check_ollama, load_model, model_spec_from_env, resolve_spec
from agentic_loop.runs.call_store import call_store
from agentic_loop.runs.history import Checkpoint, fork_from_step, planning_point, run_history
from agentic_loop.runs.leases import Holder, RunBusy, current_holder, hold_run
from agentic_loop.runs.recordings import (
    NotRecorded,
    Recorder,
    Recording,
    answering,
    model_traits,
    read_entries,
    recordable,
    with_recorder,
)
from agentic_loop.runs.records import StoredRun, list_runs, load_run
from agentic_loop.runs.store import (
    StoreError,
    check_store,
    describe_location,
    is_postgres,
    open_store,
    store_location,
)
from agentic_loop.runs.streaming import (
    ApprovalHandler,
    AwaitingAnswer,
    ReviewHandler,
    check_thread_id,
    new_thread_id,
    stream_run,
    with_thread,
)
from agentic_loop.step_tools.loading import PreparedTools, prepare_tools
from agentic_loop.step_tools.mcp_logs import mcp_log_path

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


LOOPS_KEPT = 32
"""How many compiled loops (one per model, tools and options) a service keeps."""

Graph = CompiledStateGraph[Any, Any, Any, Any]


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


ModelFactory = Callable[[str, LoopOptions], Runnable[Any, Any]]
"""Builds the chat model for a model spec and the run's options. The default factory gets
the spec resolved (`auto` made `local` or `ollama:NAME`); a factory of the caller's own
gets it as the run names it, and nothing probes a model server for it."""


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A new run: its task and the choices it keeps for its whole life."""

    task: str
    options: LoopOptions = LoopOptions()
    """Its model, limits, tools and the rest; recorded with it for every resume."""
    thread_id: str | None = None
    """None: a new id (`new_thread_id`); one given must pass `check_thread_id`."""


@dataclass(frozen=True)
class Starting:
    """What a run is about to run with, told to `Hooks.starting` before its first model call."""

    thread_id: str
    model: str
    """The model spec it runs with; empty when the caller gave a model object that names
    none."""
    tools: list[str]
    rerun_from: int | Literal["planning"] | None
    """A re-run's first step, or "planning" when it plans again; None for a plain run."""
    options: LoopOptions = LoopOptions()
    resumed: bool = False
    """The run was stored before: a resume, a re-run or an answer carrying it on."""
    own: bool = False
    """Resumed with the model and options the run recorded (none overridden)."""
    recorded_model: str | None = None
    """For a resume: the model the run recorded, if any."""


@dataclass
class Hooks:
    """What a front end hears and answers while a run goes."""

    progress: Broadcaster | None = None
    """Gets every progress event (`agentic.*`)."""
    on_progress: OnProgress | None = None
    """Called as each step ends: `on_progress(description, step_num, total_steps)`."""
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
    kind: QuestionKind
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


def default_model_factory(spec: str, options: LoopOptions) -> Runnable[Any, Any]:
    """Models from their specs, as `agentic_loop.models.load_model` builds them."""
    return load_model(spec, timeout_s=options.timeout, reply_tokens=options.max_reply_tokens)


def graph_shape(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph over a stand-in model, for graphs that are drawn or read but never run.
    Its step limit is set, so that $AGENTIC_LOOP_MAX_STEPS plays no part."""
    stand_in = RunnableLambda(lambda messages: messages)
    return create_agentic_loop(stand_in, checkpointer=checkpointer, max_steps=DEFAULT_MAX_STEPS)


_RUNNING: weakref.WeakKeyDictionary[BaseCheckpointSaver[Any], set[str]] = (
    weakref.WeakKeyDictionary()
)
"""The threads each checkpointer's runs run in this process, whichever service runs them:
what a lease cannot see in a checkpointer without one (an `InMemorySaver`)."""


class RunService:
    """Runs stored in one checkpointer (see `open`)."""

    def __init__(
        self,
        saver: BaseCheckpointSaver[Any] | None,
        *,
        where: str,
        model_factory: ModelFactory | None = None,
        graph: CompiledStateGraph[Any, Any, Any, Any] | None = None,
        options: LoopOptions | None = None,
        busy_wait_s: float = 0.0,
        durability: Durability = "sync",
        location: str | Path | None = None,
    ) -> None:
        """`where` names the store in messages; `model_factory` builds each run's model
        (default: from its spec, `default_model_factory`). One compiled loop serves every
        run of the same model, options and tools; a run with MCP servers gets a loop of
        its own, over the sessions its servers start (`_tools_of_run`), their stderr going
        to a log beside the store at `location` (`mcp_log_path`). With `graph`, every run
        runs on that compiled loop instead (its model, tools and settings), and `saver`
        should be its checkpointer; `options`, if given, are what it was built with,
        recorded with each run. Without a saver nothing is stored: runs cannot pause or be
        read.

        A thread runs in one place at a time: a second runner of it is refused at once
        (`leases.RunBusy` naming the holder, or `RunActive` in this process), or with
        `busy_wait_s`, waits that long for it to be free first. `durability` is LangGraph's:
        with "sync" (the default) each step's writes are stored before the next starts."""
        self.saver = saver
        self.where = where
        self._graph = graph
        self._graph_options = options
        self._custom_factory = model_factory is not None
        self._model_factory = model_factory or default_model_factory
        self._busy_wait_s = busy_wait_s
        self._durability = durability
        self._location = location
        self._loops: dict[LoopOptions, _Loop] = {}
        self._started_servers: dict[str, tuple[_Loop, AsyncExitStack, list[BaseTool]]] = {}
        """A new run's MCP servers started before its store was open (`open`), by thread,
        with its loop and tools, for the run to take (`_tools_of_run`)."""
        self._background: dict[str, asyncio.Task[Outcome]] = {}
        self._unstored: set[str] = set()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        location: str | Path | None = None,
        *,
        read_only: bool = False,
        create: bool = True,
        model_factory: ModelFactory | None = None,
        starting: LoopOptions | None = None,
        thread_id: str | None = None,
    ) -> AsyncIterator[RunService]:
        """The service over the store at `location`, a SQLite path or a `postgresql://`
        URL (None: `AGENTIC_LOOP_DB`, else the default; see `store.store_location`), for
        the length of the `async with`; background runs still going are cancelled at its
        end, and stay stored, to be resumed. `read_only` and `create` are `open_store`'s.

        `starting` is the options of a run about to start: the store is checked, then its
        model and tools are made ready (a `BadSetup` if they cannot be), before the store
        is opened, so that a run that cannot start leaves no store behind. With its
        `thread_id`, its MCP servers start then too (one that cannot is a `BadSetup`), and
        the run takes their sessions when it starts on that thread; without, the run
        starts them."""
        location = store_location(location)
        service = cls(
            None,
            where=describe_location(location),
            model_factory=model_factory,
            location=location,
        )
        try:
            if starting is not None:
                await check_store(location)  # a store it could not use is said first
                loop, _ = await service._loop_for(starting)
                if thread_id is not None:
                    await service._start_servers(loop, thread_id)
            async with open_store(location, read_only=read_only, create=create) as saver:
                service.saver = saver  # the loops made ready meanwhile take it on first use
                try:
                    yield service
                finally:
                    await service.aclose()
        finally:
            for _, servers, _ in service._started_servers.values():  # no run took them
                await servers.aclose()

    # --- reading ---------------------------------------------------------------------------

    async def runs(self) -> list[StoredRun]:
        """Every stored run, most recently updated first, with who runs it now."""
        stored = [] if self.saver is None else await list_runs(self.saver)
        return [await self._seen(run) for run in stored]

    async def run(self, thread_id: str) -> StoredRun:
        stored = await self.find(thread_id)
        if stored is None:
            raise UnknownThread(thread_id, self.where)
        return stored

    async def find(self, thread_id: str) -> StoredRun | None:
        """The stored run with who runs it now (its `status`), or None."""
        if self.saver is None:
            return None
        stored = await load_run(self.saver, thread_id)
        return None if stored is None else await self._seen(stored)

    async def _seen(self, stored: StoredRun) -> StoredRun:
        if stored.result is not None or not stored.readable:
            return stored
        here = self.is_running(stored.thread_id)
        holder = None if here else await self.holder(stored.thread_id)
        return stored.seen_running(here=here, holder=holder)

    async def recording(self, thread_id: str) -> Recording:
        """The run's recording (see `runs.recordings`), for `replay` and `--export`;
        `NotRecorded` for a run stored before recordings existed."""
        stored = await self.run(thread_id)
        entries = [] if self.saver is None else await read_entries(self.saver, thread_id)
        if not entries:
            raise NotRecorded(
                f"run {thread_id!r} was stored before runs were recorded: it cannot be replayed"
            )
        return Recording(
            thread_id=thread_id,
            task=stored.task,
            options=dict(stored.options.to_metadata()),
            entries=entries,
            result=None if stored.result is None else stored.result.model_dump(mode="json"),
            status=stored.status,
            model=stored.options.model or "",
        )

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
                kind=question_kind(waiting.value),
                request=waiting.value,
            )
            for task in snapshot.tasks
            for waiting in task.interrupts
        ]

    @functools.cached_property
    def _shape(self) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The graph over the store, for reading runs and branching them (built once)."""
        return graph_shape(self.saver)

    def is_running(self, thread_id: str) -> bool:
        """Whether this process runs the thread now (through any service over this store)."""
        return thread_id in self._running

    @property
    def _running(self) -> set[str]:
        if self.saver is None:  # nothing stored: its runs are this service's alone
            return self._unstored
        return _RUNNING.setdefault(self.saver, set())

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
        graph_input = self._check_new(request, thread_id)
        async with self._hold(thread_id):
            if await self.find(thread_id) is not None:
                raise ThreadTaken(
                    f"thread {thread_id!r} already holds a run; resume it with "
                    f"`agentic-loop resume {thread_id}` or pick another thread id"
                )
            return await self._go(
                thread_id, graph_input, request.options, hooks or Hooks(), config=config
            )

    async def resume(
        self,
        thread_id: str,
        hooks: Hooks | None = None,
        *,
        model: str | None = None,
        timeout: float | None = None,
        from_step: int | None = None,
        config: RunnableConfig | None = None,
    ) -> Outcome:
        """Carry on a stopped run from where it stopped, or run it again from step
        `from_step` as a new branch, with the model and options it recorded (`model` and
        `timeout` change those). A run whose planning failed (or whose plan was rejected)
        plans again. A finished run is returned as it is, unless `from_step`."""
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
                self._resumed_options(stored, model, timeout),
                hooks or Hooks(),
                rerun_from="planning" if from_planning else from_step,
                config=config,
                recorded=stored.options,
            )

    async def answer(
        self,
        thread_id: str,
        answers: dict[str, Any],
        hooks: Hooks | None = None,
        *,
        model: str | None = None,
        timeout: float | None = None,
    ) -> Outcome:
        """Answer questions the run waits for (by `Question.id`), and carry it on. Each
        answer is checked against its question first: one that does not fit is a
        `BadAnswer` and nothing changes."""
        async with self._hold(thread_id):
            stored = await self.run(thread_id)
            asked = await self.questions(thread_id)
            self._check_answers(thread_id, answers, asked)
            return await self._go(
                thread_id,
                Command(resume=answers),
                self._resumed_options(stored, model, timeout),
                hooks or Hooks(),
                recorded=stored.options,
                answered=[(q.request, answers[q.id]) for q in asked if q.id in answers],
            )

    @staticmethod
    def _resumed_options(
        stored: StoredRun, model: str | None, timeout: float | None
    ) -> LoopOptions:
        changes: dict[str, Any] = {}
        if model is not None:
            changes["model"] = model
        if timeout is not None:
            changes["timeout"] = timeout
        try:
            return stored.options.replace(**changes)
        except ValueError as exc:
            raise BadSetup(str(exc)) from None

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

    def _check_new(self, request: RunRequest, thread_id: str) -> dict[str, Any]:
        if not request.task.strip():
            raise BadSetup("the task is empty; say what to do")
        try:
            check_thread_id(thread_id)
        except ValueError as exc:
            raise BadSetup(str(exc)) from None
        options = request.options
        if options.approve_tools and not options.tools and self._graph is None:
            raise BadSetup("approving tool calls needs tools: name some tools to load")
        return {
            "task": request.task,
            "max_steps": options.max_steps or 0,
            "review_plan": options.review_plan,
        }

    @asynccontextmanager
    async def _hold(self, thread_id: str) -> AsyncIterator[None]:
        """Hold the thread for one run at a time: in this process, and with a lease in the
        store against other processes (`leases.RunBusy` if one of them runs it); with
        `busy_wait_s`, wait that long for it to be free."""
        deadline = time.monotonic() + self._busy_wait_s
        async with AsyncExitStack() as held:
            while True:
                try:
                    await held.enter_async_context(self._hold_now(thread_id))
                    break
                except (RunActive, RunBusy):
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(min(0.2, deadline - time.monotonic()))
            yield

    @asynccontextmanager
    async def _hold_now(self, thread_id: str) -> AsyncIterator[None]:
        running = self._running
        if thread_id in running:
            raise RunActive(f"run {thread_id!r} is running already; wait for it or cancel it")
        running.add(thread_id)
        try:
            if _has_leases(self.saver):
                async with hold_run(self.saver, thread_id):
                    yield
            else:
                yield
        finally:
            running.discard(thread_id)

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
                    read_approval(answer, cut_off=bool(question.request.get("cut_off")))
            except ValueError as exc:
                raise BadAnswer(str(exc)) from None

    async def _go(
        self,
        thread_id: str,
        graph_input: dict[str, Any] | Command[Any] | None,
        options: LoopOptions,
        hooks: Hooks,
        *,
        rerun_from: int | Literal["planning"] | None = None,
        config: RunnableConfig | None = None,
        recorded: LoopOptions | None = None,
        answered: list[tuple[dict[str, Any], Any]] | None = None,
    ) -> Outcome:
        """Run the graph for `options` on the thread; `recorded` is what a resumed run
        recorded, to say whether it runs as it did; `answered`, the questions it was
        answered (the run's recording keeps them, with all it does: `runs.recordings`)."""
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
        loop, options = await self._loop_for(options)
        if self._graph is None or self._graph_options is not None:
            config["metadata"] = {**config.get("metadata", {}), **options.to_metadata()}
        async with self._tools_of_run(loop, thread_id) as (graph, tools):
            graph = await self._with_call_store(graph)
            starting = Starting(
                thread_id,
                options.model or "",
                tools,
                rerun_from,
                options,
                resumed=recorded is not None,
                own=recorded is not None and options == recorded,
                recorded_model=recorded.model if recorded is not None else None,
            )
            if hooks.starting is not None:
                told = hooks.starting(starting)
                if told is not None:
                    await told
            recorder: Recorder | None = None
            if recordable(self.saver):
                recorder = Recorder(self.saver, thread_id)
                recorder.add(
                    "start",
                    input=graph_input if isinstance(graph_input, dict) else None,
                    model=options.model or "",
                    traits=None if loop.model is None else model_traits(loop.model, options),
                    rerun_from=rerun_from,
                )
                for request, given in answered or ():
                    recorder.add("answer", request=request, answer=given)
                await recorder.flush()
                config = with_recorder(config, recorder)
                hooks = dataclasses.replace(
                    hooks,
                    review=answering(recorder, hooks.review),
                    approve=answering(recorder, hooks.approve),
                )
            relay = ProgressRelay(hooks.on_progress, hooks.progress)
            try:
                result = await stream_run(
                    graph,
                    graph_input,
                    config,
                    relay,
                    self._durability,
                    review=hooks.review,
                    approve=hooks.approve,
                )
            except AwaitingAnswer:
                return Outcome(thread_id, None, waiting=await self.questions(thread_id))
            finally:
                if recorder is not None:  # what the last node did, and answers given
                    await recorder.flush()
            return Outcome(thread_id, result)

    async def _loop_for(self, options: LoopOptions) -> tuple[_Loop, LoopOptions]:
        """What runs with `options` run on, and the options as they run them (the model
        spec resolved). One is made for each model, tools and options (a run's
        `max_steps` and `review_plan` go in its input)."""
        if self._graph is not None:
            return _Loop(self._graph, []), self._graph_options or options
        spec = options.model or model_spec_from_env()
        try:
            if not self._custom_factory:
                spec = resolve_spec(spec)  # `auto` asks Ollama whether it runs
            options = options.replace(model=spec)
            key = options.replace(max_steps=None, review_plan=False)
            if key not in self._loops:
                loop = await self._new_loop(self._model_factory(spec, options), key)
                if len(self._loops) >= LOOPS_KEPT:
                    del self._loops[next(iter(self._loops))]  # the oldest
                self._loops[key] = loop
            if spec.startswith("ollama:") and not self._custom_factory:
                check_ollama(spec.partition(":")[2])  # a run that cannot start is not stored
        except (ToolSetupError, ValueError) as exc:
            raise BadSetup(str(exc)) from None
        loop = self._loops[key]
        if loop.graph is not None and loop.graph.checkpointer is not self.saver:
            # made ready before the store was open
            loop.graph = loop.graph.copy(update={"checkpointer": self.saver})
        return loop, options

    async def _with_call_store(self, graph: Graph) -> Graph:
        """`graph` with the store beside the runs (`call_store`), where each tool call is
        recorded before it runs, unless it was compiled with a store of its own."""
        if graph.store is not None:
            return graph
        store = await call_store(self.saver)
        return graph if store is None else graph.copy(update={"store": store})

    async def _new_loop(self, model: Runnable[Any, Any], key: LoopOptions) -> _Loop:
        """The loop for `key`: compiled now, unless MCP servers' tools make one per run. A
        model that cannot call tools is refused before any tool loads."""
        if key.tools:
            Settings(model=model, tools=(_PROBE,))  # its ValueError, if it cannot
        tools = await prepare_tools(key.tools)
        if tools.servers:
            return _Loop(None, [], model=model, tools=tools, key=key)
        step_tools = tools.tools()
        graph = create_agentic_loop(model, checkpointer=self.saver, tools=step_tools, options=key)
        return _Loop(graph, [tool.name for tool in step_tools], model=model)

    @asynccontextmanager
    async def _tools_of_run(
        self, loop: _Loop, thread_id: str
    ) -> AsyncIterator[tuple[Graph, list[str]]]:
        """The compiled loop to run the thread on, and its tools' names, for the block. A
        loop with MCP servers is compiled for this run alone, over the sessions of its
        servers, started now (or by `open`, for this thread), each once, kept for every
        call of the run and closed at the block's end, however it ends (see
        `PreparedTools.open`)."""
        if loop.graph is not None:
            yield loop.graph, loop.names
            return
        assert loop.model is not None and loop.tools is not None and loop.key is not None
        started = self._started_servers.pop(thread_id, None)
        async with AsyncExitStack() as stack:
            try:
                if started is not None and started[0] is loop:
                    stack.push_async_exit(started[1])  # the run closes them
                    tools = started[2]
                else:
                    if started is not None:
                        await started[1].aclose()
                    log = mcp_log_path(self._location, thread_id)
                    tools = await stack.enter_async_context(loop.tools.open(log))
                graph = create_agentic_loop(
                    loop.model, checkpointer=self.saver, tools=tools, options=loop.key
                )
            except (ToolSetupError, ValueError) as exc:
                raise BadSetup(str(exc)) from None
            yield graph, [tool.name for tool in tools]

    async def _start_servers(self, loop: _Loop, thread_id: str) -> None:
        """Start the MCP servers of a run about to start on `thread_id`, for it to take."""
        if loop.tools is None or not loop.tools.servers:
            return
        servers = AsyncExitStack()
        try:
            log = mcp_log_path(self._location, thread_id)
            tools = await servers.enter_async_context(loop.tools.open(log))
        except ToolSetupError as exc:
            raise BadSetup(str(exc)) from None
        self._started_servers[thread_id] = loop, servers, tools


@dataclass
class _Loop:
    """What the runs of one model, tools and options share: the compiled loop and its tools'
    names, or, when MCP servers' tools make a loop for each run, what it is made of."""

    graph: Graph | None
    names: list[str]
    model: Runnable[Any, Any] | None = None
    tools: PreparedTools | None = None
    key: LoopOptions | None = None


_PROBE = StructuredTool.from_function(
    lambda: "",
    name="probe",
    description="Stands in for the tools to ask: can the model call tools?",
)


def _has_leases(saver: BaseCheckpointSaver[Any] | None) -> TypeGuard[BaseCheckpointSaver[Any]]:
    """Whether runs in `saver` are held by leases: those of a store from `open_store`.
    Another checkpointer (a user's own, for background runs) is this process's alone."""
    return isinstance(saver, AsyncSqliteSaver) or (saver is not None and is_postgres(saver))
