"""An evaluation in the terminal: a line as each run ends, then a table with a row for each
model (and with `per_task`, one for each run). Text from the task file, the models and the
judge goes into cells as `Text`, its control characters written out (`events.visible`),
so no markup, emoji code or escape sequence in it acts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

from agentic_loop.core.events import visible

if TYPE_CHECKING:
    from rich.console import Console

    from agentic_loop.evaluation import Evaluation, TaskRun


_FIGURES = (
    "steps",
    "model\ncalls",
    "tokens\nin/out",
    "seconds",
    "echo or\nrepeat",
    "answer\nchars",
    "judged\n1-5",
)


def _table(*columns: str, title: Text) -> Table:
    """A table whose figures stay whole: only the first column (a model or a task) folds."""
    table = Table(
        *columns,
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = column is not table.columns[0]
    return table


def _text(text: str) -> Text:
    return Text(visible(text, lines=False))


def run_line(run: TaskRun, number: int, total: int) -> Text:
    """One finished run, for the progress on stderr."""
    graded = "" if run.score is None and not run.judge_reason else f", judged {run.score or '-'}"
    return _text(
        f"[{number}/{total}] {run.model} {run.task_id}: {run.status}, {run.steps} steps, "
        f"{run.calls} calls, {run.seconds:.1f} s{graded}"
    )


def print_evaluation(console: Console, evaluation: Evaluation, *, per_task: bool = False) -> None:
    """The summary table, a row for each model; with `per_task` first a table of each
    model's runs. Figures are totals over the tasks, but answer chars (a mean) and the
    judge's grade (a mean, with how many answers it graded)."""
    if per_task:
        for summary in evaluation.summaries:
            console.print(_runs_table(evaluation, summary.model))
    table = _table(
        "model",
        "completed",
        *_FIGURES,
        title=Text(f"{len(evaluation.tasks)} tasks, each run once by each model"),
    )
    for summary in evaluation.summaries:
        table.add_row(
            _text(summary.model),
            f"{summary.completed}/{summary.runs}",
            str(summary.steps),
            str(summary.calls),
            f"{summary.tokens_in}/{summary.tokens_out}",
            f"{summary.seconds:.1f}",
            f"{summary.flawed}/{summary.calls}",
            f"{summary.answer_chars:.0f}",
            "" if summary.score is None else f"{summary.score:.2f} ({summary.graded})",
        )
    console.print(table)
    if evaluation.judge is not None:
        console.print(
            _text(f"Judged by {evaluation.judge}, 1 (misses the rubric) to 5 (meets it).")
        )


def _runs_table(evaluation: Evaluation, model: str) -> Table:
    table = _table("task", "status", *_FIGURES, title=_text(model))
    for run in evaluation.runs:
        if run.model != model:
            continue
        table.add_row(
            _text(run.task_id),
            run.status,
            str(run.steps),
            str(run.calls),
            f"{run.tokens_in}/{run.tokens_out}",
            f"{run.seconds:.1f}",
            str(run.flawed),
            str(run.answer_chars),
            "" if run.score is None else str(run.score),
        )
    return table
