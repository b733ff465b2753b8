"""Tools for the tests of tool calls cut off mid-call (`test_cut_off_calls.py`), importable
as `--tools cut_off_tools:TOOLS`: each writes down its call (the key it got, the tool call
id, and its text), then waits `pause_s` seconds, so that a run stopped meanwhile cuts the
call off after its side effect."""

from __future__ import annotations

import asyncio
from typing import Annotated

from langchain_core.tools import InjectedToolCallId, tool

noted: list[tuple[str, str]] = []
"""(key, text) of each call that ran, in order."""
pause_s = 0.0
"""How long each call waits after writing itself down: set it long to cut calls off."""


@tool
async def note(text: str, key: Annotated[str, InjectedToolCallId]) -> str:
    """Write a line in the notebook."""
    noted.append((key, text))
    await asyncio.sleep(pause_s)
    return f"noted {text!r}"


@tool
async def put_note(text: str, key: Annotated[str, InjectedToolCallId]) -> str:
    """Put a line in the notebook, once per key."""
    noted.append((key, text))
    await asyncio.sleep(pause_s)
    return f"put {text!r}"


put_note.metadata = {"idempotent": True}

TOOLS = [note, put_note]
