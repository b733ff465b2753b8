"""A small MCP server for the tool-loading tests, written with the MCP SDK's FastMCP.

`python tests/mcp_server.py` serves over stdio; `python tests/mcp_server.py --http PORT`
serves streamable HTTP at `http://127.0.0.1:PORT/mcp`. Its tools are `add`, and `note`,
whose side effect a test can see: it appends a line to the file named by `MCP_NOTES_FILE`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mcp.server.fastmcp import FastMCP

NOTES_ENV = "MCP_NOTES_FILE"


def build_server(port: int = 8000) -> FastMCP:
    # Stateless JSON replies over HTTP: no long-lived event stream, whose end at every client
    # disconnect the SDK logs as an error.
    server = FastMCP(
        "test-tools",
        host="127.0.0.1",
        port=port,
        log_level="WARNING",
        stateless_http=True,
        json_response=True,
    )

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    @server.tool()
    def note(text: str) -> str:
        """Append a line of text to the notes file."""
        with Path(os.environ[NOTES_ENV]).open("a", encoding="utf-8") as notes:
            notes.write(text + "\n")
        return f"noted: {text}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    args = parser.parse_args()
    if args.http is None:
        build_server().run("stdio")
    else:
        build_server(args.http).run("streamable-http")


if __name__ == "__main__":
    main()
