"""What the graph binds when it is built: the model, the run's options and the step tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from agentic_loop.core.options import MOST_STEPS, LoopOptions, PlanFormat, default_max_steps
from agentic_loop.core.prompts import PROMPT_SETS, PromptSet, clip
from agentic_loop.models import context_window, count_tokens, default_prompts, reply_room

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
    prompts: PromptSet = field(init=False)
    """The prompt set: `options.prompts`, else what suits the model
    (`models.default_prompts`)."""
    recent_results: int = field(init=False)
    """`options.recent_results`, else the prompt set's (no limit: `MOST_STEPS`)."""
    result_chars: int | None = field(init=False)
    """`options.result_chars`, else the prompt set's; None: whole."""
    context_window: int | None = field(init=False)
    """Tokens the model sees at once, where that can be known (`models.context_window`);
    prompts are then fitted to leave room for `reply_tokens`. None: nothing is fitted."""
    reply_tokens: int = field(init=False)
    """Room kept in the context window for the model's reply: its own cap, else
    `options.max_reply_tokens`, and at most a quarter of the window."""
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
        prompts = PROMPT_SETS[self.options.prompts or default_prompts(self.model)]
        set_(self, "prompts", prompts)
        recent = self.options.recent_results
        if recent is None:
            recent = prompts.recent_results
        set_(self, "recent_results", MOST_STEPS if recent is None else recent)
        set_(self, "result_chars", self.options.result_chars or prompts.result_chars)
        window = context_window(self.model)
        set_(self, "context_window", window)
        room = reply_room(self.model, self.options.max_reply_tokens)
        set_(self, "reply_tokens", min(room, window // 4) if window else room)
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

    def count_tokens(self, messages: Sequence[BaseMessage]) -> int:
        return count_tokens(self.model, messages)

    def fit(self, build: PromptBuilder, results: Sequence[str] = ()) -> list[BaseMessage]:
        """The prompt `build(limit, results)` makes, fitted to the model's window: see
        `fitting`."""
        return build(*self.fitting(build, results))

    def fitting(
        self, build: PromptBuilder, results: Sequence[str] = ()
    ) -> tuple[int | None, list[str]]:
        """What to build a prompt with so that it fits the model's context window with
        room for the reply: a `limit` on each text it carries (task, step, error; None:
        uncut) and the `results` it shows.

        The prompt as it is, if it fits or the window is not known. Else the results cut
        to fit the room the rest of the prompt leaves: the shorter ones kept whole, the
        room left shared evenly among the longer ones. Else, when even that does not fit,
        every text cut to the longest of `_LIMITS` that fits (the shortest if none does)."""
        from langchain_core.messages import HumanMessage

        whole = list(results)
        if self.context_window is None:
            return None, whole
        budget = self.context_window - self.reply_tokens
        if self.count_tokens(build(None, whole)) <= budget:
            return None, whole
        room = budget - self.count_tokens(build(None, []))
        if whole and room > 0:
            chars_per_token = sum(map(len, whole)) / max(
                1, self.count_tokens([HumanMessage("".join(whole))])
            )
            lengths = [len(text) for text in whole]
            shares = fair_shares(lengths, int(room * chars_per_token))
            for _ in range(_SHRINKS):  # the estimate may be short: cut the cut ones further
                cut = [clip(text, share) for text, share in zip(whole, shares, strict=True)]
                if self.count_tokens(build(None, cut)) <= budget:
                    return None, cut
                shares = [
                    share if share == length else share * 4 // 5
                    for share, length in zip(shares, lengths, strict=True)
                ]
        for limit in _LIMITS:
            cut = [clip(text, limit) for text in whole]
            if self.count_tokens(build(limit, cut)) <= budget:
                return limit, cut
        return _LIMITS[-1], [clip(text, _LIMITS[-1]) for text in whole]


def fair_shares(lengths: Sequence[int], room: int) -> list[int]:
    """How many characters each text keeps of `room` in all: the shortest whole while
    they fit, the room left shared evenly among the rest."""
    shares = list(lengths)
    left, waiting = room, len(lengths)
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        shares[index] = min(lengths[index], max(left, 0) // waiting)
        left -= shares[index]
        waiting -= 1
    return shares


PromptBuilder = Callable[[int | None, Sequence[str]], "list[BaseMessage]"]
"""Makes a prompt from a limit on the texts it carries (None: uncut) and the results it
shows."""

_SHRINKS = 4
"""Times `Settings.fitting` cuts the results further when its estimate was short."""
_LIMITS = (2000, 1000, 500, 250, 120, 60)
"""Character limits `Settings.fitting` tries in turn, longest first."""
