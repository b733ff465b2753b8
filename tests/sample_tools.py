"""Attributes for the `--tools` import tests: each form `load_tools` takes, and some it refuses."""

from __future__ import annotations

from langchain_core.tools import BaseTool, tool


@tool
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers."""
    return a * b


async def shout(text: str) -> str:
    """Say the text in capitals."""
    return text.upper()


TOOLS = [add, multiply]


def make_tools() -> list[object]:
    return [add, multiply]


async def fetch_tools() -> tuple[BaseTool, ...]:
    return (add,)


def undocumented(a: int) -> int:
    return a


def broken_factory() -> list[BaseTool]:
    raise RuntimeError("no tools today\nsecond line")


def now() -> str:
    """The time of day: a tool without arguments, which must go in a list to be one."""
    return "noon"


NUMBER = 42
SOME_NOT_TOOLS = [add, "multiply"]
