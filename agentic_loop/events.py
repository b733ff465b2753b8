"""Progress events: their names, and their delivery to callbacks and broadcasters.

Nodes write each event to LangGraph's custom stream as `{"event": name, "data": payload}`.
`ProgressRelay` passes those on to an `on_progress` callback and a broadcaster; a hook
that raises an `Exception` is logged and never changes the run. One that raises
`KeyboardInterrupt`, `SystemExit` or `asyncio.CancelledError` stops the run as a Ctrl-C
does: what finished is stored, and resuming the thread runs the rest.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypedDict

logger = logging.getLogger(__name__)

PLAN_READY = "agentic.plan_ready"
PLAN_FAILED = "agentic.plan_failed"
PLAN_REVIEWED = "agentic.plan_reviewed"
PLAN_REVISED = "agentic.plan_revised"
STEP_STARTED = "agentic.step_started"
STEP_COMPLETE = "agentic.step_complete"
STEP_ADAPTED = "agentic.step_adapted"
STEP_FAILED = "agentic.step_failed"
STEP_SKIPPED = "agentic.step_skipped"
TOOL_CALLED = "agentic.tool_called"
TOOL_RESULT = "agentic.tool_result"
ANSWER_READY = "agentic.answer_ready"
TASK_COMPLETE = "agentic.task_complete"

PREVIEW_CHARS = 200
"""Results in event payloads are cut to this many characters (summaries to 300)."""


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis: a preview for displays."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProgressEvent(TypedDict):
    """One item of the graph's custom stream."""

    event: str
    data: dict[str, Any]


def tool_called(task_id: str, step: int, tool: str, args: dict[str, Any]) -> ProgressEvent:
    """A step is about to call `tool` (or to ask a reviewer whether it may)."""
    preview = one_line(json.dumps(args, ensure_ascii=False, default=str))
    return {
        "event": TOOL_CALLED,
        "data": {"task_id": task_id, "step": step, "tool": tool, "args": preview},
    }


def tool_result(
    task_id: str, step: int, tool: str, result: str, status: str, duration_ms: int
) -> ProgressEvent:
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


def step_skipped(
    task_id: str, step: int, total: int, description: str, reason: str
) -> ProgressEvent:
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
        name, data = event["event"], event["data"]
        if self.broadcaster is not None:
            await _guarded(f"broadcast of {name}", self.broadcaster.broadcast, name, data)
        if self.on_progress is not None and name in _STEP_LABELS:
            label = _STEP_LABELS[name] + data["description"]
            await _guarded(
                f"on_progress for {name}", self.on_progress, label, data["step"], data["total"]
            )


_STEP_LABELS = {
    STEP_COMPLETE: "",
    STEP_ADAPTED: "[Adapted] ",
    STEP_FAILED: "[Failed] ",
    STEP_SKIPPED: "[Skipped] ",
}


async def _guarded(what: str, hook: Callable[..., Any], *args: Any) -> None:
    try:
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.warning("Agentic loop: %s raised; the run goes on", what, exc_info=True)
