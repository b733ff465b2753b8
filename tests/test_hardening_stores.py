"""The run store under faults, as the fault trial of issue 20 met them, with real processes
and real stores: a refused run makes no store, and reading makes no file beside one; a
store that another process keeps locked is one line naming it; a PostgreSQL server lost
mid-run is one line, without the pool's retries; a read-only copy can be read."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import run_cli, skip_unless_ci, spawn_cli
from ollama_server import OllamaTestServer, step_of
from postgres import PASSWORD, PostgresServer, server_programs
from test_damaged_stores import damage_a_page, one_error_line
from test_parallel_kill import HeldFirstCalls, wait_for
from test_postgres_cli import ANSWER, answering, killed_at_step_2

from agentic_loop.runs.leases import TAKE_WAIT_S
from agentic_loop.runs.store import LEASE_TABLE, StoreError, open_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer(answering([HeldFirstCalls((), step_of)])) as running:
        yield running


@pytest.fixture(scope="module")
def made_store(server: OllamaTestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store the CLI made, at rest: one finished run, `first`."""
    db = tmp_path_factory.mktemp("made") / "runs.sqlite"
    done = run_cli("run", "Plan a beach day", "--db", str(db), "--thread", "first", host=server.url)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in db.parent.iterdir()) == ["runs.sqlite"]
    return db


@pytest.fixture
def store(made_store: Path, tmp_path: Path) -> Path:
    """A copy of the made store, alone in a folder of its own."""
    db = tmp_path / "store" / "runs.sqlite"
    db.parent.mkdir()
    shutil.copyfile(made_store, db)
    return db


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- A. refusals that left files ------------------------------------------------------------


REFUSALS = {
    "--tools": (["--tools", "no_such_module:TOOLS"], "--tools: no module no_such_module"),
    "--mcp": (["--mcp", "{servers}"], 'has neither "command" (stdio) nor "url"'),
    "--model": (["--model", "nowhere:model"], "unknown model 'nowhere:model'"),
    "OLLAMA_HOST": ([], "Ollama is not reachable at http://127.0.0.1:"),
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_run_makes_no_store_nor_its_folder(
    refusal: str, tmp_path: Path, server: OllamaTestServer
) -> None:
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"broken": {"args": ["serve"]}}}))
    flags, says = REFUSALS[refusal]
    flags = [flag.format(servers=servers) for flag in flags]
    env = {"OLLAMA_HOST": f"127.0.0.1:{closed_port()}"} if refusal == "OLLAMA_HOST" else {}
    db = tmp_path / "data" / "runs.sqlite"
    asked = len(server.chat_requests())

    line = one_error_line(
        run_cli("run", "Plan a picnic", "--db", str(db), *flags, host=server.url, env=env)
    )

    assert says in line
    assert files_in(tmp_path) == ["servers.json"]  # no store, no folder for it
    assert len(server.chat_requests()) == asked


READING = [
    ("runs",),
    ("show", "first"),
    ("show", "first", "--history"),
    ("graph", "--thread", "first"),
]


@pytest.mark.parametrize("command", [*READING, ("resume", "first")], ids=" ".join)
def test_a_missing_store_is_one_line_and_is_not_made(
    command: tuple[str, ...], tmp_path: Path, server: OllamaTestServer
) -> None:
    db = tmp_path / "runs.sqlite"
    line = one_error_line(run_cli(*command, "--db", str(db), host=server.url))
    assert line == f"error: no run store at {db}; `agentic-loop run` makes one, or pass --db"
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_reading_a_store_at_rest_makes_no_file_beside_it(
    command: tuple[str, ...], store: Path, server: OllamaTestServer
) -> None:
    done = run_cli(*command, "--db", str(store), host=server.url)
    assert done.returncode == 0, done.stderr
    assert "first" in done.stdout or "Plan a beach day" in done.stdout
    assert files_in(store.parent) == ["runs.sqlite"]  # no -wal, no -shm


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_reading_a_damaged_store_makes_no_file_beside_it(
    command: tuple[str, ...], store: Path, server: OllamaTestServer
) -> None:
    damage_a_page(store)
    before = store.read_bytes()
    line = one_error_line(run_cli(*command, "--db", str(store), host=server.url))
    assert f"{store} is damaged (quick_check: " in line
    assert files_in(store.parent) == ["runs.sqlite"]
    assert store.read_bytes() == before


# --- B. a store locked by another process ---------------------------------------------------


def run_while_locked(store: Path, server: OllamaTestServer) -> tuple[str, float]:
    """`agentic-loop run` while this process holds the store's write lock (`BEGIN
    EXCLUSIVE`); its one error line and how long it took."""
    asked = len(server.chat_requests())
    with closing(sqlite3.connect(store, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        done = run_cli(
            "run", "Plan a picnic", "--db", str(store), "--thread", "second", host=server.url
        )
        took = time.monotonic() - started
        locker.execute("ROLLBACK")
    assert len(server.chat_requests()) == asked  # the run did not start
    return one_error_line(done), took


def test_a_store_locked_by_another_process_is_one_line_naming_the_file(
    store: Path, server: OllamaTestServer
) -> None:
    line, took = run_while_locked(store, server)
    assert line == (
        f"error: the run store {store} is locked by another process, which has held its "
        f"write lock for over {TAKE_WAIT_S:g} s; wait for that process to finish, or stop "
        "it, then try again"
    )
    assert took < TAKE_WAIT_S + 15  # the lease waited TAKE_WAIT_S, not the 30 s busy timeout


def test_a_store_locked_while_a_run_holds_a_lease_names_its_runner(
    store: Path, server: OllamaTestServer
) -> None:
    """A live runner's lease (this process's, as another runner would hold one) is named as
    who may hold the lock."""
    with closing(sqlite3.connect(store, isolation_level=None)) as conn:
        now = time.time()
        conn.execute(
            f"INSERT INTO {LEASE_TABLE} (thread_id, holder, pid, host, process, since, "
            "expires) VALUES ('other', 'its-token', ?, ?, NULL, ?, ?)",
            (os.getpid(), socket.gethostname(), now, now + 600),
        )
    line, _ = run_while_locked(store, server)
    busy = re.fullmatch(
        rf"error: the run store {re.escape(str(store))} is busy: another process has held "
        rf"its write lock for over {TAKE_WAIT_S:g} s, perhaps the runner of run 'other', "
        r"pid (?P<pid>\d+) on (?P<host>\S+) since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; wait "
        r"for it to finish, or stop it, then try again",
        line,
    )
    assert busy, line
    assert (int(busy["pid"]), busy["host"]) == (os.getpid(), socket.gethostname())


# --- C. PostgreSQL lost mid-run -----------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to stop mid-run: the session's server goes on
    serving the other tests."""
    programs = server_programs()
    if programs is None:
        skip_unless_ci("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    server = PostgresServer(programs).start()
    try:
        yield server
    finally:
        if server.data.exists():  # not stopped by the test
            server.stop()


def test_a_postgres_server_lost_mid_run_is_one_line(own_postgres: PostgresServer) -> None:
    url = own_postgres.database()
    held = [HeldFirstCalls((2,), step_of)]
    with OllamaTestServer(answering(held)) as server:
        proc = spawn_cli("run", "Plan a beach day", "--db", url, host=server.url)
        try:
            wait_for(held[0].all_arrived, proc, "step 2 reached the model")
            own_postgres.stop()  # pg_ctl stop --mode=immediate: the server is gone
            held[0].release.set()
            out, err = proc.communicate(timeout=120)
        finally:
            held[0].release.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

    assert proc.returncode == 2, out + err
    lines = err.splitlines()
    assert len(lines) == 1, err  # none of the pool's retries and warnings
    assert lines[0].startswith("error: lost the run store postgresql://postgres:***@"), err
    assert lines[0].endswith("check that the PostgreSQL server runs, then resume")
    assert PASSWORD not in err


# --- D. a read-only copy ------------------------------------------------------------------


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A folder and a read-only bind mount of it, a copy not even root can write: what it
    holds is seen, as it is, in the mount."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (mount --bind)")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("the mount and umount commands are not installed")
    folder, mount = tmp_path / "folder", tmp_path / "mount"
    folder.mkdir()
    mount.mkdir()
    bound = subprocess.run(["mount", "--bind", folder, mount], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"mount --bind is not permitted here: {bound.stderr.strip()}")
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro,bind", mount], capture_output=True, text=True
        )
        if remounted.returncode != 0:
            pytest.skip(f"a bind mount cannot be made read-only here: {remounted.stderr.strip()}")
        with pytest.raises(OSError, match="Read-only file system"):
            (mount / "probe").touch()
        yield folder, mount
    finally:
        subprocess.run(["umount", mount], check=True, timeout=30)


def test_every_reading_command_reads_a_read_only_copy(
    read_only_mount: tuple[Path, Path], made_store: Path, server: OllamaTestServer
) -> None:
    folder, mount = read_only_mount
    shutil.copyfile(made_store, folder / "runs.sqlite")
    db = str(mount / "runs.sqlite")

    listed = run_cli("runs", "--db", db, host=server.url)
    shown = run_cli("show", "first", "--db", db, host=server.url)
    history = run_cli("show", "first", "--history", "--db", db, host=server.url)
    drawn = run_cli("graph", "--thread", "first", "--format", "ascii", "--db", db, host=server.url)

    for done in (listed, shown, history, drawn):
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    assert re.search(r"│ first\s+│ Plan a beach day\s+│ completed\s+│ 3/3", listed.stdout)
    assert "Did step 3." in shown.stdout and ANSWER in shown.stdout
    assert "agentic-loop resume first --from-step K" in history.stdout
    assert "Pack a bag" in drawn.stdout
    assert files_in(folder) == ["runs.sqlite"]


def test_a_read_only_copy_of_a_store_whose_runner_was_killed_shows_its_last_steps(
    read_only_mount: tuple[Path, Path],
) -> None:
    """A runner SIGKILLed at step 2 leaves step 1 in the store's `-wal` alone, beside its
    `-shm`: a copy of the three files is read through them, and shows step 1."""
    folder, mount = read_only_mount
    held = [HeldFirstCalls((2,), step_of)]
    with OllamaTestServer(answering(held)) as server:
        killed_at_step_2(str(folder / "runs.sqlite"), "beach", server, held)
        assert files_in(folder) == ["runs.sqlite", "runs.sqlite-shm", "runs.sqlite-wal"]
        assert (folder / "runs.sqlite-wal").stat().st_size > 0
        shown = run_cli("show", "beach", "--db", str(mount / "runs.sqlite"), host=server.url)
    assert shown.returncode == 0, shown.stderr
    assert "interrupted" in shown.stdout and "Did step 1." in shown.stdout


async def test_an_error_while_a_run_writes_a_store_read_at_rest_says_try_again(
    store: Path,
) -> None:
    """Read as immutable, a store at rest has no locks: a run that writes it meanwhile can
    make the reader meet what looks like damage. The file is sound again when checked, so
    the reader is told to try again, not to recover the store (which `test_damaged_stores`
    asks when the file is damaged for good)."""
    with pytest.raises(StoreError, match=r"runs.sqlite changed while it was read; try again$"):
        async with open_store(store, read_only=True):
            with closing(sqlite3.connect(store)) as writer, writer:
                writer.execute(f"DELETE FROM {LEASE_TABLE}")  # another process's write
            raise StoreError(f"{store} is damaged (database disk image is malformed)")
