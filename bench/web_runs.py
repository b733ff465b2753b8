"""How many runs the web app can run at once, for the README.

Run from the repository root:

    python bench/web_runs.py [--runs 1,10,50,100,200] [--delay 0.05]

Starts the web app in a process of its own, as `bench/web_watchers.py` does (uvicorn on
127.0.0.1, a SQLite store in a temp folder, the fake model of `bench/loop_overhead.py`:
a 5-step plan, every call answered after `--delay` seconds). For each number N, N runs
are started at once through the start action (POST /runs: each answers once its run has
passed its checks and is under way in the background), then the runs list is polled until
every one is completed.

Figures: how long the N starts took (p50 and p95 of one POST); the wall time from the
first POST until all N runs were completed, against one run alone (the slowdown: 1.0x
would mean the runs cost nothing but their model calls); runs finished per second; the
server's CPU time. A run alone is 7 model calls: the plan, 5 steps, the answer.

Prints a Markdown table, then one line of JSON with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import httpx  # noqa: E402
from loop_overhead import STEPS  # noqa: E402
from web_watchers import HEADERS, cpu_seconds, server, start_run  # noqa: E402


async def one_size(address: str, pid: int, count: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(
        base_url=address, headers=HEADERS, timeout=300, limits=limits
    ) as client:
        before = {row["thread_id"] for row in (await client.get("/api/runs")).json()}
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()

        async def timed_start() -> float:
            begun = time.perf_counter()
            await start_run(client, review=False)
            return time.perf_counter() - begun

        post_s = sorted(await asyncio.gather(*(timed_start() for _ in range(count))))
        while True:
            listed = (await client.get("/api/runs")).json()
            rows = [row for row in listed if row["thread_id"] not in before]
            if len(rows) == count and all(row["status"] != "running" for row in rows):
                break
            await asyncio.sleep(0.05)
        wall_s = time.perf_counter() - started
        cpu_s = cpu_seconds(pid) - cpu_before
    statuses = sorted({r["status"] for r in rows})
    if statuses != ["completed"] or any(r["steps_done"] != STEPS for r in rows):
        raise SystemExit(f"not every run completed its {STEPS} steps: {statuses}")
    return {
        "runs": count,
        "post_p50_s": statistics.median(post_s),
        "post_p95_s": post_s[int(0.95 * (len(post_s) - 1))],
        "wall_s": wall_s,
        "runs_per_s": count / wall_s,
        "server_cpu_s": cpu_s,
    }


def report(rows: list[dict[str, Any]], delay: float) -> None:
    alone = rows[0]["wall_s"] if rows and rows[0]["runs"] == 1 else None
    print(
        f"\nN {STEPS}-step runs started at once from the start action; model replies after "
        f"{delay:g} s; SQLite store; Python {platform.python_version()}, "
        f"uvicorn {version('uvicorn')}, {os.cpu_count()} cores\n"
    )
    print("| runs at once | one start, p50 / p95 | all done | vs one run | runs/s | server CPU |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        slowdown = f"{row['wall_s'] / alone:.1f}x" if alone else ""
        print(
            f"| {row['runs']} | {1000 * row['post_p50_s']:.0f} / "
            f"{1000 * row['post_p95_s']:.0f} ms | {row['wall_s']:.2f} s | {slowdown} "
            f"| {row['runs_per_s']:.1f} | {row['server_cpu_s']:.1f} s |"
        )
    print()
    print(json.dumps({"delay_s": delay, "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="1,10,50,100,200")
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    rows = []
    with server(args.delay) as (address, pid):
        for count in (int(n) for n in args.runs.split(",")):
            rows.append(asyncio.run(one_size(address, pid, count)))
            print(rows[-1], file=sys.stderr)
    report(rows, args.delay)


if __name__ == "__main__":
    main()
