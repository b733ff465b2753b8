"""A small server that speaks the part of Ollama's HTTP API that ChatOllama uses.

It answers `/api/chat` (streamed NDJSON or one JSON object), plus `/api/tags`, `/api/show`
and `/api/version`, on 127.0.0.1. What it answers is decided by `reply(request)`, which
tests replace; every chat request is recorded as the client sent it, with its `tools`,
its `format` and any `role: "tool"` messages.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STEP_LINE = re.compile(r"^Step (\d+)/(\d+): ", re.MULTILINE)
# `model_info` is required by the `ollama` client's `show()`; `tools` tells clients that check.
SHOW = {"modelfile": "", "details": {}, "model_info": {}, "capabilities": ["completion", "tools"]}


@dataclass
class Reply:
    """What the server sends back for one chat request."""

    text: str = ""
    status: int = 200
    error: str = ""
    hold: threading.Event | None = None
    """If set, the server waits for this event before answering."""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Tools the model calls, as (name, arguments) pairs, sent after `text`."""
    endless: bool = False
    """If set, `text` is streamed again and again until the client hangs up, whatever the
    request's `num_predict`: a server that ignores its cap. Otherwise, as Ollama does, a
    reply longer than `num_predict` words stops there with `done_reason: "length"`."""
    pause: float = 0.0
    """Seconds to wait before each chunk of an `endless` reply. With no `text`, the server
    streams empty chunks at this pace for ever: a reply that never grows but keeps the
    connection alive, so that no wait for the next chunk times out."""


def plan_or_step(plan: list[str]) -> Callable[[dict[str, Any]], Reply]:
    """Answer planning prompts with `plan` as a numbered list, and step prompts with a result."""

    def reply(request: dict[str, Any]) -> Reply:
        prompt = last_prompt(request)
        if "Break this task into numbered steps" in prompt:
            numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(plan, 1))
            return Reply(f"Here is the plan:\n\n{numbered}\n\nLet me know if you need more.")
        if (match := STEP_LINE.search(prompt)) is not None:
            return Reply(f"Did step {match[1]}.")
        return Reply("Tried another way.")

    return reply


def last_prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][-1]["content"])


def step_of(request: dict[str, Any]) -> int | None:
    """The step number a step prompt asks for, else None."""
    match = STEP_LINE.search(last_prompt(request))
    return int(match[1]) if match else None


def tool_names(request: dict[str, Any]) -> list[str]:
    """The names of the tools the client offered the model in this request."""
    return [tool["function"]["name"] for tool in request.get("tools", [])]


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results (`role: "tool"` messages) the client sent back in this request."""
    return [message for message in request["messages"] if message["role"] == "tool"]


class OllamaTestServer:
    def __init__(
        self, reply: Callable[[dict[str, Any]], Reply], models: tuple[str, ...] = ("test-model",)
    ):
        self.reply = reply
        self.models = models
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> OllamaTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Without this, small streamed chunks wait ~40 ms for delayed ACKs.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/tags":
                    self._json(200, {"models": [{"name": m, "model": m} for m in server.models]})
                elif self.path == "/api/version":
                    self._json(200, {"version": "0.0.0-test"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(
                    self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}"
                )
                if self.path == "/api/show":
                    if body.get("model") in server.models:
                        self._json(200, SHOW)
                    else:
                        self._json(404, {"error": f"model '{body.get('model')}' not found"})
                    return
                if self.path != "/api/chat":
                    self._json(404, {"error": "not found"})
                    return
                server._record(body)
                if body.get("model") not in server.models:
                    self._json(404, {"error": f"model '{body.get('model')}' not found"})
                    return
                reply = server.reply(body)
                if reply.hold is not None:
                    reply.hold.wait()
                if reply.status != 200:
                    self._json(reply.status, {"error": reply.error or "internal error"})
                    return
                words = re.findall(r"\S+\s*|\s+", reply.text) or [""]
                cap = (body.get("options") or {}).get("num_predict")
                stop = "length" if cap is not None and len(words) > cap else "stop"
                words = words[:cap] if stop == "length" else words
                if reply.endless:
                    self._stream_forever(body["model"], words, reply.pause)
                elif body.get("stream", True):
                    self._stream(body["model"], words, reply.tool_calls, stop)
                else:
                    self._json(
                        200,
                        _chunk(
                            body["model"], "".join(words), reply.tool_calls, done=True, stop=stop
                        ),
                    )

            def _start_stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

            def _stream(
                self, model: str, words: list[str], tool_calls: list[Any], stop: str
            ) -> None:
                self._start_stream()
                for word in words:
                    self._send_chunk(_chunk(model, word, done=False))
                if tool_calls:  # as Ollama does: in a chunk of their own, before `done`
                    self._send_chunk(_chunk(model, "", tool_calls, done=False))
                self._send_chunk(_chunk(model, "", done=True, stop=stop))
                self.wfile.write(b"0\r\n\r\n")

            def _stream_forever(self, model: str, words: list[str], pause: float = 0.0) -> None:
                self._start_stream()
                try:
                    while True:
                        for word in words:
                            time.sleep(pause)
                            self._send_chunk(_chunk(model, word, done=False))
                except OSError:  # the client hung up
                    self.close_connection = True

            def _send_chunk(self, body: dict[str, Any]) -> None:
                line = json.dumps(body).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()

        return Handler


def _chunk(
    model: str,
    content: str,
    tool_calls: Sequence[tuple[str, dict[str, Any]]] = (),
    *,
    done: bool,
    stop: str = "stop",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:  # Ollama's shape (`ollama.Message.ToolCall`); the client mints the ids
        message["tool_calls"] = [
            {"function": {"name": name, "arguments": arguments}} for name, arguments in tool_calls
        ]
    body: dict[str, Any] = {
        "model": model,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": message,
        "done": done,
    }
    if done:
        body |= {
            "done_reason": stop,
            "total_duration": 1,
            "eval_count": 1,
            "prompt_eval_count": 1,
        }
    return body
