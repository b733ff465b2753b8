"""One process against several sharing one run store, for the README (issue 12).

Run from the repository root:

    python bench/shared_store.py [--runs 100] [--workers 1,2,4] [--delay 0.05] [--repeats 3]

Each run goes through the real service, as the CLI and the web app run it:
`RunService.open(store, model_factory=...)`, then `service.start(RunRequest(...))`, which
takes the run's lease, builds its graph and stores every checkpoint. The model is the fake
of `bench/loop_overhead.py`: a 5-step plan, every call answered after `--delay` seconds,
so a run is 7 model calls (plan, 5 steps, answer).

For each store (a SQLite file in a temp folder; a database on a throwaway PostgreSQL
cluster on 127.0.0.1, started with `tests/postgres.py` and removed at the end) and each
number of worker processes W: W processes are spawned, each opens the store itself and
makes one warm-up run, then all wait at a barrier; once they all reach it, each starts
its share of `--runs` runs at once (`asyncio.gather`). The wall time is from the barrier
to the last worker's end. "One run alone" is a single run in a single worker, timed the
same way. Best of `--repeats` each, every batch in a fresh store.

Figures: runs per second, the wall time against one run alone (1.0x: the runs cost
nothing but their model waits), the workers' CPU time (summed), and the machine's
busy cores over the batch (from /proc/stat: the PostgreSQL server's work shows there).

Prints a Markdown table, then one line of JSON with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH, BENCH.parent / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from loop_overhead import TASK, FakeChatModel, check  # noqa: E402
from postgres import PostgresServer, server_programs  # noqa: E402

from agentic_loop import LoopOptions  # noqa: E402
from agentic_loop.runs.service import RunRequest, RunService  # noqa: E402

FAKE = LoopOptions(model="fake")


async def start_runs(service: RunService, count: int) -> None:
    async def one() -> None:
        request = RunRequest(task=TASK, options=FAKE, thread_id=f"bench-{uuid.uuid4().hex}")
        check((await service.start(request)).result)

    await asyncio.gather(*(one() for _ in range(count)))


def worker(location: str, count: int, delay: float, barrier: Any, results: Any) -> None:
    """A worker process: open the store, warm up, wait for the others, run `count` runs."""

    async def work() -> None:
        model = FakeChatModel(delay=delay)
        async with RunService.open(location, model_factory=lambda spec, opts: model) as service:
            await start_runs(service, 1)  # warm-up: imports, caches, the lease table
            await asyncio.to_thread(barrier.wait)
            cpu = time.process_time()
            await start_runs(service, count)
            results.put(time.process_time() - cpu)

    asyncio.run(work())


def busy_jiffies() -> tuple[int, int]:
    """CPU time of the whole machine since boot, (busy, total), in clock ticks."""
    with open("/proc/stat") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def batch(location: str, runs: int, workers: int, delay: float) -> dict[str, float]:
    """One batch: `runs` runs split among `workers` spawned processes, started together."""
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(workers + 1), spawn.Queue()
    shares = [runs // workers + (i < runs % workers) for i in range(workers)]
    procs = [
        spawn.Process(target=worker, args=(location, share, delay, barrier, results))
        for share in shares
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)
    started, jiffies = time.perf_counter(), busy_jiffies()
    cpu = [results.get(timeout=300) for _ in procs]
    wall = time.perf_counter() - started
    busy, total = (after - before for after, before in zip(busy_jiffies(), jiffies, strict=True))
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise SystemExit(f"a worker failed (exit code {proc.exitcode})")
    cores = os.cpu_count() or 1
    return {"wall_s": wall, "worker_cpu_s": sum(cpu), "busy_cores": cores * busy / total}


def best(
    make_store: Callable[[], str], runs: int, workers: int, delay: float, repeats: int
) -> dict[str, float]:
    """The batch of least wall time of `repeats`, each in a fresh store."""
    tries = [batch(make_store(), runs, workers, delay) for _ in range(repeats)]
    return min(tries, key=lambda t: t["wall_s"])


def create(location: str) -> str:
    """Make the store's tables before the workers open it."""

    async def touch() -> None:
        async with RunService.open(location):
            pass

    asyncio.run(touch())
    return location


def stores() -> Iterator[tuple[str, Callable[[], str]]]:
    """(name, make_store) for SQLite, then for PostgreSQL on a throwaway cluster."""
    with tempfile.TemporaryDirectory(prefix="agentic-bench-") as folder:
        yield "SQLite", lambda: create(str(Path(folder) / f"{uuid.uuid4().hex}.sqlite"))
    programs = server_programs()
    if programs is None:
        print("PostgreSQL is not installed: no PostgreSQL rows", file=sys.stderr)
        return
    server = PostgresServer(programs).start()
    try:
        yield "PostgreSQL", lambda: create(server.database())
    finally:
        server.stop()


def report(rows: list[dict[str, Any]], args: argparse.Namespace, load: tuple[float, ...]) -> None:
    print(
        f"\n{args.runs} concurrent 5-step runs through RunService.start; model replies after "
        f"{args.delay:g} s; best of {args.repeats}; Python {platform.python_version()}, "
        f"langgraph {version('langgraph')}, {os.cpu_count()} cores, "
        f"load average at the start {load[0]:.2f} / {load[1]:.2f}\n"
    )
    print(
        "| store | processes | one run alone | all runs | vs one run | runs/s "
        "| workers' CPU | busy cores |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['store']} | {row['workers']} | {row['alone_s'] * 1000:.0f} ms "
            f"| {row['wall_s']:.2f} s | {row['ratio']:.1f}x | {row['runs_per_s']:.1f} "
            f"| {row['worker_cpu_s']:.1f} s | {row['busy_cores']:.2f} |"
        )
    print()
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    figures = {"runs": args.runs, "delay_s": args.delay, "load_at_start": load, "rows": rows}
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    with closing(stores()) as each_store:
        for store, make_store in each_store:
            alone = best(make_store, 1, 1, args.delay, args.repeats)["wall_s"]
            for workers in (int(n) for n in args.workers.split(",")):
                row = best(make_store, args.runs, workers, args.delay, args.repeats)
                row |= {"store": store, "workers": workers, "alone_s": alone}
                row |= {"ratio": row["wall_s"] / alone, "runs_per_s": args.runs / row["wall_s"]}
                rows.append(row)
                print(row, file=sys.stderr)
    report(rows, args, load)


if __name__ == "__main__":
    main()
