"""The loop as one node of a bigger graph that holds the checkpointer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypedDict

import pytest
from conftest import ScriptedChatModel, plan_text, step_line, wait_for
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from agentic_loop.core import events
from agentic_loop.core.compose import add_agentic_loop
from agentic_loop.core.graph import build_graph
from agentic_loop.core.state import AgenticInput, AgenticOutput, AgenticResult
from agentic_loop.runs.store import open_store


class ParentState(AgenticInput, AgenticOutput, total=False):
    """A parent's own state: the loop's `task` and `result`, plus keys of its own, two of
    which share names with the loop's internal state."""

    request: str
    steps: list[str]
    plan: str
    answer: str


def route(state: ParentState) -> dict[str, Any]:
    return {"task": state["request"].strip().capitalize()}


def use_result(state: ParentState) -> dict[str, Any]:
    result = state["result"]
    return {"answer": f"{result.status}: {len(result.steps)} steps"}


def parent_graph(model: Runnable, **loop_settings: Any) -> StateGraph:
    builder = StateGraph(ParentState)
    builder.add_node("route", route)
    builder.add_node("loop", build_graph(model, **loop_settings).compile())
    builder.add_node("use_result", use_result)
    builder.add_edge(START, "route")
    builder.add_edge("route", "loop")
    builder.add_edge("loop", "use_result")
    builder.add_edge("use_result", END)
    return builder


START_INPUT = {"request": " plan a trip ", "steps": ["parent's own"], "plan": "parent's own"}


async def test_loop_interrupted_inside_a_parent_resumes_from_the_parent(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    config = {"configurable": {"thread_id": "outer"}}
    first = ScriptedChatModel(script=[plan_text("A", "B", "C"), "did A", "did B"], hold_at=4)
    async with open_store(db) as saver:
        parent = parent_graph(first).compile(checkpointer=saver)
        run = asyncio.create_task(parent.ainvoke(START_INPUT, config, durability="sync"))
        await wait_for(lambda: first.held, what="step C's model call")
        run.cancel()  # as Ctrl-C would
        with pytest.raises(asyncio.CancelledError):
            await run

    # As after a restart: a new model and a parent rebuilt over the same file.
    second = ScriptedChatModel(script=["did C"])
    async with open_store(db) as saver:
        parent = parent_graph(second).compile(checkpointer=saver)
        waiting = await parent.aget_state(config, subgraphs=True)
        assert waiting.next == ("loop",)
        inner = waiting.tasks[0].state
        assert [s.result for s in inner.values["steps"]] == ["did A", "did B"]

        output = await parent.ainvoke(None, config, durability="sync")

    assert [step_line(p) for p in second.prompts] == ["Step 3/3: C"]
    assert [s.result for s in output["result"].steps] == ["did A", "did B", "did C"]
    assert output["answer"] == "completed: 3 steps"
    # The loop wrote only `result`: the parent's own keys of the same names are untouched.
    assert output["steps"] == ["parent's own"] and output["plan"] == "parent's own"
    assert output["task"] == "Plan a trip"


async def test_loop_events_reach_the_parent_stream(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    async with open_store(tmp_path / "runs.sqlite") as saver:
        parent = parent_graph(model).compile(checkpointer=saver)
        seen = [
            (namespace, chunk)
            async for namespace, chunk in parent.astream(
                START_INPUT,
                {"configurable": {"thread_id": "outer"}},
                stream_mode="custom",
                subgraphs=True,
            )
        ]
    assert all(namespace[0].startswith("loop:") for namespace, _ in seen)
    assert [chunk["event"] for _, chunk in seen] == [
        events.PLAN_READY,
        events.STEP_STARTED,
        events.STEP_COMPLETE,
        events.STEP_STARTED,
        events.STEP_COMPLETE,
        events.ANSWER_READY,
        events.TASK_COMPLETE,
    ]
    assert seen[-1][1]["data"]["status"] == "completed"


async def test_plan_review_inside_a_parent_is_answered_through_the_parent(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did B"])
    config = {"configurable": {"thread_id": "outer"}}
    async with open_store(tmp_path / "runs.sqlite") as saver:
        parent = parent_graph(model, review_plan=True).compile(checkpointer=saver)
        paused = await parent.ainvoke(START_INPUT, config)
        assert paused["__interrupt__"][0].value["steps"] == ["A", "B"]
        output = await parent.ainvoke(Command(resume=["B"]), config)
    assert [s.description for s in output["result"].steps] == ["B"]
    assert output["answer"] == "completed: 1 steps"


async def test_a_parent_without_a_task_gets_a_message_saying_how_to_give_one() -> None:
    parent = StateGraph(MessagesState)
    parent.add_node("loop", build_graph(ScriptedChatModel(script=[])).compile())
    parent.add_edge(START, "loop")
    with pytest.raises(ValueError, match=r"the loop's input has no `task`: give the parent"):
        await parent.compile().ainvoke({"messages": [("user", "Plan a trip")]})


class OwnNames(TypedDict, total=False):
    """A parent that calls the loop's task and result by names of its own."""

    request: str
    outcome: AgenticResult


def own_names_parent(model: Runnable, **loop_settings: Any) -> StateGraph:
    builder = StateGraph(OwnNames)
    loop = build_graph(model, **loop_settings).compile()
    add_agentic_loop(builder, loop, task_key="request", result_key="outcome")
    builder.add_edge(START, "agentic_loop")
    builder.add_edge("agentic_loop", END)
    return builder


async def test_a_parent_without_a_result_key_is_told_so_when_the_loop_is_added() -> None:
    class TaskOnly(TypedDict):
        task: str

    loop = build_graph(ScriptedChatModel(script=[])).compile()
    with pytest.raises(ValueError, match=r"no 'result' key for the loop's result: add `result: "):
        add_agentic_loop(StateGraph(TaskOnly), loop)
    with pytest.raises(ValueError, match=r"no 'task' key for the loop's task"):
        add_agentic_loop(StateGraph(MessagesState), loop)


async def test_the_loop_reads_and_writes_keys_of_the_parents_own_names() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    output = await own_names_parent(model).compile().ainvoke({"request": "Plan a trip"})
    assert output["outcome"].task == "Plan a trip"
    assert [s.result for s in output["outcome"].steps] == ["did A", "did B"]


async def test_a_plan_review_inside_a_mapped_loop_is_answered_through_the_parent(
    tmp_path: Path,
) -> None:
    config = {"configurable": {"thread_id": "outer"}}
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did B"])
    async with open_store(tmp_path / "runs.sqlite") as saver:
        parent = own_names_parent(model, review_plan=True).compile(checkpointer=saver)
        paused = await parent.ainvoke({"request": "Plan a trip"}, config)
        assert paused["__interrupt__"][0].value["steps"] == ["A", "B"]
        output = await parent.ainvoke(Command(resume=["B"]), config)
    assert [s.description for s in output["outcome"].steps] == ["B"]
    assert model.prompts[0].count("Plan a trip") >= 1  # planned once, not again on resume
    assert len(model.prompts) == 2
