"""The task set an evaluation runs: one JSON object a line, read with one-line errors.

Each line is `{"id": ..., "task": ..., "rubric": ...}`, with an optional `max_steps`; blank
lines are skipped. The set shipped with the package is `tasks.jsonl` beside this module.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field

from agentic_loop.core.options import MOST_STEPS

SHIPPED_TASKS = "tasks.jsonl"
"""The everyday tasks shipped in this package, with their rubrics."""
_KEYS = ("id", "task", "rubric", "max_steps")


class TaskFileError(ValueError):
    """A task file that cannot be read; the message is one line: file, line, what is wrong."""


class EvalTask(BaseModel, frozen=True):
    """One task of an evaluation."""

    id: str = Field(description="Short name of the task, unique in its file.")
    task: str = Field(description="What the loop is asked to do, in plain words.")
    rubric: str = Field(description="What a good answer does, for the judge.")
    max_steps: int | None = Field(
        default=None, description="Most steps for this task; None: the evaluation's."
    )


def shipped_tasks_path() -> Path:
    return Path(str(files(__package__) / SHIPPED_TASKS))


def read_tasks(path: Path | str | None = None) -> list[EvalTask]:
    """The tasks in the JSONL file at `path` (None: the shipped set). Raises
    `TaskFileError` naming the file and line for the first line that does not fit."""
    path = Path(path) if path is not None else shipped_tasks_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{path} is not UTF-8 text: {exc.reason}") from None
    tasks: list[EvalTask] = []
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = _read_line(line)
        except ValueError as exc:
            raise TaskFileError(f"{path}:{number}: {exc}") from None
        if task.id in first_seen:
            raise TaskFileError(
                f"{path}:{number}: id {task.id!r} is used already, on line {first_seen[task.id]}"
            )
        first_seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{path} holds no tasks: write one JSON object a line")
    return tasks


def _read_line(line: str) -> EvalTask:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ValueError(f'not a JSON object but {type(data).__name__}: write {{"id": ..., ...}}')
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}: a task has {', '.join(_KEYS)}")
    for key in ("id", "task", "rubric"):
        value = data.get(key)
        if key not in data:
            raise ValueError(f"{key!r} is missing")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key!r} must be non-empty text, got {value!r}")
    max_steps = data.get("max_steps")
    if max_steps is not None and (type(max_steps) is not int or not 1 <= max_steps <= MOST_STEPS):
        raise ValueError(
            f"'max_steps' must be a whole number from 1 to {MOST_STEPS}, got {max_steps!r}"
        )
    return EvalTask(
        id=data["id"].strip(), task=data["task"], rubric=data["rubric"], max_steps=max_steps
    )
