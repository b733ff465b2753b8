"""Replaying a run offline: a run recorded through the CLI against the Ollama test server
(tools, an approval, a failed step adapted, a revised plan, two steps side by side) replays
with the server stopped, on SQLite and PostgreSQL; a changed prompt stops the replay at the
right step with a diff; a recording file replays on a fresh store; and a parent graph runs
the loop against a recording with `agentic_loop.testing`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from ollama_server import STEP_LINE, OllamaTestServer, Reply, tool_messages

pytestmark = pytest.mark.integration

NOTES_TOOLS = '''
import os
from langchain_core.tools import tool


@tool
def note(text: str) -> str:
    """Append a line of text to the notes file."""
    with open(os.environ["NOTES_FILE"], "a", encoding="utf-8") as notes:
        notes.write(text + "\\n")
    return f"noted: {text}"


TOOLS = [note]
'''
TASK = "Compare A and B"
PLAN = {
    "steps": [
        {"id": 1, "description": "Look up A", "depends_on": []},
        {"id": 2, "description": "Look up B", "depends_on": []},
        {"id": 3, "description": "Compare them", "depends_on": [1, 2]},
    ]
}


def step_in(request: dict[str, Any]) -> int | None:
    for message in request["messages"]:
        if message["role"] == "user" and (match := STEP_LINE.search(message["content"])):
            return int(match[1])
    return None


def scripted(request: dict[str, Any]) -> Reply:
    """Plan two steps side by side and a third after them; step 1 notes A with the tool,
    step 2 gives an empty reply (a failed call, adapted), the replanner revises the step
    left, and the answer is written."""
    prompt = str(request["messages"][-1]["content"])
    if request.get("format"):
        return Reply(json.dumps(PLAN))
    if "Reply KEEP" in prompt:
        return Reply("3. Write the comparison of A and B")
    if "failed with error" in prompt:
        return Reply("B is 2, found another way.")
    step = step_in(request)
    if step == 1:
        results = tool_messages(request)
        if not results:
            return Reply("", tool_calls=[("note", {"text": "A is 1"})])
        return Reply(f"A is 1 ({results[-1]['content']}).")
    if step == 2:
        return Reply("")
    if step == 3:
        return Reply("A is smaller than B.")
    return Reply("A (1) is smaller than B (2).")


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    (tmp_path / "my_tools.py").write_text(NOTES_TOOLS)
    return tmp_path


def record(notes: Path, db: str, thread: str) -> dict[str, Any]:
    """Run the task through the CLI against the test server, its tool call approved on
    resume; the run's result as JSON. The server is stopped when this returns."""
    env = {"NOTES_FILE": str(notes / "notes.txt")}
    with OllamaTestServer(scripted) as server:
        first = run_cli(
            "run", TASK, "--tools", "my_tools:TOOLS", "--approve-tool", "note", "--db", db,
            "--thread", thread, host=server.url, cwd=notes, env=env, input="",
        )  # fmt: skip
        assert "awaiting approval" in first.stdout + first.stderr or first.returncode != 0
        done = run_cli(
            "resume", thread, "--db", db, "--json", host=server.url, cwd=notes, env=env,
            input="a\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def offline_cli(*args: str, cwd: Path | None = None) -> Any:
    """The CLI with no model server anywhere (a port nothing listens on)."""
    return run_cli(*args, host="http://127.0.0.1:9", cwd=cwd)


def test_the_recorded_scenario_has_everything_replay_must_handle(
    notes: Path, any_store: str
) -> None:
    result = record(notes, any_store, "rec")
    assert [(s["step_num"], s["status"]) for s in result["steps"]] == [
        (1, "completed"),
        (2, "adapted"),
        (3, "completed"),
    ]
    assert len(result["plan_versions"]) == 2
    assert result["depends_on"][:2] == [[], []]
    assert result["steps"][0]["tool_calls"][0]["tool"] == "note"

    replayed = offline_cli("replay", "rec", "--db", any_store)
    assert replayed.returncode == 0, replayed.stderr + replayed.stdout
    assert re.search(
        r"replayed \d+ model calls and 1 tool calls: same steps, answer and events",
        replayed.stdout,
    ), replayed.stdout
    # The notes file was written once, by the recorded run: replay ran no tool.
    assert (notes / "notes.txt").read_text() == "A is 1\n"


def test_a_recording_file_replays_on_a_fresh_store(notes: Path, any_store: str) -> None:
    record(notes, any_store, "rec")
    path = notes / "run.json"
    exported = offline_cli("show", "rec", "--db", any_store, "--export", str(path))
    assert exported.returncode == 0, exported.stderr
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == ("agentic-loop-recording", 1)
    assert data["task"] == TASK
    assert {e["kind"] for e in data["entries"]} >= {"start", "model", "tool", "event", "answer"}
    assert "OLLAMA_HOST" not in path.read_text() and "127.0.0.1" not in path.read_text()

    elsewhere = notes / "elsewhere"
    elsewhere.mkdir()
    replayed = offline_cli("replay", str(path), "--db", str(elsewhere / "runs.sqlite"))
    assert replayed.returncode == 0, replayed.stderr + replayed.stdout
    assert "same steps, answer and events" in replayed.stdout
    assert not (elsewhere / "runs.sqlite").exists()  # replay stores nothing


def test_a_changed_prompt_stops_the_replay_at_its_step_with_a_diff(notes: Path) -> None:
    db = str(notes / "runs.sqlite")
    record(notes, db, "rec")
    path = notes / "run.json"
    assert offline_cli("show", "rec", "--db", db, "--export", str(path)).returncode == 0
    data = json.loads(path.read_text())
    # Step 3's first request, as a prompt edited since would have asked it.
    for entry in data["entries"]:
        if entry["kind"] == "model" and entry["node"] == "execute" and entry["step"] == 3:
            human = entry["request"]["messages"][-1]["data"]
            human["content"] = human["content"].replace("Task:", "The task:")
            break
    path.write_text(json.dumps(data))

    replayed = offline_cli("replay", str(path))
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    out = replayed.stdout
    assert "node execute, step 3: model call 1 differs from the recorded one" in out
    assert "--- recorded" in out and "+++ replayed" in out
    assert "-The task: Compare A and B" in out and "+Task: Compare A and B" in out


def test_a_run_stored_before_recordings_cannot_be_replayed(notes: Path) -> None:
    db = notes / "runs.sqlite"
    record(notes, str(db), "rec")
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE agentic_loop_recordings")
    before = db.read_bytes()
    replayed = offline_cli("replay", "rec", "--db", str(db))
    assert replayed.returncode == 2
    assert "cannot be replayed" in replayed.stderr
    assert db.read_bytes() == before


README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    """The README's pytest example of `agentic_loop.testing` (in "Replaying a run offline")."""
    section = README.read_text(encoding="utf-8").split("### Replaying a run offline", 1)[1]
    block = re.search(r"^```py\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert block is not None
    return block[1]


def test_a_parent_graph_runs_the_loop_against_a_recording(notes: Path) -> None:
    """What a user's pytest does, as the README shows it: their graph with the loop inside,
    the model and tools answering from a recording file, and no model server."""
    db = str(notes / "runs.sqlite")
    record(notes, db, "rec")
    path = notes / "run.json"
    assert offline_cli("show", "rec", "--db", db, "--export", str(path)).returncode == 0

    example: dict[str, Any] = {"__name__": "example"}
    exec(compile(readme_example(), "README example", "exec"), example)
    example["RUN"] = str(path)
    asyncio.run(example["test_my_graph_on_a_recorded_run"]())


def test_a_changed_recording_fails_the_users_test_with_the_diff(notes: Path) -> None:
    db = str(notes / "runs.sqlite")
    record(notes, db, "rec")
    path = notes / "run.json"
    assert offline_cli("show", "rec", "--db", db, "--export", str(path)).returncode == 0
    data = json.loads(path.read_text())
    data["entries"] = [
        e for e in data["entries"] if not (e["kind"] == "model" and e["node"] == "answer")
    ]
    path.write_text(json.dumps(data))

    from agentic_loop.testing import ReplayDiverged, replay

    report = asyncio.run(replay(path))
    assert isinstance(report.diverged, ReplayDiverged)
    assert (report.diverged.node, report.diverged.step) == ("answer", None)
    assert "model call 1 was not recorded" in report.describe()
    example: dict[str, Any] = {"__name__": "example"}
    exec(compile(readme_example(), "README example", "exec"), example)
    example["RUN"] = str(path)
    with pytest.raises(ReplayDiverged, match="node answer"):
        asyncio.run(example["test_my_graph_on_a_recorded_run"]())


def test_a_prompt_edited_in_the_code_stops_the_replay_at_the_first_step_asked(
    notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after editing a prompt or upgrading: the recording is as it was, the code is not."""
    import dataclasses

    from agentic_loop.core import prompts
    from agentic_loop.testing import replay

    db = str(notes / "runs.sqlite")
    record(notes, db, "rec")
    path = notes / "run.json"
    assert offline_cli("show", "rec", "--db", db, "--export", str(path)).returncode == 0
    assert asyncio.run(replay(path)).same  # unchanged code: the same run

    # Every step of this run may call tools, so each is asked with `tools_ask`.
    edited = dataclasses.replace(prompts.CAPABLE, tools_ask="Do this step now, in one line.")
    monkeypatch.setitem(prompts.PROMPT_SETS, "capable", edited)
    report = asyncio.run(replay(path))
    assert report.diverged is not None and not report.same
    assert (report.diverged.node, report.diverged.step) in {("execute", 1), ("execute", 2)}
    assert "+Do this step now, in one line." in report.diverged.diff
    assert "-Do this step now. You may call these tools: note." in report.diverged.diff


def test_a_run_killed_and_resumed_replays_as_it_ended(tmp_path: Path) -> None:
    """The recording of a run SIGKILLed while step 2 waited for the model, then resumed,
    holds step 2's call twice; the replay takes the one whose reply the run kept."""
    import signal
    import threading

    from conftest import spawn_cli, wait_until

    arrived, release = threading.Event(), threading.Event()
    plan = {
        "steps": [
            {
                "id": n,
                "description": f"Part {n} of the trip",
                "depends_on": [n - 1] if n > 1 else [],
            }
            for n in (1, 2, 3)
        ]
    }

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(json.dumps(plan))
        step = step_in(request)
        if step == 2 and not arrived.is_set():
            arrived.set()
            return Reply("never seen", hold=release)
        return Reply(f"Did part {step}." if step else "The trip is planned.")

    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(reply) as server:
        proc = spawn_cli("run", "Plan a trip", "--db", db, "--thread", "k", host=server.url)
        try:
            wait_until(arrived.is_set, what="step 2's call", timeout=60)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            release.set()
            proc.kill()
        done = run_cli("resume", "k", "--db", db, "--json", host=server.url)
        assert done.returncode == 0, done.stderr
    assert [s["result"] for s in json.loads(done.stdout)["steps"]] == [
        f"Did part {n}." for n in (1, 2, 3)
    ]
    replayed = offline_cli("replay", "k", "--db", db)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "same steps, answer and events" in replayed.stdout


def test_a_run_run_again_from_a_step_is_refused_in_one_line(tmp_path: Path) -> None:
    plan = {
        "steps": [
            {"id": n, "description": f"Part {n}", "depends_on": [n - 1] if n > 1 else []}
            for n in (1, 2)
        ]
    }

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(json.dumps(plan))
        step = step_in(request)
        return Reply(f"Did part {step}." if step else "Done.")

    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(reply) as server:
        assert run_cli("run", "T", "--db", db, "--thread", "k", host=server.url).returncode == 0
        again = run_cli("resume", "k", "--from-step", "2", "--db", db, host=server.url)
        assert again.returncode == 0, again.stderr
    replayed = offline_cli("replay", "k", "--db", db)
    assert replayed.returncode == 2
    assert replayed.stderr.strip() == (
        "error: run 'k' was run again from step 2: a run with more than one branch cannot "
        "be replayed yet"
    )
