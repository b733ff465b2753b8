"""A run stopped at any moment resumes: fault injection at every event boundary, and
signals at random moments to a real CLI process."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text, run_cli, spawn_cli, wait_until
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Durability
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of

from agentic_loop.core.events import ProgressEvent
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import load_run, open_store

STEPS = ["A", "B", "C"]
STOPS: list[type[BaseException]] = [KeyboardInterrupt, SystemExit, asyncio.CancelledError]
DURABILITIES: list[Durability] = ["sync", "async", "exit"]


def by_prompt(messages: list[BaseMessage]) -> str:
    """Plans the steps A, B, C and runs each step, in whatever order it is asked."""
    step = re.search(r"^Step \d+/\d+: (\w+)", messages[-1].text, re.MULTILINE)
    return f"did {step[1]}" if step else plan_text(*STEPS)


def model() -> ScriptedChatModel:
    return ScriptedChatModel(script=by_prompt)


def asked_steps(scripted: ScriptedChatModel) -> list[str]:
    """The steps a model was asked to run ("plan" for a planning call)."""
    found = (re.search(r"^Step \d+/\d+: (\w+)", p, re.MULTILINE) for p in scripted.prompts)
    return [step[1] if step else "plan" for step in found]


async def events_of_a_whole_run() -> int:
    seen: list[str] = []

    class Counting:
        async def broadcast(self, event: str, data: dict[str, Any]) -> None:
            seen.append(event)

    await run_agentic_loop("T", model=model(), broadcaster=Counting())
    return len(seen)


class StopAt:
    """A broadcaster that raises `stop` on its `at`-th event (from 1)."""

    def __init__(self, stop: type[BaseException], at: int) -> None:
        self.stop, self.at, self.seen = stop, at, 0

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        self.seen += 1
        if self.seen == self.at:
            raise self.stop()


@pytest.mark.parametrize("durability", DURABILITIES)
@pytest.mark.parametrize("stop", STOPS, ids=lambda s: s.__name__)
async def test_a_hook_that_stops_the_run_at_any_event_leaves_it_resumable(
    durability: Durability, stop: type[BaseException]
) -> None:
    total = await events_of_a_whole_run()
    assert total >= 2 * len(STEPS)
    for at in range(1, total + 1):
        saver = InMemorySaver()
        thread = f"stop-{at}"
        first = model()
        hook = StopAt(stop, at)
        with pytest.raises(stop):
            await run_agentic_loop(
                "T",
                model=first,
                checkpointer=saver,
                thread_id=thread,
                broadcaster=hook,
                durability=durability,
            )
        stored = await load_run(saver, thread)
        done = [] if stored is None else stored.steps
        finished = {step.description for step in done}

        second = model()
        result = await run_agentic_loop(
            "T", model=second, checkpointer=saver, thread_id=thread, durability=durability
        )
        where = f"{stop.__name__} at event {at} of {total}, durability {durability}"
        assert result.status == "completed", where
        assert [s.result for s in result.steps] == [f"did {s}" for s in STEPS], where
        assert finished.isdisjoint(asked_steps(second)), where
        if done:  # a stored plan is never made again
            assert "plan" not in asked_steps(second), where


async def test_an_on_progress_callback_that_stops_the_run_leaves_it_resumable(
    tmp_path: Path,
) -> None:
    """The same over the SQLite store, with the `on_progress` callback raising."""
    for stop in STOPS:
        for at in range(1, len(STEPS) + 1):
            db = tmp_path / f"{stop.__name__}-{at}.sqlite"
            calls = 0

            def on_progress(label: str, step: int, total: int, stop=stop, at=at) -> None:
                nonlocal calls
                calls += 1
                if calls == at:
                    raise stop()

            calls = 0
            async with open_store(db) as saver:
                with pytest.raises(stop):
                    await run_agentic_loop(
                        "T",
                        model=model(),
                        checkpointer=saver,
                        thread_id="t",
                        on_progress=on_progress,
                    )
            async with open_store(db) as saver:
                stored = await load_run(saver, "t")
                assert stored is not None and stored.result is None
                finished = {s.description for s in stored.steps}
                assert len(finished) >= at - 1
                second = model()
                result = await run_agentic_loop(
                    "T", model=second, checkpointer=saver, thread_id="t"
                )
            assert result.status == "completed", (stop, at)
            assert finished.isdisjoint(asked_steps(second)), (stop, at)


def test_a_relay_never_swallows_a_stop() -> None:
    from agentic_loop.core.events import ProgressRelay

    def on_progress(*args: Any) -> None:
        raise KeyboardInterrupt

    event: ProgressEvent = {
        "event": "agentic.step_complete",
        "data": {"description": "A", "step": 1, "total": 1},
    }
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(ProgressRelay(on_progress).deliver(event))


# --- signals to a real CLI process -------------------------------------------------------

PLAN = ["Pick a beach", "Book a room", "Pack a bag", "Check the weather"]
TRIALS_ENV = "AGENTIC_LOOP_FAULT_TRIALS"
SEED_ENV = "AGENTIC_LOOP_FAULT_SEED"
STOPPED = {signal.SIGINT: (130, -signal.SIGINT), signal.SIGTERM: (143, -signal.SIGTERM)}


def slow(reply: Any, seconds: float) -> Any:
    def answer(request: dict[str, Any]) -> Reply:
        time.sleep(seconds)
        return reply(request)

    return answer


def stored_steps(db: Path, thread: str) -> list[str] | None:
    """The descriptions of a stored run's finished steps; None if the store has no run."""

    async def look() -> list[str] | None:
        if not db.exists() or db.stat().st_size == 0:  # killed as it made the file
            return None
        async with open_store(db, read_only=True) as saver:
            stored = await load_run(saver, thread)
        return None if stored is None else [s.description for s in stored.steps]

    return asyncio.run(look())


def one_trial(tmp_path: Path, trial: int, rng: random.Random) -> str:
    """Stop `agentic-loop run` with a random signal at a random moment, then resume it."""
    sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
    # Starting the CLI takes seconds and the run under one: most trials count their
    # moment from the planning request, some from the start, to hit the CLI loading too.
    from_start = rng.random() < 0.2
    delay = rng.uniform(0.0, 3.0) if from_start else rng.uniform(0.0, 0.8)
    db, thread = tmp_path / f"runs-{trial}.sqlite", f"run-{trial}"
    since = "the start" if from_start else "planning"
    what = f"trial {trial}: {sig.name} {delay:.2f} s after {since}"
    with OllamaTestServer(slow(plan_or_step(PLAN), 0.1)) as server:
        proc = spawn_cli("run", "Plan a trip", "--db", str(db), "--thread", thread, host=server.url)
        try:
            if not from_start:  # (or the CLI's end, which the checks below explain)
                wait_until(
                    lambda: server.chat_requests() or proc.poll() is not None,
                    what=f"{what}: the planning request",
                    timeout=30,
                )
            time.sleep(delay)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        code = proc.returncode
        steps = stored_steps(db, thread)
        hint = f"agentic-loop resume {thread}" in err
        if code == 0:
            return f"{what}: finished first"
        assert "Traceback" not in err or code < 0, f"{what}: {err}"
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL, f"{what}: exit {code}"
        else:
            assert code in STOPPED[sig], f"{what}: exit {code}\n{err}"
            if code > 0:  # stopped cleanly: a resume command exactly when there is a run
                # (a Ctrl-C while the CLI still loads is typer's: exit 130, nothing said)
                assert hint == (steps is not None), f"{what}: {err}"
        if steps is None:
            assert not hint, f"{what}: resume command printed, nothing stored\n{err}"
            return f"{what}: exit {code}, nothing stored"
        asked_before = len(server.chat_requests())
        done = run_cli("resume", thread, "--db", str(db), "--json", host=server.url)
        assert done.returncode == 0, f"{what}: resume failed\n{done.stderr}"
        result = json.loads(done.stdout)
        assert result["status"] == "completed", f"{what}: {result}"
        assert [s["result"] for s in result["steps"]] == [
            f"Did step {i}." for i in range(1, len(PLAN) + 1)
        ], what
        again = [step_of(r) for r in server.chat_requests()[asked_before:]]
        finished = {PLAN.index(s) + 1 for s in steps}
        assert finished.isdisjoint(again), f"{what}: finished steps {finished} asked again {again}"
        return f"{what}: exit {code}, resumed after {len(steps)} stored steps"


@pytest.mark.integration
def test_a_cli_run_stopped_at_a_random_moment_resumes(tmp_path: Path) -> None:
    trials = int(os.environ.get(TRIALS_ENV, "12"))
    seed = int(os.environ.get(SEED_ENV, str(random.randrange(2**32))))
    rng = random.Random(seed)
    plans = [(trial, random.Random(rng.random())) for trial in range(trials)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(one_trial, tmp_path, trial, r) for trial, r in plans]
        try:
            outcomes = [f.result() for f in futures]
        except BaseException as exc:
            raise AssertionError(f"{exc}\nrerun with {SEED_ENV}={seed}") from exc
    print(f"seed {seed}:", *outcomes, sep="\n  ")


@pytest.mark.integration
@pytest.mark.parametrize("after", [0.05, 0.3, 0.6])
def test_a_ctrl_c_while_the_cli_loads_says_nothing_was_stored(tmp_path: Path, after: float) -> None:
    db = tmp_path / "runs.sqlite"
    with OllamaTestServer(plan_or_step(PLAN)) as server:
        proc = spawn_cli("run", "Plan a trip", "--db", str(db), "--thread", "t", host=server.url)
        time.sleep(after)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        asked = server.chat_requests()
    if proc.returncode == -signal.SIGINT:
        return  # it came before Python itself was listening: nothing ran
    assert proc.returncode == 130 and "Traceback" not in err, err
    if not asked:  # stopped before the run began
        assert "Stopped before anything ran; nothing was stored." in err, err
        assert stored_steps(db, "t") is None


async def test_a_run_stopped_between_a_step_and_its_router_carries_on(tmp_path: Path) -> None:
    """An async callback handler lets a stop land after a step node's writes and before its
    router's (the next steps' `Send`s); LangGraph keeps the first alone. The resume finds
    the run stranded and carries on from `schedule`, asking no finished step again."""
    from langchain_core.callbacks import AsyncCallbackHandler

    class Yielding(AsyncCallbackHandler):
        async def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0)

    for at in range(1, len(STEPS) + 1):
        db = tmp_path / f"stranded-{at}.sqlite"
        calls = 0

        def on_progress(label: str, step: int, total: int, at: int = at) -> None:
            nonlocal calls
            calls += 1
            if calls == at:
                raise KeyboardInterrupt

        async with open_store(db) as saver:
            with pytest.raises(KeyboardInterrupt):
                await run_agentic_loop(
                    "T", model=model(), checkpointer=saver, thread_id="t",
                    on_progress=on_progress, config={"callbacks": [Yielding()]},
                )  # fmt: skip
            finished = {s.description for s in (await load_run(saver, "t")).steps}  # type: ignore[union-attr]
            second = model()
            result = await run_agentic_loop("T", model=second, checkpointer=saver, thread_id="t")
        assert result.status == "completed", at
        assert [s.result for s in result.steps] == [f"did {s}" for s in STEPS], at
        assert finished.isdisjoint(asked_steps(second)), at
