"""Running the compiled loop on a thread: `stream_run` streams it (or resumes it), relays
its progress and answers its questions with the caller's handlers; `new_thread_id` mints
a run's id, `check_thread_id` holds an id given for a new run to the one rule every face
reads, `with_thread` puts it in a config. The service runs every run through here."""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, Interrupt

from agentic_loop.core.events import ProgressEvent, ProgressRelay, is_progress_event, one_line
from agentic_loop.core.older_runs import question_kind
from agentic_loop.core.state import AgenticResult

ReviewHandler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
"""`review(request)`, sync or async, gets the plan a run paused on (`task`, `steps`,
`max_steps`, and `problem` when its last answer was unreadable) and returns the answer:
`"approve"`, a list of steps to run instead, or a `PlanReview` dict."""

ApprovalHandler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
"""`approve(request)`, sync or async, gets a tool call waiting for approval (`tool`,
`args`, `step`, `description`, and `problem` when its last answer was unreadable) and
returns the answer: `"approve"`, `"reject"`, or a `ToolApproval` dict."""


class AwaitingAnswer(RuntimeError):
    """The run paused for a plan review or a tool approval that nobody can answer here."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        what = "a tool call" if question_kind(request) == "tool_approval" else "its plan"
        super().__init__(
            f"the run waits for {what} to be reviewed; resume it with Command(resume=...) "
            "or pass a handler that answers"
        )


def new_thread_id(prefix: str = "run") -> str:
    """A new run's thread id: `prefix`, a dash and 8 hex digits (`run-1a2b3c4d`)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


THREAD_ID_CHARS = 128
_THREAD_ID = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.:-]{{0,{THREAD_ID_CHARS - 1}}}")


def check_thread_id(thread_id: str) -> str:
    """`thread_id` if a new run may be stored under it, else a one-line `ValueError`: ASCII
    letters, digits, `-`, `_`, `.` and `:`, 1 to 128 of them, not starting with `.`, `-`
    or `:`. So an id is one segment of a URL or a file name, and one word on a command
    line. Runs stored before the rule keep their ids: reading them checks nothing."""
    if not _THREAD_ID.fullmatch(thread_id):
        raise ValueError(
            f"thread id {one_line(repr(thread_id), 60)} is not allowed: use 1 to "
            f"{THREAD_ID_CHARS} ASCII letters, digits, '-', '_', '.' and ':', starting with a "
            "letter, a digit or '_'"
        )
    return thread_id


def with_thread(config: RunnableConfig | None, thread_id: str) -> RunnableConfig:
    """A caller's `config` (callbacks, tags, ...) for the run stored under `thread_id`."""
    config = config or {}
    return {**config, "configurable": {**config.get("configurable", {}), "thread_id": thread_id}}


async def _carry_on_stranded(
    graph: CompiledStateGraph[Any, Any, Any, Any], config: RunnableConfig
) -> bool:
    """Whether a resume that ran nothing found the run stranded, and set it going again.

    A run stopped just as a step node ended can be stored with the node's writes but not
    its router's (the `Send`s of the next steps): LangGraph keeps what a cancelled task
    wrote so far. Such a run has a plan, no result and nothing to run next; `schedule`,
    whose router knows where a run stands from its state, then takes it on."""
    if graph.checkpointer is None:
        return False
    state = await graph.aget_state(config)
    values = state.values
    if state.next or values.get("result") is not None or values.get("plan") is None:
        return False
    await graph.aupdate_state(config, None, as_node="schedule")
    return True


async def stream_run(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    graph_input: dict[str, Any] | Command[Any] | None,
    config: RunnableConfig,
    relay: ProgressRelay,
    durability: Durability = "sync",
    review: ReviewHandler | None = None,
    approve: ApprovalHandler | None = None,
) -> AgenticResult:
    """Run (or with `graph_input=None`, resume) the graph, relaying progress as it streams,
    answering a plan review with `review` and a tool approval with `approve`. Raises
    `AwaitingAnswer` if the run pauses for one of them and its handler is missing."""
    carried_on = False
    while True:
        result: AgenticResult | None = None
        pending: list[Interrupt] = []
        stream = cast(
            AsyncGenerator[tuple[str, Any], None],
            graph.astream(
                graph_input,
                config,
                stream_mode=["custom", "updates"],
                durability=durability if graph.checkpointer else None,
            ),
        )
        # Whatever stops the loop (a Ctrl-C, a hook raising KeyboardInterrupt, SystemExit or
        # CancelledError), the stream is closed before it propagates: its nodes are cancelled
        # and what they finished is stored ("exit" durability stores it only then), so the
        # run resumes from there. Left open, it would be closed later, or never.
        async with aclosing(stream):
            async for mode, chunk in stream:
                update = cast(dict[str, Any], chunk)
                if mode == "custom" and is_progress_event(chunk):
                    await relay.deliver(cast(ProgressEvent, chunk))
                elif mode == "updates" and "summarise" in update:
                    result = update["summarise"]["result"]
                elif mode == "updates" and "__interrupt__" in update:
                    pending += update["__interrupt__"]
        if result is not None:
            return result
        if not pending:
            if carried_on or graph_input is not None or not await _carry_on_stranded(graph, config):
                raise RuntimeError(
                    "the run stopped before its summary; resume it with the same thread_id"
                )
            carried_on = True
            continue
        # Steps side by side may each wait for an answer: each is answered by its id.
        answers: dict[str, Any] = {}
        for waiting in pending:
            request = waiting.value
            handler = approve if question_kind(request) == "tool_approval" else review
            if handler is None:
                raise AwaitingAnswer(request)
            answer = handler(request)
            answers[waiting.id] = await answer if inspect.isawaitable(answer) else answer
        graph_input = Command(resume=answers)
        # A run started from an older checkpoint (a re-run) now goes on from its newest.
        configurable = dict(config.get("configurable", {}))
        configurable.pop("checkpoint_id", None)
        config = {**config, "configurable": configurable}
