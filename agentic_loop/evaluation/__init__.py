"""Evaluating models on a task set: each task run with each model, what each run cost
(steps, model calls, tokens, seconds), how its replies read (echoes and repeats), how long
its answer is, and with a judge model a grade against the task's rubric.

`agentic-loop eval` is its face; `evaluate` is the same in Python:

    tasks = read_tasks()                       # the shipped everyday tasks
    evaluation = await evaluate(tasks, ["local", "ollama:llama3.2"], judge="ollama:llama3.2")
    for summary in evaluation.summaries: ...
"""

from agentic_loop.evaluation.calls import CallCounter, reply_flaw
from agentic_loop.evaluation.compare import ModelChoice, OnRun, SetupError, evaluate, run_task
from agentic_loop.evaluation.judge import Score, judge_answer, judge_messages, read_score
from agentic_loop.evaluation.results import Evaluation, ModelSummary, TaskRun
from agentic_loop.evaluation.tasks import EvalTask, TaskFileError, read_tasks, shipped_tasks_path

__all__ = [
    "CallCounter",
    "EvalTask",
    "Evaluation",
    "ModelChoice",
    "ModelSummary",
    "OnRun",
    "Score",
    "SetupError",
    "TaskFileError",
    "TaskRun",
    "evaluate",
    "judge_answer",
    "judge_messages",
    "read_score",
    "read_tasks",
    "reply_flaw",
    "run_task",
    "shipped_tasks_path",
]
