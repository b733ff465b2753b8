"""Background runs and the plan_and_execute tools, with scripted models and an outer agent."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import uuid
import weakref
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, plan_text, wait_for
from langchain.agents import create_agent
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentic_loop import BackgroundRuns, events
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.faces.background import RunFailed, UnknownRun
from agentic_loop.runs.runner import run_agentic_loop

RUN_ID = re.compile(r"bg-[0-9a-f]{8}")


class RecordingBroadcaster:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        self.seen.append(event)


class BrokenSaver(InMemorySaver):
    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")


def run_id_in(text: str) -> str:
    [run_id] = set(RUN_ID.findall(text))
    return run_id


def gated(gate_at: int = 3) -> ScriptedChatModel:
    """Scripted, but call number `gate_at` waits until the test sets `gate`."""
    return ScriptedChatModel(
        script=[plan_text("A", "B", "C"), "did A", "did B", "did C"], hold_at=gate_at
    )


def stuck() -> ScriptedChatModel:
    """Each call awaits a future only that call holds: a task nobody references is then
    garbage, the pitfall the registry guards against."""
    return ScriptedChatModel(script=lambda _: asyncio.get_running_loop().create_future())


@pytest.fixture
async def closing():
    """Registries made here are closed after the test, so no run outlives it."""
    made: list[BackgroundRuns] = []

    def make(graph: Any, **kw: Any) -> BackgroundRuns:
        made.append(BackgroundRuns(graph, **kw))
        return made[-1]

    yield make
    for runs in made:
        await runs.aclose()


# --- the registry ------------------------------------------------------------------------


async def test_start_returns_at_once_and_progress_follows_the_run(closing) -> None:
    model, broadcaster = gated(), RecordingBroadcaster()
    runs = closing(create_agentic_loop(model), broadcaster=broadcaster)
    run_id = await runs.start("Plan a trip")
    assert RUN_ID.fullmatch(run_id)
    first = runs.progress(run_id)
    assert (first.state, first.task, first.steps_finished, first.position()) == (
        "running",
        "Plan a trip",
        0,
        "planning",
    )

    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")
    await asyncio.sleep(0.01)  # the model holds step 2 until the gate opens
    waiting = runs.progress(run_id)
    assert waiting.state == "running"
    assert (waiting.steps_planned, waiting.steps_finished) == (3, 1)
    assert (waiting.position(), waiting.running_steps) == ("step 2/3", {2: "B"})
    assert waiting.last_outcome == "did A" and waiting.last_event == events.STEP_STARTED
    assert len(model.prompts) == 2

    model.gate.set()
    result = await runs.wait(run_id, timeout=2)
    done = runs.progress(run_id)
    assert result.status == "completed" and result.thread_id == run_id
    assert [s.result for s in result.steps] == ["did A", "did B", "did C"]
    assert (done.state, done.steps_finished, done.current_step, done.result) == (
        "completed",
        3,
        None,
        result,
    )
    assert done.task_id == result.task_id
    assert broadcaster.seen[0] == events.PLAN_READY and broadcaster.seen[-1] == events.TASK_COMPLETE
    assert [r.run_id for r in runs.runs()] == [run_id]


async def test_a_run_the_loop_itself_fails_is_a_result_not_an_error(closing) -> None:
    model = ScriptedChatModel(script=[TimeoutError("model took too long")])
    runs = closing(create_agentic_loop(model))
    run_id = await runs.start("Plan a trip")
    result = await runs.wait(run_id)
    record = runs.progress(run_id)
    assert (record.state, record.error, record.result) == ("failed", None, result)
    assert record.last_outcome == "Planning failed: TimeoutError: model took too long"
    assert record.last_event == events.TASK_COMPLETE


async def test_wait_times_out_without_stopping_the_run(closing) -> None:
    model = gated(gate_at=1)
    runs = closing(create_agentic_loop(model))
    run_id = await runs.start("Plan a trip")
    with pytest.raises(TimeoutError, match=f"run {run_id} is still running"):
        await runs.wait(run_id, timeout=0.01)
    model.gate.set()
    assert (await runs.wait(run_id, timeout=2)).status == "completed"


async def test_cancel_keeps_finished_steps_under_the_run_id_and_resume_finishes() -> None:
    saver, model = InMemorySaver(), gated()
    graph = create_agentic_loop(model, checkpointer=saver)
    runs = BackgroundRuns(graph)
    run_id = await runs.start("Plan a trip")
    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")

    assert runs.cancel(run_id) is True
    with pytest.raises(RunFailed, match=f"run {run_id} was cancelled"):
        await runs.wait(run_id)
    assert runs.progress(run_id).state == "cancelled"
    assert runs.cancel(run_id) is False
    stored = await graph.aget_state({"configurable": {"thread_id": run_id}})
    assert [s.description for s in stored.values["steps"]] == ["A"]
    assert stored.next == ("execute",)

    model.gate.set()
    resumed = await run_agentic_loop(
        "Plan a trip", model=model, checkpointer=saver, thread_id=run_id
    )
    assert [s.result for s in resumed.steps] == ["did A", "did B", "did C"]
    assert len(model.prompts) == 4  # step 1 was not asked again


async def test_a_cancelled_run_resumes_in_the_registry_under_its_id(closing) -> None:
    model = gated()
    runs = closing(create_agentic_loop(model, checkpointer=InMemorySaver()))
    run_id = await runs.start("Plan a trip")
    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")
    runs.cancel(run_id)
    with pytest.raises(RunFailed):
        await runs.wait(run_id)

    model.gate.set()
    await runs.resume(run_id)
    assert runs.progress(run_id).state == "running"
    result = await runs.wait(run_id)
    assert [s.result for s in result.steps] == ["did A", "did B", "did C"]
    assert [(r.run_id, r.state) for r in runs.runs()] == [(run_id, "completed")]
    with pytest.raises(ValueError, match="has already finished"):
        await runs.resume(run_id)


async def test_resume_needs_a_checkpointer(closing) -> None:
    runs = closing(create_agentic_loop(gated()))
    run_id = await runs.start("T")
    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")
    runs.cancel(run_id)
    with pytest.raises(RunFailed):
        await runs.wait(run_id)
    with pytest.raises(ValueError, match="resuming needs a graph compiled with a checkpointer"):
        await runs.resume(run_id)


class SeenModelCalls(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.prompts.append(messages[0][-1].content)


async def test_a_callers_config_reaches_the_loops_model_calls(closing) -> None:
    seen = SeenModelCalls()
    script = [plan_text("A"), "did A"]
    await run_agentic_loop(
        "T", model=ScriptedChatModel(script=script), config={"callbacks": [seen], "tags": ["x"]}
    )
    assert len(seen.prompts) == 3  # the plan, the step, the answer

    background = SeenModelCalls()
    runs = closing(create_agentic_loop(ScriptedChatModel(script=script)))
    run_id = await runs.start("T", config={"callbacks": [background]})
    await runs.wait(run_id)
    assert len(background.prompts) == 3


async def test_a_run_that_raises_is_recorded_logged_and_raised_by_wait(caplog, closing) -> None:
    runs = closing(create_agentic_loop(ScriptedChatModel(script=[]), checkpointer=BrokenSaver()))
    with caplog.at_level(logging.ERROR, logger="agentic_loop.faces.background"):
        run_id = await runs.start("Plan a trip")
        with pytest.raises(RunFailed, match=f"run {run_id} failed: OSError: disk full") as info:
            await runs.wait(run_id)
    assert isinstance(info.value.__cause__, OSError)
    record = runs.progress(run_id)
    assert (record.state, record.error, record.result) == ("error", "OSError: disk full", None)
    [logged] = caplog.records
    assert run_id in logged.getMessage() and "disk full" in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is OSError


async def test_registry_holds_its_tasks_against_garbage_collection(closing) -> None:
    model = stuck()
    runs = closing(create_agentic_loop(model))
    run_id = await runs.start("Plan a trip")
    await wait_for(lambda: len(model.prompts) == 1, what="the planning call")
    [job] = [t for t in asyncio.all_tasks() if t.get_name() == run_id]
    alive = weakref.ref(job)
    del job
    gc.collect()
    assert alive() is not None and runs.progress(run_id).state == "running"
    assert runs.cancel(run_id)
    await asyncio.sleep(0)


async def test_bad_arguments_and_unknown_ids(closing) -> None:
    runs = closing(create_agentic_loop(ScriptedChatModel(script=[plan_text("A"), "a"])))
    with pytest.raises(ValueError, match="task must be non-empty text"):
        await runs.start("  ")
    with pytest.raises(ValueError, match="max_steps must be a whole number from 1 to 1000, got -1"):
        await runs.start("T", max_steps=-1)
    assert runs.runs() == []

    run_id = await runs.start("T")
    for call in (runs.progress, runs.cancel, runs.forget, runs.wait):
        with pytest.raises(UnknownRun, match=f"no background run 'bg-nope'; known runs: {run_id}"):
            outcome = call("bg-nope")
            if asyncio.iscoroutine(outcome):
                await outcome
    with pytest.raises(ValueError, match="still running"):
        runs.forget(run_id)
    await runs.wait(run_id)
    runs.forget(run_id)
    with pytest.raises(UnknownRun, match="known runs: none"):
        runs.progress(run_id)


async def test_aclose_cancels_what_still_runs() -> None:
    runs = BackgroundRuns(create_agentic_loop(gated(gate_at=1)))
    run_id = await runs.start("Plan a trip")
    await runs.aclose()
    assert runs.progress(run_id).state == "cancelled"


# --- forgetting runs -------------------------------------------------------------------------


def weather_model(*cities: str) -> ScriptedChatModel:
    """One run per city, one after another: a 1-step plan whose step calls `lookup`."""
    script: list[str | AIMessage | BaseException] = []
    for city in cities:
        script += [plan_text(f"Check {city}"), calls(("lookup", {"city": city})), f"Sunny {city}"]
    return ScriptedChatModel(script=script)


def lookup(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_forget_drops_an_ended_run_and_the_store_still_reads_it(closing) -> None:
    graph = create_agentic_loop(
        weather_model("Brest"), tools=[lookup], checkpointer=InMemorySaver()
    )
    runs = closing(graph)
    tools = {t.name: t for t in runs.tools()}
    run_id = await runs.start("Weather?")
    result = await runs.wait(run_id)
    kept = runs.progress(run_id)
    said = {
        name: await tools[name].ainvoke({"run_id": run_id})
        for name in ("run_progress", "run_result", "cancel_run")
    }

    runs.forget(run_id)
    assert runs.runs() == []
    with pytest.raises(UnknownRun, match="`await aprogress.run_id.` reads a forgotten run"):
        runs.progress(run_id)
    stored = await runs.aprogress(run_id)
    assert stored == kept.model_copy(update={"last_event": None})
    assert (stored.state, stored.position(), stored.result) == (
        "completed",
        "1/1 steps finished",
        result,
    )
    assert stored.last_tool == "lookup → success: sunny in Brest"
    assert await runs.wait(run_id) == result
    for name, text in said.items():
        assert await tools[name].ainvoke({"run_id": run_id}) == text
    assert said["run_result"].startswith(f"Run {run_id} completed: Weather?: Completed 1/1")


async def test_a_forgotten_run_that_failed_to_plan_reads_back_why(closing) -> None:
    model = ScriptedChatModel(script=[TimeoutError("model took too long")])
    runs = closing(create_agentic_loop(model, checkpointer=InMemorySaver()))
    [_, run_progress, run_result, _] = runs.tools()
    run_id = await runs.start("Plan a trip")
    await runs.wait(run_id)
    said = [await tool.ainvoke({"run_id": run_id}) for tool in (run_progress, run_result)]
    runs.forget(run_id)
    assert [await tool.ainvoke({"run_id": run_id}) for tool in (run_progress, run_result)] == said
    assert said[0] == (
        f"Run {run_id}: failed, 0/0 steps finished.\n"
        "Latest result: Planning failed: TimeoutError: model took too long"
    )


async def test_keep_finished_forgets_the_runs_that_ended_first_never_a_running_one(
    closing,
) -> None:
    runs = closing(create_agentic_loop(stuck()), keep_finished=1)
    first, second, third = [await runs.start(task) for task in ("T1", "T2", "T3")]

    async def end(run_id: str) -> None:
        runs.cancel(run_id)
        with pytest.raises(RunFailed, match="was cancelled"):
            await runs.wait(run_id)

    await end(second)
    assert [r.run_id for r in runs.runs()] == [first, second, third]
    await end(first)  # started first, ended last: the run that ended before it goes
    assert [(r.run_id, r.state) for r in runs.runs()] == [
        (first, "cancelled"),
        (third, "running"),
    ]
    with pytest.raises(UnknownRun, match=f"no background run '{second}'; known runs: {first}, "):
        await runs.aprogress(second)  # no checkpointer: a forgotten run is gone
    await end(third)
    assert [r.run_id for r in runs.runs()] == [third]


async def test_keep_finished_keeps_the_newest_results_and_reads_the_others_back(closing) -> None:
    graph = create_agentic_loop(
        weather_model("Brest", "Nantes", "Rennes"), tools=[lookup], checkpointer=InMemorySaver()
    )
    runs = closing(graph, keep_finished=2)
    tools = {t.name: t for t in runs.tools()}
    started, results = [], []
    for city in ("Brest", "Nantes", "Rennes"):  # one after another: the script is in order
        started.append(await runs.start(f"Weather in {city}?"))
        results.append(await runs.wait(started[-1]))

    assert [r.run_id for r in runs.runs()] == started[1:]
    oldest = started[0]
    with pytest.raises(UnknownRun):
        runs.progress(oldest)
    assert (await runs.aprogress(oldest)).result == results[0]
    assert await runs.wait(oldest) == results[0]
    assert await tools["run_progress"].ainvoke({"run_id": oldest}) == (
        f"Run {oldest}: completed, 1/1 steps finished.\n"
        "Tool calls so far: 1; latest: lookup → success: sunny in Brest\n"
        "Latest result: Sunny Brest"
    )
    assert (await tools["run_result"].ainvoke({"run_id": oldest})).startswith(
        f"Run {oldest} completed: Weather in Brest?: Completed 1/1 steps.\n"
        "Step 1 [completed] Check Brest: Sunny Brest\n"
    )
    assert await tools["cancel_run"].ainvoke({"run_id": oldest}) == (
        f"Run {oldest} had already ended (completed)."
    )


async def test_keep_finished_0_forgets_each_run_as_it_ends_and_wait_still_answers(closing) -> None:
    graph = create_agentic_loop(
        weather_model("Brest"), tools=[lookup], checkpointer=InMemorySaver()
    )
    runs = closing(graph, keep_finished=0)
    run_id = await runs.start("Weather?")
    result = await runs.wait(run_id)
    assert result.status == "completed" and runs.runs() == []
    assert (await runs.aprogress(run_id)).result == result

    with pytest.raises(ValueError, match="keep_finished must be None .* got -1"):
        BackgroundRuns(graph, keep_finished=-1)


async def test_a_forgotten_cancelled_run_reads_back_unfinished_and_resumes(closing) -> None:
    model = gated()
    runs = closing(create_agentic_loop(model, checkpointer=InMemorySaver()))
    tools = {t.name: t for t in runs.tools()}
    run_id = await runs.start("Plan a trip")
    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")
    runs.cancel(run_id)
    with pytest.raises(RunFailed):
        await runs.wait(run_id)
    runs.forget(run_id)

    stored = await runs.aprogress(run_id)
    assert (stored.state, stored.position(), stored.last_outcome) == (
        "interrupted",
        "1/3 steps finished",
        "did A",
    )
    assert await tools["run_result"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} ended without a result (interrupted)."
    )
    with pytest.raises(RunFailed, match=f"run {run_id} has no result in the store .interrupted."):
        await runs.wait(run_id)

    model.gate.set()
    await runs.resume(run_id)
    assert [(r.run_id, r.state) for r in runs.runs()] == [(run_id, "running")]
    result = await runs.wait(run_id)
    assert [s.result for s in result.steps] == ["did A", "did B", "did C"]
    assert runs.progress(run_id).steps_finished == 3
    assert len(model.prompts) == 4  # step 1 was not asked again


async def test_forgetting_a_running_run_is_refused(closing) -> None:
    model = gated(gate_at=1)
    runs = closing(create_agentic_loop(model, checkpointer=InMemorySaver()))
    run_id = await runs.start("Plan a trip")
    with pytest.raises(ValueError, match=f"run {run_id} is still running; cancel it before"):
        runs.forget(run_id)
    assert runs.progress(run_id).state == "running"
    model.gate.set()
    await runs.wait(run_id)
    runs.forget(run_id)
    with pytest.raises(UnknownRun, match=f"no background run '{run_id}'; known runs: none"):
        runs.forget(run_id)


async def test_unknown_ids_kept_or_stored(closing) -> None:
    runs = closing(create_agentic_loop(stuck(), checkpointer=InMemorySaver()))
    started = [await runs.start(f"T{n}") for n in range(12)]
    newest = ", ".join(started[2:])
    with pytest.raises(UnknownRun, match=f"known runs: {newest} and 2 older ones "):
        runs.progress("bg-nope")
    for read in (runs.aprogress, runs.wait, runs.resume):
        with pytest.raises(UnknownRun, match="no background run 'bg-nope', kept or stored; known"):
            await read("bg-nope")
    [run_progress] = [t for t in runs.tools() if t.name == "run_progress"]
    assert (await run_progress.ainvoke({"run_id": "bg-nope"})).startswith(
        "No background run 'bg-nope', kept or stored; known runs: "
    )


async def test_a_new_run_never_takes_a_stored_runs_id(monkeypatch, closing) -> None:
    saver = InMemorySaver()
    taken = "bg-11111111"
    await run_agentic_loop(
        "Old task",
        model=ScriptedChatModel(script=[plan_text("A"), "a"]),
        checkpointer=saver,
        thread_id=taken,
    )
    runs = closing(
        create_agentic_loop(ScriptedChatModel(script=[plan_text("B"), "b"]), checkpointer=saver)
    )
    minted = [uuid.UUID("1" * 32), uuid.UUID("2" * 32)]
    real = uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4", lambda: minted.pop(0) if minted else real())
    run_id = await runs.start("New task")
    assert run_id == "bg-22222222"
    await runs.wait(run_id)
    assert (await runs.aprogress(taken)).task == "Old task"


# --- the tools -----------------------------------------------------------------------------


async def test_tools_answer_in_text(closing) -> None:
    model = gated()
    runs = closing(create_agentic_loop(model))
    tools = {t.name: t for t in runs.tools()}
    assert list(tools) == ["plan_and_execute", "run_progress", "run_result", "cancel_run"]
    assert "3 or more sequential steps" in tools["plan_and_execute"].description
    assert tools["plan_and_execute"].args["max_steps"]["minimum"] == 0
    assert "plan_and_execute returned" in tools["run_result"].args["run_id"]["description"]

    started = await tools["plan_and_execute"].ainvoke({"task": "Plan a trip"})
    run_id = run_id_in(started)
    assert "in the background" in started and "run_progress" in started
    await wait_for(lambda: runs.progress(run_id).current_step == 2, what="step 2 to start")

    progress = await tools["run_progress"].ainvoke({"run_id": run_id})
    assert progress == (
        f"Run {run_id}: running, step 2/3: B (1 of 3 steps finished).\nLatest result: did A"
    )
    assert await tools["run_result"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} is still running (step 2/3); call run_result again later."
    )

    model.gate.set()
    await runs.wait(run_id)
    assert await tools["run_result"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} completed: Plan a trip: Completed 3/3 steps.\n"
        "Step 1 [completed] A: did A\n"
        "Step 2 [completed] B: did B\n"
        "Step 3 [completed] C: did C\n"
        "Answer: The answer."
    )
    assert await tools["run_progress"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id}: completed, 3/3 steps finished.\nLatest result: did C"
    )
    assert await tools["cancel_run"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} had already ended (completed)."
    )


async def test_progress_and_result_report_each_steps_tool_calls(closing) -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("Check the weather"),
            calls(("lookup", {"city": "Brest"})),
            "It is sunny in Brest.",
        ],
        hold_at=3,
    )
    runs = closing(create_agentic_loop(model, tools=[lookup]))
    tools = {t.name: t for t in runs.tools()}
    run_id = run_id_in(await tools["plan_and_execute"].ainvoke({"task": "Weather?"}))
    await wait_for(
        lambda: (
            runs.progress(run_id).last_tool is not None
            and "→" in (runs.progress(run_id).last_tool or "")
        ),
        what="the lookup call's outcome",
    )

    progress = await tools["run_progress"].ainvoke({"run_id": run_id})
    assert "Tool calls so far: 1; latest: lookup → success: sunny in Brest" in progress

    model.gate.set()
    await runs.wait(run_id)
    assert await tools["run_result"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} completed: Weather?: Completed 1/1 steps.\n"
        "Step 1 [completed] Check the weather: It is sunny in Brest.\n"
        '  tool lookup {"city": "Brest"} → success: sunny in Brest\n'
        "Answer: The answer."
    )


async def test_cancel_run_tool_and_a_failed_run_in_text(closing) -> None:
    runs = closing(create_agentic_loop(gated(gate_at=1)))
    tools = {t.name: t for t in runs.tools()}
    run_id = run_id_in(await tools["plan_and_execute"].ainvoke({"task": "T"}))
    assert await tools["cancel_run"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} is cancelled (0/0 steps finished)."
    )
    assert await tools["run_result"].ainvoke({"run_id": run_id}) == (
        f"Run {run_id} ended without a result (cancelled)."
    )

    broken = closing(create_agentic_loop(ScriptedChatModel(script=[]), checkpointer=BrokenSaver()))
    [plan_and_execute, run_progress, run_result, _] = broken.tools()
    failed = run_id_in(await plan_and_execute.ainvoke({"task": "T"}))
    with pytest.raises(RunFailed):
        await broken.wait(failed)
    assert await run_progress.ainvoke({"run_id": failed}) == (
        f"Run {failed}: error, 0/0 steps finished.\nError: OSError: disk full"
    )
    assert await run_result.ainvoke({"run_id": failed}) == (
        f"Run {failed} ended without a result (error: OSError: disk full)."
    )


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("run_progress", {"run_id": "bg-nope"}, "No background run 'bg-nope'; known runs: none"),
        ("run_result", {"run_id": "bg-nope"}, "No background run 'bg-nope'"),
        ("cancel_run", {"run_id": "bg-nope"}, "No background run 'bg-nope'"),
        ("plan_and_execute", {"task": " "}, "Task must be non-empty text, got ' '"),
        ("plan_and_execute", {"task": "T", "max_steps": -1}, "Invalid arguments (max_steps: "),
        ("run_progress", {}, "Invalid arguments (run_id: Field required)"),
    ],
)
async def test_tool_errors_come_back_as_text(name, arguments, expected, closing) -> None:
    runs = closing(create_agentic_loop(ScriptedChatModel(script=[])))
    tool = {t.name: t for t in runs.tools()}[name]
    answer = await tool.ainvoke(arguments)
    assert answer.startswith(expected) and answer.endswith("call again.")
    assert runs.runs() == []


# --- an outer agent --------------------------------------------------------------------------


class PromptsSeen(AsyncCallbackHandler):
    """Records the last message of every chat model call its run reaches."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.prompts.append(messages[0][-1].text)


def tool_call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])


async def test_outer_agent_starts_a_background_run_and_reads_its_result(closing) -> None:
    inner = gated(gate_at=1)
    graph = create_agentic_loop(inner, checkpointer=InMemorySaver())
    runs = closing(graph, result_wait_s=2.0)
    seen_while_starting: list[str] = []

    def ask_for_result(messages: list[BaseMessage]) -> AIMessage:
        run_id = run_id_in(messages[-1].text)
        seen_while_starting.append(runs.progress(run_id).state)
        inner.gate.set()  # the loop was blocked on its plan while the agent went on
        return tool_call("run_result", {"run_id": run_id}, "call-2")

    outer = ScriptedChatModel(  # a chat agent's model: call k answers `script[k](messages)`
        script=[
            lambda _: tool_call("plan_and_execute", {"task": "Plan a trip"}, "call-1"),
            ask_for_result,
            lambda messages: AIMessage(f"All done. {messages[-1].text.splitlines()[0]}"),
        ]
    )
    agent = create_agent(model=outer, tools=runs.tools(), checkpointer=InMemorySaver())
    agent_callbacks = PromptsSeen()
    out = await agent.ainvoke(
        {"messages": [HumanMessage("Plan my trip, step by step")]},
        {"configurable": {"thread_id": "chat"}, "callbacks": [agent_callbacks]},
    )

    started, result = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    run_id = run_id_in(started.text)
    assert "in the background" in started.text
    assert seen_while_starting == ["running"]
    assert result.text.startswith(f"Run {run_id} completed: Plan a trip: Completed 3/3 steps.")
    assert out["messages"][-1].text == (
        f"All done. Run {run_id} completed: Plan a trip: Completed 3/3 steps."
    )
    assert "Plan a trip" in inner.prompts[0] and "Step 3/3: C" in inner.prompts[3]
    # The agent's callbacks see its own 3 model calls and every one of the run's (plan,
    # 3 steps, answer): the tool call's callbacks go on to the run, on its own thread.
    assert len(agent_callbacks.prompts) == 3 + 5
    seen = {prompt.splitlines()[-1] for prompt in agent_callbacks.prompts}
    assert inner.prompts and {prompt.splitlines()[-1] for prompt in inner.prompts} <= seen
    stored = await graph.aget_state({"configurable": {"thread_id": run_id}})
    assert stored.values["result"].status == "completed"
    assert stored.config["configurable"]["checkpoint_ns"] == ""  # not a part of the agent's run
