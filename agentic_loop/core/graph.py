"""How the nodes connect: plan (then, if asked, review), then rounds of steps dispatched by
schedule, each step going back and forth through execute, call_tool (and approve_tools)
while its model calls tools, adapt when a call fails, replanning between rounds, then
answer and summarise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, get_args

from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from agentic_loop.core.nodes import (
    adapt,
    answer,
    call_tool_node,
    execute,
    plan,
    review,
    summarise,
)
from agentic_loop.core.nodes.approve_tools import approve_tools as approve_tool_calls
from agentic_loop.core.nodes.replan import replan as replan_node
from agentic_loop.core.nodes.schedule import schedule
from agentic_loop.core.options import LoopOptions
from agentic_loop.core.routes import (
    StepNode,
    after_step,
    route_after_plan,
    route_after_review,
    route_after_schedule,
    telling_if_alone,
)
from agentic_loop.core.settings import Settings
from agentic_loop.core.state import AgenticInput, AgenticOutput, AgenticState, StepTask
from agentic_loop.models import default_plan_format


def build_graph(
    model: Runnable[Any, Any],
    *,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    options: LoopOptions | None = None,
    **choices: Any,
) -> StateGraph[AgenticState, None, AgenticInput, AgenticOutput]:
    """The loop as an uncompiled `StateGraph`, to compile with your own checkpointer or to
    add to a bigger graph as one node: it reads `task` (and `max_steps`) and writes only
    `result`.

    What a run may choose is `options` (an `agentic_loop.LoopOptions`), or the same
    choices as keywords (`build_graph(model, max_parallel=1, replan="never")`), or both
    (the keywords change `options`); see `LoopOptions` for each. A model with a
    `context_window` attribute (the embedded one) gets prompts cut to fit it.

    With `review_plan=True`, runs pause in the `review` node with `interrupt()` once the
    plan is made (see `agentic_loop.core.state.PlanReview` for the answers it takes); it
    needs a checkpointer. A run's input may say otherwise (`{"task": ..., "review_plan":
    ...}`); the graph's shape is the same either way.

    `tools` (LangChain tools, or plain functions with docstrings) make each step a small
    tool-using agent: the model may call them, sees each result, and ends the step with a
    reply that calls none. A step may make at most `max_tool_calls` calls; past that it
    fails and is adapted. Calls of the tools named in `approve_tools` (`True`: every tool)
    pause with `interrupt()` for a reviewer (see `agentic_loop.core.state.ToolApproval`).

    `replan` says when the model may revise the steps left from what the finished steps
    found: `"on_failure"` (after a step that failed and was adapted), `"after_each_step"`
    or `"never"`; at most `max_replans` times a run. After the last step the model writes
    the answer to the task. A reply longer than `max_reply_chars` characters is cut there
    and marked as cut short; one that is no result at all (empty, or one line or phrase
    repeated over and over) counts as a failed call.

    `prompts` chooses how the model is asked: `"capable"` (a step does the step and gives
    its result in full, seeing the results it builds on whole as far as the model's
    window allows) or `"small"` (tuned for the embedded 135M model); None: `small` for
    the embedded model, else `capable` (see `agentic_loop.core.prompts`).

    Steps whose dependencies have finished run side by side, at most `max_parallel` at
    once; a step whose dependency failed is skipped. `plan_format` says how the plan is
    asked for (None: what suits the model, see `models.default_plan_format`).
    Budgets: `step_timeout` seconds for one step (then it is adapted), `max_seconds` for
    the steps of the run (from the first step's start; steps in progress are stopped) and
    `max_tokens` for all its model calls (steps in progress finish). Once a budget is
    spent no step starts, the steps left are skipped, and the answer is written from what
    was done."""
    options = (options or LoopOptions()).replace(**choices)
    step_tools = tuple(
        tool if isinstance(tool, BaseTool) else StructuredTool.from_function(tool) for tool in tools
    )
    settings = Settings(
        model=model,
        options=options,
        tools=step_tools,
        plan_format=options.plan_format or default_plan_format(model),
    )
    builder = StateGraph(AgenticState, input_schema=AgenticInput, output_schema=AgenticOutput)
    builder.add_node("plan", partial(plan, settings=settings))
    builder.add_node("review", review)
    builder.add_node("schedule", partial(schedule, settings=settings))
    builder.add_node(
        "execute", telling_if_alone(partial(execute, settings=settings)), input_schema=StepTask
    )
    builder.add_node("call_tool", call_tool_node(settings))
    builder.add_node(
        "approve_tools",
        telling_if_alone(partial(approve_tool_calls, settings=settings)),
        input_schema=StepTask,
    )
    builder.add_node(
        "adapt", telling_if_alone(partial(adapt, settings=settings)), input_schema=StepTask
    )
    builder.add_node("replan", partial(replan_node, settings=settings))
    builder.add_node("answer", partial(answer, settings=settings))
    builder.add_node("summarise", summarise)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", route_after_plan)
    builder.add_conditional_edges("review", route_after_review)
    builder.add_conditional_edges(
        "schedule",
        partial(route_after_schedule, settings=settings),
        ["replan", "answer", *get_args(StepNode)],
    )
    for step_node in ("execute", "adapt", "approve_tools"):
        builder.add_conditional_edges(
            step_node, after_step(settings), ["schedule", "replan", "answer", *get_args(StepNode)]
        )
    builder.add_edge("call_tool", "schedule")
    builder.add_edge("replan", "schedule")
    builder.add_edge("answer", "summarise")
    builder.add_edge("summarise", END)
    return builder


def create_agentic_loop(
    model: Runnable[Any, Any],
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    store: BaseStore | None = None,
    name: str = "agentic_loop",
    **choices: Any,
) -> CompiledStateGraph[AgenticState, None, AgenticInput, AgenticOutput]:
    """`build_graph(model, **choices)` compiled (`tools`, `options` and the options'
    keywords). Stream with `durability="sync"` for
    every node's writes to be stored before the next node starts. `agentic_loop.checkpointer()`
    is an in-memory checkpointer that restores the loop's types without warnings. With a
    `store`, each tool call is recorded there before it runs, so that a call cut off by a
    kill is not run again blindly on resume (see `core.started_calls`); without one, it
    runs again."""
    return build_graph(model, **choices).compile(checkpointer=checkpointer, store=store, name=name)
