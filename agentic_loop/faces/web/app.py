"""The web app: pages over the run service, live over WebSockets (`agentic-loop serve`).

It parses requests and renders pages; the runs go through `agentic_loop.runs.service`, in the
background (`live.LiveRuns`), and their progress reaches the pages through `live.RunHub`.
Who may use it is `security`'s business. Pages are Jinja2 templates with autoescaping, so
a task or a model's reply is always shown as text; `static/app.js` keeps a run's page up
to date from the views its WebSocket sends, writing text with `textContent` only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, cast
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.websockets import WebSocket, WebSocketDisconnect

from agentic_loop.core.answers import typed_args, typed_step
from agentic_loop.core.options import MODEL_ENV, MOST_STEPS, LoopOptions
from agentic_loop.faces.drawing import DrawingError, format_duration, render, run_picture
from agentic_loop.faces.web import security
from agentic_loop.faces.web.live import LiveRuns
from agentic_loop.models import DEFAULT_MODEL
from agentic_loop.runs.leases import RunBusy
from agentic_loop.runs.service import (
    BadAnswer,
    BadSetup,
    ModelFactory,
    NotWaiting,
    RunActive,
    RunRequest,
    RunService,
    ServiceError,
    StoreError,
    ThreadTaken,
    UnknownThread,
    new_thread_id,
)

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATUSES = (
    "running",
    "running elsewhere",
    "interrupted",
    "awaiting review",
    "awaiting approval",
    "completed",
    "partial",
    "failed",
    "unreadable",
)
MOST_TASK_CHARS = 20_000
RUN_PAGES = ("picture.svg", "answer", "cancel", "resume", "ws")
"""The pages under a run's own, `/runs/ID/...`."""


class ThreadIdConvertor(Convertor[str]):
    """A thread id in a path: quoted whole in links (`quote(id, safe="")`), so that one
    stored before `check_thread_id` with a `/` in it (`%2F`, decoded before routing) still
    names its run; never ending in one of `RUN_PAGES`, so that `GET /runs/ID/answer` is
    that POST route's 405, not a page of a run `ID/answer`."""

    regex = ".+?" + "".join(f"(?<!/{re.escape(page)})" for page in RUN_PAGES)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("thread_id", ThreadIdConvertor())

ERROR_STATUS: dict[type[Exception], int] = {
    UnknownThread: 404,
    ThreadTaken: 409,
    RunActive: 409,
    NotWaiting: 409,
    BadAnswer: 422,
    BadSetup: 422,
    ServiceError: 400,
    RunBusy: 409,
    StoreError: 503,
}


def create_app(
    store: str | Path | RunService | None = None,
    *,
    token: str | None = None,
    model_factory: ModelFactory | None = None,
    defaults: LoopOptions | None = None,
) -> Starlette:
    """The web app over the run store at `store` (a SQLite path or a `postgresql://` URL;
    None: `AGENTIC_LOOP_DB`, else the default), opened for the app's life, or over a
    service the caller keeps open. With `token`, every request needs it (see `security`).
    `model_factory` goes to the service. `defaults` are the options of a run started here
    (default: `LoopOptions.build({})`, which reads the `AGENTIC_LOOP_*` variables), the form
    changing its model, steps and review; its model fills the form's model field (None:
    `AGENTIC_LOOP_MODEL`, else `auto`)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if isinstance(store, RunService):
            app.state.runs = runs = LiveRuns(store)
            try:
                yield
            finally:
                await runs.aclose()
            return
        async with RunService.open(store, model_factory=model_factory) as service:
            app.state.runs = runs = LiveRuns(service)
            try:
                yield
            finally:
                await runs.aclose()

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/new", new_page),
            Route("/runs", start, methods=["POST"]),
            Route("/runs/{thread_id:thread_id}", run_page),
            Route("/runs/{thread_id:thread_id}/picture.svg", picture),
            Route("/runs/{thread_id:thread_id}/answer", answer, methods=["POST"]),
            Route("/runs/{thread_id:thread_id}/cancel", cancel, methods=["POST"]),
            Route("/runs/{thread_id:thread_id}/resume", resume, methods=["POST"]),
            WebSocketRoute("/runs/{thread_id:thread_id}/ws", watch),
            Route("/api/runs", runs_api),
            Route("/api/runs/{thread_id:thread_id}", run_api),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(security.Guard, token=token)],
        exception_handlers={
            ServiceError: refused,
            StoreError: refused,
            HTTPException: refused,
            Exception: crashed,
        },
        lifespan=lifespan,
    )
    app.state.token = token
    app.state.defaults = defaults = defaults if defaults is not None else LoopOptions.build({})
    app.state.default_model = defaults.model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    return app


templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
templates.env.filters["duration"] = format_duration
# Jinja's own `urlencode` keeps `/`; a thread id in a link is one path segment, `/` and all.
templates.env.filters["urlencode"] = lambda value: quote(str(value), safe="")
templates.env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)


# --- pages -------------------------------------------------------------------------------


async def runs_page(request: Request) -> Response:
    status = request.query_params.get("status", "")
    if status and status not in STATUSES:
        _bad(422, f"unknown status {status!r}; pick one of: {', '.join(STATUSES)}")
    rows = await _rows(request)
    shown = [row for row in rows if not status or row["status"] == status]
    # The page's script reads /api/runs now and then, and reloads when this changes.
    signature = ",".join(f"{row['thread_id']}:{row['status']}:{row['steps_done']}" for row in rows)
    return _page(
        request, "runs.html", rows=shown, total=len(rows), status=status, signature=signature
    )


async def new_page(request: Request) -> Response:
    return _page(
        request,
        "new.html",
        default_model=request.app.state.default_model,
        most_steps=MOST_STEPS,
    )


async def run_page(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    view = await _runs(request).view(thread_id)
    try:
        _, checkpoints = await _runs(request).service.history(thread_id)
    except (ServiceError, ValueError):  # a run with no readable history still shows
        checkpoints = []
    return _page(request, "run.html", view=view, checkpoints=checkpoints)


async def picture(request: Request) -> Response:
    """The run picture the CLI draws, as an SVG image (shown through `<img>`, where no
    script of it runs; its own policy forbids them when opened directly too)."""
    stored = await _runs(request).service.run(request.path_params["thread_id"])
    try:
        svg = await asyncio.to_thread(render, run_picture(stored), "svg")
    except DrawingError as exc:
        return Response(str(exc), status_code=503, media_type="text/plain")
    return Response(
        svg,
        media_type="image/svg+xml",
        headers={"content-security-policy": security.PICTURE_POLICY},
    )


async def runs_api(request: Request) -> Response:
    return JSONResponse(await _rows(request))


async def run_api(request: Request) -> Response:
    return JSONResponse(await _runs(request).view(request.path_params["thread_id"]))


# --- actions -----------------------------------------------------------------------------


async def start(request: Request) -> Response:
    form = await _form(request)
    task = _text(form, "task")
    if not task.strip():
        _bad(422, "the task is empty; say what to do")
    if len(task) > MOST_TASK_CHARS:
        _bad(422, f"the task is {len(task)} characters long; at most {MOST_TASK_CHARS}")
    given = {
        "model": _text(form, "model").strip() or request.app.state.default_model,
        "max_steps": _text(form, "max_steps").strip() or None,
        "review_plan": _text(form, "review") in ("on", "true", "1", "yes"),
    }
    try:
        options = LoopOptions.build(given, env=False, base=request.app.state.defaults)
    except ValueError as exc:
        _bad(422, str(exc))
    thread_id = new_thread_id()
    run = RunRequest(task=task, options=options, thread_id=thread_id)
    runs = _runs(request)
    await runs.launch(thread_id, lambda hooks: runs.service.start(run, hooks), task=task)
    return _done(request, thread_id, "running")


async def answer(request: Request) -> Response:
    """Answer a plan review (approve, edit, reject) or a tool approval (approve, edit,
    reject), and carry the run on in the background."""
    thread_id = request.path_params["thread_id"]
    form = await _form(request)
    runs = _runs(request)
    stored = await runs.service.run(thread_id)
    question_id = _text(form, "question")
    action = _text(form, "action")
    if action not in ("approve", "edit", "reject"):
        _bad(422, "the action must be approve, edit or reject")
    asked = {question.id: question for question in await runs.service.questions(thread_id)}
    question = asked.get(question_id)
    if question is None:
        raise NotWaiting(
            f"run {thread_id!r} waits for no answer to that question; reload the page"
            if asked
            else f"run {thread_id!r} waits for no answer"
        )
    reply: Any = action
    if action == "reject":
        reply = {"action": "reject", "reason": _text(form, "reason").strip()}
    elif action == "edit" and question.kind == "plan_review":
        steps = [typed_step(line) for line in _text(form, "steps").splitlines()]
        reply = {"action": "edit", "steps": [step for step in steps if step]}
    elif action == "edit":
        try:
            args = typed_args(_text(form, "args"))
        except ValueError as exc:
            _bad(422, str(exc))
        reply = {"action": "edit", "args": args}
    await runs.launch(
        thread_id,
        lambda hooks: runs.service.answer(thread_id, {question_id: reply}, hooks),
        stored=stored,
    )
    return _done(request, thread_id, "running")


async def cancel(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    await _form(request)
    runs = _runs(request)
    if not runs.cancel(thread_id):
        await runs.service.run(thread_id)  # UnknownThread for a thread with no run
        _bad(409, f"run {thread_id!r} is not running in this server; nothing to cancel")
    return _done(request, thread_id, "cancelled")


async def resume(request: Request) -> Response:
    """Carry on an interrupted run, or with `from_step` run it again from that step."""
    thread_id = request.path_params["thread_id"]
    form = await _form(request)
    from_step = _whole(form, "from_step", 1, MOST_STEPS)
    runs = _runs(request)
    if runs.running(thread_id):  # before reading it: it may not be stored yet
        raise RunActive(f"run {thread_id!r} is running already; wait for it or cancel it")
    stored = await runs.service.run(thread_id)
    if from_step is not None and from_step > len(stored.plan):
        _bad(422, f"run {thread_id!r} has {len(stored.plan)} steps; pick one of them")
    if from_step is None and stored.result is not None and stored.steps:
        _bad(409, f"run {thread_id!r} has finished ({stored.status}); to run it again, pick a step")
    await runs.launch(
        thread_id,
        lambda hooks: runs.service.resume(thread_id, hooks, from_step=from_step),
        stored=stored,
        from_step=from_step,
    )
    return _done(request, thread_id, "running")


# --- live --------------------------------------------------------------------------------


async def watch(websocket: WebSocket) -> None:
    """Sends the run's view at once, read from the store, then each newer view."""
    thread_id = websocket.path_params["thread_id"]
    runs: LiveRuns = websocket.app.state.runs
    watcher = runs.watch(thread_id)
    try:
        try:
            view = await runs.view(thread_id)
        except (ServiceError, StoreError) as exc:
            await websocket.accept()
            await websocket.send_json({"type": "error", "error": str(exc)})
            await websocket.close(code=4404 if isinstance(exc, UnknownThread) else 4503)
            return
        await websocket.accept()
        watcher.offer(json.dumps({"type": "view", "view": view}))
        sending = asyncio.create_task(_send_views(websocket, watcher))
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass
        finally:
            sending.cancel()
    finally:
        runs.unwatch(thread_id, watcher)


async def _send_views(websocket: WebSocket, watcher: Any) -> None:
    try:
        while (message := await watcher.next()) is not None:
            await websocket.send_text(message)
        await websocket.close(code=1001)  # the server is stopping
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the browser went away


# --- errors ------------------------------------------------------------------------------


async def refused(request: Request, exc: Exception) -> Response:
    """A request the app or the service refuses: a 4xx (503 for an unusable store) with the
    reason, as JSON or as a page; nothing was changed."""
    if isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
        message = str(exc)
    return _error_page(request, status, message)


async def crashed(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Something went wrong in the server; see its log.")


def _error_page(request: Request, status: int, message: str) -> Response:
    if security.wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return _page(request, "error.html", status_code=status, status=status, message=message)


def _bad(status: int, message: str) -> NoReturn:
    raise HTTPException(status, message)


# --- helpers -----------------------------------------------------------------------------


def _runs(connection: HTTPConnection) -> LiveRuns:
    return cast(LiveRuns, connection.app.state.runs)


async def _rows(request: Request) -> list[dict[str, Any]]:
    return await _runs(request).rows()


def _page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    csrf, new = security.csrf_value(request)
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": csrf, "csrf_field": security.CSRF_FIELD, "statuses": STATUSES, **context},
        status_code=status_code,
    )
    if new:
        security.remember_csrf(response, csrf)
    return response


async def _form(request: Request) -> FormData:
    """The POSTed form, once its CSRF value is checked (403 if it does not match)."""
    form = await request.form()
    if not security.check_csrf(request, form, request.app.state.token):
        _bad(403, "This form is stale or came from another site; reload the page and try again.")
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        _bad(422, f"{name} must be text, not a file")
    return value


def _whole(form: FormData, name: str, least: int, most: int) -> int | None:
    """A whole number field from `least` to `most`, None when left empty."""
    raw = _text(form, name).strip()
    if not raw:
        return None
    if not raw.isdecimal() or not least <= int(raw) <= most:
        _bad(422, f"{name} must be a whole number from {least} to {most}, got {raw[:40]!r}")
    return int(raw)


def _done(request: Request, thread_id: str, status: str) -> Response:
    if security.wants_json(request):
        return JSONResponse({"thread_id": thread_id, "status": status}, status_code=202)
    return RedirectResponse(request.url_for("run_page", thread_id=thread_id).path, status_code=303)
