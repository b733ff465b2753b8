"""Stores that cannot be used as they are, with real files: a damaged page, another
program's database, a run whose checkpoint cannot be read, and a new store that several
processes create at once. Each problem is one line on stderr and exit 2; a refused file is
left as it was."""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from ollama_server import OllamaTestServer, plan_or_step
from pydantic import BaseModel

from agentic_loop.runs.store import StoreError, list_runs, load_run, open_store, run_serializer

pytestmark = pytest.mark.integration

TASKS = {"first": "Find a train to Lyon", "second": "Book a hotel near the station"}


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer(plan_or_step(["Look it up", "Pick one"])) as running:
        yield running


@pytest.fixture(scope="module")
def made_store(server: OllamaTestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store the CLI made: two finished runs, `first` and `second`."""
    db = tmp_path_factory.mktemp("made") / "runs.sqlite"
    for thread, task in TASKS.items():
        done = run_cli("run", task, "--db", str(db), "--thread", thread, host=server.url)
        assert done.returncode == 0, done.stderr
    return db


@pytest.fixture
def store(made_store: Path, tmp_path: Path) -> Path:
    """A copy of the made store, for one test to spoil."""
    db = tmp_path / "runs.sqlite"
    shutil.copyfile(made_store, db)
    return db


def damage_a_page(db: Path) -> None:
    """Overwrite the head of the page of the checkpoints' primary key index, as a disk or a
    copy that went wrong would."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_checkpoints_1'"
        ).fetchone()
    conn.close()
    with db.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * 100)


def snapshot(db: Path) -> tuple[bytes, int, int]:
    """The file's bytes, its mtime, and the size of its write-ahead log if it has one."""
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes(), db.stat().st_mtime_ns, wal.stat().st_size if wal.exists() else 0


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""
    return lines[0]


# --- a damaged page ------------------------------------------------------------------------

EVERY_COMMAND = [
    ("runs",),
    ("show", "first"),
    ("show", "first", "--history"),
    ("graph", "--thread", "first"),
    ("resume", "first"),
    ("run", "Plan a picnic", "--thread", "third"),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_a_damaged_store_is_one_line_and_nothing_is_written_to_it(
    command: tuple[str, ...], store: Path, server: OllamaTestServer
) -> None:
    damage_a_page(store)
    os.utime(store, ns=(1_000_000_000, 1_000_000_000))
    before, asked = snapshot(store), len(server.chat_requests())
    line = one_error_line(run_cli(*command, "--db", str(store), host=server.url))
    assert f"{store} is damaged (quick_check: " in line
    recovered = store.with_name("runs-recovered.sqlite")
    assert f"`sqlite3 {store} .recover | sqlite3 {recovered}`" in line
    assert f"pass --db {recovered}" in line
    assert snapshot(store) == before
    assert not store.with_name("runs.sqlite-journal").exists()
    assert len(server.chat_requests()) == asked  # no run started


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 command")
def test_the_recovery_the_message_names_brings_the_runs_back(
    store: Path, server: OllamaTestServer
) -> None:
    damage_a_page(store)
    recovered = store.with_name("runs-recovered.sqlite")

    def pipe(command: str) -> bool:
        dump = subprocess.run(["sqlite3", str(store), command], capture_output=True)
        load = subprocess.run(["sqlite3", str(recovered)], input=dump.stdout, capture_output=True)
        return dump.returncode == load.returncode == 0 and b"error" not in dump.stderr

    # Some builds of the sqlite3 command (Debian's 3.40) fail `.recover` on any file; the
    # message offers `.dump` for them.
    if not pipe(".recover"):
        recovered.unlink(missing_ok=True)
        assert pipe(".dump")
    listed = run_cli("runs", "--db", str(recovered), host=server.url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("completed") == 2


async def test_damage_found_while_the_store_is_open_is_a_store_error(store: Path) -> None:
    with pytest.raises(StoreError, match=r"is damaged \(database disk image is malformed\)"):
        async with open_store(store, read_only=True) as saver:
            damage_a_page(store)  # after the check on opening, before the first read
            await list_runs(saver)


# --- another program's database ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [("runs",), ("show", "x"), ("run", "Plan a picnic"), ("resume", "x")],
    ids=" ".join,
)
def test_another_programs_database_is_refused_byte_for_byte(
    command: tuple[str, ...], tmp_path: Path, server: OllamaTestServer
) -> None:
    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("CREATE TABLE tags (name TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()
    os.utime(foreign, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(foreign)
    line = one_error_line(run_cli(*command, "--db", str(foreign), host=server.url))
    assert line == (
        f"error: {foreign} is not a run store (its tables: notes, tags); "
        "pass another file with --db"
    )
    assert snapshot(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no journal, no WAL


# --- a run whose checkpoint cannot be read ------------------------------------------------


class Intruder(BaseModel):
    """A type outside `agentic_loop.core.state.STORED_TYPES`."""

    steps: list[str] = ["rm -rf /"]


def latest_checkpoint(conn: sqlite3.Connection, thread: str) -> tuple[str, str, bytes]:
    return conn.execute(
        "SELECT checkpoint_id, type, checkpoint FROM checkpoints "
        "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
        (thread,),
    ).fetchone()


def truncate_blob(conn: sqlite3.Connection, checkpoint_id: str, kind: str, blob: bytes) -> None:
    conn.execute(
        "UPDATE checkpoints SET checkpoint = substr(checkpoint, 1, length(checkpoint) / 2) "
        "WHERE checkpoint_id = ?",
        (checkpoint_id,),
    )


def hold_a_foreign_type(
    conn: sqlite3.Connection, checkpoint_id: str, kind: str, blob: bytes
) -> None:
    serde = run_serializer()
    checkpoint = serde.loads_typed((kind, blob))
    checkpoint["channel_values"]["plan"] = Intruder()
    kind, blob = serde.dumps_typed(checkpoint)
    conn.execute(
        "UPDATE checkpoints SET type = ?, checkpoint = ? WHERE checkpoint_id = ?",
        (kind, blob, checkpoint_id),
    )


def pickle_it(conn: sqlite3.Connection, checkpoint_id: str, kind: str, blob: bytes) -> None:
    checkpoint = run_serializer().loads_typed((kind, blob))
    conn.execute(
        "UPDATE checkpoints SET type = 'pickle', checkpoint = ? WHERE checkpoint_id = ?",
        (pickle.dumps(checkpoint), checkpoint_id),
    )


SPOILERS = {
    "truncated": (truncate_blob, "a stored checkpoint does not decode ("),
    "foreign type": (hold_a_foreign_type, "its plan is stored as dict, not Plan (written by"),
    "pickled": (pickle_it, "(Unknown serialization type: pickle)"),
}


@pytest.fixture(params=SPOILERS)
def spoiled(request: pytest.FixtureRequest, store: Path) -> tuple[Path, str]:
    """The store with the latest checkpoint of run `second` spoiled, and what the error
    says about it."""
    spoil, says = SPOILERS[request.param]
    with sqlite3.connect(store) as conn:
        spoil(conn, *latest_checkpoint(conn, "second"))
    conn.close()
    return store, says


def test_runs_lists_the_others_and_marks_the_unreadable_one(
    spoiled: tuple[Path, str], server: OllamaTestServer
) -> None:
    db, _ = spoiled
    done = run_cli("runs", "--db", str(db), host=server.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nor a warning from LangGraph's serializer
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if "│ " in line}
    assert "unreadable" in rows["second"]
    assert "completed" in rows["first"]


@pytest.mark.parametrize(
    "command",
    [
        ("show", "second"),
        ("show", "second", "--history"),
        ("graph", "--thread", "second"),
        ("resume", "second"),
    ],
    ids=" ".join,
)
def test_reading_the_unreadable_run_is_one_line(
    command: tuple[str, ...], spoiled: tuple[Path, str], server: OllamaTestServer
) -> None:
    db, says = spoiled
    line = one_error_line(run_cli(*command, "--db", str(db), host=server.url))
    assert line.startswith("error: run 'second' cannot be read: ")
    assert says in line
    shown = run_cli("show", "first", "--db", str(db), host=server.url)
    assert shown.returncode == 0, shown.stderr  # the store's other runs still read


async def test_load_run_raises_and_list_runs_goes_on(spoiled: tuple[Path, str]) -> None:
    db, says = spoiled
    async with open_store(db, read_only=True) as saver:
        with pytest.raises(StoreError, match="run 'second' cannot be read"):
            await load_run(saver, "second")
        listed = {run.thread_id: run.status for run in await list_runs(saver)}
    assert listed == {"first": "completed", "second": "unreadable"}


# --- several processes creating one store --------------------------------------------------

# Its own fake, not tests/model.py's: a child process runs it, without tests/ on its path.
CREATOR = """
import asyncio, sys
from pathlib import Path
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from agentic_loop import run_agentic_loop
from agentic_loop.runs.store import open_store

async def run_one(db):
    async with open_store(Path(db)) as saver:
        model = FakeMessagesListChatModel(
            responses=[AIMessage("1. Say hello"), AIMessage("Hello."), AIMessage("Done.")]
        )
        await run_agentic_loop("Greet", model=model, checkpointer=saver, thread_id=sys.argv[1])

print("ready", flush=True)
for line in sys.stdin:  # each line: a store to create, all processes at once
    try:
        asyncio.run(run_one(line.strip()))
        print("stored", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".replace("\\n", " "), flush=True)
"""


def test_processes_creating_one_new_store_at_once_all_store_their_runs(tmp_path: Path) -> None:
    """Eight processes start a run each on a store that does not exist yet, twenty times.
    Before, some trials failed with `database is locked`, or with a store seen half made
    (`its tables: checkpoints`)."""
    count, trials = 8, 20
    creators = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, f"t{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    try:
        assert all(p.stdout and p.stdout.readline().strip() == "ready" for p in creators)
        for trial in range(trials):
            db = tmp_path / f"runs-{trial}.sqlite"
            for creator in creators:  # the line goes to all before any is flushed
                assert creator.stdin is not None
                creator.stdin.write(f"{db}\n")
            for creator in creators:
                assert creator.stdin is not None
                creator.stdin.flush()
            said = [p.stdout.readline().strip() for p in creators if p.stdout]
            assert said == ["stored"] * count, f"trial {trial}: {said}"
            stored = asyncio.run(_statuses(db))
            assert stored == {f"t{i}": "completed" for i in range(count)}
    finally:
        for creator in creators:
            if creator.stdin:
                creator.stdin.close()
            creator.wait(timeout=30)


async def _statuses(db: Path) -> dict[str, str]:
    async with open_store(db, read_only=True) as saver:
        return {run.thread_id: run.status for run in await list_runs(saver)}


async def test_a_store_seen_half_made_is_finished_by_a_writer_and_refused_by_a_reader(
    tmp_path: Path,
) -> None:
    """What a process sees while another creates the store: `checkpoints` made, `writes`
    not yet."""
    db = tmp_path / "runs.sqlite"
    async with open_store(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE writes")
    conn.close()
    with pytest.raises(StoreError, match=r"is not a run store \(its tables: checkpoints\)"):
        async with open_store(db, read_only=True):
            pass
    async with open_store(db) as saver:
        assert await list_runs(saver) == []
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert {"checkpoints", "writes"} <= tables
