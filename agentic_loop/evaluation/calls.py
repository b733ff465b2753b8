"""Counting a run's model calls, and its replies that echo their prompt or repeat themselves,
with a LangChain callback handler passed in the run's config."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from agentic_loop.core.parsing import clean_reply
from agentic_loop.core.replies import Reply, reply_text


def reply_flaw(reply: AIMessage, prompt: list[BaseMessage]) -> str | None:
    """Why a reply is a poor output, as the loop reads replies (`replies.reply_text`): it
    copies lines or sentences of its prompt ("echoes the prompt"), or once those are left
    out it is empty or repeats a line, phrase or numbering; None if neither. A reply that
    calls tools and says nothing is no flaw."""
    if reply.tool_calls and not reply.text.strip():
        return None
    cleaned = "\n".join(clean_reply(reply.text).splitlines())
    text, degenerate = reply_text(Reply(reply, cut_short=False), prompt)
    if text != cleaned:
        return "echoes the prompt"
    return degenerate


class CallCounter(BaseCallbackHandler):
    """Counts the chat model calls it sees and the replies that `reply_flaw` finds fault
    with. A call that fails or is cut off before it ends counts as a call, with no reply."""

    run_inline = True  # called on the event loop: the counts need no lock

    def __init__(self) -> None:
        self.calls = 0
        self.flaws: list[str] = []
        """Why each flawed reply is flawed, in the order they ended."""
        self._prompts: dict[UUID, list[BaseMessage]] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self.calls += 1
        self._prompts[run_id] = messages[0] if messages else []

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        prompt = self._prompts.pop(run_id, [])
        generations = response.generations[0] if response.generations else []
        first = generations[0] if generations else None
        if isinstance(first, ChatGeneration) and isinstance(first.message, AIMessage):
            flaw = reply_flaw(first.message, prompt)
            if flaw is not None:
                self.flaws.append(flaw)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._prompts.pop(run_id, None)
