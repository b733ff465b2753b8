"""The graph's nodes, one module each."""

from agentic_loop.core.nodes.adapt import adapt
from agentic_loop.core.nodes.answer import answer
from agentic_loop.core.nodes.approve_tools import approve_tools
from agentic_loop.core.nodes.call_tool import call_tool_node
from agentic_loop.core.nodes.execute import execute
from agentic_loop.core.nodes.plan import plan
from agentic_loop.core.nodes.replan import replan
from agentic_loop.core.nodes.review import review
from agentic_loop.core.nodes.summarise import summarise

__all__ = [
    "adapt",
    "answer",
    "approve_tools",
    "call_tool_node",
    "execute",
    "plan",
    "replan",
    "review",
    "summarise",
]
