"""Chat models: building one from a spec such as `ollama:llama3.2`, and explaining its errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

DEFAULT_MODEL = "ollama:llama3.2"
MODEL_ENV = "AGENTIC_LOOP_MODEL"
DEFAULT_TIMEOUT_S = 300.0


def model_spec_from_env() -> str:
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def load_model(spec: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> BaseChatModel:
    """A chat model for `spec`: `ollama:NAME` talks to the Ollama server at `OLLAMA_HOST`."""
    provider, _, name = spec.partition(":")
    if provider != "ollama" or not name:
        raise ValueError(f"unknown model {spec!r}: use ollama:NAME, for example {DEFAULT_MODEL}")
    if timeout_s <= 0:
        raise ValueError(f"timeout must be positive, got {timeout_s}")
    from langchain_ollama import ChatOllama

    # base_url stays None so the ollama client reads OLLAMA_HOST just as Ollama's own tools do.
    return ChatOllama(model=name, client_kwargs={"timeout": timeout_s})


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
