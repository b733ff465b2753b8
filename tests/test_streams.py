"""Streams a UI can show: `messages` mode carries what the models said, once, with the plan
step in its metadata; progress events reach `astream_events` as custom events."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, plan_text
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama
from ollama_server import OllamaTestServer, Reply, last_prompt, step_of

from agentic_loop import create_agentic_loop
from agentic_loop.core import events


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def streamed(graph: Any, task: str = "T") -> list[tuple[Any, dict[str, Any]]]:
    return [item async for item in graph.astream({"task": task}, stream_mode="messages")]


async def test_messages_carry_no_prompt_and_each_tool_call_once() -> None:
    model = ScriptedChatModel(
        script=[plan_text("Add", "Say"), calls(("add", {"a": 1, "b": 2})), "three", "said"]
    )
    items = await streamed(create_agentic_loop(model, tools=[add]))
    kinds = [type(message).__name__ for message, _ in items]
    assert not any(isinstance(m, SystemMessage | HumanMessage) for m, _ in items), kinds
    assert kinds == [
        "AIMessage",  # the plan
        "AIMessage",  # step 1 calls the tool
        "ToolMessage",
        "AIMessage",  # step 1's result
        "AIMessage",  # step 2's result
        "AIMessage",  # the answer
    ]
    tool_calls = [c["id"] for m, _ in items if isinstance(m, AIMessage) for c in m.tool_calls]
    assert len(tool_calls) == len(set(tool_calls)) == 1
    nodes = [(meta["langgraph_node"], meta.get("step_num")) for _, meta in items]
    assert nodes == [
        ("plan", None),
        ("execute", 1),
        ("call_tool", None),
        ("execute", 1),
        ("execute", 2),
        ("answer", None),
    ]


async def test_an_adapted_step_names_its_step_too() -> None:
    model = ScriptedChatModel(script=[plan_text("A"), RuntimeError("down"), "did A another way"])
    items = await streamed(create_agentic_loop(model, replan="never"))
    assert [(meta["langgraph_node"], meta.get("step_num")) for _, meta in items] == [
        ("plan", None),
        ("adapt", 1),
        ("answer", None),
    ]


@pytest.mark.integration
async def test_streamed_chunks_of_steps_side_by_side_are_told_apart_by_step() -> None:
    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(
                '{"steps": [{"id": 1, "description": "Trains", "depends_on": []},'
                ' {"id": 2, "description": "Hotels", "depends_on": []}]}'
            )
        if (n := step_of(request)) is not None:
            return Reply(f"result of step {n} in several words")
        assert "Task:" in last_prompt(request)
        return Reply("the answer in words")

    with OllamaTestServer(reply) as server:
        model = ChatOllama(model="test-model", base_url=server.url)
        items = await streamed(create_agentic_loop(model))
    chunks = [(m, meta) for m, meta in items if meta["langgraph_node"] == "execute"]
    assert chunks and all(isinstance(m, AIMessageChunk) for m, _ in chunks)
    said: dict[int, str] = {}
    for message, meta in chunks:
        said[meta["step_num"]] = said.get(meta["step_num"], "") + message.text
    assert said == {n: f"result of step {n} in several words" for n in (1, 2)}
    assert not any(isinstance(m, SystemMessage | HumanMessage) for m, _ in items)


async def test_progress_events_reach_astream_events_as_custom_events() -> None:
    model = ScriptedChatModel(
        script=[plan_text("Add", "Say"), calls(("add", {"a": 1, "b": 2})), "three", "said"]
    )
    graph = create_agentic_loop(model, tools=[add])
    custom = [
        (item["name"], item["data"])
        async for item in graph.astream_events({"task": "T"}, version="v2")
        if item["event"] == "on_custom_event"
    ]
    written = [
        (chunk["event"], chunk["data"])
        async for chunk in create_agentic_loop(
            ScriptedChatModel(
                script=[plan_text("Add", "Say"), calls(("add", {"a": 1, "b": 2})), "three", "said"]
            ),
            tools=[add],
        ).astream({"task": "T"}, stream_mode="custom")
    ]
    assert [name for name, _ in custom] == [name for name, _ in written]
    assert Counter(name for name, _ in custom) == {
        events.PLAN_READY: 1,
        events.STEP_STARTED: 2,
        events.TOOL_CALLED: 1,
        events.TOOL_RESULT: 1,
        events.STEP_COMPLETE: 2,
        events.ANSWER_READY: 1,
        events.TASK_COMPLETE: 1,
    }
    result = dict(custom)[events.TOOL_RESULT]
    assert result["tool"] == "add" and result["result"] == "3" and result["step"] == 1
