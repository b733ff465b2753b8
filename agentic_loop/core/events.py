"""Progress events: their names and payloads, and their delivery to callbacks and broadcasters.

Nodes write each event to LangGraph's custom stream as `{"event": name, "data": payload}`,
built by the event's constructor (`step_complete(...)` for `STEP_COMPLETE`, and so on), whose
payload is a `TypedDict`. A consumer that is handed a name and a payload (a `Broadcaster`)
turns them back into a typed item with `parse`, then reads fields once the name has
narrowed it (`if item["event"] == STEP_COMPLETE:`); `step_outcome` says how a step ended.

`ProgressRelay` passes the events on to an `on_progress` callback and a broadcaster; a hook
that raises an `Exception` is logged and never changes the run. One that raises
`KeyboardInterrupt`, `SystemExit` or `asyncio.CancelledError` stops the run as a Ctrl-C
does: what finished is stored, and resuming the thread runs the rest.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, Protocol, TypedDict, cast

if TYPE_CHECKING:  # kept out of import time: `agentic-loop --help` reads `one_line`
    from agentic_loop.core.state import (
        CutOffAction,
        PlanChange,
        ReviewOutcome,
        RunStatus,
        StepStatus,
        ToolCallStatus,
    )

logger = logging.getLogger(__name__)

PLAN_READY: Final = "agentic.plan_ready"
PLAN_FAILED: Final = "agentic.plan_failed"
PLAN_REVIEWED: Final = "agentic.plan_reviewed"
PLAN_REVISED: Final = "agentic.plan_revised"
STEP_STARTED: Final = "agentic.step_started"
STEP_COMPLETE: Final = "agentic.step_complete"
STEP_ADAPTED: Final = "agentic.step_adapted"
STEP_FAILED: Final = "agentic.step_failed"
STEP_SKIPPED: Final = "agentic.step_skipped"
TOOL_CALLED: Final = "agentic.tool_called"
TOOL_RESULT: Final = "agentic.tool_result"
TOOL_CUT_OFF: Final = "agentic.tool_cut_off"
ANSWER_READY: Final = "agentic.answer_ready"
TASK_COMPLETE: Final = "agentic.task_complete"


class Writes(Protocol):
    """What a node's runtime (`Runtime`, or a tool call's `ToolRuntime`) has to send events."""

    @property
    def stream_writer(self) -> Callable[[Any], None]: ...


async def emit(runtime: Writes, event: ProgressEvent) -> None:
    """Send `event` from a node: to LangGraph's `custom` stream, and as a custom event named
    after it (payload: its data) to whoever watches the run's callbacks, which is how it
    reaches `astream_events` as `on_custom_event`."""
    from langchain_core.callbacks import adispatch_custom_event
    from langgraph.config import get_config

    callbacks: Any = get_config().get("callbacks")
    handlers: list[Any] = list(getattr(callbacks, "handlers", callbacks) or [])
    if any(not handler.ignore_custom_event for handler in handlers):  # else it costs for nothing
        await adispatch_custom_event(event["event"], event["data"])
    runtime.stream_writer(event)


PREVIEW_CHARS: Final = 200
"""The length of every preview: of a result, adaptation, answer, summary or tool call in
an event's payload, and of the text a display shows in one line."""


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis: a preview for displays."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but newline and tab (C0, DEL and C1): a terminal acts on them
rather than showing them, and an XML parser (Graphviz's, for a picture) refuses them."""
_CONTROL_OR_BREAK: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str, *, lines: bool = True) -> str:
    """`text` with its control characters written out (`\\x1b`, `\\x07`), so that text from
    a model or a user is shown as text: no escape sequence in it sets the terminal's title,
    colours its output or moves its cursor, nor breaks a picture. Newlines and tabs stay if
    `lines` (`\\r\\n` is a newline); without, they are written out too, for text that must
    stay on one line."""
    text = text.replace("\r\n", "\n")
    control = CONTROL_CHARS if lines else _CONTROL_OR_BREAK
    return control.sub(lambda char: f"\\x{ord(char[0]):02x}", text)


# --- payloads ------------------------------------------------------------------------------


class PlanReadyData(TypedDict):
    task_id: str
    task: str
    steps: list[str]
    depends_on: list[list[int]]
    """For each step, the numbers of the steps it needs."""
    notes: list[str]
    """The dependencies dropped from the plan, and why."""
    total: int


class PlanFailedData(TypedDict):
    task_id: str
    task: str
    error: str
    """Why planning gave no steps."""


class PlanReviewedData(TypedDict):
    task_id: str
    review: ReviewOutcome
    steps: list[str]
    """The plan as the reviewer left it."""
    total: int
    error: str | None
    """Why the plan was rejected; None otherwise."""


class PlanRevisedData(TypedDict):
    task_id: str
    version: int
    """The plan's version number, from 2 (1 is the plan as first made)."""
    after_step: int
    """How many steps had finished when it was revised."""
    change: PlanChange
    """`replaced` (the steps left were replaced) or `done` (they were dropped)."""
    steps: list[str]
    """The whole plan, finished steps first."""
    total: int


class StepStartedData(TypedDict):
    task_id: str
    step: int
    """The step's number, from 1."""
    total: int
    """How many steps the plan has."""
    description: str


class StepCompleteData(StepStartedData):
    result: str
    """A preview of the step's result."""
    duration_ms: int


class StepAdaptedData(StepStartedData):
    error: str
    """Why the step's call failed."""
    adaptation: str
    """A preview of the result the other way gave."""


class StepFailedData(StepStartedData):
    error: str
    """Why the step failed, and why adapting it failed too."""


class StepSkippedData(StepStartedData):
    reason: str
    """Why the step will not run."""


class ToolCalledData(TypedDict):
    task_id: str
    step: int
    tool: str
    args: str
    """A preview of the arguments, as JSON."""


class ToolResultData(TypedDict):
    task_id: str
    step: int
    tool: str
    result: str
    """A preview of what the tool gave back (or why it was refused)."""
    status: ToolCallStatus
    duration_ms: int


class ToolCutOffData(TypedDict):
    task_id: str
    step: int
    tool: str
    args: str
    """A preview of the arguments, as JSON."""
    action: CutOffAction
    """What becomes of the call: `rerun` (an idempotent tool, with the same key), `asked`
    (a person is asked whether to run it again), `approved` or `declined` (their answer),
    or `unknown` (not run again; the model is told its outcome is unknown)."""


class AnswerReadyData(TypedDict):
    task_id: str
    answer: str
    """A preview of the answer."""
    cut_short: bool
    """Whether the model's reply stopped at its length limit."""


class TaskCompleteData(TypedDict):
    task_id: str
    status: RunStatus
    steps_completed: int
    """How many steps ended, whatever their status."""
    summary: str
    """A preview of the summary."""
    answer: str
    """A preview of the answer; empty if there is none."""
    duration_ms: int
    tokens_in: int
    tokens_out: int


# --- items of the stream: a name and its payload ---------------------------------------------


class PlanReadyEvent(TypedDict):
    event: Literal["agentic.plan_ready"]
    data: PlanReadyData


class PlanFailedEvent(TypedDict):
    event: Literal["agentic.plan_failed"]
    data: PlanFailedData


class PlanReviewedEvent(TypedDict):
    event: Literal["agentic.plan_reviewed"]
    data: PlanReviewedData


class PlanRevisedEvent(TypedDict):
    event: Literal["agentic.plan_revised"]
    data: PlanRevisedData


class StepStartedEvent(TypedDict):
    event: Literal["agentic.step_started"]
    data: StepStartedData


class StepCompleteEvent(TypedDict):
    event: Literal["agentic.step_complete"]
    data: StepCompleteData


class StepAdaptedEvent(TypedDict):
    event: Literal["agentic.step_adapted"]
    data: StepAdaptedData


class StepFailedEvent(TypedDict):
    event: Literal["agentic.step_failed"]
    data: StepFailedData


class StepSkippedEvent(TypedDict):
    event: Literal["agentic.step_skipped"]
    data: StepSkippedData


class ToolCalledEvent(TypedDict):
    event: Literal["agentic.tool_called"]
    data: ToolCalledData


class ToolResultEvent(TypedDict):
    event: Literal["agentic.tool_result"]
    data: ToolResultData


class ToolCutOffEvent(TypedDict):
    event: Literal["agentic.tool_cut_off"]
    data: ToolCutOffData


class AnswerReadyEvent(TypedDict):
    event: Literal["agentic.answer_ready"]
    data: AnswerReadyData


class TaskCompleteEvent(TypedDict):
    event: Literal["agentic.task_complete"]
    data: TaskCompleteData


ProgressEvent = (
    PlanReadyEvent
    | PlanFailedEvent
    | PlanReviewedEvent
    | PlanRevisedEvent
    | StepStartedEvent
    | StepCompleteEvent
    | StepAdaptedEvent
    | StepFailedEvent
    | StepSkippedEvent
    | ToolCalledEvent
    | ToolResultEvent
    | ToolCutOffEvent
    | AnswerReadyEvent
    | TaskCompleteEvent
)
"""One item of the graph's custom stream; its `event` name says which."""

NAMES: Final = frozenset(
    {
        PLAN_READY,
        PLAN_FAILED,
        PLAN_REVIEWED,
        PLAN_REVISED,
        STEP_STARTED,
        STEP_COMPLETE,
        STEP_ADAPTED,
        STEP_FAILED,
        STEP_SKIPPED,
        TOOL_CALLED,
        TOOL_RESULT,
        TOOL_CUT_OFF,
        ANSWER_READY,
        TASK_COMPLETE,
    }
)
"""The names of the loop's events."""


def parse(name: str, data: Mapping[str, Any]) -> ProgressEvent | None:
    """The typed item for an event a broadcaster was handed, or None if `name` is not one
    of the loop's (a graph the loop is part of may write events of its own). The payload is
    taken as its constructor wrote it, not checked again."""
    if name not in NAMES:
        return None
    return cast(ProgressEvent, {"event": name, "data": data})


# --- constructors, one per event --------------------------------------------------------------


def plan_ready(
    task_id: str, task: str, steps: list[str], depends_on: list[list[int]], notes: list[str]
) -> PlanReadyEvent:
    """Planning gave steps to run."""
    return {
        "event": PLAN_READY,
        "data": {
            "task_id": task_id,
            "task": task,
            "steps": steps,
            "depends_on": depends_on,
            "notes": notes,
            "total": len(steps),
        },
    }


def plan_failed(task_id: str, task: str, error: str) -> PlanFailedEvent:
    """Planning gave no steps; the run ends."""
    return {"event": PLAN_FAILED, "data": {"task_id": task_id, "task": task, "error": error}}


def plan_reviewed(
    task_id: str, review: ReviewOutcome, steps: list[str], error: str | None
) -> PlanReviewedEvent:
    """A reviewer approved, edited or rejected the plan."""
    return {
        "event": PLAN_REVIEWED,
        "data": {
            "task_id": task_id,
            "review": review,
            "steps": steps,
            "total": len(steps),
            "error": error,
        },
    }


def plan_revised(
    task_id: str, version: int, after_step: int, change: PlanChange, steps: list[str]
) -> PlanRevisedEvent:
    """Replanning replaced the steps left, or dropped them as the task was done."""
    return {
        "event": PLAN_REVISED,
        "data": {
            "task_id": task_id,
            "version": version,
            "after_step": after_step,
            "change": change,
            "steps": steps,
            "total": len(steps),
        },
    }


def step_started(task_id: str, step: int, total: int, description: str) -> StepStartedEvent:
    """A step makes its first model call."""
    return {
        "event": STEP_STARTED,
        "data": {"task_id": task_id, "step": step, "total": total, "description": description},
    }


def step_complete(
    task_id: str, step: int, total: int, description: str, result: str, duration_ms: int
) -> StepCompleteEvent:
    """A step gave its result (previewed here)."""
    return {
        "event": STEP_COMPLETE,
        "data": {
            "task_id": task_id,
            "step": step,
            "total": total,
            "description": description,
            "result": one_line(result),
            "duration_ms": duration_ms,
        },
    }


def step_adapted(
    task_id: str, step: int, total: int, description: str, error: str, adaptation: str
) -> StepAdaptedEvent:
    """A step's call failed with `error`, and another way gave `adaptation` (previewed here)."""
    return {
        "event": STEP_ADAPTED,
        "data": {
            "task_id": task_id,
            "step": step,
            "total": total,
            "description": description,
            "error": error,
            "adaptation": one_line(adaptation),
        },
    }


def step_failed(
    task_id: str, step: int, total: int, description: str, error: str
) -> StepFailedEvent:
    """A step's call failed, and so did the other way tried."""
    return {
        "event": STEP_FAILED,
        "data": {
            "task_id": task_id,
            "step": step,
            "total": total,
            "description": description,
            "error": error,
        },
    }


def step_skipped(
    task_id: str, step: int, total: int, description: str, reason: str
) -> StepSkippedEvent:
    """A step will not run: a step it depends on failed, or a budget ran out."""
    return {
        "event": STEP_SKIPPED,
        "data": {
            "task_id": task_id,
            "step": step,
            "total": total,
            "description": description,
            "reason": reason,
        },
    }


def tool_called(task_id: str, step: int, tool: str, args: dict[str, Any]) -> ToolCalledEvent:
    """A step is about to call `tool` (or to ask a reviewer whether it may)."""
    preview = one_line(json.dumps(args, ensure_ascii=False, default=str))
    return {
        "event": TOOL_CALLED,
        "data": {"task_id": task_id, "step": step, "tool": tool, "args": preview},
    }


def tool_result(
    task_id: str, step: int, tool: str, result: str, status: ToolCallStatus, duration_ms: int
) -> ToolResultEvent:
    """What a tool call gave back: `status` is `success`, `error` or `refused`."""
    return {
        "event": TOOL_RESULT,
        "data": {
            "task_id": task_id,
            "step": step,
            "tool": tool,
            "result": one_line(result),
            "status": status,
            "duration_ms": duration_ms,
        },
    }


def tool_cut_off(
    task_id: str, step: int, tool: str, args: dict[str, Any], action: CutOffAction
) -> ToolCutOffEvent:
    """A call that was cut off when its run stopped (it started, and whether it took effect
    is unknown) is found on resume; `action` says what becomes of it."""
    preview = one_line(json.dumps(args, ensure_ascii=False, default=str))
    return {
        "event": TOOL_CUT_OFF,
        "data": {"task_id": task_id, "step": step, "tool": tool, "args": preview, "action": action},
    }


def answer_ready(task_id: str, answer: str, cut_short: bool) -> AnswerReadyEvent:
    """The answer to the task, written from the steps' results (previewed here)."""
    return {
        "event": ANSWER_READY,
        "data": {"task_id": task_id, "answer": one_line(answer), "cut_short": cut_short},
    }


def task_complete(
    task_id: str,
    status: RunStatus,
    steps_completed: int,
    summary: str,
    answer: str,
    duration_ms: int,
    tokens_in: int,
    tokens_out: int,
) -> TaskCompleteEvent:
    """The run ended; `summary` and `answer` are previewed here."""
    return {
        "event": TASK_COMPLETE,
        "data": {
            "task_id": task_id,
            "status": status,
            "steps_completed": steps_completed,
            "summary": one_line(summary),
            "answer": one_line(answer),
            "duration_ms": duration_ms,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
        },
    }


# --- how a step ended ------------------------------------------------------------------------

_STEP_ENDS: Final[dict[str, StepStatus]] = {
    STEP_COMPLETE: "completed",
    STEP_ADAPTED: "adapted",
    STEP_FAILED: "failed",
    STEP_SKIPPED: "skipped",
}
"""The events that end a step, and the status each gives it."""


class StepOutcome(NamedTuple):
    """How a step ended, as any of the four events that end one tells it."""

    step: int
    description: str
    status: StepStatus
    text: str
    """What the event says: the step's result, the other way's result, why it failed, or why
    it was skipped."""


def step_outcome(item: ProgressEvent) -> StepOutcome | None:
    """How the step ended, for the four events that end a step; None for the others."""
    if item["event"] == STEP_COMPLETE:
        text = item["data"]["result"]
    elif item["event"] == STEP_ADAPTED:
        text = item["data"]["adaptation"]
    elif item["event"] == STEP_FAILED:
        text = item["data"]["error"]
    elif item["event"] == STEP_SKIPPED:
        text = item["data"]["reason"]
    else:
        return None
    data = item["data"]
    return StepOutcome(data["step"], data["description"], _STEP_ENDS[item["event"]], text)


# --- delivery ----------------------------------------------------------------------------


class Broadcaster(Protocol):
    async def broadcast(self, event: str, data: dict[str, Any]) -> Any: ...


OnProgress = Callable[[str, int, int], Awaitable[Any] | Any]
"""`on_progress(description, step_num, total_steps)`, sync or async, called as each step ends
(or is skipped)."""


def is_progress_event(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("event"), str) and "data" in item


class ProgressRelay:
    """Delivers stream events to an optional callback and an optional broadcaster."""

    def __init__(
        self, on_progress: OnProgress | None = None, broadcaster: Broadcaster | None = None
    ) -> None:
        self.on_progress = on_progress
        self.broadcaster = broadcaster

    async def deliver(self, event: ProgressEvent) -> None:
        name, data = event["event"], cast(dict[str, Any], event["data"])
        if self.broadcaster is not None:
            await _guarded(f"broadcast of {name}", self.broadcaster.broadcast, name, data)
        if self.on_progress is not None and (status := _STEP_ENDS.get(name)) is not None:
            label = ("" if status == "completed" else f"[{status.capitalize()}] ") + data[
                "description"
            ]
            await _guarded(
                f"on_progress for {name}", self.on_progress, label, data["step"], data["total"]
            )


async def _guarded(what: str, hook: Callable[..., Any], *args: Any) -> None:
    try:
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.warning("Agentic loop: %s raised; the run goes on", what, exc_info=True)
