"""The LangChain tools a run's steps may call, from the CLI's `--tools`, `--mcp` and `--workspace`.

`ToolOptions` is what the user chose, kept with the run (`to_metadata`) so that `resume`
loads the same tools; `load_tools(options)` turns it into `BaseTool`s:

- `--tools package.module:attribute` imports the attribute, found from the folder `run`
  started in or from installed packages. It is a tool (a `BaseTool`, or a function with a
  docstring), a list or tuple of tools, or a function without parameters, sync or async,
  that returns them. A zero-parameter function is always called as such a factory, so a
  tool that takes no arguments goes in a list or under `@tool`.
- `--mcp servers.json` starts or reaches every server of the `{"mcpServers": {...}}` file
  that Claude Desktop, Cursor and VS Code share: an entry with `command` (and `args`,
  `env`, `cwd`) runs over stdio, one with `url` (and `headers`) over streamable HTTP.
  Each server has `MCP_TIMEOUT_S` to start and list its tools. As langchain-mcp-adapters
  does when no session is held open, every call of an MCP tool opens a new session (for
  stdio, a new server process), so a server keeps no state between calls.
- `--workspace folder` adds the file tools of `agentic_loop.step_tools.workspace`.

Anything unusable is a `ToolSetupError` whose one-line message says what and how to fix it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.tools import BaseTool, tool

from agentic_loop.core.options import ToolOptions, ToolSetupError

if TYPE_CHECKING:
    from langchain_mcp_adapters.sessions import (
        Connection,
        StdioConnection,
        StreamableHttpConnection,
    )

MCP_TIMEOUT_S = 30.0
"""How long each MCP server gets to start (or answer) and list its tools."""


async def load_tools(options: ToolOptions) -> list[BaseTool]:
    """Every tool the options name: imported ones, MCP servers' tools, the workspace's file tools.

    Each MCP server is given `MCP_TIMEOUT_S` to start and list its tools.
    """
    sourced: list[tuple[str, BaseTool]] = []
    for spec in options.imports:
        sourced += [(spec, found) for found in await _imported_tools(spec, options.import_root)]
    if options.mcp_config:
        sourced += await _mcp_tools(options.mcp_config)
    if options.workspace:
        from agentic_loop.step_tools.workspace import workspace_tools

        try:
            sourced += [("--workspace", found) for found in workspace_tools(options.workspace)]
        except ValueError as exc:
            raise ToolSetupError(str(exc)) from exc

    first_source: dict[str, str] = {}
    for source, found in sourced:
        if found.name in first_source:
            raise ToolSetupError(
                f"two tools are named {found.name!r} ({first_source[found.name]} and {source}); "
                "leave one of them out"
            )
        first_source[found.name] = source
    return [found for _, found in sourced]


def _reason(exc: BaseException) -> str:
    """`ExceptionName: first line of its message`, from inside any exception groups."""
    while isinstance(exc, BaseExceptionGroup):  # anyio task groups wrap the real error
        exc = exc.exceptions[0]
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


async def _imported_tools(spec: str, root: str | None) -> list[BaseTool]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ToolSetupError(
            f"--tools {spec!r} is not package.module:attribute (for example my_tools:TOOLS)"
        )
    module = _import(module_name, root)
    if not hasattr(module, attribute):
        raise ToolSetupError(f"--tools {spec}: module {module_name} has no {attribute!r}")
    value = getattr(module, attribute)
    if inspect.isfunction(value) and not _has_required_parameters(value):
        try:
            value = value()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            raise ToolSetupError(f"--tools {spec}: {attribute}() raised {_reason(exc)}") from exc
        if not isinstance(value, BaseTool | list | tuple):
            raise ToolSetupError(
                f"--tools {spec}: {attribute}() returned {type(value).__name__}, not tools "
                "(a function without parameters is called for its tools; "
                "put a tool that takes no arguments in a list or under @tool)"
            )
    return [
        _as_tool(spec, item) for item in (value if isinstance(value, list | tuple) else [value])
    ]


def _import(module_name: str, root: str | None) -> Any:
    if root is not None:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        # Only the named module (or its package) missing means a wrong name; a missing
        # module the tools' own code imports is an error inside it.
        if isinstance(exc, ModuleNotFoundError) and f"{module_name}.".startswith(f"{exc.name}."):
            where = f"{root} or installed packages" if root else "installed packages"
            raise ToolSetupError(
                f"--tools: no module {module_name} in {where}; check the name and folder"
            ) from exc
        raise ToolSetupError(f"--tools: importing {module_name} raised {_reason(exc)}") from exc
    finally:
        if root is not None:
            sys.path.remove(root)


def _has_required_parameters(function: Any) -> bool:
    return any(
        parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        for parameter in inspect.signature(function).parameters.values()
    )


def _as_tool(spec: str, item: Any) -> BaseTool:
    if isinstance(item, BaseTool):
        return item
    if not inspect.isfunction(item):
        raise ToolSetupError(
            f"--tools {spec}: {type(item).__name__} is not a tool; give a BaseTool, a "
            "function with a docstring, a list of them, or a function returning them"
        )
    if not inspect.getdoc(item):
        raise ToolSetupError(
            f"--tools {spec}: function {item.__name__} has no docstring; "
            "add one saying what the tool does (the model reads it)"
        )
    return tool(item)


async def _mcp_tools(config: str) -> list[tuple[str, BaseTool]]:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    connections = _mcp_connections(config)
    client = MultiServerMCPClient(connections)
    loads = [
        asyncio.wait_for(client.get_tools(server_name=name), MCP_TIMEOUT_S) for name in connections
    ]
    results = await asyncio.gather(*loads, return_exceptions=True)
    sourced: list[tuple[str, BaseTool]] = []
    problems: list[str] = []
    for (name, connection), result in zip(connections.items(), results, strict=True):
        if isinstance(result, BaseException):
            reason = (
                f"no tool list within {MCP_TIMEOUT_S:g} s"
                if isinstance(result, TimeoutError)
                else _reason(result)
            )
            target = (
                connection["command"] if connection["transport"] == "stdio" else connection["url"]
            )
            problems.append(f"MCP server {name!r} ({target}) failed: {reason}")
        else:
            sourced += [(f"MCP server {name!r}", found) for found in result]
    if problems:
        raise ToolSetupError(f"{'; '.join(problems)}; check {config}")
    return sourced


def _mcp_connections(config: str) -> dict[str, Connection]:
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
    return {
        name: _connection(f"MCP server {name!r} in {config}", entry)
        for name, entry in servers.items()
    }


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
