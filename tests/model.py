"""The one scripted chat model the tests share, and the one bounded wait for a test to poll
with. (LangGraph's own suite keeps its fake model in `tests/model.py` too.)"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, SkipValidation

from agentic_loop.core import prompts

POLL_S = 0.005
"""How often a wait looks again."""


async def wait_for(condition: Callable[[], object], *, what: str, timeout: float = 10) -> None:
    """Return once `condition()` is true; fail the test, naming `what` it waited for, if it
    is not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}, in vain", pytrace=False)
        await asyncio.sleep(POLL_S)


def wait_until(condition: Callable[[], object], *, what: str, timeout: float = 10) -> None:
    """`wait_for` for a test that is not a coroutine: it sleeps between looks."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}, in vain", pytrace=False)
        time.sleep(POLL_S)


def _instruction(messages: list[BaseMessage]) -> str:
    """The last line of a prompt, what it asks for, with its numbers left out."""
    return re.sub(r"\d+", "#", messages[-1].text.strip().splitlines()[-1]) if messages else ""


ANSWER_ASK = frozenset(
    _instruction(kind.answer_messages("T", ["1. A: a"])) for kind in prompts.PROMPT_SETS.values()
)
REPLAN_ASK = frozenset(
    _instruction(kind.replan_messages("T", ["A", "B"], ["1. A: a"], 3))
    for kind in prompts.PROMPT_SETS.values()
)
"""The last lines of the prompts that ask for the answer and for a revision, in either set."""


def step_line(prompt: str) -> str | None:
    """The `Step N/TOTAL: description` line of a step's prompt, else None."""
    match = re.search(r"^Step \d+/\d+: .*$", prompt, re.MULTILINE)
    return match and match[0]


Reply = str | AIMessage | BaseException
"""What a call answers: a text, a whole message (one with tool calls, say), or an exception,
which the call raises instead."""
Replier = Callable[[list[BaseMessage]], "Reply | Awaitable[Reply]"]
"""A reply worked out from the call's messages, perhaps by a coroutine."""

HOLD_S = 60.0
"""The longest a held call waits for its gate before it fails the test."""


class ScriptedChatModel(FakeMessagesListChatModel):
    """Answers each call with the next item of `script`: a `Reply`, or a function of the
    call's messages that returns one (a coroutine function too). A `script` that is itself
    such a function answers every call, in whatever order they come.

    A request for the run's answer is answered with `answer`, and one for a revision of the
    plan with `revision`, unless they are None: then they are scripted calls like any other.
    Every scripted call's prompt (the last message's text) is kept in `prompts`, its
    conversation in `conversations` and its keyword arguments (what `bind` added, such as
    Ollama's `format`) in `call_kwargs`; the answer and revision prompts in `asked_answer`
    and `asked_revision`.

    Options: `hold_at` holds a call until the test sets `gate`; `sleep` makes each scripted
    call take that long; `tokens` makes each reply report that many prompt and reply tokens;
    `context_window` gives the model a window, counted at four characters a token.
    `bind_tools` binds nothing but the keyword arguments, so tools and structured output
    reach the script through `call_kwargs`.
    """

    responses: list[BaseMessage] = Field(default_factory=list)
    script: SkipValidation[list[Reply | Replier] | Replier]
    answer: str | None = "The answer."
    revision: str | None = "KEEP"
    hold_at: int = 0
    """The scripted call numbered `hold_at` (from 1) waits until `gate` is set before it
    counts: its prompt is in `held` meanwhile. A gate nobody sets holds the call until the
    test cancels the run (or `HOLD_S` passes, which fails the test)."""
    gate: SkipValidation[threading.Event] = Field(default_factory=threading.Event)
    tokens: int | None = None
    """Prompt and reply tokens each reply reports in its usage metadata, unless None (or
    the scripted message has usage of its own)."""
    context_window: int | None = None
    """A context window in tokens for the loop to fit its prompts to; None: no window."""

    prompts: list[str] = Field(default_factory=list)
    conversations: list[list[BaseMessage]] = Field(default_factory=list)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)
    asked_answer: list[str] = Field(default_factory=list)
    asked_revision: list[str] = Field(default_factory=list)
    held: list[str] = Field(default_factory=list)
    """The prompt of the call waiting at the gate, while it waits."""
    in_progress: int = 0
    """Scripted calls begun and not yet answered."""
    most_at_once: int = 0
    """The most scripted calls that were in progress at once."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(**kwargs)

    def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
        return sum(len(m.text) for m in messages) // 4

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return asyncio.run(self._agenerate(messages, stop, **kwargs))

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        asked = _instruction(messages)
        if asked in ANSWER_ASK and self.answer is not None:
            self.asked_answer.append(messages[-1].text)
            return self._result(self.answer)
        if asked in REPLAN_ASK and self.revision is not None:
            self.asked_revision.append(messages[-1].text)
            return self._result(self.revision)
        if len(self.prompts) + 1 == self.hold_at:
            await self._hold(messages[-1].text)
        self.prompts.append(messages[-1].text)
        self.conversations.append(list(messages))
        self.call_kwargs.append(kwargs)
        number = len(self.prompts)
        self.in_progress += 1
        self.most_at_once = max(self.most_at_once, self.in_progress)
        try:
            if self.sleep:
                await asyncio.sleep(self.sleep)
            reply = await self._reply(number, messages)
        finally:
            self.in_progress -= 1
        if isinstance(reply, BaseException):
            raise reply
        return self._result(reply)

    async def _hold(self, prompt: str) -> None:
        self.held.append(prompt)
        try:
            what = f"the test to set the gate of call #{self.hold_at} ({prompt[:60]!r})"
            await wait_for(self.gate.is_set, what=what, timeout=HOLD_S)
        finally:
            self.held.remove(prompt)

    async def _reply(self, number: int, messages: list[BaseMessage]) -> Reply:
        if callable(self.script):
            item: Reply | Replier = self.script
        elif number > len(self.script):
            raise AssertionError(f"unscripted model call #{number}: {messages[-1].text!r}")
        else:
            item = self.script[number - 1]
        if not callable(item):
            return item
        reply = item(messages)
        return await reply if inspect.isawaitable(reply) else reply

    def _result(self, reply: str | AIMessage) -> ChatResult:
        message = reply if isinstance(reply, AIMessage) else AIMessage(reply)
        if self.tokens is not None and message.usage_metadata is None:
            usage = {"input_tokens": self.tokens, "output_tokens": self.tokens}
            usage["total_tokens"] = 2 * self.tokens
            message = message.model_copy(update={"usage_metadata": usage})
        return ChatResult(generations=[ChatGeneration(message=message)])
