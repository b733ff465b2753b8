"""The loop's LangGraph store beside the runs, where `call_tool` records each tool call
before it runs (`core.started_calls`), so that a call cut off by a kill is known as such
on resume.

For a SQLite store it is LangGraph's `AsyncSqliteStore` on the checkpointer's own
connection, its queries taken in turn with the checkpointer's (its lock), as the leases
do; for PostgreSQL, its `AsyncPostgresStore` on the checkpointer's pool. Its tables
(`store`, `store_migrations`) are made the first time a run needs them, by one process at
a time, so that several processes may make them in one new store at once."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from typing import TYPE_CHECKING, Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.runs.store import StoreError, is_postgres, postgres_connection

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.base import BaseStore

_STORES: weakref.WeakKeyDictionary[BaseCheckpointSaver[Any], BaseStore] = (
    weakref.WeakKeyDictionary()
)
"""The store made for each checkpointer, for as long as the checkpointer lives."""

_SETUP_WAIT_S = 30.0
"""How long setting up waits for another process that sets up the same store."""
_PG_STORE_SETUP_LOCK = 0x6167656E74737472  # pg_try_advisory_lock key: b"agentstr"


async def call_store(saver: BaseCheckpointSaver[Any] | None) -> BaseStore | None:
    """The store beside the runs of `saver`, a checkpointer `store.open_store` opened (one
    store per checkpointer, set up on first use); None for any other checkpointer, whose
    runs then run a tool call cut off again, as LangGraph runs any task again."""
    if saver is None:
        return None
    found = _STORES.get(saver)
    if found is not None:
        return found
    if isinstance(saver, AsyncSqliteSaver):
        made = await _sqlite_store(saver)
    elif is_postgres(saver):
        made = await _postgres_store(cast("AsyncPostgresSaver", saver))
    else:
        return None
    return _STORES.setdefault(saver, made)


async def _sqlite_store(saver: AsyncSqliteSaver) -> BaseStore:
    """LangGraph's SQLite store on the checkpointer's connection. Its tables are made in
    one transaction that takes the write lock first (`BEGIN IMMEDIATE`), where LangGraph's
    own `setup` would make them statement by statement, which two processes cannot do at
    once."""
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    store = AsyncSqliteStore(saver.conn)
    store.lock = saver.lock  # in turn with the checkpointer's queries on the connection
    conn = saver.conn
    async with saver.lock:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY)"
            )
            async with conn.execute("SELECT max(v) FROM store_migrations") as cursor:
                row = await cursor.fetchone()
            done = -1 if row is None or row[0] is None else int(row[0])
            for version in range(done + 1, len(store.MIGRATIONS)):
                await conn.execute(store.MIGRATIONS[version])
                await conn.execute("INSERT INTO store_migrations (v) VALUES (?)", (version,))
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
    await store.setup()  # finds its tables made: it readies the connection for its queries
    return store


async def _postgres_store(saver: AsyncPostgresSaver) -> BaseStore:
    """LangGraph's PostgreSQL store on the checkpointer's pool, its tables made by one
    process at a time (an advisory lock, tried in a loop as the checkpointer's are)."""
    from langgraph.store.postgres.aio import AsyncPostgresStore

    async with postgres_connection(saver) as conn:
        deadline = time.monotonic() + _SETUP_WAIT_S
        while True:
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS got", (_PG_STORE_SETUP_LOCK,)
            )
            row = await cursor.fetchone()
            if row and row["got"]:
                break
            if time.monotonic() > deadline:
                raise StoreError(
                    "the run store's tool call records are being set up by "
                    "another process; try again"
                )
            await asyncio.sleep(random.uniform(0.02, 0.1))
        try:
            await AsyncPostgresStore(conn).setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_STORE_SETUP_LOCK,))
    return AsyncPostgresStore(saver.conn)
