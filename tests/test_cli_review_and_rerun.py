"""The CLI's plan review, run history and re-run from a step, over the Ollama test server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from langchain_ollama import ChatOllama
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of
from typer.testing import CliRunner

from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.faces.cli import app
from agentic_loop.runs.store import open_store

pytestmark = pytest.mark.integration

PLAN = ["Pick a beach", "Book a room", "Pack a bag"]


@pytest.fixture
def server():
    with OllamaTestServer(plan_or_step(PLAN)) as running:
        yield running


@pytest.fixture
def agentic_loop(server: OllamaTestServer, tmp_path: Path):
    """Runs the CLI in-process against the test server and a fresh store."""
    runner = CliRunner()
    env = {"OLLAMA_HOST": server.url, "AGENTIC_LOOP_MODEL": "ollama:test-model"}
    db = str(tmp_path / "runs.sqlite")

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [*args, "--db", db], input=input, env=env)

    return invoke


def asked_steps(server: OllamaTestServer) -> list[int | None]:
    return [step_of(r) for r in server.chat_requests()]


def test_review_approve_runs_the_plan(agentic_loop, server) -> None:
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--review", input="a\n")
    assert done.exit_code == 0, done.output
    assert "Run this plan? [a]pprove, [e]dit, [r]eject" in done.output
    assert "Plan approved." in done.output
    assert "Completed 3/3 steps" in done.output
    assert asked_steps(server) == [None, 1, 2, 3, None]  # plan, steps, answer


def test_review_edit_runs_the_typed_steps(agentic_loop, server) -> None:
    done = agentic_loop(
        "run", "Plan a trip", "--thread", "t", "--review", input="e\n1. Book a room\nPack\n\n"
    )
    assert done.exit_code == 0, done.output
    assert "Plan edited." in done.output
    shown = json.loads(agentic_loop("show", "t", "--json").output)
    assert [s["description"] for s in shown["steps"]] == ["Book a room", "Pack"]
    assert asked_steps(server) == [None, 1, 2, None]


def test_review_reject_ends_the_run_as_failed(agentic_loop, server) -> None:
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--review", input="r\ntoo vague\n")
    assert done.exit_code == 1
    assert "failed Plan rejected at review: too vague" in done.output
    assert asked_steps(server) == [None]


def test_unanswered_review_waits_and_resume_asks_again(agentic_loop, server) -> None:
    done = agentic_loop("run", "Plan a trip", "--thread", "t", "--review", input="")
    assert done.exit_code == 1
    assert "no answer to the plan review or tool approval; the run waits for one" in done.output
    assert "agentic-loop resume t --db" in done.output
    assert "awaiting review" in agentic_loop("runs").output

    resumed = agentic_loop("resume", "t", input="what\na\n")
    assert resumed.exit_code == 0, resumed.output
    assert "1. Pick a beach" in resumed.output  # the plan is shown again before the question
    assert "Answer a, e or r." in resumed.output
    assert asked_steps(server) == [None, 1, 2, 3, None]  # plan, steps, answer


def test_history_and_rerun_from_a_step(agentic_loop, server) -> None:
    assert agentic_loop("run", "Plan a trip", "--thread", "t").exit_code == 0
    history = json.loads(agentic_loop("show", "t", "--history", "--json").output)
    assert [c["steps_done"] for c in history] == [3, 3, 3, 2, 1, 0, 0, 0, 0]
    assert all(c["on_current_branch"] for c in history)

    table = agentic_loop("show", "t", "--history")
    assert "(end)" in table.output and "summarise" in table.output
    assert "agentic-loop resume t --from-step K" in table.output

    rerun = agentic_loop("resume", "t", "--from-step", "2", "--json")
    assert rerun.exit_code == 0, rerun.output
    assert "Running again from step 2, as a new branch" in rerun.output
    assert asked_steps(server) == [None, 1, 2, 3, None, 2, 3, None]

    after = json.loads(agentic_loop("show", "t", "--history", "--json").output)
    assert {c["checkpoint_id"] for c in history} < {c["checkpoint_id"] for c in after}
    assert [c["source"] for c in after if c["on_current_branch"]].count("update") == 1
    assert not after[len(after) - len(history)]["on_current_branch"]  # the old end


def test_resume_of_a_finished_run_points_to_from_step(agentic_loop) -> None:
    assert agentic_loop("run", "Plan a trip", "--thread", "t").exit_code == 0
    done = agentic_loop("resume", "t")
    assert done.exit_code == 0
    assert "already finished" in done.output and "--from-step K" in done.output


@pytest.mark.parametrize(
    ("step", "message"),
    [("0", "--from-step must be a whole number from 1 to 1000, got '0'"), ("9", "between 1 and 3")],
)
def test_rerun_from_a_step_out_of_range_is_refused(agentic_loop, server, step, message) -> None:
    assert agentic_loop("run", "Plan a trip", "--thread", "t").exit_code == 0
    done = agentic_loop("resume", "t", "--from-step", step)
    assert done.exit_code == 2
    assert message in done.output and "Traceback" not in done.output
    assert asked_steps(server) == [None, 1, 2, 3, None]  # plan, steps, answer


def test_history_of_an_unknown_thread(agentic_loop) -> None:
    assert agentic_loop("run", "Plan a trip").exit_code == 0  # the store exists
    done = agentic_loop("show", "nope", "--history")
    assert done.exit_code == 2
    assert "no run with thread id 'nope'" in done.output


def test_a_review_asked_for_by_library_code_is_answered_from_the_cli(
    agentic_loop, server, tmp_path: Path
) -> None:
    async def pause_for_review() -> None:
        async with open_store(tmp_path / "runs.sqlite") as saver:
            model = ChatOllama(model="test-model", base_url=server.url)
            graph = create_agentic_loop(model, checkpointer=saver, review_plan=True)
            config = {"configurable": {"thread_id": "lib"}}
            await graph.ainvoke({"task": "Plan a trip"}, config, durability="sync")

    asyncio.run(pause_for_review())
    assert "awaiting review" in agentic_loop("runs").output
    history = json.loads(agentic_loop("show", "lib", "--history", "--json").output)
    assert history[0]["next"] == ["review"]

    done = agentic_loop("resume", "lib", input="a\n")
    assert done.exit_code == 0, done.output
    assert "Run this plan? [a]pprove, [e]dit, [r]eject" in done.output
    assert asked_steps(server) == [None, 1, 2, 3, None]


@pytest.mark.parametrize("how", [(), ("--from-step", "2")])
def test_a_run_whose_planning_failed_plans_again(agentic_loop, server, how) -> None:
    normal = server.reply
    server.reply = lambda request: Reply(status=500, error="model crashed")
    failed = agentic_loop("run", "Plan a trip", "--thread", "t")
    assert failed.exit_code == 1 and "Planning failed" in failed.output

    server.reply = normal
    again = agentic_loop("resume", "t", *how, "--json")
    assert again.exit_code == 0, again.output
    assert "Running again from planning, as a new branch" in again.output
    assert asked_steps(server) == [None, None, 1, 2, 3, None]  # failed plan, plan, steps, answer
    assert agentic_loop("resume", "t").exit_code == 0  # now finished: nothing to do


def test_rerunning_a_rejected_plan_plans_and_asks_again(agentic_loop, server) -> None:
    rejected = agentic_loop("run", "Plan a trip", "--thread", "t", "--review", input="r\nno\n")
    assert rejected.exit_code == 1
    again = agentic_loop("resume", "t", input="a\n")
    assert again.exit_code == 0, again.output
    assert "Run this plan?" in again.output and "Completed 3/3 steps" in again.output
