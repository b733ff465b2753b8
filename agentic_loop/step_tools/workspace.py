"""File tools for a step of the loop, confined to the folder the user allowed.

`workspace_tools(root)` gives `list_files`, `read_file`, `write_file` and `edit_file`. Every
path a model passes is taken relative to `root` and resolved, symlinks included, before
anything is touched: an absolute path, one that climbs out with `..` and one that goes
through a symlink pointing outside are refused. A refusal or a failed file operation is
raised as a `ToolException`, which the tool hands back to the model as an error message.
What a model writes is data: it is stored as text, never run.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

MAX_LIST_ENTRIES = 200
"""`list_files` shows at most this many entries of a folder, then says how many it left out."""

MAX_READ_CHARS = 20_000
"""`read_file` returns at most this many characters of a file, then says it cut the rest."""


class _ListArgs(BaseModel):
    path: str = Field(
        default=".", description="A folder, relative to the workspace; '.' is the workspace."
    )


class _ReadArgs(BaseModel):
    path: str = Field(description="A file, relative to the workspace, like notes/todo.md.")


class _WriteArgs(_ReadArgs):
    content: str = Field(description="The whole text the file should hold.")


class _EditArgs(_ReadArgs):
    old_text: str = Field(description="Text that occurs exactly once in the file, copied exactly.")
    new_text: str = Field(description="The text to put in its place.")


def workspace_tools(root: str | Path) -> list[BaseTool]:
    """`list_files`, `read_file`, `write_file` and `edit_file`, confined to `root`."""
    if not Path(root).is_dir():
        raise ValueError(f"workspace {root} is not a folder; create it or pass another --workspace")
    workspace = Path(root).resolve()

    def list_files(path: str = ".") -> str:
        folder = _inside(workspace, path)
        if not folder.is_dir():
            raise ToolException(f"{path!r} is not a folder in the workspace; try list_files('.')")
        entries = sorted(folder.iterdir())
        lines = [
            entry.relative_to(workspace).as_posix() + ("/" if entry.is_dir() else "")
            for entry in entries[:MAX_LIST_ENTRIES]
        ]
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"... and {len(entries) - MAX_LIST_ENTRIES} more entries")
        return "\n".join(lines) or f"{path!r} is an empty folder."

    def read_file(path: str) -> str:
        file = _existing_file(workspace, path)
        text = _read_text(file, path, limit=MAX_READ_CHARS + 1)
        if len(text) > MAX_READ_CHARS:
            size = file.stat().st_size
            return (
                f"{text[:MAX_READ_CHARS]}\n[cut: these are the first {MAX_READ_CHARS:,} "
                f"characters of a {size:,}-byte file]"
            )
        return text

    def write_file(path: str, content: str) -> str:
        file = _inside(workspace, path)
        if file.is_dir():
            raise ToolException(f"{path!r} is a folder; give a file path inside it")
        file.parent.mkdir(parents=True, exist_ok=True)
        size = file.write_bytes(_encoded(content))
        return f"Wrote {size} bytes to {path}."

    def edit_file(path: str, old_text: str, new_text: str) -> str:
        if not old_text:
            raise ToolException("old_text is empty; copy the exact text to replace")
        file = _existing_file(workspace, path)
        text = _read_text(file, path)
        count = text.count(old_text)
        if count == 0:
            raise ToolException(
                f"old_text does not occur in {path!r}; read the file and copy the text exactly"
            )
        if count > 1:
            raise ToolException(
                f"old_text occurs {count} times in {path!r}; "
                "include more of the text around it so that it occurs once"
            )
        file.write_bytes(_encoded(text.replace(old_text, new_text, 1)))
        return f"Replaced 1 occurrence in {path}."

    specs: list[tuple[Callable[..., str], type[BaseModel], str]] = [
        (
            list_files,
            _ListArgs,
            "List a folder of the workspace, one entry per line, sorted; folders end with "
            "'/'. Each entry is a path relative to the workspace, ready for read_file.",
        ),
        (
            read_file,
            _ReadArgs,
            f"Read a UTF-8 text file of the workspace (at most {MAX_READ_CHARS:,} characters).",
        ),
        (
            write_file,
            _WriteArgs,
            "Create a file of the workspace, or replace its whole text; missing folders on "
            "its path are created.",
        ),
        (
            edit_file,
            _EditArgs,
            "Change part of a file of the workspace: replace old_text, which must occur "
            "exactly once, with new_text.",
        ),
    ]
    return [
        StructuredTool.from_function(
            func=_reporting_os_errors(function),
            name=function.__name__,
            description=description,
            args_schema=schema,
            handle_tool_error=True,
        )
        for function, schema, description in specs
    ]


def _inside(workspace: Path, path: str) -> Path:
    """`path` resolved against the (resolved) `workspace`, refused if it leads outside."""
    if Path(path).is_absolute():
        raise ToolException(
            f"path {path!r} is absolute; give a path relative to the workspace, like notes.txt"
        )
    try:
        # Follows every symlink on the way, so a link pointing out resolves outside.
        resolved = (workspace / path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL in the name
        raise ToolException(f"path {path!r} cannot be resolved ({exc})") from exc
    if not resolved.is_relative_to(workspace):
        raise ToolException(f"path {path!r} leaves the workspace; use a path inside it")
    return resolved


def _existing_file(workspace: Path, path: str) -> Path:
    file = _inside(workspace, path)
    if file.is_dir():
        raise ToolException(f"{path!r} is a folder, not a file; list_files shows what it holds")
    if not file.is_file():
        raise ToolException(f"there is no file {path!r}; list_files shows what there is")
    return file


def _read_text(file: Path, path: str, limit: int = -1) -> str:
    """Up to `limit` characters (all by default) of `file`, with its line endings as they are."""
    try:
        with file.open(encoding="utf-8", newline="") as stream:
            text = stream.read(limit)
    except UnicodeDecodeError as exc:
        raise ToolException(f"{path!r} is not UTF-8 text (a binary file?)") from exc
    if "\x00" in text:
        raise ToolException(f"{path!r} holds NUL bytes, so it is binary, not text")
    return text


def _encoded(text: str) -> bytes:
    # A lone surrogate (from a JSON escape like "\ud800") cannot be UTF-8; store "?" instead.
    return text.encode("utf-8", errors="replace")


def _reporting_os_errors(function: Callable[..., str]) -> Callable[..., str]:
    """`function` with a failed file operation (permission, disk full) raised as a
    ToolException, which the tool hands to the model as text."""

    @wraps(function)
    def wrapper(**kwargs: Any) -> str:
        try:
            return function(**kwargs)
        except OSError as exc:
            raise ToolException(
                f"{function.__name__} failed on {kwargs.get('path', '.')!r}: {exc.strerror or exc}"
            ) from exc

    return wrapper
