"""A stateful MCP server for the session tests, written with the MCP SDK's FastMCP.

`python tests/mcp_counter_server.py` serves over stdio; `--http PORT` serves streamable
HTTP, a session per client, at `http://127.0.0.1:PORT/mcp`. As it starts it appends its
process id to the file named by `MCP_STARTS_FILE` (if set) and says `HELLO` on stderr; at
INFO level the SDK logs every request on stderr too.

Its tools: `count`, which adds one to its session's count and returns it, so a count that
keeps rising shows one session; `read_file`, a name the workspace's tools have too; and
`crash`, which kills the server's process in the middle of the call.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from mcp.server.fastmcp import Context, FastMCP

STARTS_ENV = "MCP_STARTS_FILE"
HELLO = "counter server: hello on stderr"


def build_server(port: int = 8000) -> FastMCP:
    server = FastMCP("counter", host="127.0.0.1", port=port, log_level="INFO")
    counts: dict[int, int] = {}

    @server.tool()
    def count(ctx: Context) -> int:
        """Add one to this session's count and return it."""
        session = id(ctx.session)
        counts[session] = counts.get(session, 0) + 1
        return counts[session]

    @server.tool()
    def read_file(path: str) -> str:
        """Read one of the server's own files."""
        return f"the server's {path}"

    @server.tool()
    def crash() -> str:
        """Stop the server's process in the middle of this call."""
        os.kill(os.getpid(), signal.SIGKILL)
        return "never sent"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    args = parser.parse_args()
    if os.environ.get(STARTS_ENV):
        with Path(os.environ[STARTS_ENV]).open("a", encoding="utf-8") as starts:
            starts.write(f"{os.getpid()}\n")
    print(HELLO, file=sys.stderr, flush=True)
    if args.http is None:
        build_server().run("stdio")
    else:
        build_server(args.http).run("streamable-http")


if __name__ == "__main__":
    main()
