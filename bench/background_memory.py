"""Memory a `BackgroundRuns` registry keeps for the runs it has finished, for the README.

Run from the repository root:

    python bench/background_memory.py [--runs 10000] [--batch 100] [--keep 100]

Starts `--runs` background runs, `--batch` at a time (a batch is started, then waited
for), each a 5-step plan with the fake model of `bench/loop_overhead.py`, which answers
at once. The graph has no checkpointer, so the figures are what the registry itself
holds, not a store's. Memory is the Python heap that `tracemalloc` traces, after
`gc.collect()`, less a baseline taken once the graph has run a first batch (then
forgotten), so caches filled by a first run are not counted.

1. No cap: every finished run kept; then `forget()` of each, and what is left.
2. `keep_finished=--keep`: past that many, the runs that ended first are forgotten.

Tracing slows the runs down about four times: 2 x 10,000 runs take some 20-30 minutes.
Prints a Markdown table, then one line of JSON with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import tracemalloc
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make `agentic_loop` and the other benchmarks
# importable.
BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from loop_overhead import TASK, FakeChatModel, check  # noqa: E402

from agentic_loop import BackgroundRuns  # noqa: E402
from agentic_loop.core.graph import create_agentic_loop  # noqa: E402


def heap() -> int:
    """Bytes of Python heap in use now, after collecting garbage."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def run_batches(runs: BackgroundRuns, total: int, batch: int) -> float:
    """Run `total` runs through `runs`, `batch` at a time; the wall time, in seconds.
    No run id outlives its batch here: only the registry keeps anything."""
    started = time.perf_counter()
    for done in range(0, total, batch):
        run_ids = [await runs.start(TASK) for _ in range(min(batch, total - done))]
        for run_id in run_ids:
            check(await runs.wait(run_id))
    return time.perf_counter() - started


async def measure(total: int, batch: int, keep: int) -> dict[str, Any]:
    graph = create_agentic_loop(FakeChatModel())
    warm = BackgroundRuns(graph)
    await run_batches(warm, batch, batch)  # imports, caches, the first compile of each node
    del warm
    baseline = heap()

    figures: dict[str, Any] = {"baseline_bytes": baseline}
    uncapped = BackgroundRuns(graph)
    tracemalloc.reset_peak()
    seconds = await run_batches(uncapped, total, batch)
    figures["no_cap"] = {
        "kept_runs": len(uncapped.runs()),
        "bytes": heap() - baseline,
        "peak_bytes": tracemalloc.get_traced_memory()[1] - baseline,
        "seconds": seconds,
    }
    for record in uncapped.runs():
        uncapped.forget(record.run_id)
    figures["forgotten"] = {"kept_runs": len(uncapped.runs()), "bytes": heap() - baseline}
    del uncapped

    baseline = heap()
    capped = BackgroundRuns(graph, keep_finished=keep)
    tracemalloc.reset_peak()
    seconds = await run_batches(capped, total, batch)
    figures["capped"] = {
        "keep_finished": keep,
        "kept_runs": len(capped.runs()),
        "bytes": heap() - baseline,
        "peak_bytes": tracemalloc.get_traced_memory()[1] - baseline,
        "seconds": seconds,
    }
    return figures


def size(n_bytes: float) -> str:
    if abs(n_bytes) >= 1024 * 1024:
        return f"{n_bytes / 1024 / 1024:.1f} MiB"
    if abs(n_bytes) >= 1024:
        return f"{n_bytes / 1024:.1f} KiB"
    return f"{n_bytes:.0f} B"


def report(figures: dict[str, Any], total: int, batch: int) -> None:
    print(
        f"Python {platform.python_version()}, langgraph {version('langgraph')}, "
        f"pydantic {version('pydantic')}; {total:,} runs of a 5-step plan, {batch} at a "
        "time, fake model answering at once, no checkpointer; Python heap by tracemalloc, "
        "after gc.collect()"
    )
    print()
    print("| registry | runs kept | memory kept | per run started | per run kept |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [
        ("no cap", figures["no_cap"]),
        ("no cap, then `forget()` of each", figures["forgotten"]),
        (f"`keep_finished={figures['capped']['keep_finished']}`", figures["capped"]),
    ]
    for label, row in rows:
        per_kept = size(row["bytes"] / row["kept_runs"]) if row["kept_runs"] else "-"
        print(
            f"| {label} | {row['kept_runs']:,} | {size(row['bytes'])} | "
            f"{size(row['bytes'] / total)} | {per_kept} |"
        )
    print()
    for label, key in (("no cap", "no_cap"), ("capped", "capped")):
        row = figures[key]
        print(
            f"{label}: peak {size(row['peak_bytes'])} above the baseline while running, "
            f"{row['seconds']:.0f} s ({row['seconds'] * 1000 / total:.1f} ms a run, traced)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs per registry")
    parser.add_argument("--batch", type=int, default=100, help="runs started at once")
    parser.add_argument("--keep", type=int, default=100, help="keep_finished of the cap")
    args = parser.parse_args()
    tracemalloc.start()
    figures = asyncio.run(measure(args.runs, args.batch, args.keep))
    tracemalloc.stop()
    report(figures, args.runs, args.batch)
    figures.update(
        python=platform.python_version(),
        langgraph=version("langgraph"),
        pydantic=version("pydantic"),
        runs=args.runs,
        batch=args.batch,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
