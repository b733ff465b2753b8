"""Tools from `--tools`, `--mcp` and `--workspace`: each form taken, each mistake refused with
one clear line, and real MCP servers (`tests/mcp_server.py`) over stdio and HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentic_loop.step_tools import loading as step_tools
from agentic_loop.step_tools.loading import ToolOptions, ToolSetupError, load_tools

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def names(tools) -> list[str]:
    return [found.name for found in tools]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tool_folder(tmp_path, monkeypatch):
    """The current folder, as `run` would see it, holding a `my_tools.py`."""
    (tmp_path / "my_tools.py").write_text(
        "def double(n: int) -> int:\n"
        '    """Double a number."""\n'
        "    return 2 * n\n\n"
        "TOOLS = [double]\n"
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_tools", None)


def servers_file(folder: Path, servers: object) -> Path:
    path = folder / "servers.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


# --- imports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected", "result"),
    [
        ("sample_tools:TOOLS", ["add", "multiply"], ("multiply", {"a": 3, "b": 4}, 12)),
        ("sample_tools:add", ["add"], ("add", {"a": 3, "b": 4}, 7)),
        ("sample_tools:multiply", ["multiply"], ("multiply", {"a": 3, "b": 4}, 12)),
        ("sample_tools:shout", ["shout"], ("shout", {"text": "hi"}, "HI")),
        ("sample_tools:make_tools", ["add", "multiply"], ("add", {"a": 1, "b": 1}, 2)),
        ("sample_tools:fetch_tools", ["add"], ("add", {"a": 1, "b": 2}, 3)),
    ],
    ids=["list", "tool", "function", "async-function", "factory", "async-factory"],
)
async def test_each_import_form_gives_working_tools(tool_folder, spec, expected, result):
    tools = await load_tools(ToolOptions.from_cli([spec]))

    assert names(tools) == expected
    name, args, answer = result
    assert await {found.name: found for found in tools}[name].ainvoke(args) == answer


async def test_imports_come_from_the_folder_run_started_in(tool_folder, monkeypatch):
    options = ToolOptions.from_cli(["my_tools:TOOLS", "sample_tools:add"])
    path_before = list(sys.path)
    monkeypatch.chdir(tool_folder.parent)  # a resumed run may start elsewhere

    tools = await load_tools(options)

    assert options.import_root == str(tool_folder)
    assert names(tools) == ["double", "add"]
    assert tools[0].description == "Double a number."
    assert await tools[0].ainvoke({"n": 21}) == 42
    assert sys.path == path_before


REFUSED_IMPORTS = [
    pytest.param(
        ["my_tools"],
        "--tools 'my_tools' is not package.module:attribute (for example my_tools:TOOLS)",
        id="no-colon",
    ),
    pytest.param(
        ["nowhere_tools:TOOLS"],
        "--tools: no module nowhere_tools in {root} or installed packages; "
        "check the name and folder",
        id="no-module",
    ),
    pytest.param(
        ["raises_on_import:TOOLS"],
        "--tools: importing raises_on_import raised RuntimeError: no API key",
        id="raises-on-import",
    ),
    pytest.param(
        ["needs_missing:TOOLS"],
        "--tools: importing needs_missing raised ModuleNotFoundError: "
        "No module named 'not_installed_anywhere'",
        id="missing-dependency",
    ),
    pytest.param(
        ["sample_tools:nothing"],
        "--tools sample_tools:nothing: module sample_tools has no 'nothing'",
        id="no-attribute",
    ),
    pytest.param(
        ["sample_tools:NUMBER"],
        "--tools sample_tools:NUMBER: int is not a tool; give a BaseTool, a function with a "
        "docstring, a list of them, or a function returning them",
        id="not-a-tool",
    ),
    pytest.param(
        ["sample_tools:SOME_NOT_TOOLS"],
        "--tools sample_tools:SOME_NOT_TOOLS: str is not a tool; give a BaseTool, a function "
        "with a docstring, a list of them, or a function returning them",
        id="not-a-tool-in-list",
    ),
    pytest.param(
        ["sample_tools:undocumented"],
        "--tools sample_tools:undocumented: function undocumented has no docstring; "
        "add one saying what the tool does (the model reads it)",
        id="no-docstring",
    ),
    pytest.param(
        ["sample_tools:broken_factory"],
        "--tools sample_tools:broken_factory: broken_factory() raised RuntimeError: no tools today",
        id="factory-raises",
    ),
    pytest.param(
        ["sample_tools:now"],
        "--tools sample_tools:now: now() returned str, not tools (a function without "
        "parameters is called for its tools; put a tool that takes no arguments in a list "
        "or under @tool)",
        id="zero-parameter-tool",
    ),
    pytest.param(
        ["sample_tools:TOOLS", "sample_tools:add"],
        "two tools are named 'add' (sample_tools:TOOLS and sample_tools:add); leave one of "
        "them out, or give one a prefix: --tools PREFIX=sample_tools:add, or --tools "
        "PREFIX=sample_tools:TOOLS",
        id="duplicate-name",
    ),
]


@pytest.mark.parametrize(("specs", "message"), REFUSED_IMPORTS)
async def test_unusable_imports_are_refused_in_one_line(tool_folder, specs, message):
    (tool_folder / "raises_on_import.py").write_text("raise RuntimeError('no API key')\n")
    (tool_folder / "needs_missing.py").write_text("import not_installed_anywhere\n")

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions.from_cli(specs))

    assert str(refused.value) == message.format(root=tool_folder)


# --- options and metadata ------------------------------------------------------------


def test_from_cli_makes_paths_absolute_and_records_the_import_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "servers.json").write_text("{}")
    (tmp_path / "files").mkdir()

    options = ToolOptions.from_cli(["my_tools:TOOLS"], "servers.json", "files")

    assert options == ToolOptions(
        imports=("my_tools:TOOLS",),
        mcp_config=str(tmp_path / "servers.json"),
        workspace=str(tmp_path / "files"),
        import_root=str(tmp_path),
    )
    assert ToolOptions.from_cli([], "servers.json", None).import_root is None


@pytest.mark.parametrize(
    ("mcp_config", "workspace", "message"),
    [
        ("missing.json", None, "--mcp {root}/missing.json is not a file; pass a servers JSON file"),
        (
            None,
            "missing",
            "--workspace {root}/missing is not a folder; create it or pass another",
        ),
    ],
)
def test_from_cli_refuses_missing_files_and_folders(
    tmp_path, monkeypatch, mcp_config, workspace, message
):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ToolSetupError) as refused:
        ToolOptions.from_cli([], mcp_config, workspace)

    assert str(refused.value) == message.format(root=tmp_path)


def test_metadata_round_trip():
    options = ToolOptions(
        imports=("my_tools:TOOLS", "sample_tools:add"),
        mcp_config="/etc/servers.json",
        workspace="/srv/files",
        import_root="/home/me/project",
    )

    stored = json.loads(json.dumps(options.to_metadata()))

    assert stored == {
        "imports": ["my_tools:TOOLS", "sample_tools:add"],
        "mcp_config": "/etc/servers.json",
        "workspace": "/srv/files",
        "import_root": "/home/me/project",
    }
    assert ToolOptions.from_metadata(stored) == options
    only_files = ToolOptions(workspace="/srv/files")
    assert only_files.to_metadata() == {"workspace": "/srv/files"}
    assert ToolOptions.from_metadata(only_files.to_metadata()) == only_files


@pytest.mark.parametrize("stored", [None, {}])
async def test_runs_stored_before_tools_existed_have_none(stored):
    options = ToolOptions.from_metadata(stored)

    assert options == ToolOptions()
    assert not options
    assert options.to_metadata() == {}
    assert await load_tools(options) == []


# --- MCP configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "connection"),
    [
        (
            {"command": "npx", "args": ["-y", "server"], "env": {"KEY": "v"}},
            {
                "transport": "stdio",
                "command": "npx",
                "args": ["-y", "server"],
                "env": {"KEY": "v"},
                "cwd": None,
            },
        ),
        (
            {"type": "stdio", "command": "server", "cwd": "/srv"},
            {"transport": "stdio", "command": "server", "args": [], "env": None, "cwd": "/srv"},
        ),
        (
            {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}},
            {
                "transport": "streamable_http",
                "url": "https://example.com/mcp",
                "headers": {"Authorization": "Bearer x"},
            },
        ),
        *(
            (
                {key: transport, "url": "http://127.0.0.1:9/mcp"},
                {"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp", "headers": None},
            )
            for key, transport in [
                ("type", "http"),
                ("transport", "streamable_http"),
                ("transport", "streamable-http"),
            ]
        ),
    ],
    ids=["claude-stdio", "typed-stdio", "url", "type-http", "streamable_http", "streamable-http"],
)
def test_mcp_entries_in_the_shared_format_become_connections(tmp_path, entry, connection):
    path = servers_file(tmp_path, {"tools": entry})

    assert step_tools._mcp_connections(str(path)) == {"tools": connection}


REFUSED_CONFIGS = [
    pytest.param(
        '{"mcpServers": {,}}',
        "--mcp {path} is not JSON: Expecting property name enclosed in double quotes "
        "at line 1, column 17",
        id="not-json",
    ),
    pytest.param(
        '{"servers": {}}',
        '--mcp {path} has no "mcpServers" object; '
        'write {{"mcpServers": {{"name": {{"command": ...}} or {{"url": ...}}}}}}',
        id="no-mcpServers",
    ),
    pytest.param(
        "[]",
        '--mcp {path} has no "mcpServers" object; '
        'write {{"mcpServers": {{"name": {{"command": ...}} or {{"url": ...}}}}}}',
        id="not-an-object",
    ),
    pytest.param(
        '{"mcpServers": {"x": "python"}}',
        "MCP server 'x' in {path} is a str, not an object",
        id="entry-not-an-object",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"name": "x"}}}',
        'MCP server \'x\' in {path} has neither "command" (stdio) nor "url" (streamable HTTP)',
        id="neither",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"type": "sse", "url": "http://127.0.0.1:9/sse"}}}',
        "MCP server 'x' in {path} has transport 'sse'; use \"stdio\" or \"http\"",
        id="sse",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"type": "stdio", "url": "http://127.0.0.1:9/mcp"}}}',
        "MCP server 'x' in {path}: \"command\" must be a non-empty string",
        id="stdio-without-command",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"command": "python", "args": "server.py"}}}',
        "MCP server 'x' in {path}: \"args\" must be a list of strings",
        id="args-not-a-list",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"command": "python", "env": {"PORT": 8000}}}}',
        "MCP server 'x' in {path}: \"env\" must map names to strings",
        id="env-not-strings",
    ),
    pytest.param(
        '{"mcpServers": {"x": {"url": "localhost:8000/mcp"}}}',
        "MCP server 'x' in {path}: \"url\" must be an http:// or https:// address",
        id="url-without-scheme",
    ),
]


@pytest.mark.parametrize(("text", "message"), REFUSED_CONFIGS)
async def test_unusable_mcp_configs_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "servers.json"
    path.write_text(text)

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions.from_cli(mcp_config=path))

    assert str(refused.value) == message.format(path=path)


async def test_an_mcp_config_deleted_before_resume_is_refused(tmp_path):
    path = tmp_path / "servers.json"

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions(mcp_config=str(path)))

    assert str(refused.value) == f"--mcp {path} cannot be read: No such file or directory"


# --- real MCP servers ----------------------------------------------------------------


async def test_stdio_server_tools_list_and_act(tmp_path):
    notes = tmp_path / "notes.txt"
    env = {"MCP_NOTES_FILE": str(notes)}
    path = servers_file(
        tmp_path, {"test": {"command": sys.executable, "args": [SERVER], "env": env}}
    )

    tools = {found.name: found for found in await load_tools(ToolOptions.from_cli(mcp_config=path))}

    assert sorted(tools) == ["add", "note"]
    assert "Append a line" in tools["note"].description
    first = await tools["note"].ainvoke({"text": "first line"})
    second = await tools["note"].ainvoke({"text": "second line"})
    assert [block["text"] for block in first + second] == [
        "noted: first line",
        "noted: second line",
    ]
    assert notes.read_text() == "first line\nsecond line\n"
    assert (await tools["add"].ainvoke({"a": 2, "b": 3}))[0]["text"] == "5"


@pytest.fixture
def http_server(tmp_path):
    """`tests/mcp_server.py --http` on a free port of 127.0.0.1: its URL and notes file."""
    port, notes = free_port(), tmp_path / "http-notes.txt"
    server = subprocess.Popen(
        [sys.executable, SERVER, "--http", str(port)],
        env={**os.environ, "MCP_NOTES_FILE": str(notes)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", notes
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_http_server_tools_list_and_act(tmp_path, http_server):
    url, notes = http_server
    path = servers_file(tmp_path, {"remote": {"type": "http", "url": url}})

    tools = {found.name: found for found in await load_tools(ToolOptions.from_cli(mcp_config=path))}

    assert sorted(tools) == ["add", "note"]
    answer = await tools["note"].ainvoke({"text": "over http"})
    assert answer[0]["text"] == "noted: over http"
    assert notes.read_text() == "over http\n"


async def test_tool_names_must_be_unique_across_sources(tool_folder):
    path = servers_file(tool_folder, {"test": {"command": sys.executable, "args": [SERVER]}})

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions.from_cli(["sample_tools:TOOLS"], path))

    assert str(refused.value) == (
        "two tools are named 'add' (sample_tools:TOOLS and MCP server 'test'); leave one of "
        'them out, or give one a prefix: "toolPrefix": "PREFIX" for MCP server \'test\' '
        f"in {path}, or --tools PREFIX=sample_tools:TOOLS"
    )


async def test_unreachable_servers_are_refused_fast_and_named(tmp_path):
    dead_url = f"http://127.0.0.1:{free_port()}/mcp"
    path = servers_file(
        tmp_path,
        {
            "fine": {"command": sys.executable, "args": [SERVER]},
            "gone": {"command": "no-such-mcp-server-command"},
            "dead": {"url": dead_url},
            "crashes": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]},
        },
    )
    started = time.monotonic()

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions.from_cli(mcp_config=path))

    assert time.monotonic() - started < 10
    assert str(refused.value) == (
        "MCP server 'gone' (no-such-mcp-server-command) failed: "
        "FileNotFoundError: [Errno 2] No such file or directory: 'no-such-mcp-server-command'; "
        f"MCP server 'dead' ({dead_url}) failed: ConnectError: All connection attempts failed; "
        f"MCP server 'crashes' ({sys.executable}) failed: McpError: Connection closed; "
        f"check {path}"
    )


async def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(step_tools, "MCP_TIMEOUT_S", 1.0)
    silent = {"command": sys.executable, "args": ["-c", "import time; time.sleep(60)"]}
    path = servers_file(tmp_path, {"silent": silent})
    started = time.monotonic()

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions.from_cli(mcp_config=path))

    assert time.monotonic() - started < 10
    assert str(refused.value) == (
        f"MCP server 'silent' ({sys.executable}) failed: no tool list within 1 s; check {path}"
    )


# --- workspace -----------------------------------------------------------------------


async def test_workspace_gives_the_file_tools(tmp_path):
    (tmp_path / "hello.txt").write_text("hello")

    tools = {
        found.name: found for found in await load_tools(ToolOptions.from_cli(workspace=tmp_path))
    }

    assert sorted(tools) == ["edit_file", "list_files", "read_file", "write_file"]
    assert "hello" in await tools["read_file"].ainvoke({"path": "hello.txt"})


async def test_a_workspace_gone_before_resume_is_refused(tmp_path):
    gone = tmp_path / "gone"

    with pytest.raises(ToolSetupError) as refused:
        await load_tools(ToolOptions(workspace=str(gone)))

    assert str(refused.value) == (
        f"workspace {gone} is not a folder; create it or pass another --workspace"
    )
