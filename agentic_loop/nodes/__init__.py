"""The graph's nodes, one module each."""

from agentic_loop.nodes.adapt import adapt
from agentic_loop.nodes.execute import execute
from agentic_loop.nodes.plan import plan
from agentic_loop.nodes.review import review
from agentic_loop.nodes.summarise import summarise

__all__ = ["adapt", "execute", "plan", "review", "summarise"]
