"""Tools inside steps: the tool loop's routes, its limit, tool errors, approvals, resuming
without repeating a finished call, and the errors a bad setup gets when the graph is built."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, plan_text, wait_for
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agentic_loop import LoopOptions
from agentic_loop.core import events
from agentic_loop.core.answers import read_approval
from agentic_loop.core.conversation import APPROVED_KEY, tagged
from agentic_loop.core.events import ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.routes import route_after_schedule
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import Plan, RunningStep
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import load_run, open_store
from agentic_loop.runs.streaming import AwaitingAnswer, stream_run

CONFIG = {"configurable": {"thread_id": "t"}}


class Notebook:
    """Tools with a side effect the tests can count."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def tools(self) -> list[Any]:
        @tool
        def note(text: str) -> str:
            """Write a line in the notebook."""
            self.lines.append(text)
            return f"noted {text!r}"

        @tool
        def explode(reason: str) -> str:
            """Always fails."""
            raise RuntimeError(f"exploded: {reason}")

        return [note, explode]


def tool_messages(model: ScriptedChatModel, call: int) -> list[ToolMessage]:
    """The tool results the model saw in its call number `call` (from 1)."""
    return [m for m in model.conversations[call - 1] if isinstance(m, ToolMessage)]


async def collect(graph: Any, graph_input: Any, config: Any = CONFIG) -> list[dict[str, Any]]:
    return [
        item
        async for item in graph.astream(
            graph_input, config, stream_mode="custom", durability="sync"
        )
    ]


# --- routes ----------------------------------------------------------------------------

PLAN = Plan(task_id="x", steps=["s1", "s2"], planned_count=2, max_steps=10, duration_ms=0)
PROMPT = [tagged(HumanMessage("Step 1/2: s1"), 1)]
TWO_CALLS = tagged(calls(("note", {"text": "a"}), ("explode", {"reason": "b"})), 1)
RUNNING = {"1": RunningStep(step_num=1, started_at=0)}


@pytest.mark.parametrize(
    ("state", "approve", "expected"),
    [
        (
            {"running": {"1": RunningStep(step_num=1, started_at=0, failure="e")}},
            frozenset(),
            ["adapt"],
        ),
        ({"running": RUNNING, "messages": PROMPT}, frozenset(), ["execute"]),
        ({"running": RUNNING, "messages": [*PROMPT, TWO_CALLS]}, frozenset(), ["call_tool"] * 2),
        (
            {"running": RUNNING, "messages": [*PROMPT, TWO_CALLS]},
            frozenset({"explode"}),
            ["approve_tools"],
        ),
        (  # a reviewer answered both calls: they run
            {
                "running": RUNNING,
                "messages": [
                    *PROMPT,
                    TWO_CALLS.model_copy(
                        update={
                            "response_metadata": {
                                APPROVED_KEY: [call["id"] for call in TWO_CALLS.tool_calls]
                            }
                        }
                    ),
                ],
            },
            frozenset({"explode"}),
            ["call_tool"] * 2,
        ),
    ],
)
async def test_route_after_schedule_for_a_step_in_progress(
    state: dict, approve: frozenset[str], expected: list[str]
) -> None:
    tools = tuple(Notebook().tools())
    model = ScriptedChatModel(script=[])
    settings = Settings(model=model, tools=tools, options=LoopOptions(approve_tools=approve))
    route = await route_after_schedule(
        {"task": "T", "plan": PLAN, "steps": [], **state}, settings=settings
    )
    assert isinstance(route, list) and [send.node for send in route] == expected


# --- the tool loop ---------------------------------------------------------------------


async def test_a_step_calls_tools_sees_their_results_and_ends_with_its_report() -> None:
    notebook = Notebook()
    model = ScriptedChatModel(
        script=[
            plan_text("Take notes", "Sum up"),
            calls(("note", {"text": "first"})),
            calls(("note", {"text": "second"})),
            "Took two notes.",
            "Summed up.",
        ]
    )
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), tools=notebook.tools())
    seen = await collect(graph, {"task": "Notes"})
    result = (await graph.aget_state(CONFIG)).values["result"]

    assert notebook.lines == ["first", "second"]
    assert [m.text for m in tool_messages(model, 3)] == ["noted 'first'"]
    assert [m.text for m in tool_messages(model, 4)] == ["noted 'first'", "noted 'second'"]
    assert "You may call these tools: note, explode" in model.prompts[1]
    step1, step2 = result.steps
    assert (step1.result, step1.status) == ("Took two notes.", "completed")
    assert [(c.tool, c.args, c.result, c.status) for c in step1.tool_calls] == [
        ("note", {"text": "first"}, "noted 'first'", "success"),
        ("note", {"text": "second"}, "noted 'second'", "success"),
    ]
    assert step2.tool_calls == []
    assert len(model.conversations[4]) == 2  # step 2 starts a fresh conversation
    tool_events = [item for item in seen if item["event"].startswith("agentic.tool_")]
    assert [(e["event"], e["data"]["tool"], e["data"]["step"]) for e in tool_events] == [
        (events.TOOL_CALLED, "note", 1),
        (events.TOOL_RESULT, "note", 1),
        (events.TOOL_CALLED, "note", 1),
        (events.TOOL_RESULT, "note", 1),
    ]
    assert tool_events[0]["data"]["args"] == '{"text": "first"}'
    assert tool_events[1]["data"]["result"] == "noted 'first'"
    assert tool_events[1]["data"]["status"] == "success"
    assert tool_events[1]["data"]["duration_ms"] >= 0


async def test_tool_errors_go_back_to_the_model_and_the_step_goes_on() -> None:
    notebook = Notebook()
    model = ScriptedChatModel(
        script=[
            plan_text("Try things"),
            calls(("explode", {"reason": "boom"}), ("no_such_tool", {}), ("note", {"txt": 1})),
            "Nothing worked, so I stopped.",
        ]
    )
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), tools=notebook.tools())
    await collect(graph, {"task": "T"})
    result = (await graph.aget_state(CONFIG)).values["result"]

    raised, unknown, invalid = tool_messages(model, 3)
    assert all(m.status == "error" for m in (raised, unknown, invalid))
    assert "RuntimeError: exploded: boom" in raised.text
    assert "no_such_tool is not a valid tool, try one of [note, explode]" in unknown.text
    assert "text: Field required" in invalid.text
    assert notebook.lines == []
    assert result.status == "completed"
    assert [c.status for c in result.steps[0].tool_calls] == ["error"] * 3


async def test_past_max_tool_calls_the_step_fails_and_is_adapted() -> None:
    notebook = Notebook()
    model = ScriptedChatModel(
        script=[
            plan_text("Take notes"),
            calls(("note", {"text": "1"}), ("note", {"text": "2"})),
            calls(("note", {"text": "3"})),  # a third call, past max_tool_calls=2
            "Wrote the notes another way.",
        ]
    )
    graph = create_agentic_loop(
        model, checkpointer=InMemorySaver(), tools=notebook.tools(), max_tool_calls=2
    )
    await collect(graph, {"task": "T"})
    result = (await graph.aget_state(CONFIG)).values["result"]

    assert notebook.lines == ["1", "2"]
    assert "past its limit of 2 (max_tool_calls)" in model.prompts[3]  # the adapt prompt
    step = result.steps[0]
    assert (step.status, step.result) == ("adapted", "Wrote the notes another way.")
    assert [c.args for c in step.tool_calls] == [{"text": "1"}, {"text": "2"}]
    state = await graph.aget_state(CONFIG)
    assert state.values["messages"] == [] and state.values["running"] == {}


async def test_a_model_error_in_the_middle_of_a_step_is_adapted_with_its_tool_calls() -> None:
    notebook = Notebook()
    model = ScriptedChatModel(
        script=[
            plan_text("Take notes"),
            calls(("note", {"text": "1"})),
            ConnectionError("model went away"),
            "Adapted.",
        ]
    )
    graph = create_agentic_loop(model, checkpointer=InMemorySaver(), tools=notebook.tools())
    await collect(graph, {"task": "T"})
    step = (await graph.aget_state(CONFIG)).values["result"].steps[0]
    assert (step.status, step.result) == ("adapted", "Adapted.")
    assert [c.tool for c in step.tool_calls] == ["note"]


# --- approvals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("approve", {"action": "approve"}),
        (True, {"action": "approve"}),
        ({"action": "edit", "args": {"text": "x"}}, {"action": "edit", "args": {"text": "x"}}),
        ("reject", {"action": "reject"}),
        (False, {"action": "reject"}),
        ({"action": "reject", "reason": " no "}, {"action": "reject", "reason": "no"}),
    ],
)
def test_approval_answers(answer: object, expected: dict[str, Any]) -> None:
    assert read_approval(answer) == expected


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ("yes please", "unreadable approval 'yes please'"),
        ({"action": "edit"}, "an edit needs `args`"),
        ({"action": "edit", "args": ["x"]}, "an edit needs `args`"),
    ],
)
def test_unreadable_approvals(answer: object, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        read_approval(answer)


def approval_graph(notebook: Notebook, final: str = "Done.") -> tuple[Any, ScriptedChatModel]:
    model = ScriptedChatModel(
        script=[plan_text("Take a note"), calls(("note", {"text": "draft"})), final]
    )
    graph = create_agentic_loop(
        model, checkpointer=InMemorySaver(), tools=notebook.tools(), approve_tools=["note"]
    )
    return graph, model


async def test_a_call_waits_for_approval_then_runs() -> None:
    notebook = Notebook()
    graph, model = approval_graph(notebook)
    await collect(graph, {"task": "T"})
    state = await graph.aget_state(CONFIG)
    assert state.next == ("approve_tools",)
    request = state.interrupts[0].value
    assert request["kind"] == "tool_approval"
    assert (request["tool"], request["args"], request["step"]) == ("note", {"text": "draft"}, 1)
    assert notebook.lines == []

    await collect(graph, Command(resume="approve"))
    assert notebook.lines == ["draft"]
    assert (await graph.aget_state(CONFIG)).values["result"].status == "completed"


async def test_an_edited_call_runs_with_the_new_arguments() -> None:
    notebook = Notebook()
    graph, model = approval_graph(notebook)
    await collect(graph, {"task": "T"})
    await collect(graph, Command(resume={"action": "edit", "args": {"text": "final"}}))

    assert notebook.lines == ["final"]
    turn = [m for m in model.conversations[2] if isinstance(m, AIMessage)][0]
    assert turn.tool_calls[0]["args"] == {"text": "final"}  # the model sees what ran
    record = (await graph.aget_state(CONFIG)).values["result"].steps[0].tool_calls[0]
    assert (record.args, record.status) == ({"text": "final"}, "success")


async def test_a_rejected_call_does_not_run_and_the_model_is_told() -> None:
    notebook = Notebook()
    graph, model = approval_graph(notebook, final="Went on without the note.")
    await collect(graph, {"task": "T"})
    seen = await collect(graph, Command(resume={"action": "reject", "reason": "not now"}))

    assert notebook.lines == []
    (refusal,) = tool_messages(model, 3)
    assert refusal.status == "error"
    assert "A reviewer refused this call: not now. It did not run." in refusal.text
    step = (await graph.aget_state(CONFIG)).values["result"].steps[0]
    assert step.result == "Went on without the note."
    assert [(c.tool, c.status) for c in step.tool_calls] == [("note", "refused")]
    results = [e["data"] for e in seen if e["event"] == events.TOOL_RESULT]
    assert [r["status"] for r in results] == ["refused"]


async def test_an_unreadable_approval_asks_again() -> None:
    notebook = Notebook()
    graph, _ = approval_graph(notebook)
    await collect(graph, {"task": "T"})
    await collect(graph, Command(resume="sure"))
    state = await graph.aget_state(CONFIG)
    assert state.next == ("approve_tools",)
    assert "unreadable approval 'sure'" in state.interrupts[0].value["problem"]
    await collect(graph, Command(resume=True))
    assert notebook.lines == ["draft"]


async def test_run_agentic_loop_answers_approvals_through_its_handler() -> None:
    notebook = Notebook()
    asked: list[dict[str, Any]] = []

    async def approve(request: dict[str, Any]) -> Any:
        asked.append(request)
        return {"action": "edit", "args": {"text": request["args"]["text"].upper()}}

    model = ScriptedChatModel(
        script=[plan_text("Take a note"), calls(("note", {"text": "hi"})), "ok"]
    )
    result = await run_agentic_loop(
        "T", model=model, tools=notebook.tools(), approve_tools=True, approve=approve
    )
    assert [r["tool"] for r in asked] == ["note"]
    assert notebook.lines == ["HI"]
    assert result.status == "completed"


async def test_a_pause_for_approval_without_a_handler_raises_awaiting_answer() -> None:
    notebook = Notebook()
    graph, _ = approval_graph(notebook)
    with pytest.raises(AwaitingAnswer, match="waits for a tool call to be reviewed") as caught:
        await stream_run(graph, {"task": "T"}, CONFIG, ProgressRelay())
    assert caught.value.request["tool"] == "note"


# --- resuming inside a step ------------------------------------------------------------


async def test_a_stopped_step_resumes_without_repeating_its_finished_tool_calls(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.sqlite"
    notebook = Notebook()
    first = ScriptedChatModel(
        script=[plan_text("Take notes"), calls(("note", {"text": "once"})), "never"], hold_at=3
    )
    async with open_store(db) as saver:
        graph = create_agentic_loop(first, checkpointer=saver, tools=notebook.tools())
        run = asyncio.create_task(stream_run(graph, {"task": "T"}, CONFIG, ProgressRelay()))
        # the tool ran; the model's next turn is in flight
        await wait_for(lambda: first.held, what="the model's turn after the tool")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert notebook.lines == ["once"]

    second = ScriptedChatModel(script=["Noted once."])
    async with open_store(db) as saver:
        graph = create_agentic_loop(second, checkpointer=saver, tools=notebook.tools())
        assert (await graph.aget_state(CONFIG)).next == ("execute",)
        result = await stream_run(graph, None, CONFIG, ProgressRelay())
        stored = await load_run(saver, "t")

    assert notebook.lines == ["once"]
    assert len(second.prompts) == 1  # only the turn in flight was asked again
    assert [m.text for m in tool_messages(second, 1)] == ["noted 'once'"]
    assert result.status == "completed"
    assert stored is not None and stored.result == result
    assert [c.tool for c in result.steps[0].tool_calls] == ["note"]


# --- setup errors ----------------------------------------------------------------------


def no_docstring(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (
            RunnableLambda(lambda m: m),
            {"tools": Notebook().tools()},
            "the model RunnableLambda cannot call tools; use a chat model that calls tools",
        ),
        (None, {"tools": Notebook().tools() * 2}, "two tools share the name 'explode'"),
        (
            None,
            {"tools": Notebook().tools(), "approve_tools": ["nope"]},
            "approve_tools names 'nope', which is not one of the tools: note, explode",
        ),
        (None, {"tools": Notebook().tools(), "approve_tools": "note"}, "approve_tools must be"),
        (None, {"tools": Notebook().tools(), "max_tool_calls": 0}, "max_tool_calls must be"),
    ],
)
def test_bad_tool_settings_fail_when_the_graph_is_built(
    model: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        create_agentic_loop(model or ScriptedChatModel(script=[]), **options)


def test_plain_functions_become_tools() -> None:
    def shout(text: str) -> str:
        """Say it loudly."""
        return text.upper()

    graph = create_agentic_loop(ScriptedChatModel(script=[]), tools=[shout])
    assert "call_tool" in graph.nodes
    with pytest.raises(ValueError, match="docstring"):
        create_agentic_loop(ScriptedChatModel(script=[]), tools=[no_docstring])


async def test_approve_tools_without_a_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="approve_tools needs an `approve` handler"):
        await run_agentic_loop(
            "T", model=ScriptedChatModel(script=[]), tools=Notebook().tools(), approve_tools=True
        )
