"""One MCP session per server per run, against real server processes: a stateful counter
(`tests/mcp_counter_server.py`) over stdio and streamable HTTP, driven by the CLI on the
Ollama test server or by the service with the scripted model. Each server starts once a
run, keeps its session for every call, and is gone when the run ends, stops or is
cancelled; its stderr goes to the run's log, not the terminal; a server killed mid-call is
started again once; a resume starts them again; one that does not start refuses the run
before its store is made; tool prefixes let two tools of one name be offered, and tools
are marked idempotent; a model that cannot call tools starts no server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ScriptedChatModel,
    calls,
    plan_text,
    run_cli,
    spawn_cli,
    step_line,
    wait_for,
    wait_until,
)
from langchain_core.messages import BaseMessage, ToolMessage
from mcp_counter_server import HELLO, STARTS_ENV
from ollama_server import OllamaTestServer, Reply, tool_messages
from test_cli_tools import step_in

from agentic_loop import LoopOptions
from agentic_loop.core.options import ToolOptions, ToolSetupError
from agentic_loop.runs.service import BadSetup, RunRequest, RunService
from agentic_loop.step_tools.loading import load_tools, prepare_tools
from agentic_loop.step_tools.mcp_logs import mcp_log_path

TESTS = Path(__file__).parent
COUNTER = str(TESTS / "mcp_counter_server.py")


# --- helpers ---------------------------------------------------------------------------


def counter_servers(folder: Path, **options: Any) -> Path:
    """A servers file with the counter server over stdio as `counter`, its starts recorded
    in `folder/starts`; `options` go in its entry (`toolPrefix`, `idempotent`)."""
    entry = {
        "command": sys.executable,
        "args": [COUNTER],
        "env": {STARTS_ENV: str(folder / "starts")},
        **options,
    }
    path = folder / "servers.json"
    path.write_text(json.dumps({"mcpServers": {"counter": entry}}))
    return path


def starts(folder: Path) -> list[int]:
    """The process ids of the counter servers started so far, in order."""
    path = folder / "starts"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def calling(tools_by_step: dict[int, tuple[str, dict[str, Any]]]) -> Callable[..., Reply]:
    """For the Ollama test server: plan one step per entry; in step N call its tool once,
    then report what the tool said."""

    def reply(request: dict[str, Any]) -> Reply:
        step = step_in(request)
        if step is None:
            return Reply(
                "Plan:\n" + "\n".join(f"{n}. Step {n} of the work" for n in sorted(tools_by_step))
            )
        results = tool_messages(request)
        if not results:
            return Reply("", tool_calls=[tools_by_step[step]])
        return Reply(f"the tool said {results[-1]['content']}")

    return reply


def scripted_counting(*steps: str, hold_at: int = 0) -> ScriptedChatModel:
    """The scripted model: plans `steps`; in each step calls `count` once, then reports.
    `hold_at` is `ScriptedChatModel`'s."""

    def reply(messages: list[BaseMessage]) -> Any:
        if not any(step_line(message.text) for message in messages):
            return plan_text(*steps)
        said = [m.text for m in messages if isinstance(m, ToolMessage)]
        return f"counted {said[-1]}" if said else calls(("count", {}))

    return ScriptedChatModel(script=reply, hold_at=hold_at)


def tool_results(result: Any) -> list[tuple[str, str]]:
    return [(call.status, call.result) for step in result.steps for call in step.tool_calls]


# --- one session a run, over the CLI ---------------------------------------------------


@pytest.mark.integration
def test_a_run_starts_each_server_once_keeps_its_session_and_logs_its_stderr(
    tmp_path: Path,
) -> None:
    servers = counter_servers(tmp_path)
    db = tmp_path / "runs.sqlite"
    reply = calling({n: ("count", {}) for n in (1, 2, 3)})
    with OllamaTestServer(reply) as server:
        done = run_cli(
            "run", "Count three times", "--mcp", str(servers), "--db", str(db), "--json",
            "--thread", "t1", host=server.url,
        )  # fmt: skip
        shown = run_cli("show", "t1", "--db", str(db), host=server.url)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [call["result"] for step in steps for call in step["tool_calls"]] == ["1", "2", "3"]
    [pid] = starts(tmp_path)  # one process for the run, its count rising across the steps
    wait_until(lambda: not running(pid), what="the server to be gone after the run")
    # Its stderr, and the SDK's log of each request, went to the run's log, not the terminal.
    log = tmp_path / "runs.mcp-logs" / "t1.log"
    assert log == mcp_log_path(db, "t1")
    assert HELLO in log.read_text()
    assert "CallToolRequest" in log.read_text()
    for output in (done.stdout, done.stderr):
        assert HELLO not in output and "Processing request" not in output
    assert f"MCP servers' stderr: {log}" in shown.stdout


@pytest.mark.integration
def test_a_server_killed_mid_call_is_started_again_once(tmp_path: Path) -> None:
    servers = counter_servers(tmp_path)
    db = tmp_path / "runs.sqlite"
    tools = ["count", "crash", "count", "crash", "count"]
    with OllamaTestServer(calling({n: (name, {}) for n, name in enumerate(tools, 1)})) as server:
        done = run_cli(
            "run", "Count and crash", "--mcp", str(servers), "--db", str(db), "--json",
            "--thread", "k", host=server.url,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls_made = [c for step in json.loads(done.stdout)["steps"] for c in step["tool_calls"]]
    assert [(c["tool"], c["status"]) for c in calls_made] == [
        ("count", "success"),
        ("crash", "error"),
        ("count", "success"),
        ("crash", "error"),
        ("count", "error"),
    ]
    results = [c["result"] for c in calls_made]
    assert "stopped during this call" in results[1] and "started again" in results[1]
    assert results[2] == "1"  # a new session: the state it held is gone
    assert "stopped during this call" in results[3] and "not started again" in results[3]
    assert "stopped twice in this run and is not started again" in results[4]
    assert len(starts(tmp_path)) == 2  # started, then once more
    log = mcp_log_path(db, "k").read_text()
    assert log.count("stopped: its output ended (its process exited)") == 2
    assert "starting it again" in log and "not started a third time" in log


@pytest.mark.integration
def test_a_server_that_does_not_start_refuses_the_run_and_leaves_no_store(
    tmp_path: Path,
) -> None:
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"gone": {"command": "no-such-command-xyz"}}}))
    db = tmp_path / "runs.sqlite"
    with OllamaTestServer(calling({1: ("count", {})})) as server:
        done = run_cli("run", "T", "--mcp", str(servers), "--db", str(db), host=server.url)
        asked = server.chat_requests()
    assert done.returncode == 2
    assert done.stderr.startswith("error: MCP server 'gone' (no-such-command-xyz) failed: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not db.exists() and asked == []


@pytest.mark.integration
def test_a_resume_starts_the_servers_again(tmp_path: Path) -> None:
    servers = counter_servers(tmp_path)
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(calling({1: ("count", {}), 2: ("count", {})})) as server:
        first = run_cli(
            "run", "Count twice", "--mcp", str(servers), "--approve-tool", "count",
            "--db", db, "--thread", "r", host=server.url, input="a\n",
        )  # fmt: skip
        assert first.returncode == 1, first.stderr  # step 2's call waits for an answer
        [pid] = starts(tmp_path)
        resumed = run_cli("resume", "r", "--db", db, "--json", host=server.url, input="a\n")
    assert resumed.returncode == 0, resumed.stderr
    steps = json.loads(resumed.stdout)["steps"]
    assert [step["tool_calls"][0]["result"] for step in steps] == ["1", "1"]  # a new session
    assert starts(tmp_path)[0] == pid and len(starts(tmp_path)) == 2
    assert mcp_log_path(Path(db), "r").read_text().count(HELLO) == 2


@pytest.mark.integration
def test_a_server_exits_when_the_cli_is_killed_mid_run(tmp_path: Path) -> None:
    """SIGKILL gives the CLI no time to close its sessions: the server's input ends with the
    CLI, and it exits."""
    held = threading.Event()
    release = threading.Event()
    normal = calling({1: ("count", {})})

    def reply(request: dict[str, Any]) -> Reply:
        if tool_messages(request) and not held.is_set():
            held.set()
            return Reply("never sent", hold=release)
        return normal(request)

    servers = counter_servers(tmp_path)
    with OllamaTestServer(reply) as server:
        proc = spawn_cli(
            "run", "Count", "--mcp", str(servers), "--db", str(tmp_path / "r.sqlite"),
            host=server.url,
        )  # fmt: skip
        try:
            assert held.wait(timeout=60), "the turn after the tool call never came"
            [pid] = starts(tmp_path)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            release.set()
            proc.kill()
    wait_until(lambda: not running(pid), what="the server to exit after the CLI was killed")


# --- the sessions' life, through the service -------------------------------------------


def opened(db: Path, model: Any) -> Any:
    return RunService.open(db, model_factory=lambda spec, options: model)


async def test_servers_close_when_a_run_waits_and_a_resume_starts_them_again(
    tmp_path: Path,
) -> None:
    tools = ToolOptions(mcp_config=str(counter_servers(tmp_path)))
    model = scripted_counting("Count", "Count again")
    options = LoopOptions(model="scripted", tools=tools, approve_tools=("count",))
    async with opened(tmp_path / "runs.sqlite", model) as service:
        waiting = await service.start(RunRequest(task="Count", options=options, thread_id="w"))
        assert waiting.result is None and [q.kind for q in waiting.waiting] == ["tool_approval"]
        [first] = starts(tmp_path)
        assert not running(first)  # closed when the run stopped to wait, this process alive

        carried = await service.answer("w", {q.id: "approve" for q in waiting.waiting})
        assert carried.result is None  # the second step's call waits in turn
        done = await service.answer("w", {q.id: "approve" for q in carried.waiting})
    assert done.result is not None and done.result.status == "completed"
    assert tool_results(done.result) == [("success", "1"), ("success", "1")]
    first_again, second, third = starts(tmp_path)
    assert first_again == first and not running(second) and not running(third)


async def test_servers_close_when_a_background_run_is_cancelled(tmp_path: Path) -> None:
    tools = ToolOptions(mcp_config=str(counter_servers(tmp_path)))
    # The step's turn after its tool call (the third call) waits for a gate nobody sets.
    model = scripted_counting("Count", hold_at=3)
    request = RunRequest(task="Count", options=LoopOptions(tools=tools), thread_id="c")
    async with opened(tmp_path / "runs.sqlite", model) as service:
        job = await service.launch(lambda: service.start(request), "c")
        await wait_for(lambda: model.held, what="the turn after the tool call")
        [pid] = starts(tmp_path)
        assert running(pid)
        service.cancel("c")
        with pytest.raises(asyncio.CancelledError):
            await job
        assert not running(pid)


async def test_a_model_that_cannot_call_tools_starts_no_server(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    servers = tmp_path / "servers.json"
    write_marker = f"open({str(marker)!r}, 'w').close()"
    servers.write_text(
        json.dumps({"mcpServers": {"m": {"command": sys.executable, "args": ["-c", write_marker]}}})
    )
    from langchain_core.runnables import RunnableLambda

    no_tools = RunnableLambda(lambda messages: messages)  # has no bind_tools
    options = LoopOptions(tools=ToolOptions(mcp_config=str(servers)))
    db = tmp_path / "runs.sqlite"
    with pytest.raises(BadSetup, match="cannot call tools"):
        async with RunService.open(
            db, model_factory=lambda spec, options: no_tools, starting=options
        ):
            pass
    await asyncio.sleep(0.5)  # time a started server would have had to write
    assert not marker.exists()
    assert not db.exists()


@pytest.mark.integration
def test_the_embedded_model_refuses_mcp_tools_before_any_server_starts(tmp_path: Path) -> None:
    from agentic_loop.models.local import local_model_available

    if not local_model_available():
        pytest.skip("the embedded model is not installed")
    marker = tmp_path / "started"
    servers = tmp_path / "servers.json"
    write_marker = f"open({str(marker)!r}, 'w').close()"
    servers.write_text(
        json.dumps({"mcpServers": {"m": {"command": sys.executable, "args": ["-c", write_marker]}}})
    )
    done = run_cli(
        "run", "T", "--mcp", str(servers), "--model", "local", "--db",
        str(tmp_path / "r.sqlite"), host="127.0.0.1:9",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot call tools" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists()


# --- streamable HTTP -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def http_counter(tmp_path: Path) -> Iterator[str]:
    """The counter server over streamable HTTP on 127.0.0.1: its URL."""
    port = free_port()
    with (tmp_path / "http-server.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, COUNTER, "--http", str(port)], stdout=log, stderr=log
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
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


async def test_a_run_keeps_one_session_with_an_http_server(
    tmp_path: Path, http_counter: str
) -> None:
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {"web": {"url": http_counter}}}))
    tools = ToolOptions(mcp_config=str(servers))
    model = scripted_counting("Count", "Count again", "Count once more")
    async with opened(tmp_path / "runs.sqlite", model) as service:
        done = await service.start(RunRequest(task="Count", options=LoopOptions(tools=tools)))
    assert done.result is not None
    assert tool_results(done.result) == [("success", "1"), ("success", "2"), ("success", "3")]

    # Outside a run, each call has a session of its own.
    count = {found.name: found for found in await load_tools(tools)}["count"]
    assert [(await count.ainvoke({}))[0]["text"] for _ in range(2)] == ["1", "1"]


# --- a server that stops between calls -------------------------------------------------


async def test_a_server_killed_between_calls_is_started_again_for_the_next(
    tmp_path: Path,
) -> None:
    prepared = await prepare_tools(ToolOptions(mcp_config=str(counter_servers(tmp_path))))
    log = tmp_path / "run.log"
    async with prepared.open(log) as tools:
        count = {found.name: found for found in tools}["count"]
        assert (await count.ainvoke({}))[0]["text"] == "1"
        [pid] = starts(tmp_path)
        os.kill(pid, signal.SIGKILL)
        await wait_for(
            lambda: "stopped: its output ended" in log.read_text(),
            what="the server's stop to be seen",
        )
        assert (await count.ainvoke({}))[0]["text"] == "1"  # no call was in flight
        assert (await count.ainvoke({}))[0]["text"] == "2"
        assert len(starts(tmp_path)) == 2
    assert not any(running(pid) for pid in starts(tmp_path))


# --- tool prefixes ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("entry", "flags", "workspace_tool", "server_tool"),
    [
        ({"toolPrefix": "srv_"}, [], "read_file", "srv_read_file"),
        ({}, ["--workspace-prefix", "ws_"], "ws_read_file", "read_file"),
    ],
    ids=["toolPrefix", "workspace-prefix"],
)
def test_prefixes_let_two_read_file_tools_be_offered(
    tmp_path: Path,
    entry: dict[str, str],
    flags: list[str],
    workspace_tool: str,
    server_tool: str,
) -> None:
    servers = counter_servers(tmp_path, **entry)
    workspace = tmp_path / "files"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("the workspace's notes")
    reply = calling({1: (workspace_tool, {"path": "notes.txt"}), 2: (server_tool, {"path": "x"})})
    with OllamaTestServer(reply) as server:
        done = run_cli(
            "run", "Read both", "--mcp", str(servers), "--workspace", str(workspace), *flags,
            "--db", str(tmp_path / "r.sqlite"), "--json", host=server.url,
        )  # fmt: skip
        offered = sorted(t["function"]["name"] for t in server.chat_requests()[1]["tools"])
    assert done.returncode == 0, done.stderr
    assert workspace_tool in offered and server_tool in offered
    steps = json.loads(done.stdout)["steps"]
    assert [step["tool_calls"][0]["result"] for step in steps] == [
        "the workspace's notes",
        "the server's x",
    ]


@pytest.mark.integration
def test_two_tools_of_one_name_are_refused_naming_the_prefix_options(tmp_path: Path) -> None:
    servers = counter_servers(tmp_path)
    workspace = tmp_path / "files"
    workspace.mkdir()
    with OllamaTestServer(calling({1: ("count", {})})) as server:
        done = run_cli(
            "run", "T", "--mcp", str(servers), "--workspace", str(workspace),
            "--db", str(tmp_path / "r.sqlite"), host=server.url,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "two tools are named 'read_file' (MCP server 'counter' and --workspace)" in done.stderr
    assert "--workspace-prefix PREFIX" in done.stderr
    assert f'"toolPrefix": "PREFIX" for MCP server \'counter\' in {servers}' in done.stderr
    assert not (tmp_path / "r.sqlite").exists()
    [pid] = starts(tmp_path)
    wait_until(lambda: not running(pid), what="the server to be closed after the refusal")


async def test_prefixes_go_on_imported_and_workspace_tools(tmp_path: Path) -> None:
    import sample_tools

    options = ToolOptions(
        imports=("math_=sample_tools:TOOLS",),
        import_root=str(TESTS),
        workspace=str(tmp_path),
        workspace_prefix="ws-",
    )
    names = [found.name for found in await load_tools(options)]
    assert names == [
        "math_add",
        "math_multiply",
        "ws-list_files",
        "ws-read_file",
        "ws-write_file",
        "ws-edit_file",
    ]
    assert sample_tools.add.name == "add"  # the module's own tool is not renamed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ToolOptions(imports=("bad.prefix=sample_tools:TOOLS",), import_root=str(TESTS)),
            "the tool prefix 'bad.prefix' of bad.prefix=sample_tools:TOOLS is not allowed; "
            "use 1 to 32 ASCII letters, digits, '_' and '-'",
        ),
        (
            ToolOptions(workspace="/", workspace_prefix="a b"),
            "the tool prefix 'a b' of --workspace is not allowed",
        ),
    ],
)
async def test_a_bad_prefix_is_refused_naming_it(options: ToolOptions, message: str) -> None:
    with pytest.raises(ToolSetupError, match=message.replace(".", r"\.").replace("(", r"\(")):
        await load_tools(options)


async def test_a_bad_tool_prefix_in_the_servers_file_starts_no_server(tmp_path: Path) -> None:
    servers = counter_servers(tmp_path, toolPrefix="c/")
    with pytest.raises(ToolSetupError, match="the tool prefix 'c/' of MCP server 'counter'"):
        await prepare_tools(ToolOptions(mcp_config=str(servers)))
    assert starts(tmp_path) == []


# --- idempotent marks ------------------------------------------------------------------


async def test_idempotent_tools_are_marked_in_their_metadata(tmp_path: Path) -> None:
    servers = counter_servers(tmp_path, toolPrefix="c_", idempotent=["read_file"])
    options = ToolOptions(
        mcp_config=str(servers),
        imports=("sample_tools:TOOLS",),
        import_root=str(TESTS),
        idempotent_tools=("add", "c_count"),
    )
    marked = {
        found.name: bool((found.metadata or {}).get("idempotent"))
        for found in await load_tools(options)
    }
    assert marked == {
        "add": True,
        "multiply": False,
        "c_count": True,
        "c_read_file": True,
        "c_crash": False,
    }
    import sample_tools

    assert not (sample_tools.TOOLS[0].metadata or {}).get("idempotent")  # a copy was marked

    every = counter_servers(tmp_path, idempotent=True)
    assert all(
        (found.metadata or {}).get("idempotent")
        for found in await load_tools(ToolOptions(mcp_config=str(every)))
    )


@pytest.mark.parametrize(
    ("entry", "idempotent_tools", "message"),
    [
        (
            {"idempotent": ["nope"]},
            (),
            "\"idempotent\" of MCP server 'counter' in {servers} names 'nope', which is not "
            "one of its tools: count, read_file, crash",
        ),
        ({"idempotent": "yes"}, (), '"idempotent" must be true, false or a list of tool names'),
        (
            {},
            ("nope",),
            "--idempotent-tool names 'nope', which is not one of the tools: count, read_file, "
            "crash",
        ),
    ],
    ids=["unknown-in-file", "not-a-list", "unknown-flag"],
)
async def test_unknown_idempotent_tools_are_refused(
    tmp_path: Path, entry: dict[str, Any], idempotent_tools: tuple[str, ...], message: str
) -> None:
    servers = counter_servers(tmp_path, **entry)
    options = ToolOptions(mcp_config=str(servers), idempotent_tools=idempotent_tools)
    with pytest.raises(ToolSetupError) as refused:
        await load_tools(options)
    assert message.format(servers=servers) in str(refused.value)


# --- options and the log's path --------------------------------------------------------


def test_prefixes_and_idempotent_tools_are_kept_with_the_run(tmp_path: Path) -> None:
    options = ToolOptions.from_cli(
        ["m_=my_tools:TOOLS"],
        workspace=tmp_path,
        workspace_prefix="ws_",
        idempotent_tools=["m_add"],
    )
    assert options.to_metadata()["workspace_prefix"] == "ws_"
    assert ToolOptions.from_metadata(options.to_metadata()) == options
    loop = LoopOptions(tools=options)
    assert LoopOptions.from_metadata(loop.to_metadata()).tools == options
    before = {"imports": ["my_tools:TOOLS"], "import_root": "/srv"}  # stored before prefixes
    old = ToolOptions.from_metadata(before)
    assert (old.workspace_prefix, old.idempotent_tools) == (None, ())


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workspace-prefix", "ws_"], "--workspace-prefix needs --workspace"),
        (["--idempotent-tool", "add"], "--idempotent-tool needs tools"),
    ],
)
def test_prefix_and_idempotent_flags_without_their_tools_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = run_cli("run", "T", *args, "--db", str(tmp_path / "r.sqlite"), host="127.0.0.1:9")
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.parametrize(
    ("store", "thread_id", "expected"),
    [
        (Path("/data/runs.sqlite"), "run-1a2b", "/data/runs.mcp-logs/run-1a2b.log"),
        (Path("/data/store"), "t:1", "/data/store.mcp-logs/t:1.log"),
        (Path("/data/runs.sqlite"), "../old/id", "/data/runs.mcp-logs/_.._old_id.log"),
        ("postgresql://u:p@db/runs", "t1", "{data}/agentic-loop/mcp-logs/t1.log"),
        (None, "t1", "{data}/agentic-loop/mcp-logs/t1.log"),
    ],
)
def test_the_log_of_a_runs_servers_sits_beside_its_store(
    monkeypatch: pytest.MonkeyPatch,
    store: Path | str | None,
    thread_id: str,
    expected: str,
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/home/u/.data")
    assert mcp_log_path(store, thread_id) == Path(expected.format(data="/home/u/.data"))
