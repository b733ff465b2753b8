"""The command line: usage errors are one clear line and exit 2, never a traceback."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic_loop.faces.cli import app
from agentic_loop.runs.store import open_store

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_the_commands() -> None:
    done = invoke("--help")
    assert done.exit_code == 0
    for command in ("run", "resume", "runs", "show", "graph"):
        assert command in done.output


def test_help_does_not_import_langgraph() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['agentic-loop', '--help']\n"
        "try: runpy.run_module('agentic_loop', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('langgraph' in sys.modules, 'langchain_core' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "   "), "the task is empty"),
        (("run", "T", "--max-steps", "-1"), "--max-steps must be a whole number from 1 to 1000"),
        (("run", "T", "--model", "gpt4"), "unknown model 'gpt4': use auto, local or ollama:NAME"),
        (("run", "T", "--model", "ollama:x", "--timeout", "0"), "--timeout must be a number of"),
        (("run", "T", "--model", "local", "--timeout", "5"), "--timeout applies to Ollama models"),
    ],
)
def test_usage_errors(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    done = invoke(*args, "--db", str(tmp_path / "runs.sqlite"))
    assert done.exit_code == 2
    assert message in done.output
    assert "Traceback" not in done.output


def test_bad_max_steps_in_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENTIC_LOOP_MAX_STEPS", "lots")
    done = invoke("run", "T", "--model", "ollama:x", "--db", str(tmp_path / "runs.sqlite"))
    assert done.exit_code == 2
    assert "AGENTIC_LOOP_MAX_STEPS must be a whole number from 1 to 1000, got 'lots'" in done.output


def test_db_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for args in (("runs",), ("show", "x"), ("run", "T", "--model", "ollama:x")):
        done = invoke(*args, "--db", str(notes))
        assert done.exit_code == 2
        assert "is not a SQLite database; pass another file with --db" in done.output
    assert notes.read_text() == "keep me"


def empty_store(path: Path) -> Path:
    async def make() -> None:
        async with open_store(path):
            pass

    asyncio.run(make())
    return path


def test_unknown_thread(tmp_path: Path) -> None:
    db = str(empty_store(tmp_path / "runs.sqlite"))
    for command in ("show", "resume"):
        done = invoke(command, "nope", "--db", db)
        assert done.exit_code == 2
        assert "no run with thread id 'nope'" in done.output


def test_runs_on_an_empty_store(tmp_path: Path) -> None:
    done = invoke("runs", "--db", str(empty_store(tmp_path / "runs.sqlite")))
    assert done.exit_code == 0
    assert "No stored runs" in done.output


READERS = [("runs",), ("show", "t"), ("show", "t", "--history"), ("graph", "--thread", "t")]


@pytest.mark.parametrize("command", READERS)
def test_reading_commands_never_create_a_store(command: tuple[str, ...], tmp_path: Path) -> None:
    missing = tmp_path / "typo-dir" / "runs.sqlite"
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for db in (missing, empty):
        done = invoke(*command, "--db", str(db))
        assert done.exit_code == 2
        assert f"no run store at {db}" in done.output
    assert not missing.parent.exists()
    assert empty.stat().st_size == 0

    store = empty_store(tmp_path / "runs.sqlite")
    before = store.read_bytes()
    invoke(*command, "--db", str(store))
    assert store.read_bytes() == before


@pytest.mark.parametrize("command", [*READERS, ("run", "T", "--model", "ollama:x")])
def test_another_programs_database_is_refused_and_left_as_it_was(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    before = foreign.read_bytes()
    done = invoke(*command, "--db", str(foreign))
    assert done.exit_code == 2, done.output
    assert f"{foreign} is not a run store (its tables: notes)" in done.output
    assert foreign.read_bytes() == before


def test_db_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "env.sqlite"
    monkeypatch.setenv("AGENTIC_LOOP_DB", str(db))
    assert f"no run store at {db}" in invoke("runs").output  # it reads that file
    empty_store(db)
    assert "No stored runs" in invoke("runs").output


def test_graph_mermaid_and_ascii() -> None:
    mermaid = invoke("graph")
    assert mermaid.exit_code == 0
    assert "schedule -.-> adapt;" in mermaid.output and "plan -.-> summarise;" in mermaid.output
    ascii_art = invoke("graph", "--format", "ascii")
    assert ascii_art.exit_code == 0
    assert "| summarise |" in ascii_art.output
