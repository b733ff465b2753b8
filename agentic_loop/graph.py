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

from agentic_loop.models import default_plan_format
from agentic_loop.nodes import (
    adapt,
    answer,
    call_tool_node,
    execute,
    plan,
    review,
    summarise,
)
from agentic_loop.nodes.approve_tools import approve_tools as approve_tool_calls
from agentic_loop.nodes.replan import replan as replan_node
from agentic_loop.nodes.schedule import schedule
from agentic_loop.routes import (
    StepNode,
    route_after_plan,
    route_after_review,
    route_after_schedule,
)
from agentic_loop.settings import (
    DEFAULT_MAX_PARALLEL,
    DEFAULT_MAX_REPLANS,
    DEFAULT_MAX_TOOL_CALLS,
    DEFAULT_REPLY_CHARS,
    PlanFormat,
    Settings,
    default_max_steps,
)
from agentic_loop.state import AgenticInput, AgenticOutput, AgenticState, ReplanMode, StepTask


def build_graph(
    model: Runnable,
    *,
    max_steps: int = 0,
    recent_results: int = 2,
    result_chars: int = 200,
    review_plan: bool = False,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS,
    approve_tools: bool | Sequence[str] = False,
    replan: ReplanMode = "on_failure",
    max_replans: int = DEFAULT_MAX_REPLANS,
    max_reply_chars: int = DEFAULT_REPLY_CHARS,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    step_timeout: float | None = None,
    max_seconds: float | None = None,
    max_tokens: int | None = None,
    plan_format: PlanFormat | None = None,
) -> StateGraph[AgenticState, None, AgenticInput, AgenticOutput]:
    """The loop as an uncompiled `StateGraph`, to compile with your own checkpointer or to
    add to a bigger graph as one node: it reads `task` (and `max_steps`) and writes only
    `result`. `max_steps=0` means `AGENTIC_LOOP_MAX_STEPS`, else 10. A model with a
    `context_window` attribute (the embedded one) gets prompts cut to fit it.

    With `review_plan=True`, runs pause in the `review` node with `interrupt()` once the
    plan is made (see `agentic_loop.state.PlanReview` for the answers it takes); it needs
    a checkpointer. A run's input may say otherwise (`{"task": ..., "review_plan": ...}`);
    the graph's shape is the same either way.

    `tools` (LangChain tools, or plain functions with docstrings) make each step a small
    tool-using agent: the model may call them, sees each result, and ends the step with a
    reply that calls none. A step may make at most `max_tool_calls` calls; past that it
    fails and is adapted. Calls of the tools named in `approve_tools` (`True`: every tool)
    pause with `interrupt()` for a reviewer (see `agentic_loop.state.ToolApproval`).

    `replan` says when the model may revise the steps left from what the finished steps
    found: `"on_failure"` (after a step that failed and was adapted), `"after_each_step"`
    or `"never"`; at most `max_replans` times a run. After the last step the model writes
    the answer to the task. A reply longer than `max_reply_chars` characters is cut there
    and marked as cut short; one that is no result at all (empty, or one line or phrase
    repeated over and over) counts as a failed call.

    Steps whose dependencies have finished run side by side, at most `max_parallel` at
    once; a step whose dependency failed is skipped. `plan_format` says how the plan is
    asked for: in JSON held to a schema, as a numbered list whose steps may end with
    "(after 1, 3)", or as a list with the schema as the fallback (None: what suits the
    model, see `models.default_plan_format`).
    Budgets: `step_timeout` seconds for one step (then it is adapted), `max_seconds` for
    the steps of the run (from the first step's start; steps in progress are stopped) and
    `max_tokens` for all its model calls (steps in progress finish). Once a budget is
    spent no step starts, the steps left are skipped, and the answer is written from what
    was done."""
    step_tools = tuple(
        tool if isinstance(tool, BaseTool) else StructuredTool.from_function(tool) for tool in tools
    )
    if approve_tools is True:
        approve = frozenset(tool.name for tool in step_tools)
    elif approve_tools is False:
        approve = frozenset()
    elif isinstance(approve_tools, str):
        raise ValueError(
            f"approve_tools must be True or a list of tool names, got {approve_tools!r}"
        )
    else:
        approve = frozenset(approve_tools)
    settings = Settings(
        model=model,
        max_steps=max_steps or default_max_steps(),
        recent_results=recent_results,
        result_chars=result_chars,
        context_window=getattr(model, "context_window", None),
        reply_tokens=getattr(model, "max_tokens", 0) or 0,
        tools=step_tools,
        max_tool_calls=max_tool_calls,
        approve_tools=approve,
        review_plan=review_plan,
        replan=replan,
        max_replans=max_replans,
        max_reply_chars=max_reply_chars,
        max_parallel=max_parallel,
        step_timeout=step_timeout,
        max_seconds=max_seconds,
        max_tokens=max_tokens,
        plan_format=plan_format or default_plan_format(model),
    )
    builder = StateGraph(AgenticState, input_schema=AgenticInput, output_schema=AgenticOutput)
    builder.add_node("plan", partial(plan, settings=settings))
    builder.add_node("review", review)
    builder.add_node("schedule", partial(schedule, settings=settings))
    builder.add_node("execute", partial(execute, settings=settings), input_schema=StepTask)
    builder.add_node("call_tool", call_tool_node(settings))
    builder.add_node(
        "approve_tools", partial(approve_tool_calls, settings=settings), input_schema=StepTask
    )
    builder.add_node("adapt", partial(adapt, settings=settings), input_schema=StepTask)
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
    for step_node in get_args(StepNode):
        builder.add_edge(step_node, "schedule")
    builder.add_edge("replan", "schedule")
    builder.add_edge("answer", "summarise")
    builder.add_edge("summarise", END)
    return builder


def create_agentic_loop(
    model: Runnable,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    store: BaseStore | None = None,
    name: str = "agentic_loop",
    **settings: Any,
) -> CompiledStateGraph[AgenticState, None, AgenticInput, AgenticOutput]:
    """`build_graph(model, **settings)` compiled. Stream with `durability="sync"` for
    every node's writes to be stored before the next node starts. `agentic_loop.checkpointer()`
    is an in-memory checkpointer that restores the loop's types without warnings."""
    return build_graph(model, **settings).compile(checkpointer=checkpointer, store=store, name=name)
