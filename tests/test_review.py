"""Plan review: the graph pauses after planning and goes on as the reviewer answers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentic_loop.core import events
from agentic_loop.core.answers import read_review
from agentic_loop.core.events import ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.streaming import stream_run

CONFIG = {"configurable": {"thread_id": "t"}}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("approve", {"action": "approve"}),
        (True, {"action": "approve"}),
        ({"action": "approve"}, {"action": "approve"}),
        (["  A ", "", "B"], {"action": "edit", "steps": ["A", "B"]}),
        ({"action": "edit", "steps": ["A"]}, {"action": "edit", "steps": ["A"]}),
        ("reject", {"action": "reject"}),
        (False, {"action": "reject"}),
        ({"action": "reject", "reason": " vague "}, {"action": "reject", "reason": "vague"}),
    ],
)
def test_review_answers(answer: object, expected: dict[str, Any]) -> None:
    assert read_review(answer, max_steps=3) == expected


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("ok", "unreadable review answer 'ok'"),
        ({"action": "maybe"}, "unreadable review answer"),
        ({"action": "edit"}, "an edit needs `steps`, a list of texts"),
        ({"action": "edit", "steps": [1, 2]}, "an edit needs `steps`, a list of texts"),
        (["", " "], "an edited plan needs 1 to 3 steps, got 0"),
        (["A", "B", "C", "D"], "an edited plan needs 1 to 3 steps, got 4"),
    ],
)
def test_unreadable_review_answers(answer: object, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        read_review(answer, max_steps=3)


def test_the_graph_has_the_same_shape_with_or_without_review() -> None:
    def shape(**options: Any) -> str:
        graph = create_agentic_loop(ScriptedChatModel(script=[]), **options)
        return graph.get_graph().draw_mermaid(with_styles=False)

    assert shape(review_plan=True) == shape()
    assert "plan -.-> review;" in shape()


async def test_the_run_input_asks_for_a_review_whatever_the_graph_default() -> None:
    model = ScriptedChatModel(script=[plan_text("A"), plan_text("B"), "did B"])
    graph = create_agentic_loop(model, checkpointer=InMemorySaver())
    await graph.ainvoke({"task": "T", "review_plan": True}, CONFIG, durability="sync")
    assert (await graph.aget_state(CONFIG)).next == ("review",)

    other = {"configurable": {"thread_id": "other"}}
    reviewing = create_agentic_loop(model, checkpointer=graph.checkpointer, review_plan=True)
    output = await reviewing.ainvoke({"task": "T", "review_plan": False}, other, durability="sync")
    assert output["result"].status == "completed"


async def paused(model: ScriptedChatModel):
    """A review graph run up to its pause; the graph and the interrupt's payload."""
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), review_plan=True)
    async for _ in graph.astream({"task": "Plan a trip", "max_steps": 3}, CONFIG):
        pass
    state = await graph.aget_state(CONFIG)
    assert state.next == ("review",)
    return graph, state.interrupts[0].value


async def resume(graph, answer: object) -> tuple[Any, list[dict[str, Any]]]:
    seen = [
        item async for item in graph.astream(Command(resume=answer), CONFIG, stream_mode="custom")
    ]
    return (await graph.aget_state(CONFIG)).values.get("result"), seen


async def test_run_pauses_with_the_plan_before_any_step() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B")])
    _, request = await paused(model)
    assert request["steps"] == ["A", "B"]
    assert request["task"] == "Plan a trip" and request["max_steps"] == 3
    assert "approve" in request["question"]
    assert len(model.prompts) == 1  # only planning asked the model


async def test_approved_plan_runs_as_planned() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    graph, _ = await paused(model)
    result, seen = await resume(graph, "approve")
    assert result.status == "completed"
    assert [s.description for s in result.steps] == ["A", "B"]
    assert seen[0] == {
        "event": events.PLAN_REVIEWED,
        "data": {
            "task_id": result.task_id,
            "review": "approved",
            "steps": ["A", "B"],
            "total": 2,
            "error": None,
        },
    }
    assert (await graph.aget_state(CONFIG)).values["plan"].review == "approved"


async def test_edited_plan_replaces_the_steps() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did X", "did Y", "did Z"])
    graph, _ = await paused(model)
    result, _ = await resume(graph, ["X", "Y", "Z"])
    assert [s.description for s in result.steps] == ["X", "Y", "Z"]
    asked = [re.search(r"^Step \d/\d: .*$", p, re.MULTILINE) for p in model.prompts[1:]]
    assert [match and match[0] for match in asked] == [
        "Step 1/3: X",
        "Step 2/3: Y",
        "Step 3/3: Z",
    ]
    assert result.status == "completed" and result.planned_steps == 3


async def test_rejected_plan_ends_the_run_as_failed() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B")])
    graph, _ = await paused(model)
    result, seen = await resume(graph, {"action": "reject", "reason": "too vague"})
    assert result.status == "failed"
    assert result.summary == "Plan rejected at review: too vague"
    assert result.steps == []
    assert len(model.prompts) == 1  # no step ran
    assert [item["event"] for item in seen] == [events.PLAN_REVIEWED, events.TASK_COMPLETE]


async def test_unreadable_answer_asks_again_saying_why() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did B"])
    graph, _ = await paused(model)
    await resume(graph, "sure thing")
    state = await graph.aget_state(CONFIG)
    assert state.next == ("review",)
    assert "unreadable review answer 'sure thing'" in state.interrupts[0].value["problem"]
    result, _ = await resume(graph, ["B"])
    assert [s.description for s in result.steps] == ["B"]


async def test_failed_planning_is_not_reviewed() -> None:
    model = ScriptedChatModel(script=[TimeoutError("slow")])
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), review_plan=True)
    output = await graph.ainvoke({"task": "T"}, CONFIG)
    assert output["result"].status == "failed"
    assert output["result"].summary == "Planning failed: TimeoutError: slow"


@pytest.mark.parametrize("is_async", [False, True])
async def test_run_agentic_loop_asks_the_review_handler(is_async: bool) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B", "C"), "did A", "did C"])
    requests: list[dict[str, Any]] = []

    def drop_b(request: dict[str, Any]) -> list[str]:
        requests.append(request)
        return [s for s in request["steps"] if s != "B"]

    async def drop_b_async(request: dict[str, Any]) -> list[str]:
        return drop_b(request)

    result = await run_agentic_loop("T", model=model, review=drop_b_async if is_async else drop_b)
    assert [s.description for s in result.steps] == ["A", "C"]
    assert requests[0]["steps"] == ["A", "B", "C"]


async def test_paused_run_without_a_handler_says_how_to_go_on() -> None:
    graph = create_agentic_loop(
        ScriptedChatModel(script=[plan_text("A")]), checkpointer=InMemorySaver(), review_plan=True
    )
    with pytest.raises(RuntimeError, match=r"waits for its plan to be reviewed"):
        await stream_run(graph, {"task": "T"}, CONFIG, ProgressRelay())
