"""`agentic-loop serve` as a process: its token, and its runs across a stop and a start.

The model is the real ChatOllama client against the Ollama-protocol test server."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of

pytestmark = pytest.mark.integration

PLAN = ["Pick a beach", "Pack a bag", "Catch the train"]
TOKEN = "serve-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}


@pytest.fixture
def held() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


@pytest.fixture
def ollama(held: threading.Event) -> Iterator[OllamaTestServer]:
    plain = plan_or_step(PLAN)

    def reply(request: dict[str, Any]) -> Reply:
        answer = plain(request)
        if step_of(request) == 2:
            answer.hold = held
        return answer

    with OllamaTestServer(reply) as server:
        yield server


def start_serve(
    db: Path, ollama: OllamaTestServer, *args: str, port: int = 0
) -> tuple[subprocess.Popen[str], str]:
    """`agentic-loop serve` over the store `db` and the Ollama test server, on `port` (0:
    a free one); the process and the address it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_loop", "serve", "--port", str(port), "--db", str(db)]
        + ["--model", "ollama:test-model", *args],
        env={**os.environ, "OLLAMA_HOST": ollama.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(30):
            process.kill()
            raise AssertionError("agentic-loop serve printed nothing")
    line = process.stdout.readline()
    assert " at http://127.0.0.1:" in line, (line, process.stderr and process.stderr.read())
    return process, line.rsplit(" at ", 1)[1].strip()


def stop(process: subprocess.Popen[str]) -> str:
    """Stop the server as a service manager would (SIGTERM); what it wrote to stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, errors = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, errors = process.communicate()
        raise
    return errors


def wait_view(address: str, thread_id: str, check: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + 30
    while True:
        view = httpx.get(f"{address}api/runs/{thread_id}", headers=BEARER).json()
        if check(view):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


def test_a_run_stopped_with_the_server_is_interrupted_after_a_restart_and_resumes(
    tmp_path: Path, ollama: OllamaTestServer, held: threading.Event
) -> None:
    db = tmp_path / "runs.sqlite"
    process, address = start_serve(db, ollama, "--token", TOKEN)
    try:
        assert address.endswith(f"/?token={TOKEN}")
        address = address.split("?")[0]
        response = httpx.post(address + "runs", data={"task": "A day out"}, headers=BEARER)
        assert response.status_code == 202
        thread_id = response.json()["thread_id"]
        view = wait_view(address, thread_id, lambda v: v["steps_done"] == 1)
        assert [step["status"] for step in view["steps"]] == ["completed", "running", "pending"]
    finally:
        errors = stop(process)
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in errors, errors

    process, address = start_serve(db, ollama, "--token", TOKEN)
    address = address.split("?")[0]
    try:
        (row,) = httpx.get(address + "api/runs", headers=BEARER).json()
        assert (row["thread_id"], row["status"], row["steps_done"]) == (thread_id, "interrupted", 1)
        held.set()
        response = httpx.post(f"{address}runs/{thread_id}/resume", headers=BEARER)
        assert response.status_code == 202
        view = wait_view(address, thread_id, lambda v: v["status"] == "completed")
    finally:
        errors = stop(process)
    assert "Traceback" not in errors, errors
    assert [step["result"] for step in view["steps"]] == [
        "Did step 1.",
        "Did step 2.",
        "Did step 3.",
    ]
    asked = [step_of(request) for request in ollama.chat_requests()]
    assert asked.count(1) == 1  # step 1 was not asked again after the restart


def test_serve_with_a_token_refuses_requests_without_it(
    tmp_path: Path, ollama: OllamaTestServer
) -> None:
    process, address = start_serve(tmp_path / "runs.sqlite", ollama, "--token", TOKEN)
    try:
        bare = address.split("?")[0]
        assert httpx.get(bare).status_code == 401
        assert httpx.get(bare + "api/runs").json()["error"].startswith("This server needs")
        with httpx.Client() as browser:
            opened = browser.get(address, follow_redirects=False)
            assert opened.status_code == 303 and opened.headers["location"] == "/"
            assert browser.get(bare).status_code == 200  # the cookie
    finally:
        stop(process)


def test_serve_says_what_is_wrong_in_one_line(tmp_path: Path, ollama: OllamaTestServer) -> None:
    (tmp_path / "folder.sqlite").mkdir()
    for args, message in [
        (["--db", str(tmp_path / "folder.sqlite")], "folder"),
        (["--token", " "], "--token is empty"),
        (["--db", str(tmp_path / "r.sqlite"), "--timeout", "0"], "--timeout must be"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "agentic_loop", "serve", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
