"""The run's answer, replanning in each mode, and bounded replies, with scripted models."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentic_loop.core import events
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.nodes.replan import read_revision
from agentic_loop.core.state import AgenticResult

CONFIG = {"configurable": {"thread_id": "t"}}


async def run(model: ScriptedChatModel, **options: Any) -> tuple[AgenticResult, list[dict]]:
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), **options)
    seen = [
        item
        async for item in graph.astream(
            {"task": "Plan a trip"}, CONFIG, stream_mode="custom", durability="sync"
        )
    ]
    return (await graph.aget_state(CONFIG)).values["result"], seen


def of(seen: list[dict], name: str) -> list[dict]:
    return [item["data"] for item in seen if item["event"] == name]


# --- the answer --------------------------------------------------------------------------


async def test_the_answer_is_written_from_the_steps_results() -> None:
    model = ScriptedChatModel(
        script=[plan_text("Pick a beach", "Book a room"), "Chose Brighton.", "Booked the Grand."],
        answer="Go to Brighton and stay at the Grand.",
    )
    result, seen = await run(model)
    assert result.answer == "Go to Brighton and stay at the Grand."
    assert result.summary == "Plan a trip: Completed 2/2 steps."  # the count line stays
    (asked,) = model.asked_answer
    assert "Task: Plan a trip" in asked
    assert (
        "1. Pick a beach: Chose Brighton." in asked and "2. Book a room: Booked the Grand." in asked
    )
    assert of(seen, events.ANSWER_READY) == [
        {"task_id": result.task_id, "answer": result.answer, "cut_short": False}
    ]
    assert of(seen, events.TASK_COMPLETE)[0]["answer"] == result.answer


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (ConnectionError("socket closed"), "No answer: cannot reach the model server: socket"),
        (" ".join(["and again"] * 8), "No answer: the reply repeats"),
    ],
)
async def test_a_failed_answer_leaves_it_empty_and_the_summary_says_why(
    failure: str | BaseException, why: str
) -> None:
    model = ScriptedChatModel(script=[plan_text("A"), "did A", failure], answer=None)
    result, _ = await run(model)
    assert result.status == "completed"
    assert result.answer == ""
    assert result.summary.startswith("Plan a trip: Completed 1/1 steps. " + why)


async def test_no_answer_is_asked_when_every_step_failed() -> None:
    model = ScriptedChatModel(script=[plan_text("A"), RuntimeError("x"), RuntimeError("y")])
    result, _ = await run(model)
    assert result.status == "failed" and result.answer == ""
    assert model.asked_answer == []
    assert result.summary == "Plan a trip: Completed 0/1 steps, 1 failed."


# --- replanning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("KEEP", "keep"),
        ("keep.", "keep"),
        ("**Done** - nothing left to do", "done"),
        ("<think>hmm</think>DONE", "done"),
        ("Instead:\n1. Call the hotel\n2. Pay the deposit", ["Call the hotel", "Pay the deposit"]),
        ("I am not sure what you mean.", None),
        ("", None),
    ],
)
def test_read_revision(reply: str, expected: object) -> None:
    assert read_revision(reply) == expected


async def test_on_failure_a_revision_replaces_the_steps_left() -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("Book online", "Pay online", "Print tickets"),
            RuntimeError("site down"),
            "Could not book online; found a phone number.",
            "Booked by phone.",
            "Paid at the desk.",
        ],
        revision="1. Book by phone\n2. Pay at the desk",
    )
    result, seen = await run(model)

    assert [s.description for s in result.steps] == [
        "Book online",
        "Book by phone",
        "Pay at the desk",
    ]
    assert [s.status for s in result.steps] == ["adapted", "completed", "completed"]
    assert result.status == "completed"
    assert [(v.after_step, v.change, v.steps) for v in result.plan_versions] == [
        (0, "planned", ["Book online", "Pay online", "Print tickets"]),
        (1, "replaced", ["Book online", "Book by phone", "Pay at the desk"]),
    ]
    (asked,) = model.asked_revision  # only after the failed step
    assert "1. Book online: Could not book online" in asked
    assert "2. Pay online" in asked and "3. Print tickets" in asked
    assert of(seen, events.PLAN_REVISED) == [
        {
            "task_id": result.task_id,
            "version": 2,
            "after_step": 1,
            "change": "replaced",
            "steps": ["Book online", "Book by phone", "Pay at the desk"],
            "total": 3,
        }
    ]


async def test_after_each_step_done_ends_the_plan_early() -> None:
    model = ScriptedChatModel(
        script=[plan_text("Look for trains", "Compare prices", "Book"), "Found one direct train."],
        revision="DONE",
    )
    result, seen = await run(model, replan="after_each_step")
    assert [s.description for s in result.steps] == ["Look for trains"]
    assert result.status == "completed" and result.summary == "Plan a trip: Completed 1/1 steps."
    assert [v.change for v in result.plan_versions] == ["planned", "done"]
    assert of(seen, events.PLAN_REVISED)[0]["steps"] == ["Look for trains"]
    assert result.answer == "The answer."


async def test_after_each_step_keep_asks_after_every_step_up_to_max_replans() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B", "C"), "a", "b", "c"])
    result, seen = await run(model, replan="after_each_step", max_replans=2)
    assert len(model.asked_revision) == 2
    assert [s.result for s in result.steps] == ["a", "b", "c"]
    assert len(result.plan_versions) == 1 and not of(seen, events.PLAN_REVISED)


async def test_never_replans_even_after_a_failure() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), RuntimeError("x"), "alt", "b"])
    result, _ = await run(model, replan="never")
    assert model.asked_revision == []
    assert [s.status for s in result.steps] == ["adapted", "completed"]


async def test_an_unreadable_revision_keeps_the_plan_and_is_logged(caplog) -> None:
    model = ScriptedChatModel(
        script=[plan_text("A", "B"), RuntimeError("x"), "alt", "b"],
        revision="Hmm, maybe think about it.",
    )
    with caplog.at_level(logging.DEBUG, logger="agentic_loop.core.nodes.replan"):
        result, seen = await run(model)
    assert [s.description for s in result.steps] == ["A", "B"]
    assert result.status == "completed"
    assert "Replanning gave no KEEP, DONE or list of steps" in caplog.text
    assert not of(seen, events.PLAN_REVISED)


async def test_a_failed_replan_call_keeps_the_plan(caplog) -> None:
    model = ScriptedChatModel(
        script=[plan_text("A", "B"), RuntimeError("x"), "alt", ConnectionError("gone"), "b"],
        revision=None,
    )
    with caplog.at_level(logging.DEBUG, logger="agentic_loop.core.nodes.replan"):
        result, _ = await run(model)
    assert [s.result for s in result.steps] == ["alt", "b"]
    assert "Replanning failed, keeping the plan" in caplog.text


async def test_a_revision_is_cut_to_max_steps_and_the_summary_counts_the_plan_kept() -> None:
    model = ScriptedChatModel(
        script=[plan_text("A", "B"), RuntimeError("x"), "alt", "c", "d"],
        revision="1. C\n2. D\n3. E\n4. F",
    )
    result, _ = await run(model, max_steps=3)
    assert [s.description for s in result.steps] == ["A", "C", "D"]
    assert result.status == "completed"
    assert result.summary == (
        "Plan a trip: Completed 2/3 steps, 1 adapted. Planned 5 steps, kept 3 (max_steps=3)."
    )


# --- bounded replies ---------------------------------------------------------------------


async def test_a_reply_past_the_length_cap_is_cut_and_marked() -> None:
    long = " ".join(f"fact{i}" for i in range(100))
    model = ScriptedChatModel(script=[plan_text("A"), long])
    result, _ = await run(model, max_reply_chars=50)
    step = result.steps[0]
    assert step.cut_short and step.result == long[:50]


async def test_a_reply_the_model_stopped_at_its_token_cap_is_marked() -> None:
    stopped = AIMessage("Half a sentence and", response_metadata={"done_reason": "length"})
    model = ScriptedChatModel(script=[plan_text("A"), stopped])
    result, _ = await run(model)
    assert result.steps[0].cut_short and result.steps[0].status == "completed"


@pytest.mark.parametrize(
    "degenerate",
    [
        "1. 1. 1. Choose a destination",
        "Book it.\nBook it.\nBook it.\nBook it.",
        "and again and again and again and again and again and again and again",
        "",
    ],
)
async def test_a_degenerate_reply_is_adapted_like_a_failed_call(degenerate: str) -> None:
    model = ScriptedChatModel(script=[plan_text("A"), degenerate, "Did A properly."])
    result, _ = await run(model)
    step = result.steps[0]
    assert (step.status, step.result) == ("adapted", "Did A properly.")
    assert "the reply" in model.prompts[2]  # the adapt prompt says what was wrong


async def test_echoed_prompt_lines_are_dropped_from_a_result() -> None:
    model = ScriptedChatModel(
        script=[plan_text("A", "B"), "did A at the station", "Step 1: did A at the station\nDid B."]
    )
    result, _ = await run(model)
    assert result.steps[1].result == "Did B."
