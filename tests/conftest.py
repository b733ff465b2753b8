"""Shared test fixtures: a scripted chat model, strict checkpoint deserialization."""

from __future__ import annotations

import asyncio
import os

# Before LangGraph is imported: checkpoints may only hold types the graph declares.
os.environ["LANGGRAPH_STRICT_MSGPACK"] = "true"

from typing import Any  # noqa: E402

import pytest  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from pydantic import Field  # noqa: E402


class ScriptedChatModel(FakeMessagesListChatModel):
    """Answers each call with the next item of `script`; an exception item is raised instead.

    Every prompt it receives (the last message's text) is kept in `prompts`.
    """

    responses: list[BaseMessage] = Field(default_factory=list)
    script: list[str | BaseException]
    prompts: list[str] = Field(default_factory=list)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.prompts.append(messages[-1].text)
        if len(self.prompts) > len(self.script):
            raise AssertionError(
                f"unscripted model call #{len(self.prompts)}: {messages[-1].text!r}"
            )
        item = self.script[len(self.prompts) - 1]
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=AIMessage(item))])


class BlockingAt(ScriptedChatModel):
    """Scripted, but the call numbered `block_at` (from 1) never returns."""

    block_at: int = 0

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        if len(self.prompts) + 1 == self.block_at:
            self.prompts.append(messages[-1].text)
            await asyncio.Event().wait()
        return self._generate(messages, stop, run_manager, **kwargs)


def plan_text(*steps: str) -> str:
    numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))
    return f"Sure! Here is the plan:\n\n{numbered}\n\nLet me know if you need anything else."


@pytest.fixture
def scripted():
    return ScriptedChatModel
