"""The CLI's run limits (--max-parallel, --step-timeout, --max-seconds, --max-tokens and
their environment variables): checked before anything runs, stored with the run, kept by
`resume`, and shown by `run` and `show`; over the Ollama-protocol test server, whose every
reply reports one prompt token and one reply token."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of
from typer.testing import CliRunner

from agentic_loop import LoopOptions
from agentic_loop.faces.cli import app
from agentic_loop.faces.terminal import short_count
from agentic_loop.runs.store import load_run, open_store

pytestmark = pytest.mark.integration

PLAN = ["Pick a beach", "Book a room", "Pack a bag"]

INT_FLAGS = [
    ("--max-parallel", "AGENTIC_LOOP_MAX_PARALLEL"),
    ("--max-tokens", "AGENTIC_LOOP_MAX_TOKENS"),
]
SECONDS_FLAGS = [
    ("--step-timeout", "AGENTIC_LOOP_STEP_TIMEOUT"),
    ("--max-seconds", "AGENTIC_LOOP_MAX_SECONDS"),
]
BAD_VALUES = ["0", "-1", "ten", "", "nan", "inf", "1e400", "99999999999999999999999"]
RANGES = {
    "--max-parallel": "a whole number from 1 to 64",
    "--max-tokens": "a whole number from 1 to 1000000000",
    "--step-timeout": "a number of seconds above 0 and up to 604800",
    "--max-seconds": "a number of seconds above 0 and up to 604800",
}
BAD_CASES = [
    (flag, env, value)
    for flag, env in INT_FLAGS + SECONDS_FLAGS
    for value in [*BAD_VALUES, *(["2.5"] if (flag, env) in INT_FLAGS else ["1e9"])]
]


@pytest.fixture
def server():
    with OllamaTestServer(plan_or_step(PLAN)) as running:
        yield running


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


@pytest.fixture
def agentic_loop(server: OllamaTestServer, db: Path):
    """Runs the CLI in-process against the test server and a fresh store; `env` adds to
    the environment it sees."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        env = {"OLLAMA_HOST": server.url, "AGENTIC_LOOP_MODEL": "ollama:test-model", **(env or {})}
        return runner.invoke(app, [*args, "--db", str(db)], input=input, env=env)

    return invoke


def run_nowhere(db: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The CLI with a model no one serves: only a check made before any call can answer."""
    env = {"OLLAMA_HOST": "127.0.0.1:9", "AGENTIC_LOOP_MODEL": "ollama:test-model", **(env or {})}
    return CliRunner().invoke(app, [*args, "--db", str(db)], env=env)


def stored_options(db: Path, thread_id: str) -> LoopOptions:
    async def read() -> LoopOptions:
        async with open_store(db, read_only=True) as saver:
            stored = await load_run(saver, thread_id)
            assert stored is not None
            assert stored.options.model == "ollama:test-model"  # the model it ran with
            return stored.options.replace(model=None)

    return asyncio.run(read())


@pytest.mark.parametrize(("flag", "env", "value"), BAD_CASES)
def test_a_bad_limit_from_a_flag_is_one_line_before_anything_runs(db, flag, env, value) -> None:
    done = run_nowhere(db, "run", "Plan a trip", f"{flag}={value}")
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [f"error: {flag} must be {RANGES[flag]}, got {value!r}"], (
        done.stderr
    )
    assert done.stdout == ""
    assert not db.exists()  # nothing stored, so no model was called either


@pytest.mark.parametrize(("flag", "env", "value"), [c for c in BAD_CASES if c[2]])
def test_a_bad_limit_from_the_environment_names_the_variable(db, flag, env, value) -> None:
    done = run_nowhere(db, "run", "Plan a trip", env={env: value})
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [f"error: {env} must be {RANGES[flag]}, got {value!r}"], (
        done.stderr
    )
    assert not db.exists()  # nothing stored, so no model was called either


def test_a_flag_wins_over_its_environment_variable(agentic_loop, db) -> None:
    env = {"AGENTIC_LOOP_MAX_TOKENS": "junk", "AGENTIC_LOOP_MAX_PARALLEL": "2"}
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--max-tokens", "100", env=env)
    assert done.exit_code == 0, done.output
    assert stored_options(db, "t") == LoopOptions(max_parallel=2, max_tokens=100)


def test_the_token_budget_skips_the_steps_left_and_says_so(agentic_loop) -> None:
    # Planning takes 2 tokens and each step 2 more: with 3, step 1 runs and the rest wait.
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--max-tokens", "3")
    shown = agentic_loop("show", "t")
    as_json = agentic_loop("show", "t", "--json")
    listed = agentic_loop("runs")
    assert done.exit_code == 1
    assert "✓ step 1: Did step 1." in done.stdout
    for step in (2, 3):
        assert f"– skipped step {step}: the run's token budget (3, max_tokens) ran out" in (
            done.stdout
        )
    assert (
        "partial Plan a trip: Completed 1/3 steps, 2 skipped. "
        "Stopped early: the run's max_tokens budget ran out."
    ) in done.stdout
    assert "3 tokens in, 3 out; the max_tokens budget (3) ran out" in shown.stdout
    assert "1. Pick a beach — completed, " in shown.stdout
    assert "1 token in, 1 out" in shown.stdout
    assert "2. Book a room — skipped\nSkipped: the run's token budget" in shown.stdout
    result = json.loads(as_json.stdout)
    assert [s["status"] for s in result["steps"]] == ["completed", "skipped", "skipped"]
    assert result["budget_spent"] == "max_tokens"
    assert (result["tokens_in"], result["tokens_out"]) == (3, 3)  # plan, step 1, answer
    assert result["depends_on"] == [[], [], []]
    assert [(s["tokens_in"], s["tokens_out"]) for s in result["steps"]] == [(1, 1), (0, 0), (0, 0)]
    assert re.search(r"│ partial\s+│ 1/3\s+│ 6 ", listed.stdout)  # steps that ran; tokens


def test_a_token_budget_spent_by_planning_runs_no_step(agentic_loop) -> None:
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--max-tokens", "1", "--json")
    result = json.loads(done.stdout)
    assert done.exit_code == 1
    assert result["status"] == "failed"  # nothing was done
    assert [s["status"] for s in result["steps"]] == ["skipped"] * 3
    assert "Stopped early: the run's max_tokens budget ran out." in result["summary"]


def test_a_step_held_past_its_timeout_is_adapted(agentic_loop, server) -> None:
    release = threading.Event()
    normal = plan_or_step(PLAN)
    held: list[int] = []

    def reply(request: dict[str, Any]) -> Reply:
        if step_of(request) == 2 and not held:
            held.append(2)
            return Reply("never sent", hold=release)
        return normal(request)

    server.reply = reply
    try:
        done = agentic_loop("run", "Plan a trip", "--thread", "t", "--step-timeout", "1", "--json")
    finally:
        release.set()
    assert done.exit_code == 0, done.output
    assert (
        "↻ adapted step 2: Tried another way. "
        "(it failed first: the step timed out after 1 s (step_timeout))" in done.stderr
    )
    result = json.loads(done.stdout)
    assert [s["status"] for s in result["steps"]] == ["completed", "adapted", "completed"]
    assert result["steps"][1]["duration_ms"] >= 1000
    assert result["budget_spent"] is None


def test_the_limits_are_stored_and_resume_keeps_them(agentic_loop, server, db) -> None:
    limits = ["--max-parallel", "2", "--step-timeout", "30"]
    env = {"AGENTIC_LOOP_MAX_SECONDS": "60", "AGENTIC_LOOP_MAX_TOKENS": "3"}
    waiting = agentic_loop("run", "Plan a trip", "--thread", "t", "--review", *limits, env=env)
    expected = LoopOptions(
        review_plan=True, max_parallel=2, step_timeout=30.0, max_seconds=60.0, max_tokens=3
    )
    assert waiting.exit_code == 1  # no answer to the review: the run waits, stored
    assert stored_options(db, "t") == expected

    # Other values in the environment do not change a stored run.
    other = {"AGENTIC_LOOP_MAX_TOKENS": "1000", "AGENTIC_LOOP_MAX_PARALLEL": "junk"}
    resumed = agentic_loop("resume", "t", "--json", input="a\n", env=other)
    assert resumed.exit_code == 1
    result = json.loads(resumed.stdout)
    assert result["budget_spent"] == "max_tokens"
    assert [s["status"] for s in result["steps"]] == ["completed", "skipped", "skipped"]
    assert stored_options(db, "t") == expected

    before = len(server.chat_requests())
    again = agentic_loop("resume", "t", "--from-step", "1", "--json", env=other)
    assert again.exit_code == 1
    assert json.loads(again.stdout)["budget_spent"] == "max_tokens"
    assert [step_of(r) for r in server.chat_requests()[before:]] == [1, None]  # step 1, answer
    assert stored_options(db, "t") == expected


@pytest.mark.parametrize(
    ("options", "metadata"),
    [
        (LoopOptions(), {"max_parallel": 4}),
        (
            LoopOptions(max_parallel=1, step_timeout=2.5, max_seconds=60.0, max_tokens=500),
            {"max_parallel": 1, "step_timeout": 2.5, "max_seconds": 60.0, "max_tokens": 500},
        ),
    ],
)
def test_run_options_carry_the_limits_in_checkpoint_metadata(
    options: LoopOptions, metadata: dict[str, Any]
) -> None:
    stored = options.to_metadata()
    limits = {"max_parallel", "step_timeout", "max_seconds", "max_tokens"}
    assert {key: value for key, value in stored.items() if key in limits} == metadata
    assert LoopOptions.from_metadata(stored) == options


def test_runs_stored_before_the_limits_read_with_defaults() -> None:
    old = {"max_tool_calls": 8, "replan": "on_failure", "max_replans": 3, "reply_tokens": 1024}
    assert LoopOptions.from_metadata(old) == LoopOptions()


@pytest.mark.parametrize(
    ("number", "shown"),
    [(0, "0"), (950, "950"), (1234, "1.2k"), (35_400, "35k"), (1_250_000, "1.2M")],
)
def test_token_counts_are_short_in_the_runs_table(number: int, shown: str) -> None:
    assert short_count(number) == shown
