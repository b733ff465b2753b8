"""The graph's nodes, one module each."""

from agentic_loop.nodes.adapt import adapt
from agentic_loop.nodes.answer import answer
from agentic_loop.nodes.approve_tools import approve_tools
from agentic_loop.nodes.call_tool import call_tool_node
from agentic_loop.nodes.execute import execute
from agentic_loop.nodes.plan import plan
from agentic_loop.nodes.replan import replan
from agentic_loop.nodes.review import review
from agentic_loop.nodes.summarise import summarise

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
