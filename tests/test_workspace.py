"""The workspace file tools: what each does, and every way out of the workspace refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from agentic_loop.step_tools.workspace import MAX_LIST_ENTRIES, MAX_READ_CHARS, workspace_tools

SECRET = "outside, must not change\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """`tmp_path/root` is the workspace; `tmp_path/outside` holds a file and a folder it
    must not reach, and the workspace holds symlinks pointing there."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("hello\n")
    (root / "secret_link").symlink_to(outside / "secret.txt")
    (root / "new_link").symlink_to(outside / "new.txt")  # dangling: would create a file outside
    (root / "folder_link").symlink_to(outside / "folder", target_is_directory=True)
    (root / "notes_link").symlink_to("notes.txt")  # points inside, so it may be used
    return root


@pytest.fixture
def tools(root: Path) -> dict[str, BaseTool]:
    return {tool.name: tool for tool in workspace_tools(root)}


def call(tool: BaseTool, **args: str) -> ToolMessage:
    """Call `tool` the way ToolNode does, with a tool call, and return its message."""
    message = tool.invoke({"name": tool.name, "args": args, "id": "1", "type": "tool_call"})
    assert isinstance(message, ToolMessage)
    return message


def ok(tool: BaseTool, **args: str) -> str:
    message = call(tool, **args)
    assert message.status == "success", message.content
    assert isinstance(message.content, str)
    return message.content


def refused(tool: BaseTool, **args: str) -> str:
    message = call(tool, **args)
    assert message.status == "error", message.content
    assert isinstance(message.content, str)
    return message.content


def outside_files(tmp_path: Path) -> dict[str, bytes]:
    """Every file under `tmp_path` but outside the workspace, with its bytes; links not followed."""
    found = {}
    for folder, _, names in os.walk(tmp_path):
        for name in names:
            file = Path(folder, name)
            if not file.is_relative_to(tmp_path / "root"):
                found[file.relative_to(tmp_path).as_posix()] = file.read_bytes()
    return found


# --- each tool's happy path ---


def test_list_files_marks_folders_and_sorts(tools: dict[str, BaseTool], root: Path) -> None:
    (root / "sub" / "b.txt").write_text("b")
    (root / "sub" / "a").mkdir()

    assert ok(tools["list_files"]).splitlines() == [
        "folder_link/",
        "new_link",
        "notes.txt",
        "notes_link",
        "secret_link",
        "sub/",
    ]
    assert ok(tools["list_files"], path="sub") == "sub/a/\nsub/b.txt"
    assert ok(tools["list_files"], path="sub/a") == "'sub/a' is an empty folder."


def test_list_files_is_bounded(tools: dict[str, BaseTool], root: Path) -> None:
    for number in range(MAX_LIST_ENTRIES + 5):
        (root / "sub" / f"{number:04}.txt").touch()

    lines = ok(tools["list_files"], path="sub").splitlines()

    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[0] == "sub/0000.txt"
    assert lines[-1] == "... and 5 more entries"


def test_read_file_returns_the_text_as_it_is(tools: dict[str, BaseTool], root: Path) -> None:
    (root / "sub" / "crlf.txt").write_bytes("naïve ✓\r\nline two\r\n".encode())

    assert ok(tools["read_file"], path="sub/crlf.txt") == "naïve ✓\r\nline two\r\n"
    assert ok(tools["read_file"], path="notes_link") == "hello\n"


def test_read_file_is_bounded(tools: dict[str, BaseTool], root: Path) -> None:
    (root / "long.txt").write_text("x" * (MAX_READ_CHARS + 10))

    text = ok(tools["read_file"], path="long.txt")

    body, note = text.rsplit("\n", 1)
    assert body == "x" * MAX_READ_CHARS
    assert note == f"[cut: these are the first {MAX_READ_CHARS:,} characters of a 20,010-byte file]"


def test_write_file_creates_folders_and_counts_bytes(
    tools: dict[str, BaseTool], root: Path
) -> None:
    assert ok(tools["write_file"], path="new/deep/é.txt", content="café\n") == (
        "Wrote 6 bytes to new/deep/é.txt."
    )
    assert (root / "new" / "deep" / "é.txt").read_text() == "café\n"

    ok(tools["write_file"], path="notes.txt", content="replaced")
    assert (root / "notes.txt").read_text() == "replaced"


def test_edit_file_replaces_the_one_occurrence(tools: dict[str, BaseTool], root: Path) -> None:
    (root / "plan.md").write_text("1. draft\n2. review\n")

    assert ok(tools["edit_file"], path="plan.md", old_text="draft", new_text="write") == (
        "Replaced 1 occurrence in plan.md."
    )
    assert (root / "plan.md").read_text() == "1. write\n2. review\n"


async def test_tools_work_with_ainvoke(tools: dict[str, BaseTool], root: Path) -> None:
    assert await tools["write_file"].ainvoke({"path": "a.txt", "content": "async"}) == (
        "Wrote 5 bytes to a.txt."
    )
    assert await tools["read_file"].ainvoke({"path": "a.txt"}) == "async"


# --- mistakes the model can correct ---


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("read_file", {"path": "missing.txt"}, "there is no file 'missing.txt'"),
        ("read_file", {"path": "sub"}, "'sub' is a folder, not a file"),
        ("read_file", {"path": "binary.bin"}, "'binary.bin' is not UTF-8 text"),
        ("read_file", {"path": "nul.bin"}, "'nul.bin' holds NUL bytes"),
        ("list_files", {"path": "notes.txt"}, "'notes.txt' is not a folder in the workspace"),
        ("list_files", {"path": "missing"}, "'missing' is not a folder in the workspace"),
        ("write_file", {"path": ".", "content": "x"}, "'.' is a folder"),
        ("write_file", {"path": "sub", "content": "x"}, "'sub' is a folder"),
        ("edit_file", {"path": "missing.txt", "old_text": "a", "new_text": "b"}, "no file"),
        ("edit_file", {"path": "notes.txt", "old_text": "", "new_text": "b"}, "old_text is empty"),
    ],
)
def test_mistakes_are_errors_for_the_model(
    tools: dict[str, BaseTool], root: Path, tool: str, args: dict[str, str], message: str
) -> None:
    (root / "binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (root / "nul.bin").write_bytes(b"text\x00more")

    assert message in refused(tools[tool], **args)
    assert (root / "notes.txt").read_text() == "hello\n"
    assert not (root / "missing.txt").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("two three", "old_text does not occur in 'f.txt'"),
        ("one two one", "old_text occurs 2 times in 'f.txt'"),
    ],
)
def test_edit_file_needs_exactly_one_match(
    tools: dict[str, BaseTool], root: Path, text: str, message: str
) -> None:
    (root / "f.txt").write_text(text)

    assert message in refused(tools["edit_file"], path="f.txt", old_text="one", new_text="1")
    assert (root / "f.txt").read_text() == text


# --- every way out of the workspace ---

ESCAPES = [
    ("list_files", {"path": ".."}),
    ("list_files", {"path": "sub/../.."}),
    ("list_files", {"path": "folder_link"}),
    ("list_files", {"path": "/etc"}),
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "sub/../../outside/secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "secret_link"}),
    ("read_file", {"path": "folder_link/../secret.txt"}),
    ("write_file", {"path": "../outside.txt", "content": "x"}),
    ("write_file", {"path": "sub/../../x", "content": "x"}),
    ("write_file", {"path": "../outside/secret.txt", "content": "x"}),
    ("write_file", {"path": "secret_link", "content": "x"}),
    ("write_file", {"path": "new_link", "content": "x"}),
    ("write_file", {"path": "folder_link/new.txt", "content": "x"}),
    ("write_file", {"path": "folder_link/deeper/new.txt", "content": "x"}),
    ("edit_file", {"path": "secret_link", "old_text": "outside", "new_text": "x"}),
    ("edit_file", {"path": "../outside/secret.txt", "old_text": "outside", "new_text": "x"}),
]


@pytest.mark.parametrize(
    ("tool", "args"), ESCAPES, ids=[f"{tool}:{args['path']}" for tool, args in ESCAPES]
)
def test_paths_out_of_the_workspace_are_refused(
    tools: dict[str, BaseTool], tmp_path: Path, tool: str, args: dict[str, str]
) -> None:
    before = outside_files(tmp_path)

    message = refused(tools[tool], **args)

    assert "leaves the workspace" in message or "is absolute" in message
    assert outside_files(tmp_path) == before
    assert (tmp_path / "outside" / "secret.txt").read_text() == SECRET


@pytest.mark.parametrize("tool", ["list_files", "read_file", "write_file", "edit_file"])
def test_absolute_paths_are_refused_even_inside(
    tools: dict[str, BaseTool], tmp_path: Path, root: Path, tool: str
) -> None:
    args = {"old_text": "outside", "new_text": "x"} if tool == "edit_file" else {}
    if tool == "write_file":
        args["content"] = "x"
    before = outside_files(tmp_path)

    for path in [tmp_path / "outside" / "secret.txt", root / "notes.txt"]:
        assert "is absolute" in refused(tools[tool], path=str(path), **args)

    assert outside_files(tmp_path) == before
    assert (root / "notes.txt").read_text() == "hello\n"


def test_a_refusal_used_alone_is_text_not_an_exception(tools: dict[str, BaseTool]) -> None:
    assert tools["read_file"].invoke({"path": "../outside/secret.txt"}) == (
        "path '../outside/secret.txt' leaves the workspace; use a path inside it"
    )


async def test_a_tool_node_hands_a_refusal_to_the_model(tools: dict[str, BaseTool]) -> None:
    request = AIMessage(
        "",
        tool_calls=[{"name": "read_file", "args": {"path": "secret_link"}, "id": "call-1"}],
    )

    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(list(tools.values())))
    graph.add_edge(START, "tools")

    result = await graph.compile().ainvoke({"messages": [request]})

    message = result["messages"][-1]
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert message.content == "path 'secret_link' leaves the workspace; use a path inside it"


@pytest.mark.parametrize("is_a_file", [False, True], ids=["missing", "a file"])
def test_root_must_be_a_folder(tmp_path: Path, is_a_file: bool) -> None:
    root = tmp_path / "work"
    if is_a_file:
        root.write_text("not a folder")

    with pytest.raises(ValueError) as raised:
        workspace_tools(root)

    assert str(raised.value) == (
        f"workspace {root} is not a folder; create it or pass another --workspace"
    )
