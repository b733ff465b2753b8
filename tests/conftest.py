"""Shared test fixtures: a scripted chat model, strict checkpoint deserialization."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

# Before LangGraph is imported: checkpoints may only hold types the graph declares.
os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"

from typing import Any, NoReturn  # noqa: E402

import pytest  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from pydantic import Field, SkipValidation  # noqa: E402

from agentic_loop import prompts  # noqa: E402


def _instruction(messages: list[BaseMessage]) -> str:
    """The last line of a prompt, what it asks for, with its numbers left out."""
    return re.sub(r"\d+", "#", messages[-1].text.strip().splitlines()[-1]) if messages else ""


ANSWER_ASK = _instruction(prompts.answer_messages("T", ["1. A: a"]))
REPLAN_ASK = _instruction(prompts.replan_messages("T", ["A", "B"], ["1. A: a"], 3))


class ScriptedChatModel(FakeMessagesListChatModel):
    """Answers each call with the next item of `script`: a text, a whole message (one with
    tool calls, say), or an exception, which is raised instead.

    A request for the run's answer is answered with `answer`, and one for a revision of
    the plan with `revision`, unless they are None: then they take the next script item
    like any other call. Every prompt from the script (the last message's text) is kept in
    `prompts`, every conversation in `conversations`, and the answer and revision prompts
    in `asked_answer` and `asked_revision`.
    """

    responses: list[BaseMessage] = Field(default_factory=list)
    script: SkipValidation[list[str | AIMessage | BaseException]]
    prompts: list[str] = Field(default_factory=list)
    conversations: list[list[BaseMessage]] = Field(default_factory=list)
    answer: str | None = "The answer."
    revision: str | None = "KEEP"
    asked_answer: list[str] = Field(default_factory=list)
    asked_revision: list[str] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        asked = _instruction(messages)
        if asked == ANSWER_ASK and self.answer is not None:
            self.asked_answer.append(messages[-1].text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(self.answer))])
        if asked == REPLAN_ASK and self.revision is not None:
            self.asked_revision.append(messages[-1].text)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(self.revision))])
        self.prompts.append(messages[-1].text)
        self.conversations.append(list(messages))
        if len(self.prompts) > len(self.script):
            raise AssertionError(
                f"unscripted model call #{len(self.prompts)}: {messages[-1].text!r}"
            )
        item = self.script[len(self.prompts) - 1]
        if isinstance(item, BaseException):
            raise item
        message = item if isinstance(item, AIMessage) else AIMessage(item)
        return ChatResult(generations=[ChatGeneration(message=message)])


class BlockingAt(ScriptedChatModel):
    """Scripted, but the call numbered `block_at` (from 1) never returns."""

    block_at: int = 0

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if len(self.prompts) + 1 == self.block_at:
            self.prompts.append(messages[-1].text)
            await asyncio.Event().wait()
        return self._generate(messages, stop, run_manager, **kwargs)


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
