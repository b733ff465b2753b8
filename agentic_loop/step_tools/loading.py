"""The LangChain tools a run's steps may call, from the CLI's `--tools`, `--mcp` and `--workspace`.

`ToolOptions` is what the user chose, kept with the run (`to_metadata`) so that `resume`
loads the same tools. There are two ways to turn it into `BaseTool`s:

- `prepare_tools(options)` loads and checks all that needs no server, and reads the MCP
  servers' file; `PreparedTools.open(log)` then starts each MCP server once and keeps its
  session for the `async with` block, its stderr appended to `log`. A run does this (see
  `mcp_servers` for a server that stops mid-run).
- `load_tools(options)` gives every tool at once, for use outside a run: each call of an
  MCP tool opens a session of its own (for stdio, a new server process), so a server
  keeps no state between calls.

The tools:

- `--tools [PREFIX=]package.module:attribute` imports the attribute, found from the folder
  `run` started in or from installed packages. It is a tool (a `BaseTool`, or a function
  with a docstring), a list or tuple of tools, or a function without parameters, sync or
  async, that returns them. A zero-parameter function is always called as such a factory,
  so a tool that takes no arguments goes in a list or under `@tool`.
- `--mcp servers.json` reaches every server of the `{"mcpServers": {...}}` file that
  Claude Desktop, Cursor and VS Code share: an entry with `command` (and `args`, `env`,
  `cwd`) runs over stdio, one with `url` (and `headers`) over streamable HTTP. An entry
  may add `"toolPrefix"` and `"idempotent"` (true, or a list of its tools' names). Each
  server has `MCP_TIMEOUT_S` to start and list its tools.
- `--workspace folder` adds the file tools of `agentic_loop.step_tools.workspace`
  (`--workspace-prefix PREFIX`).

A prefix goes before the name of each tool of its source, so that two tools of one name
can both be offered; two tools of one name are refused, naming the options that give a
prefix. Tools marked idempotent (a server's `"idempotent"`, `--idempotent-tool NAME`)
carry `metadata["idempotent"] = True`: calling one again does no harm.

Anything unusable is a `ToolSetupError` whose one-line message says what and how to fix it.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, tool

from agentic_loop.core.options import ToolOptions, ToolSetupError
from agentic_loop.step_tools import mcp_servers
from agentic_loop.step_tools.mcp_servers import McpServer, RunServers, per_call_tools, reason

MCP_TIMEOUT_S = 30.0
"""How long each MCP server gets to start (or answer) and list its tools."""

_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class _Source:
    """Where some tools come from, as messages name it, and what it asks of their names."""

    label: str
    """`my_tools:TOOLS`, `MCP server 'files'`, `--workspace`."""
    prefix_option: str
    """How a prefix is given to its tools."""
    prefix: str = ""
    idempotent: bool | tuple[str, ...] = False
    """Its tools marked idempotent: all, or those of these (unprefixed) names."""
    idempotent_option: str = ""
    """What marked them, for messages."""


_Sourced = tuple[_Source, tuple[BaseTool, ...]]


def _mcp_source(server: McpServer) -> _Source:
    where = f"MCP server {server.name!r} in {server.config}"
    return _Source(
        f"MCP server {server.name!r}",
        f'"toolPrefix": "PREFIX" for {where}',
        server.prefix,
        server.idempotent,
        f'"idempotent" of {where}',
    )


@dataclass(frozen=True)
class PreparedTools:
    """The tools of some `ToolOptions`, loaded and checked but for the MCP servers', whose
    file is read: `tools()` when there are no servers, else `open(log)` for a run."""

    options: ToolOptions
    imported: tuple[_Sourced, ...]
    servers: tuple[McpServer, ...]
    workspace: tuple[_Sourced, ...]

    def tools(self) -> list[BaseTool]:
        """Every tool, when no MCP server is named (else a ValueError: use `open`)."""
        if self.servers:
            raise ValueError("MCP servers' tools need their sessions: use `open`")
        return self._with([])

    def _with(self, listed: Sequence[tuple[McpServer, Sequence[BaseTool]]]) -> list[BaseTool]:
        """Every tool, the MCP servers' `listed` among them, named and checked."""
        served = [(_mcp_source(server), tuple(tools)) for server, tools in listed]
        return _named(self.options, [*self.imported, *served, *self.workspace])

    @asynccontextmanager
    async def open(self, log: Path) -> AsyncIterator[list[BaseTool]]:
        """Every tool, for the `async with` block: each MCP server started once (given
        `MCP_TIMEOUT_S` to list its tools) and its session kept for every call of its
        tools, then closed at the block's end. Stdio servers' stderr is appended to `log`
        (its folder made if missing)."""
        if not self.servers:
            yield self.tools()
            return
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            errlog = log.open("a", encoding="utf-8")
        except OSError as exc:
            raise ToolSetupError(
                f"the MCP servers' log {log} cannot be written: {exc.strerror or exc}"
            ) from exc
        with errlog:
            servers = RunServers(self.servers, errlog=errlog, timeout=MCP_TIMEOUT_S)
            try:
                yield self._with(await servers.start())
            finally:
                await servers.aclose()


async def prepare_tools(options: ToolOptions) -> PreparedTools:
    """The options' tools made ready but for the MCP servers' sessions: imported, the
    workspace checked, the MCP servers' file read; no server is started."""
    imported = [await _imported(spec, options.import_root) for spec in options.imports]
    servers = mcp_servers.read_servers(options.mcp_config) if options.mcp_config else []
    workspace: list[_Sourced] = []
    if options.workspace:
        from agentic_loop.step_tools.workspace import workspace_tools

        try:
            files = tuple(workspace_tools(options.workspace))
        except ValueError as exc:
            raise ToolSetupError(str(exc)) from exc
        source = _Source("--workspace", "--workspace-prefix PREFIX", options.workspace_prefix or "")
        workspace.append((source, files))
    for source, _ in [*imported, *workspace]:
        _check_prefix(source)
    for server in servers:  # before any server starts
        _check_prefix(_mcp_source(server))
    return PreparedTools(options, tuple(imported), tuple(servers), tuple(workspace))


async def load_tools(options: ToolOptions) -> list[BaseTool]:
    """Every tool the options name, at once: imported ones, MCP servers' tools, the
    workspace's file tools. Each MCP server is given `MCP_TIMEOUT_S` to start and list
    its tools, and each call of one of its tools opens a session of its own."""
    prepared = await prepare_tools(options)
    return prepared._with(await per_call_tools(prepared.servers, timeout=MCP_TIMEOUT_S))


def _named(
    options: ToolOptions, sourced: Sequence[tuple[_Source, Sequence[BaseTool]]]
) -> list[BaseTool]:
    """The tools with their sources' prefixes and idempotent marks, their names checked
    to be unique."""
    named: dict[str, tuple[_Source, BaseTool]] = {}
    for source, tools in sourced:
        own = [found.name for found in tools]
        if isinstance(source.idempotent, tuple):
            unknown = [name for name in source.idempotent if name not in own]
            if unknown:
                raise ToolSetupError(
                    f"{source.idempotent_option} names {unknown[0]!r}, which is not one of "
                    f"its tools: {', '.join(own)}"
                )
        for found in tools:
            idempotent = source.idempotent is True or (
                isinstance(source.idempotent, tuple) and found.name in source.idempotent
            )
            renamed = _changed(found, source.prefix + found.name, idempotent)
            if renamed.name in named:
                raise ToolSetupError(_twice(renamed.name, named[renamed.name][0], source))
            named[renamed.name] = source, renamed
    unknown = [name for name in options.idempotent_tools if name not in named]
    if unknown:
        raise ToolSetupError(
            f"--idempotent-tool names {unknown[0]!r}, which is not one of the tools: "
            f"{', '.join(named)}"
        )
    return [
        _changed(found, name, name in options.idempotent_tools)
        for name, (_, found) in named.items()
    ]


def _twice(name: str, first: _Source, second: _Source) -> str:
    if first == second:
        return f"two tools are named {name!r} in {first.label}; leave one of them out"
    return (
        f"two tools are named {name!r} ({first.label} and {second.label}); leave one of "
        f"them out, or give one a prefix: {second.prefix_option}, or {first.prefix_option}"
    )


def _changed(found: BaseTool, name: str, idempotent: bool) -> BaseTool:
    """`found` renamed `name`, marked idempotent if asked: a copy, if anything changes (an
    imported tool is the module's own object)."""
    update: dict[str, Any] = {}
    if name != found.name:
        update["name"] = name
    if idempotent and not (found.metadata or {}).get("idempotent"):
        update["metadata"] = {**(found.metadata or {}), "idempotent": True}
    return found.model_copy(update=update) if update else found


def _check_prefix(source: _Source) -> None:
    if source.prefix and not _PREFIX.fullmatch(source.prefix):
        raise ToolSetupError(
            f"the tool prefix {source.prefix!r} of {source.label} is not allowed; use 1 to 32 "
            "ASCII letters, digits, '_' and '-'"
        )


async def _imported(spec: str, root: str | None) -> _Sourced:
    """The tools `--tools [PREFIX=]module:attribute` names, with their source."""
    prefix, _, bare = spec.rpartition("=")
    source = _Source(spec, f"--tools PREFIX={bare}", prefix)
    return source, tuple(await _imported_tools(bare, root))


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
            raise ToolSetupError(f"--tools {spec}: {attribute}() raised {reason(exc)}") from exc
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
        raise ToolSetupError(f"--tools: importing {module_name} raised {reason(exc)}") from exc
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


def _mcp_connections(config: str) -> dict[str, Any]:
    """Each server of the file at `config` by name: the adapter's connection for it (what
    the tests of the file's format read)."""
    return {server.name: server.connection for server in mcp_servers.read_servers(config)}
