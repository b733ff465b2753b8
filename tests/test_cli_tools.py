"""Tools from the command line, end to end: the CLI, the real ChatOllama client over HTTP
against the Ollama-protocol test server, a real MCP server over stdio, a SIGKILLed process,
and a store written before steps had tools."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, spawn_cli
from ollama_server import STEP_LINE, OllamaTestServer, Reply, tool_messages

from agentic_loop.models.local import local_model_available

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent
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


def step_in(request: dict[str, Any]) -> int | None:
    """The step a step conversation is about (its prompt opens the conversation)."""
    for message in request["messages"]:
        if message["role"] == "user" and (match := STEP_LINE.search(message["content"])):
            return int(match[1])
    return None


def one_tool_call_per_step(
    plan: list[str], tool: str, args: Callable[[int], dict[str, Any]]
) -> Callable[[dict[str, Any]], Reply]:
    """Plan `plan`; in each step call `tool` once, then report what it gave back."""

    def reply(request: dict[str, Any]) -> Reply:
        step = step_in(request)
        if step is None:
            numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(plan, 1))
            return Reply(f"Plan:\n{numbered}")
        results = tool_messages(request)
        if not results:
            return Reply("", tool_calls=[(tool, args(step))])
        return Reply(f"Step {step}: the tool said {results[-1]['content']}")

    return reply


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """A folder with `my_tools.py` (its `note` tool appends to `notes.txt` there)."""
    (tmp_path / "my_tools.py").write_text(NOTES_TOOLS)
    return tmp_path


def test_a_run_with_imported_tools_reports_each_call(notes: Path) -> None:
    reply = one_tool_call_per_step(["Note A", "Note B"], "note", lambda step: {"text": f"n{step}"})
    with OllamaTestServer(reply) as server:
        db = str(notes / "runs.sqlite")
        env = {"NOTES_FILE": str(notes / "notes.txt")}
        done = run_cli(
            "run", "Take notes", "--tools", "my_tools:TOOLS", "--db", db, "--json",
            "--thread", "t1", host=server.url, cwd=notes, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        requests = server.chat_requests()
        shown = run_cli("show", "t1", "--db", db, host=server.url)

    assert (notes / "notes.txt").read_text() == "n1\nn2\n"
    result = json.loads(done.stdout)
    assert [s["result"] for s in result["steps"]] == [
        "Step 1: the tool said noted: n1",
        "Step 2: the tool said noted: n2",
    ]
    assert result["steps"][0]["tool_calls"] == [
        {
            "tool": "note",
            "args": {"text": "n1"},
            "result": "noted: n1",
            "status": "success",
            "duration_ms": result["steps"][0]["tool_calls"][0]["duration_ms"],
        }
    ]
    assert "tools note" in done.stderr
    assert re.search(r"⚒ note .*n1", done.stderr)
    # The step's requests carried the tool's schema; planning did not.
    assert "tools" not in requests[0] or not requests[0]["tools"]
    assert [t["function"]["name"] for t in requests[1]["tools"]] == ["note"]
    assert re.search(r"⚒ note .*success, \d+ ms: noted: n1", shown.stdout)


def test_sigkill_right_after_a_tool_ran_resumes_without_running_it_again(notes: Path) -> None:
    """The tool has run and its result is stored; the model's next turn is in flight when
    the process is killed. `resume` must not call the tool again, nor ask the model again
    for the turn that asked for it."""
    release = threading.Event()
    second_turn = threading.Event()
    normal = one_tool_call_per_step(["Note once"], "note", lambda step: {"text": "once"})

    def reply(request: dict[str, Any]) -> Reply:
        if tool_messages(request) and not second_turn.is_set():
            second_turn.set()
            return Reply("never sent", hold=release)
        return normal(request)

    db = str(notes / "runs.sqlite")
    notes_file = notes / "notes.txt"
    env = {"NOTES_FILE": str(notes_file)}
    with OllamaTestServer(reply) as server:
        proc = spawn_cli(
            "run", "Take a note", "--tools", "my_tools:TOOLS", "--db", db, "--thread", "kill",
            host=server.url, cwd=notes, env=env,
        )  # fmt: skip
        try:
            assert second_turn.wait(timeout=60), "the turn after the tool never reached the model"
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
            assert proc.returncode == -signal.SIGKILL
        finally:
            release.set()
            proc.kill()
        assert notes_file.read_text() == "once\n"
        before = len(server.chat_requests())

        # From another folder: the tools come back from what the run stored.
        done = run_cli("resume", "kill", "--db", db, "--json", host=server.url, env=env)
        assert done.returncode == 0, done.stderr
        after = server.chat_requests()[before:]

    assert notes_file.read_text() == "once\n"
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert result["steps"][0]["result"] == "Step 1: the tool said noted: once"
    assert [c["tool"] for c in result["steps"][0]["tool_calls"]] == ["note"]
    assert len(after) == 2  # the turn in flight at the kill, then the run's answer
    assert [t["function"]["name"] for t in after[0]["tools"]] == ["note"]  # the stored tools
    assert [m["content"] for m in tool_messages(after[0])] == ["noted: once"]


def test_a_run_calls_a_tool_of_a_real_mcp_server(tmp_path: Path) -> None:
    notes_file = tmp_path / "mcp-notes.txt"
    servers = tmp_path / "servers.json"
    servers.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "notes": {
                        "command": sys.executable,
                        "args": [str(TESTS / "mcp_server.py")],
                        "env": {"MCP_NOTES_FILE": str(notes_file)},
                    }
                }
            }
        )
    )
    reply = one_tool_call_per_step(["Write it down"], "note", lambda step: {"text": "from MCP"})
    with OllamaTestServer(reply) as server:
        done = run_cli(
            "run", "Remember this", "--mcp", str(servers), "--db", str(tmp_path / "r.sqlite"),
            "--json", host=server.url,
        )  # fmt: skip
        offered = sorted(t["function"]["name"] for t in server.chat_requests()[1]["tools"])
    assert done.returncode == 0, done.stderr
    assert notes_file.read_text() == "from MCP\n"
    assert offered == ["add", "note"]
    step = json.loads(done.stdout)["steps"][0]
    assert step["tool_calls"][0]["result"] == "noted: from MCP"


def test_workspace_tools_write_inside_and_refuse_outside(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    paths = {1: "plan.txt", 2: "../escaped.txt"}
    reply = one_tool_call_per_step(
        ["Write the plan", "Write outside"],
        "write_file",
        lambda step: {"path": paths[step], "content": "hello"},
    )
    with OllamaTestServer(reply) as server:
        done = run_cli(
            "run", "Write files", "--workspace", str(workspace),
            "--db", str(tmp_path / "r.sqlite"), "--json", host=server.url,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (workspace / "plan.txt").read_text() == "hello"
    assert not (tmp_path / "escaped.txt").exists()
    calls = [json.loads(done.stdout)["steps"][i]["tool_calls"][0] for i in (0, 1)]
    assert [c["status"] for c in calls] == ["success", "error"]
    assert "leaves the workspace" in calls[1]["result"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tools", "nowhere_at_all:TOOLS"], "error: --tools: no module nowhere_at_all in"),
        (["--tools", "my_tools"], "is not package.module:attribute"),
        (["--tools", "my_tools:NOPE"], "module my_tools has no 'NOPE'"),
        (["--mcp", "missing.json"], "is not a file; pass a servers JSON file"),
        (["--workspace", "missing-folder"], "is not a folder"),
        (["--approve-tools"], "--approve-tools and --approve-tool need tools"),
        (["--tools", "my_tools:TOOLS", "--approve-tool", "nope"], "approve_tools names 'nope'"),
        (["--tools", "my_tools:TOOLS", "--model", "local"], "cannot call tools"),
    ],
)
def test_bad_tool_options_are_one_line_and_exit_2(
    notes: Path, args: list[str], message: str
) -> None:
    if "--model" in args and not local_model_available():
        pytest.skip("the embedded model is not installed")
    done = run_cli(
        "run", "T", *args, "--db", str(notes / "r.sqlite"), host="127.0.0.1:9", cwd=notes
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_approve_tools_asks_in_the_terminal(notes: Path) -> None:
    reply = one_tool_call_per_step(["Note A", "Note B"], "note", lambda step: {"text": f"n{step}"})
    with OllamaTestServer(reply) as server:
        done = run_cli(
            "run", "Take notes", "--tools", "my_tools:TOOLS", "--approve-tools", "--json",
            "--db", str(notes / "r.sqlite"), host=server.url, cwd=notes,
            env={"NOTES_FILE": str(notes / "notes.txt")},
            input='e\n{"text": "edited"}\nr\nnot this one\n',
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'Step 1 wants to call note with {"text": "n1"}' in done.stderr
    assert (notes / "notes.txt").read_text() == "edited\n"
    steps = json.loads(done.stdout)["steps"]
    assert [(c["args"], c["status"]) for s in steps for c in s["tool_calls"]] == [
        ({"text": "edited"}, "success"),
        ({"text": "n2"}, "refused"),
    ]
    assert "A reviewer refused this call: not this one" in steps[1]["tool_calls"][0]["result"]


def test_an_approval_left_unanswered_waits_and_resume_asks_again(notes: Path) -> None:
    reply = one_tool_call_per_step(["Note A"], "note", lambda step: {"text": "a"})
    db = str(notes / "r.sqlite")
    env = {"NOTES_FILE": str(notes / "notes.txt")}
    with OllamaTestServer(reply) as server:
        first = run_cli(
            "run", "Take a note", "--tools", "my_tools:TOOLS", "--approve-tool", "note",
            "--db", db, "--thread", "wait", host=server.url, cwd=notes, env=env, input="",
        )  # fmt: skip
        listed = run_cli("runs", "--db", db, host=server.url)
        second = run_cli("resume", "wait", "--db", db, host=server.url, env=env, input="a\n")
    assert first.returncode == 1
    assert "agentic-loop resume wait" in first.stderr
    assert "awaiting approval" in listed.stdout
    assert second.returncode == 0, second.stderr
    assert (notes / "notes.txt").read_text() == "a\n"


def test_runs_stored_before_tools_existed_still_list_show_and_resume(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    shutil.copy(TESTS / "data" / "store_v0.sqlite", db)

    def reply(request: dict[str, Any]) -> Reply:
        return Reply(f"Did step {step_in(request)}.")

    with OllamaTestServer(reply) as server:
        listed = run_cli("runs", "--db", str(db), host=server.url)
        shown = run_cli("show", "old-finished", "--db", str(db), "--json", host=server.url)
        resumed = run_cli("resume", "old-stopped", "--db", str(db), "--json", host=server.url)
        reviewed = run_cli("resume", "old-review", "--db", str(db), host=server.url, input="a\n")
        drawn = run_cli(
            "graph",
            "--thread",
            "old-finished",
            "--db",
            str(db),
            "--format",
            "ascii",
            host=server.url,
        )
        asked = [step_in(r) for r in server.chat_requests()]

    assert listed.returncode == 0
    for thread, status in [
        ("old-finished", "completed"),
        ("old-stopped", "interrupted"),
        ("old-review", "awaiting review"),
    ]:
        assert re.search(rf"{thread}.*{status}", listed.stdout), listed.stdout
    assert json.loads(shown.stdout)["steps"][1]["result"] == "Drove."
    assert resumed.returncode == 0, resumed.stderr
    steps = json.loads(resumed.stdout)["steps"]
    assert [s["result"] for s in steps] == ["Packed.", "Did step 2.", "Did step 3."]
    assert reviewed.returncode == 0, reviewed.stderr
    assert asked == [2, 3, None, 1, 2, None]  # None: the answer, from the results
    assert drawn.returncode == 0 and "Drive to the coast" in drawn.stdout
