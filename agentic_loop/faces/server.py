"""The loop for LangGraph Server (`langgraph dev`, `langgraph up`, LangGraph Platform):
`langgraph.json` points at `make_graph`, a factory the server calls whenever it needs the
graph, so that one deployment serves several models.

What a run may choose (`LoopOptions`, the context schema) comes from the run's context,
else the assistant's context, else its `configurable`, else the environment the server
started with (`AGENTIC_LOOP_MODEL`, `AGENTIC_LOOP_MAX_STEPS`, ...), as the CLI reads it. The model
is built, and Ollama asked whether it has it, only when a run starts: the server starts
without a model, and a run whose model cannot be reached fails with one line saying what
is missing. To read or update a thread's state the server gets the same graph without a
model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk.runtime import ServerRuntime

from agentic_loop.core.graph import build_graph
from agentic_loop.core.options import LoopOptions
from agentic_loop.core.state import AgenticInput, AgenticOutput, AgenticState
from agentic_loop.models import check_ollama, load_model, model_spec_from_env, resolve_spec
from agentic_loop.runs.store import ALLOWED_TYPES

REFUSED = ("tools", "approve_tools")
"""Choices a run's context may not make: the server loads no tools a request names (it
would import code, or start processes, that a client picked)."""


def server_options(config: RunnableConfig, context: Any = None) -> LoopOptions:
    """The choices of a run: `context` (the assistant's and the run's, merged by the
    server) over the config's `configurable`, over the `AGENTIC_LOOP_*` variables the
    server started with (`LoopOptions.build`). A name that is no choice is ignored; a
    bad value is a ValueError naming it."""
    given: dict[str, Any] = {}
    layers: list[Mapping[str, Any]] = [config.get("configurable") or {}]
    if isinstance(context, Mapping):
        layers.append(context)
    elif context is not None:
        layers.append({key: value for key, value in vars(context).items() if value is not None})
    for layer in layers:
        given.update(layer)
    for name in REFUSED:
        if given.get(name):
            raise ValueError(
                f"a run's context may not set {name}: the server loads no tools a request "
                "names; deploy a graph built with its tools instead"
            )
        given.pop(name, None)
    options = LoopOptions.build(given)
    return options.replace(model=options.model or model_spec_from_env())


class ServedLoop(CompiledStateGraph[AgenticState, LoopOptions, AgenticInput, AgenticOutput]):
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


async def make_graph(config: RunnableConfig, runtime: ServerRuntime[Any]) -> ServedLoop:
    """The graph for one use by the server: with the run's model and options when it
    starts a run, and without a model when it reads or updates a thread or shows the
    graph (the shape is the same). One graph is compiled for each choice and kept (the
    server calls this for every run and every read). A run whose model cannot be reached
    (Ollama down, the model not pulled, `auto` finding neither) fails with a ValueError
    saying what is missing."""
    run = runtime.execution_runtime
    options = server_options(config, run.context if run is not None else None)
    if run is None:
        return _served(None, options)
    spec = await asyncio.to_thread(_reachable, options.model or model_spec_from_env())
    return _served(spec, options.replace(model=spec))


def _reachable(spec: str) -> str:
    """`spec` resolved, once Ollama has said it has the model it names."""
    spec = resolve_spec(spec)
    provider, _, name = spec.partition(":")
    if provider == "ollama" and name:
        check_ollama(name)
    return spec


@lru_cache(maxsize=64)
def _served(spec: str | None, options: LoopOptions) -> ServedLoop:
    """The loop compiled for `options`: with the model `spec` names, or (None) without a
    model, for reading state. Kept per choice: a model is a client, whose making (two
    HTTP clients for Ollama) and the graph's compiling would otherwise slow every run."""
    if spec is None:
        model: Runnable[Any, Any] = RunnableLambda(_no_model, name="no model (reading state)")
    else:
        model = load_model(spec, timeout_s=options.timeout, reply_tokens=options.max_reply_tokens)
    builder = build_graph(model, options=options)
    # Declared so that the server shows what a run may choose as the assistants' context
    # schema (and Studio offers it); the nodes never read it, this factory does.
    builder.context_schema = LoopOptions  # type: ignore[assignment]
    compiled = builder.compile(name="agentic_loop")
    # As `Pregel.copy` makes its copies, but of our class.
    return ServedLoop(**{k: v for k, v in vars(compiled).items() if k != "__orig_class__"})


def _no_model(_: Any) -> Any:
    raise RuntimeError("this graph only reads and updates state; runs get one with a model")
