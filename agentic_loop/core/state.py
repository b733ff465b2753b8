"""What flows through the graph: the state, its input and output, and the domain models."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any, Literal, NotRequired, Required, Self

from langchain_core.messages import AnyMessage
from langgraph.channels import EphemeralValue, LastValue
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, JsonValue, TypeAdapter, ValidationError
from typing_extensions import TypedDict

StepStatus = Literal["completed", "adapted", "failed", "skipped"]
ReplanMode = Literal["on_failure", "after_each_step", "never"]
PlanChange = Literal["planned", "replaced", "done"]
ToolCallStatus = Literal["success", "error", "refused"]
CutOffAction = Literal["rerun", "asked", "approved", "declined", "unknown"]
"""What became of a tool call cut off when its run stopped: run again with the same key
(an idempotent tool); asked about, then `approved` to run again or `declined`; or not run
again, the model told that its outcome is `unknown`."""
RunStatus = Literal["completed", "partial", "failed"]
ReviewOutcome = Literal["approved", "edited", "rejected"]
Budget = Literal["max_seconds", "max_tokens"]


class ToolCallRecord(BaseModel):
    """One tool call a step made, and what came of it."""

    tool: str
    args: dict[str, JsonValue] = Field(description="The arguments it ran with (after any edit).")
    result: str = Field(description="What the tool returned, or the error the model was shown.")
    status: ToolCallStatus = Field(description="`refused` when a reviewer rejected the call.")
    duration_ms: int = Field(ge=0)


class AgenticStep(BaseModel):
    """The outcome of one step of the plan."""

    step_num: int = Field(ge=1, description="Position of the step in the plan, from 1.")
    description: str = Field(description="The step as the plan states it.")
    result: str = Field(
        description="What the model reported, or why the step failed or was skipped."
    )
    status: StepStatus
    duration_ms: int = Field(ge=0)
    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens of its model calls.")
    tokens_out: int = Field(default=0, ge=0, description="Reply tokens of its model calls.")
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list, description="The step's tool calls, in the order they were asked."
    )
    cut_short: bool = Field(
        default=False, description="Whether the reply hit the length cap: not a finished result."
    )
    failure: str | None = Field(
        default=None, description="For an adapted or failed step: why its first try failed."
    )


class PlanVersion(BaseModel):
    """One version of the plan: as planned (or reviewed), then each one replanning made."""

    after_step: int = Field(ge=0, description="How many steps had finished when it was made.")
    steps: list[str] = Field(description="The whole plan, finished steps first.")
    change: PlanChange = Field(
        description="`planned`; `replaced` when the steps left were replaced; `done` when the "
        "model said the task was complete, dropping them."
    )


class AgenticResult(BaseModel):
    """The outcome of a whole run."""

    task_id: str = Field(description="Short id of this run, unique per run.")
    task: str
    summary: str
    steps: list[AgenticStep] = Field(default_factory=list)
    status: RunStatus
    total_duration_ms: int = Field(
        ge=0, description="Time spent planning, then from the first step's start to the end."
    )
    thread_id: str | None = Field(default=None, description="Checkpointer thread of the run.")
    planned_steps: int = Field(
        default=0,
        ge=0,
        description="How many steps the model planned, before any cut to max_steps.",
    )
    answer: str = Field(
        default="", description="The answer to the task, written from the steps' results."
    )
    plan_versions: list[PlanVersion] = Field(
        default_factory=list, description="The plan as first made, then each revision."
    )
    depends_on: list[list[int]] = Field(
        default_factory=list, description="For each step, the steps it waited on."
    )
    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens of the whole run.")
    tokens_out: int = Field(default=0, ge=0, description="Reply tokens of the whole run.")
    budget_spent: Budget | None = Field(
        default=None, description="The budget that ran out and ended the run early, if any."
    )


class Plan(BaseModel):
    """What planning produced for one run."""

    task_id: str = Field(description="Short id of the run, unique per run.")
    thread_id: str | None = Field(default=None, description="Checkpointer thread of the run.")
    steps: list[str] = Field(description="The steps that will run, at most max_steps.")
    planned_count: int = Field(ge=0, description="How many steps the model planned.")
    max_steps: int = Field(ge=1, description="The cap the steps were cut to.")
    error: str | None = Field(default=None, description="Why there are no steps, if so.")
    duration_ms: int = Field(ge=0)
    review: ReviewOutcome | None = Field(
        default=None, description="How a reviewer answered, when the plan was reviewed."
    )
    review_requested: bool = Field(
        default=False, description="Whether the run asked for the plan to be reviewed."
    )
    versions: list[PlanVersion] = Field(
        default_factory=list,
        description="Every version once replanning changed it, the first included; empty "
        "while `steps` is the only one.",
    )
    replans: int = Field(default=0, ge=0, description="How many times replanning was asked.")
    replan_seen: int = Field(
        default=0, ge=0, description="How many finished steps the last replanning looked at."
    )
    depends_on: list[list[int]] = Field(
        default_factory=list,
        description="For each step, the steps (by number) whose results it needs, as the "
        "plan states them: if one of those fails, it is skipped. A plan that states none "
        "(or was stored before dependencies existed) runs in order.",
    )
    notes: list[str] = Field(
        default_factory=list, description="Dependencies the checks dropped, and why."
    )
    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens of (re)planning.")
    tokens_out: int = Field(default=0, ge=0, description="Reply tokens of (re)planning.")

    def dependencies(self) -> list[list[int]]:
        """For each step, the steps it waits for: those it depends on, or in a plan that
        states no dependency, the step before it."""
        if len(self.depends_on) == len(self.steps) and any(self.depends_on):
            return self.depends_on
        return [[n - 1] if n > 1 else [] for n in range(1, len(self.steps) + 1)]

    def stated_dependencies(self) -> list[list[int]]:
        """For each step, the steps it depends on as the plan states them (none in a plan
        that runs in order)."""
        if len(self.depends_on) == len(self.steps):
            return self.depends_on
        return [[] for _ in self.steps]

    def all_versions(self) -> list[PlanVersion]:
        """The plan's versions, the first included."""
        return self.versions or [PlanVersion(after_step=0, steps=self.steps, change="planned")]


class Answer(BaseModel):
    """What the model wrote as the answer to the task, or why there is none."""

    text: str = ""
    error: str | None = Field(default=None, description="Why there is no answer, if so.")
    cut_short: bool = Field(default=False, description="Whether the reply hit the length cap.")
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)


class RunningStep(BaseModel):
    """A step in progress: written when its first model call is made, removed when it ends."""

    step_num: int = Field(ge=1)
    started_at: float = Field(description="Wall-clock start of the step (seconds since epoch).")
    failure: str | None = Field(
        default=None,
        description="Why its model call failed (or it made too many tool calls, or ran out "
        "of time), while it waits for `adapt` to try another way.",
    )
    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens so far.")
    tokens_out: int = Field(default=0, ge=0, description="Reply tokens so far.")


class StepStart(BaseModel):
    """Stored by versions before parallel steps (the step in progress); read, never written."""

    step_num: int = Field(ge=1)
    started_at: float


class StepFailure(BaseModel):
    """Stored by versions before parallel steps (a failed call); read, never written."""

    step_num: int = Field(ge=1)
    error: str
    started_at: float


def update_running(
    current: dict[str, RunningStep], changes: dict[str, RunningStep | None]
) -> dict[str, RunningStep]:
    """Reducer of `running`: each step's entry replaced, or removed where it is None.
    Entries written as plain fields (through the LangGraph API, in JSON) become
    `RunningStep`s."""
    merged = {**current, **changes}
    return {
        key: RunningStep.model_validate(step) for key, step in merged.items() if step is not None
    }


def add_steps(current: list[AgenticStep], new: list[AgenticStep]) -> list[AgenticStep]:
    """Reducer of `steps`: the new steps after the old ones. Steps written as plain fields
    (through the LangGraph API, in JSON) become `AgenticStep`s."""
    return [*current, *(AgenticStep.model_validate(step) for step in new)]


@cache
def _adapter(typ: Any) -> TypeAdapter[Any]:
    return TypeAdapter(typ)


class Validated(LastValue[Any]):
    """A `LastValue` channel that holds its value as its type: a value written as plain
    fields (a JSON state update through the LangGraph API) is validated into the loop's
    model, so nodes and routers always read `Plan`, `Answer` or `AgenticResult`, never a
    dict. A bad value is a pydantic `ValidationError` naming the field.

    A stored value is validated too when it comes back as fields (a checkpoint read by a
    serializer that did not allow the type); if it no longer fits, it is kept as it was,
    for the run's readers to report (`storage.load_run`)."""

    def update(self, values: Sequence[Any]) -> bool:
        return super().update([_adapter(self.typ).validate_python(value) for value in values])

    def from_checkpoint(self, checkpoint: Any) -> Self:
        restored = super().from_checkpoint(checkpoint)
        if isinstance(checkpoint, dict):
            try:
                restored.value = _adapter(self.typ).validate_python(checkpoint)
            except ValidationError:
                pass
        return restored


class PlanReview(TypedDict, total=False):
    """A reviewer's answer, passed as `Command(resume=...)` to a run paused for review.

    Shorter forms mean the same: `"approve"` or `True`; a list of steps for `edit`;
    `"reject"` or `False`.
    """

    action: Required[Literal["approve", "edit", "reject"]]
    steps: list[str]
    """For `edit`: the steps to run instead, at most the plan's `max_steps`."""
    reason: str
    """For `reject`: why, for the summary."""


class ToolApproval(TypedDict, total=False):
    """A reviewer's answer to a tool call waiting for approval, passed as
    `Command(resume=...)`.

    Shorter forms mean the same: `"approve"` or `True`; `"reject"` or `False`.
    """

    action: Required[Literal["approve", "edit", "reject"]]
    args: dict[str, JsonValue]
    """For `edit`: the arguments to call the tool with instead."""
    reason: str
    """For `reject`: why, for the model."""


class AgenticInput(TypedDict):
    """What a caller passes in."""

    task: str
    """The task to plan and carry out."""
    max_steps: NotRequired[int]
    """Most steps to run; 0 or absent means the graph's default."""
    review_plan: NotRequired[bool]
    """Pause for a review of the plan before any step runs; absent means the graph's
    default (`build_graph(review_plan=...)`)."""


class AgenticOutput(TypedDict):
    """What a caller gets back."""

    result: Annotated[AgenticResult, Validated(AgenticResult)]
    """The whole outcome: summary, status, steps and durations."""


QUIET_KEY = "quiet"
"""The key of the wrapper the nodes write the step messages in (`conversation.quietly`)."""


def add_step_messages(left: Any, right: Any) -> Any:
    """`add_messages`, with `right` as a node writes it: a list of messages, or one wrapped
    as `{QUIET_KEY: [...]}` so that LangGraph's `messages` stream does not show it."""
    if isinstance(right, dict) and QUIET_KEY in right:
        right = right[QUIET_KEY]
    return add_messages(left, right)


class AgenticState(AgenticInput, AgenticOutput, total=False):
    """Everything the nodes share. Keys are absent until a node first writes them."""

    plan: Annotated[Plan, Validated(Plan)]
    """Written once by `plan`."""
    steps: Annotated[list[AgenticStep], add_steps]
    """Finished (and skipped) steps, in the order they ended."""
    running: Annotated[dict[str, RunningStep], update_running]
    """The steps in progress, by step number (as text)."""
    messages: Annotated[list[AnyMessage], add_step_messages]
    """The conversations of the steps in progress: prompts, the model's turns and the tool
    results, each message's id starting with its step's tag (`conversation.step_tag`).
    A step's messages are removed when it ends. The nodes write them wrapped
    (`conversation.quietly`)."""
    answer: Annotated[Answer | None, Validated(Answer | None)]
    """Written by `answer` once no step is left to run."""
    budget_spent: Budget | None
    """The budget that ran out, once one has: no step starts after it."""
    work_started_at: float | None
    """Wall-clock start of the first step; `max_seconds` counts from it."""
    solo: Annotated[bool, EphemeralValue(bool, guard=False)]
    """Written by a step node that runs as the only task of its superstep: its router may
    then start the next round itself, without a `schedule` superstep (`routes.
    route_after_step`). Gone after the superstep."""


class StepTask(TypedDict):
    """What `execute`, `adapt` and `approve_tools` get for one step, through a `Send`."""

    task: str
    plan: Plan
    step_num: int
    running: RunningStep | None
    """None when the step starts."""
    messages: list[AnyMessage]
    """The step's conversation so far."""
    inputs: list[str]
    """The results of the steps it depends on, one line each, cut short."""
    step_deadline: float | None
    """Wall-clock time by which the step must end (`step_timeout`), if it has one."""
    run_deadline: float | None
    """Wall-clock time at which the run's time budget runs out (`max_seconds`), if any."""
    solo: NotRequired[bool]
    """Whether this is the only task of its superstep (absent in runs stored before)."""


STORED_TYPES = (
    AgenticStep,
    AgenticResult,
    Answer,
    Plan,
    PlanVersion,
    RunningStep,
    StepFailure,
    StepStart,
    ToolCallRecord,
)
"""The models that checkpoints hold; readers outside a compiled graph allow exactly these."""
