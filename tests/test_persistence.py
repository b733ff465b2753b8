"""Stored runs: strict deserialization, resume after an interruption, the SQLite store."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ScriptedChatModel, plan_text, step_line, wait_for
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde import _msgpack

from agentic_loop.core.events import ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.state import AgenticResult, AgenticStep, Plan
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import StoreError, list_runs, load_run, open_store
from agentic_loop.runs.streaming import stream_run


def test_tests_run_with_strict_msgpack() -> None:
    assert _msgpack.STRICT_MSGPACK_ENABLED


async def test_interrupted_run_resumes_over_the_same_store(any_store: str, caplog) -> None:
    db = any_store
    config = {"configurable": {"thread_id": "trip"}}
    first_model = ScriptedChatModel(
        script=[plan_text("A", "B", "C", "D"), "did A", "did B"], hold_at=4
    )
    async with open_store(db) as saver:
        graph = create_agentic_loop(first_model, checkpointer=saver)
        run = asyncio.create_task(stream_run(graph, {"task": "T"}, config, ProgressRelay()))
        await wait_for(lambda: first_model.held, what="step C's model call")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    # A new process would see the same store: open it afresh and rebuild the graph.
    second_model = ScriptedChatModel(script=["did C", "did D"])
    with caplog.at_level(logging.WARNING):
        async with open_store(db) as saver:
            graph = create_agentic_loop(second_model, checkpointer=saver)
            snapshot = await graph.aget_state(config)
            assert snapshot.next == ("execute",)
            assert [s.result for s in snapshot.values["steps"]] == ["did A", "did B"]
            assert isinstance(snapshot.values["plan"], Plan)
            assert isinstance(snapshot.values["steps"][0], AgenticStep)
            history = [s async for s in graph.aget_state_history(config)]
            assert len(history) >= 4

            result = await stream_run(graph, None, config, ProgressRelay())

            stored = await load_run(saver, "trip")
            listed = await list_runs(saver)
    assert [step_line(p) for p in second_model.prompts] == ["Step 3/4: C", "Step 4/4: D"]
    assert [s.result for s in result.steps] == ["did A", "did B", "did C", "did D"]
    assert result.status == "completed"
    assert stored is not None and isinstance(stored.result, AgenticResult)
    assert stored.result == result
    assert [r.thread_id for r in listed] == ["trip"]
    blocked = [
        r for r in caplog.records if "unregistered" in r.getMessage() or "Blocked" in r.getMessage()
    ]
    assert blocked == []


async def test_unknown_thread_loads_as_none(tmp_path: Path) -> None:
    async with open_store(tmp_path / "runs.sqlite") as saver:
        assert await load_run(saver, "nope") is None
        assert await list_runs(saver) == []


async def test_store_refuses_a_file_that_is_not_sqlite_and_leaves_it_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes")
    with pytest.raises(StoreError, match="is not a SQLite database"):
        async with open_store(notes):
            pass
    assert notes.read_text() == "my precious notes"
    with pytest.raises(StoreError, match="is a folder"):
        async with open_store(tmp_path):
            pass


async def test_store_creates_missing_folders(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "runs.sqlite"
    async with open_store(db):
        pass
    assert db.exists()


async def test_run_agentic_loop_resumes_an_unfinished_thread() -> None:
    saver = InMemorySaver()
    first = ScriptedChatModel(script=[plan_text("A", "B"), "did A"], hold_at=3)
    run = asyncio.create_task(run_agentic_loop("T", model=first, checkpointer=saver, thread_id="t"))
    await wait_for(lambda: first.held, what="step B's model call")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    second = ScriptedChatModel(script=["did B"])
    result = await run_agentic_loop("T", model=second, checkpointer=saver, thread_id="t")
    assert [s.result for s in result.steps] == ["did A", "did B"]
    assert len(second.prompts) == 1 and "Step 2/2: B" in second.prompts[0]


async def test_load_run_reads_an_in_memory_saver_under_strict_msgpack() -> None:
    saver = InMemorySaver()
    model = ScriptedChatModel(script=[plan_text("A"), "did A"])
    await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="t")
    stored = await load_run(saver, "t")
    assert stored is not None and isinstance(stored.result, AgenticResult)
    assert stored.plan == ["A"] and stored.status == "completed"


# Its own fake, not tests/model.py's: a child process runs it, without tests/ on its path.
RESTORE_WITHOUT_STRICT_MODE = """
import asyncio, logging
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from agentic_loop import checkpointer, create_agentic_loop
from agentic_loop.runs.store import load_run

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

class Model(FakeMessagesListChatModel):
    def bind_tools(self, tools, **kwargs):
        return self

def weather(city: str) -> str:
    \"\"\"Today's weather in a city.\"\"\"
    return f"Sunny in {city}."

async def main():
    call = {"name": "weather", "args": {"city": "Brighton"}, "id": "call-1"}
    model = Model(responses=[
        AIMessage("1. Look at the weather"), AIMessage("", tool_calls=[call]),
        AIMessage("It is sunny."), AIMessage("Go to the beach."),
    ])
    saver = SAVER
    graph = create_agentic_loop(model, checkpointer=saver, tools=[weather])
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"task": "Beach?", "review_plan": True}, config, durability="sync")
    await graph.ainvoke(Command(resume="approve"), config, durability="sync")
    result = (await graph.aget_state(config)).values["result"]
    history = [s async for s in graph.aget_state_history(config)]
    messages = [type(m).__name__ for s in history for m in s.values.get("messages", [])]
    stored = await load_run(saver, "t")
    print(type(result).__name__, result.status, result.steps[0].tool_calls[0].tool)
    print(sorted(set(messages)), stored.status, type(stored.steps[0]).__name__)

asyncio.run(main())
"""


@pytest.mark.parametrize(("saver", "warns"), [("checkpointer()", False), ("InMemorySaver()", True)])
def test_loop_checkpointer_restores_the_loop_types_without_strict_mode_or_warnings(
    saver: str, warns: bool, tmp_path: Path
) -> None:
    """Without LANGGRAPH_STRICT_MSGPACK, LangGraph warns for every type a plain saver restores
    that nobody registered; `agentic_loop.checkpointer()` registers the loop's, and restores
    a run with a tool call and a plan review whole."""
    script = tmp_path / "restore.py"
    script.write_text(RESTORE_WITHOUT_STRICT_MODE.replace("SAVER", saver), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "LANGGRAPH_STRICT_MSGPACK"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "AgenticResult completed weather",
        "['AIMessage', 'HumanMessage', 'SystemMessage', 'ToolMessage'] completed AgenticStep",
    ]
    assert ("Deserializing unregistered type agentic_loop.core.state.Plan" in done.stderr) is warns
    assert "Blocked deserialization" not in done.stderr
