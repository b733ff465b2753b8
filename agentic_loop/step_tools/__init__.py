"""Tools for the steps: loaded by name (`--tools`, `--mcp`, `--workspace`: `loading`), and the
file tools confined to a workspace folder (`workspace`)."""

from agentic_loop.core.options import ToolOptions, ToolSetupError
from agentic_loop.step_tools.loading import load_tools

__all__ = ["ToolOptions", "ToolSetupError", "load_tools"]
