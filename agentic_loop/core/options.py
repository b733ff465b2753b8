"""What a run may choose, in one place: `LoopOptions`, with each choice's default, bounds and
environment variable, its one check, and how a run stores it and reads it back.

Every face builds one: `build_graph(model, **choices)` and `run_agentic_loop` from keyword
arguments, the CLI from its flags (`LoopOptions.build`, which also reads the
`AGENTIC_LOOP_*` variables), the web app from its form, LangGraph Server from a run's
context. The service records it in the run's checkpoints (`to_metadata`), so that a
resume from any face runs with the same choices (`from_metadata`; a run stored before a
choice existed reads it as its default).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self, cast

from agentic_loop.core import older_runs

ReplanMode = Literal["on_failure", "after_each_step", "never"]
PlanFormat = Literal["typed", "text", "text_then_typed"]
PromptStyle = Literal["capable", "small"]

DEFAULT_MAX_STEPS = 10
CHARS_PER_TOKEN = 8
"""A generous count of characters per token, to turn a token cap into a character cap."""
MODEL_ENV = "AGENTIC_LOOP_MODEL"
MAX_STEPS_ENV = "AGENTIC_LOOP_MAX_STEPS"
MAX_PARALLEL_ENV = "AGENTIC_LOOP_MAX_PARALLEL"
STEP_TIMEOUT_ENV = "AGENTIC_LOOP_STEP_TIMEOUT"
MAX_SECONDS_ENV = "AGENTIC_LOOP_MAX_SECONDS"
MAX_TOKENS_ENV = "AGENTIC_LOOP_MAX_TOKENS"

MOST_STEPS = 1000
MOST_TOOL_CALLS = 1000
MOST_REPLANS = 1000
MOST_PARALLEL = 64
MOST_SECONDS = 7 * 24 * 3600.0
"""A week: the most any time limit (a reply's, a step's, a run's) takes."""
MOST_TOKENS = 10**9
MOST_REPLY_TOKENS = 10**6
MOST_REPLY_CHARS = MOST_REPLY_TOKENS * CHARS_PER_TOKEN


class ToolSetupError(Exception):
    """A tool option cannot be used; the one-line message says what is wrong and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class ToolOptions:
    """Tools named for loading (`--tools`, `--mcp`, `--workspace`), kept with the run so that
    a resume loads the same ones; `agentic_loop.step_tools.load_tools` loads them. False
    when it names no tools."""

    imports: tuple[str, ...] = ()
    """`package.module:attribute` specs (`--tools`, may repeat), each perhaps after a prefix
    for its tools' names and `=` (`files_=my_tools:TOOLS`)."""
    mcp_config: str | None = None
    """Absolute path of an `mcpServers` JSON file (`--mcp`)."""
    workspace: str | None = None
    """Absolute path of the folder the file tools may touch (`--workspace`)."""
    import_root: str | None = None
    """Absolute folder `imports` are found from: the current folder of `run`."""
    workspace_prefix: str | None = None
    """Put before the names of the workspace's file tools (`--workspace-prefix`)."""
    idempotent_tools: tuple[str, ...] = ()
    """Tools (by the names the model sees) safe to call again (`--idempotent-tool`): marked
    with `metadata["idempotent"] = True`."""

    @classmethod
    def from_cli(
        cls,
        imports: Sequence[str] = (),
        mcp_config: str | Path | None = None,
        workspace: str | Path | None = None,
        *,
        workspace_prefix: str | None = None,
        idempotent_tools: Sequence[str] = (),
    ) -> ToolOptions:
        """The options as given on the command line, with paths made absolute and checked."""
        if workspace_prefix is not None and workspace is None:
            raise ToolSetupError("--workspace-prefix needs --workspace, whose tools it names")
        if idempotent_tools and not (imports or mcp_config or workspace):
            raise ToolSetupError("--idempotent-tool needs tools: add --tools, --mcp or --workspace")
        if mcp_config is not None:
            mcp_config = Path(mcp_config).expanduser().resolve()
            if not mcp_config.is_file():
                raise ToolSetupError(f"--mcp {mcp_config} is not a file; pass a servers JSON file")
        if workspace is not None:
            workspace = Path(workspace).expanduser().resolve()
            if not workspace.is_dir():
                raise ToolSetupError(
                    f"--workspace {workspace} is not a folder; create it or pass another"
                )
        return cls(
            imports=tuple(imports),
            mcp_config=str(mcp_config) if mcp_config is not None else None,
            workspace=str(workspace) if workspace is not None else None,
            import_root=str(Path.cwd()) if imports else None,
            workspace_prefix=workspace_prefix,
            idempotent_tools=tuple(idempotent_tools),
        )

    def to_metadata(self) -> dict[str, Any]:
        """A JSON-able dict of the options that are set; `{}` when no tools are named."""
        data = {
            "imports": list(self.imports),
            "mcp_config": self.mcp_config,
            "workspace": self.workspace,
            "import_root": self.import_root,
            "workspace_prefix": self.workspace_prefix,
            "idempotent_tools": list(self.idempotent_tools),
        }
        return {key: value for key, value in data.items() if value}

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any] | None) -> ToolOptions:
        """The options `to_metadata` gave; no tools for a run stored before tools existed."""
        data = data or {}
        return cls(
            imports=tuple(data.get("imports", ())),
            mcp_config=data.get("mcp_config"),
            workspace=data.get("workspace"),
            import_root=data.get("import_root"),
            workspace_prefix=data.get("workspace_prefix"),
            idempotent_tools=tuple(data.get("idempotent_tools", ())),
        )

    def __bool__(self) -> bool:
        return bool(self.imports or self.mcp_config or self.workspace)


@dataclass(frozen=True)
class Bound:
    """The numbers a choice takes: whole numbers from `least` to `most`, or (for `float`)
    seconds above 0 and at most `most`; `env` is the variable a face reads it from."""

    kind: type[int] | type[float]
    least: int
    most: float
    env: str | None = None

    def describe(self) -> str:
        if self.kind is int:
            return f"a whole number from {self.least} to {int(self.most)}"
        return f"a number of seconds above 0 and up to {self.most:g}"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int:
            return isinstance(value, int) and self.least <= value <= self.most
        return math.isfinite(value) and 0 < value <= self.most


def _bound(kind: type[int] | type[float], least: int, most: float, env: str | None = None) -> Any:
    return {"bound": Bound(kind, least, most, env)}


@dataclass(frozen=True, kw_only=True)
class LoopOptions:
    """Every choice a run makes, each with its default. Build one with keywords
    (`LoopOptions(max_parallel=1)`), from text with `build`, or from a stored run with
    `from_metadata`; a number out of bounds is a ValueError naming it."""

    model: str | None = None
    """The model spec (`auto`, `local`, `ollama:NAME`); None: `AGENTIC_LOOP_MODEL`, else
    `auto`. With a model object, what names it (`models.spec_of`), for the record."""
    max_steps: int | None = field(default=None, metadata=_bound(int, 1, MOST_STEPS, MAX_STEPS_ENV))
    """Most steps a run carries out; a longer plan is cut. None: `AGENTIC_LOOP_MAX_STEPS`,
    else 10. A run's input `max_steps` overrides it."""
    review_plan: bool = False
    """Pause for a review of the plan before any step runs (needs a checkpointer). A run's
    input `review_plan` overrides it."""
    replan: ReplanMode = "on_failure"
    """When the model may revise the steps left: after a failed step, after every step, or
    never."""
    max_replans: int = field(default=3, metadata=_bound(int, 0, MOST_REPLANS))
    """Most times a run asks for a revision; past it the plan runs as it stands."""
    max_parallel: int = field(default=4, metadata=_bound(int, 1, MOST_PARALLEL, MAX_PARALLEL_ENV))
    """Most steps in progress at once; 1 runs one step at a time."""
    tools: ToolOptions = ToolOptions()
    """Tools to load by name (the CLI's and web app's); tool objects are passed beside."""
    approve_tools: bool | tuple[str, ...] = False
    """Tool calls that wait for a reviewer: True for every tool, or the tools' names."""
    max_tool_calls: int = field(default=8, metadata=_bound(int, 1, MOST_TOOL_CALLS))
    """Most tool calls one step may make; past it the step fails and is adapted."""
    step_timeout: float | None = field(
        default=None, metadata=_bound(float, 0, MOST_SECONDS, STEP_TIMEOUT_ENV)
    )
    """Seconds one step may take, its tool calls included; past it the step is adapted."""
    max_seconds: float | None = field(
        default=None, metadata=_bound(float, 0, MOST_SECONDS, MAX_SECONDS_ENV)
    )
    """Seconds the run's steps may take, from the first step's start; then no step starts,
    the steps in progress are stopped, and the answer is written."""
    max_tokens: int | None = field(
        default=None, metadata=_bound(int, 1, MOST_TOKENS, MAX_TOKENS_ENV)
    )
    """Tokens (prompt and reply) the run's model calls may use; then no step starts."""
    max_reply_tokens: int = field(default=1024, metadata=_bound(int, 1, MOST_REPLY_TOKENS))
    """The cap on a reply's length sent to Ollama (`num_predict`)."""
    max_reply_chars: int | None = field(default=None, metadata=_bound(int, 1, MOST_REPLY_CHARS))
    """Longest reply kept, in characters, whatever the server's own cap; a longer one is
    cut and marked as cut short. None: 8 characters a token of `max_reply_tokens`."""
    timeout: float = field(default=300.0, metadata=_bound(float, 0, MOST_SECONDS))
    """Seconds an Ollama model's reply may take as a whole, however steadily its parts
    come (a server streaming empty chunks is stopped too); past it the call fails."""
    prompts: PromptStyle | None = None
    """Which prompts the model gets: `capable` (a step does the step and gives its result
    in full; the answer takes the form the task asks for) or `small` (tuned for the
    embedded 135M model); None: `small` for the embedded model, else `capable`."""
    recent_results: int | None = field(default=None, metadata=_bound(int, 0, MOST_STEPS))
    """How many earlier results each step's prompt carries forward: those of the steps it
    depends on (all of them), then of the steps those depend on, up to this many. None:
    the prompt set's (`small`: 2; `capable`: no limit)."""
    result_chars: int | None = field(default=None, metadata=_bound(int, 1, MOST_REPLY_CHARS))
    """The most of each earlier result a step's prompt (and the replanner's) carries
    forward, in characters. None: the prompt set's (`small`: 200; `capable`: whole). Either
    way the prompt is then fitted to the model's context window (`Settings.fit`)."""
    plan_format: PlanFormat | None = None
    """How planning asks for the plan: `typed` (JSON held to a schema), `text` (a numbered
    list) or `text_then_typed`; None: what suits the model (`models.default_plan_format`)."""

    def __post_init__(self) -> None:
        if isinstance(self.approve_tools, str):
            raise ValueError(
                f"approve_tools must be True or a list of tool names, got {self.approve_tools!r}"
            )
        if not isinstance(self.approve_tools, bool):
            object.__setattr__(self, "approve_tools", tuple(self.approve_tools))
        for name, value, bound in self._bounded():
            if value is not None and not bound.accepts(value):
                none = ", or None" if _optional(name) and bound.kind is float else ""
                raise ValueError(f"{name} must be {bound.describe()}{none}, got {value!r}")
        _check_choice("replan", self.replan, ("on_failure", "after_each_step", "never"))
        if self.plan_format is not None:
            _check_choice("plan_format", self.plan_format, ("typed", "text", "text_then_typed"))
        if self.prompts is not None:
            _check_choice("prompts", self.prompts, ("capable", "small"))
        if not isinstance(self.review_plan, bool):
            raise ValueError(f"review_plan must be true or false, got {self.review_plan!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ValueError(f"model must be auto, local or ollama:NAME, got {self.model!r}")

    def _bounded(self) -> list[tuple[str, Any, Bound]]:
        return [(f.name, getattr(self, f.name), f.metadata["bound"]) for f in _BOUNDED]

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, checked as a new one is."""
        return dataclasses.replace(self, **changes)

    @property
    def reply_chars(self) -> int:
        """The longest reply kept, in characters (see `max_reply_chars`)."""
        return self.max_reply_chars or CHARS_PER_TOKEN * self.max_reply_tokens

    @classmethod
    def build(
        cls,
        given: Mapping[str, object],
        *,
        env: bool = True,
        label: Callable[[str], str] = str,
        base: LoopOptions | None = None,
    ) -> LoopOptions:
        """Options from `given` (a value, or text such as a flag's, for each choice named;
        None or absent: not given), else from the choice's `AGENTIC_LOOP_*` variable when
        `env`, else `base`'s (default: the defaults). Names `given` has that are no choice
        are ignored. A bad value is a ValueError of one line naming it as `label(name)`
        (a flag, say) or naming its variable."""
        chosen: dict[str, Any] = {}
        for option in fields(cls):
            value = given.get(option.name)
            source = label(option.name)
            bound: Bound | None = option.metadata.get("bound")
            if value is None and env and bound is not None and bound.env:
                value, source = os.environ.get(bound.env, "").strip() or None, bound.env
            if value is None:
                continue
            if bound is not None:
                value = parse_number(source, value, bound)
            elif option.name == "review_plan":
                value = _flag(source, value)
            chosen[option.name] = value
        try:
            return (base or cls()).replace(**chosen)
        except ValueError as exc:  # its message starts with the choice's name: relabel it
            name = str(exc).split(" ", 1)[0]
            raise ValueError(str(exc).replace(name, label(name), 1)) from None

    def to_metadata(self) -> dict[str, str | int | float | bool]:
        """The options as a run's checkpoint metadata keeps them: plain values only, lists
        and dicts as JSON text, choices left unset (None) left out."""
        data: dict[str, str | int | float | bool] = {}
        for option in fields(self):
            value = getattr(self, option.name)
            if option.name == "tools":
                value = json.dumps(self.tools.to_metadata())
            elif option.name == "approve_tools" and not isinstance(value, bool):
                value = json.dumps(list(value))
            if value is not None:
                data[option.name] = value
        return data

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> LoopOptions:
        """The options a run was stored with. A run stored before a choice was recorded
        reads it as its default; one whose recorded value no longer fits reads the default
        too, so a stored run always reads."""
        known = {f.name for f in fields(cls)}
        values = {name: metadata[name] for name in known if metadata.get(name) is not None}
        values["tools"] = ToolOptions.from_metadata(json.loads(metadata.get("tools") or "{}"))
        approve = metadata.get("approve_tools")
        if isinstance(approve, str):  # a JSON list of names
            values["approve_tools"] = tuple(json.loads(approve))
        values.update(older_runs.renamed_options(metadata))
        try:
            return cls().replace(**values)
        except (ValueError, TypeError):
            pass  # keep what still fits, one choice at a time
        options = cls()
        for name, value in values.items():
            try:
                options = options.replace(**{name: value})
            except (ValueError, TypeError):
                continue
        return options

    def described(self) -> str:
        """The choices that differ from the defaults, as `name=value, ...` (`defaults`
        if none do): how a face says what a run runs with."""
        defaults = LoopOptions()
        changed = [
            f"{f.name}={_shown(getattr(self, f.name))}"
            for f in fields(self)
            if f.name not in ("model", "tools")
            and getattr(self, f.name) != getattr(defaults, f.name)
        ]
        return ", ".join(changed) or "defaults"


_BOUNDED = [f for f in fields(LoopOptions) if "bound" in f.metadata]


def _optional(name: str) -> bool:
    return LoopOptions.__dataclass_fields__[name].default is None


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        listed = ", ".join(repr(choice) for choice in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"{name} must be {listed}, got {value!r}")


def parse_number(source: str, value: object, bound: Bound) -> object:
    """Text turned into the bound's kind of number (other values as they are), checked."""
    if isinstance(value, str):
        text = value
        try:
            value = bound.kind(text)
        except ValueError:  # not a number, or an int of more than 4300 digits
            value = None
        if value is None or not bound.accepts(value):
            shown = text if len(text) <= 40 else text[:39] + "…"
            raise ValueError(f"{source} must be {bound.describe()}, got {shown!r}")
    elif not bound.accepts(value):
        raise ValueError(f"{source} must be {bound.describe()}, got {value!r}")
    return value


def _flag(source: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"{source} must be true or false, got {value!r}")


def default_max_steps() -> int:
    """`AGENTIC_LOOP_MAX_STEPS` if set (a whole number from 1 to `MOST_STEPS`), else 10."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_STEPS
    return cast(int, parse_number(MAX_STEPS_ENV, raw, Bound(int, 1, MOST_STEPS)))
