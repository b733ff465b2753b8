"""Typed plans and their checks, steps that run side by side, skipped steps, and budgets,
with a model that answers each prompt by what it asks."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from ollama_server import OllamaTestServer, Reply, step_of

from agentic_loop.core import events
from agentic_loop.core.dependencies import (
    checked_dependencies,
    plan_schema,
    ready_steps,
    split_dependency_note,
)
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.nodes.plan import read_plan
from agentic_loop.faces.background import BackgroundRuns
from agentic_loop.faces.drawing import run_mermaid, run_picture
from agentic_loop.models import load_model
from agentic_loop.runs import store as storage
from agentic_loop.runs.history import fork_from_step
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import load_run

CONFIG = {"configurable": {"thread_id": "t"}}
STEP = re.compile(r"^Step (\d+)/\d+: ", re.MULTILINE)

# --- the plan's checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "stated", "cut", "deps", "notes"),
    [
        ([1, 2, 3], [[], [], []], [], [[], [], []], []),  # none stated: runs in order
        ([1, 2, 3, 4], [[], [1], [1], [2, 3]], [], [[], [1], [1], [2, 3]], []),
        ([1, 2], [[], [7]], [], [[], []], ["step 2 depended on step 7, which is not in the plan"]),
        (
            [1, 2],
            [[], [3]],
            [3],
            [[], []],
            ["step 2 depended on step 3, which was cut by max_steps"],
        ),
        ([1, 2], [[1], []], [], [[], []], ["step 1 depended on itself"]),
        ([1, 2, 3], [[], [3], [2]], [], [[], [], [2]], ["step 2 waited on later step 3 in a"]),
        ([1, 2, 3], [[3], [1], [2]], [], [[], [1], [2]], ["step 1 waited on later step 3 in a"]),
        ([1, 2, 3], [[2, 3], [3], []], [], [[2, 3], [3], []], []),  # no cycle: kept as stated
        (
            [1, 2, 3],
            [[1, 2, 3]] * 3,
            [],
            [[], [1], [1, 2]],
            [
                *(f"step {n} depended on itself" for n in (1, 2, 3)),
                "step 1 waited on later steps 2, 3",
                "step 2 waited on later step 3",
            ],
        ),
        ([10, 20], [[], [10]], [], [[], [1]], []),  # ids are the model's, numbers positions
    ],
)
def test_checked_dependencies(ids, stated, cut, deps, notes) -> None:
    got, said = checked_dependencies(ids, stated, cut)
    assert got == deps
    assert len(said) == len(notes)
    for note, expected in zip(said, notes, strict=True):
        assert note.startswith(expected)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Choose a hotel (after 1, 3)", ("Choose a hotel", [1, 3])),
        ("Choose (after steps 1 and 2).", ("Choose", [1, 2])),
        ("Pack [needs 2]", ("Pack", [2])),
        ("Book (the cheap one)", ("Book (the cheap one)", [])),
        ("Pack", ("Pack", [])),
    ],
)
def test_split_dependency_note(line: str, expected: tuple[str, list[int]]) -> None:
    assert split_dependency_note(line) == expected


def test_read_plan_takes_a_typed_plan_or_a_numbered_list_with_notes() -> None:
    typed = read_plan(json.dumps({"steps": [
        {"id": 1, "description": "Trains", "depends_on": []},
        {"id": 2, "description": "Choose", "depends_on": [1]},
    ]}))  # fmt: skip
    assert [(s.id, s.description, s.depends_on) for s in typed] == [
        (1, "Trains", []),
        (2, "Choose", [1]),
    ]
    text = read_plan("Plan:\n1. Trains\n2. Hotels\n3. Choose (after 1, 2)")
    assert [(s.id, s.description, s.depends_on) for s in text] == [
        (1, "Trains", []),
        (2, "Hotels", []),
        (3, "Choose", [1, 2]),
    ]
    assert read_plan('{"steps": "not a list"}') == []


def test_plan_schema_bounds_the_steps() -> None:
    schema = plan_schema(4)
    assert schema["properties"]["steps"]["maxItems"] == 4
    assert schema["additionalProperties"] is False


# --- a model that answers by what it is asked ------------------------------------------

Answer = str | BaseException | Callable[[], Awaitable[str]]


def by_prompt(
    plan: str, steps: dict[int, Answer] | None = None, *, tokens: int = 0
) -> ScriptedChatModel:
    """Replies to the plan prompt with `plan`, to step N with `steps[N]` (a text, an error
    to raise, or a coroutine function whose result is the text; "did N" if none), to the
    answer prompt with "The answer." and to anything else (adaptations) with "Done another
    way." Each reply reports `tokens` prompt and reply tokens, and each call takes 0.05 s,
    long enough for the steps of a round to overlap. `steps` is read at each call."""
    steps = {} if steps is None else steps

    async def reply(messages: list[BaseMessage]) -> str | BaseException:
        prompt = messages[-1].text
        if prompt.startswith("Break this task"):
            return plan
        if (match := STEP.search(prompt)) is None:
            return "Done another way."
        answer = steps.get(int(match[1]), f"did {match[1]}")
        return await answer() if callable(answer) else answer

    return ScriptedChatModel(script=reply, revision=None, tokens=tokens, sleep=0.05)


def answering_first(
    model: ScriptedChatModel, first: Callable[[list[BaseMessage]], AIMessage | Exception | None]
) -> ScriptedChatModel:
    """`model`, but answering with what `first` says of a call's messages, if not None."""
    before = model.script
    assert callable(before)

    async def reply(messages: list[BaseMessage]) -> Any:
        answer = first(messages)
        return await before(messages) if answer is None else answer

    model.script = reply
    return model


def step_prompts(model: ScriptedChatModel, step: int) -> list[str]:
    """The prompts that asked `model` to run step `step`, in order."""
    return [p for p in model.prompts if (m := STEP.search(p)) is not None and int(m[1]) == step]


async def never_answers() -> str:
    await asyncio.sleep(30)
    return "never"


async def run(model: ScriptedChatModel, **settings: Any) -> tuple[Any, list[dict[str, Any]]]:
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), replan="never", **settings)
    seen = [
        item
        async for item in graph.astream(
            {"task": "Plan a trip"}, CONFIG, stream_mode="custom", durability="sync"
        )
    ]
    return (await graph.aget_state(CONFIG)).values["result"], seen


TWO_CHAINS = "1. Trains\n2. Hotels\n3. Choose (after 1, 2)"


async def test_independent_steps_run_at_once_and_a_step_sees_each_result_it_waits_on() -> None:
    model = by_prompt(TWO_CHAINS)
    result, seen = await run(model)
    assert result.status == "completed"
    assert model.most_at_once == 2
    prompt = step_prompts(model, 3)[0]
    assert "Step 1 (Trains):\ndid 1" in prompt and "Step 2 (Hotels):\ndid 2" in prompt
    assert result.depends_on == [[], [], [1, 2]]
    started = [e["data"]["step"] for e in seen if e["event"] == events.STEP_STARTED]
    assert sorted(started[:2]) == [1, 2] and started[2] == 3


@pytest.mark.parametrize(("max_parallel", "most"), [(1, 1), (2, 2), (4, 3)])
async def test_max_parallel_caps_the_steps_in_progress(max_parallel: int, most: int) -> None:
    model = by_prompt("1. A\n2. B\n3. C\n4. D (after 1)")
    result, _ = await run(model, max_parallel=max_parallel)
    assert result.status == "completed"
    assert model.most_at_once == most


async def test_a_plan_without_dependencies_runs_in_order() -> None:
    model = by_prompt("1. A\n2. B\n3. C")
    result, _ = await run(model)
    assert model.most_at_once == 1
    [prompt] = step_prompts(model, 3)
    assert "Step 1 (A):\ndid 1" in prompt and "Step 2 (B):\ndid 2" in prompt
    assert [s.status for s in result.steps] == ["completed"] * 3


async def test_steps_that_depend_on_a_failed_step_are_skipped_and_the_rest_goes_on() -> None:
    model = by_prompt("1. A\n2. B (after 1)\n3. C\n4. D (after 2)", {1: RuntimeError("x")})
    # Adaptation fails too (every adaptation): step 1 fails.
    failing = answering_first(
        model,
        lambda m: RuntimeError("adaptation failed") if "failed with error" in m[-1].text else None,
    )
    result, seen = await run(failing)
    assert [(s.step_num, s.status) for s in result.steps] == [
        (1, "failed"),
        (2, "skipped"),
        (3, "completed"),
        (4, "skipped"),
    ]
    assert result.steps[1].result == "Skipped: step 1 it depends on failed."
    assert result.steps[3].result == "Skipped: step 2 it depends on skipped."
    assert result.status == "partial"
    assert "1 failed, 2 skipped" in result.summary
    skipped = [e["data"]["step"] for e in seen if e["event"] == events.STEP_SKIPPED]
    assert skipped == [2, 4]


async def test_a_plan_with_a_cycle_runs_with_a_note() -> None:
    model = by_prompt("1. A (after 2)\n2. B (after 1)")
    result, _ = await run(model)
    assert result.status == "completed"
    graph_plan = result.plan_versions[0]
    assert graph_plan.steps == ["A", "B"]
    assert result.depends_on == [[], [1]]  # "A (after 2)" went round: it no longer waits


async def test_a_step_over_its_timeout_is_cancelled_and_adapted() -> None:
    model = by_prompt("1. A\n2. B", {1: never_answers})
    result, _ = await run(model, step_timeout=0.2)
    first = result.steps[0]
    assert first.status == "adapted" and first.result == "Done another way."
    assert first.failure == "the step timed out after 0.2 s (step_timeout)"
    assert 200 <= first.duration_ms < 5000
    assert result.steps[1].status == "completed"


async def test_a_spent_token_budget_skips_the_steps_left_and_still_answers() -> None:
    model = by_prompt("1. A\n2. B\n3. C", tokens=10)
    result, _ = await run(model, max_tokens=45)  # planning 20, step 1: 40, step 2: 60
    assert [s.status for s in result.steps] == ["completed", "completed", "skipped"]
    assert "max_tokens" in result.steps[2].result
    assert result.budget_spent == "max_tokens" and result.status == "partial"
    assert "Stopped early: the run's max_tokens budget ran out." in result.summary
    assert result.answer == "The answer."
    assert (result.tokens_in, result.tokens_out) == (40, 40)  # plan, 2 steps, answer
    assert [s.tokens_in for s in result.steps] == [10, 10, 0]


async def test_a_spent_time_budget_stops_the_steps_in_progress_and_skips_the_rest() -> None:
    model = by_prompt("1. A\n2. B (after 1)\n3. C", {1: never_answers})
    result, _ = await run(model, max_seconds=0.3)
    statuses = {s.step_num: s.status for s in result.steps}
    assert statuses == {1: "failed", 2: "skipped", 3: "completed"}
    assert "time budget" in result.steps[0].result
    assert result.budget_spent == "max_seconds" and result.status == "partial"


# --- over the Ollama protocol ----------------------------------------------------------


def test_ollama_is_asked_for_a_typed_plan_with_its_schema(monkeypatch) -> None:
    typed = {"steps": [
        {"id": 1, "description": "Look up trains", "depends_on": []},
        {"id": 2, "description": "Look up hotels", "depends_on": []},
        {"id": 3, "description": "Choose", "depends_on": [1, 2, 9]},
    ]}  # fmt: skip

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(json.dumps(typed))
        step = step_of(request)
        return Reply(f"Found {step}." if step else "The answer.")

    with OllamaTestServer(reply) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        graph = create_agentic_loop(load_model("ollama:test-model"), checkpointer=InMemorySaver())
        output = asyncio.run(graph.ainvoke({"task": "Trip", "max_steps": 5}, CONFIG))
        asked = server.chat_requests()
    assert asked[0]["format"] == plan_schema(5)
    assert all("format" not in r or not r["format"] for r in asked[1:])
    result = output["result"]
    assert [s.description for s in result.steps] == ["Look up trains", "Look up hotels", "Choose"]
    assert result.depends_on == [[], [], [1, 2]]
    assert [s.status for s in result.steps] == ["completed"] * 3


async def test_the_run_picture_draws_each_step_under_the_steps_it_waits_for() -> None:
    saver = InMemorySaver()
    graph = create_agentic_loop(by_prompt(TWO_CHAINS), checkpointer=saver)
    await graph.ainvoke({"task": "Plan a trip"}, CONFIG)
    run = await load_run(saver, "t")
    assert run is not None
    edges = [line.strip() for line in run_picture(run).source.splitlines() if "->" in line]
    assert edges == ["step1 -> step3", "step2 -> step3"]
    assert "step1 --> step3" in run_mermaid(run) and "step1 --> step2" not in run_mermaid(run)


async def test_runs_stored_mid_step_before_steps_ran_side_by_side_resume(tmp_path) -> None:
    """`store_v1.sqlite` was written by the version before: one run stopped while its
    tool call ran, one waiting for a tool approval. Each resumes; the step in progress
    starts again (its tool call is asked for again), and no message is left behind."""
    db = tmp_path / "v1.sqlite"
    shutil.copy(Path(__file__).parent / "data" / "store_v1.sqlite", db)
    ran: list[str] = []

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "noted"

    def note2(text: str) -> str:
        """Write a note."""
        return note(text)

    async with storage.open_store(db) as saver:
        model = ScriptedChatModel(script=[calls(("note", {"text": "a"})), "Took it.", "Summed."])
        graph = create_agentic_loop(model, checkpointer=saver, tools=[note])
        config = {"configurable": {"thread_id": "v1-in-tool"}}
        output = await graph.ainvoke(None, config, durability="sync")
        assert [s.status for s in output["result"].steps] == ["completed", "completed"]
        assert (await graph.aget_state(config)).values["messages"] == []

        model = ScriptedChatModel(script=[calls(("note2", {"text": "b"})), "Took it.", "Summed."])
        graph = create_agentic_loop(model, checkpointer=saver, tools=[note2], approve_tools=True)
        config = {"configurable": {"thread_id": "v1-approval"}}
        await graph.ainvoke(Command(resume="approve"), config, durability="sync")
        state = await graph.aget_state(config)
        assert [i.value["args"] for i in state.interrupts] == [{"text": "b"}]  # asked again
        output = await graph.ainvoke(Command(resume="approve"), config, durability="sync")
        assert output["result"].status == "completed"
    assert ran == ["a", "b"]


def calls_a_note(messages: list[BaseMessage]) -> AIMessage | None:
    """Steps 1 and 2 first call the `note` tool."""
    step = STEP.search("\n".join(m.text for m in messages))
    if step and step[1] in ("1", "2") and not any(m.type == "tool" for m in messages):
        return calls(("note", {"text": step[1]}))
    return None


async def test_two_steps_waiting_for_approval_at_once_are_each_answered() -> None:
    ran: list[str] = []

    def note(text: str) -> str:
        """Write a note."""
        ran.append(text)
        return "noted"

    asked: list[tuple[int, Any]] = []

    def approve(request: dict[str, Any]) -> str:
        asked.append((request["step"], request["args"]))
        return "approve" if request["step"] == 1 else "reject"

    result = await run_agentic_loop(
        "T",
        model=answering_first(by_prompt(TWO_CHAINS), calls_a_note),
        tools=[note],
        approve_tools=True,
        approve=approve,
    )
    assert sorted(asked) == [(1, {"text": "1"}), (2, {"text": "2"})]
    assert ran == ["1"]
    assert [c.status for s in result.steps for c in s.tool_calls] == ["success", "refused"]
    assert result.status == "completed"


async def test_a_background_run_shows_the_steps_in_progress() -> None:
    release = asyncio.Event()

    async def held() -> str:
        await release.wait()
        return "done"

    model = by_prompt(TWO_CHAINS, {1: held, 2: held})
    runs = BackgroundRuns(create_agentic_loop(model, checkpointer=InMemorySaver()))
    run_id = await runs.start("Plan a trip")
    await wait_for(lambda: len(runs.progress(run_id).running_steps) == 2, what="steps 1 and 2")
    assert runs.progress(run_id).position() == "steps 1, 2/3"
    release.set()
    result = await runs.wait(run_id)
    assert result.status == "completed" and runs.progress(run_id).steps_finished == 3


async def test_rerunning_from_a_step_keeps_the_steps_numbered_before_it() -> None:
    steps: dict[int, Answer] = {}
    model = by_prompt("1. A\n2. B\n3. C (after 1, 2)", steps)
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), replan="never")
    await graph.ainvoke({"task": "T"}, CONFIG, durability="sync")
    steps.update({2: "redid 2", 3: "redid 3"})
    point = await fork_from_step(graph, "t", 2)
    output = await graph.ainvoke(None, point.config, durability="sync")
    assert [s.result for s in output["result"].steps] == ["did 1", "redid 2", "redid 3"]
    assert [len(step_prompts(model, n)) for n in (1, 2, 3)] == [1, 2, 2]
    again = step_prompts(model, 3)[1]
    assert "Step 1 (A):\ndid 1" in again and "Step 2 (B):\nredid 2" in again


async def test_a_reviewer_may_edit_the_plan_with_dependency_notes() -> None:
    model = by_prompt("1. A\n2. B")
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), review_plan=True)
    await graph.ainvoke({"task": "T"}, CONFIG)
    edited = ["Trains", "Hotels", "Choose (after 1, 2)", "Pack (after 7)"]
    output = await graph.ainvoke(Command(resume=edited), CONFIG)
    result = output["result"]
    assert [s.description for s in result.steps] == ["Trains", "Hotels", "Choose", "Pack"]
    assert result.depends_on == [[], [], [1, 2], []]  # step 7 is not in the plan
    assert model.most_at_once == 3  # Trains, Hotels and Pack


def lists_nothing() -> ScriptedChatModel:
    """Writes no list when asked for one, and a typed plan when held to the schema."""
    model = by_prompt("")

    def plan(messages: list[BaseMessage]) -> AIMessage | None:
        if not messages[-1].text.startswith("Break this task"):
            return None
        typed = {"steps": [{"id": 1, "description": "Pack", "depends_on": []}]}
        held_to_schema = model.call_kwargs[-1].get("format")
        text = json.dumps(typed) if held_to_schema else "Sure, happy to help!"
        usage = {"input_tokens": 5, "output_tokens": 5, "total_tokens": 10}
        return AIMessage(text, usage_metadata=usage)  # type: ignore[arg-type]

    return answering_first(model, plan)


def plan_formats(model: ScriptedChatModel) -> list[Any]:
    """The `format` each planning call was held to (None: none)."""
    asked = zip(model.prompts, model.call_kwargs, strict=True)
    return [kw.get("format") for prompt, kw in asked if prompt.startswith("Break this task")]


@pytest.mark.parametrize(
    ("plan_format", "asked", "steps"),
    [
        ("text", [None], []),
        ("typed", ["schema"], ["Pack"]),
        ("text_then_typed", [None, "schema"], ["Pack"]),
    ],
)
async def test_plan_formats(plan_format: str, asked: list[Any], steps: list[str]) -> None:
    model = lists_nothing()
    result, _ = await run(model, plan_format=plan_format, max_steps=3)
    formats = plan_formats(model)
    assert [None if f is None else "schema" for f in formats] == asked
    assert formats[-1] in (None, plan_schema(3))
    assert [s.description for s in result.steps] == steps
    assert result.tokens_in == 5 * len(asked)  # each planning call counts


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_reply_reads_as_a_plan_or_as_none(reply: str) -> None:
    steps = read_plan(reply)
    ids = [s.id for s in steps]
    deps, notes = checked_dependencies(ids, [s.depends_on for s in steps])
    assert len(deps) == len(steps)
    for number, wanted in enumerate(deps, 1):
        assert all(1 <= d <= len(steps) and d != number for d in wanted)
    assert all(isinstance(note, str) for note in notes)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(-3, 12), max_size=6), max_size=10))
def test_checked_dependencies_always_give_a_plan_that_can_run(stated: list[list[int]]) -> None:
    deps, _ = checked_dependencies(list(range(1, len(stated) + 1)), stated, cut=[11, 12])
    finished: set[int] = set()
    while len(finished) < len(deps):  # every step starts once those before it finish
        ready = ready_steps(deps, finished, set())
        assert ready, f"no step can start: {deps}"
        finished |= set(ready)


async def test_a_graph_input_with_too_many_steps_is_refused() -> None:
    graph = create_agentic_loop(by_prompt("1. A"), checkpointer=InMemorySaver())
    with pytest.raises(ValueError, match="the input's max_steps must be a whole number from 1"):
        await graph.ainvoke({"task": "T", "max_steps": 10**20}, CONFIG)


@pytest.mark.parametrize("step_timeout", [None, 30.0])
async def test_a_timeout_of_the_models_own_is_a_failed_call(step_timeout: float | None) -> None:
    model = by_prompt("1. A\n2. B", {1: TimeoutError("read timed out")})
    result, _ = await run(model, step_timeout=step_timeout)
    first = result.steps[0]
    assert first.status == "adapted" and first.failure == "TimeoutError: read timed out"
