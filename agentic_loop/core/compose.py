"""The loop as one node of a parent graph, with the parent's keys checked when it is added.

LangGraph drops a node's output keys that the parent's state lacks, without a word: a
parent without a `result` key would never see the loop's result. `add_agentic_loop`
checks the keys instead, and can map the loop's `task` and `result` to keys of the
parent's own names.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

PASSED_ON = ("max_steps", "review_plan")
"""Optional input keys of the loop that a parent's state may hold too."""


def add_agentic_loop(
    parent: StateGraph[Any, Any, Any, Any],
    loop: CompiledStateGraph[Any, Any, Any, Any],
    *,
    name: str = "agentic_loop",
    task_key: str = "task",
    result_key: str = "result",
) -> StateGraph[Any, Any, Any, Any]:
    """Add `loop` (`create_agentic_loop(...)`, or `build_graph(...).compile()`) to `parent`
    as the node `name`: it plans and runs the task in the parent's `task_key` and writes its
    `AgenticResult` to the parent's `result_key`. Returns `parent`, for chaining.

    A parent state without either key is a ValueError saying which and how to add it.
    With the default keys the loop is added as it is, a subgraph whose checkpoints,
    interrupts and events reach the parent; with others, a node maps the keys and runs
    the loop as a subgraph all the same."""
    keys = set(parent.channels)
    for key, what, kind in ((task_key, "task", "str"), (result_key, "result", "AgenticResult")):
        if key not in keys:
            raise ValueError(
                f"the parent graph's state has no {key!r} key for the loop's {what}: add "
                f"`{key}: {kind}` to it (inheriting agentic_loop.AgenticInput and "
                "AgenticOutput gives `task` and `result`), or pass "
                f"{what}_key= naming a key it has"
            )
    if (task_key, result_key) == ("task", "result"):
        return parent.add_node(name, loop)

    async def run_agentic_loop(state: Any, config: RunnableConfig) -> dict[str, Any]:
        values = state if isinstance(state, dict) else vars(state)  # a pydantic or dataclass state
        loop_input = {"task": values.get(task_key)}
        loop_input |= {key: values[key] for key in PASSED_ON if values.get(key) is not None}
        output = await loop.ainvoke(loop_input, config)
        return {result_key: output["result"]}

    return parent.add_node(name, run_agentic_loop)
