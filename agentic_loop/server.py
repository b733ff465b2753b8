"""The loop for LangGraph Server (`langgraph dev`, `langgraph up`, LangGraph Platform):
`langgraph.json` points at `make_graph`, a factory the server calls whenever it needs the
graph, so that one deployment serves several models.

What a run may choose (`ServerContext`) comes from the run's context, else the
assistant's context, else its `configurable`, else the environment the server started
with (`AGENTIC_LOOP_MODEL`, `AGENTIC_LOOP_MAX_STEPS`, ...), as the CLI reads it. The model
is built, and Ollama asked whether it has it, only when a run starts: the server starts
without a model, and a run whose model cannot be reached fails with one line saying what
is missing. To read or update a thread's state the server gets the same graph without a
model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk.runtime import ServerRuntime

from agentic_loop.graph import build_graph
from agentic_loop.models import (
    DEFAULT_REPLY_TOKENS,
    DEFAULT_TIMEOUT_S,
    check_ollama,
    load_model,
    model_spec_from_env,
    resolve_spec,
)
from agentic_loop.settings import (
    MAX_PARALLEL_ENV,
    MAX_SECONDS_ENV,
    MAX_TOKENS_ENV,
    MOST_PARALLEL,
    MOST_SECONDS,
    MOST_TOKENS,
    STEP_TIMEOUT_ENV,
)
from agentic_loop.state import AgenticInput, AgenticOutput, AgenticState, ReplanMode
from agentic_loop.storage import ALLOWED_TYPES


@dataclass(kw_only=True)
class ServerContext:
    """What an assistant or a run may choose, as `context` (or `configurable`). Anything
    left out comes from the environment the server started with, else the default."""

    model: str | None = None
    """`auto`, `local` or `ollama:NAME`; else `AGENTIC_LOOP_MODEL`, else `auto`."""
    max_steps: int | None = None
    """Most steps a run carries out; else `AGENTIC_LOOP_MAX_STEPS`, else 10. A run's input
    `max_steps` overrides it."""
    review_plan: bool | None = None
    """Pause for a review of the plan; else no review. A run's input `review_plan`
    overrides it."""
    replan: ReplanMode | None = None
    """`on_failure` (the default), `after_each_step` or `never`."""
    max_replans: int | None = None
    """Most revisions of the plan a run asks for; else 3."""
    max_parallel: int | None = None
    """Most steps in progress at once; else `AGENTIC_LOOP_MAX_PARALLEL`, else 4."""
    step_timeout: float | None = None
    """Seconds one step may take; else `AGENTIC_LOOP_STEP_TIMEOUT`, else no limit."""
    max_seconds: float | None = None
    """Seconds a run's steps may take; else `AGENTIC_LOOP_MAX_SECONDS`, else no limit."""
    max_tokens: int | None = None
    """Tokens a run's model calls may use; else `AGENTIC_LOOP_MAX_TOKENS`, else no limit."""
    timeout: float | None = None
    """Seconds to wait for each part of a model's reply; else 300."""
    max_reply_tokens: int | None = None
    """Cap on an Ollama reply's length (`num_predict`); else 1024."""


_ENV: dict[str, tuple[str, type[int] | type[float], float]] = {
    "max_parallel": (MAX_PARALLEL_ENV, int, MOST_PARALLEL),
    "step_timeout": (STEP_TIMEOUT_ENV, float, MOST_SECONDS),
    "max_seconds": (MAX_SECONDS_ENV, float, MOST_SECONDS),
    "max_tokens": (MAX_TOKENS_ENV, int, MOST_TOKENS),
}
"""The settings read from the environment as the CLI reads them (besides the model and
`AGENTIC_LOOP_MAX_STEPS`, which `models` and `settings` read), with their bounds."""


def server_context(config: RunnableConfig, context: Any = None) -> ServerContext:
    """The choices of a run: `context` (the assistant's and the run's, merged by the
    server) over the config's `configurable`, over the environment. A setting the server
    does not know is ignored; a bad value is a ValueError naming it."""
    given: dict[str, Any] = {}
    layers: list[Mapping[str, Any]] = [config.get("configurable") or {}]
    if isinstance(context, Mapping):
        layers.append(context)
    elif context is not None:
        layers.append(vars(context))
    for layer in layers:
        given.update({f.name: layer[f.name] for f in fields(ServerContext) if f.name in layer})
    for name, (variable, kind, most) in _ENV.items():
        if given.get(name) is None and (raw := os.environ.get(variable, "").strip()):
            given[name] = _number(variable, raw, kind, most)
    if given.get("model") is None:
        given["model"] = model_spec_from_env()
    chosen = ServerContext(**{name: value for name, value in given.items() if value is not None})
    if not isinstance(chosen.model, str) or not chosen.model.strip():
        raise ValueError(f"model must be auto, local or ollama:NAME, got {chosen.model!r}")
    if chosen.review_plan is not None and not isinstance(chosen.review_plan, bool):
        raise ValueError(f"review_plan must be true or false, got {chosen.review_plan!r}")
    return chosen


def _number(variable: str, raw: str, kind: type[int] | type[float], most: float) -> int | float:
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not 0 < value <= most:
        noun = "a whole number" if kind is int else "a number"
        raise ValueError(f"{variable} must be {noun} above 0 and up to {most:g}, got {raw!r}")
    return value


class ServedLoop(CompiledStateGraph[AgenticState, ServerContext, AgenticInput, AgenticOutput]):
    """The compiled loop as the server runs it.

    The server copies the graph it loads with its own checkpointer (`Pregel.copy`), and
    the copy loses the allow-list that `compile()` gives the checkpointer under
    `LANGGRAPH_STRICT_MSGPACK=true` (langgraph issue 7695): every resume would then have
    the loop's types blocked and read back as their fields (dicts). This copy gives the
    server's checkpointer the loop's types (`with_allowlist`), strict or not."""

    def copy(self, update: dict[str, Any] | None = None) -> ServedLoop:
        update = dict(update or {})
        saver = update.get("checkpointer")
        if isinstance(saver, BaseCheckpointSaver):
            update["checkpointer"] = saver.with_allowlist(ALLOWED_TYPES)
        return super().copy(update)


async def make_graph(config: RunnableConfig, runtime: ServerRuntime) -> ServedLoop:
    """The graph for one use by the server: with the run's model and settings when it
    starts a run, and without a model when it reads or updates a thread or shows the
    graph (the shape is the same). A run whose model cannot be reached (Ollama down, the
    model not pulled, `auto` finding neither) fails with a ValueError saying what is
    missing."""
    run = runtime.execution_runtime
    chosen = server_context(config, run.context if run is not None else None)
    if run is None:
        model: Runnable = RunnableLambda(_no_model, name="no model (reading state)")
    else:
        model = await asyncio.to_thread(_reachable_model, chosen)
    builder = build_graph(
        model,
        max_steps=chosen.max_steps or 0,
        review_plan=bool(chosen.review_plan),
        replan=chosen.replan or "on_failure",
        **{
            name: value
            for name in ("max_replans", "max_parallel", "step_timeout", "max_seconds", "max_tokens")
            if (value := getattr(chosen, name)) is not None
        },
    )
    # Declared so that the server shows what a run may choose as the assistants' context
    # schema (and Studio offers it); the nodes never read it, this factory does.
    builder.context_schema = ServerContext  # type: ignore[assignment]
    compiled = builder.compile(name="agentic_loop")
    # As `Pregel.copy` makes its copies, but of our class.
    return ServedLoop(**{k: v for k, v in vars(compiled).items() if k != "__orig_class__"})


def _reachable_model(chosen: ServerContext) -> Runnable:
    """The chat model `chosen.model` names, once Ollama has said it has it."""
    spec = resolve_spec(chosen.model or model_spec_from_env())
    provider, _, name = spec.partition(":")
    if provider == "ollama" and name:
        check_ollama(name)
    return _model(
        spec,
        DEFAULT_TIMEOUT_S if chosen.timeout is None else chosen.timeout,
        DEFAULT_REPLY_TOKENS if chosen.max_reply_tokens is None else chosen.max_reply_tokens,
    )


@lru_cache(maxsize=32)
def _model(spec: str, timeout_s: float, reply_tokens: int) -> Runnable:
    """One chat model per choice, shared by the runs that make it: a model is a client,
    whose making (two HTTP clients for Ollama) would otherwise slow every run's start."""
    return load_model(spec, timeout_s=timeout_s, reply_tokens=reply_tokens)


def _no_model(_: Any) -> Any:
    raise RuntimeError("this graph only reads and updates state; runs get one with a model")
