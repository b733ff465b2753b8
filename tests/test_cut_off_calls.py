"""Tool calls cut off mid-call: each call is recorded in the loop's store before its tool
runs, so that on resume a call that started and has no result is not run again blindly.
An idempotent tool runs again with the same key; another tool's call is asked about when
its calls need approval, and otherwise the model is told that its outcome is unknown.

In this process a run is cut off by cancelling it while a tool waits after its side
effect, which leaves the checkpoint as a kill does (the task's writes are never stored);
at the end, real CLI processes are SIGKILLed while a slow tool runs, then resumed."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import cut_off_tools
import pytest
from conftest import ScriptedChatModel, calls, plan_text, run_cli, wait_for, wait_until
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.memory import InMemoryStore
from ollama_server import OllamaTestServer, tool_messages
from starlette.testclient import TestClient
from test_cli_tools import one_tool_call_per_step

from agentic_loop import LoopOptions
from agentic_loop.core import events
from agentic_loop.core.answers import read_approval
from agentic_loop.core.events import ProgressEvent, ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.nodes.approve_tools import CUT_OFF_QUESTION
from agentic_loop.core.started_calls import StartedCall, call_record, cut_off_action
from agentic_loop.faces.terminal import CUT_OFF_NOTES
from agentic_loop.faces.web import create_app
from agentic_loop.runs.call_store import call_store
from agentic_loop.runs.records import load_run
from agentic_loop.runs.service import BadAnswer, Hooks, RunRequest, RunService
from agentic_loop.runs.store import open_store
from agentic_loop.runs.streaming import stream_run
from agentic_loop.step_tools.loading import ToolOptions

TESTS = Path(__file__).parent
THREAD = "cut.1"  # a dot: the store's namespaces take none, so the records' label escapes it
CONFIG = {"configurable": {"thread_id": THREAD}}
CUT_OFF = "this call was cut off when the run stopped"


@pytest.fixture(autouse=True)
def notebook() -> Iterator[list[tuple[str, str]]]:
    """The calls `cut_off_tools` ran, (key, text) each; calls wait an hour until a test
    lets them go (`let_calls_finish`)."""
    cut_off_tools.noted.clear()
    cut_off_tools.pause_s = 3600.0
    yield cut_off_tools.noted
    cut_off_tools.pause_s = 0.0


def let_calls_finish() -> None:
    cut_off_tools.pause_s = 0.0


class Seen(ProgressRelay):
    """Keeps the progress events it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[ProgressEvent] = []

    async def deliver(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def cut_offs(self) -> list[str]:
        return [e["data"]["action"] for e in self.events if e["event"] == events.TOOL_CUT_OFF]


class Approvals:
    """Answers tool approvals in turn from `answers`, keeping each request."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> Any:
        self.requests.append(request)
        return self.answers.pop(0)


def one_note(tool: str = "note", then: str = "Noted.") -> ScriptedChatModel:
    """A one-step run whose step calls `tool` once, then says `then`."""
    return ScriptedChatModel(script=[plan_text("Take a note"), calls((tool, {"text": "a"})), then])


def loop(model: ScriptedChatModel, saver: Any, store: Any, **choices: Any) -> Any:
    return create_agentic_loop(
        model, checkpointer=saver, store=store, tools=cut_off_tools.TOOLS, **choices
    )


async def cut_off(graph: Any, graph_input: Any, approve: Approvals | None = None) -> None:
    """Run until a tool call has had its side effect, then stop the run while the call
    waits, as a kill would: its result is never stored."""
    before = len(cut_off_tools.noted)
    run = asyncio.create_task(
        stream_run(graph, graph_input, CONFIG, ProgressRelay(), approve=approve)
    )
    await wait_for(lambda: len(cut_off_tools.noted) > before or run.done(), what="the tool call")
    assert not run.done(), run
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await settled(graph.checkpointer)


async def settled(saver: Any) -> None:
    """Let the writes LangGraph still makes for a run just cancelled (the cancelled task's
    error, in a task of its own) end before the test goes on: a SQLite connection closed
    under a write keeps its lock until the write's statement is collected."""
    for _ in range(5):
        await asyncio.sleep(0)
    if isinstance(saver, AsyncSqliteSaver):
        async with saver.lock:  # a write in progress holds it
            pass


def tool_results(model: ScriptedChatModel) -> list[ToolMessage]:
    """The tool results the model saw in its last call."""
    return [m for m in model.conversations[-1] if isinstance(m, ToolMessage)]


# --- what becomes of a call --------------------------------------------------------------

RECORD: StartedCall = {"tool": "t", "call_id": "c", "starts": 1, "rerun_approved": False}
APPROVED: StartedCall = {**RECORD, "starts": 2, "rerun_approved": True}


@pytest.mark.parametrize(
    ("earlier", "idempotent", "approvals", "action"),
    [
        (None, False, False, "run"),
        (None, True, True, "run"),
        (RECORD, True, False, "rerun"),
        (RECORD, True, True, "rerun"),  # idempotent: nobody is asked
        (APPROVED, True, True, "rerun"),
        (RECORD, False, True, "ask"),
        (RECORD, False, False, "unknown"),
        (APPROVED, False, True, "unknown"),  # an approved run again was cut off too
    ],
)
def test_cut_off_action(
    earlier: StartedCall | None, idempotent: bool, approvals: bool, action: str
) -> None:
    assert cut_off_action(earlier, idempotent=idempotent, approvals=approvals) == action


def test_records_are_kept_per_thread_and_call() -> None:
    store = InMemoryStore()
    record = call_record(store, {"configurable": {"thread_id": "a.b%c"}}, "step1-x", "call-1")
    assert record is not None
    assert record.namespace == ("tool_calls", "a%2Eb%25c")
    assert record.key == "step1-x/call-1"
    assert call_record(None, {"configurable": {"thread_id": "t"}}, "x", "c") is None
    assert call_record(store, {}, "x", "c") is None  # no thread, no resume: nothing to record


@pytest.mark.parametrize(
    ("answer", "problem"),
    [({"action": "edit", "args": {"text": "b"}}, "runs again as it was, or not at all")],
)
def test_a_cut_off_call_takes_no_edit(answer: object, problem: str) -> None:
    assert read_approval(answer)["action"] == "edit"
    with pytest.raises(ValueError, match=problem):
        read_approval(answer, cut_off=True)
    assert read_approval("approve", cut_off=True) == {"action": "approve"}
    assert read_approval(False, cut_off=True) == {"action": "reject"}


# --- in this process, over a real store --------------------------------------------------


async def test_a_call_is_stored_as_started_before_its_tool_runs(tmp_path: Path) -> None:
    """While the tool runs, its record is committed: another connection to the file
    (another process, as good as) reads it."""
    db = tmp_path / "runs.sqlite"
    async with open_store(db) as saver:
        graph = loop(one_note(), saver, await call_store(saver))
        run = asyncio.create_task(stream_run(graph, {"task": "T"}, CONFIG, ProgressRelay()))
        await wait_for(lambda: cut_off_tools.noted, what="the tool call")
        async with aiosqlite.connect(db) as other:
            async with other.execute("SELECT prefix, key, value FROM store") as cursor:
                rows = list(await cursor.fetchall())
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    [(prefix, key, value)] = rows
    [(call_id, _)] = cut_off_tools.noted
    assert prefix == "tool_calls.cut%2E1"
    assert key.endswith(f"/{call_id}")
    assert json.loads(value) == {
        "tool": "note",
        "call_id": call_id,
        "starts": 1,
        "rerun_approved": False,
    }


async def test_a_cut_off_call_is_not_run_again_and_the_model_hears_its_outcome_is_unknown(
    any_store: str,
) -> None:
    async with open_store(any_store) as saver:
        await cut_off(loop(one_note(), saver, await call_store(saver)), {"task": "T"})
    let_calls_finish()

    model = ScriptedChatModel(script=["I will check the notebook first."])
    seen = Seen()
    async with open_store(any_store) as saver:
        graph = loop(model, saver, await call_store(saver))
        result = await stream_run(graph, None, CONFIG, seen)

    assert len(cut_off_tools.noted) == 1
    [told] = tool_results(model)
    assert told.status == "error"
    assert CUT_OFF in told.text and "whether it took effect is unknown" in told.text
    assert "It was not run again" in told.text
    [call] = result.steps[0].tool_calls
    assert (call.tool, call.status, call.result) == ("note", "error", told.text)
    assert result.steps[0].result == "I will check the notebook first."
    assert seen.cut_offs() == ["unknown"]
    assert [e["event"] for e in seen.events][:2] == [events.TOOL_CUT_OFF, events.TOOL_RESULT]


async def test_an_idempotent_tool_runs_again_with_the_same_key(any_store: str) -> None:
    first = one_note("put_note")
    async with open_store(any_store) as saver:
        await cut_off(loop(first, saver, await call_store(saver)), {"task": "T"})
    let_calls_finish()

    model = ScriptedChatModel(script=["Put."])
    seen = Seen()
    async with open_store(any_store) as saver:
        result = await stream_run(loop(model, saver, await call_store(saver)), None, CONFIG, seen)

    (key1, text1), (key2, text2) = cut_off_tools.noted
    assert text1 == text2 == "a"
    assert key1 == key2 == first.script[1].tool_calls[0]["id"]  # the call's id, both times
    [told] = tool_results(model)
    assert (told.status, told.text) == ("success", "put 'a'")
    assert seen.cut_offs() == ["rerun"]
    assert result.steps[0].tool_calls[0].status == "success"


async def test_with_approvals_a_cut_off_call_is_asked_about_and_a_no_keeps_it_from_running(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite"
    async with open_store(db) as saver:
        graph = loop(one_note(), saver, await call_store(saver), approve_tools=("note",))
        await cut_off(graph, {"task": "T"}, approve=Approvals("approve"))
    let_calls_finish()

    model = ScriptedChatModel(script=["Carried on without it."])
    approvals = Approvals({"action": "edit", "args": {"text": "b"}}, "reject")
    seen = Seen()
    async with open_store(db) as saver:
        graph = loop(model, saver, await call_store(saver), approve_tools=("note",))
        result = await stream_run(graph, None, CONFIG, seen, approve=approvals)

    assert len(cut_off_tools.noted) == 1
    asked, again = approvals.requests
    assert asked["kind"] == "tool_approval" and asked["cut_off"] is True
    assert asked["question"] == CUT_OFF_QUESTION
    assert (asked["tool"], asked["args"], asked["step"]) == ("note", {"text": "a"}, 1)
    assert "runs again as it was, or not at all" in again["problem"]  # an edit is no answer
    [told] = tool_results(model)
    assert told.status == "error" and CUT_OFF in told.text
    assert "A reviewer chose not to run it again." in told.text
    assert seen.cut_offs() == ["asked", "asked", "declined"]
    assert result.steps[0].tool_calls[0].status == "error"


async def test_a_yes_runs_it_once_more_and_a_second_cut_off_is_not_asked_about(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite"
    async with open_store(db) as saver:
        graph = loop(one_note(), saver, await call_store(saver), approve_tools=True)
        await cut_off(graph, {"task": "T"}, approve=Approvals("approve"))
        # Resumed, asked, approved: the call runs again, and is cut off again.
        approvals = Approvals({"action": "approve"})
        await cut_off(graph, None, approve=approvals)
    assert len(cut_off_tools.noted) == 2
    assert approvals.requests[0]["cut_off"] is True
    let_calls_finish()

    model = ScriptedChatModel(script=["Checked."])
    seen = Seen()
    async with open_store(db) as saver:
        graph = loop(model, saver, await call_store(saver), approve_tools=True)
        result = await stream_run(graph, None, CONFIG, seen, approve=Approvals())

    assert len(cut_off_tools.noted) == 2  # not a third time, nor asked again
    [told] = tool_results(model)
    assert CUT_OFF in told.text and "It was not run again" in told.text
    assert seen.cut_offs() == ["unknown"]
    assert result.status == "completed"


async def test_a_run_stored_without_records_runs_its_cut_off_call_again(tmp_path: Path) -> None:
    """A run cut off without a store (compiled without one, or stored by an earlier
    version) has no record of its call: on resume the call runs again, as it always did."""
    db = tmp_path / "runs.sqlite"
    async with open_store(db) as saver:
        await cut_off(loop(one_note(), saver, None), {"task": "T"})
    let_calls_finish()

    model = ScriptedChatModel(script=["Noted."])
    seen = Seen()
    async with open_store(db) as saver:
        result = await stream_run(loop(model, saver, await call_store(saver)), None, CONFIG, seen)

    assert [text for _, text in cut_off_tools.noted] == ["a", "a"]
    assert seen.cut_offs() == []
    assert result.steps[0].tool_calls[0].result == "noted 'a'"


async def test_without_a_store_a_call_cut_off_runs_again() -> None:
    saver = InMemorySaver()
    await cut_off(loop(one_note(), saver, None), {"task": "T"})
    let_calls_finish()
    await stream_run(loop(ScriptedChatModel(script=["Noted."]), saver, None), None, CONFIG, Seen())
    assert len(cut_off_tools.noted) == 2


async def test_several_processes_set_up_one_store_at_once(tmp_path: Path) -> None:
    """Each opener makes the store's tables in one transaction, in turn: none fails."""
    db = tmp_path / "new.sqlite"

    async def open_and_record(n: int) -> None:
        async with open_store(db) as saver:
            store = await call_store(saver)
            assert store is not None
            await store.aput(("tool_calls", f"t{n}"), "k", {"n": n})

    await asyncio.gather(*(open_and_record(n) for n in range(4)))
    async with open_store(db) as saver:
        store = await call_store(saver)
        assert store is not None
        assert len(await store.asearch(("tool_calls",))) == 4


# --- the service and the web app ---------------------------------------------------------


def tool_request(thread_id: str) -> RunRequest:
    tools = ToolOptions(imports=("cut_off_tools:TOOLS",), import_root=str(TESTS))
    options = LoopOptions(tools=tools, approve_tools=("note",))
    return RunRequest(task="Take a note", options=options, thread_id=thread_id)


async def stop_mid_call(db: Path, model: ScriptedChatModel, thread_id: str) -> None:
    """Start the run through the service, approve its call, and stop it mid-call."""
    async with RunService.open(db, model_factory=lambda spec, options: model) as service:
        job = await service.launch(
            lambda: service.start(tool_request(thread_id), Hooks(approve=lambda r: "approve")),
            thread_id,
        )
        await wait_for(lambda: cut_off_tools.noted or job.done(), what="the tool call")
        assert not job.done()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await settled(service.saver)


async def test_the_service_asks_about_a_cut_off_call_and_takes_its_answer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite"
    model = ScriptedChatModel(
        script=[plan_text("Take a note"), calls(("note", {"text": "a"})), "Left it."]
    )
    await stop_mid_call(db, model, "svc")
    let_calls_finish()
    async with RunService.open(db, model_factory=lambda spec, options: model) as service:
        assert (await service.run("svc")).status == "interrupted"
        waiting = await service.resume("svc")
        assert waiting.result is None
        [question] = waiting.waiting
        assert question.kind == "tool_approval" and question.request["cut_off"] is True
        assert (await service.run("svc")).status == "awaiting approval"
        stored = await load_run(service.saver, "svc")  # one rule, read without the service
        assert stored is not None and stored.status == "awaiting approval"
        with pytest.raises(BadAnswer, match="runs again as it was"):
            await service.answer("svc", {question.id: {"action": "edit", "args": {}}})
        done = await service.answer("svc", {question.id: {"action": "reject", "reason": "no"}})
    assert done.result is not None and done.result.status == "completed"
    assert "A reviewer chose not to run it again: no." in done.result.steps[0].tool_calls[0].result
    assert len(cut_off_tools.noted) == 1


def test_the_web_page_asks_whether_to_run_a_cut_off_call_again(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    model = ScriptedChatModel(
        script=[plan_text("Take a note"), calls(("note", {"text": "a"})), "Left it."]
    )
    asyncio.run(stop_mid_call(db, model, "web"))
    let_calls_finish()
    app = create_app(db, model_factory=lambda spec, options: model)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/runs/web").json()["status"] == "interrupted"
        client.get("/new")
        token = client.cookies["agentic_loop_csrf"]
        client.post("/runs/web/resume", data={"csrf": token}, follow_redirects=False)
        wait_until(
            lambda: client.get("/api/runs/web").json()["status"] == "awaiting approval",
            what="the question about the cut-off call",
        )
        view = client.get("/api/runs/web").json()
        [question] = view["questions"]
        assert question["request"]["cut_off"] is True
        page = client.get("/runs/web").text
        assert "call of <code>note</code> was cut off" in page
        assert "Run it again" in page and "Run as edited" not in page
        answered = client.post(
            "/runs/web/answer",
            data={"csrf": token, "question": question["id"], "action": "reject", "reason": ""},
            follow_redirects=False,
        )
        assert answered.status_code == 303, answered.text
        wait_until(
            lambda: client.get("/api/runs/web").json()["status"] == "completed",
            what="the run's end",
        )
    assert len(cut_off_tools.noted) == 1


async def test_the_terminal_says_what_becomes_of_a_cut_off_call() -> None:
    from io import StringIO

    from rich.console import Console

    from agentic_loop.faces.terminal import TerminalProgress

    out = StringIO()
    display = TerminalProgress(Console(file=out, width=200))
    for action in ("rerun", "asked", "approved", "declined", "unknown"):
        item = events.tool_cut_off("t", 1, "note", {"text": "a"}, action)  # type: ignore[arg-type]
        await display.broadcast(item["event"], dict(item["data"]))
    lines = out.getvalue().splitlines()
    assert lines == [
        f'  ⚠ note {{"text": "a"}} was cut off when the run stopped; {CUT_OFF_NOTES[action]}'
        for action in ("rerun", "asked", "approved", "declined", "unknown")
    ]


# --- real processes, SIGKILLed mid-call ----------------------------------------------------

KILL_TOOLS = '''
import os
import time
from typing import Annotated

from langchain_core.tools import InjectedToolCallId, tool


def write_down(key, text):
    with open(os.environ["NOTES_FILE"], "a", encoding="utf-8") as notes:
        notes.write(f"{key} {text}\\n")


@tool
def note(text: str, key: Annotated[str, InjectedToolCallId]) -> str:
    """Append a line of text to the notes file."""
    write_down(key, text)
    time.sleep(0.6)
    return f"noted: {text}"


@tool
def put_note(text: str, key: Annotated[str, InjectedToolCallId]) -> str:
    """Put a line of text in the notes file, once for each key."""
    write_down(key, text)
    time.sleep(0.6)
    return f"put: {text}"


put_note.metadata = {"idempotent": True}
TOOLS = [note, put_note]
'''
"""The tools of the killed runs: each writes its key (the tool call id) and its text,
then takes 0.6 s more: a kill in that time cuts the call off after its side effect."""

MODES = ("unknown", "idempotent", "declined")
"""`note` without approvals; `put_note`, idempotent; `note` with approvals, and a no to
running it again."""
SEED_ENV = "AGENTIC_LOOP_CUT_OFF_SEED"
SEED = 2021
CUTS_PER_MODE = 7
"""Trials run in each mode until this many were cut off mid-call: 21 in all."""
MOST_TRIALS_PER_MODE = 14


@dataclass
class KillTrial:
    mode: str
    number: int
    delay: float
    """Seconds from the tool's side effect to the SIGKILL."""
    cut: bool = False
    """Whether the kill cut the call off: it had no stored result when the run resumed."""
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        what = "cut off" if self.cut else "had ended"
        return f"{self.mode} #{self.number}: killed {self.delay:.2f} s in, {what}, {self.lines}"


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def spawn_run(folder: Path, host: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """`agentic-loop run` in a process of its own, its stdin a pipe to answer on."""
    return subprocess.Popen(
        [sys.executable, "-m", "agentic_loop", "run", *args, "--model", "ollama:test-model"],
        env={**os.environ, "OLLAMA_HOST": host, **env},
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_mid_call(folder: Path, trial: KillTrial) -> None:
    """Run a one-step task whose step calls the mode's tool once; SIGKILL the process
    `trial.delay` s after the tool's side effect; resume it; check what came of the call."""
    name = f"{trial.mode}-{trial.number}"
    db, notes = folder / f"{name}.sqlite", folder / f"{name}.txt"
    env = {"NOTES_FILE": str(notes)}
    tool = "put_note" if trial.mode == "idempotent" else "note"
    reply = one_tool_call_per_step(["Take a note"], tool, lambda step: {"text": name})
    approvals = ("--approve-tool", "note") if trial.mode == "declined" else ()
    with OllamaTestServer(reply) as server:
        with spawn_run(
            folder, server.url, env, "Take a note", "--tools", "kill_tools:TOOLS",
            "--db", str(db), "--thread", name, *approvals,
        ) as proc:  # fmt: skip
            try:
                assert proc.stdin is not None and proc.stderr is not None
                proc.stdin.write("a\n" if approvals else "")  # approve the call, the first time
                proc.stdin.close()
                wait_until(
                    lambda: "\n" in read(notes) or proc.poll() is not None,
                    what=f"{name}'s tool call",
                    timeout=60,
                )
                assert proc.poll() is None, f"{name} ended first: {proc.stderr.read()}"
                time.sleep(trial.delay)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(timeout=30) == -signal.SIGKILL, name
            finally:
                proc.kill()
        before = len(server.chat_requests())
        answer = "r\nnot twice\n" if trial.mode == "declined" else None
        done = run_cli(
            "resume", name, "--db", str(db), "--json",
            host=server.url, cwd=folder, env=env, input=answer,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stderr}"
        told = [m["content"] for r in server.chat_requests()[before:] for m in tool_messages(r)]

    trial.lines = notes.read_text().splitlines()
    result = json.loads(done.stdout)
    assert result["status"] == "completed", f"{name}: {result}"
    [call] = result["steps"][0]["tool_calls"]
    # Every line is the one call's, with its key: the tool call id.
    assert len({line.split(" ", 1)[0] for line in trial.lines}) == 1, trial
    assert all(line.endswith(f" {name}") for line in trial.lines), trial
    if trial.mode == "idempotent":
        assert len(trial.lines) in (1, 2), trial
        trial.cut = len(trial.lines) == 2  # run again, with the same key
        assert (call["status"], call["result"]) == ("success", f"put: {name}"), trial
        assert trial.cut == ("its tool is idempotent: it runs again" in done.stderr), trial
        return
    assert len(trial.lines) == 1, trial  # never twice
    trial.cut = CUT_OFF in call["result"]
    if not trial.cut:  # its result was stored before the kill
        assert call["result"] == f"noted: {name}", trial
        return
    assert call["status"] == "error" and call["result"] in told, trial  # the model was told
    assert "whether it took effect is unknown" in call["result"], trial
    if trial.mode == "unknown":
        assert "It was not run again" in call["result"], trial
    else:
        assert "was cut off when the run stopped" in done.stderr, trial  # asked
        assert "Run it again? [a]pprove, [r]eject" in done.stderr, trial
        assert "A reviewer chose not to run it again: not twice." in call["result"], trial


def kill_trials(folder: Path, mode: str, seed: int) -> list[KillTrial]:
    """Trials of `mode`, each killed at a delay drawn from the seed, until
    `CUTS_PER_MODE` of them were cut off mid-call."""
    rng = random.Random(f"{seed}-{mode}")
    trials: list[KillTrial] = []
    while sum(t.cut for t in trials) < CUTS_PER_MODE:
        assert len(trials) < MOST_TRIALS_PER_MODE, [str(t) for t in trials]
        trial = KillTrial(mode, len(trials) + 1, rng.uniform(0.0, 0.5))
        kill_mid_call(folder, trial)
        trials.append(trial)
    return trials


@pytest.mark.integration
def test_sigkills_during_a_slow_tool_never_run_a_call_twice_without_a_yes(tmp_path: Path) -> None:
    """At least 21 seeded SIGKILLs of `agentic-loop run`, each while its tool sleeps after
    its side effect, each resumed: `note` runs at most once (the model is told its
    outcome is unknown, or a person declines to run it again); `put_note`, idempotent,
    runs again with the same key."""
    (tmp_path / "kill_tools.py").write_text(KILL_TOOLS)
    seed = int(os.environ.get(SEED_ENV, str(SEED)))
    with ThreadPoolExecutor(max_workers=len(MODES)) as pool:
        futures = [pool.submit(kill_trials, tmp_path, mode, seed) for mode in MODES]
        try:
            trials = [trial for future in futures for trial in future.result()]
        except BaseException as exc:
            raise AssertionError(f"{exc}\nrerun with {SEED_ENV}={seed}") from exc
    print(f"seed {seed}:", *trials, sep="\n  ")
    print(
        f"{len(trials)} SIGKILLs, {sum(t.cut for t in trials)} mid-call; by mode:",
        {m: (len([t for t in trials if t.mode == m]), sum(t.cut for t in trials if t.mode == m))
         for m in MODES},
    )  # fmt: skip
    assert sum(t.cut for t in trials) >= 20
