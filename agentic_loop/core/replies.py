"""Asking the model for one reply: streamed, cut at a length cap, and checked.

Every reply is bounded twice: the model's own token cap (Ollama's `num_predict`, set by
`models.load_model`; the embedded model's `max_tokens`), and here a cap on characters,
which also ends a stream from a server that ignores its cap. A reply that hit either is
marked as cut short."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableConfig

from agentic_loop.core.parsing import clean_reply, degenerate_reason, strip_echo

_LENGTH_STOPS = {
    ("done_reason", "length"),
    ("finish_reason", "length"),
    ("stop_reason", "max_tokens"),
}
"""`response_metadata` entries by which Ollama, llama.cpp/OpenAI and Anthropic say a
reply stopped at its token cap."""


@dataclass(frozen=True)
class Reply:
    message: AIMessage
    cut_short: bool
    """Whether it stopped at a length cap rather than where the model ended it."""

    @property
    def tokens(self) -> tuple[int, int]:
        """Prompt and reply tokens, as the model reported them (0 where it did not)."""
        usage = self.message.usage_metadata
        return (usage["input_tokens"], usage["output_tokens"]) if usage else (0, 0)


async def ask(
    model: Runnable[Any, Any],
    messages: Sequence[BaseMessage],
    *,
    max_chars: int,
    step_num: int | None = None,
) -> Reply:
    """The model's reply to `messages`, its text cut to `max_chars` characters. A call for
    a plan step carries `step_num` in its run's metadata, so that the `messages` stream
    (whose metadata also names the node) tells the chunks of steps side by side apart."""
    config: RunnableConfig | None = (
        None if step_num is None else {"metadata": {"step_num": step_num}}
    )
    merged: AIMessageChunk | None = None
    whole: AIMessage | None = None
    # Closed on leaving the block, so that a reply cut short ends its request at once.
    async with aclosing(cast(AsyncGenerator[Any], model.astream(list(messages), config))) as stream:
        async for chunk in stream:
            if isinstance(chunk, AIMessageChunk):
                merged = chunk if merged is None else merged + chunk
                if len(merged.text) > max_chars:
                    break  # the text is cut below
            else:  # a model that does not stream gives its whole reply at once
                whole = chunk if isinstance(chunk, AIMessage) else AIMessage(str(chunk))
    if merged is not None:
        whole = message_chunk_to_message(merged)  # type: ignore[assignment]
    if whole is None:
        whole = AIMessage("")
    cut_short = isinstance(whole.content, str) and len(whole.content) > max_chars
    if cut_short:
        whole = whole.model_copy(update={"content": whole.text[:max_chars]})
    metadata = whole.response_metadata or {}
    cut_short = cut_short or any(metadata.get(key) == value for key, value in _LENGTH_STOPS)
    return Reply(whole, cut_short)


def reply_text(reply: Reply, prompt: Sequence[BaseMessage]) -> tuple[str, str | None]:
    """The reply's text, cleaned of reasoning blocks and of lines echoing the prompt, and
    why it is no result at all (see `parsing.degenerate_reason`), or None."""
    said = "\n".join(message.text for message in prompt)
    text = strip_echo(clean_reply(reply.message.text), said)
    return text, degenerate_reason(text)
