"""One runner per run: a lease on a thread, stored beside its runs.

`hold_run(saver, thread_id)` takes the lease in the store's own database (the table
`agentic_loop_leases`, in the same SQLite file or PostgreSQL database as the runs, made
when first needed) or refuses with `RunBusy`, naming who holds it and since when. Taking
it is one statement that only succeeds on a free or expired lease, so of two processes
racing for one thread exactly one wins. While held it is renewed every `RENEW_SECONDS`;
it is deleted when the `async with` ends, however it ends.

A holder that dies without deleting it (SIGKILL, a power cut) leaves a lease that expires
`LEASE_SECONDS` after its last renewal, on any machine. On Linux a dead holder is also
seen at once by a process of the same machine (same boot and process namespace): its pid
is gone, or belongs to a process started later. So a run killed on this machine can be
resumed straight away, and one killed elsewhere within `LEASE_SECONDS`.

A holder that stops renewing while alive (it was suspended, or cut off from the database)
may find its lease taken by another process when it carries on; one that cannot renew for
as long as a lease lasts must assume so. Either way its held work is cancelled and the
`async with` raises `LeaseLost`: two processes never knowingly run one thread, though the
old one may store what it was finishing at that moment (a lease has no fencing token that
the checkpointer could check).

The times come from the database for PostgreSQL (its clock is the one all machines share)
and from this machine for SQLite (a file on a local disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.runs.store import (
    LEASE_TABLE,
    StoreError,
    is_locked,
    is_postgres,
    locked_message,
    postgres_connection,
)

if TYPE_CHECKING:
    import aiosqlite
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

logger = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
"""How long a lease lasts without renewal: how long after its runner died a run started on
another machine can be taken over (at once on the runner's own machine, on Linux)."""
RENEW_SECONDS = LEASE_SECONDS / 3
"""How often a held lease is renewed: two renewals may fail before it expires."""
TAKE_WAIT_S = 5.0
"""How long taking a lease in a SQLite store waits for another process's write to end: a
write lock held longer means the store is busy, and the run is refused, naming the runs
in progress whose runners may hold it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lease."""

    thread_id: str
    token: str
    """Unique to one holding, so that only its holder renews or frees it."""
    pid: int
    host: str
    since: datetime
    """When the lease was taken, in UTC."""
    process: str | None
    """`boot id:pid namespace:pid:start time`, from which a process of the same machine
    tells whether the holder still runs; None where /proc does not say."""

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since:%Y-%m-%d %H:%M:%S} UTC"


class RunBusy(StoreError):
    """The run is being run by another process (or by another task of this one)."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        super().__init__(
            f"run {holder.thread_id!r} is being run by {holder.describe()}; wait for it to "
            "end, or stop that process"
        )


class LeaseLost(StoreError):
    """The lease ran out while held (the holder was suspended, or could not reach the
    store) and another process took it: the held work was cancelled."""


@asynccontextmanager
async def hold_run(
    saver: BaseCheckpointSaver[Any], thread_id: str, *, lease_seconds: float = LEASE_SECONDS
) -> AsyncIterator[Holder]:
    """Hold the lease on `thread_id` in `saver`'s store (one from `storage.open_store`) for
    the length of the `async with`, or raise `RunBusy` at once. Enter it in the task that
    does the work: if the lease is lost, that task is cancelled and `LeaseLost` raised.

    An `InMemorySaver` is seen by this process alone: nothing is stored, and keeping to
    one run of a thread at a time is the caller's part."""
    me = _me(thread_id)
    if isinstance(saver, InMemorySaver):
        yield me
        return
    leases = _leases_of(saver)
    await _take(leases, me, lease_seconds)
    task = asyncio.current_task()
    stop = asyncio.Event()
    lost: list[Holder | None] = []

    def lose(taker: Holder | None) -> None:
        lost.append(taker)
        if task is not None and not stop.is_set():
            task.cancel()

    renewal = asyncio.create_task(_renew(leases, me, lease_seconds, stop, lose))
    try:
        yield me
    except asyncio.CancelledError:
        if lost and task is not None and task.uncancel() == 0:
            raise LeaseLost(_lost_message(me, lost[0])) from None
        raise
    except BaseException:
        if lost and task is not None and task.cancelling():
            task.uncancel()
        raise
    finally:
        stop.set()
        await renewal  # ends at once, or after the renewal under way
        if not lost:
            await _free(leases, me, lease_seconds)
    if lost:  # the work ended, or swallowed its cancellation, after the lease was lost
        if task is not None and task.cancelling():
            task.uncancel()
        raise LeaseLost(_lost_message(me, lost[0]))


async def current_holder(saver: BaseCheckpointSaver[Any], thread_id: str) -> Holder | None:
    """Who runs `thread_id` now, if anyone (an expired lease, or one whose holder is seen
    dead on this machine, holds nobody). Only reads: it works on a store opened read-only,
    with or without a lease table."""
    if isinstance(saver, InMemorySaver):
        return None
    try:
        holder = await _leases_of(saver).holder(thread_id)
    except Exception as exc:
        if _is_missing_table(exc):
            return None
        raise
    return None if holder is None or _has_died(holder) else holder


def _lost_message(me: Holder, taker: Holder | None) -> str:
    by = f" and {taker.describe()} took it" if taker else ""
    return (
        f"the lease on run {me.thread_id!r} ran out while this process ran it{by}; this "
        "process stopped running it"
    )


async def _take(leases: _Leases, me: Holder, seconds: float) -> None:
    dead = ""
    for _ in range(5):
        try:
            taken = await leases.take(me, seconds, dead_token=dead)
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or not isinstance(leases, _SqliteLeases):
                raise
            raise await _locked(leases, me) from None
        if taken:
            return
        holder = await leases.holder(me.thread_id)
        if holder is None:
            continue  # freed, or expired, in between: try again
        if not _has_died(holder):
            raise RunBusy(holder)
        dead = holder.token  # taken over on the next try, by one process only
    raise StoreError(f"could not take the lease on run {me.thread_id!r}; try again")


async def _locked(leases: _SqliteLeases, me: Holder) -> StoreError:
    """The store stayed locked while `me` waited to take a lease: one line naming the
    store and the runners seen in it, one of which may hold the lock (none if the lock
    keeps the leases from being read, or no run holds one)."""
    where, running = await leases.where(), []
    with suppress(sqlite3.Error):
        # The lock was held for TAKE_WAIT_S just now: a read it blocks is not waited for.
        running = [h for h in await leases.holders(wait_s=0.1) if not _has_died(h)]
    suspects = [
        f"the runner of run {holder.thread_id!r}, {holder.describe()}"
        for holder in running
        if holder.token != me.token
    ]
    return StoreError(locked_message(where, TAKE_WAIT_S, suspects[:3]))


async def _renew(
    leases: _Leases,
    me: Holder,
    seconds: float,
    stop: asyncio.Event,
    lose: Callable[[Holder | None], None],
) -> None:
    """Renew the lease every third of its length until `stop`; call `lose` if it was taken
    by another, or could not be renewed for as long as it lasts."""
    renewed = time.monotonic()
    while True:
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds / 3)
        if stop.is_set():
            return
        try:
            still_mine = await leases.renew(me, seconds)
        except Exception as exc:
            if time.monotonic() - renewed < seconds:
                logger.warning("could not renew the lease on run %r: %s", me.thread_id, exc)
                continue
            still_mine = False
        if not still_mine:
            taker = None
            with suppress(Exception):
                taker = await leases.holder(me.thread_id)
            logger.warning(_lost_message(me, taker))
            lose(taker)
            return
        renewed = time.monotonic()


async def _free(leases: _Leases, me: Holder, seconds: float) -> None:
    try:
        await leases.free(me)
    except Exception as exc:  # the store went away: the lease will expire by itself
        logger.warning(
            "could not free the lease on run %r (%s); it expires within %.0f s",
            me.thread_id,
            exc,
            seconds,
        )


# --- who we are, and whether a holder still runs ----------------------------------------------


def _me(thread_id: str) -> Holder:
    return Holder(
        thread_id=thread_id,
        token=uuid.uuid4().hex,
        pid=os.getpid(),
        host=socket.gethostname(),
        since=datetime.now(UTC),
        process=_process_key(os.getpid()),
    )


@cache
def _machine() -> str | None:
    """This boot of this machine and this process namespace: pids mean the same processes
    to everyone who shares them."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
        return f"{boot}:{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """Process `pid`'s state (`R`, `S`, `Z` for a zombie...) and start time (clock ticks
    since boot), or None if /proc does not show it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _process_key(pid: int) -> str | None:
    machine, stat = _machine(), _stat(pid)
    return f"{machine}:{pid}:{stat[1]}" if machine and stat else None


def _has_died(holder: Holder) -> bool:
    """Whether the holder is known to be dead: it ran on this machine, in this process
    namespace, and its pid is gone, a zombie, or another process's now."""
    machine = _machine()
    if not holder.process or not machine or not holder.process.startswith(f"{machine}:"):
        return False  # another machine's, or unknown: only expiry frees it
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process
    stat = _stat(holder.pid)
    if stat is None:
        return False  # hidden from us: only expiry frees it
    state, start = stat
    return state in ("Z", "X") or f"{machine}:{holder.pid}:{start}" != holder.process


# --- the lease table, per kind of store ---------------------------------------------------------


class _Leases:
    async def take(self, me: Holder, seconds: float, *, dead_token: str) -> bool:
        """Take the lease if it is free, expired or held by `dead_token`."""
        raise NotImplementedError

    async def renew(self, me: Holder, seconds: float) -> bool:
        """Push back the lease's expiry; False if it is no longer `me`'s."""
        raise NotImplementedError

    async def free(self, me: Holder) -> None:
        raise NotImplementedError

    async def holder(self, thread_id: str) -> Holder | None:
        """Who holds an unexpired lease on the thread."""
        raise NotImplementedError


def _leases_of(saver: BaseCheckpointSaver[Any]) -> _Leases:
    if isinstance(saver, AsyncSqliteSaver):
        return _SqliteLeases(saver)
    if is_postgres(saver):
        return _PostgresLeases(saver)  # type: ignore[arg-type]
    raise TypeError(
        f"runs are held in a SQLite or PostgreSQL store from open_store, not a {type(saver)}"
    )


def _is_missing_table(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "no such table" in str(exc)
    return type(exc).__name__ == "UndefinedTable"  # psycopg.errors.UndefinedTable


_COLUMNS = "thread_id, holder, pid, host, process, since, expires"


@asynccontextmanager
async def _waiting(conn: aiosqlite.Connection, seconds: float | None) -> AsyncIterator[None]:
    """Wait at most `seconds` (None: the connection's own busy timeout) for another
    process's lock, on `conn` for the length of the `async with`."""
    if seconds is None:
        yield
        return
    async with conn.execute("PRAGMA busy_timeout") as cursor:
        row = await cursor.fetchone()
    await conn.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")
    try:
        yield
    finally:
        if row is not None:
            await conn.execute(f"PRAGMA busy_timeout = {int(row[0])}")


class _SqliteLeases(_Leases):
    """On the saver's own connection, in turn with its queries (its lock), each change in
    a transaction of its own that takes the write lock first (`BEGIN IMMEDIATE`, which
    waits for another process's write as long as the connection's busy timeout, or
    `TAKE_WAIT_S` when taking a lease)."""

    def __init__(self, saver: AsyncSqliteSaver) -> None:
        self.saver = saver
        self.made = False

    async def _write(
        self, sql: str, params: tuple[Any, ...], *, wait_s: float | None = None
    ) -> int:
        conn = self.saver.conn
        async with self.saver.lock, _waiting(conn, wait_s):
            if not self.made:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (thread_id TEXT PRIMARY KEY, "
                    "holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, "
                    "process TEXT, since REAL NOT NULL, expires REAL NOT NULL)"
                )
                self.made = True
            await conn.execute("BEGIN IMMEDIATE")
            try:
                async with conn.execute(sql, params) as cursor:
                    changed = cursor.rowcount
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
            return changed

    async def take(self, me: Holder, seconds: float, *, dead_token: str) -> bool:
        now = time.time()
        changed = await self._write(
            f"INSERT INTO {LEASE_TABLE} AS lease ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (thread_id) DO UPDATE SET holder = excluded.holder, "
            "pid = excluded.pid, host = excluded.host, process = excluded.process, "
            "since = excluded.since, expires = excluded.expires "
            "WHERE lease.expires < ? OR lease.holder = ?",
            (me.thread_id, me.token, me.pid, me.host, me.process, now, now + seconds)
            + (now, dead_token),
            wait_s=TAKE_WAIT_S,
        )
        return changed == 1

    async def renew(self, me: Holder, seconds: float) -> bool:
        changed = await self._write(
            f"UPDATE {LEASE_TABLE} SET expires = ? WHERE thread_id = ? AND holder = ?",
            (time.time() + seconds, me.thread_id, me.token),
        )
        return changed == 1

    async def free(self, me: Holder) -> None:
        await self._write(
            f"DELETE FROM {LEASE_TABLE} WHERE thread_id = ? AND holder = ?",
            (me.thread_id, me.token),
        )

    async def holder(self, thread_id: str) -> Holder | None:
        async with self.saver.lock:
            async with self.saver.conn.execute(
                f"SELECT {_COLUMNS} FROM {LEASE_TABLE} WHERE thread_id = ? AND expires >= ?",
                (thread_id, time.time()),
            ) as cursor:
                row = await cursor.fetchone()
        return None if row is None else self._holder(row)

    async def holders(self, *, wait_s: float | None = None) -> list[Holder]:
        """Who holds an unexpired lease on any thread, the longest held first; a lock that
        keeps them from being read is waited for `wait_s` (None: the busy timeout)."""
        async with self.saver.lock, _waiting(self.saver.conn, wait_s):
            async with self.saver.conn.execute(
                f"SELECT {_COLUMNS} FROM {LEASE_TABLE} WHERE expires >= ? ORDER BY since",
                (time.time(),),
            ) as cursor:
                rows = await cursor.fetchall()
        return [self._holder(row) for row in rows]

    @staticmethod
    def _holder(row: Any) -> Holder:
        thread, token, pid, host, process, since, _ = row
        return Holder(
            thread_id=thread,
            token=token,
            pid=pid,
            host=host,
            since=datetime.fromtimestamp(since, UTC),
            process=process,
        )

    async def where(self) -> str:
        """The store's file."""
        async with self.saver.lock:
            async with self.saver.conn.execute("PRAGMA database_list") as cursor:
                rows = await cursor.fetchall()
        return next((str(row[2]) for row in rows if row[1] == "main" and row[2]), "the store")


class _PostgresLeases(_Leases):
    """On a connection of the saver's pool; every statement commits on its own
    (autocommit), and the database's clock says when a lease expires."""

    def __init__(self, saver: AsyncPostgresSaver) -> None:
        self.saver = saver
        self.made = False

    async def _write(self, sql: str, params: dict[str, Any]) -> int:
        import psycopg

        async with postgres_connection(self.saver) as conn:
            if not self.made:
                try:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (thread_id TEXT PRIMARY "
                        "KEY, holder TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, "
                        "process TEXT, since TIMESTAMPTZ NOT NULL, expires TIMESTAMPTZ NOT NULL)"
                    )
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                    pass  # another process made it at the same moment
                self.made = True
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def take(self, me: Holder, seconds: float, *, dead_token: str) -> bool:
        changed = await self._write(
            f"INSERT INTO {LEASE_TABLE} AS lease ({_COLUMNS}) VALUES (%(thread_id)s, "
            "%(token)s, %(pid)s, %(host)s, %(process)s, clock_timestamp(), "
            "clock_timestamp() + make_interval(secs => %(seconds)s)) "
            "ON CONFLICT (thread_id) DO UPDATE SET holder = excluded.holder, "
            "pid = excluded.pid, host = excluded.host, process = excluded.process, "
            "since = excluded.since, expires = excluded.expires "
            "WHERE lease.expires < clock_timestamp() OR lease.holder = %(dead)s",
            {
                "thread_id": me.thread_id,
                "token": me.token,
                "pid": me.pid,
                "host": me.host,
                "process": me.process,
                "seconds": seconds,
                "dead": dead_token,
            },
        )
        return changed == 1

    async def renew(self, me: Holder, seconds: float) -> bool:
        changed = await self._write(
            f"UPDATE {LEASE_TABLE} SET expires = clock_timestamp() + make_interval(secs => "
            "%(seconds)s) WHERE thread_id = %(thread_id)s AND holder = %(token)s",
            {"seconds": seconds, "thread_id": me.thread_id, "token": me.token},
        )
        return changed == 1

    async def free(self, me: Holder) -> None:
        await self._write(
            f"DELETE FROM {LEASE_TABLE} WHERE thread_id = %(thread_id)s AND holder = %(token)s",
            {"thread_id": me.thread_id, "token": me.token},
        )

    async def holder(self, thread_id: str) -> Holder | None:
        async with postgres_connection(self.saver) as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM {LEASE_TABLE} "
                "WHERE thread_id = %s AND expires >= clock_timestamp()",
                (thread_id,),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return Holder(
            thread_id=row["thread_id"],
            token=row["holder"],
            pid=row["pid"],
            host=row["host"],
            since=row["since"].astimezone(UTC),
            process=row["process"],
        )
