"""Shared test fixtures: a scripted chat model, strict checkpoint deserialization."""

from __future__ import annotations

import asyncio
import os
import uuid

# Before LangGraph is imported: checkpoints may only hold types the graph declares.
os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"

from typing import Any  # noqa: E402

import pytest  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from pydantic import Field, SkipValidation  # noqa: E402


class ScriptedChatModel(FakeMessagesListChatModel):
    """Answers each call with the next item of `script`: a text, a whole message (one with
    tool calls, say), or an exception, which is raised instead.

    Every prompt it receives (the last message's text) is kept in `prompts`, and every
    conversation in `conversations`.
    """

    responses: list[BaseMessage] = Field(default_factory=list)
    script: SkipValidation[list[str | AIMessage | BaseException]]
    prompts: list[str] = Field(default_factory=list)
    conversations: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
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
