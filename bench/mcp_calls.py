"""Time per MCP tool call, for the README: a session for each call (as the loop did) against
the session a run keeps, and a raw kept `ClientSession` as the floor.

Run from the repository root:

    python bench/mcp_calls.py [--calls 100] [--node-server PATH]

For each server, `--calls` calls of one cheap tool (a tenth of them for "before"), each
after one not counted, median (and slowest) in milliseconds:

- before: the tools of langchain-mcp-adapters' `MultiServerMCPClient.get_tools()`, as
  `load_tools` gave them before sessions were kept: every call opens a session (for stdio,
  starts the server's process) and closes it;
- after: the tools a run gets (`prepare_tools(...).open(log)`), called as LangGraph's
  `ToolNode` calls them (`ainvoke` with a tool call), over the session the run keeps;
- raw: `ClientSession.call_tool` on a session held open, nothing around it, called in
  turn with "after".

Servers: `tests/mcp_server.py` (FastMCP, Python) over stdio and over streamable HTTP on
127.0.0.1, and with `--node-server` the npm reference filesystem server
(`npm install @modelcontextprotocol/server-filesystem`, then the path of
`node_modules/.bin/mcp-server-filesystem`) over stdio. Also timed: starting the run's
servers (`open`), once a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from langchain_core.messages import ToolCall
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.sessions import Connection
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from agentic_loop.core.options import ToolOptions
from agentic_loop.step_tools.loading import prepare_tools

ROOT = Path(__file__).resolve().parent.parent
PYTHON_SERVER = str(ROOT / "tests" / "mcp_server.py")


@dataclass(frozen=True)
class Server:
    label: str
    entry: dict[str, Any]
    """Its `mcpServers` entry."""
    tool: str
    args: dict[str, Any]


def milliseconds(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f} ({max(times) * 1000:.1f})"


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    await call()  # not counted
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def tool_call(server: Server) -> ToolCall:
    return {"name": server.tool, "args": server.args, "id": "call-1", "type": "tool_call"}


async def before(server: Server, calls: int) -> list[float]:
    client = MultiServerMCPClient({"bench": connection(server.entry)})
    tools = {found.name: found for found in await client.get_tools()}
    return await timed(lambda: tools[server.tool].ainvoke(tool_call(server)), calls)


async def after_and_raw(
    server: Server, calls: int, folder: Path
) -> tuple[list[float], list[float], float]:
    """The run's kept session and a raw one, open side by side and called in turn (so that
    a busy moment of the machine weighs on both), and the time the run's `open` took."""
    config = folder / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"bench": server.entry}}))
    prepared = await prepare_tools(ToolOptions(mcp_config=str(config)))
    started = time.perf_counter()
    async with prepared.open(folder / "bench.log") as tools:
        opened = time.perf_counter() - started
        named: dict[str, BaseTool] = {found.name: found for found in tools}
        async with raw_session(server.entry) as session:
            await session.initialize()
            await session.list_tools()  # as the run's does: output schemas known before a call
            kept, floor = [], []
            for _ in range(calls):
                kept += await timed(lambda: named[server.tool].ainvoke(tool_call(server)), 1)
                floor += await timed(lambda: session.call_tool(server.tool, server.args), 1)
    return kept, floor, opened


@asynccontextmanager
async def raw_session(entry: dict[str, Any]) -> AsyncIterator[ClientSession]:
    if "url" in entry:
        async with (
            streamable_http_client(entry["url"]) as (incoming, outgoing, _),
            ClientSession(incoming, outgoing) as session,
        ):
            yield session
        return
    parameters = StdioServerParameters(
        command=entry["command"], args=entry.get("args", []), env=entry.get("env")
    )
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(parameters, errlog=quiet) as (incoming, outgoing),
            ClientSession(incoming, outgoing) as session,
        ):
            yield session


def connection(entry: dict[str, Any]) -> Connection:
    """The adapter's connection for an `mcpServers` entry of this bench."""
    if "url" in entry:
        return {"transport": "streamable_http", "url": entry["url"]}
    return {"transport": "stdio", "command": entry["command"], "args": entry.get("args", [])}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_http_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, PYTHON_SERVER, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--node-server", metavar="PATH", help="mcp-server-filesystem's path")
    args = parser.parse_args()
    port = free_port()
    http = start_http_server(port)
    with tempfile.TemporaryDirectory() as folder:
        servers = [
            Server(
                "Python (FastMCP), stdio",
                {"command": sys.executable, "args": [PYTHON_SERVER]},
                "add",
                {"a": 2, "b": 3},
            ),
            Server(
                "Python (FastMCP), streamable HTTP",
                {"url": f"http://127.0.0.1:{port}/mcp"},
                "add",
                {"a": 2, "b": 3},
            ),
        ]
        if args.node_server:
            servers.append(
                Server(
                    "Node (server-filesystem), stdio",
                    {"command": args.node_server, "args": [folder]},
                    "list_allowed_directories",
                    {},
                )
            )
        print(
            f"{args.calls} calls each, median (slowest) ms; {platform.python_version()}, "
            f"mcp {version('mcp')}, langchain-mcp-adapters {version('langchain-mcp-adapters')}, "
            f"{os.cpu_count()} cores\n"
        )
        print(
            "| server | before: a session a call | after: the run's kept session | raw kept "
            "`ClientSession` | after ÷ raw | starting the run's servers |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        try:
            for server in servers:
                fresh = await before(server, max(5, args.calls // 10))
                kept, floor, opened = await after_and_raw(server, args.calls, Path(folder))
                ratio = statistics.median(kept) / statistics.median(floor)
                print(
                    f"| {server.label} | {milliseconds(fresh)} | {milliseconds(kept)} | "
                    f"{milliseconds(floor)} | {ratio:.2f} | {opened * 1000:.0f} ms |"
                )
        finally:
            http.terminate()
            http.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
