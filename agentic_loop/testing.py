"""Testing your graph against a recorded run, with no model server and no tools.

A recording file (`agentic-loop show RUN --export run.json`) holds every model reply and
tool result of a run. These helpers turn it into what `build_graph` takes, so that a parent
graph with the loop inside runs in a test as the recorded run ran:

    from agentic_loop import build_graph
    from agentic_loop.testing import recorded_model, recorded_options, recorded_tools

    loop = build_graph(
        recorded_model("run.json"),
        tools=recorded_tools("run.json"),
        options=recorded_options("run.json"),
    )

The model answers each call with the reply recorded for the same node and step, and raises
`ReplayDiverged` (with a unified diff) at the first request that differs from the recorded
one: a changed prompt, a step's input, a tool's arguments. `recorded_answers` answers the
run's plan reviews and tool approvals as they were answered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from agentic_loop.core.options import LoopOptions
from agentic_loop.runs import replay as _replay
from agentic_loop.runs.recordings import Recording
from agentic_loop.runs.replay import RecordedChatModel, ReplayDiverged, ReplayReport

__all__ = [
    "RecordedChatModel",
    "Recording",
    "ReplayDiverged",
    "ReplayReport",
    "load_recording",
    "recorded_answers",
    "recorded_model",
    "recorded_options",
    "recorded_tools",
    "replay",
]

Source = str | Path | Recording
"""A recording file's path, or a recording read already."""


def load_recording(source: Source) -> Recording:
    """The recording in `source` (a file `show --export` wrote); `BadRecording` if not one."""
    return source if isinstance(source, Recording) else Recording.read(source)


def recorded_model(source: Source) -> RecordedChatModel:
    """A chat model answering from the recording, call by call (a new one each time: each
    answers the run once)."""
    return _replay.recorded_model(load_recording(source))


def recorded_tools(source: Source) -> list[BaseTool]:
    """The recorded run's tools (names, descriptions, schemas), each call answered with its
    recorded result."""
    return _replay.recorded_tools(load_recording(source))


def recorded_options(source: Source) -> LoopOptions:
    """The run's options, with what its graph chose from its model made explicit (the plan's
    format, the prompts, the step limit), so that the loop asks what the run asked."""
    recording = load_recording(source)
    return _replay.recorded_options(recording, _replay.recorded_tools(recording))


def recorded_answers(source: Source) -> Callable[[dict[str, Any]], Any]:
    """Answers an interrupt's payload (a plan review or a tool approval) as the run was
    answered; use it as `run_agentic_loop(..., review=..., approve=...)` or to build a
    `Command(resume=...)`."""
    return _replay.RecordedAnswers(load_recording(source))


async def replay(source: Source) -> ReplayReport:
    """Replay the recording through the current graph and compare (`agentic-loop replay`)."""
    return await _replay.replay(load_recording(source))
