"""Tools for the steps: loaded by name (`--tools`, `--mcp`, `--workspace`: `loading`), MCP
servers' sessions, one per server for each run (`mcp_servers`), where their stderr goes
(`mcp_logs`), and the file tools confined to a workspace folder (`workspace`)."""

from agentic_loop.core.options import ToolOptions, ToolSetupError
from agentic_loop.step_tools.loading import PreparedTools, load_tools, prepare_tools
from agentic_loop.step_tools.mcp_logs import mcp_log_path

__all__ = [
    "PreparedTools",
    "ToolOptions",
    "ToolSetupError",
    "load_tools",
    "mcp_log_path",
    "prepare_tools",
]
