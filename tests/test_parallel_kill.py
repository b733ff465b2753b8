"""A CLI process SIGKILLed while steps run side by side, then resumed.

Each round of steps is one LangGraph superstep with one task per step. A task's writes are
stored as the task ends, as pending writes of the round, while the round's checkpoint is
stored only once every task has ended. So a step that finished before the kill must not
reach the model again on `resume`, while the steps in flight are asked again.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, spawn_cli
from langgraph.checkpoint.sqlite import SqliteSaver
from ollama_server import OllamaTestServer, Reply, last_prompt, step_of, tool_messages
from test_cli_tools import NOTES_TOOLS, step_in

from agentic_loop.core.state import AgenticStep
from agentic_loop.runs.store import run_serializer

pytestmark = pytest.mark.integration

WAIT_S = 60
"""Generous bound on each wait; a passing test waits a fraction of a second for each."""


def typed_plan(*steps: tuple[str, list[int]]) -> str:
    """The JSON reply to the planning request, which asks for a typed plan (`format`)."""
    return json.dumps(
        {
            "steps": [
                {"id": n, "description": description, "depends_on": after}
                for n, (description, after) in enumerate(steps, 1)
            ]
        }
    )


class HeldFirstCalls:
    """Hold, until `release` is set, the first request that `which` picks out for each of
    the given steps; `arrived[n]` is set when step n's held request reaches the server."""

    def __init__(self, steps: tuple[int, ...], which: Callable[[dict[str, Any]], int | None]):
        self.which = which
        self.arrived = {n: threading.Event() for n in steps}
        self.release = threading.Event()

    def hold(self, request: dict[str, Any]) -> threading.Event | None:
        step = self.which(request)
        if step in self.arrived and not self.arrived[step].is_set():
            self.arrived[step].set()
            return self.release
        return None

    def all_arrived(self) -> bool:
        return all(arrived.is_set() for arrived in self.arrived.values())


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Wait until `ready()`, failing at once if the CLI process ends first."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        assert proc.poll() is None, f"the CLI ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_S} s"
        time.sleep(0.02)


def pending_steps(db: str, thread: str) -> list[AgenticStep]:
    """The steps that ended within the round in progress: the `steps` writes stored as
    pending writes of the thread's last checkpoint (none before it has one)."""
    with closing(sqlite3.connect(db)) as conn:
        saver = SqliteSaver(conn, serde=run_serializer())
        stored = saver.get_tuple({"configurable": {"thread_id": thread}})
    if stored is None:
        return []
    return [
        step
        for _task, channel, value in stored.pending_writes or []
        if channel == "steps" and isinstance(value, list)
        for step in value
    ]


def kill(proc: subprocess.Popen[str], held: HeldFirstCalls) -> None:
    """SIGKILL the CLI (if it still runs), then let the held answers go to a closed
    connection. What the CLI printed is shown if the test fails."""
    try:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        print(f"CLI stderr:\n{err}")
        assert proc.returncode == -signal.SIGKILL
    finally:
        held.release.set()
        proc.kill()


def test_sigkill_with_two_steps_in_flight_redoes_only_those(tmp_path: Path) -> None:
    """Steps 1, 2 and 3 start together; 1 finishes while 2 and 3 are held; kill; resume.
    Step 1 never reaches the model again, 2 and 3 do once more, and step 4, which waits
    on all three, sees the three results."""
    plan = typed_plan(
        ("Pick a beach", []), ("Book a room", []), ("Pack a bag", []), ("Drive there", [1, 2, 3])
    )
    held = HeldFirstCalls((2, 3), step_of)

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(plan)
        step = step_of(request)
        if step is None:
            return Reply("Go to the beach by car.")
        return Reply(f"Did step {step}.", hold=held.hold(request))

    db, thread = str(tmp_path / "runs.sqlite"), "parallel-kill"
    with OllamaTestServer(reply) as server:
        proc = spawn_cli("run", "Plan a beach day", "--db", db, "--thread", thread, host=server.url)
        try:
            wait_for(held.all_arrived, proc, "steps 2 and 3 reached the model")
            wait_for(lambda: bool(pending_steps(db, thread)), proc, "a step was stored")
            stored = pending_steps(db, thread)
        finally:
            kill(proc, held)
        assert [(s.step_num, s.status, s.result) for s in stored] == [
            (1, "completed", "Did step 1.")
        ]
        before_resume = len(server.chat_requests())

        done = run_cli("resume", thread, "--db", db, "--json", host=server.url)
        assert done.returncode == 0, done.stderr
        requests = server.chat_requests()

    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert sorted((s["step_num"], s["status"], s["result"]) for s in result["steps"]) == [
        (n, "completed", f"Did step {n}.") for n in range(1, 5)
    ]
    assert result["depends_on"] == [[], [], [], [1, 2, 3]]
    assert len([r for r in requests if r.get("format")]) == 1  # planned once, before the kill
    asked = Counter(step_of(r) for r in requests if not r.get("format"))
    assert asked == {1: 1, 2: 2, 3: 2, 4: 1, None: 1}  # None: the answer
    resumed = Counter(step_of(r) for r in requests[before_resume:])
    assert resumed == {2: 1, 3: 1, 4: 1, None: 1}
    [step4] = [last_prompt(r) for r in requests if step_of(r) == 4]
    names = ("Pick a beach", "Book a room", "Pack a bag")
    earlier = "\n\n".join(f"Step {n} ({names[n - 1]}):\nDid step {n}." for n in (1, 2, 3))
    assert f"Earlier results:\n{earlier}\n" in step4


def test_sigkill_between_a_tool_call_and_the_next_turn_with_another_step_done(
    tmp_path: Path,
) -> None:
    """Steps 1 and 2 each call the `note` tool, side by side. In the round after the
    tools ran, step 2's last turn is answered while step 1's is held; kill; resume.
    Neither tool runs again, step 2's last turn is not asked again, step 1's is."""
    (tmp_path / "my_tools.py").write_text(NOTES_TOOLS)
    notes_file = tmp_path / "notes.txt"
    plan = typed_plan(("Note a", []), ("Note b", []), ("Sum up the notes", [1, 2]))
    held = HeldFirstCalls((1,), lambda r: step_in(r) if tool_messages(r) else None)

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(plan)
        step = step_in(request)
        if step is None:
            return Reply("Both notes are written.")
        if step == 3:
            return Reply("Step 3: two notes.")
        results = tool_messages(request)
        if not results:
            return Reply("", tool_calls=[("note", {"text": f"n{step}"})])
        said = f"Step {step}: the tool said {results[-1]['content']}"
        return Reply(said, hold=held.hold(request))

    db, thread = str(tmp_path / "runs.sqlite"), "tool-kill"
    env = {"NOTES_FILE": str(notes_file)}
    tools = ("--tools", "my_tools:TOOLS")
    with OllamaTestServer(reply) as server:
        proc = spawn_cli(
            "run", "Take two notes", *tools, "--db", db, "--thread", thread,
            host=server.url, cwd=tmp_path, env=env,
        )  # fmt: skip
        try:
            wait_for(held.all_arrived, proc, "step 1's turn after its tool call reached the model")
            wait_for(lambda: bool(pending_steps(db, thread)), proc, "a step was stored")
            stored = pending_steps(db, thread)
        finally:
            kill(proc, held)
        assert [(s.step_num, s.status) for s in stored] == [(2, "completed")]
        assert sorted(notes_file.read_text().splitlines()) == ["n1", "n2"]
        before_resume = len(server.chat_requests())

        done = run_cli(
            "resume", thread, "--db", db, "--json", host=server.url, cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr
        requests = server.chat_requests()

    assert sorted(notes_file.read_text().splitlines()) == ["n1", "n2"]  # no tool ran again
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    assert sorted((s["step_num"], s["status"], s["result"]) for s in result["steps"]) == [
        (1, "completed", "Step 1: the tool said noted: n1"),
        (2, "completed", "Step 2: the tool said noted: n2"),
        (3, "completed", "Step 3: two notes."),
    ]
    tools_called = {s["step_num"]: [c["tool"] for c in s["tool_calls"]] for s in result["steps"]}
    assert tools_called == {1: ["note"], 2: ["note"], 3: []}
    # Each step's turns: (step, whether the turn carries a tool result).
    turns = Counter((step_in(r), bool(tool_messages(r))) for r in requests if not r.get("format"))
    assert turns == {
        (1, False): 1,
        (2, False): 1,
        (1, True): 2,  # in flight at the kill, then again on resume
        (2, True): 1,  # finished before the kill
        (3, False): 1,
        (None, False): 1,  # the answer
    }
    resumed = Counter((step_in(r), bool(tool_messages(r))) for r in requests[before_resume:])
    assert resumed == {(1, True): 1, (3, False): 1, (None, False): 1}
    [step3] = [last_prompt(r) for r in requests if step_in(r) == 3]
    names = ("Note a", "Note b")
    earlier = "\n\n".join(
        f"Step {n} ({names[n - 1]}):\nStep {n}: the tool said noted: n{n}" for n in (1, 2)
    )
    assert f"Earlier results:\n{earlier}\n" in step3
