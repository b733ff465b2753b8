"""The `agentic-loop` command: run, resume, list and show stored runs, draw the graph.

It parses arguments and prints; the runs themselves go through `agentic_loop.runs.service`,
and the terminal output is `agentic_loop.faces.terminal`'s. Heavy libraries (LangGraph,
LangChain, the model clients) load inside the commands, so `agentic-loop --help` answers
at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.markup import escape

from agentic_loop.core.events import visible
from agentic_loop.core.options import (
    DEFAULT_MAX_STEPS,
    MAX_PARALLEL_ENV,
    MAX_SECONDS_ENV,
    MAX_STEPS_ENV,
    MAX_TOKENS_ENV,
    MODEL_ENV,
    MOST_PARALLEL,
    MOST_REPLANS,
    MOST_REPLY_TOKENS,
    MOST_STEPS,
    MOST_TOOL_CALLS,
    STEP_TIMEOUT_ENV,
    LoopOptions,
    default_max_steps,
)
from agentic_loop.faces.terminal import TerminalProgress, console, to_json
from agentic_loop.models import DEFAULT_MODEL, SPEC_HELP

if TYPE_CHECKING:
    from agentic_loop.core.state import AgenticResult
    from agentic_loop.runs.service import Outcome, RunRequest, RunService

app = typer.Typer(
    help="A plan-and-execute agent loop on LangGraph: plan a task, run its steps, "
    "resume after a crash.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: fits 80 columns, reads well in a pipe
)

DEFAULTS = LoopOptions()
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help=f"{SPEC_HELP}. auto uses Ollama if it runs and has the model, else the "
        f"embedded model. Default: ${MODEL_ENV}, else {DEFAULT_MODEL}.",
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        help="The run store: a SQLite file, or a postgresql:// URL. "
        "Default: $AGENTIC_LOOP_DB, else ~/.local/share/agentic-loop/runs.sqlite.",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout; progress goes to stderr."),
]
ThreadArgument = Annotated[
    str, typer.Argument(help="The run's thread id (see `agentic-loop runs`).")
]
ShowJsonOption = Annotated[bool, typer.Option("--json", help="Print it as JSON.")]
TimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help=f"Seconds to wait for each model reply, up to a week. Default: {DEFAULTS.timeout:g}.",
    ),
]


class Replan(StrEnum):
    on_failure = "on_failure"
    after_each_step = "after_each_step"
    never = "never"


class Prompts(StrEnum):
    capable = "capable"
    small = "small"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    ascii = "ascii"
    dot = "dot"
    png = "png"
    svg = "svg"


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


_T = TypeVar("_T")


def _from_step(raw: str | None) -> int | None:
    """--from-step's value: a step number, else one line and exit 2."""
    from agentic_loop.core.options import MOST_STEPS, Bound, parse_number

    if raw is None:
        return None
    try:
        return int(str(parse_number("--from-step", raw, Bound(int, 1, MOST_STEPS))))
    except ValueError as exc:
        _fail(str(exc))


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
            metavar="[PREFIX=]MODULE:ATTR",
            help="Tools the steps may call: package.module:attribute, a list of tools or a "
            "function returning one, found from this folder or installed packages; PREFIX= "
            "puts PREFIX before their names. May repeat.",
        ),
    ] = None,
    mcp: Annotated[
        Path | None,
        typer.Option(
            "--mcp",
            metavar="FILE",
            help="An mcpServers JSON file (the format Claude Desktop, Cursor and VS Code "
            "share): the servers' tools go to the steps. Each server starts once a run; an "
            "entry's \"toolPrefix\" goes before its tools' names.",
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
    workspace_prefix: Annotated[
        str | None,
        typer.Option(
            "--workspace-prefix",
            metavar="PREFIX",
            help="Put PREFIX before the names of the --workspace tools (read_file ...).",
        ),
    ] = None,
    idempotent_tool: Annotated[
        list[str] | None,
        typer.Option(
            "--idempotent-tool",
            metavar="NAME",
            help="Mark this tool as safe to call again (its metadata's idempotent). May repeat.",
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
            f"step fails and is adapted. Default: {DEFAULTS.max_tool_calls}.",
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
            f"Default: {DEFAULTS.max_replans}.",
        ),
    ] = None,
    prompts: Annotated[
        Prompts | None,
        typer.Option(
            "--prompts",
            help="Which prompts the model gets: capable (a step does the step and gives its "
            "result in full) or small (tuned for the embedded 135M model). Default: small for "
            "the embedded model, else capable.",
        ),
    ] = None,
    max_reply_tokens: Annotated[
        str | None,
        typer.Option(
            "--max-reply-tokens",
            metavar="N",
            help=f"Cap on each Ollama reply's length (num_predict), 1 to {MOST_REPLY_TOKENS}; "
            "a reply that reaches it is marked as cut short. "
            f"Default: {DEFAULTS.max_reply_tokens}.",
        ),
    ] = None,
    max_parallel: Annotated[
        str | None,
        typer.Option(
            "--max-parallel",
            metavar="N",
            help=f"Most steps in progress at once, 1 to {MOST_PARALLEL}. "
            f"Default: ${MAX_PARALLEL_ENV}, else {DEFAULTS.max_parallel}.",
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
    from agentic_loop.core.options import ToolOptions, ToolSetupError
    from agentic_loop.runs.service import RunRequest
    from agentic_loop.runs.streaming import check_thread_id

    if not task.strip():
        _fail('the task is empty; say what to do, e.g. agentic-loop run "Plan a weekend trip"')
    if thread is not None:
        try:
            check_thread_id(thread)
        except ValueError as exc:  # before the store opens: nothing is made for it
            _fail(str(exc))
    try:
        tool_options = ToolOptions.from_cli(
            tools or (),
            mcp,
            workspace,
            workspace_prefix=workspace_prefix,
            idempotent_tools=idempotent_tool or (),
        )
    except ToolSetupError as exc:
        _fail(str(exc))
    if (approve_tools or approve_tool) and not tool_options:
        _fail("--approve-tools and --approve-tool need tools: add --tools, --mcp or --workspace")
    flags = {
        "model": model,
        "max_steps": max_steps,
        "timeout": timeout,
        "review_plan": review or None,
        "tools": tool_options,
        "approve_tools": True if approve_tools else tuple(approve_tool or ()) or None,
        "max_tool_calls": max_tool_calls,
        "replan": replan.value,
        "max_replans": max_replans,
        "prompts": prompts and prompts.value,
        "max_reply_tokens": max_reply_tokens,
        "max_parallel": max_parallel,
        "step_timeout": step_timeout,
        "max_seconds": max_seconds,
        "max_tokens": max_tokens,
    }
    options = _options(flags)
    _drive(db, json_out, request=RunRequest(task=task, options=options, thread_id=thread))


def _options(flags: Mapping[str, object], *, env: bool = True) -> LoopOptions:
    """The run's options from the flags and (with `env`) the `AGENTIC_LOOP_*` variables; a
    bad value is one line and exit 2, naming the flag or variable."""
    try:
        return LoopOptions.build(flags, env=env, label=lambda name: "--" + name.replace("_", "-"))
    except ValueError as exc:
        _fail(str(exc))


@app.command()
def resume(
    thread_id: ThreadArgument,
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
    """Carry on a stopped run from its last finished step, or run it again from a step.
    It runs with the model and options it was started with, unless --model or --timeout
    says otherwise."""
    seconds_per_reply = (
        None if timeout is None else _options({"timeout": timeout}, env=False).timeout
    )
    step = _from_step(from_step)
    _check_max_steps_env()
    _drive(
        db,
        json_out,
        thread_id=thread_id,
        model=model,
        timeout=seconds_per_reply,
        from_step=step,
    )


@app.command()
def runs(db: DbOption = None) -> None:
    """List stored runs, most recent first."""
    from agentic_loop.faces.terminal import print_runs

    stored = _with_service(db, lambda service: service.runs())
    if not stored:
        console().print(f"No stored runs in {_where(db)}.")
        return
    print_runs(console(), stored)


@app.command()
def show(
    thread_id: ThreadArgument,
    db: DbOption = None,
    json_out: ShowJsonOption = False,
    history: Annotated[
        bool,
        typer.Option("--history", help="List the run's checkpoints, on every branch."),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help="Write the run's recording (every model call, tool call and event) to FILE "
            "as JSON, for `agentic-loop replay FILE`.",
        ),
    ] = None,
) -> None:
    """Print one stored run: its task, status, steps and results."""
    from agentic_loop.faces.terminal import print_run

    if export is not None:
        _export(thread_id, db, export)
        return
    if history:
        _show_history(thread_id, db, json_out)
        return
    stored = _with_service(db, lambda service: service.run(thread_id))
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
        typer.echo(to_json(payload))
        return
    print_run(console(), stored)
    if stored.options.tools.mcp_config:
        from agentic_loop.step_tools.mcp_logs import mcp_log_path

        log = mcp_log_path(_location(db), stored.thread_id)
        console().print(f"\nMCP servers' stderr: {log}", highlight=False, markup=False)


@app.command()
def replay(
    run: Annotated[
        str,
        typer.Argument(help="A stored run's thread id, or a recording file (show --export)."),
    ],
    db: DbOption = None,
) -> None:
    """Run a stored run again through the current graph, its model and tools answering from
    its recording (no model or tool is called), and say whether it does the same."""
    from agentic_loop.runs.recordings import BadRecording, Recording
    from agentic_loop.runs.replay import replay as replay_run

    if Path(run).is_file():
        try:
            recording = Recording.read(run)
        except BadRecording as exc:
            _fail(str(exc))
    else:
        recording = _recording(run, db)
    try:
        report = asyncio.run(replay_run(recording))
    except BadRecording as exc:
        _fail(str(exc))
    console().print(visible(report.describe()), highlight=False, markup=False)
    if not report.same:
        raise typer.Exit(1)


def _recording(thread_id: str, db: str | None) -> Any:
    """The stored run's recording, or one line and exit 2."""
    from agentic_loop.runs.recordings import NotRecorded

    try:
        return _with_service(db, lambda service: service.recording(thread_id))
    except NotRecorded as exc:
        _fail(str(exc))


def _export(thread_id: str, db: str | None, path: Path) -> None:
    recording = _recording(thread_id, db)
    try:
        recording.write(path)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")
    entries = len(recording.entries)
    console().print(
        f"Wrote the recording of {thread_id} ({entries} entries) to {path}.",
        highlight=False,
        markup=False,
    )


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
    from agentic_loop.faces.drawing import DrawingError

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
    console().print(f"Wrote the {what} as {format.value} to {output}", highlight=False)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Address to listen on. Any other than this machine's own (127.0.0.1, "
            "localhost, ::1) needs an access token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            min=0,
            max=65535,
            help="Port to listen on; 0 picks a free one.",
        ),
    ] = 8765,
    db: DbOption = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="Access token every page, API call and WebSocket must carry. Default: none "
            "on 127.0.0.1, else a new one, printed in the address.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="SPEC",
            help=f"The model the start form proposes ({SPEC_HELP}). "
            f"Default: ${MODEL_ENV}, else {DEFAULT_MODEL}.",
        ),
    ] = None,
    timeout: TimeoutOption = None,
) -> None:
    """Serve the web app: list, start, watch and steer runs in a browser."""
    import socket

    import uvicorn

    from agentic_loop.faces.web import create_app
    from agentic_loop.faces.web.security import is_loopback, new_token
    from agentic_loop.runs.service import RunService, StoreError

    defaults = _options({"model": model, "timeout": timeout})
    location = _location(db)
    if token is not None and not token.strip():
        _fail("--token is empty; give a token, or leave the option out")
    if token is None and not is_loopback(host):
        token = new_token()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    shown_host = socket.gethostname() if host in ("0.0.0.0", "::") else host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    address = f"http://{shown_host}:{listening.getsockname()[1]}/"
    if token:
        address += f"?token={token}"

    async def go() -> None:
        async with RunService.open(location) as service:
            web = create_app(service, token=token, defaults=defaults)
            config = uvicorn.Config(web, log_level="warning", timeout_graceful_shutdown=5)
            console().print(f"Serving the runs in {_where(db)} at {address}", highlight=False)
            await uvicorn.Server(config).serve(sockets=[listening])

    try:
        asyncio.run(go())
    except StoreError as exc:
        _fail(str(exc))
    finally:
        listening.close()


@app.command("eval")
def eval_tasks(
    tasks_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="TASKS.jsonl",
            help='Tasks, one JSON object a line: {"id", "task", "rubric", "max_steps" '
            "(optional)}. Default: the everyday tasks shipped with agentic-loop.",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="SPEC",
            help=f"A model to run the tasks with: {SPEC_HELP}. May repeat. "
            f"Default: ${MODEL_ENV}, else {DEFAULT_MODEL}.",
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge",
            metavar="SPEC",
            help="A model (as --model) that grades each answer against its task's rubric, 1 to 5.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="Run the first N tasks only.")
    ] = None,
    max_steps: Annotated[
        str | None,
        typer.Option(
            "--max-steps",
            metavar="N",
            help=f"Most steps per run, 1 to {MOST_STEPS}; a task's own max_steps applies if "
            "smaller.",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    prompts: Annotated[
        Prompts | None,
        typer.Option(
            "--prompts",
            help="Which prompts every model gets: capable or small (see `run --help`). "
            "Default: small for the embedded model, else capable.",
        ),
    ] = None,
    per_task: Annotated[
        bool, typer.Option("--per-task", help="Print a row for each run too.")
    ] = False,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", metavar="FILE", help="Write every run and summary as JSON."),
    ] = None,
) -> None:
    """Run each task with each model, and print a table comparing them."""
    from agentic_loop.evaluation import SetupError, TaskFileError, evaluate, read_tasks
    from agentic_loop.faces.scoreboard import print_evaluation, run_line
    from agentic_loop.models import model_spec_from_env

    options = _options(
        {"max_steps": max_steps, "timeout": timeout, "prompts": prompts and prompts.value}
    )
    if json_file is not None and not json_file.parent.is_dir():
        _fail(f"cannot write {json_file}: no folder {json_file.parent}")
    try:
        tasks = read_tasks(tasks_file)[:limit]
    except TaskFileError as exc:
        _fail(str(exc))
    progress = console(stderr=True)
    try:
        evaluation = asyncio.run(
            evaluate(
                tasks,
                models or [model_spec_from_env()],
                judge=judge,
                options=options,
                on_run=lambda run, number, total: progress.print(run_line(run, number, total)),
            )
        )
    except SetupError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        global _stop_said
        _stop_said = True
        progress.print("\nStopped before the evaluation finished; its runs are not stored.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    print_evaluation(console(), evaluation, per_task=per_task)
    if json_file is not None:
        try:
            json_file.write_text(evaluation.model_dump_json(indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {json_file}: {exc.strerror or exc}")


def main() -> None:
    import logging

    # A run whose checkpoint cannot be read is reported in one line (storage.UnreadableRun);
    # LangGraph's serializer would first log a warning of its own about the stored type.
    logging.getLogger("langgraph.checkpoint.serde").setLevel(logging.ERROR)
    # A store that cannot be used is one line (StoreError). Meanwhile psycopg's pool logs
    # each connection it lost and each retry, and a runner each lease it could not renew
    # or free: records for a log, which the terminal (Python's last-resort handler) is not.
    for noisy in ("psycopg", "agentic_loop.runs.leases"):
        logging.getLogger(noisy).addHandler(logging.NullHandler())
    if len(sys.argv) > 1 and not {"--help", "-h"} & set(sys.argv[1:]):
        _load_libraries()
    try:
        app()
    except SystemExit as exit:
        # Typer turns a Ctrl-C that comes before a run is under way into a silent exit 130.
        if exit.code == EXIT_INTERRUPTED and not _stop_said:
            print(STOPPED_EARLY, file=sys.stderr)
        raise


def _load_libraries() -> None:
    """Import LangGraph and LangChain before the command runs, with a Ctrl-C held back until
    they have loaded: one that lands inside an import can come out as another error (pydantic
    turns it into a `SchemaError` while it builds a schema), with a traceback."""
    stopped: list[int] = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        import agentic_loop.runs.service  # noqa: F401  (Ctrl-C is handled otherwise here)

        return
    before = signal.signal(signal.SIGINT, lambda signum, frame: stopped.append(signum))
    try:
        import agentic_loop.runs.service  # noqa: F401  (everything a command needs)
    finally:
        signal.signal(signal.SIGINT, before)
    if stopped:
        print(STOPPED_EARLY, file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)


STOPPED_EARLY = "\nStopped before anything ran; nothing was stored."
_stop_said = False
"""Whether the CLI has said how a stopped run can go on (or that it cannot)."""


# --- helpers -----------------------------------------------------------------------------


def _location(db: str | None) -> Path | str:
    """The store a `--db` value names: a SQLite path or a `postgresql://` URL."""
    from agentic_loop.runs.store import StoreError, store_location

    try:
        return store_location(db)
    except StoreError as exc:
        _fail(str(exc))


def _where(db: str | None) -> str:
    from agentic_loop.runs.store import describe_location

    return describe_location(_location(db))


def _with_service(db: str | None, action: Callable[[RunService], Awaitable[_T]]) -> _T:
    """Open the store for reading, run `action(service)`, and turn refusals into one line."""
    from agentic_loop.runs.service import RunService, ServiceError, StoreError

    async def go() -> _T:
        async with RunService.open(_location(db), read_only=True) as service:
            return await action(service)

    try:
        return asyncio.run(go())
    except (ServiceError, StoreError) as exc:
        _fail(str(exc))


def _draw_graph(format: GraphFormat) -> str | bytes:
    """The graph's shape in `format`; the ASCII drawing lists self-loops below it."""
    from agentic_loop.faces.drawing import graph_ascii, graph_picture, render
    from agentic_loop.runs.service import graph_shape

    compiled = graph_shape()
    if format is GraphFormat.mermaid:
        return compiled.get_graph().draw_mermaid()
    if format is GraphFormat.ascii:
        return graph_ascii(compiled)
    picture = graph_picture(compiled)
    return picture.source if format is GraphFormat.dot else render(picture, _image(format))


def _draw_run(thread_id: str, db: str | None, format: GraphFormat) -> str | bytes:
    """The stored run's steps in `format`: Mermaid, terminal text, or a Graphviz picture."""
    from agentic_loop.faces.drawing import render, run_mermaid, run_picture, run_text

    stored = _with_service(db, lambda service: service.run(thread_id))
    if format is GraphFormat.mermaid:
        return run_mermaid(stored)
    if format is GraphFormat.ascii:
        return run_text(stored)
    picture = run_picture(stored)
    return picture.source if format is GraphFormat.dot else render(picture, _image(format))


def _image(format: GraphFormat) -> Literal["png", "svg"]:
    return "png" if format is GraphFormat.png else "svg"


def _drive(
    db: str | None,
    json_out: bool,
    *,
    request: RunRequest | None = None,
    thread_id: str = "",
    model: str | None = None,
    timeout: float | None = None,
    from_step: int | None = None,
) -> None:
    """Start `request`, or resume `thread_id` (from step `from_step` if given), show its
    progress, and exit with its status."""
    from agentic_loop.faces.terminal import ask_approval, ask_review
    from agentic_loop.runs.service import Hooks, RunService, ServiceError, StoreError, new_thread_id

    if request is not None:
        thread_id = request.thread_id or new_thread_id()
        request = dataclasses.replace(request, thread_id=thread_id)
    location = _location(db)
    db_flag = f" --db {_where(db)}" if db else ""
    display = TerminalProgress(console(stderr=json_out))
    hooks = Hooks(
        progress=display,
        review=ask_review(display),
        approve=ask_approval(display),
        starting=display.starting,
    )
    stop = _SigtermStop()

    async def go() -> Outcome:
        stop.task = asyncio.current_task()
        # A new run's model and tools are checked (its MCP servers started) before its
        # store is made; a resume needs a store that is there.
        starting = request.options if request is not None else None
        opening = RunService.open(
            location, create=starting is not None, starting=starting, thread_id=thread_id
        )
        async with opening as service:
            if request is not None:
                return await service.start(request, hooks)
            return await service.resume(
                thread_id, hooks, model=model, timeout=timeout, from_step=from_step
            )

    try:
        with stop:
            outcome = asyncio.run(go())
    except (ServiceError, StoreError) as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not stop.received:
            raise
        display.stop()
        _say_stopped(thread_id, location, db_flag)
        raise typer.Exit(EXIT_TERMINATED if stop.received else EXIT_INTERRUPTED) from None
    except EOFError:  # stdin ended before the plan review was answered
        _fail(
            "no answer to the plan review or tool approval; the run waits for one: "
            f"agentic-loop resume {thread_id}{db_flag}",
            code=1,
        )
    finally:
        display.stop()

    assert outcome.result is not None  # the terminal answers every question
    if outcome.already_finished:
        console(stderr=json_out).print(
            f"Run {thread_id} already finished ({outcome.result.status}); nothing to resume. "
            f"To run it again from step K: agentic-loop resume {thread_id} --from-step K",
            highlight=False,
        )
    _report(outcome.result, json_out)


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


def _say_stopped(thread_id: str, location: Path | str, db_flag: str) -> None:
    """After a Ctrl-C or SIGTERM: how to carry on, or that nothing was stored to carry on."""
    global _stop_said
    _stop_said = True
    if _has_run(location, thread_id):
        console(stderr=True).print(
            "\nStopped. Finished steps are stored; carry on with: "
            f"agentic-loop resume {thread_id}{db_flag}",
            highlight=False,
        )
    else:
        console(stderr=True).print(
            f"\nStopped before run {thread_id} was stored; nothing to resume.", highlight=False
        )


def _has_run(location: Path | str, thread_id: str) -> bool:
    """Whether the store holds a checkpoint of `thread_id` (True if it cannot be read: the
    resume command then reports why)."""
    from agentic_loop.runs.service import RunService, StoreError

    if isinstance(location, Path) and not location.exists():
        return False

    async def look() -> bool:
        async with RunService.open(location, read_only=True) as service:
            return await service.find(thread_id) is not None

    try:
        return asyncio.run(look())
    except StoreError:
        return True


def _show_history(thread_id: str, db: str | None, json_out: bool) -> None:
    from agentic_loop.faces.terminal import print_history

    stored, checkpoints = _with_service(db, lambda service: service.history(thread_id))
    if json_out:
        rows = [
            {key: value for key, value in vars(point).items() if key != "config"}
            for point in checkpoints
        ]
        typer.echo(to_json(rows))
        return
    print_history(console(), stored, checkpoints)


def _report(result: AgenticResult, json_out: bool) -> None:
    from agentic_loop.faces.terminal import json_text, print_result

    if json_out:
        typer.echo(json_text(result.model_dump_json(indent=2)))
    # With --json the summary and the answer go to stderr, beside the progress.
    print_result(console(stderr=json_out), result)
    failures = [step for step in result.steps if step.status == "failed"]
    if result.status == "failed" and failures:
        _fail(f"step {failures[-1].step_num} {failures[-1].result}", code=1)
    if result.status != "completed":
        raise typer.Exit(1)
