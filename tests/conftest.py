"""Shared test fixtures and helpers: strict checkpoint deserialization, the CLI in a process,
stores; the scripted chat model and the bounded wait from tests/model.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

# Before LangGraph is imported: checkpoints may only hold types the graph declares.
os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"

from typing import Any, NoReturn  # noqa: E402

import pytest  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

# The one scripted fake model and the one bounded wait live in tests/model.py; the tests
# import them from here, as they do the other helpers.
from model import ANSWER_ASK as ANSWER_ASK  # noqa: E402
from model import REPLAN_ASK as REPLAN_ASK  # noqa: E402
from model import ScriptedChatModel as ScriptedChatModel  # noqa: E402
from model import _instruction as _instruction  # noqa: E402
from model import step_line as step_line  # noqa: E402
from model import wait_for as wait_for  # noqa: E402
from model import wait_until as wait_until  # noqa: E402


def _default_signals() -> None:
    # A runner started in the background (`&`, some CI) ignores SIGINT, and children inherit
    # that: Ctrl-C must reach the CLI as it does in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(
    *args: str,
    host: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The CLI run to its end in a process of its own, on the Ollama test server at `host`
    (its model is the default); stdin is closed unless `input` is given."""
    return subprocess.run(
        [sys.executable, "-m", "agentic_loop", *args],
        capture_output=True,
        encoding="utf-8",
        env={
            **os.environ,
            "OLLAMA_HOST": host,
            "AGENTIC_LOOP_MODEL": "ollama:test-model",
            **(env or {}),
        },
        cwd=cwd,
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        timeout=timeout,
    )


def spawn_cli(
    *args: str, host: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The CLI in a process of its own, on the Ollama test server at `host`, to stop or kill."""
    return subprocess.Popen(
        [sys.executable, "-m", "agentic_loop", *args, "--model", "ollama:test-model"],
        env={**os.environ, "OLLAMA_HOST": host, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        preexec_fn=_default_signals,
    )


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """A model turn that asks for the given (tool name, arguments) calls."""
    return AIMessage(
        "",
        tool_calls=[
            {"name": name, "args": args, "id": f"call-{uuid.uuid4().hex[:6]}", "type": "tool_call"}
            for name, args in tool_calls
        ],
    )


def plan_text(*steps: str) -> str:
    numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    return f"Sure! Here is the plan:\n\n{numbered}\n\nLet me know if you need anything else."


@pytest.fixture
def scripted():
    return ScriptedChatModel


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server for the session (see tests/postgres.py). Without
    PostgreSQL installed its tests are skipped, except in CI, where they fail."""
    from postgres import PostgresServer, server_programs

    programs = server_programs()
    if programs is None:
        skip_unless_ci("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    server = PostgresServer(programs).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres_server.database()


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip a test whose system package is missing; in CI (`CI=true`), where `.ci/run`
    installs it, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A run store's location: once a new SQLite file, once a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    return request.getfixturevalue("postgres_url")
