"""The web app through Starlette's test client: every page and action, the WebSocket's
catch-up and live views, the token and cross-site rules, escaping, and bad requests.

Runs go through the real service and SQLite store, on a scripted model."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, calls, plan_text, wait_for, wait_until
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from agentic_loop import LoopOptions
from agentic_loop.core import events
from agentic_loop.faces.web import create_app
from agentic_loop.faces.web.security import is_loopback
from agentic_loop.faces.web.view import LiveRun, run_view
from agentic_loop.runs.leases import hold_run
from agentic_loop.runs.service import Hooks, RunRequest, RunService
from agentic_loop.runs.store import open_store
from agentic_loop.step_tools.loading import ToolOptions

TESTS = Path(__file__).parent
BASE = "http://127.0.0.1:8765"


def two_steps(**kwargs: Any) -> ScriptedChatModel:
    """A two-step run's model; with `hold_at`, that call waits until the test sets `gate`."""
    return ScriptedChatModel(
        script=[plan_text("Pick a beach", "Pack a bag"), "Beach: Brighton.", "Bag: towel."],
        **kwargs,
    )


def app_over(db: Path, model: ScriptedChatModel, **kwargs: Any):
    return create_app(db, model_factory=lambda spec, options: model, **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.sqlite"


@pytest.fixture
def model() -> ScriptedChatModel:
    model = two_steps()
    model.gate.set()
    return model


@pytest.fixture
def client(db: Path, model: ScriptedChatModel):
    with TestClient(app_over(db, model), base_url=BASE) as client:
        yield client


def csrf(client: TestClient) -> str:
    if "agentic_loop_csrf" not in client.cookies:
        client.get("/new")
    return client.cookies["agentic_loop_csrf"]


def post(client: TestClient, url: str, **data: str) -> Any:
    return client.post(url, data={"csrf": csrf(client), **data}, follow_redirects=False)


def start(client: TestClient, task: str = "Plan a day at the sea", **data: str) -> str:
    response = post(client, "/runs", task=task, **data)
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def wait_view(
    client: TestClient, thread_id: str, check: Callable[[dict[str, Any]], bool], timeout=20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/api/runs/{thread_id}").json()
        if check(view):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.02)


def status_is(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda view: view["status"] in statuses


def stored_runs(db: Path) -> list[Any]:
    async def read() -> list[Any]:
        async with RunService.open(db, read_only=True) as service:
            return await service.runs()

    return asyncio.run(read()) if db.exists() else []


# --- pages and actions -------------------------------------------------------------------


def test_a_run_started_from_the_form_runs_in_the_background_to_its_answer(client) -> None:
    form = client.get("/new")
    assert form.status_code == 200
    assert 'name="task"' in form.text and 'name="review"' in form.text
    thread_id = start(client, max_steps="5")
    assert thread_id.startswith("run-")
    view = wait_view(client, thread_id, status_is("completed"))
    assert [step["status"] for step in view["steps"]] == ["completed", "completed"]
    assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: towel."]
    assert view["answer"] == "The answer."
    page = client.get(f"/runs/{thread_id}")
    assert page.status_code == 200
    for text in ("Plan a day at the sea", "Pick a beach", "Beach: Brighton.", "The answer."):
        assert text in page.text
    assert f'src="/runs/{thread_id}/picture.svg?v=' in page.text
    assert "History:" in page.text and 'id="rerun"' in page.text
    picture = client.get(f"/runs/{thread_id}/picture.svg")
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/svg+xml"
    assert "script-src" not in picture.headers["content-security-policy"]
    assert picture.text.lstrip().startswith("<?xml") and "Pick a beach" in picture.text


def test_the_runs_page_lists_and_filters_runs(client) -> None:
    thread_id = start(client)
    wait_view(client, thread_id, status_is("completed"))
    page = client.get("/")
    assert page.status_code == 200
    assert thread_id in page.text and "Plan a day at the sea" in page.text
    assert "2/2" in page.text and "The answer." in page.text
    assert f'data-runs="{thread_id}:completed:2"' in page.text  # the page's script compares
    assert thread_id in client.get("/?status=completed").text
    assert f'/runs/{thread_id}"' not in client.get("/?status=failed").text
    (row,) = client.get("/api/runs").json()
    assert row | {"updated_at": ""} == {
        "thread_id": thread_id,
        "task": "Plan a day at the sea",
        "status": "completed",
        "steps_done": 2,
        "planned": 2,
        "answer": "The answer.",
        "updated_at": "",
    }


def test_a_plan_review_waits_and_is_approved_from_the_page(client) -> None:
    thread_id = start(client, review="on")
    view = wait_view(client, thread_id, status_is("awaiting review"))
    (question,) = view["questions"]
    assert question["kind"] == "plan_review"
    assert question["request"]["steps"] == ["Pick a beach", "Pack a bag"]
    page = client.get(f"/runs/{thread_id}").text
    assert "The plan waits for your review" in page and question["id"] in page
    response = post(client, f"/runs/{thread_id}/answer", question=question["id"], action="approve")
    assert response.status_code == 303
    view = wait_view(client, thread_id, status_is("completed"))
    assert [step["description"] for step in view["steps"]] == ["Pick a beach", "Pack a bag"]


def test_a_plan_edited_on_the_page_runs_as_edited(db: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("Pick a beach", "Pack a bag"), "Went to Hove."])
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client, review="on")
        (question,) = wait_view(client, thread_id, status_is("awaiting review"))["questions"]
        post(
            client,
            f"/runs/{thread_id}/answer",
            question=question["id"],
            action="edit",
            steps="1. Go to Hove\n\n",
        )
        view = wait_view(client, thread_id, status_is("completed"))
    assert [(step["description"], step["result"]) for step in view["steps"]] == [
        ("Go to Hove", "Went to Hove.")
    ]


def test_a_plan_rejected_on_the_page_fails_the_run_with_the_reason(client, model) -> None:
    thread_id = start(client, review="on")
    (question,) = wait_view(client, thread_id, status_is("awaiting review"))["questions"]
    post(
        client,
        f"/runs/{thread_id}/answer",
        question=question["id"],
        action="reject",
        reason="too vague",
    )
    view = wait_view(client, thread_id, status_is("failed"))
    assert "too vague" in view["summary"]
    assert len(model.prompts) == 1  # the plan only


def test_a_tool_call_waits_for_approval_and_is_approved_or_rejected(db: Path) -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("Add two and three", "Add four and five"),
            calls(("add", {"a": 2, "b": 3})),
            "It is 5.",
            calls(("add", {"a": 4, "b": 5})),
            "It was refused.",
        ],
    )
    tools = ToolOptions(imports=("sample_tools:TOOLS",), import_root=str(TESTS))
    request = RunRequest(
        task="Add numbers",
        options=LoopOptions(tools=tools, approve_tools=("add",)),
        thread_id="run-tools",
    )

    async def until_it_asks() -> None:
        async with RunService.open(db, model_factory=lambda spec, options: model) as service:
            outcome = await service.start(request, Hooks())
            assert outcome.waiting

    asyncio.run(until_it_asks())
    with TestClient(app_over(db, model), base_url=BASE) as client:
        view = client.get("/api/runs/run-tools").json()
        assert view["status"] == "awaiting approval"
        (question,) = view["questions"]
        assert question["request"]["tool"] == "add"
        page = client.get("/runs/run-tools").text
        assert "wants to call <code>add</code>" in page
        assert "{&#34;a&#34;: 2, &#34;b&#34;: 3}" in page  # the arguments, to edit as JSON
        post(client, "/runs/run-tools/answer", question=question["id"], action="approve")
        view = wait_view(client, "run-tools", status_is("awaiting approval"))
        (question,) = view["questions"]
        assert question["request"]["args"] == {"a": 4, "b": 5}
        post(
            client,
            "/runs/run-tools/answer",
            question=question["id"],
            action="reject",
            reason="enough sums",
        )
        view = wait_view(client, "run-tools", status_is("completed"))
    first, second = (step["tool_calls"] for step in view["steps"])
    assert [(call["status"], call["result"]) for call in first] == [("success", "5")]
    assert [call["status"] for call in second] == ["refused"]
    assert "enough sums" in second[0]["result"]


def test_a_running_run_is_cancelled_shows_as_interrupted_and_resumes(db: Path) -> None:
    model = two_steps(hold_at=3)  # step 2 waits
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client)
        view = wait_view(client, thread_id, lambda v: v["steps_done"] == 1)
        assert view["status"] == "running"
        assert [step["status"] for step in view["steps"]] == ["completed", "running"]
        assert 'id="cancel"' in client.get(f"/runs/{thread_id}").text
        assert post(client, f"/runs/{thread_id}/cancel").status_code == 303
        view = wait_view(client, thread_id, status_is("interrupted"))
        assert [step["status"] for step in view["steps"]] == ["completed", "pending"]
        assert 'id="resume"' in client.get(f"/runs/{thread_id}").text
        assert "interrupted" in client.get("/?status=interrupted").text
        model.gate.set()
        assert post(client, f"/runs/{thread_id}/resume").status_code == 303
        view = wait_view(client, thread_id, status_is("completed"))
    assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: towel."]
    assert len(model.prompts) == 3  # the plan, step 1, step 2: step 1 was not asked again


def test_runs_left_running_when_the_server_stops_are_interrupted_after_a_restart(db) -> None:
    held = two_steps(hold_at=3)
    with TestClient(app_over(db, held), base_url=BASE) as client:
        thread_id = start(client)
        wait_view(client, thread_id, lambda v: v["steps_done"] == 1)
    (stored,) = stored_runs(db)
    assert stored.status == "interrupted" and len(stored.steps) == 1
    model = two_steps()
    model.gate.set()
    model.script = model.script[2:]  # only step 2 is left to ask
    with TestClient(app_over(db, model), base_url=BASE) as client:
        assert client.get("/api/runs").json()[0]["status"] == "interrupted"
        page = client.get(f"/runs/{thread_id}").text
        assert 'id="resume"' in page and "Beach: Brighton." in page
        post(client, f"/runs/{thread_id}/resume")
        view = wait_view(client, thread_id, status_is("completed"))
    assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: towel."]


def test_a_run_another_process_runs_shows_as_running_elsewhere_and_is_followed(db) -> None:
    held = two_steps(hold_at=3)
    with TestClient(app_over(db, held), base_url=BASE) as client:
        thread_id = start(client)
        wait_view(client, thread_id, lambda v: v["steps_done"] == 1)
    taken, release = threading.Event(), threading.Event()

    def other_process() -> None:  # holds the run's lease, as a CLI running it would
        async def hold() -> None:
            async with open_store(db) as saver, hold_run(saver, thread_id):
                taken.set()
                await wait_for(release.is_set, what="the test to release the lease", timeout=30)

        asyncio.run(hold())

    holder = threading.Thread(target=other_process)
    holder.start()
    try:
        assert taken.wait(10)
        with TestClient(app_over(db, two_steps()), base_url=BASE) as client:
            assert client.get("/api/runs").json()[0]["status"] == "running elsewhere"
            page = client.get(f"/runs/{thread_id}").text
            assert 'id="elsewhere"' in page and f"pid {os.getpid()}" in page
            assert 'id="resume"' not in page
            response = post(client, f"/runs/{thread_id}/resume")
            assert response.status_code == 409
            assert "is being run by" in response.text
            with connect_ws(client, f"/runs/{thread_id}/ws") as ws:
                assert ws.receive_json()["view"]["status"] == "running elsewhere"
                release.set()  # the other process stops: the page sees it
                assert ws.receive_json()["view"]["status"] == "interrupted"
    finally:
        release.set()
        holder.join()


def test_a_finished_run_runs_again_from_a_step(client, model) -> None:
    thread_id = start(client)
    wait_view(client, thread_id, status_is("completed"))
    model.script = [*model.script, "Bag: umbrella."]
    assert post(client, f"/runs/{thread_id}/resume", from_step="2").status_code == 303
    view = wait_view(client, thread_id, status_is("completed"))
    assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: umbrella."]
    history = client.get(f"/runs/{thread_id}").text
    assert history.count('<tr class="current">') < history.count("<tr")


# --- live --------------------------------------------------------------------------------


def connect_ws(client: TestClient, path: str, **kwargs: Any) -> Any:
    """A WebSocket to the app, addressed as a browser on the page's host would."""
    return client.websocket_connect(BASE.replace("http", "ws") + path, **kwargs)


def views_until(socket: Any, check: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = socket.receive_json()
        assert message["type"] == "view", message
        seen.append(message["view"])
        if check(message["view"]):
            return seen


def test_two_sockets_see_the_same_live_views_from_start_to_end(db: Path) -> None:
    model = two_steps(hold_at=2)  # step 1 waits
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client)
        with (
            connect_ws(client, f"/runs/{thread_id}/ws") as first,
            connect_ws(client, f"/runs/{thread_id}/ws") as second,
        ):
            for socket in (first, second):
                (snapshot,) = views_until(socket, lambda v: True)
                assert snapshot["status"] == "running"
                assert snapshot["task"] == "Plan a day at the sea"
            model.gate.set()
            seen = [views_until(socket, status_is("completed")) for socket in (first, second)]
    for views in seen:
        statuses = {tuple(step["status"] for step in view["steps"]) for view in views}
        assert ("completed", "running") in statuses  # step 2 seen while it ran
        assert views[-1]["answer"] == "The answer."
        assert views[-1]["steps"][1]["result"] == "Bag: towel."
    assert seen[0][-1] == seen[1][-1]


def test_a_late_socket_catches_up_from_the_store(client) -> None:
    thread_id = start(client)
    wait_view(client, thread_id, status_is("completed"))
    with connect_ws(client, f"/runs/{thread_id}/ws") as ws:
        view = ws.receive_json()["view"]
    assert view["status"] == "completed"
    assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: towel."]
    assert view["answer"] == "The answer."


def test_a_socket_opened_mid_run_gets_the_steps_done_so_far(db: Path) -> None:
    model = two_steps(hold_at=3)
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client)
        wait_view(client, thread_id, lambda v: v["steps_done"] == 1)
        with connect_ws(client, f"/runs/{thread_id}/ws") as ws:
            view = ws.receive_json()["view"]
            assert [step["status"] for step in view["steps"]] == ["completed", "running"]
            assert view["steps"][0]["result"] == "Beach: Brighton."
            model.gate.set()
            views_until(ws, status_is("completed"))


def test_a_socket_for_an_unknown_run_is_told_so(client) -> None:
    with connect_ws(client, "/runs/run-nothing/ws") as socket:
        message = socket.receive_json()
        assert message["type"] == "error" and "run-nothing" in message["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == 4404


def test_live_events_are_laid_over_the_stored_run() -> None:
    """What a page shows of a run going on here, from the progress events alone."""
    live = LiveRun(task="Add numbers")
    for event in [
        {"event": events.PLAN_READY, "data": {"task": "Add numbers", "steps": ["Add", "Say"]}},
        {"event": events.STEP_STARTED, "data": {"step": 1, "description": "Add"}},
        events.tool_called("t", 1, "add", {"a": 2, "b": 3}),
        events.tool_called("t", 1, "add", {"a": 4, "b": 5}),
    ]:
        live.apply(event["event"], event["data"])
    view = run_view("run-x", None, live, [])
    assert view["status"] == "running"
    assert [(step["number"], step["status"]) for step in view["steps"]] == [
        (1, "running"),
        (2, "pending"),
    ]
    assert [(call["args"], call["status"]) for call in view["steps"][0]["tool_calls"]] == [
        ('{"a": 2, "b": 3}', "running"),
        ('{"a": 4, "b": 5}', "running"),
    ]
    first_back = events.tool_result("t", 1, "add", "5", "success", 3)
    live.apply(first_back["event"], first_back["data"])
    live.apply(
        events.STEP_COMPLETE,
        {"step": 1, "description": "Add", "result": "It is 5.", "duration_ms": 40},
    )
    step = run_view("run-x", None, live, [])["steps"][0]
    assert (step["status"], step["result"], step["duration_ms"]) == ("completed", "It is 5.", 40)
    assert [(call["status"], call["result"]) for call in step["tool_calls"]] == [
        ("success", "5"),
        ("running", ""),
    ]


# --- who may use it ----------------------------------------------------------------------


@pytest.fixture
def guarded(db: Path, model: ScriptedChatModel):
    with TestClient(app_over(db, model, token="s3cret-token"), base_url=BASE) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/", "/new", "/runs/run-x", "/api/runs", "/static/app.js", "/runs/run-x/picture.svg"]
)
def test_with_a_token_every_request_without_it_gets_401(guarded, path: str) -> None:
    response = guarded.get(path)
    assert response.status_code == 401
    assert "token" in response.text
    assert guarded.get(path + "?token=wrong").status_code == 401
    assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.post("/runs", data={"task": "x"}).status_code == 401


def test_the_token_in_the_address_becomes_a_strict_cookie(guarded) -> None:
    response = guarded.get("/?token=s3cret-token&status=completed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/?status=completed"
    cookie = response.headers["set-cookie"]
    assert "agentic_loop_token=s3cret-token" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert guarded.get("/").status_code == 200  # the cookie now
    thread_id = start(guarded)
    wait_view(guarded, thread_id, status_is("completed"))


def test_the_token_in_a_bearer_header_opens_the_api_without_a_form_value(db, model) -> None:
    with TestClient(app_over(db, model, token="s3cret-token"), base_url=BASE) as client:
        bearer = {"Authorization": "Bearer s3cret-token", "Accept": "application/json"}
        assert client.get("/api/runs", headers=bearer).json() == []
        response = client.post("/runs", data={"task": "Pack"}, headers=bearer)
        assert response.status_code == 202
        thread_id = response.json()["thread_id"]
        assert client.get("/api/runs", headers={"Accept": "application/json"}).status_code == 401
        wait = {"Authorization": "Bearer s3cret-token"}
        wait_until(
            lambda: (
                client.get(f"/api/runs/{thread_id}", headers=wait).json()["status"] == "completed"
            ),
            what="the run to complete",
            timeout=20,
        )


def test_a_websocket_without_the_token_is_refused_with_401(guarded) -> None:
    with pytest.raises(WebSocketDenialResponse) as refused:
        with connect_ws(guarded, "/runs/run-x/ws"):
            pass
    assert refused.value.status_code == 401
    guarded.get("/?token=s3cret-token")
    with connect_ws(guarded, "/runs/run-x/ws") as socket:
        assert socket.receive_json()["type"] == "error"  # let in: there is no such run


def test_without_a_token_only_loopback_names_are_answered(client) -> None:
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8765"}).status_code == 200
    rebound = client.get("/", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 403
    assert "127.0.0.1" in rebound.text


def test_with_a_token_any_host_name_is_answered(guarded) -> None:
    response = guarded.get(
        "/", headers={"Host": "box.lan:8765", "Authorization": "Bearer s3cret-token"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("box.lan", False),
    ],
)
def test_serve_needs_a_token_on_any_address_but_this_machines_own(host, loopback) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1
        {"Origin": BASE, "Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_posts_are_refused_and_change_nothing(client, db, headers) -> None:
    value = csrf(client)
    response = client.post("/runs", data={"csrf": value, "task": "x"}, headers=headers)
    assert response.status_code == 403
    assert stored_runs(db) == []
    with pytest.raises(WebSocketDenialResponse) as refused:
        with connect_ws(client, "/runs/run-x/ws", headers=headers):
            pass
    assert refused.value.status_code == 403


def test_a_post_without_its_csrf_value_is_refused(client, db) -> None:
    client.get("/new")
    for data in ({"task": "x"}, {"task": "x", "csrf": "forged-value-of-some-length"}):
        response = client.post("/runs", data=data, follow_redirects=False)
        assert response.status_code == 403
        assert "reload the page" in response.text
    assert stored_runs(db) == []
    response = client.post(
        "/runs",
        data={"csrf": csrf(client), "task": "x"},
        headers={"Origin": BASE},  # a browser's own page
        follow_redirects=False,
    )
    assert response.status_code == 303
    wait_view(client, response.headers["location"].rsplit("/", 1)[1], status_is("completed"))
    assert len(stored_runs(db)) == 1


def test_pages_forbid_inline_script_and_framing_and_allow_no_other_origin(client) -> None:
    response = client.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/runs", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "<script>" not in client.get("/new").text  # scripts come from /static only


# --- text stays text ---------------------------------------------------------------------

HOSTILE = (
    '<script>alert("task")</script> <img src=x onerror=alert(1)> '
    "[click me](javascript:alert(1)) <a href='https://evil.example'>link</a>"
)


def test_task_and_model_text_are_shown_as_text(db: Path) -> None:
    model = ScriptedChatModel(
        script=[
            plan_text("<b>bold step</b>", "[a link](https://evil.example)"),
            "<script>document.title='owned'</script>",
            "![img](x) <iframe src=//evil.example></iframe>",
        ],
        answer="<svg onload=alert(1)> **done**",
    )
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client, task=HOSTILE)
        view = wait_view(client, thread_id, status_is("completed"))
        pages = [client.get(f"/runs/{thread_id}").text, client.get("/").text]
        svg = client.get(f"/runs/{thread_id}/picture.svg").text
    assert view["task"] == HOSTILE  # the API gives the text as it is, to be shown as text
    for page in pages:
        for raw in (
            "<script>alert",
            "<img src=x",
            "<a href='https://evil",
            "<b>bold",
            "<iframe",
            "<svg",
        ):
            assert raw not in page
        assert 'href="javascript' not in page and 'href="https://evil' not in page
    run_page = pages[0]
    assert "&lt;script&gt;alert(&#34;task&#34;)&lt;/script&gt;" in run_page
    assert "&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;" in run_page
    assert "[a link](https://evil.example)" in run_page  # Markdown stays as typed
    assert "&lt;svg onload=alert(1)&gt; **done**" in run_page
    assert "<script" not in svg and "<img" not in svg and "<iframe" not in svg


# --- bad requests ------------------------------------------------------------------------


def no_traceback(response: Any) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/runs/run-nothing"),
        ("get", "/runs/run-nothing/picture.svg"),
        ("get", "/api/runs/run-nothing"),
        ("post", "/runs/run-nothing/answer"),
        ("post", "/runs/run-nothing/cancel"),
        ("post", "/runs/run-nothing/resume"),
    ],
)
def test_an_unknown_thread_is_404_with_a_message(client, method: str, path: str) -> None:
    if method == "get":
        response = client.get(path)
    else:
        response = post(client, path, question="q", action="approve")
    assert response.status_code == 404
    assert "run-nothing" in response.text
    no_traceback(response)


def test_api_errors_are_json(client) -> None:
    response = client.get("/api/runs/run-nothing")
    assert response.status_code == 404
    assert "no run with thread id 'run-nothing'" in response.json()["error"]
    response = client.post(
        "/runs", data={"csrf": csrf(client), "task": " "}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 422
    assert response.json() == {"error": "the task is empty; say what to do"}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": ""}, "the task is empty"),
        ({"task": "   "}, "the task is empty"),
        ({"task": "x" * 20_001}, "at most 20000"),
        ({"task": "Go", "max_steps": "0"}, "max_steps must be a whole number from 1 to 1000"),
        ({"task": "Go", "max_steps": "-3"}, "max_steps must be a whole number"),
        ({"task": "Go", "max_steps": "lots"}, "max_steps must be a whole number"),
        ({"task": "Go", "max_steps": "99999"}, "max_steps must be a whole number"),
    ],
)
def test_a_malformed_start_form_is_422_and_stores_nothing(client, db, data, message) -> None:
    response = post(client, "/runs", **data)
    assert response.status_code == 422, response.text
    assert message in response.text
    no_traceback(response)
    assert stored_runs(db) == []


@pytest.mark.parametrize(
    "spec, message",
    [("nonsense:thing", "nonsense:thing"), ("ollama:not-pulled", "Ollama")],
)
def test_a_model_that_cannot_be_used_is_422_and_stores_nothing(db, spec, message) -> None:
    with TestClient(create_app(db, defaults=LoopOptions(timeout=2)), base_url=BASE) as client:
        response = post(client, "/runs", task="Go", model=spec)
    assert response.status_code == 422, response.text
    assert message in response.text
    assert stored_runs(db) == []


def test_a_file_where_text_belongs_is_422(client, db) -> None:
    response = client.post(
        "/runs", data={"csrf": csrf(client)}, files={"task": ("task.txt", b"Go")}
    )
    assert response.status_code == 422
    assert "task must be text" in response.text
    assert stored_runs(db) == []


@pytest.mark.parametrize(
    "content_type, body",
    [
        (
            "multipart/form-data; boundary=xx",
            b'--xx\r\nContent-Disposition: form-data; name="task"',
        ),
        ("multipart/form-data", b"no boundary"),
        ("application/x-www-form-urlencoded", b"csrf=%(csrf)s&task=%%ff%%fe&max_steps=%%00"),
        ("application/json", b'{"task": "Go"}'),
        ("text/plain", b"\xff\xfe\x00"),
    ],
)
def test_malformed_bodies_are_4xx_and_store_nothing(client, db, content_type, body) -> None:
    body = body.replace(b"%(csrf)s", csrf(client).encode()).replace(b"%%", b"%")
    response = client.post("/runs", content=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text
    no_traceback(response)
    assert stored_runs(db) == []


def test_an_unknown_status_filter_is_422(client) -> None:
    response = client.get("/?status=exploded")
    assert response.status_code == 422
    assert "unknown status &#39;exploded&#39;" in response.text


def test_answers_that_do_not_fit_are_refused_and_change_nothing(client, db) -> None:
    thread_id = start(client, review="on")
    (question,) = wait_view(client, thread_id, status_is("awaiting review"))["questions"]
    (before,) = stored_runs(db)
    url = f"/runs/{thread_id}/answer"
    cases = [
        ({"question": question["id"], "action": "edit", "steps": "\n \n"}, 422, "1 to"),
        ({"question": question["id"], "action": "edit", "steps": "a\n" * 11}, 422, "1 to"),
        ({"question": question["id"], "action": "maybe"}, 422, "approve, edit or reject"),
        ({"question": "not-a-question", "action": "approve"}, 409, "reload the page"),
    ]
    for data, status, message in cases:
        response = post(client, url, **data)
        assert response.status_code == status, (data, response.text)
        assert message in response.text
        no_traceback(response)
    (after,) = stored_runs(db)
    assert (after.status, after.plan, after.updated_at) == (
        before.status,
        before.plan,
        before.updated_at,
    )
    assert client.get(f"/api/runs/{thread_id}").json()["status"] == "awaiting review"


def test_actions_on_a_run_in_the_wrong_state_are_409(client) -> None:
    thread_id = start(client)
    wait_view(client, thread_id, status_is("completed"))
    for path, data, message in [
        ("answer", {"question": "q", "action": "approve"}, "waits for no answer"),
        ("cancel", {}, "not running in this server"),
        ("resume", {}, "has finished (completed)"),
    ]:
        response = post(client, f"/runs/{thread_id}/{path}", **data)
        assert response.status_code == 409, response.text
        assert message in response.text
    for from_step, message in [
        ("3", "has 2 steps"),
        ("x", "from_step must be"),
        ("0", "from_step"),
    ]:
        response = post(client, f"/runs/{thread_id}/resume", from_step=from_step)
        assert response.status_code == 422
        assert message in response.text


def test_a_second_start_of_a_running_run_is_409(db: Path) -> None:
    model = two_steps(hold_at=2)
    with TestClient(app_over(db, model), base_url=BASE) as client:
        thread_id = start(client)
        response = post(client, f"/runs/{thread_id}/resume")
        assert response.status_code == 409
        assert "running already" in response.text
        model.gate.set()
        wait_view(client, thread_id, status_is("completed"))


def test_tool_arguments_that_are_not_json_are_422(db: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("Add"), calls(("add", {"a": 1, "b": 1}))])
    tools = ToolOptions(imports=("sample_tools:TOOLS",), import_root=str(TESTS))
    request = RunRequest(
        task="Add", options=LoopOptions(tools=tools, approve_tools=("add",)), thread_id="run-t"
    )

    async def until_it_asks() -> None:
        async with RunService.open(db, model_factory=lambda spec, options: model) as service:
            await service.start(request, Hooks())

    asyncio.run(until_it_asks())
    with TestClient(app_over(db, model), base_url=BASE) as client:
        (question,) = client.get("/api/runs/run-t").json()["questions"]
        for args, message in [("{not json", "not JSON"), ('["a list"]', "a dict")]:
            response = post(
                client, "/runs/run-t/answer", question=question["id"], action="edit", args=args
            )
            assert response.status_code == 422
            assert message in response.text
        assert client.get("/api/runs/run-t").json()["status"] == "awaiting approval"


def test_an_unexpected_error_is_a_500_without_a_traceback(db: Path) -> None:
    def broken(spec: str, options: LoopOptions) -> Any:
        raise RuntimeError("secret internals")

    app = create_app(db, model_factory=broken)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as client:
        response = post(client, "/runs", task="Go")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    no_traceback(response)


def test_unknown_pages_and_methods_are_4xx_pages(client) -> None:
    assert client.get("/nowhere").status_code == 404
    assert client.get("/runs/run-x/answer").status_code == 405
    assert json.loads(client.get("/api/nowhere").text)["error"]


def test_the_web_app_runs_and_reviews_over_a_postgres_store(postgres_url: str) -> None:
    model = two_steps()
    model.gate.set()
    with TestClient(app_over(postgres_url, model), base_url=BASE) as client:
        thread_id = start(client, review="on")
        (question,) = wait_view(client, thread_id, status_is("awaiting review"))["questions"]
        post(client, f"/runs/{thread_id}/answer", question=question["id"], action="approve")
        view = wait_view(client, thread_id, status_is("completed"))
        assert [step["result"] for step in view["steps"]] == ["Beach: Brighton.", "Bag: towel."]
        assert thread_id in client.get("/").text
