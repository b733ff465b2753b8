"""Framework cost per tool round trip, for the README.

Run from the repository root:

    python bench/tool_round_trip.py [--round-trips 20] [--repeats 15]

A round trip: a model turn asking for a tool, the tool call (a `Send` through LangGraph's
`ToolNode`), the model turn that sees its result. With a fake model answering at once and
a trivial async tool, it times a 1-step run making N round trips (one call per turn) and
the same run making none: (time(N) - time(0)) / N, median of the repeats after a warm-up;
with no checkpointer, InMemorySaver and the CLI's SQLite store (durability="sync"). The
growing conversation and checkpoints make it an average over turns 1..N. Less one model
call and one tool call timed outside the graph, it leaves the framework's share.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from agentic_loop.core import prompts
from agentic_loop.core.events import ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.runs.store import open_store
from agentic_loop.runs.streaming import stream_run

TASK = "Echo a few words"
WARM_UP = 3  # first repeats, not counted
CALLS_TIMED = 2000  # per repeat, for the model and the tool on their own


def echo_call(k: int) -> ToolCall:
    return {"name": "echo", "args": {"text": f"w{k}"}, "id": f"c{k}", "type": "tool_call"}


@tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


class FakeChatModel(BaseChatModel):
    """Plans one step; in it, asks for `echo` until it has seen `round_trips` results."""

    round_trips: int

    @property
    def _llm_type(self) -> str:
        return "fake-bench"

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChatModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("the benchmark only calls the model asynchronously")

    async def _agenerate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs
    ) -> ChatResult:
        seen = sum(isinstance(m, ToolMessage) for m in messages)
        if "Break this task" in messages[-1].text:
            reply = AIMessage("1. Echo the words")
        elif seen < self.round_trips:
            reply = AIMessage("", tool_calls=[echo_call(seen)])
        else:
            reply = AIMessage("done")
        return ChatResult(generations=[ChatGeneration(message=reply)])


async def per_call(call, repeats: int) -> float:
    """Median seconds per `await call()`, over `repeats` batches of CALLS_TIMED calls."""
    times = []
    for _ in range(WARM_UP + repeats):
        gc.collect()
        started = time.perf_counter()
        for _ in range(CALLS_TIMED):
            await call()
        times.append((time.perf_counter() - started) / CALLS_TIMED)
    return statistics.median(times[WARM_UP:])


async def timed_run(graph, round_trips: int) -> float:
    """Seconds for one run, checked to have made its `round_trips` tool calls."""
    config = {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex}"}}
    started = time.perf_counter()
    result = await stream_run(graph, {"task": TASK}, config, ProgressRelay(), "sync")
    elapsed = time.perf_counter() - started
    made = sum(len(step.tool_calls) for step in result.steps)
    if result.status != "completed" or made != round_trips:
        raise SystemExit(f"benchmark run did not make its {round_trips} tool calls: {result!r}")
    return elapsed


async def round_trip_cost(checkpointer, round_trips: int, repeats: int) -> float:
    """Median seconds per round trip: (time(N) - time(0)) / N, the two runs side by side."""
    options = {"checkpointer": checkpointer, "tools": [echo], "max_tool_calls": round_trips}
    models = FakeChatModel(round_trips=0), FakeChatModel(round_trips=round_trips)
    zero, many = (create_agentic_loop(model, **options) for model in models)
    costs = []
    for _ in range(WARM_UP + repeats):
        gc.collect()
        many_s = await timed_run(many, round_trips)
        costs.append((many_s - await timed_run(zero, 0)) / round_trips)
    return statistics.median(costs[WARM_UP:])


async def measure(round_trips: int, repeats: int) -> list[tuple[str, float]]:
    model = FakeChatModel(round_trips=round_trips)
    first_turn = prompts.CAPABLE.step_messages(TASK, 1, 1, "Echo the words", [], ["echo"])
    model_s = await per_call(lambda: model.ainvoke(first_turn), repeats)
    tool_s = await per_call(lambda: echo.ainvoke(echo_call(0)), repeats)
    rows = [("fake model ainvoke", model_s), ("echo tool ainvoke", tool_s)]
    with tempfile.TemporaryDirectory() as folder:
        async with open_store(Path(folder) / "runs.sqlite") as sqlite:
            stores = (
                ("no checkpointer", None),
                ("InMemorySaver, sync", InMemorySaver()),
                ("SQLite, sync", sqlite),
            )
            for label, checkpointer in stores:
                trip_s = await round_trip_cost(checkpointer, round_trips, repeats)
                rows.append((f"{label}: round trip", trip_s))
                rows.append((f"{label}: framework share", trip_s - model_s - tool_s))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20, help="N, at least 1")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    if args.round_trips < 1 or args.repeats < 1:
        parser.error("--round-trips and --repeats must be at least 1")
    rows = asyncio.run(measure(args.round_trips, args.repeats))

    print(
        f"Python {platform.python_version()}, langgraph {version('langgraph')}, "
        f"langchain-core {version('langchain-core')}, {os.cpu_count()} CPUs; "
        f"N={args.round_trips} round trips, median of {args.repeats}"
    )
    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}}  ms per round trip\n{'-' * width}  {'-' * 17}")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds * 1000:8.3f}")


if __name__ == "__main__":
    main()
