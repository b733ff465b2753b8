"""When a step's model and tool calls must end: at the step's own deadline
(`step_timeout`) or when the run's time budget (`max_seconds`) runs out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentic_loop.core.settings import Settings
from agentic_loop.core.state import StepTask


def deadline(task: StepTask) -> float | None:
    """When the step's calls must end: at its own deadline or the run's, if either."""
    times = [t for t in (task["step_deadline"], task["run_deadline"]) if t is not None]
    return min(times, default=None)


class DeadlinePassed(Exception):
    """A step's call was cancelled at its deadline."""


async def timed(coroutine: Any, task: StepTask) -> Any:
    """`await coroutine`, cancelled with DeadlinePassed at the step's deadline. A
    TimeoutError of the call's own (a client's timeout) passes through as it is."""
    ends = deadline(task)
    if ends is None:
        return await coroutine
    limit = asyncio.timeout(ends - time.time())
    try:
        async with limit:
            return await coroutine
    except TimeoutError:
        if limit.expired():
            raise DeadlinePassed from None
        raise


def stopped_by_budget(task: StepTask) -> bool:
    """Whether the run's time budget, not the step's own timeout, ran out."""
    return task["run_deadline"] is not None and time.time() >= task["run_deadline"] - 0.05


def timeout_text(task: StepTask, settings: Settings) -> str:
    if stopped_by_budget(task):
        return f"stopped when the run's time budget ({settings.options.max_seconds:g} s) ran out"
    return f"the step timed out after {settings.options.step_timeout:g} s (step_timeout)"
