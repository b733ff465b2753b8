"""What an evaluation found: a row for each run of a task by a model, a summary for each model."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agentic_loop.core.state import RunStatus


class TaskRun(BaseModel, frozen=True):
    """One task run by one model."""

    model: str = Field(description="The model's spec (`local`, `ollama:NAME`) or name.")
    task_id: str
    status: RunStatus
    steps: int = Field(ge=0, description="Steps that ran (completed, adapted or failed).")
    calls: int = Field(ge=0, description="Chat model calls the run made, the judge's aside.")
    flawed: int = Field(
        ge=0, description="Replies that echo their prompt, or are empty or repeat themselves."
    )
    flaws: list[str] = Field(default_factory=list, description="What was wrong with each.")
    tokens_in: int = Field(ge=0, description="Prompt tokens of the run, as the model reported.")
    tokens_out: int = Field(ge=0, description="Reply tokens of the run, as the model reported.")
    seconds: float = Field(ge=0, description="Wall time of the run, the judge's aside.")
    answer_chars: int = Field(ge=0, description="Length of the run's answer, in characters.")
    answer: str = Field(default="", description="The run's answer, for a reader of the JSON.")
    score: int | None = Field(
        default=None, description="The judge's grade, 1 to 5; None: no judge, or none read."
    )
    judge_reason: str = Field(default="", description="The judge's reason, or why no grade.")
    thread_id: str | None = None


class ModelSummary(BaseModel, frozen=True):
    """One model's runs of the task set, added up."""

    model: str
    runs: int
    completed: int = Field(description="Runs whose status is `completed`.")
    steps: int
    calls: int
    flawed: int
    tokens_in: int
    tokens_out: int
    seconds: float
    answer_chars: float = Field(description="Mean length of the answers, in characters.")
    score: float | None = Field(description="Mean grade of the graded runs; None: none graded.")
    graded: int = Field(description="Runs the judge graded.")

    @classmethod
    def of(cls, model: str, runs: list[TaskRun]) -> ModelSummary:
        scores = [run.score for run in runs if run.score is not None]
        return cls(
            model=model,
            runs=len(runs),
            completed=sum(run.status == "completed" for run in runs),
            steps=sum(run.steps for run in runs),
            calls=sum(run.calls for run in runs),
            flawed=sum(run.flawed for run in runs),
            tokens_in=sum(run.tokens_in for run in runs),
            tokens_out=sum(run.tokens_out for run in runs),
            seconds=sum(run.seconds for run in runs),
            answer_chars=sum(run.answer_chars for run in runs) / len(runs) if runs else 0.0,
            score=sum(scores) / len(scores) if scores else None,
            graded=len(scores),
        )


class Evaluation(BaseModel, frozen=True):
    """Every model's runs of every task, and each model's summary, in the order given."""

    tasks: list[str] = Field(description="The tasks' ids, in the order they ran.")
    judge: str | None = Field(description="The judge model's spec or name, if any.")
    summaries: list[ModelSummary]
    runs: list[TaskRun]
