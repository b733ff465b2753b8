"""Stored runs: the SQLite checkpointer the CLI uses, and reading runs back from it."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.models import DEFAULT_REPLY_TOKENS
from agentic_loop.settings import (
    DEFAULT_MAX_PARALLEL,
    DEFAULT_MAX_REPLANS,
    DEFAULT_MAX_TOOL_CALLS,
)
from agentic_loop.state import (
    STORED_TYPES,
    AgenticResult,
    AgenticStep,
    Plan,
    PlanVersion,
    ReplanMode,
)
from agentic_loop.step_tools import ToolOptions

DB_ENV = "AGENTIC_LOOP_DB"
_SQLITE_HEADER = b"SQLite format 3\x00"


_ALLOWED_TYPES = [(cls.__module__, cls.__name__) for cls in STORED_TYPES]


def run_serializer() -> JsonPlusSerializer:
    """A serializer that restores the run's own types (besides the messages and LangGraph
    types LangGraph deems safe) and refuses others, whether or not
    `LANGGRAPH_STRICT_MSGPACK` is set, with no "Deserializing unregistered type" warning."""
    return JsonPlusSerializer(allowed_msgpack_modules=_ALLOWED_TYPES)


def checkpointer() -> InMemorySaver:
    """An in-memory checkpointer for the loop that restores its types without warnings.

    Another saver takes the same serializer: `SqliteSaver(conn, serde=run_serializer())`.
    A parent graph whose state holds types of its own allows them too:
    `checkpointer().with_allowlist([(cls.__module__, cls.__name__)])`."""
    return InMemorySaver(serde=run_serializer())


class StoreError(Exception):
    """The run store cannot be used; the message says why and what to do."""


def default_db_path() -> Path:
    """`AGENTIC_LOOP_DB`, else `$XDG_DATA_HOME/agentic-loop/runs.sqlite` (`~/.local/share/...`)."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "agentic-loop" / "runs.sqlite"


@asynccontextmanager
async def open_store(path: Path, *, read_only: bool = False) -> AsyncIterator[AsyncSqliteSaver]:
    """The checkpointer for the SQLite file at `path`, created if missing.

    Refuses, without touching it, a path that is a folder or a file that is not SQLite.
    `read_only` opens an existing store for reading only: nothing is created or written,
    so it works on a read-only copy too.
    """
    import aiosqlite

    if path.is_dir():
        raise StoreError(f"{path} is a folder; pass a file path with --db")
    has_data = path.exists() and path.stat().st_size > 0
    if read_only and not has_data:
        raise StoreError(f"no run store at {path}; `agentic-loop run` makes one, or pass --db")
    if has_data:
        with path.open("rb") as file:
            if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                raise StoreError(f"{path} is not a SQLite database; pass another file with --db")
    try:
        if read_only:
            conn = await aiosqlite.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from exc
    try:
        saver = AsyncSqliteSaver(conn, serde=run_serializer())
        if has_data:
            await _check_tables(conn, path, empty_ok=not read_only)
        if read_only:
            saver.is_setup = True  # setting up creates tables and switches the journal
        else:
            await saver.setup()  # creates the tables and turns on WAL
            # In WAL mode, synchronous=NORMAL keeps every commit when the process is killed;
            # only a power cut can lose the last few. It saves an fsync per checkpoint.
            await conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        await conn.close()
        raise StoreError(f"cannot use the run store {path}: {exc}") from exc
    except StoreError:
        await conn.close()
        raise
    try:
        yield saver
    finally:
        await conn.close()


async def _check_tables(conn: Any, path: Path, *, empty_ok: bool) -> None:
    """Refuse a database that holds something else than runs (another program's file)."""
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        tables = {row[0] async for row in cursor}
    if not {"checkpoints", "writes"} <= tables and (tables or not empty_ok):
        found = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            f"{path} is not a run store (its tables: {found}); pass another file with --db"
        )


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What the CLI ran a run with, beyond its model: kept in its checkpoints' metadata so
    that `resume` and `--from-step` rebuild the same graph. Runs stored before an option
    existed read as its default."""

    tools: ToolOptions = ToolOptions()
    approve_tools: tuple[str, ...] = ()
    """The tools whose calls wait for approval."""
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS
    replan: ReplanMode = "on_failure"
    max_replans: int = DEFAULT_MAX_REPLANS
    reply_tokens: int = DEFAULT_REPLY_TOKENS
    """The cap on a reply's length sent to Ollama."""
    max_parallel: int = DEFAULT_MAX_PARALLEL
    """Most steps in progress at once."""
    step_timeout: float | None = None
    """Seconds one step may take; None: no limit."""
    max_seconds: float | None = None
    """Seconds the run's steps may take; None: no limit."""
    max_tokens: int | None = None
    """Tokens the run's model calls may use; None: no limit."""

    def to_metadata(self) -> dict[str, str | int | float]:
        # Checkpoint metadata keeps only plain values: lists and dicts go in as JSON text,
        # and a budget that is not set is left out (None would be dropped anyway).
        budgets = {
            "step_timeout": self.step_timeout,
            "max_seconds": self.max_seconds,
            "max_tokens": self.max_tokens,
        }
        return {
            "tools": json.dumps(self.tools.to_metadata()),
            "approve_tools": json.dumps(list(self.approve_tools)),
            "max_tool_calls": self.max_tool_calls,
            "replan": self.replan,
            "max_replans": self.max_replans,
            "reply_tokens": self.reply_tokens,
            "max_parallel": self.max_parallel,
            **{name: value for name, value in budgets.items() if value is not None},
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> RunOptions:
        defaults = cls()
        return cls(
            tools=ToolOptions.from_metadata(json.loads(metadata.get("tools") or "{}")),
            approve_tools=tuple(json.loads(metadata.get("approve_tools") or "[]")),
            max_tool_calls=metadata.get("max_tool_calls", defaults.max_tool_calls),
            replan=metadata.get("replan", defaults.replan),
            max_replans=metadata.get("max_replans", defaults.max_replans),
            reply_tokens=metadata.get("reply_tokens", defaults.reply_tokens),
            max_parallel=metadata.get("max_parallel", defaults.max_parallel),
            step_timeout=metadata.get("step_timeout"),
            max_seconds=metadata.get("max_seconds"),
            max_tokens=metadata.get("max_tokens"),
        )


@dataclass(frozen=True)
class StoredRun:
    """A run as its latest checkpoint holds it."""

    thread_id: str
    task: str
    status: str
    """`completed`, `partial` or `failed` once finished; `awaiting review` while its plan
    waits for a reviewer, `awaiting approval` while a tool call does; else `unfinished`."""
    steps: list[AgenticStep]
    plan: list[str]
    updated_at: str
    model: str | None
    """The model spec the CLI ran it with, if it recorded one."""
    result: AgenticResult | None
    options: RunOptions
    """The tools, limits and replanning the CLI ran it with."""
    plan_versions: list[PlanVersion]
    """The plan as first made, then each revision replanning made."""
    waits_for: list[list[int]] = field(default_factory=list)
    """For each planned step, the steps it waits for (the one before, in a plan that runs
    in order)."""


async def load_run(saver: BaseCheckpointSaver, thread_id: str) -> StoredRun | None:
    """The run stored under `thread_id` in a checkpointer (a store from `open_store`, an
    `InMemorySaver`, ...), or None if there is none."""
    # A saver outside a compiled graph has no allowlist for the run's types under strict mode.
    found = await saver.with_allowlist(_ALLOWED_TYPES).aget_tuple(
        {"configurable": {"thread_id": thread_id}}
    )
    if found is None:
        return None
    values: dict[str, Any] = found.checkpoint["channel_values"]
    plan: Plan | None = values.get("plan")
    result = values.get("result")
    if not isinstance(result, AgenticResult) or plan is None or result.task_id != plan.task_id:
        result = None  # unfinished, or the result of an earlier task on this thread
    metadata = cast(dict[str, Any], found.metadata)
    # Runs stored before the choice was part of the run recorded it in the CLI's metadata.
    review_plan = bool(plan and plan.review_requested) or bool(metadata.get("review"))
    options = RunOptions.from_metadata(metadata)
    status: str = result.status if result else "unfinished"
    if result is None and review_plan and plan and plan.review is None and not plan.error:
        status = "awaiting review"
    elif result is None and _waits_for_approval(values, options.approve_tools):
        status = "awaiting approval"
    return StoredRun(
        thread_id=thread_id,
        task=values.get("task", ""),
        status=status,
        steps=list(values.get("steps", [])),
        plan=plan.steps if plan else [],
        updated_at=found.checkpoint["ts"],
        model=metadata.get("model"),
        result=result,
        options=options,
        plan_versions=plan.all_versions() if plan else [],
        waits_for=plan.dependencies() if plan else [],
    )


def _waits_for_approval(values: dict[str, Any], approve_tools: tuple[str, ...]) -> bool:
    """Whether a step's last model turn asked for a call that needs approval, not yet
    answered. Messages of a run stored before parallel steps belong to no step."""
    from agentic_loop import conversation

    messages = values.get("messages", [])
    steps = [conversation.of_step(messages, int(key)) for key in values.get("running", {})]
    for turns in [*steps, conversation.untagged(messages)]:
        calls = conversation.pending_tool_calls(turns)
        answered = conversation.reviewed_calls(turns[-1]) if turns else set()
        if any(c["name"] in approve_tools and c["id"] not in answered for c in calls):
            return True
    return False


async def list_runs(saver: AsyncSqliteSaver) -> list[StoredRun]:
    """Every stored run, most recently updated first."""
    async with saver.conn.execute(
        "SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' "
        "GROUP BY thread_id ORDER BY MAX(checkpoint_id) DESC"
    ) as cursor:
        thread_ids = [row[0] async for row in cursor]
    runs = [await load_run(saver, thread_id) for thread_id in thread_ids]
    return [run for run in runs if run is not None]
