"""The run store on PostgreSQL, with a real server (tests/postgres.py): runs written, killed,
resumed from another process and read back; only the run's own types restored; every
reason a database cannot be used is one line; read-only opening creates nothing."""

from __future__ import annotations

import logging
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from conftest import ScriptedChatModel, plan_text
from postgres import PASSWORD, PostgresServer
from pydantic import BaseModel

from agentic_loop.core.state import AgenticResult
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import (
    PG_CONNECT_TIMEOUT_S,
    StoreError,
    UnreadableRun,
    describe_location,
    list_runs,
    load_run,
    open_store,
    run_serializer,
    store_location,
)

# --- what a --db value means: no server needed -----------------------------------------------


@pytest.mark.parametrize(
    ("value", "means"),
    [
        ("postgresql://u:p@db.example:5432/runs", "postgresql://u:p@db.example:5432/runs"),
        ("postgres://db.example/runs", "postgres://db.example/runs"),
        ("PostgreSQL://db.example/runs", "PostgreSQL://db.example/runs"),
        ("runs.sqlite", Path("runs.sqlite")),
        ("~/runs.sqlite", Path.home() / "runs.sqlite"),
        ("C:\\runs\\runs.sqlite", Path("C:\\runs\\runs.sqlite")),
        ("a:b.sqlite", Path("a:b.sqlite")),
        (Path("~/x.sqlite"), Path.home() / "x.sqlite"),
    ],
)
def test_store_location_keeps_urls_and_makes_paths(value: str | Path, means: str | Path) -> None:
    assert store_location(value) == means


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("mysql://db.example/runs", "mysql:// is not a run store agentic-loop can use"),
        ("sqlite:///tmp/runs.sqlite", "pass the file's path itself"),
        ("file:///tmp/runs.sqlite", "pass the file's path itself"),
        ("  ", "the run store's location is empty"),
    ],
)
def test_store_location_refuses_other_urls_in_one_line(value: str, says: str) -> None:
    with pytest.raises(StoreError, match=says) as caught:
        store_location(value)
    assert "\n" not in str(caught.value)


def test_store_location_reads_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTIC_LOOP_DB", "postgresql://db.example/runs")
    assert store_location(None) == "postgresql://db.example/runs"
    monkeypatch.setenv("AGENTIC_LOOP_DB", "~/mine.sqlite")
    assert store_location(None) == Path.home() / "mine.sqlite"
    monkeypatch.setenv("AGENTIC_LOOP_DB", "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store_location(None) == tmp_path / "agentic-loop" / "runs.sqlite"
    assert store_location("other.sqlite") == Path("other.sqlite")  # --db beats the variable


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("postgresql://me:s3cr%40t@db:5432/runs", "postgresql://me:***@db:5432/runs"),
        ("postgresql://me@db/runs", "postgresql://me@db/runs"),
        (
            "postgresql://db/runs?user=me&password=s3cret",
            "postgresql://db/runs?user=me&password=***",
        ),
        ("postgresql://me:p@[::1", "postgresql://me:***@[::1"),
        (Path("/tmp/runs.sqlite"), "/tmp/runs.sqlite"),
    ],
)
def test_describe_location_masks_the_password(location: str | Path, shown: str) -> None:
    assert describe_location(location) == shown


# --- runs on PostgreSQL ---------------------------------------------------------------------


# Its own fake, not tests/model.py's: a child process runs it, without tests/ on its path.
KILLED_MID_RUN = """
import asyncio, os, signal, sys
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from agentic_loop import run_agentic_loop
from agentic_loop.runs.store import open_store

class Model(FakeMessagesListChatModel):
    def _generate(self, messages, *args, **kwargs):
        if "Step 3/3" in messages[-1].text:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-run, as a crash or `kill -9` would
        return super()._generate(messages, *args, **kwargs)

async def main():
    async with open_store(sys.argv[1]) as saver:
        model = Model(responses=[AIMessage("1. A\\n2. B\\n3. C"), AIMessage("did A"),
                                 AIMessage("did B")])
        await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="killed")

asyncio.run(main())
"""


async def test_a_run_killed_in_one_process_resumes_in_another(postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_RUN, postgres_url], capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr
    model = ScriptedChatModel(script=["did C"])
    async with open_store(postgres_url) as saver:
        stored = await load_run(saver, "killed")
        assert stored is not None and stored.status == "interrupted"
        assert [s.result for s in stored.steps] == ["did A", "did B"]
        result = await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="killed")
    assert [s.result for s in result.steps] == ["did A", "did B", "did C"]
    assert len(model.prompts) == 1 and "Step 3/3: C" in model.prompts[0]


async def test_runs_are_listed_newest_first_and_read_from_a_read_only_opening(
    postgres_url: str,
) -> None:
    async with open_store(postgres_url) as saver:
        for thread in ["older", "newer"]:
            model = ScriptedChatModel(script=[plan_text("A"), "did A"])
            await run_agentic_loop(thread, model=model, checkpointer=saver, thread_id=thread)
    async with open_store(postgres_url, read_only=True) as saver:
        listed = await list_runs(saver)
        assert await load_run(saver, "nope") is None
    assert [(r.thread_id, r.task, r.status) for r in listed] == [
        ("newer", "newer", "completed"),
        ("older", "older", "completed"),
    ]
    assert isinstance(listed[0].result, AgenticResult)


async def test_an_empty_store_lists_no_runs(postgres_url: str) -> None:
    async with open_store(postgres_url) as saver:
        assert await list_runs(saver) == []
        assert await load_run(saver, "nope") is None


async def test_processes_setting_up_one_new_database_at_once_all_succeed(
    postgres_url: str,
) -> None:
    script = textwrap.dedent("""
        import asyncio, sys
        from agentic_loop.runs.store import open_store
        async def main():
            async with open_store(sys.argv[1]):
                pass
        asyncio.run(main())
    """)
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", script, postgres_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in openers]
    assert [code for code, _ in results] == [0] * 6, results
    async with open_store(postgres_url, read_only=True) as saver:
        assert await list_runs(saver) == []


# --- only the run's own types ---------------------------------------------------------------


class Intruder(BaseModel):
    """A type outside `agentic_loop.core.state.STORED_TYPES`."""

    steps: list[str] = ["rm -rf /"]


def spoil_the_plan(url: str, thread: str, kind: str, blob: bytes) -> None:
    """Replace the plan the thread's latest checkpoint holds (a blob of its own)."""
    with psycopg.connect(url, autocommit=True) as conn:
        (version,) = conn.execute(
            "SELECT checkpoint -> 'channel_versions' ->> 'plan' FROM checkpoints "
            "WHERE thread_id = %s AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
            (thread,),
        ).fetchone()
        changed = conn.execute(
            "UPDATE checkpoint_blobs SET type = %s, blob = %s "
            "WHERE thread_id = %s AND channel = 'plan' AND version = %s",
            (kind, blob, thread, version),
        ).rowcount
    assert changed == 1


@pytest.mark.parametrize(
    ("spoiler", "says"),
    [
        ("foreign type", "its plan is stored as dict, not Plan (written by"),
        ("pickled", "Unknown serialization type: pickle"),
    ],
)
async def test_only_the_runs_own_types_are_restored(
    postgres_url: str, spoiler: str, says: str, caplog
) -> None:
    async with open_store(postgres_url) as saver:
        for thread in ["kept", "spoiled"]:
            model = ScriptedChatModel(script=[plan_text("A"), "did A"])
            await run_agentic_loop("T", model=model, checkpointer=saver, thread_id=thread)
        plan = (await load_run(saver, "spoiled")).plan  # type: ignore[union-attr]
    assert plan == ["A"]
    if spoiler == "foreign type":
        spoil_the_plan(postgres_url, "spoiled", *run_serializer().dumps_typed(Intruder()))
    else:
        spoil_the_plan(postgres_url, "spoiled", "pickle", pickle.dumps(Intruder()))
    with caplog.at_level(logging.WARNING):
        async with open_store(postgres_url, read_only=True) as saver:
            with pytest.raises(UnreadableRun, match="run 'spoiled' cannot be read") as caught:
                await load_run(saver, "spoiled")
            listed = {run.thread_id: run.status for run in await list_runs(saver)}
    assert says in str(caught.value)
    assert listed == {"kept": "completed", "spoiled": "unreadable"}
    assert not [r for r in caplog.records if "unregistered" in r.getMessage()]


# --- databases that cannot be used: one line each -------------------------------------------


async def refusal(location: str, *, read_only: bool = False) -> str:
    with pytest.raises(StoreError) as caught:
        async with open_store(location, read_only=read_only):
            pass
    message = str(caught.value)
    assert "\n" not in message and PASSWORD not in message
    return message


async def test_a_server_that_is_not_running_is_one_line(
    postgres_server: PostgresServer,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/runs"
    assert await refusal(url) == (
        f"cannot reach the run store at postgresql://postgres:***@127.0.0.1:{port}/runs: "
        f"127.0.0.1:{port} does not answer (Connection refused); check that the PostgreSQL "
        "server runs there and the URL's host and port"
    )


async def test_a_server_that_never_answers_is_given_up_on_in_seconds() -> None:
    """A server that takes the connection and says nothing (hung, or behind a firewall
    that swallows packets) is given up on after PG_CONNECT_TIMEOUT_S, not the pool's 30 s."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        port = mute.getsockname()[1]
        started = time.monotonic()
        message = await refusal(f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/runs")
        took = time.monotonic() - started
    assert f"127.0.0.1:{port} does not answer" in message
    assert "timeout" in message
    assert took < PG_CONNECT_TIMEOUT_S + 3


async def test_a_refused_login_is_one_line(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(password="wrong")
    assert await refusal(url) == (
        f"the PostgreSQL server at 127.0.0.1:{postgres_server.port} refused the login "
        '(password authentication failed for user "postgres"); check the user and password '
        "in the URL"
    )


async def test_a_missing_database_is_one_line(postgres_server: PostgresServer) -> None:
    assert await refusal(postgres_server.url("nowhere"), read_only=True) == (
        f"there is no database 'nowhere' on the PostgreSQL server at "
        f"127.0.0.1:{postgres_server.port}; create it (createdb nowhere) or name another in "
        "the URL"
    )


@pytest.mark.parametrize("read_only", [False, True])
async def test_another_programs_database_is_refused_and_left_alone(
    postgres_url: str, read_only: bool
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    shown = describe_location(postgres_url)
    assert await refusal(postgres_url, read_only=read_only) == (
        f"{shown} is not a run store (its tables: notes); pass an empty database or one "
        "that holds runs with --db"
    )
    assert tables(postgres_url) == ["notes"]


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


async def test_reading_an_empty_database_creates_nothing(postgres_url: str) -> None:
    assert await refusal(postgres_url, read_only=True) == (
        f"no run store at {describe_location(postgres_url)}; `agentic-loop run` makes one, "
        "or pass --db"
    )
    assert tables(postgres_url) == []


async def test_a_read_only_opening_cannot_write(postgres_url: str) -> None:
    async with open_store(postgres_url):
        pass
    made = tables(postgres_url)
    assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes"} <= set(made)
    async with open_store(postgres_url, read_only=True) as saver:
        model = ScriptedChatModel(script=[plan_text("A"), "did A"])
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="t")
    assert tables(postgres_url) == made
    async with open_store(postgres_url, read_only=True) as saver:
        assert await list_runs(saver) == []


async def test_a_server_lost_while_the_store_is_open_is_a_store_error(
    postgres_url: str,
) -> None:
    async with open_store(postgres_url):
        pass
    with pytest.raises(StoreError, match="lost the run store postgresql://postgres:\\*\\*\\*@"):
        async with open_store(postgres_url) as saver:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            await list_runs(saver)
