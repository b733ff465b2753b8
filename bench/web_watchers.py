"""How many browsers can watch one run in the web app, for the README.

Run from the repository root:

    python bench/web_watchers.py [--watchers 1,10,100,500] [--delay 0.2]

Starts the web app (`agentic_loop.faces.web.create_app` on uvicorn, as `agentic-loop serve`
runs it, over a SQLite store in a temp folder) in a process of its own on 127.0.0.1, with
the fake model of `bench/loop_overhead.py` (a 5-step plan; every call answers after
`--delay` seconds, and a step's reply holds the wall-clock time it was written). For each
number of watchers: a run is started with plan review on, N WebSockets connect to it (as N
browser tabs would, each after the first view it is sent), the plan is approved, and
each socket reads views until the run is completed.

Figures: the time to connect the N sockets; the delay from a step's reply being written by
the model to each socket holding a view that shows that step done (p50, p95, max over
every socket and step); how many sockets saw all 5 steps end and the answer; the server's
CPU time over the run and its peak memory (from /proc). The sockets are read by one
Python process, which also costs time, so the delays are upper bounds.

Prints a Markdown table, then one line of JSON with every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Run from a checkout without installing: make `agentic_loop` and the other benchmarks
# importable.
BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import httpx  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from loop_overhead import PLAN_REPLY, STEPS, TASK, FakeChatModel  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
STAMP = re.compile(r"written at (\d+\.\d+)")


class StampedModel(FakeChatModel):
    """The fake model, whose replies to steps say when they were written."""

    async def _agenerate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        asked = messages[-1].text
        text = PLAN_REPLY if "Break this task" in asked else f"written at {time.time():.6f}"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])


def serve(port: int, db: str, delay: float) -> None:
    """The web app on 127.0.0.1:`port` until stopped (the server process)."""
    import uvicorn

    from agentic_loop.faces.web import create_app

    app = create_app(db, token=TOKEN, model_factory=lambda spec, options: StampedModel(delay=delay))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def server(delay: float) -> Iterator[tuple[str, int]]:
    """The web app in a process of its own; yields its address and pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), f"{folder}/runs.sqlite", str(delay)]
        )
        address = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(address + "/api/runs", headers=HEADERS, timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("the web app did not start") from None
                    time.sleep(0.1)
            yield address, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def start_run(client: httpx.AsyncClient, *, review: bool) -> str:
    data = {"task": TASK, "max_steps": str(STEPS)}
    if review:
        data["review"] = "on"
    response = await client.post("/runs", data=data)
    response.raise_for_status()
    return response.json()["thread_id"]


async def wait_for(
    client: httpx.AsyncClient, thread_id: str, status: str, timeout: float = 300
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = (await client.get(f"/api/runs/{thread_id}")).json()
        if view["status"] == status:
            return view
        if time.monotonic() > deadline:
            raise SystemExit(f"run {thread_id} is {view['status']}, not {status}")
        await asyncio.sleep(0.05)


async def watch(address: str, thread_id: str, ready: asyncio.Event) -> dict[str, Any]:
    """One watcher: the delays from each step's reply to a view that shows it done."""
    from websockets.asyncio.client import connect

    url = address.replace("http", "ws") + f"/runs/{thread_id}/ws"
    delays: dict[int, float] = {}
    async with connect(url, additional_headers=HEADERS, max_size=None, open_timeout=60) as ws:
        json.loads(await ws.recv())  # the view it is sent at once
        ready.set()
        async for message in ws:
            now = time.time()
            view = json.loads(message)["view"]
            for step in view["steps"]:
                stamp = STAMP.search(step["result"] or "")
                if step["status"] == "completed" and stamp and step["number"] not in delays:
                    delays[step["number"]] = now - float(stamp[1])
            if view["status"] == "completed":
                return {"delays": delays, "answer": bool(view["answer"])}
    return {"delays": delays, "answer": False}


async def one_size(address: str, pid: int, watchers: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=address, headers=HEADERS, timeout=120) as client:
        thread_id = await start_run(client, review=True)
        (question,) = (await wait_for(client, thread_id, "awaiting review"))["questions"]
        started = time.perf_counter()
        readies = [asyncio.Event() for _ in range(watchers)]
        tasks = [asyncio.create_task(watch(address, thread_id, ready)) for ready in readies]
        await asyncio.gather(*(ready.wait() for ready in readies))
        connect_s = time.perf_counter() - started
        cpu_before = cpu_seconds(pid)
        run_started = time.perf_counter()
        answer = {"question": question["id"], "action": "approve"}
        (await client.post(f"/runs/{thread_id}/answer", data=answer)).raise_for_status()
        seen = await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
        run_s = time.perf_counter() - run_started
        cpu_s = cpu_seconds(pid) - cpu_before
    delays_ms = sorted(1000 * d for watcher in seen for d in watcher["delays"].values())
    complete = sum(len(w["delays"]) == STEPS and w["answer"] for w in seen)
    return {
        "watchers": watchers,
        "connect_s": connect_s,
        "run_s": run_s,
        "delay_p50_ms": statistics.median(delays_ms),
        "delay_p95_ms": delays_ms[int(0.95 * (len(delays_ms) - 1))],
        "delay_max_ms": delays_ms[-1],
        "saw_everything": complete,
        "server_cpu_s": cpu_s,
        "server_peak_mib": peak_memory_mib(pid),
    }


def report(rows: list[dict[str, Any]], delay: float) -> None:
    print(
        f"\nOne {STEPS}-step run watched by N WebSockets; model replies after {delay:g} s; "
        f"Python {platform.python_version()}, uvicorn {version('uvicorn')}, "
        f"{os.cpu_count()} cores\n"
    )
    print(
        "| watchers | connect all | step end -> view, p50 / p95 / max | saw every step "
        "| server CPU over the run | server peak RSS |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['watchers']} | {row['connect_s']:.2f} s "
            f"| {row['delay_p50_ms']:.1f} / {row['delay_p95_ms']:.1f} / "
            f"{row['delay_max_ms']:.1f} ms "
            f"| {row['saw_everything']}/{row['watchers']} | {row['server_cpu_s']:.2f} s "
            f"| {row['server_peak_mib']:.0f} MiB |"
        )
    print()
    print(json.dumps({"delay_s": delay, "rows": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="1,10,100,500")
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DB", "DELAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], float(args.serve[2]))
        return
    rows = []
    with server(args.delay) as (address, pid):
        for count in (int(n) for n in args.watchers.split(",")):
            rows.append(asyncio.run(one_size(address, pid, count)))
            print(rows[-1], file=sys.stderr)
    report(rows, args.delay)


if __name__ == "__main__":
    main()
