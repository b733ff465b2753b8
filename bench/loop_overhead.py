"""Loop overhead figures for the README.

Run from the repository root:

    python bench/loop_overhead.py

Measures, with a fake chat model (no network, nothing but loopback and a temp folder):

1. Concurrency: one 5-step run against a model that answers after 50 ms, then 100 such
   runs at once with `asyncio.gather`, and the ratio of the two wall times
   (goal: <= 1.5). Once through `run_agentic_loop` (builds and compiles a graph per
   call, and runs through the service: a lease needs a store, so none is taken here)
   and once through one compiled graph reused by every run. Best of 3 each.
2. Framework cost per node execution with a model that answers at once: N sequential
   5-step runs (9 nodes each: plan, schedule before the first step, 5 x execute, each
   step starting the next, answer, summarise) with no checkpointer, with
   InMemorySaver (durability="sync") and with the durable SQLite store
   (durability="sync"); and the cost of one fake model call on its own, so LangChain's
   model-call overhead can be told apart from LangGraph's (goals: <= 1 ms per step in
   memory, <= 5 ms with SQLite). Best of 5 each.
3. `python -m agentic_loop --help` wall time, median of 5 (goal: well under 0.5 s).

Prints a table, then one line of JSON with every number.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make `agentic_loop` importable.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from langchain_core.language_models.chat_models import BaseChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from agentic_loop.core import prompts  # noqa: E402
from agentic_loop.core.events import ProgressRelay  # noqa: E402
from agentic_loop.core.graph import create_agentic_loop  # noqa: E402
from agentic_loop.runs.runner import run_agentic_loop  # noqa: E402
from agentic_loop.runs.store import open_store  # noqa: E402
from agentic_loop.runs.streaming import stream_run  # noqa: E402

TASK = "Write a short report on benchmark overhead"
STEPS = 5
NODES_PER_RUN = STEPS + 4  # plan, schedule, 5 x execute, answer, summarise
MODEL_CALLS_PER_RUN = STEPS + 2  # plan, 5 x execute, answer
DELAY = 0.05
CONCURRENT = 100
REPEATS = 3  # concurrency figures
STEP_REPEATS = 5  # per-node figures: short, so the best of more tries is steadier
SEQUENTIAL_RUNS = 50
MODEL_CALLS_TIMED = 2000
HELP_RUNS = 5

PLAN_REPLY = "\n".join(f"{i}. {c}" for i, c in enumerate("abcde", 1))

GOALS = {
    "ratio": 1.5,
    "memory_ms_per_step": 1.0,
    "sqlite_ms_per_step": 5.0,
    "help_s": 0.5,
}


class FakeChatModel(BaseChatModel):
    """Answers a plan of 5 steps to the planning prompt and "done" to anything else."""

    delay: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "fake-bench"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        raise NotImplementedError("the benchmark only calls the model asynchronously")

    async def _agenerate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        text = PLAN_REPLY if "Break this task" in messages[-1].text else "done"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def check(result: Any) -> None:
    """Every timed run must really have run all of its steps."""
    if result.status != "completed" or len(result.steps) != STEPS:
        raise SystemExit(f"benchmark run did not complete its {STEPS} steps: {result!r}")


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"bench-{uuid.uuid4().hex}"}}


async def best_of(make_batch, repeats: int = REPEATS) -> float:
    """Least wall time, in seconds, of `repeats` awaits of `make_batch()`."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        await make_batch()
        best = min(best, time.perf_counter() - started)
    return best


# -- 1. Concurrency ------------------------------------------------------------------


async def concurrency() -> dict[str, Any]:
    model = FakeChatModel(delay=DELAY)

    async def api_run() -> None:
        check(await run_agentic_loop(TASK, model=model, checkpointer=InMemorySaver()))

    graph = create_agentic_loop(model, checkpointer=InMemorySaver())

    async def graph_run() -> None:
        check(await stream_run(graph, {"task": TASK}, thread(), ProgressRelay()))

    figures: dict[str, Any] = {}
    for name, one_run in (("run_agentic_loop", api_run), ("compiled_graph", graph_run)):
        await one_run()  # warm-up: imports, first compile, caches

        async def batch(n: int, one_run=one_run) -> None:
            await asyncio.gather(*(one_run() for _ in range(n)))

        single = await best_of(lambda batch=batch: batch(1))
        many = await best_of(lambda batch=batch: batch(CONCURRENT))
        figures[name] = {
            "single_s": single,
            "concurrent_s": many,
            "concurrent_runs": CONCURRENT,
            "ratio": many / single,
            # Wall time each run beyond the first adds: the event loop's CPU time per run.
            "added_ms_per_run": (many - single) * 1000 / (CONCURRENT - 1),
        }
    figures["ideal_single_s"] = MODEL_CALLS_PER_RUN * DELAY
    return figures


# -- 2. Framework cost per step ------------------------------------------------------


async def model_call_cost(model: FakeChatModel) -> float:
    """Seconds per `await model.ainvoke(messages)`, over plan and step prompts alike."""
    plan = prompts.CAPABLE.plan_messages(TASK, 10)
    step = prompts.CAPABLE.step_messages(TASK, 2, STEPS, "b", ["Step 1: done"])
    for _ in range(50):
        await model.ainvoke(step)

    async def calls() -> None:
        for i in range(MODEL_CALLS_TIMED):
            await model.ainvoke(plan if i % MODEL_CALLS_PER_RUN == 0 else step)

    return await best_of(calls, STEP_REPEATS) / MODEL_CALLS_TIMED


async def sequential_runs(graph, durability: str) -> float:
    """Seconds per 5-step run, over SEQUENTIAL_RUNS runs one after another."""
    for _ in range(3):  # warm-up
        check(await stream_run(graph, {"task": TASK}, thread(), ProgressRelay(), durability))

    async def runs() -> None:
        for _ in range(SEQUENTIAL_RUNS):
            check(await stream_run(graph, {"task": TASK}, thread(), ProgressRelay(), durability))

    return await best_of(runs, STEP_REPEATS) / SEQUENTIAL_RUNS


async def per_step() -> dict[str, Any]:
    model = FakeChatModel(delay=0.0)
    call_s = await model_call_cost(model)

    run_s: dict[str, float] = {}
    run_s["no_checkpointer"] = await sequential_runs(create_agentic_loop(model), "sync")
    run_s["in_memory_sync"] = await sequential_runs(
        create_agentic_loop(model, checkpointer=InMemorySaver()), "sync"
    )
    with tempfile.TemporaryDirectory(prefix="agentic-bench-") as tmpdir:
        async with open_store(Path(tmpdir) / "runs.sqlite") as saver:
            run_s["sqlite_sync"] = await sequential_runs(
                create_agentic_loop(model, checkpointer=saver), "sync"
            )

    figures: dict[str, Any] = {
        "model_call_ms": call_s * 1000,
        "runs": SEQUENTIAL_RUNS,
        "nodes_per_run": NODES_PER_RUN,
        "model_calls_per_run": MODEL_CALLS_PER_RUN,
    }
    for name, seconds in run_s.items():
        total_ms = seconds * 1000
        figures[name] = {
            "run_ms": total_ms,
            "ms_per_node": total_ms / NODES_PER_RUN,
            # The same, with the fake model's own calls taken out: LangGraph + this package.
            "ms_per_node_excl_model": (total_ms - MODEL_CALLS_PER_RUN * call_s * 1000)
            / NODES_PER_RUN,
        }
    return figures


# -- 3. CLI start-up ---------------------------------------------------------------


def help_time() -> dict[str, Any]:
    command = [sys.executable, "-m", "agentic_loop", "--help"]
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)  # warm .pyc
    times = []
    for _ in range(HELP_RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": HELP_RUNS,
    }


# -- Report --------------------------------------------------------------------------


def verdict(value: float, goal: float) -> str:
    return "ok" if value <= goal else "MISSED"


def ms(seconds: float, places: int = 1) -> str:
    return f"{seconds * 1000:8.{places}f} ms"


def report(conc: dict[str, Any], step: dict[str, Any], cli: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, value: str, goal: float | None = None, got: float = 0.0, unit="") -> None:
        if goal is None:
            rows.append((label, value, "", ""))
        else:
            rows.append((label, value, f"<= {goal:g}{unit}", verdict(got, goal)))

    for name in ("run_agentic_loop", "compiled_graph"):
        f = conc[name]
        rows.append(
            (
                f"{name}: 1 run (7 calls x 50 ms)",
                ms(f["single_s"]),
                f"ideal {conc['ideal_single_s'] * 1000:.0f} ms",
                "",
            )
        )
        row(f"{name}: {CONCURRENT} runs at once", ms(f["concurrent_s"]))
        row(f"{name}: added wall per extra run", f"{f['added_ms_per_run']:8.2f} ms")
        row(f"{name}: ratio", f"{f['ratio']:8.2f} x", GOALS["ratio"], f["ratio"])
    row("fake model ainvoke, per call", f"{step['model_call_ms']:8.3f} ms")
    labels = {
        "no_checkpointer": ("no checkpointer", None),
        "in_memory_sync": ("InMemorySaver, sync", GOALS["memory_ms_per_step"]),
        "sqlite_sync": ("SQLite, sync", GOALS["sqlite_ms_per_step"]),
    }
    for key, (label, goal) in labels.items():
        f = step[key]
        row(f"{label}: per 5-step run", f"{f['run_ms']:8.2f} ms")
        row(f"{label}: per node", f"{f['ms_per_node']:8.3f} ms", goal, f["ms_per_node"], " ms")
        row(f"{label}: per node excl. model call", f"{f['ms_per_node_excl_model']:8.3f} ms")
    row(
        f"agentic-loop --help, median of {cli['runs']}",
        ms(cli["median_s"]),
        GOALS["help_s"] * 1000,
        cli["median_s"] * 1000,
        " ms",
    )

    header = ("measure", "value", "goal", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(
        f"Python {platform.python_version()}, langgraph {version('langgraph')}, "
        f"langchain-core {version('langchain-core')}, {os.cpu_count()} CPUs; "
        f"best of {REPEATS} (concurrency) / {STEP_REPEATS} (per node, "
        f"{SEQUENTIAL_RUNS} sequential runs each)"
    )
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for cells in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


async def measure() -> tuple[dict[str, Any], dict[str, Any]]:
    return await concurrency(), await per_step()


def main() -> None:
    started = time.perf_counter()
    conc, step = asyncio.run(measure())
    cli = help_time()
    report(conc, step, cli)
    figures = {
        "python": platform.python_version(),
        "langgraph": version("langgraph"),
        "langchain_core": version("langchain-core"),
        "cpus": os.cpu_count(),
        "goals": GOALS,
        "concurrency": conc,
        "per_step": step,
        "help": cli,
        "bench_wall_s": time.perf_counter() - started,
    }
    print(json.dumps(rounded(figures)))


if __name__ == "__main__":
    main()
