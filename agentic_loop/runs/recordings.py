"""A run's recording: every model request and reply, tool call and result, progress event
and answer a person gave, stored as they happen beside the run's checkpoints, so that
`runs.replay` can run the run again without its model or tools.

`Recorder` is a LangChain callback handler the service attaches to every run and resume
(`RunService._go`); each thing it hears is one row of the table `agentic_loop_recordings`
(thread id, order, JSON body), in the same SQLite file or PostgreSQL database as the runs,
made when first needed, written a batch at a time by a writer task of the recorder's own
(`Recorder.flush` waits for it when the run ends). `read_entries` reads a run's
rows back; `Recording` is what `agentic-loop show RUN --export FILE` writes and `replay FILE`
reads (see "Replaying a run" in the README for the format).

What is recorded is what the run did and nothing of the environment: of a model call's
invocation parameters only the tools bound and the `format` asked for are kept (never the
client's settings, which may hold an address or headers).

A task run again on resume (its process was killed) records its calls again: each entry
names its LangGraph task (`task`, the checkpoint namespace, the same on every attempt) and
its place in it (`index`), and `latest` keeps the last attempt's, the one whose writes the
checkpoints kept (a kill may leave the last batch unwritten). A run re-run from a step or
from planning records its new branch after the old one, and `replay` refuses it
(`Recording.check_one_branch`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeGuard
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.core.events import NAMES
from agentic_loop.core.options import LoopOptions, default_max_steps
from agentic_loop.models import context_window, default_plan_format, default_prompts, reply_room
from agentic_loop.runs.store import is_postgres, postgres_connection

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

logger = logging.getLogger(__name__)

RECORDING_TABLE = "agentic_loop_recordings"
FORMAT = "agentic-loop-recording"
VERSION = 1
EntryKind = Literal["start", "model", "tool", "event", "answer"]


class NotRecorded(Exception):
    """The run holds no recording: it was stored before recordings existed, or by a
    runner that did not record it."""


class BadRecording(ValueError):
    """A recording file that cannot be read; the message says why."""


# --- what is recorded --------------------------------------------------------------------------


def model_traits(model: object, options: LoopOptions) -> dict[str, Any]:
    """What the graph chose from the model object when it was built (see `Settings`), so
    that a replay, whose model is another, chooses the same: the plan's format, the prompt
    set, the context window and the room kept for a reply; and the step limit of a run
    whose input sets none (`AGENTIC_LOOP_MAX_STEPS`, read when the graph is built)."""
    return {
        "plan_format": options.plan_format or default_plan_format(model),
        "prompts": options.prompts or default_prompts(model),
        "context_window": context_window(model),
        "reply_tokens": reply_room(model, options.max_reply_tokens),
        "max_steps": default_max_steps(),
    }


def dump_message(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, AIMessageChunk):
        message = message_chunk_to_message(message)
    return messages_to_dict([message])[0]


def load_message(data: Mapping[str, Any]) -> BaseMessage:
    return messages_from_dict([dict(data)])[0]


def _error(error: BaseException) -> dict[str, str]:
    return {"type": type(error).__name__, "message": str(error)}


def _json_safe(value: Any) -> Any:
    """`value` as JSON would give it back (a value JSON cannot hold becomes its text)."""
    return json.loads(json.dumps(value, default=str))


@dataclass
class _Call:
    node: str
    step: int | None
    task: str
    index: int
    request: dict[str, Any]


class Recorder(BaseCallbackHandler):
    """Hears a run's model calls, tool calls and progress events, and stores them as they
    come, a batch at a time, from a writer task of its own. Its callbacks run inline and
    never wait: an async handler would let a stopped run cancel a node's task between its
    own writes and those of its router, and LangGraph would keep the first without the
    second (the next steps' `Send`s), leaving a run that resumes to nothing. A store that
    fails (the database went away) is logged once at debug level and stops the recording:
    it never stops the run, nor speaks on the terminal. `flush` stores what is left."""

    run_inline = True

    def __init__(self, saver: BaseCheckpointSaver[Any], thread_id: str) -> None:
        self.table = _table_of(saver)
        self.thread_id = thread_id
        self._calls: dict[UUID, _Call] = {}
        self._tools: dict[UUID, dict[str, Any]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._pending: list[dict[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failed = False

    def add(self, kind: EntryKind, **body: Any) -> None:
        """Keep an entry, and have the writer store it."""
        self._pending.append({"kind": kind, **_json_safe(body)})
        if self._writer is None or self._writer.done():
            try:
                self._writer = asyncio.get_running_loop().create_task(self._write())
            except RuntimeError:  # heard outside the event loop's thread: `flush` stores it
                pass

    async def _write(self) -> None:
        while self._pending and not self._failed:
            batch, self._pending = self._pending, []
            try:
                await self.table.add(self.thread_id, batch)
            except Exception as exc:  # the run goes on unrecorded; its own errors say the rest
                self._failed = True
                logger.debug("Recording of run %r stopped: %s", self.thread_id, exc)

    async def flush(self) -> None:
        """Wait until every entry kept so far is stored (or the recording stopped)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        await self._write()

    def _place(self, kind: str, metadata: Mapping[str, Any] | None) -> tuple[str, int]:
        """The LangGraph task the callback came from, and how many of `kind` it made before."""
        task = str((metadata or {}).get("langgraph_checkpoint_ns", ""))
        index = self._counts.get((kind, task), 0)
        self._counts[(kind, task)] = index + 1
        return task, index

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        task, index = self._place("model", metadata)
        self._calls[run_id] = _Call(
            node=str((metadata or {}).get("langgraph_node", "")),
            step=(metadata or {}).get("step_num"),
            task=task,
            index=index,
            request={
                "messages": [dump_message(m) for m in messages[0]],
                "tools": params.get("tools") or [],
                "format": params.get("format"),
            },
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None:
            self._model(call, reply=_reply_of(response), error=None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        response = kwargs.get("response")
        reply = _reply_of(response) if isinstance(response, LLMResult) else None
        if reply is not None and (reply["data"].get("content") or reply["data"].get("tool_calls")):
            # A reply the loop stopped reading at its length cap: what came is the reply.
            self._model(call, reply=reply, error=None)
        else:
            self._model(call, reply=None, error=_error(error))

    def _model(
        self, call: _Call, *, reply: dict[str, Any] | None, error: dict[str, str] | None
    ) -> None:
        self.add(
            "model",
            node=call.node,
            step=call.step,
            task=call.task,
            index=call.index,
            request=call.request,
            reply=reply,
            error=error,
        )

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._tools[run_id] = {
            "call_id": kwargs.get("tool_call_id"),
            "name": serialized.get("name") or kwargs.get("name"),
            "args": inputs if inputs is not None else input_str,
        }

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._tools.pop(run_id, None)
        if call is None:
            return
        if isinstance(output, BaseMessage):
            self.add("tool", **call, output=dump_message(output), error=None)
        else:
            self.add("tool", **call, output={"content": str(output)}, error=None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._tools.pop(run_id, None)
        if call is not None:
            self.add("tool", **call, output=None, error=_error(error))

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if name in NAMES:
            task, index = self._place("event", metadata)
            self.add("event", name=name, data=data, task=task, index=index)


def _reply_of(response: LLMResult) -> dict[str, Any] | None:
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration) and isinstance(generation.message, AIMessage):
                return dump_message(generation.message)
    return None


# --- reading a run's recording back --------------------------------------------------------------


def latest(entries: Sequence[dict[str, Any]], kind: EntryKind) -> list[dict[str, Any]]:
    """The entries of `kind`, in order, an entry recorded again (its task run again on
    resume) keeping only its last recording, at its last place."""
    if kind == "tool":
        keys = [entry.get("call_id") for entry in entries]
    else:
        keys = [(entry.get("task"), entry.get("index")) for entry in entries]
    last = {key: at for at, key in enumerate(keys) if entries[at]["kind"] == kind}
    return [entries[at] for at in sorted(last.values())]


@dataclass(frozen=True)
class Recording:
    """A run as recorded: what `replay` needs, with nothing from a store."""

    thread_id: str
    task: str
    options: dict[str, Any]
    """`LoopOptions.to_metadata()` of the run, as its checkpoints recorded them."""
    entries: list[dict[str, Any]]
    result: dict[str, Any] | None = None
    """The run's `AgenticResult` as JSON, if it finished."""
    status: str = ""
    model: str = ""
    """The model spec the run ran with (empty: a model object that named none)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loop_options(self) -> LoopOptions:
        return LoopOptions.from_metadata(self.options)

    def of_kind(self, kind: EntryKind) -> list[dict[str, Any]]:
        return latest(self.entries, kind)

    @property
    def start(self) -> dict[str, Any]:
        """The first start of the run (its input and the model's traits), or {}."""
        return next((e for e in self.entries if e["kind"] == "start"), {})

    def check_one_branch(self) -> None:
        """`BadRecording` if the run was run again from a step (`resume --from-step`) or
        from planning (resuming a run whose plan failed or was rejected): its recording
        then holds two branches, and replay cannot tell which calls belong to the one
        that stands."""
        for entry in self.entries:
            if entry["kind"] == "start" and entry.get("rerun_from") is not None:
                again = entry["rerun_from"]
                where = "planning" if again == "planning" else f"step {again}"
                raise BadRecording(
                    f"run {self.thread_id!r} was run again from {where}: a run with more "
                    "than one branch cannot be replayed yet"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "thread_id": self.thread_id,
            "task": self.task,
            "model": self.model,
            "options": self.options,
            "status": self.status,
            "result": self.result,
            "entries": self.entries,
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def from_json(cls, data: Any) -> Recording:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadRecording(f"not an agentic-loop recording (its format is not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise BadRecording(
                f"a recording of version {data.get('version')!r}; this version reads {VERSION}"
            )
        try:
            return cls(
                thread_id=str(data["thread_id"]),
                task=str(data["task"]),
                options=dict(data["options"]),
                entries=[dict(entry) for entry in data["entries"]],
                result=data.get("result"),
                status=str(data.get("status", "")),
                model=str(data.get("model", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRecording(f"a recording that lacks {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> Recording:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BadRecording(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRecording(f"{path} is not JSON: {exc}") from None
        return cls.from_json(data)


async def read_entries(saver: BaseCheckpointSaver[Any], thread_id: str) -> list[dict[str, Any]]:
    """The thread's recorded entries in order; [] for a run recorded by nobody (or a store
    without the table, one written before recordings existed)."""
    table = _table_of(saver)
    try:
        return await table.read(thread_id)
    except Exception as exc:
        if _is_missing_table(exc):
            return []
        raise


# --- the table, per kind of store ---------------------------------------------------------------


class _Table:
    async def add(self, thread_id: str, bodies: Sequence[dict[str, Any]]) -> None:
        """Store `bodies` after the thread's rows, in one transaction."""
        raise NotImplementedError

    async def read(self, thread_id: str) -> list[dict[str, Any]]:
        raise NotImplementedError


def _table_of(saver: BaseCheckpointSaver[Any]) -> _Table:
    if isinstance(saver, AsyncSqliteSaver):
        return _SqliteTable(saver)
    if is_postgres(saver):
        return _PostgresTable(saver)  # type: ignore[arg-type]
    raise TypeError(f"runs are recorded in a store from open_store, not a {type(saver)}")


def recordable(saver: BaseCheckpointSaver[Any] | None) -> TypeGuard[BaseCheckpointSaver[Any]]:
    """Whether runs in `saver` are recorded: those of a store from `open_store`."""
    return isinstance(saver, AsyncSqliteSaver) or (saver is not None and is_postgres(saver))


def _is_missing_table(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    return type(exc).__name__ == "UndefinedTable"


_MADE: weakref.WeakSet[BaseCheckpointSaver[Any]] = weakref.WeakSet()
"""The savers whose table this process made or found."""


class _SqliteTable(_Table):
    """On the saver's own connection, in turn with its queries (its lock)."""

    def __init__(self, saver: AsyncSqliteSaver) -> None:
        self.saver = saver

    async def add(self, thread_id: str, bodies: Sequence[dict[str, Any]]) -> None:
        conn = self.saver.conn
        async with self.saver.lock:
            if self.saver not in _MADE:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {RECORDING_TABLE} (thread_id TEXT NOT NULL, "
                    "seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (thread_id, seq))"
                )
                _MADE.add(self.saver)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for body in bodies:
                    await conn.execute(
                        f"INSERT INTO {RECORDING_TABLE} (thread_id, seq, body) VALUES (?, "
                        f"(SELECT coalesce(max(seq), 0) + 1 FROM {RECORDING_TABLE} "
                        "WHERE thread_id = ?), ?)",
                        (thread_id, thread_id, json.dumps(body)),
                    )
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise

    async def read(self, thread_id: str) -> list[dict[str, Any]]:
        async with self.saver.lock:
            async with self.saver.conn.execute(
                f"SELECT body FROM {RECORDING_TABLE} WHERE thread_id = ? ORDER BY seq",
                (thread_id,),
            ) as cursor:
                rows = await cursor.fetchall()
        return [json.loads(row[0]) for row in rows]


class _PostgresTable(_Table):
    """On a connection of the saver's pool."""

    def __init__(self, saver: AsyncPostgresSaver) -> None:
        self.saver = saver

    async def add(self, thread_id: str, bodies: Sequence[dict[str, Any]]) -> None:
        import psycopg

        async with postgres_connection(self.saver) as conn:
            if self.saver not in _MADE:
                try:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {RECORDING_TABLE} (thread_id TEXT NOT "
                        "NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, "
                        "PRIMARY KEY (thread_id, seq))"
                    )
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                    pass  # another process made it at the same moment
                _MADE.add(self.saver)
            async with conn.transaction():
                for body in bodies:
                    await conn.execute(
                        f"INSERT INTO {RECORDING_TABLE} (thread_id, seq, body) VALUES "
                        f"(%(thread)s, (SELECT coalesce(max(seq), 0) + 1 FROM "
                        f"{RECORDING_TABLE} WHERE thread_id = %(thread)s), %(body)s)",
                        {"thread": thread_id, "body": json.dumps(body)},
                    )

    async def read(self, thread_id: str) -> list[dict[str, Any]]:
        async with postgres_connection(self.saver) as conn:
            cursor = await conn.execute(
                f"SELECT body FROM {RECORDING_TABLE} WHERE thread_id = %s ORDER BY seq",
                (thread_id,),
            )
            rows = await cursor.fetchall()
        return [json.loads(row["body"]) for row in rows]


# --- attaching a recorder to a run ----------------------------------------------------------------


def with_recorder(config: RunnableConfig, recorder: Recorder) -> RunnableConfig:
    """`config` with `recorder` among its callbacks (a list, or a callback manager)."""
    callbacks = config.get("callbacks")
    if callbacks is None:
        return {**config, "callbacks": [recorder]}
    if isinstance(callbacks, list):
        return {**config, "callbacks": [*callbacks, recorder]}
    manager = callbacks.copy()
    manager.add_handler(recorder, inherit=True)
    return {**config, "callbacks": manager}


Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]


def answering(recorder: Recorder, handler: Handler | None) -> Handler | None:
    """`handler` (a plan review's or tool approval's) with each answer it gives recorded."""
    if handler is None:
        return None

    async def answer(request: dict[str, Any]) -> Any:
        given = handler(request)
        given = await given if inspect.isawaitable(given) else given
        recorder.add("answer", request=request, answer=given)
        return given

    return answer
