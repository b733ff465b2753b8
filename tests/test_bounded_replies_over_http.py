"""Bounded replies through the real ChatOllama client, against the Ollama-protocol test
server: the cap sent as `num_predict`, a reply stopped at it, and a server that streams
without end."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of

from agentic_loop.models import load_model
from agentic_loop.runs.runner import run_agentic_loop

pytestmark = pytest.mark.integration

PLAN = ["Pick a beach", "Book a room"]
ENDLESS = "again and "


async def test_the_cap_is_sent_and_a_reply_stopped_at_it_is_marked(monkeypatch) -> None:
    normal = plan_or_step(PLAN)

    def reply(request: dict[str, Any]) -> Reply:
        if step_of(request) == 1:
            return Reply(" ".join(f"reason{i}" for i in range(40)))
        return normal(request)

    with OllamaTestServer(reply) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        model = load_model("ollama:test-model", reply_tokens=25)
        result = await run_agentic_loop("Plan a trip", model=model)
        requests = server.chat_requests()

    assert {r["options"]["num_predict"] for r in requests} == {25}
    first, second = result.steps
    assert first.cut_short and first.result == " ".join(f"reason{i}" for i in range(25))
    assert not second.cut_short and second.result == "Did step 2."


async def test_a_server_that_streams_without_end_cannot_hang_a_run(monkeypatch) -> None:
    normal = plan_or_step(PLAN)
    endless_calls = 0

    def reply(request: dict[str, Any]) -> Reply:
        nonlocal endless_calls
        if step_of(request) == 1 and endless_calls == 0:
            endless_calls += 1
            return Reply(ENDLESS, endless=True)
        return normal(request)

    with OllamaTestServer(reply) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        started = time.monotonic()
        result = await run_agentic_loop("Plan a trip", model=load_model("ollama:test-model"))
        elapsed = time.monotonic() - started

    first = result.steps[0]
    assert first.status == "adapted" and first.result == "Tried another way."
    assert result.status == "completed"
    assert elapsed < 30


def test_a_cli_run_against_an_endless_server_ends_and_runs_again_from_a_step(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "runs.sqlite")
    normal = plan_or_step(PLAN)
    endless = True

    def reply(request: dict[str, Any]) -> Reply:
        if endless and step_of(request) is None and "Break this task" not in str(request):
            return Reply(ENDLESS, endless=True)  # every step, adaptation and answer call
        if endless and step_of(request) is not None:
            return Reply(ENDLESS, endless=True)
        return normal(request)

    with OllamaTestServer(reply) as server:
        first = run_cli(
            "run", "Plan a trip", "--db", db, "--thread", "loop", "--max-reply-tokens", "20",
            "--json", host=server.url,
        )  # fmt: skip
        endless = False
        again = run_cli("resume", "loop", "--db", db, "--from-step", "1", "--json", host=server.url)

    assert first.returncode == 1, first.stderr
    failed = json.loads(first.stdout)
    assert failed["status"] == "failed"
    assert all("repeats" in step["result"] for step in failed["steps"])
    assert again.returncode == 0, again.stderr
    assert [s["result"] for s in json.loads(again.stdout)["steps"]] == [
        "Did step 1.",
        "Did step 2.",
    ]
