"""A run's checkpoint history, and running it again from a chosen step as a new branch."""

from __future__ import annotations

import asyncio

import pytest
from conftest import ScriptedChatModel, calls, plan_text, step_line, wait_for
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.runs.history import fork_from_step, run_history

CONFIG = {"configurable": {"thread_id": "t"}}
FIRST_RUN = [plan_text("A", "B", "C", "D"), "did A", "did B", "did C", "did D"]


async def finished_run(model: ScriptedChatModel):
    graph = create_agentic_loop(model, checkpointer=InMemorySaver())
    await graph.ainvoke({"task": "T"}, CONFIG, durability="sync")
    return graph


async def test_history_lists_every_checkpoint_newest_first() -> None:
    graph = await finished_run(ScriptedChatModel(script=FIRST_RUN))
    history = await run_history(graph, "t")
    # Steps that run one at a time start each other, with no `schedule` between them.
    assert [c.next for c in history] == [
        (),
        ("summarise",),
        ("answer",),
        *[("execute",)] * 4,
        ("schedule",),
        ("plan",),
        ("__start__",),
    ]
    assert [c.steps_done for c in history] == [4, 4, 4, 3, 2, 1, 0, 0, 0, 0]
    assert all(c.on_current_branch for c in history)
    assert [c.parent_id for c in history[:-1]] == [c.checkpoint_id for c in history[1:]]
    assert await run_history(graph, "nope") == []


async def test_fork_from_step_keeps_earlier_steps_and_the_old_branch() -> None:
    model = ScriptedChatModel(script=[*FIRST_RUN, "redid C", "redid D"])
    graph = await finished_run(model)
    before = await run_history(graph, "t")

    point = await fork_from_step(graph, "t", 3)
    assert point.steps_done == 2 and point.next == ("schedule",)
    output = await graph.ainvoke(None, point.config, durability="sync")

    assert [step_line(p) for p in model.prompts[5:]] == ["Step 3/4: C", "Step 4/4: D"]
    result = output["result"]
    assert [s.result for s in result.steps] == ["did A", "did B", "redid C", "redid D"]
    latest = await graph.aget_state(CONFIG)
    assert latest.values["result"] == result  # the thread now reads the new branch

    after = await run_history(graph, "t")
    old_ids = {c.checkpoint_id for c in before}
    assert old_ids < {c.checkpoint_id for c in after}  # nothing of the old branch is lost
    branch_off = [c for c in after if c.checkpoint_id not in old_ids]
    assert branch_off[-1] == point and point.source == "update"
    assert point.parent_id in old_ids
    old_tail = [c for c in after if c.checkpoint_id in old_ids and c.steps_done > 2]
    assert old_tail and not any(c.on_current_branch for c in old_tail)


async def test_fork_from_step_one_runs_every_step_again_without_planning() -> None:
    model = ScriptedChatModel(script=[*FIRST_RUN, "a", "b", "c", "d"])
    graph = await finished_run(model)
    output = await graph.ainvoke(None, (await fork_from_step(graph, "t", 1)).config)
    assert [s.result for s in output["result"].steps] == ["a", "b", "c", "d"]
    assert not any(p.startswith("Break this task") for p in model.prompts[5:])


async def test_fork_from_step_refuses_steps_it_cannot_run_again() -> None:
    graph = await finished_run(ScriptedChatModel(script=FIRST_RUN))
    with pytest.raises(ValueError, match="the step must be between 1 and 4, got 0"):
        await fork_from_step(graph, "t", 0)
    with pytest.raises(ValueError, match="the step must be between 1 and 4, got 5"):
        await fork_from_step(graph, "t", 5)
    with pytest.raises(ValueError, match="no run with thread id 'nope'"):
        await fork_from_step(graph, "nope", 1)


async def test_fork_from_step_of_a_step_not_reached_says_to_resume() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B", "C"), "did A"], hold_at=3)
    graph = create_agentic_loop(model, checkpointer=InMemorySaver())
    run = asyncio.create_task(graph.ainvoke({"task": "T"}, CONFIG, durability="sync"))
    await wait_for(lambda: model.held, what="step B's model call")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert (await fork_from_step(graph, "t", 2)).steps_done == 1
    with pytest.raises(ValueError, match="has not reached step 3; resume it instead"):
        await fork_from_step(graph, "t", 3)


async def test_fork_from_step_of_a_reviewed_run_comes_after_the_review() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), review_plan=True)
    await graph.ainvoke({"task": "T"}, CONFIG)
    await graph.ainvoke(Command(resume="approve"), CONFIG)
    point = await fork_from_step(graph, "t", 1)
    assert point.next == ("schedule",)
    state = await graph.aget_state(point.config)
    assert state.values["plan"].review == "approved"


async def test_fork_from_a_step_that_called_tools_runs_the_whole_step_again() -> None:
    ran: list[str] = []

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "noted"

    model = ScriptedChatModel(
        script=[
            plan_text("A", "B"),
            "did A",
            calls(("note", {"text": "first"})),
            "did B",
            calls(("note", {"text": "again"})),
            "redid B",
        ]
    )
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), tools=[note])
    await graph.ainvoke({"task": "T"}, CONFIG, durability="sync")

    point = await fork_from_step(graph, "t", 2)
    output = await graph.ainvoke(None, point.config, durability="sync")

    assert ran == ["first", "again"]
    assert step_line(model.prompts[4]) == "Step 2/2: B"  # the step began afresh
    step = output["result"].steps[1]
    assert step.result == "redid B"
    assert [c.args for c in step.tool_calls] == [{"text": "again"}]
