"""What the web app shows of a run: the stored run with what the events of a run going on in
this server told since laid over it (`LiveRun`), as a page's view (`run_view`) or a row of
the runs page (`run_row`). Every status comes from the one rule, `StoredRun.status`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentic_loop.core import events
from agentic_loop.core.events import PREVIEW_CHARS, one_line
from agentic_loop.core.state import AgenticStep
from agentic_loop.runs.records import StoredRun
from agentic_loop.runs.service import Question


@dataclass
class LiveStep:
    """A step as this server's events have told it so far."""

    description: str
    status: str = "running"
    result: str = ""
    duration_ms: int | None = None
    failure: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LiveRun:
    """What the events of a run going on in this server have told since it started here."""

    task: str = ""
    plan: list[str] | None = None
    steps: dict[int, LiveStep] = field(default_factory=dict)
    from_step: int | None = None
    """A re-run's first step: the stored steps from it on are being run again."""
    answer: str = ""
    summary: str = ""

    def apply(self, event: str, data: dict[str, Any]) -> None:
        item = events.parse(event, data)
        if item is None:  # not one of the loop's events
            return
        if item["event"] == events.PLAN_READY:
            self.task, self.plan = item["data"]["task"], list(item["data"]["steps"])
        elif item["event"] == events.PLAN_REVIEWED or item["event"] == events.PLAN_REVISED:
            self.plan = list(item["data"]["steps"])
        elif item["event"] == events.STEP_STARTED:
            self.steps[item["data"]["step"]] = LiveStep(item["data"]["description"])
        elif (ended := events.step_outcome(item)) is not None:
            step = self.steps.setdefault(ended.step, LiveStep(ended.description))
            step.status, step.result = ended.status, ended.text
            if item["event"] == events.STEP_COMPLETE:
                step.duration_ms = item["data"]["duration_ms"]
            elif item["event"] == events.STEP_ADAPTED:
                step.failure = item["data"]["error"]
        elif item["event"] == events.TOOL_CALLED:
            self._tool_called(item["data"])
        elif item["event"] == events.TOOL_RESULT:
            self._tool_result(item["data"])
        elif item["event"] == events.ANSWER_READY:
            self.answer = item["data"]["answer"]
        elif item["event"] == events.TASK_COMPLETE:
            self.summary = item["data"]["summary"]

    def _tool_called(self, called: events.ToolCalledData) -> None:
        step = self.steps.setdefault(called["step"], LiveStep(""))
        call = {"tool": called["tool"], "args": called["args"], "status": "running"}
        step.tool_calls.append(call | {"result": "", "duration_ms": None})

    def _tool_result(self, back: events.ToolResultData) -> None:
        """The result goes to the first call of that tool still running in the step."""
        step = self.steps.setdefault(back["step"], LiveStep(""))
        waiting = [
            call
            for call in step.tool_calls
            if call["tool"] == back["tool"] and call["status"] == "running"
        ]
        if not waiting:
            waiting = [{"tool": back["tool"], "args": ""}]
            step.tool_calls.append(waiting[0])
        waiting[0].update(
            status=back["status"], result=back["result"], duration_ms=back["duration_ms"]
        )


def display_status(stored: StoredRun | None, running: bool) -> str:
    """The status a page shows: the run's own (`StoredRun.status`, the rule every face
    shows), or `running` while this server runs it (from the moment it launches it)."""
    if running:
        return "running"
    return stored.status if stored is not None else "unknown"


def held_by(stored: StoredRun) -> str | None:
    """Who runs the run, if another process does."""
    if stored.holder is None or stored.status != "running elsewhere":
        return None
    return stored.holder.describe()


def run_row(stored: StoredRun, running: bool) -> dict[str, Any]:
    """A run as the runs page lists it."""
    answer = stored.result.answer if stored.result else ""
    return {
        "thread_id": stored.thread_id,
        "task": one_line(stored.task, PREVIEW_CHARS),
        "status": display_status(stored, running),
        "steps_done": stored.steps_done,
        "planned": len(stored.plan),
        "answer": one_line(answer, PREVIEW_CHARS),
        "updated_at": stored.updated_at,
    }


def run_view(
    thread_id: str,
    stored: StoredRun | None,
    live: LiveRun | None,
    questions: list[Question],
    error: str | None = None,
    elsewhere: str | None = None,
) -> dict[str, Any]:
    """The whole of a run as its page shows it: `stored` with `live` laid over it (None
    when the run does not run here); `elsewhere` says who runs it, if another process does."""
    status = display_status(stored, live is not None)
    task, plan, answer, summary = _run_texts(stored, live)
    rows = _plan_rows(plan, _step_rows(stored, live), None if live is not None else stored)
    return {
        "thread_id": thread_id,
        "task": task,
        "status": status,
        "running": live is not None,
        "model": stored.model if stored else None,
        "updated_at": stored.updated_at if stored else "",
        "steps": rows,
        "steps_done": sum(row["status"] in ("completed", "adapted", "failed") for row in rows),
        "planned": len(plan),
        "summary": summary,
        "answer": answer,
        "questions": [
            {"id": question.id, "kind": question.kind, "request": question.request}
            for question in questions
        ],
        "error": error,
        "elsewhere": elsewhere if status == "running elsewhere" else None,
        # What the page's buttons and forms depend on: when it changes, the page reloads.
        "controls": "|".join([status, *(question.id for question in questions)]),
    }


def _run_texts(stored: StoredRun | None, live: LiveRun | None) -> tuple[str, list[str], str, str]:
    """The run's task, plan, answer and summary: as the events told them while it runs
    here, else as stored."""
    task, plan = (stored.task, list(stored.plan)) if stored is not None else ("", [])
    if live is not None:
        plan = live.plan if live.plan is not None else plan
        return live.task or task, plan, live.answer, live.summary
    if stored is not None and stored.result is not None:
        return task, plan, stored.result.answer, stored.result.summary
    return task, plan, "", ""


def _step_rows(stored: StoredRun | None, live: LiveRun | None) -> dict[int, dict[str, Any]]:
    """The steps that ended or run, by number: the stored ones with the live ones laid over
    them (a re-run's stored steps from its first step on are left out: they run again)."""
    from_step = live.from_step if live is not None else None
    rows = {
        ended.step_num: _stored_step_row(ended)
        for ended in (stored.steps if stored is not None else [])
        if not (from_step and ended.step_num >= from_step)
    }
    if live is not None:
        rows |= {number: _live_step_row(step) for number, step in live.steps.items()}
    return rows


def _stored_step_row(ended: AgenticStep) -> dict[str, Any]:
    return {
        "status": ended.status,
        "result": ended.result,
        "duration_ms": None if ended.status == "skipped" else ended.duration_ms,
        "failure": ended.failure,
        "cut_short": ended.cut_short,
        "tool_calls": [
            {
                "tool": call.tool,
                "args": json.dumps(call.args, ensure_ascii=False),
                "status": call.status,
                "result": call.result,
                "duration_ms": call.duration_ms,
            }
            for call in ended.tool_calls
        ],
    }


def _live_step_row(step: LiveStep) -> dict[str, Any]:
    return {
        "status": step.status,
        "result": step.result,
        "duration_ms": step.duration_ms,
        "failure": step.failure,
        "cut_short": False,
        "tool_calls": [dict(call) for call in step.tool_calls],
    }


def _plan_rows(
    plan: list[str], steps: dict[int, dict[str, Any]], stored: StoredRun | None
) -> list[dict[str, Any]]:
    """A row for each step of the plan; one that has not ended has the status the stored
    run gives it (`running` while another process runs it, `pending`, `not run`), or
    `pending` while it runs here (its events say when it starts)."""
    return [
        {"number": number, "description": description}
        | (
            steps.get(number)
            or _unrun_row(stored.step_status(number) if stored is not None else "pending")
        )
        for number, description in enumerate(plan, 1)
    ]


def _unrun_row(status: str) -> dict[str, Any]:
    return {
        "status": status,
        "result": "",
        "duration_ms": None,
        "failure": None,
        "cut_short": False,
        "tool_calls": [],
    }
