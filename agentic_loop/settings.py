"""Settings fixed when the graph is built: the model and the bounds on a run."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:  # kept out of import time: the CLI reads this module's defaults
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import Runnable
    from langchain_core.tools import BaseTool

    from agentic_loop.state import ReplanMode

DEFAULT_MAX_STEPS = 10
DEFAULT_MAX_TOOL_CALLS = 8
DEFAULT_MAX_REPLANS = 3
DEFAULT_MAX_PARALLEL = 4
CHARS_PER_TOKEN = 8
"""A generous count of characters per token, to turn a token cap into a character cap."""
DEFAULT_REPLY_CHARS = 1024 * CHARS_PER_TOKEN
"""Past this many characters a streamed reply is cut, whatever the server's own cap."""
MAX_STEPS_ENV = "AGENTIC_LOOP_MAX_STEPS"
MAX_PARALLEL_ENV = "AGENTIC_LOOP_MAX_PARALLEL"
STEP_TIMEOUT_ENV = "AGENTIC_LOOP_STEP_TIMEOUT"
MAX_SECONDS_ENV = "AGENTIC_LOOP_MAX_SECONDS"
MAX_TOKENS_ENV = "AGENTIC_LOOP_MAX_TOKENS"
PlanFormat = Literal["typed", "text", "text_then_typed"]

# The bounds of the numbers a run takes, checked where they come in: `Settings`, and the
# command line's flags and environment variables.
MOST_STEPS = 1000
MOST_TOOL_CALLS = 1000
MOST_REPLANS = 1000
MOST_PARALLEL = 64
MOST_SECONDS = 7 * 24 * 3600.0
"""A week: the most any time limit (a reply's, a step's, a run's) takes."""
MOST_TOKENS = 10**9
MOST_REPLY_TOKENS = 10**6
MOST_REPLY_CHARS = MOST_REPLY_TOKENS * CHARS_PER_TOKEN


def default_max_steps() -> int:
    """`AGENTIC_LOOP_MAX_STEPS` if set (a whole number from 1 to `MOST_STEPS`), else 10."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_STEPS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MOST_STEPS:
        raise ValueError(
            f"{MAX_STEPS_ENV} must be a whole number from 1 to {MOST_STEPS}, got {raw!r}"
        )
    return value


def check_whole(name: str, value: object, least: int, most: int) -> None:
    """ValueError unless `value` is an int (not a bool) from `least` to `most`."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValueError(f"{name} must be a whole number from {least} to {most}, got {value!r}")


def check_seconds(name: str, value: object) -> None:
    """ValueError unless `value` is a number of seconds above 0 and at most `MOST_SECONDS`
    (so not NaN or infinite)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MOST_SECONDS
    ):
        raise ValueError(
            f"{name} must be a number of seconds above 0 and up to {MOST_SECONDS:g}, "
            f"or None, got {value!r}"
        )


@dataclass(frozen=True, kw_only=True)
class Settings:
    model: Runnable
    """Any LangChain chat model (or runnable taking messages and returning a message)."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Most steps a run carries out; a longer plan is cut and the run is `partial`."""
    recent_results: int = 2
    """How many earlier results each step's prompt carries forward: those of the steps it
    depends on (all of them), then of the steps those depend on, up to this many."""
    result_chars: int = 200
    """How much of each earlier result each step's prompt carries forward."""
    context_window: int | None = None
    """Tokens the model sees at once, if known; prompts are then cut to leave room for
    `reply_tokens`. The model must count tokens (`get_num_tokens_from_messages`)."""
    reply_tokens: int = 0
    """Room kept in the context window for the model's reply."""
    tools: tuple[BaseTool, ...] = ()
    """What a step may call; without tools a step is one model call."""
    step_model: Runnable = field(init=False)
    """`model` with `tools` bound, for the calls of a step; `model` itself without tools."""
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS
    """Most tool calls one step may make; past it the step fails and is adapted."""
    approve_tools: frozenset[str] = frozenset()
    """Names of the tools whose calls wait for a reviewer's approval."""
    review_plan: bool = False
    """Whether runs that do not say otherwise pause for a review of their plan."""
    replan: ReplanMode = "on_failure"
    """When the model may revise the steps left: after a failed step, after every step,
    or never."""
    max_replans: int = DEFAULT_MAX_REPLANS
    """Most times a run asks for a revision; past it the plan runs as it stands."""
    max_reply_chars: int = DEFAULT_REPLY_CHARS
    """Longest reply kept, in characters; a longer one is cut and marked as cut short."""
    max_parallel: int = DEFAULT_MAX_PARALLEL
    """Most steps in progress at once; 1 runs one step at a time."""
    step_timeout: float | None = None
    """Seconds one step may take, its tool calls included; past it the step is adapted."""
    max_seconds: float | None = None
    """Seconds the run's steps may take, from the first step's start; then no step
    starts, the steps in progress are stopped, and the answer is written."""
    max_tokens: int | None = None
    """Tokens (prompt and reply) the run's model calls may use; then no step starts."""
    plan_format: PlanFormat = "text"
    """How planning asks for the plan: `typed` (JSON held to a schema: Ollama's `format`),
    `text` (a numbered list), or `text_then_typed` (a list, and if the reply holds none, a
    typed plan: the embedded model writes better steps as text, and its grammar makes the
    typed plan always well formed)."""

    def __post_init__(self) -> None:
        from langchain_core.runnables import Runnable

        if not isinstance(self.model, Runnable):
            raise ValueError(
                f"model must be a LangChain chat model, got {type(self.model).__name__} "
                f"{self.model!r}; build one with agentic_loop.load_model('ollama:NAME')"
            )
        for name, least, most in [
            ("max_steps", 1, MOST_STEPS),
            ("recent_results", 0, MOST_STEPS),
            ("result_chars", 1, MOST_REPLY_CHARS),
            ("max_tool_calls", 1, MOST_TOOL_CALLS),
            ("max_replans", 0, MOST_REPLANS),
            ("max_reply_chars", 1, MOST_REPLY_CHARS),
            ("max_parallel", 1, MOST_PARALLEL),
        ]:
            check_whole(name, getattr(self, name), least, most)
        if self.replan not in ("on_failure", "after_each_step", "never"):
            raise ValueError(
                f"replan must be 'on_failure', 'after_each_step' or 'never', got {self.replan!r}"
            )
        for name in ("step_timeout", "max_seconds"):
            if getattr(self, name) is not None:
                check_seconds(name, getattr(self, name))
        if self.max_tokens is not None:
            check_whole("max_tokens", self.max_tokens, 1, MOST_TOKENS)
        object.__setattr__(self, "step_model", self._bind_tools())

    def _bind_tools(self) -> Runnable:
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
            return cast("Runnable", bind(list(self.tools)))
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
