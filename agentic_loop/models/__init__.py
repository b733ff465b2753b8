"""Chat models: building one from a spec (`auto`, `local`, `ollama:NAME`), explaining its errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agentic_loop.core.options import MODEL_ENV, LoopOptions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from agentic_loop.core.options import PlanFormat, PromptStyle

DEFAULT_MODEL = "auto"
DEFAULT_OLLAMA_MODEL = "llama3.2"
DEFAULT_TIMEOUT_S = LoopOptions().timeout
DEFAULT_REPLY_TOKENS = LoopOptions().max_reply_tokens
"""The cap on an Ollama reply's length (`num_predict`) that `load_model` sets."""
SPEC_HELP = f"auto, local or ollama:NAME (for example ollama:{DEFAULT_OLLAMA_MODEL})"


def model_spec_from_env() -> str:
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def resolve_spec(spec: str) -> str:
    """`spec` with `auto` made concrete: Ollama if its server answers and has the model,
    else the embedded model if installed. Raises ValueError saying how to get either."""
    if spec != "auto":
        return spec
    name = DEFAULT_OLLAMA_MODEL
    if _ollama_has(name):
        return f"ollama:{name}"
    from agentic_loop.models.local import INSTALL_HINT, local_model_available

    if local_model_available():
        return "local"
    raise ValueError(
        f"no model to run: start Ollama at {ollama_address()} and `ollama pull {name}`, "
        f"or install the embedded model with {INSTALL_HINT}"
    )


def _ollama_has(name: str) -> bool:
    try:
        check_ollama(name)
    except ValueError:
        return False
    return True


def check_ollama(name: str) -> None:
    """Raise ValueError, saying how to fix it, unless the Ollama server at `OLLAMA_HOST`
    answers and has the model `name`."""
    import httpx

    where = ollama_address()
    try:
        reply = httpx.get(f"{where}/api/tags", timeout=1.0)
        reply.raise_for_status()
        tags = {m.get("name") for m in reply.json().get("models", [])}
    except (httpx.HTTPError, ValueError):
        raise ValueError(
            f"Ollama is not reachable at {where}: start it with `ollama serve`, "
            "or set OLLAMA_HOST to the address it listens on"
        ) from None
    if name not in tags and f"{name}:latest" not in tags:
        raise ValueError(
            f"model {name!r} is not available on the Ollama server at {where}: "
            f"pull it with `ollama pull {name}`"
        )


def load_model(
    spec: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, reply_tokens: int = DEFAULT_REPLY_TOKENS
) -> BaseChatModel:
    """A chat model for `spec`: `ollama:NAME` talks to the Ollama server at `OLLAMA_HOST`,
    `local` runs the embedded SmolLM2 in this process, `auto` picks (see `resolve_spec`).

    `timeout_s` bounds each reply as a whole, however steadily its parts come (see
    `reply_timeout`); `reply_tokens` caps an Ollama reply's length (`num_predict`; the
    embedded model keeps its own, smaller cap)."""
    from agentic_loop.core.options import LoopOptions

    LoopOptions(timeout=timeout_s, max_reply_tokens=reply_tokens)  # checks both
    spec = resolve_spec(spec)
    if spec == "local":
        from agentic_loop.models.local import LocalChatModel

        if timeout_s != DEFAULT_TIMEOUT_S:
            raise ValueError(
                "--timeout applies to Ollama models; the embedded model runs in this "
                "process, its replies bounded by their length: leave --timeout out"
            )
        return LocalChatModel()
    provider, _, name = spec.partition(":")
    if provider != "ollama" or not name:
        raise ValueError(f"unknown model {spec!r}: use {SPEC_HELP}")
    from langchain_ollama import ChatOllama

    from agentic_loop.models.reply_timeout import whole_reply_limit

    # base_url stays None so the ollama client reads OLLAMA_HOST just as Ollama's own tools do.
    return ChatOllama(
        model=name,
        num_predict=reply_tokens,
        client_kwargs={"timeout": timeout_s},
        async_client_kwargs=whole_reply_limit(timeout_s),
    )


def spec_of(model: object) -> str | None:
    """The spec that names a model object, for a run's record: `ollama:NAME` for a
    `ChatOllama`, `local` for the embedded model; None for others (a resume from the CLI
    then needs `--model`, or uses the default)."""
    kind, name = type(model).__name__, getattr(model, "model", None)
    if kind == "ChatOllama" and isinstance(name, str) and name:
        return f"ollama:{name}"
    if kind == "LocalChatModel":
        return "local"
    return None


def ollama_address(base_url: str | None = None) -> str:
    """The address an Ollama client talks to: `base_url`, else `OLLAMA_HOST`, else the default."""
    host = (base_url or os.environ.get("OLLAMA_HOST") or "").strip()
    scheme, sep, rest = host.partition("://")
    if sep:
        default_port = 443 if scheme == "https" else 80
    else:
        scheme, rest, default_port = "http", host, 11434
    parts = urlsplit(f"{scheme}://{rest}")
    hostname = parts.hostname or "127.0.0.1"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{parts.port or default_port}{parts.path.rstrip('/')}"


def describe_error(exc: BaseException, model: object = None) -> str:
    """One line saying what went wrong with a model call, and for Ollama how to fix it."""
    import httpx
    import ollama

    from agentic_loop.models.reply_timeout import ReplyTimeout

    base_url = getattr(model, "base_url", None)
    name = getattr(model, "model", None)
    if isinstance(exc, httpx.TimeoutException):
        why = str(exc) if isinstance(exc, ReplyTimeout) else type(exc).__name__
        return (
            f"the model did not answer in time ({why}); try a smaller model or a longer --timeout"
        )
    if isinstance(exc, ollama.ResponseError):
        where = ollama_address(base_url)
        if exc.status_code == 404:
            return (
                f"model {name!r} is not available on the Ollama server at {where}: "
                f"pull it with `ollama pull {name}`"
            )
        return f"the Ollama server at {where} answered HTTP {exc.status_code}: {exc.error}"
    if isinstance(exc, ConnectionError | httpx.TransportError):
        if model is None or type(model).__name__ != "ChatOllama":
            return f"cannot reach the model server: {exc}"
        return (
            f"Ollama is not reachable at {ollama_address(base_url)}: start it with "
            "`ollama serve`, or set OLLAMA_HOST to the address it listens on"
        )
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def default_plan_format(model: object) -> PlanFormat:
    """How planning asks `model` for the plan (see `Settings.plan_format`): Ollama's chat
    models are held to a JSON schema; the embedded model writes a list, falling back to a
    plan held to the schema by llama.cpp's grammar; other models write a list."""
    kind = type(model).__name__
    return (
        "typed"
        if kind == "ChatOllama"
        else "text_then_typed"
        if kind == "LocalChatModel"
        else "text"
    )


def default_prompts(model: object) -> PromptStyle:
    """Which prompt set suits `model` (see `LoopOptions.prompts`): `small` for the embedded
    135M model, `capable` for every other."""
    return "small" if type(model).__name__ == "LocalChatModel" else "capable"


OLLAMA_CONTEXT_WINDOW = 4096
"""The context window Ollama gives a model whose `num_ctx` is not set."""


def context_window(model: object) -> int | None:
    """Tokens `model` sees at once, where it can be known: its own `context_window` (the
    embedded model's), its LangChain profile's `max_input_tokens`, or a `ChatOllama`'s
    `num_ctx` (Ollama's default when unset); None for a model that says nothing."""
    window = getattr(model, "context_window", None)
    if isinstance(window, int) and window > 0:
        return window
    profile = getattr(model, "profile", None) or {}
    if isinstance(most := profile.get("max_input_tokens"), int) and most > 0:
        return most
    if type(model).__name__ == "ChatOllama":
        return getattr(model, "num_ctx", None) or OLLAMA_CONTEXT_WINDOW
    return None


def reply_room(model: object, fallback: int) -> int:
    """Tokens to keep free in the window for a reply: the model's own cap (`max_tokens`,
    Ollama's `num_predict`), else `fallback`."""
    for name in ("max_tokens", "num_predict"):
        if isinstance(cap := getattr(model, name, None), int) and cap > 0:
            return cap
    return fallback


CHARS_PER_TOKEN_ESTIMATE = 3
"""Characters a token, when the model cannot count: a little under what English text
takes in the tokenizers of common open models (about 4), so an estimate errs short."""


def count_tokens(model: object, messages: Sequence[BaseMessage]) -> int:
    """The tokens `messages` take: counted by the model when its class counts for itself
    (the embedded model does), else estimated from their length. LangChain's own fallback
    would fetch the GPT-2 tokenizer from the network."""
    from langchain_core.language_models import BaseLanguageModel

    counter = getattr(type(model), "get_num_tokens_from_messages", None)
    if counter is not None and counter is not BaseLanguageModel.get_num_tokens_from_messages:
        return int(counter(model, list(messages)))
    return sum(len(m.text) // CHARS_PER_TOKEN_ESTIMATE + 4 for m in messages)
