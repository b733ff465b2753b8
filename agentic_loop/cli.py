"""The `agentic-loop` command: run, resume, list and show stored runs, draw the graph.

Heavy libraries (LangGraph, LangChain, the model clients) load inside the commands,
so `agentic-loop --help` answers at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from agentic_loop.events import one_line
from agentic_loop.models import (
    DEFAULT_MODEL,
    DEFAULT_REPLY_TOKENS,
    DEFAULT_TIMEOUT_S,
    MODEL_ENV,
    SPEC_HELP,
)
from agentic_loop.settings import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_PARALLEL,
    DEFAULT_MAX_REPLANS,
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_TOOL_CALLS,
    MAX_STEPS_ENV,
    MOST_PARALLEL,
    MOST_REPLANS,
    MOST_REPLY_TOKENS,
    MOST_SECONDS,
    MOST_STEPS,
    MOST_TOKENS,
    MOST_TOOL_CALLS,
    default_max_steps,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.text import Text

    from agentic_loop.state import AgenticResult
    from agentic_loop.storage import RunOptions, StoredRun

app = typer.Typer(
    help="A plan-and-execute agent loop on LangGraph: plan a task, run its steps, "
    "resume after a crash.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: fits 80 columns, reads well in a pipe
)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it

MAX_PARALLEL_ENV = "AGENTIC_LOOP_MAX_PARALLEL"
STEP_TIMEOUT_ENV = "AGENTIC_LOOP_STEP_TIMEOUT"
MAX_SECONDS_ENV = "AGENTIC_LOOP_MAX_SECONDS"
MAX_TOKENS_ENV = "AGENTIC_LOOP_MAX_TOKENS"

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=f"{SPEC_HELP}. auto uses Ollama if it runs and has the model, else the "
        f"embedded model. Default: ${MODEL_ENV}, else {DEFAULT_MODEL}.",
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="SQLite file of stored runs. "
        "Default: $AGENTIC_LOOP_DB, else ~/.local/share/agentic-loop/runs.sqlite.",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout; progress goes to stderr."),
]
ShowJsonOption = Annotated[bool, typer.Option("--json", help="Print it as JSON.")]
TimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help=f"Seconds to wait for each model reply, up to a week. Default: {DEFAULT_TIMEOUT_S:g}.",
    ),
]


class Replan(StrEnum):
    on_failure = "on_failure"
    after_each_step = "after_each_step"
    never = "never"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    ascii = "ascii"
    dot = "dot"
    png = "png"
    svg = "svg"


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


_Number = TypeVar("_Number", int, float)


def _limit(
    flag: str,
    raw: str | None,
    kind: type[_Number],
    most: _Number,
    *,
    least: int = 1,
    env: str | None = None,
) -> _Number | None:
    """The value of `flag`, else of the environment variable `env`, else None: a whole
    number from `least` to `most` if `kind` is int, else seconds above 0 and at most `most`.
    Anything else is one line and exit 2, naming where the value came from."""
    source = flag
    if raw is None:
        if env is None:
            return None
        raw, source = os.environ.get(env, "").strip(), env
        if not raw:
            return None
    try:
        value = kind(raw)
    except ValueError:  # not a number, or an int of more than 4300 digits
        value = None
    if kind is int:
        if value is None or not least <= value <= most:
            _fail(
                f"{source} must be a whole number from {least} to {most}, got {one_line(raw, 40)!r}"
            )
    elif value is None or not 0 < value <= most:  # NaN fails every comparison
        _fail(
            f"{source} must be a number of seconds above 0 and up to {most:g}, "
            f"got {one_line(raw, 40)!r}"
        )
    return value


def _timeout(raw: str | None) -> float:
    return _limit("--timeout", raw, float, MOST_SECONDS) or DEFAULT_TIMEOUT_S


def _check_max_steps_env() -> None:
    """A bad $AGENTIC_LOOP_MAX_STEPS is one line and exit 2 before the store opens (the
    graph reads it too, for runs that do not set their own step limit)."""
    try:
        default_max_steps()
    except ValueError as exc:
        _fail(str(exc))


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What to do, in plain words.")],
    model: ModelOption = None,
    max_steps: Annotated[
        str | None,
        typer.Option(
            "--max-steps",
            metavar="N",
            help=f"Most steps to run, 1 to {MOST_STEPS}. "
            f"Default: ${MAX_STEPS_ENV}, else {DEFAULT_MAX_STEPS}.",
        ),
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option("--thread", help="Thread id to store the run under (default: a new one)."),
    ] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
    timeout: TimeoutOption = None,
    review: Annotated[
        bool,
        typer.Option("--review", help="Ask to approve, edit or reject the plan before it runs."),
    ] = False,
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            metavar="MODULE:ATTR",
            help="Tools the steps may call: package.module:attribute, a list of tools or a "
            "function returning one, found from this folder or installed packages. May repeat.",
        ),
    ] = None,
    mcp: Annotated[
        Path | None,
        typer.Option(
            "--mcp",
            metavar="FILE",
            help="An mcpServers JSON file (the format Claude Desktop, Cursor and VS Code "
            "share): the servers' tools go to the steps.",
        ),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            metavar="DIR",
            help="A folder the steps may list, read, write and edit files in; nothing "
            "outside it is touched.",
        ),
    ] = None,
    approve_tools: Annotated[
        bool,
        typer.Option(
            "--approve-tools", help="Ask before every tool call: approve, edit or reject."
        ),
    ] = False,
    approve_tool: Annotated[
        list[str] | None,
        typer.Option(
            "--approve-tool", metavar="NAME", help="Ask before each call of this tool. May repeat."
        ),
    ] = None,
    max_tool_calls: Annotated[
        str | None,
        typer.Option(
            "--max-tool-calls",
            metavar="N",
            help=f"Most tool calls one step may make, 1 to {MOST_TOOL_CALLS}; past it the "
            f"step fails and is adapted. Default: {DEFAULT_MAX_TOOL_CALLS}.",
        ),
    ] = None,
    replan: Annotated[
        Replan,
        typer.Option(
            "--replan",
            help="When the model may revise the steps left from what the steps found: after "
            "a failed step, after each step, or never.",
        ),
    ] = Replan.on_failure,
    max_replans: Annotated[
        str | None,
        typer.Option(
            "--max-replans",
            metavar="N",
            help=f"Most revisions of the plan in one run, 0 to {MOST_REPLANS}. "
            f"Default: {DEFAULT_MAX_REPLANS}.",
        ),
    ] = None,
    max_reply_tokens: Annotated[
        str | None,
        typer.Option(
            "--max-reply-tokens",
            metavar="N",
            help=f"Cap on each Ollama reply's length (num_predict), 1 to {MOST_REPLY_TOKENS}; "
            f"a reply that reaches it is marked as cut short. Default: {DEFAULT_REPLY_TOKENS}.",
        ),
    ] = None,
    max_parallel: Annotated[
        str | None,
        typer.Option(
            "--max-parallel",
            metavar="N",
            help=f"Most steps in progress at once, 1 to {MOST_PARALLEL}. "
            f"Default: ${MAX_PARALLEL_ENV}, else {DEFAULT_MAX_PARALLEL}.",
        ),
    ] = None,
    step_timeout: Annotated[
        str | None,
        typer.Option(
            "--step-timeout",
            metavar="SECONDS",
            help="Seconds one step may take, its tool calls included; past it the step is "
            f"adapted. Default: ${STEP_TIMEOUT_ENV}, else no limit.",
        ),
    ] = None,
    max_seconds: Annotated[
        str | None,
        typer.Option(
            "--max-seconds",
            metavar="SECONDS",
            help="Seconds the run's steps may take; then the steps in progress stop, the rest "
            f"are skipped and the answer is written. Default: ${MAX_SECONDS_ENV}, else no limit.",
        ),
    ] = None,
    max_tokens: Annotated[
        str | None,
        typer.Option(
            "--max-tokens",
            metavar="N",
            help="Tokens (prompts and replies) the run's model calls may use; then no step "
            f"starts and the rest are skipped. Default: ${MAX_TOKENS_ENV}, else no limit.",
        ),
    ] = None,
) -> None:
    """Plan TASK into steps, run them with live progress, and print the answer."""
    from agentic_loop.step_tools import ToolOptions, ToolSetupError
    from agentic_loop.storage import RunOptions

    if not task.strip():
        _fail('the task is empty; say what to do, e.g. agentic-loop run "Plan a weekend trip"')
    _check_max_steps_env()
    steps = _limit("--max-steps", max_steps, int, MOST_STEPS) or 0  # 0: the default
    seconds_per_reply = _timeout(timeout)
    tool_calls = _limit("--max-tool-calls", max_tool_calls, int, MOST_TOOL_CALLS)
    replans = _limit("--max-replans", max_replans, int, MOST_REPLANS, least=0)
    reply_tokens = _limit("--max-reply-tokens", max_reply_tokens, int, MOST_REPLY_TOKENS)
    parallel = _limit("--max-parallel", max_parallel, int, MOST_PARALLEL, env=MAX_PARALLEL_ENV)
    per_step = _limit("--step-timeout", step_timeout, float, MOST_SECONDS, env=STEP_TIMEOUT_ENV)
    seconds = _limit("--max-seconds", max_seconds, float, MOST_SECONDS, env=MAX_SECONDS_ENV)
    tokens = _limit("--max-tokens", max_tokens, int, MOST_TOKENS, env=MAX_TOKENS_ENV)
    try:
        tool_options = ToolOptions.from_cli(tools or (), mcp, workspace)
    except ToolSetupError as exc:
        _fail(str(exc))
    if (approve_tools or approve_tool) and not tool_options:
        _fail("--approve-tools and --approve-tool need tools: add --tools, --mcp or --workspace")
    thread_id = thread or f"run-{uuid.uuid4().hex[:8]}"
    graph_input = {"task": task, "max_steps": steps, "review_plan": review}
    options = RunOptions(
        tools=tool_options,
        approve_tools=tuple(approve_tool or ()),
        max_tool_calls=DEFAULT_MAX_TOOL_CALLS if tool_calls is None else tool_calls,
        replan=replan.value,
        max_replans=DEFAULT_MAX_REPLANS if replans is None else replans,
        reply_tokens=DEFAULT_REPLY_TOKENS if reply_tokens is None else reply_tokens,
        max_parallel=DEFAULT_MAX_PARALLEL if parallel is None else parallel,
        step_timeout=per_step,
        max_seconds=seconds,
        max_tokens=tokens,
    )
    _drive(
        thread_id,
        graph_input,
        model,
        db,
        json_out,
        seconds_per_reply,
        options=options,
        approve_all=approve_tools,
    )


@app.command()
def resume(
    thread_id: Annotated[
        str, typer.Argument(help="The run's thread id (see `agentic-loop runs`).")
    ],
    model: ModelOption = None,
    db: DbOption = None,
    json_out: JsonOption = False,
    timeout: TimeoutOption = None,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from-step",
            metavar="K",
            help="Run again from step K, keeping steps before it, as a new branch of the "
            "run's history (the old branch stays; see `show --history`).",
        ),
    ] = None,
) -> None:
    """Carry on a stopped run from its last finished step, or run it again from a step."""
    seconds_per_reply = _timeout(timeout)
    step = _limit("--from-step", from_step, int, MOST_STEPS)
    _check_max_steps_env()
    _drive(thread_id, None, model, db, json_out, seconds_per_reply, from_step=step)


@app.command()
def runs(db: DbOption = None) -> None:
    """List stored runs, most recent first."""
    from rich.table import Table

    from agentic_loop.storage import list_runs

    stored = _with_store(db, list_runs)
    if not stored:
        _console().print(f"No stored runs in {_db_path(db)}.")
        return
    table = Table("thread", "task", "status", "steps", "tokens", "updated")
    for column in table.columns:  # in a narrow terminal only the task wraps
        column.no_wrap = column.header != "task"
    for item in stored:
        table.add_row(
            escape(visible(item.thread_id, lines=False)),
            escape(one_line(item.task, 60)),
            item.status,
            f"{sum(step.status != 'skipped' for step in item.steps)}/{len(item.plan)}",
            _count(item.result.tokens_in + item.result.tokens_out) if item.result else "",
            item.updated_at[:19].replace("T", " "),
        )
    _console().print(table)


@app.command()
def show(
    thread_id: Annotated[
        str, typer.Argument(help="The run's thread id (see `agentic-loop runs`).")
    ],
    db: DbOption = None,
    json_out: ShowJsonOption = False,
    history: Annotated[
        bool,
        typer.Option("--history", help="List the run's checkpoints, on every branch."),
    ] = False,
) -> None:
    """Print one stored run: its task, status, steps and results."""
    from agentic_loop.storage import load_run

    if history:
        _show_history(thread_id, db, json_out)
        return
    stored = _with_store(db, lambda saver: load_run(saver, thread_id))
    if stored is None:
        _unknown_thread(thread_id, db)
    if json_out:
        payload = (
            stored.result.model_dump()
            if stored.result
            else {
                "thread_id": stored.thread_id,
                "task": stored.task,
                "status": stored.status,
                "plan": stored.plan,
                "steps": [step.model_dump() for step in stored.steps],
            }
        )
        typer.echo(_to_json(payload))
        return
    _print_run(_console(), stored)


@app.command()
def graph(
    format: Annotated[
        GraphFormat,
        typer.Option("--format", help="mermaid, ascii, dot (Graphviz source), png or svg."),
    ] = GraphFormat.mermaid,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write to (needed for png); default stdout."),
    ] = None,
    thread: Annotated[
        str | None,
        typer.Option("--thread", help="Draw this stored run's steps instead of the graph."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Draw the graph's shape, or with --thread a stored run's steps and their status.

    png and svg are drawn on this machine by Graphviz's `dot`; nothing goes online.
    """
    from agentic_loop.drawing import DrawingError

    if format is GraphFormat.png and output is None:
        _fail("png is binary and will not go to the terminal; pass a file with -o graph.png")
    try:
        picture = _draw_run(thread, db, format) if thread else _draw_graph(format)
    except DrawingError as exc:
        _fail(str(exc))
    if isinstance(picture, str):  # it may hold a run's task and steps
        picture = visible(picture.rstrip("\n"))
    if output is None:
        typer.echo(visible(picture.decode()) if isinstance(picture, bytes) else picture)
        return
    data = picture if isinstance(picture, bytes) else picture.encode() + b"\n"
    try:
        output.write_bytes(data)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    what = f"run {thread}" if thread else "graph"
    _console().print(f"Wrote the {what} as {format.value} to {output}", highlight=False)


def main() -> None:
    import logging

    # A run whose checkpoint cannot be read is reported in one line (storage.UnreadableRun);
    # LangGraph's serializer would first log a warning of its own about the stored type.
    logging.getLogger("langgraph.checkpoint.serde").setLevel(logging.ERROR)
    try:
        app()
    except SystemExit as exit:
        # Typer turns a Ctrl-C that comes before a run is under way into a silent exit 130.
        if exit.code == EXIT_INTERRUPTED and not _stop_said:
            print(STOPPED_EARLY, file=sys.stderr)
        raise


STOPPED_EARLY = "\nStopped before anything ran; nothing was stored."
_stop_said = False
"""Whether the CLI has said how a stopped run can go on (or that it cannot)."""


# --- helpers -----------------------------------------------------------------------------


def _db_path(db: Path | None) -> Path:
    from agentic_loop.storage import default_db_path

    return db.expanduser() if db else default_db_path()


def _with_store(db: Path | None, action: Any) -> Any:
    """Open the store for reading, run `action(saver)`, and turn store errors into one line."""
    from agentic_loop.storage import StoreError, open_store

    async def go() -> Any:
        async with open_store(_db_path(db), read_only=True) as saver:
            return await action(saver)

    try:
        return asyncio.run(go())
    except StoreError as exc:
        _fail(str(exc))


def _draw_graph(format: GraphFormat) -> str | bytes:
    """The graph's shape in `format`; the ASCII drawing lists self-loops below it."""

    from agentic_loop.drawing import graph_picture, render

    compiled = _shape()
    drawing = compiled.get_graph()
    if format is GraphFormat.mermaid:
        return drawing.draw_mermaid()
    if format is GraphFormat.ascii:
        return drawing.draw_ascii()
    picture = graph_picture(compiled)
    return picture.source if format is GraphFormat.dot else render(picture, _image(format))


def _draw_run(thread_id: str, db: Path | None, format: GraphFormat) -> str | bytes:
    """The stored run's steps in `format`: Mermaid, terminal text, or a Graphviz picture."""
    from agentic_loop.drawing import render, run_mermaid, run_picture, run_text
    from agentic_loop.storage import load_run

    stored = _with_store(db, lambda saver: load_run(saver, thread_id))
    if stored is None:
        _unknown_thread(thread_id, db)
    if format is GraphFormat.mermaid:
        return run_mermaid(stored)
    if format is GraphFormat.ascii:
        return run_text(stored)
    picture = run_picture(stored)
    return picture.source if format is GraphFormat.dot else render(picture, _image(format))


def _image(format: GraphFormat) -> Literal["png", "svg"]:
    return "png" if format is GraphFormat.png else "svg"


def _unknown_thread(thread_id: str, db: Path | None) -> NoReturn:
    _fail(f"no run with thread id {thread_id!r} in {_db_path(db)}; `agentic-loop runs` lists them")


def _drive(
    thread_id: str,
    graph_input: dict[str, Any] | None,
    model_spec: str | None,
    db: Path | None,
    json_out: bool,
    timeout: float,
    *,
    from_step: int | None = None,
    options: RunOptions | None = None,
    approve_all: bool = False,
) -> None:
    """Start (`graph_input` given), resume, or re-run from a step, show progress, and exit
    with the run's status. `options` are a new run's (`approve_all`: every tool call waits
    for approval); a stored run keeps those it started with."""
    from agentic_loop.step_tools import ToolSetupError
    from agentic_loop.storage import RunOptions, StoreError, load_run, open_store

    db_path = _db_path(db)
    db_flag = f" --db {db_path}" if db else ""
    display = TerminalProgress(_console(stderr=json_out))
    stop = _SigtermStop()

    async def go() -> tuple[AgenticResult, bool]:
        """The run's result, and whether it had already finished."""
        stop.task = asyncio.current_task()
        async with open_store(db_path) as saver:
            stored = await load_run(saver, thread_id)
            if graph_input is not None and stored is not None:
                _fail(
                    f"thread {thread_id!r} already holds a run; resume it with "
                    f"`agentic-loop resume {thread_id}` or pick another --thread"
                )
            from_planning = False
            if graph_input is None:
                if stored is None:
                    _unknown_thread(thread_id, db)
                # Planning failed or the plan was rejected: resuming plans again.
                from_planning = stored.result is not None and not stored.steps
                if stored.result is not None and not from_planning and from_step is None:
                    return stored.result, True
            spec = model_spec or (stored.model if stored else None)
            run_options = stored.options if stored else options or RunOptions()
            result = await _stream(
                saver,
                thread_id,
                graph_input,
                spec,
                timeout,
                display,
                None if from_planning else from_step,
                from_planning,
                run_options,
                approve_all,
            )
            return result, False

    try:
        with stop:
            result, already_finished = asyncio.run(go())
    except (StoreError, ToolSetupError, ValueError) as exc:  # a bad store, model, tool or setting
        _fail(str(exc))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not stop.received:
            raise
        display.stop()
        _say_stopped(thread_id, db_path, db_flag)
        raise typer.Exit(EXIT_TERMINATED if stop.received else EXIT_INTERRUPTED) from None
    except EOFError:  # stdin ended before the plan review was answered
        _fail(
            "no answer to the plan review or tool approval; the run waits for one: "
            f"agentic-loop resume {thread_id}{db_flag}",
            code=1,
        )
    finally:
        display.stop()

    if already_finished:
        _console(stderr=json_out).print(
            f"Run {thread_id} already finished ({result.status}); nothing to resume. "
            f"To run it again from step K: agentic-loop resume {thread_id} --from-step K",
            highlight=False,
        )
    _report(result, json_out)


class _SigtermStop:
    """While in use, SIGTERM stops a run as Ctrl-C does: it cancels the running `task` (the
    stream then closes and stores what finished), or before there is one raises
    KeyboardInterrupt. `received` tells the two signals apart for the exit code."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.received = False
        self._before: Any = None

    def __enter__(self) -> _SigtermStop:
        self._before = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._before)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.received = True
        task = self.task
        if task is None or task.done():
            raise KeyboardInterrupt
        task.get_loop().call_soon_threadsafe(task.cancel)


def _say_stopped(thread_id: str, db_path: Path, db_flag: str) -> None:
    """After a Ctrl-C or SIGTERM: how to carry on, or that nothing was stored to carry on."""
    global _stop_said
    _stop_said = True
    console = _console(stderr=True)
    if _has_checkpoint(db_path, thread_id):
        console.print(
            "\nStopped. Finished steps are stored; carry on with: "
            f"agentic-loop resume {thread_id}{db_flag}",
            highlight=False,
        )
    else:
        console.print(
            f"\nStopped before run {thread_id} was stored; nothing to resume.", highlight=False
        )


def _has_checkpoint(db_path: Path, thread_id: str) -> bool:
    """Whether the store holds a checkpoint of `thread_id` (True if it cannot be read: the
    resume command then reports why)."""
    from agentic_loop.storage import StoreError, load_run, open_store

    if not db_path.exists():
        return False

    async def look() -> bool:
        async with open_store(db_path, read_only=True) as saver:
            return await load_run(saver, thread_id) is not None

    try:
        return asyncio.run(look())
    except StoreError:
        return True


async def _stream(
    saver: Any,
    thread_id: str,
    graph_input: dict[str, Any] | None,
    model_spec: str | None,
    timeout: float,
    display: TerminalProgress,
    from_step: int | None,
    from_planning: bool,
    options: RunOptions,
    approve_all: bool,
) -> AgenticResult:
    """Run the graph from `graph_input`, or resume it: from where it stopped, or as a new
    branch from step `from_step` or from planning."""
    from agentic_loop.events import ProgressRelay
    from agentic_loop.graph import create_agentic_loop
    from agentic_loop.history import fork_from_step, planning_point
    from agentic_loop.models import check_ollama, load_model, model_spec_from_env, resolve_spec
    from agentic_loop.runner import stream_run
    from agentic_loop.step_tools import load_tools

    config: Any = {"configurable": {"thread_id": thread_id}}
    if from_step is not None or from_planning:  # checked before the model loads
        shape = _shape(saver)
        if from_step is not None:
            point = await fork_from_step(shape, thread_id, from_step)
        else:
            point = await planning_point(shape, thread_id)
        config["configurable"]["checkpoint_id"] = point.checkpoint_id
    spec = resolve_spec(model_spec or model_spec_from_env())
    step_tools = await load_tools(options.tools)
    if approve_all:
        options = dataclasses.replace(options, approve_tools=tuple(t.name for t in step_tools))
    graph = create_agentic_loop(
        load_model(spec, timeout_s=timeout, reply_tokens=options.reply_tokens),
        checkpointer=saver,
        tools=step_tools,
        approve_tools=options.approve_tools,
        max_tool_calls=options.max_tool_calls,
        replan=options.replan,
        max_replans=options.max_replans,
        max_reply_chars=CHARS_PER_TOKEN * options.reply_tokens,
        max_parallel=options.max_parallel,
        step_timeout=options.step_timeout,
        max_seconds=options.max_seconds,
        max_tokens=options.max_tokens,
    )
    if spec.startswith("ollama:"):  # a run that cannot start is not stored as failed
        check_ollama(spec.partition(":")[2])
    display.console.print(
        f"[dim]model {escape(spec)} · thread {escape(visible(thread_id, lines=False))}[/]",
        highlight=False,
    )
    if step_tools:
        names = ", ".join(t.name for t in step_tools)
        display.console.print(f"[dim]tools {escape(names)}[/]", highlight=False)
    if from_step is not None or from_planning:
        where = f"from step {from_step}" if from_step is not None else "from planning"
        display.console.print(
            f"Running again {where}, as a new branch; the earlier one stays "
            f"in `agentic-loop show {thread_id} --history`.",
            highlight=False,
        )
    config["metadata"] = {"model": spec, **options.to_metadata()}
    relay = ProgressRelay(broadcaster=display)
    return await stream_run(
        graph,
        graph_input,
        config,
        relay,
        review=_ask_review(display),
        approve=_ask_approval(display),
    )


def _shape(checkpointer: Any = None) -> Any:
    """The graph over a stand-in model, for graphs that are drawn or read but never run.
    Its step limit is set, so that $AGENTIC_LOOP_MAX_STEPS plays no part."""
    from langchain_core.runnables import RunnableLambda

    from agentic_loop.graph import create_agentic_loop

    stand_in = RunnableLambda(lambda messages: messages)
    return create_agentic_loop(stand_in, checkpointer=checkpointer, max_steps=DEFAULT_MAX_STEPS)


def _ask_review(display: TerminalProgress) -> Callable[[dict[str, Any]], Any]:
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
                    steps.append(_NUMBERING.sub("", line))
                return steps
            if choice in ("r", "reject", "n", "no"):
                return {"action": "reject", "reason": _ask(console, "Why? (optional): ")}
            console.print("Answer a, e or r.", highlight=False)

    return ask


_NUMBERING = re.compile(r"^\d+[.)]\s*")


def _ask_approval(display: TerminalProgress) -> Callable[[dict[str, Any]], Any]:
    """Asks in the terminal whether a tool call may run."""

    def ask(request: dict[str, Any]) -> Any:
        display.stop()
        console = display.console
        args = json.dumps(request["args"], ensure_ascii=False)
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
                    edited = json.loads(text)
                except json.JSONDecodeError as exc:
                    console.print(f"Not JSON ({exc.msg}); try again.", highlight=False)
                    continue
                return {"action": "edit", "args": edited}
            if choice in ("r", "reject", "n", "no"):
                return {"action": "reject", "reason": _ask(console, "Why? (optional): ")}
            console.print("Answer a, e or r.", highlight=False)

    return ask


def _show_history(thread_id: str, db: Path | None, json_out: bool) -> None:
    from agentic_loop.history import run_history
    from agentic_loop.storage import load_run

    async def read(saver: Any) -> Any:
        stored = await load_run(saver, thread_id)
        if stored is None:
            return None, []
        return stored, await run_history(_shape(saver), thread_id)

    stored, checkpoints = _with_store(db, read)
    if stored is None:
        _unknown_thread(thread_id, db)
    if json_out:
        rows = [
            {key: value for key, value in vars(point).items() if key != "config"}
            for point in checkpoints
        ]
        typer.echo(_to_json(rows))
        return
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
    console = _console()
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


def _report(result: AgenticResult, json_out: bool) -> None:
    style = {"completed": "green", "partial": "yellow", "failed": "red"}[result.status]
    if json_out:
        typer.echo(_json_text(result.model_dump_json(indent=2)))
    # With --json the summary and the answer go to stderr, beside the progress.
    console = _console(stderr=json_out)
    console.print(f"[bold {style}]{result.status}[/] {escape(result.summary)}", highlight=False)
    if result.answer:
        console.print("\n[bold]Answer[/]", highlight=False)
        console.print(result.answer, highlight=False, markup=False)
    failures = [step for step in result.steps if step.status == "failed"]
    if result.status == "failed" and failures:
        _fail(f"step {failures[-1].step_num} {failures[-1].result}", code=1)
    if result.status != "completed":
        raise typer.Exit(1)


def _print_run(console: Console, stored: StoredRun) -> None:
    from agentic_loop.drawing import format_duration

    console.print(f"[bold]{escape(stored.task)}[/]", highlight=False)
    console.print(
        f"thread {escape(visible(stored.thread_id, lines=False))} · {stored.status} · "
        f"updated {stored.updated_at[:19]}",
        highlight=False,
    )
    if stored.result:
        console.print(stored.result.summary, highlight=False, markup=False)
        if spent := _spent(stored.result, stored.options):
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
            waiting = "not run" if stored.result else "pending"  # a finished run ran no more
            console.print(
                f"\n[dim]{number}. {escape(visible(description, lines=False))} — {waiting}[/]",
                highlight=False,
            )
            continue
        cut = " [yellow](cut short at its length cap)[/]" if step.cut_short else ""
        facts: list[str] = [step.status]
        if step.status != "skipped":  # a skipped step took no time
            facts.append(format_duration(step.duration_ms))
        if step.tokens_in or step.tokens_out:
            facts.append(_tokens(step.tokens_in, step.tokens_out))
        console.print(
            f"\n[bold]{number}. {escape(visible(description, lines=False))}[/] — "
            f"{', '.join(facts)}{cut}",
            highlight=False,
        )
        if step.status == "adapted" and step.failure:
            console.print(f"  [yellow]failed first:[/] {escape(step.failure)}", highlight=False)
        for call in step.tool_calls:
            console.print(
                f"  [magenta]⚒[/] {escape(call.tool)} {escape(one_line(_to_json(call.args), 100))}"
                f" → {call.status}, {call.duration_ms} ms: {escape(one_line(call.result, 100))}",
                highlight=False,
            )
        console.print(step.result, highlight=False, markup=False)
    if stored.result and stored.result.answer:
        console.print("\n[bold]Answer[/]", highlight=False)
        console.print(stored.result.answer, highlight=False, markup=False)


def _count(number: int) -> str:
    """`950`, `1.2k`, `35k`, `1.2M`: a count short enough for a table column."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if number >= size:
            scaled = number / size
            return f"{scaled:.1f}{unit}" if scaled < 10 else f"{scaled:.0f}{unit}"
    return str(number)


def _tokens(tokens_in: int, tokens_out: int) -> str:
    return f"{tokens_in} token{'s' if tokens_in != 1 else ''} in, {tokens_out} out"


def _spent(result: AgenticResult, options: RunOptions) -> str:
    """`"120 tokens in, 300 out; the max_tokens budget (400) ran out"`: what the run's model
    calls used and the budget that ended it, each when known."""
    parts = []
    if result.tokens_in or result.tokens_out:
        parts.append(_tokens(result.tokens_in, result.tokens_out))
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

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        from agentic_loop import events
        from agentic_loop.drawing import MARKS, format_duration

        print_line = self._bar.console.print if self._bar else self.console.print
        if event == events.PLAN_READY:
            self.show_plan(data["steps"])
        elif event == events.PLAN_REVIEWED:
            print_line(f"Plan {data['review']}.", highlight=False)
            if data["review"] == "edited":
                self.show_plan(data["steps"], heading=False)
        elif event == events.STEP_STARTED:
            print_line(
                f"[cyan]→[/] step {data['step']}/{data['total']}: "
                f"{escape(visible(data['description'], lines=False))}",
                highlight=False,
            )
            self._start_bar(data["total"], completed=data["step"] - 1)
        elif event == events.STEP_COMPLETE:
            took = format_duration(data["duration_ms"])
            self._step_ended(
                f"[green]✓[/] step {data['step']}: {escape(one_line(data['result'], 100))} "
                f"[dim]({took})[/]"
            )
        elif event == events.STEP_ADAPTED:  # the other way it took, then why
            self._step_ended(
                f"[yellow]↻ adapted[/] step {data['step']}: "
                f"{escape(one_line(data['adaptation'], 100))} "
                f"[dim](it failed first: {escape(one_line(data['error'], 100))})[/]"
            )
        elif event == events.STEP_FAILED:
            self._step_ended(
                f"[red]✗ failed[/] step {data['step']}: {escape(one_line(data['error'], 100))}"
            )
        elif event == events.STEP_SKIPPED:
            self._step_ended(
                f"[dim]{MARKS['skipped']} skipped[/] step {data['step']}: "
                f"{escape(one_line(data['reason'], 100))}"
            )
        elif event == events.TOOL_CALLED:
            print_line(
                f"  [magenta]⚒[/] {escape(data['tool'])} {escape(one_line(data['args'], 100))}",
                highlight=False,
            )
        elif event == events.TOOL_RESULT:
            mark = "[green]↳[/]" if data["status"] == "success" else f"[red]↳ {data['status']}[/]"
            print_line(
                f"    {mark} {escape(one_line(data['result'], 100))} "
                f"[dim]({data['duration_ms']} ms)[/]",
                highlight=False,
            )
        elif event == events.PLAN_REVISED:
            self.stop()
            change = "ends here" if data["change"] == "done" else "revised"
            print_line(f"[bold]Plan {change}[/] after step {data['after_step']}", highlight=False)
            if data["change"] != "done":
                self.show_plan(data["steps"], heading=False)
        elif event == events.TASK_COMPLETE:
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


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters but newline and tab (C0, DEL and C1): a terminal acts on them
rather than showing them."""
_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str, *, lines: bool = True) -> str:
    """`text` with its control characters written out (`\\x1b`, `\\x07`), so that text from
    a model or a user is shown as text: no escape sequence in it sets the terminal's title,
    colours its output or moves its cursor. Newlines and tabs stay if `lines` (`\\r\\n`
    is a newline); without, they are written out too, for text that must stay on one line.
    """
    text = text.replace("\r\n", "\n")
    control = _CONTROL if lines else _CONTROL_OR_BREAK
    return control.sub(lambda char: f"\\x{ord(char[0]):02x}", text)


class _VisibleConsole(Console):
    """A console that shows the control characters of what it prints (see `visible`):
    every string it prints, as a line, a table cell or a prompt, goes through `render_str`.
    """

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(visible(text), **options)


def _console(stderr: bool = False) -> Console:
    # soft_wrap: a message stays one line however narrow the terminal (or pipe) is.
    return _VisibleConsole(stderr=stderr, soft_wrap=True)


def _to_json(payload: Any) -> str:
    return _json_text(json.dumps(payload, indent=2, ensure_ascii=False))


def _json_text(text: str) -> str:
    """JSON with DEL and C1 control characters written as `\\u` escapes too: `json.dumps`
    and pydantic escape only those below 0x20, and some terminals act on C1 ones."""
    return _CONTROL.sub(lambda char: f"\\u{ord(char[0]):04x}", text)
