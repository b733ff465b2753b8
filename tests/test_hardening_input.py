"""Hostile input (issue 20): a model server that keeps a reply open with empty chunks, JSON
nested thousands deep or holding NaN or huge numbers (a typed plan, an edited tool call in
the terminal and on the web page), and Rich's emoji codes in text the terminal shows."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, plan_text, run_cli
from langchain_core.messages import HumanMessage
from ollama_server import STEP_LINE, OllamaTestServer, Reply, last_prompt, plan_or_step
from starlette.testclient import TestClient

from agentic_loop import LoopOptions
from agentic_loop.core.answers import typed_args
from agentic_loop.core.dependencies import read_typed_plan
from agentic_loop.core.parsing import JSON_DEPTH, read_json
from agentic_loop.core.replies import ask
from agentic_loop.faces.web import create_app
from agentic_loop.models import describe_error, load_model
from agentic_loop.models.reply_timeout import ReplyTimeout
from agentic_loop.runs.service import Hooks, RunRequest, RunService
from agentic_loop.step_tools.loading import ToolOptions

TESTS = Path(__file__).parent
PLAN = ["Pick a beach", "Book a room"]
DEEP = "[" * 5000 + "]" * 5000
DEEPER = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000
NOTE_TOOL = '''
import os
from langchain_core.tools import tool


@tool
def note(text: str) -> str:
    """Append a line of text to the notes file."""
    with open(os.environ["NOTES_FILE"], "a", encoding="utf-8") as notes:
        notes.write(str(text) + "\\n")
    return f"noted: {text}"


TOOLS = [note]
'''


# --- 1. a reply of empty chunks ends at --timeout ----------------------------------------


def empty_chunks(request: dict[str, Any]) -> Reply:
    """Plans as asked; every other call gets empty chunks, one every half second, for ever."""
    if "Break this task into numbered steps" in last_prompt(request):
        return plan_or_step(PLAN)(request)
    return Reply("", endless=True, pause=0.5)


@pytest.mark.integration
async def test_a_reply_of_empty_chunks_ends_at_the_timeout(monkeypatch) -> None:
    with OllamaTestServer(lambda request: Reply("", endless=True, pause=0.2)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        model = load_model("ollama:test-model", timeout_s=1)
        started = time.monotonic()
        with pytest.raises(ReplyTimeout) as caught:
            await asyncio.wait_for(ask(model, [HumanMessage("Hi")], max_chars=1000), 15)
        elapsed = time.monotonic() - started

    assert 0.9 < elapsed < 5
    assert describe_error(caught.value, model) == (
        "the model did not answer in time (its reply was still coming after 1 s); "
        "try a smaller model or a longer --timeout"
    )


@pytest.mark.integration
def test_a_cli_run_on_a_server_of_empty_chunks_ends_at_its_timeout(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(empty_chunks) as server:
        started = time.monotonic()
        done = run_cli(
            "run", "Plan a trip", "--db", db, "--timeout", "2", "--json",
            host=server.url, timeout=60,
        )  # fmt: skip
        elapsed = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert elapsed < 45  # each step's call and its adaptation: 2 s each, and the answer
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    assert all("its reply was still coming after 2 s" in s["result"] for s in result["steps"])
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "the model did not answer in time" in error
    assert "Traceback" not in done.stderr


# --- 2. hostile JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (DEEP, f"nested deeper than {JSON_DEPTH} levels"),
        (DEEPER, f"nested deeper than {JSON_DEPTH} levels"),
        ("[" * (JSON_DEPTH + 1) + "]" * (JSON_DEPTH + 1), "nested deeper"),
        ('{"a": ' * (JSON_DEPTH + 1) + "1" + "}" * (JSON_DEPTH + 1), "nested deeper"),
        (f'{{"n": {HUGE}}}', "the integer 999999999999… (5000 characters) does not fit"),
        (f'{{"n": -{HUGE}}}', "does not fit in 64 bits"),
        ('{"n": 9223372036854775808}', "the integer 9223372036854775808 does not fit"),
        ('{"n": NaN}', "NaN is not a number JSON allows"),
        ('{"n": Infinity}', "Infinity is not a number JSON allows"),
        ('{"n": -Infinity}', "-Infinity is not a number JSON allows"),
        ('{"n": 1e999}', "the number 1e999 is too large"),
        ("{not json", "not JSON"),
    ],
)
def test_hostile_json_is_refused_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        read_json(text)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[" * JSON_DEPTH + "]" * JSON_DEPTH, json.loads("[" * JSON_DEPTH + "]" * JSON_DEPTH)),
        ('{"n": -9223372036854775808}', {"n": -(2**63)}),
        ('{"n": 9223372036854775807, "x": 1.5e300}', {"n": 2**63 - 1, "x": 1.5e300}),
        ('{"a": [1, {"b": null}], "c": "NaN"}', {"a": [1, {"b": None}], "c": "NaN"}),
    ],
)
def test_json_within_the_limits_reads_as_usual(text: str, value: Any) -> None:
    assert read_json(text) == value


def test_a_typed_plan_nested_thousands_deep_is_no_typed_plan() -> None:
    assert read_typed_plan(DEEP) is None
    assert read_typed_plan('{"steps": [{"id": 1, "description": "Go", "depends_on": []}]}')


def test_edited_arguments_that_cannot_be_read_say_why() -> None:
    with pytest.raises(ValueError, match="^unreadable arguments: NaN is not a number"):
        typed_args('{"text": NaN}')
    assert typed_args('{"text": "ok"}') == {"text": "ok"}


@pytest.mark.integration
def test_a_typed_plan_nested_thousands_deep_fails_planning(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")

    def reply(request: dict[str, Any]) -> Reply:
        return Reply(DEEP) if request.get("format") else Reply("Done.")

    with OllamaTestServer(reply) as server:
        done = run_cli("run", "Plan a trip", "--db", db, "--thread", "deep", host=server.url)
        shown = run_cli("show", "deep", "--db", db, "--json", host=server.url)

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert "Planning produced no steps" in done.stdout + done.stderr
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "failed"  # finished, not left unfinished


def one_note(request: dict[str, Any]) -> Reply:
    """Plan one step; in it call `note` once, then say what it gave back."""
    step_asked = any(STEP_LINE.search(str(m["content"])) for m in request["messages"])
    if not step_asked:
        return Reply("Plan:\n1. Take a note")
    results = [m for m in request["messages"] if m["role"] == "tool"]
    if not results:
        return Reply("", tool_calls=[("note", {"text": "first"})])
    return Reply(f"The tool said {results[-1]['content']}")


@pytest.mark.integration
def test_hostile_arguments_typed_at_an_approval_are_asked_again(tmp_path: Path) -> None:
    (tmp_path / "my_tools.py").write_text(NOTE_TOOL)
    notes = tmp_path / "notes.txt"
    answers = [
        ("e", DEEPER, f"nested deeper than {JSON_DEPTH} levels"),
        ("e", '{"text": NaN}', "NaN is not a number JSON allows"),
        ("e", f'{{"text": {HUGE}}}', "does not fit in 64 bits"),
        ("e", '{"text": 1e999}', "is too large"),
    ]
    typed = "".join(f"{choice}\n{args}\n" for choice, args, _ in answers) + 'e\n{"text": "ok"}\n'
    with OllamaTestServer(one_note) as server:
        done = run_cli(
            "run", "Take a note", "--tools", "my_tools:TOOLS", "--approve-tools", "--json",
            "--db", str(tmp_path / "r.sqlite"), host=server.url, cwd=tmp_path,
            env={"NOTES_FILE": str(notes)}, input=typed,
        )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    refusals = [line for line in done.stderr.splitlines() if "unreadable arguments" in line]
    assert len(refusals) == len(answers), done.stderr
    for line, (_, _, why) in zip(refusals, answers, strict=True):
        assert why in line and line.endswith("write them as a JSON object; try again.")
        assert len(line) < 200
    assert notes.read_text() == "ok\n"
    (step,) = json.loads(done.stdout)["steps"]
    assert [call["args"] for call in step["tool_calls"]] == [{"text": "ok"}]


def test_hostile_arguments_on_the_web_page_are_422(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    model = ScriptedChatModel(script=[plan_text("Add"), calls(("add", {"a": 1, "b": 1}))])
    tools = ToolOptions(imports=("sample_tools:TOOLS",), import_root=str(TESTS))
    request = RunRequest(
        task="Add", options=LoopOptions(tools=tools, approve_tools=("add",)), thread_id="run-t"
    )

    async def until_it_asks() -> None:
        async with RunService.open(db, model_factory=lambda spec, options: model) as service:
            await service.start(request, Hooks())

    asyncio.run(until_it_asks())
    app = create_app(db, model_factory=lambda spec, options: model)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        client.get("/new")
        token = client.cookies["agentic_loop_csrf"]
        (question,) = client.get("/api/runs/run-t").json()["questions"]
        for args, why in [
            ('{"a": ' + DEEPER + "}", f"nested deeper than {JSON_DEPTH} levels"),
            (f'{{"a": {HUGE}, "b": 1}}', "does not fit in 64 bits"),
            ('{"a": NaN, "b": 1}', "NaN is not a number JSON allows"),
            ('{"a": Infinity, "b": 1}', "Infinity is not a number JSON allows"),
        ]:
            form = {"csrf": token, "question": question["id"], "action": "edit", "args": args}
            response = client.post("/runs/run-t/answer", data=form, follow_redirects=False)
            assert response.status_code == 422, response.text[:200]
            assert "unreadable arguments: " in response.text and why in response.text
        assert client.get("/api/runs/run-t").json()["status"] == "awaiting approval"


# --- 3. emoji codes are shown as written ---------------------------------------------------

EMOJI = ("🔥", "🚀", "🏭")


def with_emoji_codes(request: dict[str, Any]) -> Reply:
    prompt = last_prompt(request)
    if "Break this task into numbered steps" in prompt:
        return Reply("1. Find :fire: wood\n2. Pack the :rocket: kit")
    if (match := STEP_LINE.search(prompt)) is not None:
        return Reply(f"Oak logs :fire: stacked by shed {match[1]}.")
    return Reply("Light the oak logs at noon :rocket:")


@pytest.mark.integration
def test_emoji_codes_in_a_task_and_in_model_text_print_as_written(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    wide = {"COLUMNS": "200"}  # the task stays on one line of the table
    with OllamaTestServer(with_emoji_codes) as server:
        ran = run_cli("run", "Go :fire: :rocket:", "--db", db, "--thread", "t", host=server.url)
        shown = run_cli("show", "t", "--db", db, host=server.url)
        listed = run_cli("runs", "--db", db, host=server.url, env=wide)
        missing = run_cli("show", ":fire:", "--db", db, host=server.url)

    for done in (ran, shown, listed):
        assert done.returncode == 0, done.stderr
        assert "Go :fire: :rocket:" in done.stdout, done.stdout
        assert not any(picture in done.stdout + done.stderr for picture in EMOJI)
    for done in (ran, shown):
        assert "Find :fire: wood" in done.stdout and "logs :fire: stacked" in done.stdout
        assert "oak logs at noon :rocket:" in done.stdout
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no run with thread id ':fire:'"), missing.stderr
    assert not any(picture in missing.stderr for picture in EMOJI)


def test_emoji_codes_in_an_error_print_as_written(tmp_path: Path) -> None:
    (tmp_path / "badtools_nottool.py").write_text("x = 1\n")
    db = str(tmp_path / "runs.sqlite")
    bad_tools = run_cli(
        "run", "Go", "--tools", "badtools_nottool:factory:", "--db", db,
        host="127.0.0.1:9", cwd=tmp_path,
    )  # fmt: skip

    assert bad_tools.returncode == 2
    assert "badtools_nottool:factory::" in bad_tools.stderr, bad_tools.stderr
    assert len(bad_tools.stderr.strip().splitlines()) == 1, bad_tools.stderr
    assert not any(picture in bad_tools.stderr for picture in EMOJI)
