"""Stored runs: the run store (a SQLite file or a PostgreSQL database), and reading runs
back from it.

One value says where the store is, a path or a `postgresql://` URL: `store_location` reads
it (from `--db`, `AGENTIC_LOOP_DB` or the default), `open_store` opens it, and everything
else takes the opened checkpointer.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shlex
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from agentic_loop.core import older_runs
from agentic_loop.core.state import STORED_TYPES

if TYPE_CHECKING:
    import aiosqlite
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import DictRow

DB_ENV = "AGENTIC_LOOP_DB"
LEASE_TABLE = "agentic_loop_leases"
"""The table beside the runs where `leases.hold_run` records who runs which run."""
POSTGRES_SCHEMES = ("postgresql", "postgres")
PG_CONNECT_TIMEOUT_S = 5.0
"""How long connecting to a PostgreSQL store may take before it counts as unreachable."""
PG_POOL_WAIT_S = 10.0
"""How long a query waits for a connection of the pool (the server went away, say)."""
_PG_POOL_SIZE = 4
_PG_RUN_TABLES = {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"}
_PG_SETUP_LOCK = 0x6167656E7469636C  # pg_try_advisory_lock key: b"agenticl"
_SQLITE_HEADER = b"SQLite format 3\x00"
_RUN_TABLES = {"checkpoints", "writes"}
_BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another process's write to end before it gives up."""
# SQLite's primary result codes (an extended code keeps one in its low byte).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


ALLOWED_TYPES = older_runs.allow_list(STORED_TYPES)
"""The loop's types, as a checkpointer's allow-list names them (`with_allowlist`), the
names runs stored by earlier versions gave them included."""


def run_serializer() -> JsonPlusSerializer:
    """A serializer that restores the run's own types (besides the messages and LangGraph
    types LangGraph deems safe) and refuses others, whether or not
    `LANGGRAPH_STRICT_MSGPACK` is set, with no "Deserializing unregistered type" warning.
    Stored bytes that do not decode raise `UnreadableRun`."""
    return _RunSerializer(allowed_msgpack_modules=ALLOWED_TYPES)


def checkpointer() -> InMemorySaver:
    """An in-memory checkpointer for the loop that restores its types without warnings.

    Another saver takes the same serializer: `SqliteSaver(conn, serde=run_serializer())`.
    A parent graph whose state holds types of its own allows them too:
    `checkpointer().with_allowlist([(cls.__module__, cls.__name__)])`."""
    return InMemorySaver(serde=run_serializer())


class StoreError(Exception):
    """The run store cannot be used; the message says why and what to do."""


class UnreadableRun(StoreError):
    """A stored run's checkpoint cannot be read back: its bytes do not decode, or it holds
    values that are not of the run's types (a type outside the allow-list is restored as
    its raw fields). The store's other runs can still be read."""


class _RunSerializer(JsonPlusSerializer):
    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        try:
            return super().loads_typed(data)
        except (ValueError, TypeError, NotImplementedError) as exc:  # truncated, unknown type
            raise UnreadableRun(f"a stored checkpoint does not decode ({exc})") from exc


def default_db_path() -> Path:
    """`AGENTIC_LOOP_DB`, else `$XDG_DATA_HOME/agentic-loop/runs.sqlite` (`~/.local/share/...`).
    Prefer `store_location()`, which also takes a `postgresql://` URL."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    return _default_sqlite_path()


def _default_sqlite_path() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "agentic-loop" / "runs.sqlite"


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def store_location(value: str | Path | None = None) -> str | Path:
    """Where the run store is, from a `--db` value: a `postgresql://` (or `postgres://`) URL
    stays a str; anything else is the `Path` of a SQLite file (`~` expanded). None means
    `AGENTIC_LOOP_DB`, else `$XDG_DATA_HOME/agentic-loop/runs.sqlite`. A URL of another
    scheme (`mysql://`, `sqlite://`) is a `StoreError`; a path with a colon (`C:\\runs`,
    `a:b.sqlite`) is still a path."""
    if value is None:
        value = os.environ.get(DB_ENV) or None
        if value is None:
            return _default_sqlite_path()
    if isinstance(value, Path):
        return value.expanduser()
    if not value.strip():
        raise StoreError(
            "the run store's location is empty; pass a SQLite file path or a "
            "postgresql:// URL with --db or AGENTIC_LOOP_DB"
        )
    if match := _URL_SCHEME.match(value):
        scheme = match[1].lower()
        if scheme in POSTGRES_SCHEMES:
            return value
        if scheme in ("sqlite", "file"):
            raise StoreError(
                f"{scheme}:// URLs are not taken for a SQLite store; pass the file's path "
                "itself with --db or AGENTIC_LOOP_DB"
            )
        raise StoreError(
            f"{scheme}:// is not a run store agentic-loop can use; pass a SQLite file path "
            "or a postgresql:// URL with --db or AGENTIC_LOOP_DB"
        )
    return Path(value).expanduser()


_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def describe_location(location: str | Path) -> str:
    """How messages name a store: its path, or its URL with the password masked."""
    if isinstance(location, Path):
        return str(location)
    masked = _URL_PASSWORD.sub(r"\1:***@", location)
    return _QUERY_PASSWORD.sub(r"\1***", masked)


@asynccontextmanager
async def open_store(
    location: str | Path, *, read_only: bool = False, create: bool = True
) -> AsyncIterator[AsyncSqliteSaver | AsyncPostgresSaver]:
    """The checkpointer for the store at `location` (see `store_location`; a str that is no
    URL is a path), with `run_serializer()`.

    A SQLite file is created if missing; a PostgreSQL database gets LangGraph's tables if
    it has none; without `create`, a missing store is a `StoreError` instead. `read_only`
    opens an existing store for reading only: nothing is created or written. Whatever
    keeps the store from being used (a folder, a file that is not SQLite, another
    program's database, a damaged file, another process's write lock held too long; a
    server that does not answer, a refused login, a missing database) is a one-line
    `StoreError` saying what to do.
    """
    if isinstance(location, str):
        location = store_location(location)
    if isinstance(location, str):
        async with _open_postgres(location, read_only=read_only, create=create) as pg_saver:
            yield pg_saver
    else:
        async with _open_sqlite(location, read_only=read_only, create=create) as sqlite_saver:
            yield sqlite_saver


async def check_store(location: str | Path) -> None:
    """Refuse, as `open_store` would but creating and writing nothing, a store that cannot
    be used (see `open_store`). A store that is not there yet passes: `open_store` makes
    it. So a run can be refused for its store, then for its model or tools, before its
    store is made."""
    if isinstance(location, str):
        location = store_location(location)
    if isinstance(location, str):
        await _pg_check(location, read_only=False, set_up=False)
    else:
        await _check_sqlite(location, read_only=False)


def _no_store(where: str | Path) -> StoreError:
    return StoreError(f"no run store at {where}; `agentic-loop run` makes one, or pass --db")


@asynccontextmanager
async def _open_sqlite(
    path: Path, *, read_only: bool, create: bool = True
) -> AsyncIterator[AsyncSqliteSaver]:
    """The checkpointer for the SQLite file at `path`, created if missing (unless not
    `create`).

    Refuses, without touching it, a path that is a folder, a file that is not SQLite,
    another program's database, or a damaged store (SQLite's `quick_check`, about 1 ms a
    MB: 12 ms for 300 runs). `read_only` opens an existing store for reading only: nothing
    is created or written, not even the `-wal` and `-shm` files beside it, so it works on a
    read-only copy too (see `_read_only_uri`). Several processes may create the same new
    store at once. Damage found while the store is in use is a `StoreError` too, and so is
    a write lock that another process holds for longer than the 30 s waited for it.
    """
    at_rest = _file_state(path) if read_only and not _in_use(path) else None
    try:
        await _check_sqlite(path, read_only=read_only, create=create)
        async with _sqlite_saver(path, read_only=read_only) as saver:
            yield saver
    except StoreError as exc:
        # Read as immutable, the file has no locks: a run that started and ended meanwhile
        # may have written it under the reader, which then found what looked like damage.
        if at_rest is not None and _file_state(path) != at_rest and await _sound(path):
            raise StoreError(f"{path} changed while it was read; try again") from exc
        raise


def no_store_at(location: str | Path) -> bool:
    """Whether `location` (from `store_location`: a `Path` is SQLite's) names a SQLite store
    not made yet: no file, or an empty one (a process stopped as it made it; SQLite writes
    its header before anything is stored)."""
    if not isinstance(location, Path):
        return False
    return not location.exists() or (location.is_file() and location.stat().st_size == 0)


async def _check_sqlite(path: Path, *, read_only: bool, create: bool = True) -> None:
    """Refuse a folder, a file that is not SQLite, another program's database or a damaged
    store; and a missing store (or an empty file) when reading, or not to `create` it."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; pass a file path with --db")
    has_data = not no_store_at(path)
    if (read_only or not create) and not has_data:
        raise _no_store(path)
    if has_data:
        with path.open("rb") as file:
            if file.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                raise StoreError(f"{path} is not a SQLite database; pass another file with --db")
        await _check(path, read_only=read_only)


@asynccontextmanager
async def _sqlite_saver(path: Path, *, read_only: bool) -> AsyncIterator[AsyncSqliteSaver]:
    conn = await _connect(path, read_only=read_only)
    try:
        saver = AsyncSqliteSaver(conn, serde=run_serializer())
        if read_only:
            saver.is_setup = True  # setting up creates tables and switches the journal
        else:
            await _set_up(saver)
    except sqlite3.Error as exc:
        await conn.close()
        raise _store_error(path, exc) from exc
    try:
        yield saver
    except sqlite3.DatabaseError as exc:
        if _is_damage(exc) or is_locked(exc):
            raise _store_error(path, exc) from exc
        raise
    finally:
        await conn.close()


def _wal_files(path: Path) -> tuple[Path, Path]:
    return path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")


def _in_use(path: Path) -> bool:
    """Whether the store has its `-wal` and `-shm` files: a process has it open in WAL
    mode, or had and left them (a writer killed, or a reader that outlived the last
    writer); its last commits may be in the `-wal` alone."""
    wal, shm = _wal_files(path)
    return wal.exists() and shm.exists()


def _file_state(path: Path) -> tuple[object, ...]:
    """What changes when a process writes to the store's file or opens it."""
    wal, shm = _wal_files(path)
    try:
        stat = path.stat()
    except OSError:
        return ()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, wal.exists(), shm.exists()


def _read_only_uri(path: Path) -> str:
    """The URI that opens the store at `path` for reading only, creating nothing.

    SQLite reads a store in WAL mode through its `-wal` and `-shm` files and makes them
    when they are missing, even for a read-only connection, which then cannot remove them
    (and on a read-only copy cannot make them: "unable to open database file"). A store in
    use has them: it is read through them, under SQLite's locks, and sees the commits
    still in its `-wal`. A store without them is at rest (its last writer closed it and
    put every commit in the file): it is read as `immutable`, with no locks and no files
    beside it. A `-wal` without its `-shm`, which only a partial copy leaves, is not read.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return uri if _in_use(path) else f"{uri}&immutable=1"


async def _sound(path: Path) -> bool:
    """Whether the store passes the checks now."""
    try:
        await _check(path, read_only=True)
    except StoreError:
        return False
    return True


async def _check(path: Path, *, read_only: bool) -> None:
    """Refuse another program's database or a damaged store. The checks read over a
    connection of their own that cannot write: a file they refuse is left as it was, byte
    for byte, even one whose journal a writer's connection would roll back or apply. For
    a writer, they read under SQLite's locks, as another process may be creating the
    store at that moment."""
    conn = await _connect(path, read_only=True, locking=not read_only)
    try:
        await _check_tables(conn, path, read_only=read_only)
        await _check_pages(conn, path)
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc
    finally:
        await conn.close()


async def _connect(path: Path, *, read_only: bool, locking: bool = False) -> aiosqlite.Connection:
    """A connection to the store; `read_only` creates nothing (see `_read_only_uri`),
    unless `locking`: then it reads under SQLite's locks like any connection, and may make
    the `-wal` and `-shm` files."""
    import aiosqlite

    try:
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro" if locking else _read_only_uri(path)
            return await aiosqlite.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)
        path.parent.mkdir(parents=True, exist_ok=True)
        return await aiosqlite.connect(path, timeout=_BUSY_TIMEOUT_S)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the run store {path}: {exc}") from exc


async def _check_tables(conn: aiosqlite.Connection, path: Path, *, read_only: bool) -> None:
    """Refuse a database that holds something else than runs (another program's file).

    A writer also takes a file with none of the tables or some of them: a store that
    another process is creating shows one table before the other."""
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        tables = {row[0] async for row in cursor}
    if not _RUN_TABLES <= tables and (read_only or not tables <= _RUN_TABLES | {LEASE_TABLE}):
        found = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            f"{path} is not a run store (its tables: {found}); pass another file with --db"
        )


async def _check_pages(conn: aiosqlite.Connection, path: Path) -> None:
    """Refuse a store with a damaged page, before anything reads or writes it."""
    async with conn.execute("PRAGMA quick_check(1)") as cursor:
        row = await cursor.fetchone()
    if row is not None and row[0] != "ok":
        problem = " ".join(str(row[0]).replace("*** in database main ***", "").split())
        raise StoreError(_damage_message(path, f"quick_check: {problem}"))


async def _set_up(saver: AsyncSqliteSaver) -> None:
    """Create the tables, turn on WAL, and keep every commit without an fsync each.

    SQLite tells a process that switches the journal, or that turns a read into a write
    after another process wrote, that the database is locked at once, without waiting:
    several processes creating one store take turns here, as setting up is idempotent."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            await saver.setup()  # creates the tables and turns on WAL
            break
        except sqlite3.OperationalError as exc:
            if _result_code(exc) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(random.uniform(0.005, 0.05))
    # In WAL mode, synchronous=NORMAL keeps every commit when the process is killed;
    # only a power cut can lose the last few. It saves an fsync per checkpoint.
    await saver.conn.execute("PRAGMA synchronous=NORMAL")


def _result_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_damage(exc: sqlite3.Error) -> bool:
    return _result_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def is_locked(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock ("database is locked")."""
    return isinstance(exc, sqlite3.Error) and _result_code(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED)


def locked_message(where: str | Path, waited_s: float, suspects: list[str] | None = None) -> str:
    """A store that another process keeps locked: which, who may hold it (`suspects`, as
    far as known), and what to do."""
    held = f"held its write lock for over {waited_s:g} s"
    if suspects:
        return (
            f"the run store {where} is busy: another process has {held}, perhaps "
            f"{' or '.join(suspects)}; wait for it to finish, or stop it, then try again"
        )
    return (
        f"the run store {where} is locked by another process, which has {held}; wait for "
        "that process to finish, or stop it, then try again"
    )


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    if _is_damage(exc):
        return StoreError(_damage_message(path, str(exc)))
    if is_locked(exc):
        return StoreError(locked_message(path, _BUSY_TIMEOUT_S))
    return StoreError(f"cannot use the run store {path}: {exc}")


def _damage_message(path: Path, problem: str) -> str:
    recovered = path.with_name(f"{path.stem}-recovered{path.suffix or '.sqlite'}")
    return (
        f"{path} is damaged ({problem}); recover its runs with "
        f"`sqlite3 {shlex.quote(str(path))} .recover | sqlite3 {shlex.quote(str(recovered))}` "
        "(.dump where .recover fails) and pass --db "
        f"{shlex.quote(str(recovered))}, or start a new store with another --db"
    )


# --- PostgreSQL ------------------------------------------------------------------------------


@asynccontextmanager
async def _open_postgres(
    url: str, *, read_only: bool, create: bool = True
) -> AsyncIterator[AsyncPostgresSaver]:
    """The checkpointer for the PostgreSQL database at `url`, over a pool of connections.

    Connecting is tried once first, for at most `PG_CONNECT_TIMEOUT_S`, so that a server
    that does not answer, a refused login or a missing database is one line at once rather
    than the pool's retries. A database that has tables but not LangGraph's is refused.
    Setting up (creating the tables, LangGraph's migrations) is done by one process at a
    time. `read_only` creates nothing and opens every connection with
    `default_transaction_read_only`, so the server refuses any write; without `create`, a
    database with no tables is refused as no store.
    """
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg_pool import AsyncConnectionPool

    where = describe_location(url)
    kwargs = _pg_connect_kwargs(url, read_only=read_only)
    await _pg_check(url, read_only=read_only, create=create)
    pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=_PG_POOL_SIZE,
        kwargs=kwargs,
        timeout=PG_POOL_WAIT_S,
        open=False,
    )
    try:
        await pool.open(wait=True, timeout=PG_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        await pool.close()
        raise _pg_connect_error(url, exc) from None
    try:
        yield AsyncPostgresSaver(pool, serde=run_serializer())
    except psycopg.OperationalError as exc:  # the server went away, or a pool timeout
        raise StoreError(
            f"lost the run store {where}: {_pg_reason(exc)}; check that the PostgreSQL "
            "server runs, then resume"
        ) from exc
    finally:
        await pool.close()


async def _pg_check(url: str, *, read_only: bool, create: bool = True, set_up: bool = True) -> None:
    """Connect once, for at most `PG_CONNECT_TIMEOUT_S`, and check the database's tables;
    then set it up unless `read_only` or not `set_up` (which write nothing)."""
    import psycopg

    where = describe_location(url)
    kwargs = _pg_connect_kwargs(url, read_only=read_only or not set_up)
    try:
        conn = await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.Error as exc:
        raise _pg_connect_error(url, exc) from None
    try:
        await _pg_check_and_set_up(conn, where, read_only=read_only, create=create, set_up=set_up)
    except psycopg.Error as exc:
        raise StoreError(f"cannot use the run store {where}: {_pg_reason(exc)}") from None
    finally:
        await conn.close()


def _pg_connect_kwargs(url: str, *, read_only: bool) -> dict[str, Any]:
    """What langgraph-checkpoint-postgres needs of a connection (autocommit, no prepared
    statements, rows as dicts), a short connect timeout, and read-only transactions."""
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row

    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "connect_timeout": max(1, round(PG_CONNECT_TIMEOUT_S)),
    }
    if read_only:
        options = str(conninfo_to_dict(url).get("options") or "")
        kwargs["options"] = f"{options} -c default_transaction_read_only=on".strip()
    return kwargs


async def _pg_check_and_set_up(
    conn: psycopg.AsyncConnection[DictRow],
    where: str,
    *,
    read_only: bool,
    create: bool = True,
    set_up: bool = True,
) -> None:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    cursor = await conn.execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
    )
    tables = {row["tablename"] for row in await cursor.fetchall()}
    if (read_only or not create) and not tables:
        raise _no_store(where)
    writable = tables <= _PG_RUN_TABLES | {LEASE_TABLE}  # empty, or being set up
    if not _PG_RUN_TABLES <= tables and (read_only or not writable):
        raise StoreError(
            f"{where} is not a run store (its tables: {', '.join(sorted(tables))}); pass an "
            "empty database or one that holds runs with --db"
        )
    if read_only or not set_up or await _pg_migrations_done(conn, tables):
        return
    # Several processes may set up one new database at once: they take turns. A lock
    # tried in a loop, as a session waiting on one would hold back the migrations'
    # CREATE INDEX CONCURRENTLY of the session that has it.
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while not await _pg_try_lock(conn, _PG_SETUP_LOCK):
        if time.monotonic() > deadline:
            raise StoreError(f"{where} is being set up by another process; try again")
        await asyncio.sleep(random.uniform(0.02, 0.1))
    try:
        await AsyncPostgresSaver(conn).setup()
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_SETUP_LOCK,))


async def _pg_try_lock(conn: psycopg.AsyncConnection[DictRow], key: int) -> bool:
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,))
    row = await cursor.fetchone()
    return bool(row and row["got"])


async def _pg_migrations_done(conn: psycopg.AsyncConnection[DictRow], tables: set[str]) -> bool:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    if "checkpoint_migrations" not in tables:
        return False
    cursor = await conn.execute("SELECT max(v) AS v FROM checkpoint_migrations")
    row = await cursor.fetchone()
    return (
        row is not None
        and row["v"] is not None
        and row["v"] >= len(AsyncPostgresSaver.MIGRATIONS) - 1
    )


def _pg_reason(exc: BaseException) -> str:
    """libpq's reason, without its preamble: `Connection refused`, `password
    authentication failed for user "x"`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = text.rsplit(" failed: ", 1)[-1]
    return reason.removeprefix("FATAL:").strip()


_PG_LOGIN_REFUSED = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "no pg_hba.conf entry",
    "role ",
)


_PG_UNREACHABLE = (
    "connection refused",
    "timeout",
    "timed out",
    "resolve host",
    "translate host name",
    "unreachable",
    "no route to host",
    "no such file or directory",  # no server on the local socket
    "server closed the connection",
    "could not connect",
)


def _pg_connect_error(url: str, exc: BaseException) -> StoreError:
    """One line for a connection that failed: unreachable, login refused, no database."""
    from psycopg.conninfo import conninfo_to_dict

    where = describe_location(url)
    try:
        params = conninfo_to_dict(url)
    except Exception:
        return StoreError(f"{where} is not a PostgreSQL URL that works ({_pg_reason(exc)})")
    host = str(params.get("host") or "the local socket")
    server = f"{host}:{params.get('port') or 5432}"
    reason = _pg_reason(exc)
    lowered = reason.lower()
    if "database" in lowered and "does not exist" in lowered:
        name = params.get("dbname") or params.get("user") or ""
        return StoreError(
            f"there is no database {name!r} on the PostgreSQL server at {server}; create it "
            f"(createdb {name}) or name another in the URL"
        )
    if any(sign in lowered for sign in _PG_LOGIN_REFUSED):
        return StoreError(
            f"the PostgreSQL server at {server} refused the login ({reason}); check the user "
            "and password in the URL"
        )
    if any(sign in lowered for sign in _PG_UNREACHABLE):
        return StoreError(
            f"cannot reach the run store at {where}: {server} does not answer ({reason}); "
            "check that the PostgreSQL server runs there and the URL's host and port"
        )
    return StoreError(f"cannot connect to the run store at {where}: {reason}")


@asynccontextmanager
async def postgres_connection(
    saver: AsyncPostgresSaver,
) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
    """A connection of a PostgreSQL store for queries of our own: one from its pool, or its
    only connection, taken in turn with the saver's own queries."""
    from psycopg_pool import AsyncConnectionPool

    if isinstance(saver.conn, AsyncConnectionPool):
        async with saver.conn.connection() as conn:
            yield conn
    else:
        async with saver.lock:
            yield saver.conn


def is_postgres(saver: BaseCheckpointSaver[Any]) -> bool:
    """Whether `saver` is a PostgreSQL store's (without importing psycopg for one that is
    not)."""
    if isinstance(saver, AsyncSqliteSaver) or not type(saver).__module__.startswith(
        "langgraph.checkpoint.postgres"
    ):
        return False
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    return isinstance(saver, AsyncPostgresSaver)


def __getattr__(name: str) -> Any:
    # The run's readers moved to `records`; these names still import from here.
    if name in ("StoredRun", "load_run", "list_runs"):
        from agentic_loop.runs import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
