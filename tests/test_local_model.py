"""The embedded SmolLM2-135M model, run for real through llama-cpp-python."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentic_loop import local_model, prompts
from agentic_loop.local_model import LocalChatModel
from agentic_loop.parsing import parse_plan
from agentic_loop.runner import run_agentic_loop

pytestmark = pytest.mark.real_model

EVERYDAY_TASKS = [
    "Plan a weekend trip to the coast",
    "Organise a birthday party",
    "Clean the kitchen",
    "Write a cover letter for a job",
    "Start a vegetable garden",
]


@pytest.fixture(scope="module")
def model() -> LocalChatModel:
    return LocalChatModel()


def test_sync_call_and_stream(model: LocalChatModel) -> None:
    assert model.invoke("Say hello.").text.strip()
    chunks = [chunk.text for chunk in model.stream("Count from one to five.")]
    assert len(chunks) > 1 and "".join(chunks).strip()


async def test_async_calls_are_serialised_and_leave_the_event_loop_free(
    model: LocalChatModel,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    replies = await asyncio.gather(*(model.ainvoke(f"Name fruit number {i}.") for i in range(3)))
    elapsed = time.perf_counter() - started
    ticking.cancel()
    assert all(reply.text.strip() for reply in replies)
    assert ticks >= elapsed / 0.01 * 0.5  # the loop kept running while the model worked
    assert len(local_model._models) == 1  # loaded once, however many calls


def test_token_count_fits_the_window(model: LocalChatModel) -> None:
    short = model.get_num_tokens_from_messages(prompts.plan_messages("Bake bread", 5))
    long = model.get_num_tokens_from_messages(prompts.plan_messages("Bake bread " * 500, 5))
    assert 20 < short < long


@pytest.mark.parametrize("task", EVERYDAY_TASKS)
def test_planning_everyday_tasks(model: LocalChatModel, task: str) -> None:
    steps = parse_plan(model.invoke(prompts.plan_messages(task, 10)).text)
    assert 2 <= len(steps), steps
    assert all(step.strip() for step in steps)


async def test_whole_run(model: LocalChatModel) -> None:
    result = await run_agentic_loop("Plan a weekend trip to the coast", model=model, max_steps=3)
    assert result.status in ("completed", "partial")
    assert result.summary.startswith("Plan a weekend trip to the coast: Completed")
    assert 2 <= len(result.steps) <= 3
    assert all(step.result for step in result.steps)


async def test_huge_task_is_cut_to_fit_the_window(model: LocalChatModel) -> None:
    task = "Plan a weekend trip to the coast. " + "Consider every detail carefully. " * 800
    assert model.get_num_tokens_from_messages(prompts.plan_messages(task, 3)) > 2048
    result = await run_agentic_loop(task, model=model, max_steps=2)
    # Without the cut, llama.cpp refuses the prompt and planning fails with that error.
    assert "exceed context window" not in result.summary
    assert "Requested tokens" not in result.summary


def _steps_stored(db: Path, thread: str) -> int:
    """How many steps the latest checkpoint of `thread` holds (0 before the first)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT COUNT(*) FROM writes WHERE thread_id = ? AND channel = 'steps'", (thread,)
            ).fetchone()
    except sqlite3.OperationalError:
        return 0  # tables not made yet
    return rows[0]


def test_killed_run_resumes(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    args = ["--db", str(db), "--model", "local"]
    task = "Plan a weekend trip to the coast"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentic_loop",
            "run",
            task,
            "--thread",
            "t",
            "--max-steps",
            "3",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OLLAMA_HOST": "127.0.0.1:9"},
    )
    deadline = time.monotonic() + 120
    while _steps_stored(db, "t") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait for step 1 to be stored; step 2 is then in flight
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    shown = subprocess.run(
        [sys.executable, "-m", "agentic_loop", "show", "t", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    before = json.loads(shown.stdout)
    assert before["status"] == "unfinished" and len(before["steps"]) >= 1
    done = subprocess.run(
        [sys.executable, "-m", "agentic_loop", "resume", "t", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    after = json.loads(done.stdout)
    assert after["status"] in ("completed", "partial")
    assert after["steps"][: len(before["steps"])] == before["steps"]  # kept, not redone
    assert len(after["steps"]) == len(before["plan"])
