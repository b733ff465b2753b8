"""Text from the model or the user is shown as text: escape sequences in a task, a plan,
step results, tool calls or the answer reach no terminal. Each command and prompt writes
their control characters out (`\\x1b`, `\\x07`) and keeps the text around them; over the
real CLI, the ChatOllama client and the Ollama-protocol test server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from ollama_server import STEP_LINE, OllamaTestServer, Reply, last_prompt, tool_messages

from agentic_loop.faces.terminal import visible

pytestmark = pytest.mark.integration

TITLE = "\x1b]0;PWNED\x07"  # sets the terminal's title, hiding what follows until the bell
RED = "\x1b[31m"
CLEAR = "\x9b2J"  # C1 CSI: clears the screen on terminals that take 8-bit controls

TASK = f"Find a {RED}train{TITLE} to Lyon"
PLAN = [f"Look up {TITLE}trains", f"Compare {RED}prices", f"Book {CLEAR}a seat"]
ANSWER = f"Take the {TITLE}9:04{RED} train.\nBook it {CLEAR}today."
RAW = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""What must never reach the terminal: any control character but the newline."""


def result_of(step: int | str) -> str:
    return f"Did {RED}step {step}{TITLE} well"


def written_out(text: str) -> str:
    """`text` as the terminal should show it."""
    for char in "\x1b\x07\x9b":
        text = text.replace(char, f"\\x{ord(char):02x}")
    return text


def model(request: dict[str, Any]) -> Reply:
    prompt = last_prompt(request)
    if "Break this task into numbered steps" in prompt:
        return Reply("\n".join(f"{i}. {step}" for i, step in enumerate(PLAN, 1)))
    if (match := STEP_LINE.search(prompt)) is not None:
        return Reply(result_of(match[1]))
    return Reply(ANSWER)


def assert_shown_as_text(done: Any) -> None:
    output = done.stdout + done.stderr
    assert RAW.search(output) is None, output
    assert "Traceback" not in output


def test_every_command_shows_escape_sequences_as_text(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(model) as server:
        ran = run_cli("run", TASK, "--thread", "t", "--db", db, host=server.url)
        shown = run_cli("show", "t", "--db", db, host=server.url)
        history = run_cli("show", "t", "--history", "--db", db, host=server.url)
        drawn = run_cli("graph", "--thread", "t", "--format", "ascii", "--db", db, host=server.url)
        listed = run_cli("runs", "--db", db, host=server.url)
        reviewed = run_cli(
            "run", TASK, "--thread", "r", "--review", "--db", db, host=server.url, input="a\n"
        )

    for done in (ran, shown, history, drawn, listed, reviewed):
        assert done.returncode == 0, done.stderr
        assert_shown_as_text(done)
    for done in (ran, reviewed):  # the plan, each step's start and result, the answer
        for number, step in enumerate(PLAN, 1):
            assert f"  {number}. {written_out(step)}\n" in done.stdout
            assert f"step {number}/3: {written_out(step)}\n" in done.stdout
            assert f"step {number}: {written_out(result_of(number))} (" in done.stdout
        assert f"completed {written_out(TASK)}: Completed 3/3 steps." in done.stdout
        assert done.stdout.endswith(f"Answer\n{written_out(ANSWER)}\n")  # its newline kept
    assert "Run this plan? [a]pprove, [e]dit, [r]eject (a): \nPlan approved." in reviewed.stdout
    assert shown.stdout.startswith(f"{written_out(TASK)}\nthread t · completed")
    for number, step in enumerate(PLAN, 1):
        assert f"\n{number}. {written_out(step)} — completed" in shown.stdout
        assert f"\n{written_out(result_of(number))}\n" in shown.stdout
    assert shown.stdout.endswith(f"Answer\n{written_out(ANSWER)}\n")
    assert history.stdout.startswith(f"{written_out(TASK)} · thread t\n")
    assert drawn.stdout.startswith(f"{written_out(TASK)}\ncompleted · 3/3 steps")
    assert all(f"  {written_out(step)}\n" in drawn.stdout for step in PLAN)
    assert "\\x1b" in listed.stdout


def test_json_escapes_every_control_character_and_keeps_the_text(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(model) as server:
        ran = run_cli("run", TASK, "--thread", "t", "--db", db, "--json", host=server.url)
        shown = run_cli("show", "t", "--db", db, "--json", host=server.url)
        history = run_cli("show", "t", "--history", "--db", db, "--json", host=server.url)

    for done in (ran, shown, history):
        assert done.returncode == 0, done.stderr
        assert_shown_as_text(done)
    for done in (ran, shown):
        result = json.loads(done.stdout)
        assert result["task"] == TASK and result["answer"] == ANSWER
        assert [step["description"] for step in result["steps"]] == PLAN
        assert "\\u009b2J" in done.stdout  # a C1 character too, which json.dumps leaves
    assert json.loads(history.stdout)


NOTE_TOOL = '''
from langchain_core.tools import tool


@tool
def note(text: str) -> str:
    """Keep a note."""
    return f"noted: {text}"


TOOLS = [note]
'''
NOTE = f"pack {TITLE}the {CLEAR}bags"


def note_once(request: dict[str, Any]) -> Reply:
    """Plan one step, which calls `note` once, then says what it gave back."""
    steps = [STEP_LINE.search(m["content"]) for m in request["messages"] if m["role"] == "user"]
    if not any(steps):
        return Reply("1. Take a note") if "numbered steps" in last_prompt(request) else Reply("Ok.")
    if not (results := tool_messages(request)):
        return Reply("", tool_calls=[("note", {"text": NOTE})])
    return Reply(f"The tool said {results[-1]['content']}")


def test_a_tool_approval_prompt_shows_the_call_as_text(tmp_path: Path) -> None:
    (tmp_path / "note_tool.py").write_text(NOTE_TOOL)
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(note_once) as server:
        done = run_cli(
            "run", "Take a note", "--tools", "note_tool:TOOLS", "--approve-tools", "--db", db,
            host=server.url, cwd=tmp_path, input="a\n",
        )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert_shown_as_text(done)
    # The arguments as JSON (ESC and BEL as \u escapes), the C1 character written out.
    wants = 'Step 1 wants to call note with {"text": "pack \\u001b]0;PWNED\\u0007the \\x9b2Jbags"}'
    assert wants in done.stdout
    assert "Allow this call? [a]pprove, [e]dit, [r]eject (a): " in done.stdout
    assert f"↳ noted: {written_out(NOTE)}" in done.stdout


@pytest.mark.parametrize(
    ("text", "lines", "shown"),
    [
        ("plain, é ✓ 日本", True, "plain, é ✓ 日本"),
        (f"a{TITLE}b{RED}c", True, "a\\x1b]0;PWNED\\x07b\\x1b[31mc"),
        ("del\x7f nul\x00 csi\x9b nel\x85", True, "del\\x7f nul\\x00 csi\\x9b nel\\x85"),
        ("two\nlines\tand a tab", True, "two\nlines\tand a tab"),
        ("windows\r\nline ends\r", True, "windows\nline ends\\x0d"),
        ("one\nline\tonly", False, "one\\x0aline\\x09only"),
        ("\\x1b stays as typed", True, "\\x1b stays as typed"),
    ],
)
def test_visible(text: str, lines: bool, shown: str) -> None:
    assert visible(text, lines=lines) == shown
    assert visible(shown, lines=lines) == shown  # nothing left to write out
