"""What the graph binds when it is built: the model, the run's options and the step tools."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from agentic_loop.core.options import LoopOptions, PlanFormat, default_max_steps

if TYPE_CHECKING:  # kept out of import time: the CLI reads the options' defaults
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import Runnable
    from langchain_core.tools import BaseTool


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The model, the options and the tools, with what follows from them."""

    model: Runnable[Any, Any]
    """Any LangChain chat model (or runnable taking messages and returning a message)."""
    options: LoopOptions = LoopOptions()
    tools: tuple[BaseTool, ...] = ()
    """What a step may call; without tools a step is one model call."""
    plan_format: PlanFormat = "text"
    """`options.plan_format`, or what suits the model when it names none."""
    max_steps: int = field(init=False)
    """`options.max_steps`, else `AGENTIC_LOOP_MAX_STEPS`, else 10."""
    approve_tools: frozenset[str] = field(init=False)
    """Names of the tools whose calls wait for a reviewer's approval."""
    context_window: int | None = field(init=False)
    """Tokens the model sees at once, if it says (the embedded model does); prompts are then
    cut to leave room for `reply_tokens`. The model must count tokens
    (`get_num_tokens_from_messages`)."""
    reply_tokens: int = field(init=False)
    """Room kept in the context window for the model's reply."""
    step_model: Runnable[Any, Any] = field(init=False)
    """`model` with `tools` bound, for the calls of a step; `model` itself without tools."""

    def __post_init__(self) -> None:
        from langchain_core.runnables import Runnable

        if not isinstance(self.model, Runnable):
            raise ValueError(
                f"model must be a LangChain chat model, got {type(self.model).__name__} "
                f"{self.model!r}; build one with agentic_loop.load_model('ollama:NAME')"
            )
        names = tuple(tool.name for tool in self.tools)
        approve = self.options.approve_tools
        set_ = object.__setattr__
        set_(self, "max_steps", self.options.max_steps or default_max_steps())
        set_(self, "approve_tools", frozenset(names if approve is True else approve or ()))
        set_(self, "context_window", getattr(self.model, "context_window", None))
        set_(self, "reply_tokens", getattr(self.model, "max_tokens", 0) or 0)
        set_(self, "step_model", self._bind_tools())

    def _bind_tools(self) -> Runnable[Any, Any]:
        if not self.tools:
            return self.model
        names = [tool.name for tool in self.tools]
        if len(set(names)) < len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"two tools share the name {twice[0]!r}; tool names must be unique")
        unknown = sorted(self.approve_tools - set(names))
        if unknown:
            raise ValueError(
                f"approve_tools names {unknown[0]!r}, which is not one of the tools: "
                f"{', '.join(names)}"
            )
        bind = getattr(self.model, "bind_tools", None)
        try:
            if bind is None:
                raise NotImplementedError
            return cast("Runnable[Any, Any]", bind(list(self.tools)))
        except NotImplementedError as exc:
            reason = str(exc) or f"the model {type(self.model).__name__} cannot call tools"
            raise ValueError(
                f"{reason}; use a chat model that calls tools (for example "
                "--model ollama:llama3.2), or run without tools"
            ) from None

    def fit(self, build: Callable[[int | None], list[BaseMessage]]) -> list[BaseMessage]:
        """The prompt `build(limit)` makes, where `limit` cuts each text the prompt carries
        (task, step, results, errors) to that many characters: see `fit_limit`."""
        return build(self.fit_limit(build))

    def fit_limit(self, build: Callable[[int | None], list[BaseMessage]]) -> int | None:
        """None if the prompt `build(None)` fits the context window with room for the
        reply, else the longest limit that fits (the shortest if none does)."""
        if self.context_window is None:
            return None
        budget = self.context_window - self.reply_tokens
        count = cast(Any, self.model).get_num_tokens_from_messages
        for limit in (None, *_LIMITS):
            if count(build(limit)) <= budget:
                return limit
        return _LIMITS[-1]


_LIMITS = (2000, 1000, 500, 250, 120, 60)
"""Character limits `Settings.fit` tries in turn, longest first."""
