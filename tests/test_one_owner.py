"""One owner for each idea, seen from every face, against real processes and both stores:
a thread a CLI process runs is refused to a Python runner; a run started from Python
records its options and model, and the CLI resumes it with them after a SIGKILL; a run
that another process runs has one status in `runs`, `show`, the picture and the web app;
and the service builds its models from a factory without asking any model server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text, run_cli, spawn_cli
from ollama_server import OllamaTestServer, step_of
from starlette.testclient import TestClient
from test_parallel_kill import HeldFirstCalls, kill, typed_plan, wait_for
from test_postgres_cli import answering, steps_asked

from agentic_loop import LoopOptions, run_agentic_loop
from agentic_loop.faces.web import create_app
from agentic_loop.models import load_model
from agentic_loop.runs.leases import RunBusy
from agentic_loop.runs.service import RunRequest, RunService
from agentic_loop.runs.store import is_postgres

pytestmark = pytest.mark.integration

TASK = "Plan a beach day"


@contextmanager
def cli_running_step_2(
    store: str, server: OllamaTestServer, held: HeldFirstCalls
) -> Iterator[subprocess.Popen[str]]:
    """A CLI process running `TASK` on thread `beach`, its step 2 held at the server; let
    go and waited for when the block ends."""
    runner = spawn_cli("run", TASK, "--db", store, "--thread", "beach", host=server.url)
    try:
        wait_for(held.arrived[2].is_set, runner, "step 2 reached the model")
        yield runner
        held.release.set()
        runner.communicate(timeout=60)
    finally:
        held.release.set()
        if runner.poll() is None:
            runner.kill()
        runner.wait(timeout=30)


@asynccontextmanager
async def users_own_saver(store: str):
    """A checkpointer on the store as a user makes one, with LangGraph's own constructors."""
    if store.startswith("postgresql://"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(store) as saver:
            assert is_postgres(saver)
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(store) as saver:
            yield saver


def test_a_python_runner_is_refused_a_thread_a_cli_process_runs(any_store: str) -> None:
    held = HeldFirstCalls((2,), step_of)

    async def second_runner(url: str) -> BaseException:
        async with users_own_saver(any_store) as saver:
            with pytest.raises(RunBusy) as refused:
                await run_agentic_loop(
                    TASK,
                    model=load_model("ollama:test-model"),
                    checkpointer=saver,
                    thread_id="beach",
                )
        return refused.value

    with OllamaTestServer(answering([held])) as server:
        with cli_running_step_2(any_store, server, held) as runner:
            asked_before = len(server.chat_requests())
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("OLLAMA_HOST", server.url)
                refusal = asyncio.run(second_runner(server.url))
            assert len(server.chat_requests()) == asked_before  # it asked the model nothing
        requests = server.chat_requests()

    assert isinstance(refusal, RunBusy) and refusal.holder.pid == runner.pid
    assert f"run 'beach' is being run by pid {runner.pid}" in str(refusal)
    assert runner.returncode == 0
    assert steps_asked(requests) == {1: 1, 2: 1, 3: 1, None: 1}  # each step asked once


PYTHON_RUN = textwrap.dedent(
    """
    import asyncio, sys
    from agentic_loop import run_agentic_loop
    from agentic_loop.models import load_model
    from agentic_loop.runs.store import open_store

    async def main():
        async with open_store(sys.argv[1]) as saver:
            await run_agentic_loop(
                "Plan a beach day", model=load_model("ollama:py-model"), checkpointer=saver,
                thread_id="py", max_parallel=1, max_replans=0, max_tool_calls=2,
            )

    asyncio.run(main())
    """
)


def test_a_run_started_from_python_resumes_from_the_cli_with_its_options_and_model(
    any_store: str,
) -> None:
    db = any_store
    # Steps 2 and 3 depend on step 1 only: with max_parallel=1 they still run one at a time.
    plan = typed_plan(("Pick a beach", []), ("Book a room", [1]), ("Pack a bag", [1]))
    held = HeldFirstCalls((2,), step_of)
    models = ("test-model", "py-model")
    with OllamaTestServer(answering([held], plan), models=models) as server:
        started = subprocess.Popen(
            [sys.executable, "-c", PYTHON_RUN, db],
            env={**_env(), "OLLAMA_HOST": server.url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(held.arrived[2].is_set, started, "step 2 reached the model")
        finally:
            kill(started, held)
        before = len(server.chat_requests())
        shown = run_cli("show", "py", "--db", db, host=server.url)
        resumed = run_cli("resume", "py", "--db", db, "--json", host=server.url)
        requests = server.chat_requests()[before:]

    assert shown.returncode == 0, shown.stderr
    assert "interrupted" in shown.stdout
    assert "model ollama:py-model · max_replans=0, max_parallel=1, max_tool_calls=2" in (
        shown.stdout
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed with the model and options it was started with" in resumed.stderr
    # The CLI's own default (AGENTIC_LOOP_MODEL=ollama:test-model) played no part.
    assert {request["model"] for request in requests} == {"py-model"}
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert steps_asked(requests) == {2: 1, 3: 1, None: 1}
    # One step at a time: step 3 was asked only once step 2's answer was stored.
    order = [step_of(r) for r in requests if not r.get("format")]
    assert order == [2, 3, None]


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "AGENTIC_LOOP_MODEL"}


def test_a_run_live_in_another_process_has_one_status_on_every_face(any_store: str) -> None:
    held = HeldFirstCalls((2,), step_of)
    with OllamaTestServer(answering([held])) as server:
        with cli_running_step_2(any_store, server, held):
            listed = run_cli("runs", "--db", any_store, host=server.url)
            shown = run_cli("show", "beach", "--db", any_store, host=server.url)
            drawn = run_cli(
                "graph",
                "--thread",
                "beach",
                "--format",
                "ascii",
                "--db",
                any_store,
                host=server.url,
            )
            with TestClient(create_app(any_store), base_url="http://127.0.0.1:8765") as client:
                page = client.get("/api/runs/beach").json()
                row = next(r for r in client.get("/api/runs").json() if r["thread_id"] == "beach")

    for done in (listed, shown, drawn):
        assert done.returncode == 0, done.stderr
    assert "running elsewhere" in listed.stdout
    assert "· running elsewhere ·" in shown.stdout and "run by pid" in shown.stdout
    assert "2. Book a room — running" in shown.stdout  # the step in flight
    assert "running elsewhere" in drawn.stdout.splitlines()[1]
    assert " 2 ▶ running " in drawn.stdout
    assert page["status"] == row["status"] == "running elsewhere"
    assert [step["status"] for step in page["steps"]][:2] == ["completed", "running"]


async def test_the_service_asks_no_model_server_when_given_a_model_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(*args: Any) -> Any:
        raise AssertionError("a model server was asked")

    monkeypatch.delenv("AGENTIC_LOOP_MODEL", raising=False)  # `auto`: the spec that probes
    monkeypatch.setattr("agentic_loop.models._ollama_has", no_probe)
    monkeypatch.setattr("agentic_loop.runs.service.check_ollama", no_probe)
    monkeypatch.setattr("agentic_loop.runs.service.resolve_spec", no_probe)
    model = ScriptedChatModel(script=[plan_text("A"), "did A", "Done."])
    specs: list[str] = []

    def factory(spec: str, options: LoopOptions) -> ScriptedChatModel:
        specs.append(spec)
        return model

    async with RunService.open(tmp_path / "runs.sqlite", model_factory=factory) as service:
        outcome = await service.start(RunRequest(task="T", thread_id="t"))
        stored = await service.run("t")
    assert outcome.result is not None and outcome.result.status == "completed"
    assert specs == ["auto"] and stored.model == "auto"
