"""What flows through the graph: the state, its input and output, and the domain models."""

from __future__ import annotations

import operator
from typing import Annotated, Literal, NotRequired, Required

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field, JsonValue
from typing_extensions import TypedDict

StepStatus = Literal["completed", "adapted", "failed"]
ReplanMode = Literal["on_failure", "after_each_step", "never"]
PlanChange = Literal["planned", "replaced", "done"]
ToolCallStatus = Literal["success", "error", "refused"]
RunStatus = Literal["completed", "partial", "failed"]
ReviewOutcome = Literal["approved", "edited", "rejected"]


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
    result: str = Field(description="What the model reported, or why the step failed.")
    status: StepStatus
    duration_ms: int = Field(ge=0)
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list, description="The step's tool calls, in the order they were asked."
    )
    cut_short: bool = Field(
        default=False, description="Whether the reply hit the length cap: not a finished result."
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
    total_duration_ms: int = Field(ge=0, description="Time spent planning and running steps.")
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

    def all_versions(self) -> list[PlanVersion]:
        """The plan's versions, the first included."""
        return self.versions or [PlanVersion(after_step=0, steps=self.steps, change="planned")]


class Answer(BaseModel):
    """What the model wrote as the answer to the task, or why there is none."""

    text: str = ""
    error: str | None = Field(default=None, description="Why there is no answer, if so.")
    cut_short: bool = Field(default=False, description="Whether the reply hit the length cap.")


class StepStart(BaseModel):
    """The step in progress: set when its first model call is made, cleared when it ends."""

    step_num: int = Field(ge=1)
    started_at: float = Field(description="Wall-clock start of the step (seconds since epoch).")


class StepFailure(BaseModel):
    """A step whose model call raised (or that made too many tool calls), waiting for
    `adapt` to try another way."""

    step_num: int = Field(ge=1)
    error: str
    started_at: float = Field(description="Wall-clock start of the step (seconds since epoch).")


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

    result: AgenticResult
    """The whole outcome: summary, status, steps and durations."""


class AgenticState(AgenticInput, AgenticOutput, total=False):
    """Everything the nodes share. Keys are absent until a node first writes them."""

    plan: Plan
    """Written once by `plan`."""
    steps: Annotated[list[AgenticStep], operator.add]
    """Finished steps, in order; the next step to run is `len(steps) + 1`."""
    failure: StepFailure | None
    """The current step's failed call, set by `execute` and cleared by `adapt`."""
    current: StepStart | None
    """The step in progress, while its model and tool calls go back and forth."""
    messages: Annotated[list[AnyMessage], add_messages]
    """The current step's conversation: its prompt, the model's turns and the tool results.
    Emptied when the step ends."""
    answer: Answer | None
    """Written by `answer` once the last step is done."""


STORED_TYPES = (
    AgenticStep,
    AgenticResult,
    Answer,
    Plan,
    PlanVersion,
    StepFailure,
    StepStart,
    ToolCallRecord,
)
"""The models that checkpoints hold; readers outside a compiled graph allow exactly these."""
