"""How what the web app shows of a run (`view`) reaches every page watching it.

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
from typing import Any

from agentic_loop.faces.web.view import LiveRun, held_by, run_row, run_view
from agentic_loop.runs.records import StoredRun
from agentic_loop.runs.service import (
    Hooks,
    Outcome,
    Question,
    RunActive,
    RunService,
    ServiceError,
    StoreError,
)

logger = logging.getLogger(__name__)

FOLLOW_S = 2.0
"""How often a page watching a run that another process runs reads it again."""
START_WAIT_S = 60.0
"""How long an action waits for its run to get past its checks (the model loaded, the
answer read) before it answers the browser anyway."""


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
