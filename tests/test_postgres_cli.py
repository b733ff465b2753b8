"""The CLI over a PostgreSQL run store, in processes of its own against the Ollama test
server: a run SIGKILLed mid-way resumes from another process, and every command reads it;
a database that cannot be used is one line; and of two `resume`s of one run started
together, on SQLite and on PostgreSQL, one runs it and the other is refused, so every
remaining step reaches the model once."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from conftest import run_cli, spawn_cli
from ollama_server import OllamaTestServer, Reply, step_of
from postgres import PASSWORD, PostgresServer
from test_parallel_kill import HeldFirstCalls, kill, typed_plan, wait_for

from agentic_loop.runs.store import describe_location

pytestmark = pytest.mark.integration

PLAN = typed_plan(("Pick a beach", []), ("Book a room", [1]), ("Pack a bag", [2]))
ANSWER = "Go to the beach by car."


def answering(held: list[HeldFirstCalls], plan: str = PLAN):
    """Replies to the plan (`plan`), each step and the answer; the step requests that
    `held[0]` picks out wait for its release."""

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(plan)
        step = step_of(request)
        if step is None:
            return Reply(ANSWER)
        return Reply(f"Did step {step}.", hold=held[0].hold(request))

    return reply


def killed_at_step_2(location: str, thread: str, server: OllamaTestServer, held) -> int:
    """Run the three steps' task in a CLI process and SIGKILL it while step 2 waits for the
    model (step 1 stored); the number of model requests made until then."""
    proc = spawn_cli(
        "run", "Plan a beach day", "--db", location, "--thread", thread, host=server.url
    )
    try:
        wait_for(held[0].all_arrived, proc, "step 2 reached the model")
    finally:
        kill(proc, held[0])
    return len(server.chat_requests())


def steps_asked(requests: list[dict[str, Any]]) -> Counter[int | None]:
    return Counter(step_of(r) for r in requests if not r.get("format"))


def test_a_run_killed_mid_way_resumes_from_another_process_and_every_command_reads_it(
    postgres_url: str,
) -> None:
    held = [HeldFirstCalls((2,), step_of)]
    thread = "beach"
    with OllamaTestServer(answering(held)) as server:
        before = killed_at_step_2(postgres_url, thread, server, held)
        shown = run_cli("show", thread, "--db", postgres_url, host=server.url)
        assert shown.returncode == 0, shown.stderr
        assert "interrupted" in shown.stdout and "Did step 1." in shown.stdout

        done = run_cli("resume", thread, "--db", postgres_url, "--json", host=server.url)
        assert done.returncode == 0, done.stderr
        requests = server.chat_requests()

        listed = run_cli("runs", host=server.url, env={"AGENTIC_LOOP_DB": postgres_url})
        history = run_cli("show", thread, "--history", "--db", postgres_url, host=server.url)
        drawn = run_cli("graph", "--thread", thread, "--db", postgres_url, host=server.url)

    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["answer"] == ANSWER
    assert [(s["step_num"], s["result"]) for s in result["steps"]] == [
        (n, f"Did step {n}.") for n in (1, 2, 3)
    ]
    assert steps_asked(requests[before:]) == {2: 1, 3: 1, None: 1}  # step 1 not asked again
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"│ {thread}\s+│ Plan a beach day\s+│ completed\s+│ 3/3", listed.stdout)
    assert history.returncode == 0, history.stderr
    assert f"agentic-loop resume {thread} --from-step K" in history.stdout
    assert history.stdout.count("●") >= 8  # a checkpoint a line, on the current branch
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.startswith("graph TD") or "flowchart" in drawn.stdout


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert PASSWORD not in done.stderr
    return lines[0]


def test_a_database_that_cannot_be_used_is_one_line(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{closed_port}/runs"
    with OllamaTestServer(answering([HeldFirstCalls((), step_of)])) as server:
        for command in [("runs",), ("show", "x"), ("resume", "x"), ("run", "Plan a picnic")]:
            line = one_error_line(run_cli(*command, "--db", unreachable, host=server.url))
            assert line.startswith(
                f"error: cannot reach the run store at {describe_location(unreachable)}"
            )
            line = one_error_line(
                run_cli(*command, "--db", postgres_server.url(password="no"), host=server.url)
            )
            assert "refused the login" in line
        line = one_error_line(run_cli("runs", "--db", "mysql://db/runs", host=server.url))
        assert line == (
            "error: mysql:// is not a run store agentic-loop can use; pass a SQLite file path "
            "or a postgresql:// URL with --db or AGENTIC_LOOP_DB"
        )
        line = one_error_line(run_cli("runs", "--db", postgres_url, host=server.url))
        shown = describe_location(postgres_url)
        assert line == (
            f"error: no run store at {shown}; `agentic-loop run` makes one, or pass --db"
        )
        assert server.chat_requests() == []
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)


BUSY = re.compile(
    r"error: run '(?P<thread>[^']+)' is being run by pid (?P<pid>\d+) on (?P<host>\S+) since "
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; wait for it to end, or stop that process"
)


def test_of_two_resumes_started_together_one_runs_and_the_other_is_refused(
    any_store: str,
) -> None:
    """A run killed at step 2, then two `resume`s at once. The one that gets the lease asks
    for step 2, which the server holds until the other has ended: that one is refused, one
    line naming the first; then steps 2 and 3 and the answer are asked for once each."""
    held = [HeldFirstCalls((2,), step_of)]
    thread = "beach"
    with OllamaTestServer(answering(held)) as server:
        before = killed_at_step_2(any_store, thread, server, held)
        held[0] = HeldFirstCalls((2,), step_of)  # hold the resumed step 2 in turn
        resumes = [
            spawn_cli("resume", thread, "--db", any_store, "--json", host=server.url)
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while all(p.poll() is None for p in resumes):
                assert time.monotonic() < deadline, "neither resume ended within 60 s"
                time.sleep(0.02)
            [refused] = [p for p in resumes if p.poll() is not None]
            [runner] = [p for p in resumes if p is not refused]
            held[0].release.set()
            out, err = runner.communicate(timeout=60)
            refused_out, refused_err = refused.communicate(timeout=10)
        finally:
            held[0].release.set()
            for proc in resumes:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)
        requests = server.chat_requests()

    assert refused.returncode == 2, refused_out + refused_err
    busy = BUSY.fullmatch(refused_err.strip())
    assert busy, refused_err
    assert (busy["thread"], int(busy["pid"]), busy["host"]) == (
        thread,
        runner.pid,
        socket.gethostname(),
    )
    assert refused_out == ""
    assert runner.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "completed"
    assert [s["result"] for s in result["steps"]] == [f"Did step {n}." for n in (1, 2, 3)]
    assert steps_asked(requests[before:]) == {2: 1, 3: 1, None: 1}


def test_a_run_that_a_live_process_runs_is_refused_to_every_other_runner(
    any_store: str,
) -> None:
    """While a CLI process runs a thread (its step 2 held at the server), `run --thread`,
    `resume` and `resume --from-step` of that thread are each refused, naming it."""
    held = [HeldFirstCalls((2,), step_of)]
    thread = "beach"
    with OllamaTestServer(answering(held)) as server:
        runner = spawn_cli(
            "run", "Plan a beach day", "--db", any_store, "--thread", thread, host=server.url
        )
        try:
            wait_for(held[0].all_arrived, runner, "step 2 reached the model")
            refusals = [
                run_cli(*command, "--db", any_store, host=server.url)
                for command in [
                    ("run", "Plan a beach day", "--thread", thread),
                    ("resume", thread),
                    ("resume", thread, "--from-step", "1"),
                ]
            ]
            held[0].release.set()
            out, err = runner.communicate(timeout=60)
        finally:
            held[0].release.set()
            if runner.poll() is None:
                runner.kill()
            runner.wait(timeout=30)
        requests = server.chat_requests()

    for refused in refusals:
        busy = BUSY.fullmatch(one_error_line(refused))
        assert busy and int(busy["pid"]) == runner.pid, refused.stderr
    assert runner.returncode == 0, err
    assert steps_asked(requests) == {1: 1, 2: 1, 3: 1, None: 1}


def test_plan_review_and_a_rerun_from_a_step_work_over_postgres(postgres_url: str) -> None:
    """A run waits for its plan review in one process, is approved from another, then runs
    again from step 2 as a new branch; the history shows both branches."""
    held = [HeldFirstCalls((), step_of)]
    thread = "reviewed"
    with OllamaTestServer(answering(held)) as server:
        waiting = run_cli(
            "run",
            "Plan a beach day",
            "--review",
            "--db",
            postgres_url,
            "--thread",
            thread,
            host=server.url,
            input="",
        )
        assert waiting.returncode == 1, waiting.stderr
        assert "the run waits for one" in waiting.stderr
        listed = run_cli("runs", "--db", postgres_url, host=server.url)
        assert "awaiting review" in listed.stdout

        approved = run_cli(
            "resume", thread, "--db", postgres_url, "--json", host=server.url, input="a\n"
        )
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["status"] == "completed"
        first = len(server.chat_requests())

        rerun = run_cli(
            "resume", thread, "--from-step", "2", "--db", postgres_url, "--json", host=server.url
        )
        assert rerun.returncode == 0, rerun.stderr
        assert steps_asked(server.chat_requests()[first:]) == {2: 1, 3: 1, None: 1}

        history = run_cli(
            "show", thread, "--history", "--json", "--db", postgres_url, host=server.url
        )
    assert history.returncode == 0, history.stderr
    points = json.loads(history.stdout)
    assert any(not point["on_current_branch"] for point in points)
    assert any(point["source"] == "update" for point in points)
