"""The graph's routes, status rules, events and the original's defects, with scripted models."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text
from langgraph.checkpoint.memory import InMemorySaver

from agentic_loop import LoopOptions
from agentic_loop.core import events
from agentic_loop.core.graph import build_graph, create_agentic_loop
from agentic_loop.core.nodes.summarise import run_status, summary_text
from agentic_loop.core.routes import route_after_plan, route_after_schedule
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticResult, AgenticStep, Plan, RunningStep
from agentic_loop.runs.runner import run_agentic_loop


async def run_collecting(model: ScriptedChatModel, task: str = "Plan a trip", **graph_kw: Any):
    """Run the compiled graph; return its result and the custom stream's events."""
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), **graph_kw)
    seen: list[dict[str, Any]] = []
    config = {"configurable": {"thread_id": "t"}}
    async for item in graph.astream({"task": task}, config, stream_mode="custom"):
        seen.append(item)
    state = await graph.aget_state(config)
    return state.values["result"], seen


LONG_REPLY = " ".join(f"fact{i}" for i in range(200))
"""A long reply that says something: no line or phrase repeated."""


def names(seen: list[dict[str, Any]]) -> list[str]:
    return [item["event"] for item in seen]


# --- shape and routes ------------------------------------------------------------------


def test_graph_shape_snapshot(snapshot) -> None:
    graph = create_agentic_loop(ScriptedChatModel(script=[]))
    assert graph.get_graph().draw_mermaid(with_styles=False) == snapshot


def _step(n: int, status: str = "completed") -> AgenticStep:
    return AgenticStep(step_num=n, description=f"s{n}", result="r", status=status, duration_ms=1)


def _plan(steps: int) -> Plan:
    return Plan(
        task_id="x",
        steps=[f"s{i}" for i in range(1, steps + 1)],
        planned_count=steps,
        max_steps=10,
        duration_ms=0,
    )


def _plan_of(deps: list[list[int]]) -> Plan:
    return _plan(len(deps)).model_copy(update={"depends_on": deps})


SETTINGS = Settings(model=ScriptedChatModel(script=[]), options=LoopOptions(max_parallel=2))


def _running(n: int, failure: str | None = None) -> dict[str, RunningStep]:
    return {str(n): RunningStep(step_num=n, started_at=0.0, failure=failure)}


ROUTES = [
    # state, what schedule leads to: a node, or the (node, step) of each Send
    ({"plan": _plan(2), "steps": []}, [("execute", 1)]),
    ({"plan": _plan_of([[], [], []]), "steps": []}, [("execute", 1)]),  # runs in order
    ({"plan": _plan_of([[], [], [1]]), "steps": []}, [("execute", 1), ("execute", 2)]),
    ({"plan": _plan_of([[], [1], [1]]), "steps": [_step(1)]}, [("execute", 2), ("execute", 3)]),
    ({"plan": _plan_of([[2], [], [1]]), "steps": []}, [("execute", 2)]),
    ({"plan": _plan(2), "steps": [], "running": _running(1, "boom")}, [("adapt", 1)]),
    ({"plan": _plan(2), "steps": [], "running": _running(1)}, [("execute", 1)]),
    ({"plan": _plan(2), "steps": [_step(1)]}, [("execute", 2)]),
    ({"plan": _plan(2), "steps": [_step(1), _step(2)]}, "answer"),
    ({"plan": _plan(2), "steps": [_step(1, "adapted")]}, "replan"),
    ({"plan": _plan(1), "steps": [_step(1, "failed")]}, "replan"),
    (
        {"plan": _plan(2).model_copy(update={"replans": 3}), "steps": [_step(1, "adapted")]},
        [("execute", 2)],
    ),
]


@pytest.mark.parametrize(("state", "expected"), ROUTES)
def test_route_after_schedule(state, expected) -> None:
    routed = asyncio.run(route_after_schedule({"task": "T", **state}, settings=SETTINGS))
    if isinstance(routed, list):
        routed = [(send.node, send.arg["step_num"]) for send in routed]
    assert routed == expected


def test_route_after_plan() -> None:
    assert asyncio.run(route_after_plan({"plan": _plan(2)})) == "schedule"
    assert asyncio.run(route_after_plan({"plan": _plan(0)})) == "summarise"


STATUS = [
    # steps, total (as cut to max_steps), plan_error, expected
    ([_step(1), _step(2)], 2, None, "completed"),
    ([_step(1), _step(2, "adapted")], 2, None, "completed"),
    ([_step(1), _step(2, "failed")], 2, None, "partial"),
    ([_step(1, "failed"), _step(2, "failed")], 2, None, "failed"),
    ([_step(1)], 2, None, "partial"),
    ([], 0, "Planning failed: x", "failed"),
    ([], 0, "Planning produced no steps.", "failed"),
]


@pytest.mark.parametrize(("steps", "total", "plan_error", "expected"), STATUS)
def test_run_status(steps, total, plan_error, expected) -> None:
    assert run_status(steps, total, plan_error) == expected


SUMMARIES = [
    ([_step(1), _step(2)], 2, 2, "T: Completed 2/2 steps."),
    (
        [_step(1), _step(2, "adapted"), _step(3, "failed")],
        3,
        3,
        "T: Completed 1/3 steps, 1 adapted, 1 failed.",
    ),
    ([_step(1, "failed")], 1, 1, "T: Completed 0/1 steps, 1 failed."),
    (
        [_step(1), _step(2)],
        2,
        4,
        "T: Completed 2/2 steps. Planned 4 steps, kept 2 (max_steps=2).",
    ),
    ([_step(1)], 3, 3, "T: Completed 1/3 steps. Only 1 of the 3 planned steps ran."),
]


@pytest.mark.parametrize(("steps", "total", "planned", "expected"), SUMMARIES)
def test_summary_text(steps, total, planned, expected) -> None:
    assert summary_text("T", steps, total, planned, max_steps=total) == expected


def test_build_graph_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_steps must be a whole number from 1 to 1000, got -1"):
        build_graph(ScriptedChatModel(script=[]), max_steps=-1)
    with pytest.raises(ValueError, match="model must be a LangChain chat model, got str"):
        build_graph("llama3.2")  # type: ignore[arg-type]


def test_max_steps_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("AGENTIC_LOOP_MAX_STEPS", "abc")
    with pytest.raises(
        ValueError, match="AGENTIC_LOOP_MAX_STEPS must be a whole number from 1 to 1000, got 'abc'"
    ):
        build_graph(ScriptedChatModel(script=[]))


async def test_max_steps_from_the_environment_cuts_the_plan(monkeypatch) -> None:
    monkeypatch.setenv("AGENTIC_LOOP_MAX_STEPS", "1")
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A"])
    result, _ = await run_collecting(model)
    assert [s.description for s in result.steps] == ["A"]
    assert "(at most 1)" in model.prompts[0]


# --- whole runs ----------------------------------------------------------------------------


async def test_run_completes_and_feeds_results_forward() -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("Pick a beach", "Book a room", "Pack"),
            "Chose Brighton.",
            "Booked.",
            "Packed.",
        ]
    )
    result, seen = await run_collecting(model)
    assert result.status == "completed"
    assert result.summary == "Plan a trip: Completed 3/3 steps."
    assert [s.result for s in result.steps] == ["Chose Brighton.", "Booked.", "Packed."]
    assert result.planned_steps == 3 and result.thread_id == "t" and len(result.task_id) == 8
    step_two = model.prompts[2]
    assert "Task: Plan a trip" in step_two
    assert "Step 2/3: Book a room" in step_two.splitlines()
    assert "Step 1 (Pick a beach):\nChose Brighton." in step_two
    assert names(seen) == [
        events.PLAN_READY,
        *[e for _ in range(3) for e in (events.STEP_STARTED, events.STEP_COMPLETE)],
        events.ANSWER_READY,
        events.TASK_COMPLETE,
    ]


async def test_small_prompts_stay_bounded_however_long_the_plan() -> None:
    steps = [f"Step number {i}" for i in range(1, 11)]
    model = ScriptedChatModel(script=[plan_text(*steps), *[LONG_REPLY * 4] * 10])
    result, _ = await run_collecting(model, max_steps=10, prompts="small")
    assert result.status == "completed"
    lengths = [len(p) for p in model.prompts[1:]]
    assert max(lengths) < 1000
    assert lengths[9] - lengths[2] < 10  # same size at step 10 as at step 3
    last = model.prompts[10]
    assert "Step 9:" in last and "Step 8:" in last and "Step 7:" not in last


async def test_failed_step_is_adapted() -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("A", "B"),
            ConnectionError("socket closed"),
            "Did A another way.",
            "Did B.",
        ]
    )
    result, seen = await run_collecting(model)
    assert [s.status for s in result.steps] == ["adapted", "completed"]
    assert result.status == "completed"
    assert result.summary == "Plan a trip: Completed 1/2 steps, 1 adapted."
    adapt_prompt = model.prompts[2]
    assert "Step 1 failed with error:" in adapt_prompt and "socket closed" in adapt_prompt
    assert "Original step was: A" in adapt_prompt
    adapted = next(item["data"] for item in seen if item["event"] == events.STEP_ADAPTED)
    assert adapted == {
        "task_id": result.task_id,
        "step": 1,
        "total": 2,
        "description": "A",
        "error": "cannot reach the model server: socket closed",
        "adaptation": "Did A another way.",
    }


async def test_step_whose_adaptation_fails_is_recorded_and_the_run_goes_on() -> None:
    model = ScriptedChatModel(
        script=[plan_text("A", "B"), RuntimeError("first"), RuntimeError("second"), "Did B."]
    )
    result, seen = await run_collecting(model)
    assert [s.status for s in result.steps] == ["failed", "completed"]
    assert (
        result.steps[0].result
        == "Failed: RuntimeError: first; adaptation also failed: RuntimeError: second"
    )
    assert result.status == "partial"
    assert result.summary == "Plan a trip: Completed 1/2 steps, 1 failed."
    assert events.STEP_FAILED in names(seen)


async def test_every_step_failing_fails_the_run() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), *[RuntimeError("down")] * 4])
    result, _ = await run_collecting(model)
    assert result.status == "failed"
    assert result.summary == "Plan a trip: Completed 0/2 steps, 2 failed."


async def test_a_plan_cut_by_max_steps_says_so_and_completes() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B", "C", "D"), "a", "b"])
    result, seen = await run_collecting(model, max_steps=2)
    assert [s.description for s in result.steps] == ["A", "B"]
    assert result.status == "completed"  # the user's own cap is no failure
    assert result.planned_steps == 4
    assert result.summary == (
        "Plan a trip: Completed 2/2 steps. Planned 4 steps, kept 2 (max_steps=2)."
    )
    assert seen[0]["data"]["steps"] == ["A", "B"] and seen[0]["data"]["total"] == 2


async def test_planning_error_fails_the_run_and_is_broadcast() -> None:
    model = ScriptedChatModel(script=[TimeoutError("model took too long")])
    result, seen = await run_collecting(model)
    assert result.status == "failed"
    assert result.summary == "Planning failed: TimeoutError: model took too long"
    assert result.steps == []
    assert names(seen) == [events.PLAN_FAILED, events.TASK_COMPLETE]
    assert seen[0]["data"] == {
        "task_id": result.task_id,
        "task": "Plan a trip",
        "error": result.summary,
    }


async def test_plan_without_steps_fails_the_run() -> None:
    model = ScriptedChatModel(script=["I'm not sure what you mean."])
    result, seen = await run_collecting(model)
    assert result.status == "failed"
    assert result.summary == "Planning produced no steps."
    assert names(seen) == [events.PLAN_FAILED, events.TASK_COMPLETE]


async def test_event_payloads_match_the_original() -> None:
    model = ScriptedChatModel(script=[plan_text("A"), LONG_REPLY])
    result, seen = await run_collecting(model)
    by_name = {item["event"]: item["data"] for item in seen}
    tid = result.task_id
    assert by_name[events.PLAN_READY] == {
        "task_id": tid,
        "task": "Plan a trip",
        "steps": ["A"],
        "depends_on": [[]],
        "notes": [],
        "total": 1,
    }
    assert by_name[events.STEP_STARTED] == {
        "task_id": tid,
        "step": 1,
        "total": 1,
        "description": "A",
    }
    assert by_name[events.STEP_COMPLETE] == {
        "task_id": tid,
        "step": 1,
        "total": 1,
        "description": "A",
        "result": events.one_line(LONG_REPLY),
        "duration_ms": result.steps[0].duration_ms,
    }
    assert by_name[events.TASK_COMPLETE] == {
        "task_id": tid,
        "status": "completed",
        "steps_completed": 1,
        "summary": "Plan a trip: Completed 1/1 steps.",
        "answer": "The answer.",
        "duration_ms": result.total_duration_ms,
        "tokens_in": 0,
        "tokens_out": 0,
    }


async def test_empty_task_is_refused() -> None:
    with pytest.raises(ValueError, match="task must be non-empty text"):
        await run_agentic_loop("   ", model=ScriptedChatModel(script=[]))


# --- run_agentic_loop: callbacks, broadcaster, threads ----------------------------------------


class RecordingBroadcaster:
    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.fail_with = fail_with

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        self.seen.append((event, data))
        if self.fail_with is not None:
            raise self.fail_with


async def test_progress_reaches_callback_and_broadcaster() -> None:
    calls: list[tuple[str, int, int]] = []

    async def on_progress(description: str, step: int, total: int) -> None:
        calls.append((description, step, total))

    broadcaster = RecordingBroadcaster()
    model = ScriptedChatModel(script=[plan_text("A", "B"), RuntimeError("x"), "alt", "b"])
    result = await run_agentic_loop(
        "T", model=model, on_progress=on_progress, broadcaster=broadcaster
    )
    assert calls == [("[Adapted] A", 1, 2), ("B", 2, 2)]
    assert [e for e, _ in broadcaster.seen] == [
        events.PLAN_READY,
        events.STEP_STARTED,
        events.STEP_ADAPTED,
        events.STEP_STARTED,
        events.STEP_COMPLETE,
        events.ANSWER_READY,
        events.TASK_COMPLETE,
    ]
    assert result.status == "completed"


class Odd(Exception):
    pass


@pytest.mark.parametrize(
    "error", [ValueError("v"), KeyError("k"), TypeError("t"), Odd("odd"), ConnectionError("c")]
)
async def test_raising_hooks_never_change_the_run(error: Exception, caplog) -> None:
    """Defect 1: a raising callback or broadcaster is logged; steps and status stay as they were."""

    async def on_progress(*args: Any) -> None:
        raise error

    model = ScriptedChatModel(script=[plan_text("A", "B"), "a", "b"])
    with caplog.at_level(logging.WARNING, logger="agentic_loop.core.events"):
        result = await run_agentic_loop(
            "T",
            model=model,
            on_progress=on_progress,
            broadcaster=RecordingBroadcaster(fail_with=error),
        )
    assert [(s.step_num, s.status) for s in result.steps] == [(1, "completed"), (2, "completed")]
    assert result.status == "completed"
    assert len(model.prompts) == 3  # nothing was retried or adapted
    assert any("raised; the run goes on" in r.getMessage() for r in caplog.records)


async def test_plain_sync_callback_works() -> None:
    calls: list[tuple[str, int, int]] = []
    model = ScriptedChatModel(script=[plan_text("A"), "a"])
    result = await run_agentic_loop("T", model=model, on_progress=lambda *a: calls.append(a))
    assert calls == [("A", 1, 1)]
    assert result.status == "completed"


async def test_each_run_has_its_own_thread_and_conversation() -> None:
    """Defect 4: two runs share nothing: neither thread nor prompts."""
    saver = InMemorySaver()
    model = ScriptedChatModel(script=[plan_text("Pick"), "picked", plan_text("Cook"), "cooked"])
    first = await run_agentic_loop("Trip", model=model, checkpointer=saver)
    second = await run_agentic_loop("Dinner", model=model, checkpointer=saver)
    assert first.thread_id != second.thread_id
    assert first.task_id != second.task_id
    assert first.thread_id.startswith("agentic-")
    assert all("Trip" not in p and "Pick" not in p for p in model.prompts[2:])
    assert [s.description for s in second.steps] == ["Cook"]


async def test_finished_thread_returns_its_stored_result_without_calling_the_model() -> None:
    saver = InMemorySaver()
    model = ScriptedChatModel(script=[plan_text("A"), "a"])
    first = await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="same")
    again = await run_agentic_loop("T", model=model, checkpointer=saver, thread_id="same")
    assert again == first
    assert len(model.prompts) == 2
    with pytest.raises(ValueError, match="holds a run of another task"):
        await run_agentic_loop("Other", model=model, checkpointer=saver, thread_id="same")


async def test_reused_thread_with_a_new_task_starts_from_an_empty_record() -> None:
    graph = create_agentic_loop(
        ScriptedChatModel(script=[plan_text("A"), "a", plan_text("B"), "b"]),
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke({"task": "one"}, config)
    out = await graph.ainvoke({"task": "two"}, config)
    assert [s.description for s in out["result"].steps] == ["B"]


async def test_reused_thread_whose_new_plan_fails_keeps_no_answer_of_the_old_task() -> None:
    graph = create_agentic_loop(
        ScriptedChatModel(script=[plan_text("A"), "a", "no list here"]),
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "t"}}
    first = await graph.ainvoke({"task": "one"}, config)
    assert first["result"].answer == "The answer."
    out = await graph.ainvoke({"task": "two"}, config)
    assert out["result"].summary == "Planning produced no steps."
    assert out["result"].answer == ""


async def test_output_holds_only_the_result() -> None:
    graph = create_agentic_loop(ScriptedChatModel(script=[plan_text("A"), "a"]))
    out = await graph.ainvoke({"task": "T"})
    assert set(out) == {"result"}
    assert isinstance(out["result"], AgenticResult)


async def test_a_task_cut_to_fit_the_window_says_so_when_planning_finds_no_steps() -> None:
    model = ScriptedChatModel(script=["I cannot tell what you want."], context_window=300)
    result, _ = await run_collecting(model, task="Plan a trip " * 500)
    assert result.status == "failed"
    assert result.summary.startswith("Planning produced no steps from the task cut to its first ")
    assert "to fit the model's context window" in result.summary
    assert len(model.prompts[0]) < 1200


async def nodes_run(model: ScriptedChatModel, **options: Any) -> list[str]:
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), **options)
    config = {"configurable": {"thread_id": "t"}}
    updates = graph.astream({"task": "T"}, config, stream_mode="updates", durability="sync")
    return [node async for update in updates for node in update]


async def test_steps_that_run_one_at_a_time_start_each_other_without_schedule() -> None:
    model = ScriptedChatModel(script=[plan_text(*"ABCDE"), *(f"did {s}" for s in "ABCDE")])
    nodes = await nodes_run(model)
    assert nodes == ["plan", "schedule", *["execute"] * 5, "answer", "summarise"]


async def test_steps_side_by_side_meet_at_schedule() -> None:
    # A and B run side by side; C waits for both, so `schedule` gathers them first.
    model = ScriptedChatModel(
        script=lambda messages: (
            "1. A\n2. B\n3. C (after 1, 2)"
            if messages[-1].text.startswith("Break this task")
            else "ok"
        )
    )
    nodes = await nodes_run(model)
    assert nodes == [
        *["plan", "schedule", "execute", "execute", "schedule", "execute"],
        *["answer", "summarise"],
    ]


async def test_a_failed_step_alone_is_adapted_then_the_next_starts() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), RuntimeError("down"), "did A", "did B"])
    nodes = await nodes_run(model, replan="never")
    assert nodes == ["plan", "schedule", "execute", "adapt", "execute", "answer", "summarise"]
