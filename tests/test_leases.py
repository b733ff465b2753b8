"""One runner per run, with real processes on SQLite and on PostgreSQL: of two processes
racing for a run's lease exactly one wins and the other is told who holds it; a normal end
frees it at once; a SIGKILLed holder's lease is taken over at once on its machine and
after it expires from elsewhere; a holder whose lease was taken stops its work."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agentic_loop.runs import leases
from agentic_loop.runs.leases import (
    LEASE_SECONDS,
    RENEW_SECONDS,
    LeaseLost,
    RunBusy,
    current_holder,
    hold_run,
)
from agentic_loop.runs.store import LEASE_TABLE, StoreError, open_store

HOLDER = """
import asyncio, sys
from agentic_loop.runs import leases
from agentic_loop.runs.leases import LeaseLost, RunBusy, hold_run
from agentic_loop.runs.store import open_store

location, seconds, machine = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if machine != "this":  # a holder on another machine: its pid means nothing here
    leases._machine = lambda: machine

async def hold(saver, thread, told, release):
    try:
        async with hold_run(saver, thread, lease_seconds=seconds) as me:
            told.set_result(f"won {me.pid}")
            await release.wait()
    except RunBusy as exc:
        told.set_result(f"busy {exc}")
    except LeaseLost as exc:
        print(f"lost {exc}", flush=True)

async def main():
    loop = asyncio.get_running_loop()
    async with open_store(location) as saver:
        held = {}
        print("ready", flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, thread = line.split()
            if command == "take":
                told, release = loop.create_future(), asyncio.Event()
                held[thread] = (asyncio.create_task(hold(saver, thread, told, release)), release)
                print(await told, flush=True)
            else:
                task, release = held.pop(thread)
                release.set()
                await task
                print("freed", flush=True)

asyncio.run(main())
"""


class Holder:
    """A process of its own that takes and frees leases on the store when told."""

    def __init__(self, location: str, *, seconds: float = LEASE_SECONDS, machine="this"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, location, str(seconds), machine],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.said() == "ready"

    def tell(self, command: str, thread: str, *, flush: bool = True) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command} {thread}\n")
        if flush:
            self.proc.stdin.flush()

    def flush(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.flush()

    def said(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def take(self, thread: str) -> str:
        self.tell("take", thread)
        return self.said()

    def free(self, thread: str) -> None:
        self.tell("free", thread)
        assert self.said() == "freed"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store, made: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        where = str(tmp_path / "runs.sqlite")
    else:
        where = request.getfixturevalue("postgres_url")

    async def make() -> None:
        async with open_store(where):
            pass

    asyncio.run(make())
    return where


@pytest.fixture
def holders(location: str) -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for holder in made:
        holder.close()


BUSY = re.compile(
    r"busy run '(?P<thread>[^']+)' is being run by pid (?P<pid>\d+) on (?P<host>\S+) since "
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; wait for it to end, or stop that process"
)


def test_of_two_processes_racing_for_a_run_exactly_one_wins(
    location: str, holders: list[Holder]
) -> None:
    """Twenty rounds, each a new run both ask for at once; the winner frees it, and then
    the other may take it at once."""
    holders += [Holder(location), Holder(location)]
    wins = [0, 0]
    for round in range(20):
        thread = f"run-{round}"
        for holder in holders:  # written to both before either is flushed
            holder.tell("take", thread, flush=False)
        for holder in holders:
            holder.flush()
        said = [holder.said() for holder in holders]
        won = [i for i, line in enumerate(said) if line.startswith("won ")]
        assert len(won) == 1, said
        winner, loser = holders[won[0]], holders[1 - won[0]]
        busy = BUSY.fullmatch(said[1 - won[0]])
        assert busy, said
        assert busy["thread"] == thread
        assert int(busy["pid"]) == winner.proc.pid
        assert busy["host"] == socket.gethostname()
        wins[won[0]] += 1
        winner.free(thread)
        assert loser.take(thread) == f"won {loser.proc.pid}"  # freed at once
        loser.free(thread)
    assert sum(wins) == 20


def wait_until_dead(proc: subprocess.Popen[str]) -> None:
    """Until the killed process is a zombie (killed, not yet waited for)."""
    deadline = time.monotonic() + 10
    while (stat := leases._stat(proc.pid)) is not None and stat[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("reaped", [False, True], ids=["zombie", "reaped"])
def test_a_sigkilled_holder_on_this_machine_is_taken_over_at_once(
    location: str, holders: list[Holder], reaped: bool
) -> None:
    holders += [Holder(location), Holder(location)]
    killed, next_one = holders
    assert killed.take("t").startswith("won ")
    assert BUSY.fullmatch(next_one.take("t"))
    killed.proc.send_signal(signal.SIGKILL)
    wait_until_dead(killed.proc)
    if reaped:
        killed.proc.wait(timeout=10)
    started = time.monotonic()
    assert next_one.take("t") == f"won {next_one.proc.pid}"
    assert time.monotonic() - started < 2  # not after the lease's 15 s


def test_a_sigkilled_holder_on_this_machine_holds_nobody_for_readers(
    location: str, holders: list[Holder]
) -> None:
    holders.append(Holder(location))
    [killed] = holders
    assert killed.take("t").startswith("won ")

    async def who() -> int | None:
        async with open_store(location, read_only=True) as reader:
            holder = await current_holder(reader, "t")
            return holder.pid if holder else None

    assert asyncio.run(who()) == killed.proc.pid
    killed.proc.send_signal(signal.SIGKILL)
    wait_until_dead(killed.proc)
    assert asyncio.run(who()) is None  # not after the lease's 15 s


def test_a_sigkilled_holder_elsewhere_expires_after_its_lease(
    location: str, holders: list[Holder]
) -> None:
    """A holder whose pid means nothing here (another machine's) frees its run when its
    lease runs out, `seconds` after its last renewal."""
    seconds = 3.0
    holders += [Holder(location, seconds=seconds, machine="elsewhere"), Holder(location)]
    killed, next_one = holders
    assert killed.take("t").startswith("won ")
    time.sleep(seconds)  # renewed meanwhile: still held
    assert BUSY.fullmatch(next_one.take("t"))
    killed.proc.kill()
    killed.proc.wait(timeout=10)
    killed_at = time.monotonic()
    assert BUSY.fullmatch(next_one.take("t"))  # its pid is no sign of its death here
    while (said := next_one.take("t")).startswith("busy"):
        assert time.monotonic() - killed_at < seconds + 2, said
        time.sleep(0.1)
    assert said == f"won {next_one.proc.pid}"


def test_a_holder_whose_lease_was_taken_stops_its_work(
    location: str, holders: list[Holder]
) -> None:
    """Suspended past its lease (SIGSTOP), a holder finds when it carries on that another
    took the run: its held work is cancelled and it says so."""
    seconds = 1.5
    holders += [Holder(location, seconds=seconds, machine="elsewhere"), Holder(location)]
    suspended, next_one = holders
    assert suspended.take("t").startswith("won ")
    suspended.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(seconds + 0.5)
        assert next_one.take("t") == f"won {next_one.proc.pid}"
    finally:
        suspended.proc.send_signal(signal.SIGCONT)
    lost = suspended.said()
    assert lost == (
        "lost the lease on run 't' ran out while this process ran it and pid "
        f"{next_one.proc.pid} on {socket.gethostname()} since "
        f"{lost.split(' since ')[1].split(';')[0]}; this process stopped running it"
    )


# --- in one process -------------------------------------------------------------------------


@pytest.fixture
async def saver(tmp_path: Path):
    async with open_store(tmp_path / "runs.sqlite") as opened:
        yield opened


async def test_a_second_hold_in_the_same_process_is_refused(saver) -> None:
    async with hold_run(saver, "t") as me:
        with pytest.raises(RunBusy) as caught:
            async with hold_run(saver, "t"):
                pass
        assert caught.value.holder.pid == os.getpid() == me.pid
        assert isinstance(caught.value, StoreError)  # one line and exit 2 in the CLI
        holder = await current_holder(saver, "t")
        assert holder is not None and holder.token == me.token
    assert await current_holder(saver, "t") is None
    async with hold_run(saver, "t"):  # freed at once
        pass


async def test_the_lease_is_freed_when_the_work_fails_or_is_cancelled(saver) -> None:
    with pytest.raises(ValueError):
        async with hold_run(saver, "t"):
            raise ValueError("the work failed")
    assert await current_holder(saver, "t") is None

    started = asyncio.Event()

    async def work() -> None:
        async with hold_run(saver, "t"):
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(work())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await current_holder(saver, "t") is None


async def test_a_lease_taken_from_under_its_holder_cancels_the_work(saver, tmp_path) -> None:
    seconds = 0.6
    reached_the_end = False
    with pytest.raises(LeaseLost, match="the lease on run 't' ran out while this process"):
        async with hold_run(saver, "t", lease_seconds=seconds):
            with sqlite3.connect(tmp_path / "runs.sqlite") as conn:  # as a taker would
                conn.execute(f"UPDATE {LEASE_TABLE} SET holder = 'someone else'")
            conn.close()
            await asyncio.sleep(10 * seconds)
            reached_the_end = True
    assert not reached_the_end
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # no cancellation left behind


async def test_a_read_only_store_has_no_holder(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    async with open_store(db):
        pass
    async with open_store(db, read_only=True) as reader:
        assert await current_holder(reader, "t") is None  # no lease table at all


def test_the_lease_is_renewed_three_times_in_its_length() -> None:
    assert RENEW_SECONDS * 3 == LEASE_SECONDS <= 30


async def test_an_in_memory_saver_is_held_by_its_process_alone() -> None:
    saver = InMemorySaver()
    async with hold_run(saver, "t") as me:
        assert me.pid == os.getpid()
        assert await current_holder(saver, "t") is None
