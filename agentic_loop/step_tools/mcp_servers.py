"""MCP servers for the steps: the `mcpServers` file read (`read_servers`), and each server's
session kept for a run (`RunServers`) or opened for each call (`per_call_tools`).

A run starts each server once (`RunServers.start`), keeps its session for every call of
its tools, and closes them all when it ends or stops (`RunServers.aclose`). A server
whose process exits, or whose connection closes, during a run is started again once: the
call in flight comes back to the model as a tool error, as it may or may not have taken
effect, and the calls after it go to the new session. After a second stop the server's
calls are tool errors. A stdio server's stderr goes to the file it is given (the run's
log, `mcp_logs.mcp_log_path`), not to the terminal.

Each session is held by a task of its own (`_Link`) that enters the transport and the
`ClientSession` and leaves them when told: anyio's cancel scopes must be left by the
task that entered them, and a run's calls come from LangGraph's tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from agentic_loop.core.options import ToolSetupError

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from langchain_core.tools import BaseTool
    from langchain_mcp_adapters.interceptors import MCPToolCallRequest, MCPToolCallResult
    from langchain_mcp_adapters.sessions import (
        Connection,
        StdioConnection,
        StreamableHttpConnection,
    )
    from mcp import ClientSession
    from mcp.shared.message import SessionMessage
    from mcp.types import CallToolResult
    from mcp.types import Tool as McpTool

    Incoming = MemoryObjectReceiveStream[SessionMessage | Exception]
    Outgoing = MemoryObjectSendStream[SessionMessage]

Call = Callable[[str, dict[str, Any]], Awaitable["CallToolResult"]]
"""Calls a server's tool by its own name with arguments, for its result."""


@dataclass(frozen=True)
class McpServer:
    """One entry of an `mcpServers` file, checked."""

    name: str
    connection: Connection
    """How to reach it: the adapter's stdio or streamable HTTP connection."""
    config: str
    """The file it is in, for messages."""
    prefix: str = ""
    """Put before each of its tools' names (its `"toolPrefix"`)."""
    idempotent: bool | tuple[str, ...] = False
    """Its tools that are safe to call again (its `"idempotent"`): True for all, or their
    names as the server gives them."""

    @property
    def target(self) -> str:
        """Its command or URL, as messages name it."""
        connection = self.connection
        return connection["command"] if connection["transport"] == "stdio" else connection["url"]


def reason(exc: BaseException) -> str:
    """`ExceptionName: first line of its message`, from inside any exception groups."""
    while isinstance(exc, BaseExceptionGroup):  # anyio task groups wrap the real error
        exc = exc.exceptions[0]
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# --- the servers file ------------------------------------------------------------------


def read_servers(config: str) -> list[McpServer]:
    """The servers of the `{"mcpServers": {...}}` file at `config`, each entry checked."""
    try:
        data = json.loads(Path(config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolSetupError(f"--mcp {config} cannot be read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ToolSetupError(
            f"--mcp {config} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ToolSetupError(
            f'--mcp {config} has no "mcpServers" object; '
            'write {"mcpServers": {"name": {"command": ...} or {"url": ...}}}'
        )
    return [_server(name, entry, config) for name, entry in servers.items()]


def _server(name: str, entry: Any, config: str) -> McpServer:
    where = f"MCP server {name!r} in {config}"
    connection = _connection(where, entry)
    prefix, idempotent = entry.get("toolPrefix", ""), entry.get("idempotent", False)
    if not isinstance(prefix, str):
        raise ToolSetupError(f'{where}: "toolPrefix" must be a string, like "{name}_"')
    if not isinstance(idempotent, bool) and not _strings(idempotent):
        raise ToolSetupError(f'{where}: "idempotent" must be true, false or a list of tool names')
    marked = idempotent if isinstance(idempotent, bool) else tuple(idempotent)
    return McpServer(name, connection, config, prefix, marked)


_STDIO = {"stdio"}
_HTTP = {"http", "streamable_http", "streamable-http"}


def _connection(where: str, entry: Any) -> Connection:
    """The adapter's connection for one `mcpServers` entry, checked."""
    if not isinstance(entry, dict):
        raise ToolSetupError(f"{where} is a {type(entry).__name__}, not an object")
    transport = entry.get("transport", entry.get("type"))
    if transport in _STDIO or (transport is None and "command" in entry):
        return _stdio_connection(where, entry)
    if transport in _HTTP or (transport is None and "url" in entry):
        return _http_connection(where, entry)
    if transport is not None:
        raise ToolSetupError(f'{where} has transport {transport!r}; use "stdio" or "http"')
    raise ToolSetupError(f'{where} has neither "command" (stdio) nor "url" (streamable HTTP)')


def _stdio_connection(where: str, entry: dict[str, Any]) -> StdioConnection:
    command, args = entry.get("command"), entry.get("args", [])
    env, cwd = entry.get("env"), entry.get("cwd")
    if not isinstance(command, str) or not command:
        raise ToolSetupError(f'{where}: "command" must be a non-empty string')
    if not _strings(args):
        raise ToolSetupError(f'{where}: "args" must be a list of strings')
    if env is not None and not _string_map(env):
        raise ToolSetupError(f'{where}: "env" must map names to strings')
    if cwd is not None and not isinstance(cwd, str):
        raise ToolSetupError(f'{where}: "cwd" must be a string')
    return {"transport": "stdio", "command": command, "args": args, "env": env, "cwd": cwd}


def _http_connection(where: str, entry: dict[str, Any]) -> StreamableHttpConnection:
    url, headers = entry.get("url"), entry.get("headers")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ToolSetupError(f'{where}: "url" must be an http:// or https:// address')
    if headers is not None and not _string_map(headers):
        raise ToolSetupError(f'{where}: "headers" must map names to strings')
    return {"transport": "streamable_http", "url": url, "headers": headers}


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and _strings(list(value.values()))


# --- the servers of a run --------------------------------------------------------------


class RunServers:
    """The MCP servers of one run: each started once, its session kept for every call of
    its tools, all closed by `aclose`. A stdio server's stderr is appended to `errlog`."""

    def __init__(self, servers: Sequence[McpServer], *, errlog: TextIO, timeout: float) -> None:
        self._kept = [_KeptServer(server, errlog, timeout) for server in servers]
        self._timeout = timeout

    async def start(self) -> list[tuple[McpServer, list[BaseTool]]]:
        """Start every server at once, each given `timeout` seconds to start and list its
        tools: each server with its tools. One that fails is a `ToolSetupError` naming
        every server that failed; the others are left for `aclose`."""
        started = await asyncio.gather(
            *(kept.start() for kept in self._kept), return_exceptions=True
        )
        _refuse_failures([kept.server for kept in self._kept], started, self._timeout)
        return [
            (kept.server, [_tool(kept.server, listed, kept.call) for listed in tools])
            for kept, tools in zip(self._kept, started, strict=True)
            if not isinstance(tools, BaseException)
        ]

    async def aclose(self) -> None:
        """Close every session: a stdio server's input is closed, and it is stopped if it
        has not exited 2 s later."""
        await asyncio.gather(*(kept.aclose() for kept in self._kept))


class _KeptServer:
    """One server for a run: started once, its session kept; started once more if it stops."""

    def __init__(self, server: McpServer, errlog: TextIO, timeout: float) -> None:
        self.server = server
        self._errlog = errlog
        self._timeout = timeout
        self._link: _Link | None = None
        self._restarted = False
        self._gone = ""
        """Why its calls fail, once it is neither running nor started again."""
        self._replacing = asyncio.Lock()

    async def start(self) -> list[McpTool]:
        self._link = await self._open(f"starting: {self.server.target}")
        return self._link.tools

    async def call(self, name: str, args: dict[str, Any]) -> CallToolResult:
        link = self._link
        if link is not None and link.stopped.is_set():  # it stopped between calls
            link = await self._replace(link)
        if link is None:
            return _error_result(f"MCP server {self.server.name!r} {self._gone}.")
        try:
            return await link.call(name, args)
        except _Stopped:
            pass
        now = (
            "It has been started again, without the state it held; call it again if needed."
            if await self._replace(link) is not None
            else f"It {self._gone}."
        )
        return _error_result(
            f"MCP server {self.server.name!r} stopped during this call, so the call may or "
            f"may not have taken effect. {now}"
        )

    async def _replace(self, link: _Link) -> _Link | None:
        """After `link` stopped: the server started again, the first time in the run; None
        once it is not (or could not be)."""
        async with self._replacing:
            if self._link is not link:  # a call that saw it stop first replaced it
                return self._link
            self._link = None
            await link.close()
            if self._restarted:
                self._log("not started a third time in this run")
                self._gone = (
                    "stopped twice in this run and is not started again; its tools cannot "
                    "be used for the rest of the run"
                )
                return None
            self._restarted = True
            try:
                self._link = await self._open("starting it again")
            except Exception as exc:
                failure = "no tool list" if isinstance(exc, TimeoutError) else reason(exc)
                self._log(f"could not be started again: {failure}")
                self._gone = (
                    f"stopped, and could not be started again ({failure}); its tools cannot "
                    "be used for the rest of the run"
                )
            return self._link

    async def _open(self, what: str) -> _Link:
        self._log(what)
        link = _Link(self.server, self._errlog, on_stop=lambda why: self._log(f"stopped: {why}"))
        await link.open(self._timeout)
        return link

    def _log(self, what: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._errlog.write(f"--- {stamp} MCP server {self.server.name!r} {what}\n")
        self._errlog.flush()

    async def aclose(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        self._gone = "was closed at the end of the run"


# --- a session per call ----------------------------------------------------------------


async def per_call_tools(
    servers: Sequence[McpServer], *, timeout: float
) -> list[tuple[McpServer, list[BaseTool]]]:
    """Each server's tools, listed over a session of their own: each call of one opens a new
    session (for stdio, a new server process, whose stderr goes to ours) and closes it, so
    a server keeps no state between calls. A server that does not list its tools within
    `timeout` seconds, or fails, is a `ToolSetupError` naming every server that failed."""

    async def listed(server: McpServer) -> list[McpTool]:
        link = _Link(server, None)
        try:
            await link.open(timeout)
            return link.tools
        finally:
            await link.close()

    def caller(server: McpServer) -> Call:
        async def call(name: str, args: dict[str, Any]) -> CallToolResult:
            link = _Link(server, None)
            try:
                await link.open(timeout)
                return await link.call(name, args)
            except _Stopped:
                return _error_result(
                    f"MCP server {server.name!r} stopped during this call, so the call may or "
                    "may not have taken effect."
                )
            finally:
                await link.close()

        return call

    found = await asyncio.gather(*(listed(server) for server in servers), return_exceptions=True)
    _refuse_failures(servers, found, timeout)
    return [
        (server, [_tool(server, tool, caller(server)) for tool in tools])
        for server, tools in zip(servers, found, strict=True)
        if not isinstance(tools, BaseException)
    ]


def _refuse_failures(
    servers: Sequence[McpServer], results: Sequence[object], timeout: float
) -> None:
    problems = [
        f"MCP server {server.name!r} ({server.target}) failed: "
        + (
            f"no tool list within {timeout:g} s"
            if isinstance(result, TimeoutError)
            else reason(result)
        )
        for server, result in zip(servers, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if problems:
        raise ToolSetupError(f"{'; '.join(problems)}; check {servers[0].config}")


def _tool(server: McpServer, listed: McpTool, call: Call) -> BaseTool:
    """The LangChain tool for a server's tool, its calls made by `call`."""
    from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool

    async def through(
        request: MCPToolCallRequest, handler: Callable[..., Awaitable[MCPToolCallResult]]
    ) -> MCPToolCallResult:
        # The adapter converts the result, as for its own tools; the session is ours.
        return await call(request.name, request.args)

    return convert_mcp_tool_to_langchain_tool(
        None,
        listed,
        connection=server.connection,  # never opened: `through` makes every call
        server_name=server.name,
        tool_interceptors=[through],
    )


def _error_result(text: str) -> CallToolResult:
    """A result the adapter hands the model as a tool error (`status="error"`)."""
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


# --- one session -----------------------------------------------------------------------


class _Stopped(Exception):
    """The server stopped (its process exited, its connection closed) before it answered."""


class _Link:
    """One session with a server, held by a task of its own from `open` to `close`."""

    def __init__(
        self,
        server: McpServer,
        errlog: TextIO | None,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server
        self.tools: list[McpTool] = []
        self.stopped = asyncio.Event()
        """Set once the server's end closed (its process exited), or the link was closed."""
        self._errlog = errlog
        self._on_stop = on_stop
        """Told why, when the server stops of itself once its session is ready."""
        self._session: ClientSession | None = None
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._holder: asyncio.Task[None] | None = None

    async def open(self, timeout: float) -> None:
        """Start the server (or connect), initialise the session and list its tools, within
        `timeout` seconds; its failure, or TimeoutError, is raised."""
        self._holder = asyncio.create_task(self._hold(), name=f"MCP server {self.server.name}")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._ready)
        except BaseException:
            self._holder.cancel()
            await asyncio.gather(self._holder, return_exceptions=True)
            raise

    async def call(self, name: str, args: dict[str, Any]) -> CallToolResult:
        """The tool's result; `_Stopped` if the server stopped before it answered.

        The call waits for the server's answer or its stop, whichever comes first: when a
        session is torn down (its server stopped, its transport failed), the MCP SDK's
        "Connection closed" to the requests still waiting may be cancelled with it, and
        they would wait for ever."""
        from mcp.shared.exceptions import McpError
        from mcp.types import CONNECTION_CLOSED

        if self._session is None or self.stopped.is_set():
            raise _Stopped
        call = asyncio.ensure_future(self._session.call_tool(name, args))
        stop = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait((call, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not call.done():  # the server stopped first, or this call was cancelled
                call.cancel()
        if not call.done() or call.cancelled():
            raise _Stopped
        error = call.exception()
        if error is None:
            return call.result()
        if self.stopped.is_set() or (
            isinstance(error, McpError)
            and error.error.code == CONNECTION_CLOSED
            and error.error.message == "Connection closed"  # the SDK's own, not the server's
        ):
            raise _Stopped from error
        raise error

    async def close(self) -> None:
        """Leave the session; a stdio server's input is closed, and it is stopped if it has
        not exited 2 s later (the MCP SDK's shutdown)."""
        self._closing.set()
        if self._holder is not None:
            await asyncio.gather(self._holder, return_exceptions=True)

    async def _hold(self) -> None:
        from anyio import create_memory_object_stream, create_task_group
        from mcp import ClientSession

        try:
            async with AsyncExitStack() as stack:
                incoming, outgoing = await stack.enter_async_context(
                    _transport(self.server.connection, self._errlog)
                )
                relays = await stack.enter_async_context(create_task_group())
                sink, relayed = create_memory_object_stream["SessionMessage | Exception"](0)
                relays.start_soon(self._relay, incoming, sink)
                stack.callback(relays.cancel_scope.cancel)  # once the session has closed
                session = await stack.enter_async_context(ClientSession(relayed, outgoing))
                await session.initialize()
                self.tools = await _all_tools(session)
                self._session = session
                self._ready.set_result(None)
                await self._closing.wait()
        except Exception as exc:  # it did not start, or its connection failed
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                self._stopped_by_server(reason(exc))
        finally:
            self.stopped.set()

    def _stopped_by_server(self, why: str) -> None:
        if not self._closing.is_set() and self._on_stop is not None:
            self._on_stop(why)
        self.stopped.set()
        self._closing.set()

    async def _relay(self, incoming: Incoming, sink: MemoryObjectSendStream[Any]) -> None:
        """Pass the server's messages to the session; when the server's end closes (its
        process exited), say the server stopped, before the session sees the end."""
        from anyio import BrokenResourceError, ClosedResourceError

        try:
            async with sink:
                async for message in incoming:
                    await sink.send(message)
                self._stopped_by_server("its output ended (its process exited)")
        except (BrokenResourceError, ClosedResourceError):  # the session closed first
            pass


@asynccontextmanager
async def _transport(
    connection: Connection, errlog: TextIO | None
) -> AsyncIterator[tuple[Incoming, Outgoing]]:
    """The streams of a stdio server's process (its stderr to `errlog`, else ours) or of a
    streamable HTTP endpoint."""
    if connection["transport"] == "stdio":
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        env = connection.get("env")
        server = StdioServerParameters(
            command=connection["command"],
            args=connection["args"],
            env=None if env is None else {name: _expanded(value) for name, value in env.items()},
            cwd=connection.get("cwd"),
        )
        async with stdio_client(server, errlog=errlog or sys.stderr) as (incoming, outgoing):
            yield incoming, outgoing
    elif connection["transport"] == "streamable_http":
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        # The MCP SDK's own timeouts: 30 s to connect and send, 300 s to read a reply.
        timeout = httpx.Timeout(30.0, read=300.0)
        client = httpx.AsyncClient(headers=connection.get("headers"), timeout=timeout)
        async with (
            client,
            streamable_http_client(connection["url"], http_client=client) as (
                incoming,
                outgoing,
                _,
            ),
        ):
            yield incoming, outgoing
    else:  # read_servers makes no other
        raise ValueError(f"no transport {connection['transport']!r}")


async def _all_tools(session: ClientSession) -> list[McpTool]:
    from mcp.types import PaginatedRequestParams

    tools: list[McpTool] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        tools += page.tools
        if not page.nextCursor:
            return tools
        cursor = page.nextCursor
    raise RuntimeError("the server's tool list went on for over 1000 pages")


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _expanded(value: str) -> str:
    """`value` with `${NAME}` replaced by the variable's value (kept as it is if unset), as
    langchain-mcp-adapters does for a stdio server's `env`."""
    return _VARIABLE.sub(lambda match: os.environ.get(match[1], match[0]), value)
