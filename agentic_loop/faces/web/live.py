"""What the web app shows of a run, and how it reaches every page watching it.

A run the server runs in the background has a `RunHub`: the run's progress broadcaster
(`Hooks.progress`), which folds each `agentic.*` event into `LiveRun` and sends the whole
run's view, as JSON, to every WebSocket watching the thread. A view is the stored run
(read when the run started here, and again when it stopped) with what the events told
since laid over it, so each message is complete: a page that opens late, reconnects or
falls behind renders the latest view and has missed nothing. Each socket keeps only the
newest view it has not sent yet (`Watcher`), so a slow browser never holds up the run or
the others. A run that another process runs (it holds the run's lease) sends its events
there: its watchers here get it read again from the store every `FOLLOW_S` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agentic_loop.core import events
from agentic_loop.core.events import PREVIEW_CHARS, one_line
from agentic_loop.core.state import AgenticStep
from agentic_loop.runs.service import (
    Hooks,
    Outcome,
    Question,
    RunActive,
    RunService,
    ServiceError,
    StoreError,
)
from agentic_loop.runs.store import StoredRun

logger = logging.getLogger(__name__)

FOLLOW_S = 2.0
"""How often a page watching a run that another process runs reads it again."""
START_WAIT_S = 60.0
"""How long an action waits for its run to get past its checks (the model loaded, the
answer read) before it answers the browser anyway."""


@dataclass
class LiveStep:
    """A step as this server's events have told it so far."""

    description: str
    status: str = "running"
    result: str = ""
    duration_ms: int | None = None
    failure: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LiveRun:
    """What the events of a run going on in this server have told since it started here."""

    task: str = ""
    plan: list[str] | None = None
    steps: dict[int, LiveStep] = field(default_factory=dict)
    from_step: int | None = None
    """A re-run's first step: the stored steps from it on are being run again."""
    answer: str = ""
    summary: str = ""

    def apply(self, event: str, data: dict[str, Any]) -> None:
        item = events.parse(event, data)
        if item is None:  # not one of the loop's events
            return
        if item["event"] == events.PLAN_READY:
            self.task, self.plan = item["data"]["task"], list(item["data"]["steps"])
        elif item["event"] == events.PLAN_REVIEWED or item["event"] == events.PLAN_REVISED:
            self.plan = list(item["data"]["steps"])
        elif item["event"] == events.STEP_STARTED:
            self.steps[item["data"]["step"]] = LiveStep(item["data"]["description"])
        elif (ended := events.step_outcome(item)) is not None:
            step = self.steps.setdefault(ended.step, LiveStep(ended.description))
            step.status, step.result = ended.status, ended.text
            if item["event"] == events.STEP_COMPLETE:
                step.duration_ms = item["data"]["duration_ms"]
            elif item["event"] == events.STEP_ADAPTED:
                step.failure = item["data"]["error"]
        elif item["event"] == events.TOOL_CALLED:
            self._tool_called(item["data"])
        elif item["event"] == events.TOOL_RESULT:
            self._tool_result(item["data"])
        elif item["event"] == events.ANSWER_READY:
            self.answer = item["data"]["answer"]
        elif item["event"] == events.TASK_COMPLETE:
            self.summary = item["data"]["summary"]

    def _tool_called(self, called: events.ToolCalledData) -> None:
        step = self.steps.setdefault(called["step"], LiveStep(""))
        call = {"tool": called["tool"], "args": called["args"], "status": "running"}
        step.tool_calls.append(call | {"result": "", "duration_ms": None})

    def _tool_result(self, back: events.ToolResultData) -> None:
        """The result goes to the first call of that tool still running in the step."""
        step = self.steps.setdefault(back["step"], LiveStep(""))
        waiting = [
            call
            for call in step.tool_calls
            if call["tool"] == back["tool"] and call["status"] == "running"
        ]
        if not waiting:
            waiting = [{"tool": back["tool"], "args": ""}]
            step.tool_calls.append(waiting[0])
        waiting[0].update(
            status=back["status"], result=back["result"], duration_ms=back["duration_ms"]
        )


def display_status(stored: StoredRun | None, running: bool) -> str:
    """The status a page shows: the run's own (`StoredRun.status`, the rule every face
    shows), or `running` while this server runs it (from the moment it launches it)."""
    if running:
        return "running"
    return stored.status if stored is not None else "unknown"


def held_by(stored: StoredRun) -> str | None:
    """Who runs the run, if another process does."""
    if stored.holder is None or stored.status != "running elsewhere":
        return None
    return stored.holder.describe()


def run_row(stored: StoredRun, running: bool) -> dict[str, Any]:
    """A run as the runs page lists it."""
    answer = stored.result.answer if stored.result else ""
    return {
        "thread_id": stored.thread_id,
        "task": one_line(stored.task, PREVIEW_CHARS),
        "status": display_status(stored, running),
        "steps_done": stored.steps_done,
        "planned": len(stored.plan),
        "answer": one_line(answer, PREVIEW_CHARS),
        "updated_at": stored.updated_at,
    }


def run_view(
    thread_id: str,
    stored: StoredRun | None,
    live: LiveRun | None,
    questions: list[Question],
    error: str | None = None,
    elsewhere: str | None = None,
) -> dict[str, Any]:
    """The whole of a run as its page shows it: `stored` with `live` laid over it (None
    when the run does not run here); `elsewhere` says who runs it, if another process does."""
    status = display_status(stored, live is not None)
    task, plan, answer, summary = _run_texts(stored, live)
    rows = _plan_rows(plan, _step_rows(stored, live), None if live is not None else stored)
    return {
        "thread_id": thread_id,
        "task": task,
        "status": status,
        "running": live is not None,
        "model": stored.model if stored else None,
        "updated_at": stored.updated_at if stored else "",
        "steps": rows,
        "steps_done": sum(row["status"] in ("completed", "adapted", "failed") for row in rows),
        "planned": len(plan),
        "summary": summary,
        "answer": answer,
        "questions": [
            {"id": question.id, "kind": question.kind, "request": question.request}
            for question in questions
        ],
        "error": error,
        "elsewhere": elsewhere if status == "running elsewhere" else None,
        # What the page's buttons and forms depend on: when it changes, the page reloads.
        "controls": "|".join([status, *(question.id for question in questions)]),
    }


def _run_texts(stored: StoredRun | None, live: LiveRun | None) -> tuple[str, list[str], str, str]:
    """The run's task, plan, answer and summary: as the events told them while it runs
    here, else as stored."""
    task, plan = (stored.task, list(stored.plan)) if stored is not None else ("", [])
    if live is not None:
        plan = live.plan if live.plan is not None else plan
        return live.task or task, plan, live.answer, live.summary
    if stored is not None and stored.result is not None:
        return task, plan, stored.result.answer, stored.result.summary
    return task, plan, "", ""


def _step_rows(stored: StoredRun | None, live: LiveRun | None) -> dict[int, dict[str, Any]]:
    """The steps that ended or run, by number: the stored ones with the live ones laid over
    them (a re-run's stored steps from its first step on are left out: they run again)."""
    from_step = live.from_step if live is not None else None
    rows = {
        ended.step_num: _stored_step_row(ended)
        for ended in (stored.steps if stored is not None else [])
        if not (from_step and ended.step_num >= from_step)
    }
    if live is not None:
        rows |= {number: _live_step_row(step) for number, step in live.steps.items()}
    return rows


def _stored_step_row(ended: AgenticStep) -> dict[str, Any]:
    return {
        "status": ended.status,
        "result": ended.result,
        "duration_ms": None if ended.status == "skipped" else ended.duration_ms,
        "failure": ended.failure,
        "cut_short": ended.cut_short,
        "tool_calls": [
            {
                "tool": call.tool,
                "args": json.dumps(call.args, ensure_ascii=False),
                "status": call.status,
                "result": call.result,
                "duration_ms": call.duration_ms,
            }
            for call in ended.tool_calls
        ],
    }


def _live_step_row(step: LiveStep) -> dict[str, Any]:
    return {
        "status": step.status,
        "result": step.result,
        "duration_ms": step.duration_ms,
        "failure": step.failure,
        "cut_short": False,
        "tool_calls": [dict(call) for call in step.tool_calls],
    }


def _plan_rows(
    plan: list[str], steps: dict[int, dict[str, Any]], stored: StoredRun | None
) -> list[dict[str, Any]]:
    """A row for each step of the plan; one that has not ended has the status the stored
    run gives it (`running` while another process runs it, `pending`, `not run`), or
    `pending` while it runs here (its events say when it starts)."""
    return [
        {"number": number, "description": description}
        | (
            steps.get(number)
            or _unrun_row(stored.step_status(number) if stored is not None else "pending")
        )
        for number, description in enumerate(plan, 1)
    ]


def _unrun_row(status: str) -> dict[str, Any]:
    return {
        "status": status,
        "result": "",
        "duration_ms": None,
        "failure": None,
        "cut_short": False,
        "tool_calls": [],
    }


class Watcher:
    """One WebSocket's mailbox: it holds only the newest view not yet sent."""

    def __init__(self) -> None:
        self._latest: str | None = None
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, message: str) -> None:
        self._latest = message
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self) -> str | None:
        """The newest view, once there is one; None once closed."""
        await self._ready.wait()
        self._ready.clear()
        if self.closed:
            return None
        message, self._latest = self._latest, None
        return message


class RunHub:
    """One thread's view and the sockets watching it; the progress broadcaster of its runs."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.stored: StoredRun | None = None
        self.questions: list[Question] = []
        self.live: LiveRun | None = None
        self.error: str | None = None
        self.elsewhere: str | None = None
        """Who runs it, when another process does (from its lease)."""
        self.follower: asyncio.Task[None] | None = None
        self.version = 0
        """Counts the views published, so a slower read of the store cannot replace a newer one."""
        self.generation = 0
        """Counts the runs begun here."""
        self.watchers: set[Watcher] = set()
        self._sent: str | None = None

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        if self.live is not None:
            self.live.apply(event, data)
            self.publish()

    def view(self) -> dict[str, Any]:
        return run_view(
            self.thread_id, self.stored, self.live, self.questions, self.error, self.elsewhere
        )

    def publish(self) -> None:
        """Send the view to every watcher, if it changed since it was last sent."""
        self.version += 1
        message = json.dumps({"type": "view", "view": self.view()})
        if message == self._sent:
            return
        self._sent = message
        for watcher in self.watchers:
            watcher.offer(message)

    def begin(self, stored: StoredRun | None, live: LiveRun) -> Callable[[], None]:
        """Show the run as running here from now on (the watchers see it with its first
        view); the function returned undoes it, for a run refused before it began."""
        before = self.stored, self.questions, self.error
        self.generation += 1
        self.stored, self.questions, self.live, self.error = stored, [], live, None
        self.elsewhere = None

        def undo() -> None:
            self.generation += 1
            self.stored, self.questions, self.error = before
            self.live = None

        return undo

    @property
    def idle(self) -> bool:
        return not self.watchers and self.live is None and self.error is None


Action = Callable[[Hooks], Coroutine[Any, Any, Outcome]]


class LiveRuns:
    """The web app's runs: each launched in the background through the service, with its
    hub as progress broadcaster and no review or approval handler, so a run that reaches a
    plan review or tool approval stops, stored, and waits for the page's answer."""

    def __init__(self, service: RunService) -> None:
        self.service = service
        self.hubs: dict[str, RunHub] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._closing = False

    def hub(self, thread_id: str) -> RunHub:
        hub = self.hubs.get(thread_id)
        if hub is None:
            hub = self.hubs[thread_id] = RunHub(thread_id)
        return hub

    def running(self, thread_id: str) -> bool:
        hub = self.hubs.get(thread_id)
        job = self.service.background(thread_id)
        return (
            (hub is not None and hub.live is not None)
            or self.service.is_running(thread_id)
            or (job is not None and not job.done())
        )

    def running_threads(self) -> set[str]:
        """The threads whose runs go on here now."""
        return {thread_id for thread_id, hub in self.hubs.items() if hub.live is not None}

    async def rows(self) -> list[dict[str, Any]]:
        """Every stored run as the runs page lists it, most recently updated first."""
        # Taken before the store is read: a run that ends during the read, read as it was
        # before it ended, still shows as running rather than as interrupted.
        running = self.running_threads()
        rows = []
        for stored in await self.service.runs():
            here = stored.thread_id in running or self.running(stored.thread_id)
            rows.append(run_row(stored, here))
        return rows

    async def view(self, thread_id: str) -> dict[str, Any]:
        """The run's view, read again from the store unless it runs here (`UnknownThread`
        if there is no such run)."""
        hub = self.hub(thread_id)
        try:
            if hub.live is None:
                await self._refresh(hub)
                if hub.elsewhere and hub.watchers and (not hub.follower or hub.follower.done()):
                    hub.follower = asyncio.get_running_loop().create_task(self._follow(hub))
            return hub.view()
        finally:
            self._drop_if_idle(hub)

    async def _follow(self, hub: RunHub) -> None:
        """While another process runs the run and pages watch it, read it again now and
        then: its progress events reach only that process."""
        while hub.watchers and hub.live is None and hub.elsewhere and not self._closing:
            await asyncio.sleep(FOLLOW_S)
            try:
                await self._refresh(hub)
            except (ServiceError, StoreError):
                return

    async def _refresh(self, hub: RunHub) -> None:
        version = hub.version
        stored = await self.service.run(hub.thread_id)
        questions = (
            await self.service.questions(hub.thread_id)
            if stored.status.startswith("awaiting")
            else []
        )
        elsewhere = held_by(stored)
        if hub.version == version and hub.live is None:  # nothing newer came meanwhile
            hub.stored, hub.questions, hub.elsewhere = stored, questions, elsewhere
            hub.publish()

    async def launch(
        self,
        thread_id: str,
        action: Action,
        *,
        stored: StoredRun | None = None,
        task: str = "",
        from_step: int | None = None,
    ) -> None:
        """Run `action(hooks)` (a call of the service's `start`, `resume` or `answer`) in the
        background, and return once it has passed its checks and starts running. What it
        refuses before then (a bad answer, a model that cannot be used) is raised here, and
        nothing changes."""
        if self.running(thread_id):
            raise RunActive(f"run {thread_id!r} is running already; wait for it or cancel it")
        hub = self.hub(thread_id)
        started = asyncio.Event()
        hooks = Hooks(progress=hub, starting=lambda _: started.set())
        undo = hub.begin(stored, LiveRun(task=task, from_step=from_step))
        generation = hub.generation
        job = await self.service.launch(lambda: action(hooks), thread_id)
        job.add_done_callback(lambda _: self._settle_soon(hub, generation, job, started))
        waiting = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({job, waiting}, timeout=START_WAIT_S, return_when="FIRST_COMPLETED")
        finally:
            waiting.cancel()
        refused = None
        if job.done() and not job.cancelled() and not started.is_set():
            refused = job.exception()
        if refused is not None:
            undo()
            self._drop_if_idle(hub)
            raise refused
        hub.publish()

    def cancel(self, thread_id: str) -> bool:
        return self.service.cancel(thread_id)

    def _settle_soon(
        self, hub: RunHub, generation: int, job: asyncio.Task[Outcome], started: asyncio.Event
    ) -> None:
        if self._closing:
            return
        settling = asyncio.get_running_loop().create_task(
            self._settle(hub, generation, job, started)
        )
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _settle(
        self, hub: RunHub, generation: int, job: asyncio.Task[Outcome], started: asyncio.Event
    ) -> None:
        """After a background run: its view from the store, and the error that ended it."""
        error = None
        if not job.cancelled() and (failure := job.exception()) is not None and started.is_set():
            if isinstance(failure, ServiceError | StoreError):
                error = str(failure)
            else:
                logger.error("run %s failed", hub.thread_id, exc_info=failure)
                error = (
                    f"the run stopped on an error ({type(failure).__name__}); see the server's log"
                )
        if hub.generation != generation:  # refused, or another run of it began meanwhile
            return
        try:
            stored = await self.service.find(hub.thread_id)
            questions = (
                await self.service.questions(hub.thread_id)
                if stored is not None and stored.status.startswith("awaiting")
                else []
            )
        except StoreError as exc:
            stored, questions, error = hub.stored, [], str(exc)
        if hub.generation != generation or self._closing:
            return
        hub.stored, hub.questions, hub.live, hub.error = stored, questions, None, error
        hub.publish()
        self._drop_if_idle(hub)

    def watch(self, thread_id: str) -> Watcher:
        watcher = Watcher()
        self.hub(thread_id).watchers.add(watcher)
        return watcher

    def unwatch(self, thread_id: str, watcher: Watcher) -> None:
        hub = self.hubs.get(thread_id)
        if hub is not None:
            hub.watchers.discard(watcher)
            self._drop_if_idle(hub)

    def _drop_if_idle(self, hub: RunHub) -> None:
        if hub.idle and self.hubs.get(hub.thread_id) is hub:
            del self.hubs[hub.thread_id]

    async def aclose(self) -> None:
        """Stop the background runs (they stay stored, to be resumed) and the sockets."""
        self._closing = True
        await self.service.aclose()
        settling = list(self._settling)
        settling += [hub.follower for hub in self.hubs.values() if hub.follower is not None]
        for task in settling:
            task.cancel()
        await asyncio.gather(*settling, return_exceptions=True)
        for hub in self.hubs.values():
            for watcher in hub.watchers:
                watcher.close()
