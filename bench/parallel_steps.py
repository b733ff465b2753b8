"""Steps side by side: how close a plan of two independent chains runs to its critical path.

Run from the repository root:

    python bench/parallel_steps.py [--latency 0.2] [--runs 5]

The Ollama-protocol test server (tests/ollama_server.py) answers every chat request after
`--latency` seconds, through the real ChatOllama client (`load_model("ollama:test-model")`
with OLLAMA_HOST set to it). Planning (the request with a JSON schema in `format`) gets a
typed plan of 6 steps in two independent chains, 1 -> 2 -> 3 and 4 -> 5 -> 6; a step
prompt ("Step N/6: ...") gets a short result; the answer prompt a short text.

The whole loop runs with max_parallel=4 and with max_parallel=1, on the same plan, with
the package's InMemorySaver (`agentic_loop.checkpointer()`) and durability="sync",
`--runs` times each after a warm-up run. The steps' wall time runs from the first
`agentic.step_started` event to the last `agentic.step_complete` (stamped as they arrive
on the custom stream), against the critical path, 3 x latency (goal for max_parallel=4:
within 1.15x). The time in it when no step request was waiting on the server is what the
client and the framework cost: starting and ending the model calls, checkpoints, the
`schedule` node and the supersteps' bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make `agentic_loop` and the test server importable.
ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from ollama_server import OllamaTestServer, Reply, last_prompt, step_of  # noqa: E402

from agentic_loop import checkpointer, create_agentic_loop, events, load_model  # noqa: E402
from agentic_loop.core.dependencies import ready_steps  # noqa: E402

TASK = "Compare two cities for a weekend trip"
DEPENDS_ON = [[], [1], [2], [], [4], [5]]  # by step, from 1: chains 1->2->3 and 4->5->6
STEPS = len(DEPENDS_ON)
CHAIN_LENGTH = 3  # steps on the critical path
SETTINGS = (4, 1)  # max_parallel
GOAL = 1.15  # steps' wall time / critical path, for max_parallel=4
ANSWER_ASK = "answer to the task for the person who asked"


def typed_plan() -> str:
    """The plan's JSON, as a model held to `dependencies.plan_schema` writes it."""
    steps = [
        {"id": n, "description": f"Look into part {n} of the comparison", "depends_on": deps}
        for n, deps in enumerate(DEPENDS_ON, 1)
    ]
    return json.dumps({"steps": steps})


@dataclass
class ServerLog:
    """When the server received each step request and when it finished waiting to reply."""

    calls: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()

    def busy(self) -> float:
        """Seconds during which at least one step request was waiting on the model."""
        with self.lock:
            calls = sorted(self.calls)
        total, reach = 0.0, float("-inf")
        for start, end in calls:
            total += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        return total


def answer_after(latency: float, log: ServerLog):
    """The server's `reply`: a plan, a step's result or the answer, each after `latency`."""
    plan = typed_plan()

    def reply(request: dict[str, Any]) -> Reply:
        arrived = time.perf_counter()
        time.sleep(latency)  # each request has a thread of its own (ThreadingHTTPServer)
        if request.get("format"):
            return Reply(plan)
        if (step := step_of(request)) is not None:
            with log.lock:
                log.calls.append((arrived, time.perf_counter()))
            return Reply(f"Part {step} looks fine.")
        if ANSWER_ASK in last_prompt(request):
            return Reply("Both cities suit a weekend; the first is cheaper.")
        raise AssertionError(f"unexpected request: {last_prompt(request)!r}")

    return reply


@dataclass
class Timing:
    steps_s: float
    """From the first step's start to the last step's end."""
    busy_s: float
    """Of that, the time at least one step waited on the model (`ServerLog.busy`)."""
    run_s: float
    """The whole run: plan, steps, answer and summary."""


async def timed_run(graph, log: ServerLog) -> Timing:
    config = {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex}"}}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    log.reset()
    begun = time.perf_counter()
    async for event in graph.astream(
        {"task": TASK}, config, stream_mode="custom", durability="sync"
    ):
        now = time.perf_counter()
        if event["event"] == events.STEP_STARTED:
            started[event["data"]["step"]] = now
        elif event["event"] == events.STEP_COMPLETE:
            ended[event["data"]["step"]] = now
    run_s = time.perf_counter() - begun
    result = (await graph.aget_state(config)).values["result"]
    if (
        result.status != "completed"
        or result.depends_on != DEPENDS_ON
        or len(started) != STEPS
        or len(ended) != STEPS
    ):
        raise SystemExit(f"benchmark run did not complete its {STEPS} steps: {result!r}")
    return Timing(max(ended.values()) - min(started.values()), log.busy(), run_s)


async def measure(latency: float, runs: int, log: ServerLog) -> dict[int, list[Timing]]:
    model = load_model("ollama:test-model")
    timings: dict[int, list[Timing]] = {}
    for max_parallel in SETTINGS:
        graph = create_agentic_loop(model, checkpointer=checkpointer(), max_parallel=max_parallel)
        await timed_run(graph, log)  # warm-up: connections, imports, caches
        timings[max_parallel] = [await timed_run(graph, log) for _ in range(runs)]
    return timings


def rounds(max_parallel: int) -> int:
    """Rounds of steps the plan takes (each step is one model call, so one round)."""
    finished: set[int] = set()
    count = 0
    while len(finished) < STEPS:
        finished.update(ready_steps(DEPENDS_ON, finished, set())[:max_parallel])
        count += 1
    return count


def report(timings: dict[int, list[Timing]], latency: float, runs: int) -> None:
    critical = CHAIN_LENGTH * latency

    def median(values) -> float:
        return statistics.median(list(values))

    def ms(values: list[float]) -> str:
        return f"{median(values) * 1000:.0f} ({max(values) * 1000:.0f})"

    def per(p: int, measure) -> list[float]:
        return [measure(t) for t in timings[p]]

    rows = [
        ("critical path (3 x latency), ms", *(f"{critical * 1000:.0f}" for _ in SETTINGS)),
        ("steps' wall time, ms", *(ms(per(p, lambda t: t.steps_s)) for p in SETTINGS)),
        (
            "steps' wall / critical path",
            *(
                f"{median(per(p, lambda t: t.steps_s)) / critical:.3f}x "
                f"({max(per(p, lambda t: t.steps_s)) / critical:.3f}x)"
                for p in SETTINGS
            ),
        ),
        ("rounds of steps", *(str(rounds(p)) for p in SETTINGS)),
        (
            "steps' wall with no model call waiting, ms",
            *(ms(per(p, lambda t: t.steps_s - t.busy_s)) for p in SETTINGS),
        ),
        (
            "  the same, per round, ms",
            *(ms(per(p, lambda t, p=p: (t.steps_s - t.busy_s) / rounds(p))) for p in SETTINGS),
        ),
        ("whole run, ms", *(ms(per(p, lambda t: t.run_s)) for p in SETTINGS)),
        (
            "model waits in a row (plan, rounds, answer), ms",
            *(f"{(rounds(p) + 2) * latency * 1000:.0f}" for p in SETTINGS),
        ),
    ]
    ratio = median(per(SETTINGS[0], lambda t: t.steps_s)) / critical
    print(
        f"Python {platform.python_version()}, langgraph {version('langgraph')}, "
        f"langchain-core {version('langchain-core')}, langchain-ollama "
        f"{version('langchain-ollama')}, {os.cpu_count()} CPUs; latency "
        f"{latency * 1000:.0f} ms, {runs} runs each after a warm-up: median (worst)"
    )
    print()
    header = ("measure", *(f"max_parallel={p}" for p in SETTINGS))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print()
    verdict = "ok" if ratio <= GOAL else "MISSED"
    print(f"Goal for max_parallel={SETTINGS[0]}: steps' wall <= {GOAL}x critical path: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model reply")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.latency <= 0 or args.runs < 1:
        parser.error("--latency must be positive and --runs at least 1")
    log = ServerLog()
    with OllamaTestServer(answer_after(args.latency, log)) as server:
        os.environ["OLLAMA_HOST"] = server.url  # read by the ollama client ChatOllama makes
        timings = asyncio.run(measure(args.latency, args.runs, log))
    report(timings, args.latency, args.runs)


if __name__ == "__main__":
    main()
