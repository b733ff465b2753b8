"""The loop served by LangGraph Server: `langgraph dev` (from `langgraph-cli[inmem]`) started
on 127.0.0.1 with this checkout's `langgraph.json`, driven over HTTP with `langgraph-sdk`,
its runs calling the real ChatOllama client against the Ollama-protocol test server.

Each server runs twice, with `LANGGRAPH_STRICT_MSGPACK` on and off: resumes must work both
ways. The server is kept off the internet: no browser, no reload, no version check, no
analytics or tracing, no license key, and a proxy that answers nothing for any address
but 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ollama_server import OllamaTestServer, Reply, last_prompt, step_of

from agentic_loop.core.state import AgenticResult

pytest.importorskip("langgraph_api", reason="needs langgraph-cli[inmem] (the test extra)")
from langgraph_sdk import get_client  # noqa: E402
from langgraph_sdk.errors import BadRequestError  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "agentic_loop"
PLAN = ["Pick a place", "Book a room"]
START_TIMEOUT_S = 90.0


def reply(request: dict[str, Any]) -> Reply:
    """Plans of PLAN, each step's result naming the step, and an answer."""
    prompt = last_prompt(request)
    if "Break this task into numbered steps" in prompt:
        return Reply("\n".join(f"{i}. {step}" for i, step in enumerate(PLAN, 1)))
    if (step := step_of(request)) is not None:
        return Reply(f"Did step {step}.")
    return Reply("All done.")


@dataclass
class Served:
    url: str
    ollama: OllamaTestServer
    log: Path

    def models_asked(self) -> list[str]:
        return [request["model"] for request in self.ollama.chat_requests()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(ollama_url: str, strict: bool) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "AGENTIC_LOOP_"))
    }
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: any call out fails at once
    env.update(
        OLLAMA_HOST=ollama_url,
        AGENTIC_LOOP_MODEL="ollama:test-model",  # the deployment's default model
        LANGGRAPH_STRICT_MSGPACK="true" if strict else "false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        ALL_PROXY=dead,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


@pytest.fixture(scope="module", params=[True, False], ids=["strict", "permissive"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`langgraph dev` over this checkout's langgraph.json, in a folder of its own (where it
    writes `.langgraph_api/`), stopped with its whole process group at the end."""
    folder = tmp_path_factory.mktemp("langgraph-dev")
    log = folder / "server.log"
    port = free_port()
    with OllamaTestServer(reply, models=("test-model", "other-model")) as ollama:
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "langgraph_cli",
                    "dev",
                    "--config",
                    str(ROOT / "langgraph.json"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-browser",
                    "--no-reload",
                ],
                cwd=folder,
                env=server_env(ollama.url, strict=request.param),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, process, log)
            yield Served(url=url, ollama=ollama, log=log)
        finally:
            _stop(process)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"langgraph dev exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"langgraph dev did not answer in {START_TIMEOUT_S:g} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def stream(client: Any, thread_id: str, **run: Any) -> list[tuple[str, Any]]:
    """Every (event, data) of a run streamed to its end."""
    return [
        (part.event, part.data)
        async for part in client.runs.stream(
            thread_id, GRAPH, stream_mode=["custom", "updates", "values"], **run
        )
    ]


def custom(parts: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [data for event, data in parts if event == "custom"]


async def test_the_assistant_is_listed_with_what_a_run_may_choose(served: Served) -> None:
    client = get_client(url=served.url)
    assistants = await client.assistants.search(graph_id=GRAPH)
    assert [a["graph_id"] for a in assistants] == [GRAPH]
    schemas = await client.assistants.get_schemas(assistants[0]["assistant_id"])
    assert {"model", "max_steps", "review_plan", "replan", "max_parallel"} <= set(
        schemas["context_schema"]["properties"]
    )
    assert "task" in schemas["input_schema"]["properties"]
    assert served.models_asked() == []  # showing the graph needs no model


async def test_a_run_streams_progress_pauses_for_review_and_resumes_with_an_edit(
    served: Served,
) -> None:
    client = get_client(url=served.url)
    thread = await client.threads.create()
    first = await stream(
        client, thread["thread_id"], input={"task": "Plan a trip", "review_plan": True}
    )
    assert [e["event"] for e in custom(first)] == ["agentic.plan_ready"]
    assert custom(first)[0]["data"]["steps"] == PLAN
    updates = [data for event, data in first if event == "updates"]
    assert updates[0] == {"plan": None}  # the output is `result` alone: see `custom`
    assert updates[-1]["__interrupt__"][0]["value"]["kind"] == "plan_review"
    paused = await client.threads.get_state(thread["thread_id"])
    assert paused["next"] == ["review"]
    assert paused["values"]["plan"]["steps"] == PLAN

    edited = [*PLAN, "Pack a bag"]
    second = await stream(
        client, thread["thread_id"], command={"resume": {"action": "edit", "steps": edited}}
    )
    events = [e["event"] for e in custom(second)]
    assert events[0] == "agentic.plan_reviewed"
    assert events.count("agentic.step_complete") == 3
    assert events[-1] == "agentic.task_complete"
    assert not [data for event, data in second if event == "error"]

    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == []
    result = AgenticResult.model_validate(state["values"]["result"])
    assert result.status == "completed"
    assert [s.description for s in result.steps] == edited
    assert [s.result for s in result.steps] == ["Did step 1.", "Did step 2.", "Did step 3."]
    assert result.answer == "All done."
    assert set(served.models_asked()) == {"test-model"}  # AGENTIC_LOOP_MODEL, the fallback
    assert "Blocked deserialization" not in served.log.read_text()


async def test_an_assistant_and_a_run_choose_the_model_and_settings(served: Served) -> None:
    client = get_client(url=served.url)
    assistant = await client.assistants.create(
        GRAPH, context={"model": "ollama:other-model", "max_steps": 1}, name="other"
    )
    thread = await client.threads.create()
    asked_before = len(served.models_asked())
    output = await client.runs.wait(
        thread["thread_id"], assistant["assistant_id"], input={"task": "Plan a trip"}
    )
    result = AgenticResult.model_validate(output["result"])
    assert [s.description for s in result.steps] == PLAN[:1]  # the assistant's max_steps
    assert set(served.models_asked()[asked_before:]) == {"other-model"}

    thread = await client.threads.create()
    output = await client.runs.wait(
        thread["thread_id"],
        assistant["assistant_id"],
        input={"task": "Plan a trip"},
        context={"max_steps": 2},  # the run's choice over the assistant's
    )
    result = AgenticResult.model_validate(output["result"])
    assert [s.description for s in result.steps] == PLAN
    assert set(served.models_asked()[asked_before:]) == {"other-model"}


async def test_a_plan_written_as_json_through_the_api_runs(served: Served) -> None:
    client = get_client(url=served.url)
    thread = await client.threads.create(graph_id=GRAPH)
    plan = {
        "task_id": "written1",
        "steps": ["Find a train", "Buy a ticket", "Board"],
        "planned_count": 3,
        "max_steps": 10,
        "duration_ms": 0,
    }
    await client.threads.update_state(
        thread["thread_id"], {"task": "Go to Lyon", "plan": plan}, as_node="plan"
    )
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["schedule"]
    assert state["values"]["plan"]["steps"] == plan["steps"]

    with pytest.raises(BadRequestError, match="validation error for Plan"):
        await client.threads.update_state(
            thread["thread_id"], {"plan": {**plan, "steps": "not a list"}}, as_node="plan"
        )
    output = await client.runs.wait(thread["thread_id"], GRAPH, input=None)
    result = AgenticResult.model_validate(output["result"])
    assert result.task_id == "written1"
    assert [s.description for s in result.steps] == plan["steps"]
    assert result.status == "completed"


async def test_a_run_whose_model_cannot_be_reached_fails_saying_what_is_missing(
    served: Served,
) -> None:
    client = get_client(url=served.url)
    thread = await client.threads.create()
    parts = await stream(
        client,
        thread["thread_id"],
        input={"task": "Plan a trip"},
        context={"model": "ollama:not-pulled"},
    )
    errors = [data for event, data in parts if event == "error"]
    assert len(errors) == 1
    assert "model 'not-pulled' is not available on the Ollama server" in errors[0]["message"]
    assert "ollama pull not-pulled" in errors[0]["message"]
    assert "not-pulled" not in served.models_asked()  # refused before any model call
