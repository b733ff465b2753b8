"""Where a run's MCP servers write their stderr: one log file per run, beside its store.

The service appends the servers' stderr there while the run goes (and again at each
resume); `show` prints the path. One rule for both, `mcp_log_path`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def mcp_log_path(store: str | Path | None, thread_id: str) -> Path:
    """The log of the MCP servers of run `thread_id` of the store at `store`: for a SQLite
    file `/x/runs.sqlite`, `/x/runs.mcp-logs/THREAD.log`; for a PostgreSQL store (its URL)
    or none, `$XDG_DATA_HOME/agentic-loop/mcp-logs/THREAD.log` (`~/.local/share/...`)."""
    if isinstance(store, Path):
        store = Path(os.path.abspath(store))
        folder = store.with_name(f"{store.stem}.mcp-logs")
    else:
        data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        folder = Path(data_home) / "agentic-loop" / "mcp-logs"
    return folder / f"{_file_name(thread_id)}.log"


def _file_name(thread_id: str) -> str:
    """The thread id as one file name: a new run's id is one already (see
    `streaming.check_thread_id`); a run stored before that rule has others replaced."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", thread_id)
    return name if name[:1].isalnum() or name[:1] == "_" else f"_{name}"
