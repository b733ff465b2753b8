"""The terminal side of the CLI: progress lines and bar, stored runs and their history as
text, the plan review and tool approval prompts, and text from a model or a user made safe
to print (`visible`, from `core.events`, which the pictures share)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from agentic_loop.core.answers import typed_args, typed_step
from agentic_loop.core.events import CONTROL_CHARS, one_line, visible

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.text import Text

    from agentic_loop.core.options import LoopOptions
    from agentic_loop.core.state import AgenticResult
    from agentic_loop.runs.history import Checkpoint
    from agentic_loop.runs.records import StoredRun
    from agentic_loop.runs.service import Starting


def ask_review(display: TerminalProgress) -> Callable[[dict[str, Any]], Any]:
    """Asks in the terminal whether to approve, edit or reject a plan."""

    def ask(request: dict[str, Any]) -> Any:
        display.stop()
        console = display.console
        if display.plan_shown != request["steps"]:
            display.show_plan(request["steps"])
        if request.get("problem"):
            console.print(f"[red]{escape(request['problem'])}[/]", highlight=False)
        while True:
            question = "Run this plan? [a]pprove, [e]dit, [r]eject (a): "
            choice = _ask(console, question)
            choice = choice.strip().lower() or "a"
            if choice in ("a", "approve", "y", "yes"):
                return "approve"
            if choice in ("e", "edit"):
                console.print(
                    f"Type the new steps (at most {request['max_steps']}), one per line; "
                    "an empty line ends the list.",
                    highlight=False,
                )
                steps: list[str] = []
                while line := _ask(console, f"{len(steps) + 1}. ").strip():
                    steps.append(typed_step(line))
                return steps
            if choice in ("r", "reject", "n", "no"):
                return {"action": "reject", "reason": _ask(console, "Why? (optional): ")}
            console.print("Answer a, e or r.", highlight=False)

    return ask


def ask_approval(display: TerminalProgress) -> Callable[[dict[str, Any]], Any]:
    """Asks in the terminal whether a tool call may run."""

    def ask(request: dict[str, Any]) -> Any:
        display.stop()
        console = display.console
        args = json.dumps(request["args"], ensure_ascii=False)
        if request.get("cut_off"):
            return _ask_rerun(console, request, args)
        console.print(
            f"Step {request['step']} wants to call [bold]{escape(request['tool'])}[/] "
            f"with {escape(args)}",
            highlight=False,
        )
        if request.get("problem"):
            console.print(f"[red]{escape(request['problem'])}[/]", highlight=False)
        while True:
            question = "Allow this call? [a]pprove, [e]dit, [r]eject (a): "
            choice = _ask(console, question).strip().lower() or "a"
            if choice in ("a", "approve", "y", "yes"):
                return "approve"
            if choice in ("e", "edit"):
                text = _ask(console, "New arguments, as a JSON object on one line: ")
                try:
                    edited = typed_args(text)
                except ValueError as exc:
                    console.print(f"{exc}; try again.", highlight=False, markup=False)
                    continue
                return {"action": "edit", "args": edited}
            if choice in ("r", "reject", "n", "no"):
                return {"action": "reject", "reason": _ask(console, "Why? (optional): ")}
            console.print("Answer a, e or r.", highlight=False)

    return ask


def _ask_rerun(console: Console, request: dict[str, Any], args: str) -> Any:
    """Whether a tool call that was cut off when its run stopped may run again. It runs
    again as it was, or not at all: there is no edit; the default is not to."""
    console.print(
        f"Step {request['step']}'s call of [bold]{escape(request['tool'])}[/] with "
        f"{escape(args)} was cut off when the run stopped: it started, and whether it took "
        "effect is unknown.",
        highlight=False,
    )
    if request.get("problem"):
        console.print(f"[red]{escape(request['problem'])}[/]", highlight=False)
    while True:
        choice = _ask(console, "Run it again? [a]pprove, [r]eject (r): ").strip().lower() or "r"
        if choice in ("a", "approve", "y", "yes"):
            return "approve"
        if choice in ("r", "reject", "n", "no"):
            return {"action": "reject", "reason": _ask(console, "Why? (optional): ")}
        console.print("Answer a or r.", highlight=False)


CUT_OFF_NOTES = {
    "rerun": "its tool is idempotent: it runs again, with the same key",
    "asked": "asking whether to run it again",
    "approved": "approved: it runs again",
    "declined": "not run again, as answered: the model is told its outcome is unknown",
    "unknown": "not run again: the model is told its outcome is unknown",
}
"""What the terminal says of a tool call found cut off, by what becomes of it."""


def print_runs(console: Console, runs: list[StoredRun]) -> None:
    """The stored runs as a table: thread, task, status, steps done of planned, tokens."""
    from rich.table import Table

    table = Table("thread", "task", "status", "steps", "tokens", "updated")
    for column in table.columns:  # in a narrow terminal only the task wraps
        column.no_wrap = column.header != "task"
    for item in runs:
        table.add_row(
            escape(visible(item.thread_id, lines=False)),
            escape(one_line(item.task, 60)),
            item.status,
            f"{item.steps_done}/{len(item.plan)}",
            short_count(item.result.tokens_in + item.result.tokens_out) if item.result else "",
            item.updated_at[:19].replace("T", " "),
        )
    console.print(table)


def print_history(console: Console, stored: StoredRun, checkpoints: list[Checkpoint]) -> None:
    """A run's checkpoints as a table, the current branch marked."""
    from rich import box
    from rich.table import Table

    # Narrow enough for 80 columns; --json has each checkpoint's id as well.
    table = Table(box=box.SIMPLE_HEAD)
    for heading in ("", "steps done", "next", "source", "created (UTC)"):
        table.add_column(heading, no_wrap=True)
    for point in checkpoints:
        table.add_row(
            "●" if point.on_current_branch else "",
            str(point.steps_done),
            ", ".join(point.next) or "(end)",
            point.source,
            point.created_at[:19].replace("T", " "),
        )
    console.print(
        f"[bold]{escape(stored.task)}[/] · thread {escape(visible(stored.thread_id, lines=False))}",
        highlight=False,
    )
    console.print(table)
    console.print(
        "● marks the current branch. Run again from step K with: "
        f"agentic-loop resume {stored.thread_id} --from-step K",
        highlight=False,
    )


def print_result(console: Console, result: AgenticResult) -> None:
    """The run's status, summary and answer."""
    style = {"completed": "green", "partial": "yellow", "failed": "red"}[result.status]
    console.print(f"[bold {style}]{result.status}[/] {escape(result.summary)}", highlight=False)
    if result.answer:
        console.print("\n[bold]Answer[/]", highlight=False)
        console.print(result.answer, highlight=False, markup=False)


def print_run(console: Console, stored: StoredRun) -> None:
    from agentic_loop.faces.drawing import format_duration

    console.print(f"[bold]{escape(stored.task)}[/]", highlight=False)
    console.print(
        f"thread {escape(visible(stored.thread_id, lines=False))} · {stored.status} · "
        f"updated {stored.updated_at[:19]}",
        highlight=False,
    )
    if stored.holder is not None:
        console.print(f"run by {escape(stored.holder.describe())}", highlight=False)
    if stored.model:
        console.print(
            f"model {escape(stored.model)} · {escape(stored.options.described())}",
            highlight=False,
        )
    if stored.result:
        console.print(stored.result.summary, highlight=False, markup=False)
        if spent := spent_text(stored.result, stored.options):
            console.print(spent, highlight=False, markup=False)
    if len(stored.plan_versions) > 1:
        console.print("\n[bold]Plan versions[/]", highlight=False)
        for number, version in enumerate(stored.plan_versions, 1):
            when = f"after step {version.after_step}" if version.after_step else "first"
            console.print(
                f"  {number}. {version.change} ({when}): "
                f"{escape(one_line('; '.join(version.steps), 160))}",
                highlight=False,
            )
    done = {step.step_num: step for step in stored.steps}
    for number, description in enumerate(stored.plan, 1):
        step = done.get(number)
        if step is None:
            console.print(
                f"\n[dim]{number}. {escape(visible(description, lines=False))} — "
                f"{stored.step_status(number)}[/]",
                highlight=False,
            )
            continue
        cut = " [yellow](cut short at its length cap)[/]" if step.cut_short else ""
        facts: list[str] = [step.status]
        if step.status != "skipped":  # a skipped step took no time
            facts.append(format_duration(step.duration_ms))
        if step.tokens_in or step.tokens_out:
            facts.append(tokens_text(step.tokens_in, step.tokens_out))
        console.print(
            f"\n[bold]{number}. {escape(visible(description, lines=False))}[/] — "
            f"{', '.join(facts)}{cut}",
            highlight=False,
        )
        if step.status == "adapted" and step.failure:
            console.print(f"  [yellow]failed first:[/] {escape(step.failure)}", highlight=False)
        for call in step.tool_calls:
            console.print(
                f"  [magenta]⚒[/] {escape(call.tool)} {escape(one_line(to_json(call.args), 100))}"
                f" → {call.status}, {call.duration_ms} ms: {escape(one_line(call.result, 100))}",
                highlight=False,
            )
        console.print(step.result, highlight=False, markup=False)
    if stored.result and stored.result.answer:
        console.print("\n[bold]Answer[/]", highlight=False)
        console.print(stored.result.answer, highlight=False, markup=False)


def short_count(number: int) -> str:
    """`950`, `1.2k`, `35k`, `1.2M`: a count short enough for a table column."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if number >= size:
            scaled = number / size
            return f"{scaled:.1f}{unit}" if scaled < 10 else f"{scaled:.0f}{unit}"
    return str(number)


def tokens_text(tokens_in: int, tokens_out: int) -> str:
    return f"{tokens_in} token{'s' if tokens_in != 1 else ''} in, {tokens_out} out"


def spent_text(result: AgenticResult, options: LoopOptions) -> str:
    """`"120 tokens in, 300 out; the max_tokens budget (400) ran out"`: what the run's model
    calls used and the budget that ended it, each when known."""
    parts = []
    if result.tokens_in or result.tokens_out:
        parts.append(tokens_text(result.tokens_in, result.tokens_out))
    if result.budget_spent == "max_seconds":
        limit = f" ({options.max_seconds:g} s)" if options.max_seconds else ""
        parts.append(f"the max_seconds budget{limit} ran out")
    elif result.budget_spent == "max_tokens":
        limit = f" ({options.max_tokens})" if options.max_tokens else ""
        parts.append(f"the max_tokens budget{limit} ran out")
    return "; ".join(parts)


class TerminalProgress:
    """Shows progress events as lines and a progress bar (a broadcaster for `ProgressRelay`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plan_shown: list[str] | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def starting(self, run: Starting) -> None:
        """Before the run's first model call: its model, thread and tools."""
        self.console.print(
            f"[dim]model {escape(run.model)} · "
            f"thread {escape(visible(run.thread_id, lines=False))}[/]",
            highlight=False,
        )
        if run.tools:
            self.console.print(f"[dim]tools {escape(', '.join(run.tools))}[/]", highlight=False)
        if run.resumed and run.own:
            self.console.print(
                "[dim]resumed with the model and options it was started with "
                f"({escape(run.options.described())})[/]",
                highlight=False,
            )
        elif run.resumed:
            recorded = run.recorded_model or "none"
            self.console.print(
                f"[dim]resumed with its own options ({escape(run.options.described())}), "
                f"the model or timeout changed (it recorded model {escape(recorded)})[/]",
                highlight=False,
            )
        if run.rerun_from is not None:
            where = (
                "from planning" if run.rerun_from == "planning" else f"from step {run.rerun_from}"
            )
            self.console.print(
                f"Running again {where}, as a new branch; the earlier one stays "
                f"in `agentic-loop show {run.thread_id} --history`.",
                highlight=False,
            )

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        from agentic_loop.core import events
        from agentic_loop.faces.drawing import MARKS, format_duration

        item = events.parse(event, data)
        if item is None:  # not one of the loop's events
            return
        print_line = self._bar.console.print if self._bar else self.console.print
        if item["event"] == events.PLAN_READY:
            self.show_plan(item["data"]["steps"])
        elif item["event"] == events.PLAN_REVIEWED:
            reviewed = item["data"]
            print_line(f"Plan {reviewed['review']}.", highlight=False)
            if reviewed["review"] == "edited":
                self.show_plan(reviewed["steps"], heading=False)
        elif item["event"] == events.STEP_STARTED:
            started = item["data"]
            print_line(
                f"[cyan]→[/] step {started['step']}/{started['total']}: "
                f"{escape(visible(started['description'], lines=False))}",
                highlight=False,
            )
            self._start_bar(started["total"], completed=started["step"] - 1)
        elif item["event"] == events.STEP_COMPLETE:
            complete = item["data"]
            self._step_ended(
                f"[green]✓[/] step {complete['step']}: {escape(one_line(complete['result']))} "
                f"[dim]({format_duration(complete['duration_ms'])})[/]"
            )
        elif item["event"] == events.STEP_ADAPTED:  # the other way it took, then why
            adapted = item["data"]
            self._step_ended(
                f"[yellow]↻ adapted[/] step {adapted['step']}: "
                f"{escape(one_line(adapted['adaptation']))} "
                f"[dim](it failed first: {escape(one_line(adapted['error']))})[/]"
            )
        elif item["event"] == events.STEP_FAILED:
            failed = item["data"]
            self._step_ended(
                f"[red]✗ failed[/] step {failed['step']}: {escape(one_line(failed['error']))}"
            )
        elif item["event"] == events.STEP_SKIPPED:
            skipped = item["data"]
            self._step_ended(
                f"[dim]{MARKS['skipped']} skipped[/] step {skipped['step']}: "
                f"{escape(one_line(skipped['reason']))}"
            )
        elif item["event"] == events.TOOL_CALLED:
            called = item["data"]
            print_line(
                f"  [magenta]⚒[/] {escape(called['tool'])} {escape(one_line(called['args']))}",
                highlight=False,
            )
        elif item["event"] == events.TOOL_RESULT:
            back = item["data"]
            mark = "[green]↳[/]" if back["status"] == "success" else f"[red]↳ {back['status']}[/]"
            print_line(
                f"    {mark} {escape(one_line(back['result']))} [dim]({back['duration_ms']} ms)[/]",
                highlight=False,
            )
        elif item["event"] == events.TOOL_CUT_OFF:
            cut = item["data"]
            print_line(
                f"  [yellow]⚠[/] {escape(cut['tool'])} {escape(one_line(cut['args']))} was cut "
                f"off when the run stopped; {CUT_OFF_NOTES[cut['action']]}",
                highlight=False,
            )
        elif item["event"] == events.PLAN_REVISED:
            revised = item["data"]
            self.stop()
            change = "ends here" if revised["change"] == "done" else "revised"
            print_line(
                f"[bold]Plan {change}[/] after step {revised['after_step']}", highlight=False
            )
            if revised["change"] != "done":
                self.show_plan(revised["steps"], heading=False)
        elif item["event"] == events.TASK_COMPLETE:
            self.stop()

    def _step_ended(self, line: str) -> None:
        """Print how a step ended, and count it done: steps side by side end in any order."""
        print_line = self._bar.console.print if self._bar else self.console.print
        print_line(line, highlight=False)
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)

    def show_plan(self, steps: list[str], heading: bool = True) -> None:
        print_line = self._bar.console.print if self._bar else self.console.print
        if heading:
            count = f"{len(steps)} step{'s' if len(steps) != 1 else ''}"
            print_line(f"[bold]Plan[/] ({count})", highlight=False)
        for number, step in enumerate(steps, 1):
            print_line(f"  {number}. {visible(step, lines=False)}", highlight=False, markup=False)
        self.plan_shown = steps

    def _start_bar(self, total: int, completed: int = 0) -> None:
        if self._bar is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._bar.add_task("steps", total=total, completed=completed)
        self._bar.start()

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _ask(console: Console, question: str) -> str:
    """One line of input. From a pipe the answer is not echoed, so end the prompt's line."""
    answer = console.input(question, markup=False)
    if not sys.stdin.isatty():
        console.print()
    return answer


class _VisibleConsole(Console):
    """A console that shows the control characters of what it prints (see `visible`):
    every string it prints, as a line, a table cell or a prompt, goes through `render_str`.
    """

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(visible(text), **options)


def console(stderr: bool = False) -> Console:
    # soft_wrap: a message stays one line however narrow the terminal (or pipe) is.
    # emoji=False: text shows as written, `:fire:` as `:fire:` (markup is escaped apart).
    return _VisibleConsole(stderr=stderr, soft_wrap=True, emoji=False)


def to_json(payload: Any) -> str:
    return json_text(json.dumps(payload, indent=2, ensure_ascii=False))


def json_text(text: str) -> str:
    """JSON with DEL and C1 control characters written as `\\u` escapes too: `json.dumps`
    and pydantic escape only those below 0x20, and some terminals act on C1 ones."""
    return CONTROL_CHARS.sub(lambda char: f"\\u{ord(char[0]):04x}", text)
