"""What an attack trial found (issue 20), through real HTTP to the web app, the CLI and
real Graphviz: the token's redirect stays on this site, a short CSRF value is refused,
control characters in a run's text never break its picture, and thread ids are checked
when a run is made while runs stored under odd ids stay readable."""

from __future__ import annotations

import asyncio
import html
import re
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
import pytest
from conftest import ScriptedChatModel, plan_text
from langgraph.checkpoint.memory import InMemorySaver
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.faces.cli import app as cli_app
from agentic_loop.faces.drawing import render, run_mermaid, run_picture, run_text
from agentic_loop.faces.web import create_app
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.service import BadSetup, RunRequest, RunService
from agentic_loop.runs.store import StoredRun, load_run, open_store
from agentic_loop.runs.streaming import check_thread_id, with_thread

BASE = "http://127.0.0.1:8765"
TOKEN = "s3cret-token"
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""What a terminal or an XML parser acts on rather than shows (newline and tab aside)."""

runner = CliRunner()


def idle_model() -> ScriptedChatModel:
    """A model with nothing scripted, for apps whose tests start no run."""
    model = ScriptedChatModel(script=[])
    model.gate.set()
    return model


def app_over(db: Path, **kwargs: Any) -> Any:
    model = idle_model()
    return create_app(db, model_factory=lambda spec, options: model, **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


async def store_run(db: Path, thread_id: str, task: str, steps: tuple[str, ...]) -> None:
    """A finished run stored under `thread_id` by the graph itself, below the service and
    its checks, as an older version of the package could have stored it."""
    model = ScriptedChatModel(script=[plan_text(*steps), *(f"did {step}" for step in steps)])
    model.gate.set()
    async with open_store(db) as saver:
        graph = create_agentic_loop(model, checkpointer=saver)
        await graph.ainvoke({"task": task}, with_thread(None, thread_id))


async def load(db: Path, thread_id: str) -> StoredRun:
    async with open_store(db) as saver:
        stored = await load_run(saver, thread_id)
    assert stored is not None
    return stored


def stored_threads(db: Path) -> list[str]:
    async def read() -> list[str]:
        async with RunService.open(db, read_only=True) as service:
            return [run.thread_id for run in await service.runs()]

    return asyncio.run(read()) if db.exists() else []


# --- 1. the token's redirect stays on this site -----------------------------------------


@pytest.fixture
def guarded(db: Path):
    with TestClient(app_over(db, token=TOKEN), base_url=BASE) as client:
        yield client


HOSTILE_PATHS = [
    "//evil.example/",
    "/%5Cevil.example/",
    "/%5cevil.example/",
    "/\\evil.example/",
    "///evil.example/",
    "/%2F%2Fevil.example/",
    "/%2f/evil.example/",
    "/\\/\\evil.example/",
    "/%5C%2F%5Cevil.example/",
]


def leads_to(location: str) -> str:
    """The host a browser goes to for `location`: it reads `\\` as `/`."""
    return urlsplit(urljoin(BASE + "/", location.replace("\\", "/"))).netloc


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_the_token_redirect_of_a_hostile_path_stays_on_this_site(guarded, path: str) -> None:
    response = guarded.get(f"{BASE}{path}?token={TOKEN}&status=completed", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == "/evil.example/?status=completed"
    assert leads_to(location) == "127.0.0.1:8765"
    assert "agentic_loop_token=" in response.headers["set-cookie"]


@pytest.mark.parametrize("path", HOSTILE_PATHS[:4])
def test_a_wrong_token_in_the_address_beside_a_good_cookie_redirects_on_this_site(
    guarded, path: str
) -> None:
    assert guarded.get(f"/?token={TOKEN}").status_code == 200  # the cookie now
    response = guarded.get(f"{BASE}{path}?token=wrong", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/evil.example/"
    assert leads_to(response.headers["location"]) == "127.0.0.1:8765"


def test_the_token_redirect_keeps_the_path_as_it_came_and_the_query_but_the_token(
    guarded,
) -> None:
    response = guarded.get(
        f"/runs/..%2F..%2Fetc%2Fpasswd?v=1&token={TOKEN}&status=a%20b", follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/..%2F..%2Fetc%2Fpasswd?v=1&status=a+b"
    plain = guarded.get(f"/?token={TOKEN}", follow_redirects=False)
    assert plain.headers["location"] == "/"


# --- 2. a CSRF value as short as none is none --------------------------------------------


@pytest.mark.parametrize("value", ["", "a", "x" * 16, "x" * 31])
def test_a_csrf_value_shorter_than_the_apps_own_is_refused(db: Path, value: str) -> None:
    with TestClient(app_over(db), base_url=BASE) as client:
        client.cookies.set("agentic_loop_csrf", value)
        response = client.post(
            "/runs",
            data={"csrf": value, "task": "x"},
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert "reload the page" in response.json()["error"]
        page = client.get("/new")  # a page gives the browser a value of full length
        minted = page.cookies["agentic_loop_csrf"]
        assert len(minted) >= 32 and minted != value
        assert f'value="{minted}"' in page.text
    assert stored_threads(db) == []


# --- 3. control characters in a run's text -----------------------------------------------

ODD_TASK = "Odd \x1b]0;pwned\x07 task \x1b[31mred\x00nul\x7fdel\x9bcsi\x85nel\x1cfs end"
ODD_STEPS = ("Say \x1b[2Jhi\x08", "Then\x7f \x9d\x01 stop")


@pytest.fixture
def odd_text_db(db: Path) -> Path:
    asyncio.run(store_run(db, "ctl", ODD_TASK, ODD_STEPS))
    return db


def test_a_run_with_control_characters_draws_them_as_escapes_through_dot(odd_text_db) -> None:
    stored = asyncio.run(load(odd_text_db, "ctl"))
    picture = run_picture(stored)
    assert not CONTROLS.search(picture.source)
    svg = render(picture, "svg").decode()
    assert not CONTROLS.search(svg)
    assert "\\x1b]0;pwned\\x07" in svg and "\\x1b[31mred\\x00nul\\x7fdel\\x9bcsi" in svg
    assert "\\x1b[2Jhi\\x08" in svg and "Then\\x7f \\x9d\\x01 stop" in svg
    for text in (run_mermaid(stored), run_text(stored)):
        assert not CONTROLS.search(text)
        assert "\\x1b[2Jhi\\x08" in text
    assert "\\x1b]0;pwned\\x07" in run_text(stored)
    assert 'title: "Odd \\\\x1b]0;pwned\\\\x07' in run_mermaid(stored)  # as JSON


def test_the_cli_draws_such_a_run_as_svg(odd_text_db, tmp_path: Path) -> None:
    out = tmp_path / "run.svg"
    done = runner.invoke(
        cli_app,
        ["graph", "--thread", "ctl", "--format", "svg", "-o", str(out), "--db", str(odd_text_db)],
    )
    assert done.exit_code == 0, done.output
    assert "\\x1b[31mred" in out.read_text()


def test_the_web_picture_of_such_a_run_is_served(odd_text_db) -> None:
    with TestClient(app_over(odd_text_db), base_url=BASE) as client:
        picture = client.get("/runs/ctl/picture.svg")
        assert picture.status_code == 200, picture.text
        assert picture.headers["content-type"] == "image/svg+xml"
        assert "\\x1b]0;pwned\\x07" in picture.text
        assert client.get("/runs/ctl").status_code == 200


# --- 4. thread ids -----------------------------------------------------------------------

GOOD_IDS = ["run-1a2b3c4d", "agentic-00ff00ff", "mixed", "a.b:c_d-e", "_x", "9", "x" * 128]
BAD_IDS = [
    "../../etc/passwd",
    "a/b",
    "a\\b",
    "",
    ".hidden",
    "..",
    "-flag",
    "a b",
    "run?x",
    "run#x",
    "run%2Fx",
    "run\x1b[31m",
    "run\n",
    "rún",
    "x" * 129,
]


@pytest.mark.parametrize("thread_id", GOOD_IDS)
def test_a_good_thread_id_passes(thread_id: str) -> None:
    assert check_thread_id(thread_id) == thread_id


@pytest.mark.parametrize("thread_id", BAD_IDS)
def test_a_bad_thread_id_is_a_one_line_value_error_saying_what_is_allowed(thread_id: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_thread_id(thread_id)
    message = str(refused.value)
    assert "\n" not in message and len(message) < 300
    assert "letters, digits" in message and "128" in message


def test_the_cli_refuses_a_new_run_on_a_bad_thread_id_before_the_store_opens(db: Path) -> None:
    done = runner.invoke(
        cli_app,
        ["run", "Task", "--thread", "../../etc/passwd", "--model", "local", "--db", str(db)],
    )
    assert done.exit_code == 2
    assert "thread id '../../etc/passwd'" in done.output
    assert "letters, digits" in done.output
    assert "Traceback" not in done.output
    assert not db.exists()


def test_python_refuses_a_new_run_on_a_bad_thread_id_and_calls_no_model() -> None:
    model = idle_model()
    saver = InMemorySaver()
    with pytest.raises(BadSetup, match="thread id '../../etc/passwd'.*letters, digits"):
        asyncio.run(
            run_agentic_loop("Task", model=model, checkpointer=saver, thread_id="../../etc/passwd")
        )
    with pytest.raises(BadSetup, match="thread id 'a/b-[0-9a-f]{8}'"):
        asyncio.run(run_agentic_loop("Task", model=model, checkpointer=saver, session_id="a/b"))
    assert model.prompts == []
    assert list(saver.list(None)) == []


def test_the_service_refuses_a_new_run_on_a_bad_thread_id(db: Path) -> None:
    async def start() -> None:
        async with RunService.open(db) as service:
            await service.start(RunRequest(task="Task", thread_id="a/b"))

    with pytest.raises(BadSetup, match="thread id 'a/b'"):
        asyncio.run(start())
    assert stored_threads(db) == []


ODD_IDS = ["../../etc/passwd", "notes/2024 plan?#x", "a/answer/x", "/etc"]
"""Ids an older version stored (through Starlette's test client, which decodes a path twice:
an id with a `%` in it goes to the served app below)."""


@pytest.mark.parametrize("thread_id", ODD_IDS)
def test_a_run_stored_under_an_odd_id_shows_on_its_page_and_api(db: Path, thread_id: str) -> None:
    asyncio.run(store_run(db, thread_id, "Old task", ("Look", "Write")))
    quoted = quote(thread_id, safe="")
    with TestClient(app_over(db), base_url=BASE) as client:
        assert [row["thread_id"] for row in client.get("/api/runs").json()] == [thread_id]
        runs = client.get("/")
        assert f'href="/runs/{quoted}"' in runs.text
        page = client.get(f"/runs/{quoted}")
        assert page.status_code == 200, page.text
        assert "Old task" in page.text and "Look" in page.text
        assert f'src="/runs/{quoted}/picture.svg?v=' in page.text
        assert f'action="/runs/{quoted}/resume"' in page.text
        view = client.get(f"/api/runs/{quoted}")
        assert view.status_code == 200
        assert view.json()["thread_id"] == thread_id
        assert view.json()["status"] == "completed"
        picture = client.get(f"/runs/{quoted}/picture.svg")
        assert picture.status_code == 200 and "Look" in picture.text
        with client.websocket_connect(f"ws://127.0.0.1:8765/runs/{quoted}/ws") as socket:
            message = socket.receive_json()
        assert message["type"] == "view" and message["view"]["thread_id"] == thread_id
        csrf = client.cookies["agentic_loop_csrf"]
        again = client.post(
            f"/runs/{quoted}/resume",
            data={"csrf": csrf},
            headers={"Accept": "application/json"},
        )
        assert again.status_code == 409  # reached the run: it has finished
        assert repr(thread_id) in again.json()["error"]
        assert client.get(f"/runs/{quoted}/answer").status_code == 405


# --- the same through `agentic-loop serve`, over real HTTP -------------------------------

SERVED_IDS = ["../../etc/passwd", "100%41 sure", "q?x#y"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`agentic-loop serve --token` over a store holding runs under odd ids; its address.
    No test here starts a run, so no model is needed."""
    db = tmp_path / "runs.sqlite"
    for thread_id in SERVED_IDS:
        asyncio.run(store_run(db, thread_id, f"Task of {thread_id}", ("Look", "Write")))
    process = subprocess.Popen(
        [sys.executable, "-m", "agentic_loop", "serve", "--port", "0", "--db", str(db)]
        + ["--token", TOKEN],
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
    assert " at http://127.0.0.1:" in line, line
    try:
        yield line.rsplit(" at ", 1)[1].split("?")[0].strip().rstrip("/"), db
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, errors = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        assert "Traceback" not in errors, errors


def raw_get(address: str, target: str) -> tuple[int, dict[str, str]]:
    """GET `target` exactly as written, bytes no client tidies; the status and headers."""
    host, port = urlsplit(address).hostname, urlsplit(address).port
    assert host is not None and port is not None
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {key.lower(): value for key, value in headers.items()}


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "/%5Cevil.example/",
        "///evil.example/",
        "/%2F%2Fevil.example/",
        "/\\\\evil.example/",
    ],
)
def test_the_served_token_redirect_stays_on_this_site(served, target: str) -> None:
    address, _ = served
    status, headers = raw_get(address, f"{target}?token={TOKEN}&status=completed")
    assert status == 303
    assert headers["location"] == "/evil.example/?status=completed"
    assert leads_to(headers["location"]) == "127.0.0.1:8765"


def test_the_served_app_shows_runs_stored_under_odd_ids(served) -> None:
    address, _ = served
    with httpx.Client(base_url=address, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        listed = client.get("/api/runs").json()
        assert sorted(row["thread_id"] for row in listed) == sorted(SERVED_IDS)
        links = re.findall(r'href="(/runs/[^"]+)"', client.get("/").text)
        assert sorted(links) == sorted(f"/runs/{quote(id_, safe='')}" for id_ in SERVED_IDS)
        for thread_id in SERVED_IDS:
            quoted = quote(thread_id, safe="")
            page = client.get(f"/runs/{quoted}")
            assert page.status_code == 200, (thread_id, page.text)
            assert f"Task of {thread_id}" in html.unescape(page.text)
            view = client.get(f"/api/runs/{quoted}")
            assert view.status_code == 200 and view.json()["thread_id"] == thread_id
            picture = client.get(f"/runs/{quoted}/picture.svg")
            assert picture.status_code == 200 and "Look" in picture.text
