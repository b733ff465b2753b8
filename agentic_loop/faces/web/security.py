"""Who may use the web app, and from where.

- Without a token the app answers only requests addressed to a loopback name (`Host:
  127.0.0.1`, `localhost`, `[::1]`), which also stops a web page from reaching it by
  pointing a name of its own at 127.0.0.1 (DNS rebinding).
- With a token, every page, API call and WebSocket needs it: `?token=` once (the app then
  keeps it in an HttpOnly, SameSite=Strict cookie and drops it from the address, sending
  the browser to the same path on this site: `//host` or `/\\host` never leads away), the
  cookie, or an `Authorization: Bearer` header. Without it: 401.
- Requests that change something (every POST, and the WebSocket handshake) must not come
  from another site: an `Origin` that is not the app's own, or `Sec-Fetch-Site:
  cross-site`, is refused with 403. Forms also carry a CSRF value that must match a
  SameSite=Strict cookie (`check_csrf`) and be as long as the values the app makes,
  unless the request holds the token in its `Authorization` header, which no other site
  can make a browser send.
- Every response says what a page may load (`Content-Security-Policy`: scripts, styles
  and images from the app only, no inline script) and that it is not to be framed.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

TOKEN_COOKIE = "agentic_loop_token"
CSRF_COOKIE = "agentic_loop_csrf"
CSRF_FIELD = "csrf"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_CHARS = 32
"""The length of the CSRF values the app makes (`secrets.token_urlsafe(24)`); a shorter
value, an empty one above all, is no value."""


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, as `--host` takes it) is this machine only."""
    return host in LOOPBACK_NAMES or host.startswith("127.")


def _host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port (and brackets of an IPv6 address)."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def page_policy(host: str) -> str:
    """The Content-Security-Policy of a page served under `host` (its `Host` header)."""
    sockets = f" ws://{host} wss://{host}" if host else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


PICTURE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
"""An SVG opened on its own may style itself, and nothing else: no script, no fetch."""


class Guard:
    """ASGI middleware that applies the rules above to every request and WebSocket."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        headers = connection.headers
        host = headers.get("host", "")
        refusal = self._refusal(connection, headers, host)
        if refusal is not None:
            await _refuse(scope, receive, send, refusal)
            return
        if (
            scope["type"] == "http"
            and self.token is not None
            and connection.query_params.get("token")
            and scope["method"] in SAFE_METHODS
        ):  # keep the token in a cookie, out of the address bar and history
            await _keep_token(connection, self.token)(scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(send, host))

    def _refusal(self, connection: HTTPConnection, headers: Headers, host: str) -> Response | None:
        if self.token is None and _host_name(host) not in LOOPBACK_NAMES:
            return PlainTextResponse(
                "This server answers only requests addressed to 127.0.0.1 or localhost; "
                "start it with --token to reach it by another name.",
                status_code=403,
            )
        if self.token is not None and not self._has_token(connection):
            return _error(
                connection,
                401,
                "This server needs its access token: open the address it printed "
                "(with ?token=...), or send Authorization: Bearer <token>.",
            )
        changes = connection.scope["type"] == "websocket" or (
            connection.scope["method"] not in SAFE_METHODS
        )
        if changes and not _same_site(headers, host):
            return _error(connection, 403, "Cross-site requests are refused.")
        return None

    def _has_token(self, connection: HTTPConnection) -> bool:
        assert self.token is not None
        given = [
            bearer_token(connection.headers),
            connection.cookies.get(TOKEN_COOKIE),
            connection.query_params.get("token"),
        ]
        return any(
            value is not None and secrets.compare_digest(value.encode(), self.token.encode())
            for value in given
        )


def bearer_token(headers: Headers) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _same_site(headers: Headers, host: str) -> bool:
    """Whether a request comes from the app's own pages (or from no page: a program).
    `same-site` is refused too: another port of 127.0.0.1 is the same site."""
    fetched_from = headers.get("sec-fetch-site")
    if fetched_from not in (None, "same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:  # not from a browser
        return True
    if origin == "null":  # a browser that hides where it comes from
        return fetched_from == "same-origin"
    return urlsplit(origin).netloc == host


def _error(connection: HTTPConnection, status: int, message: str) -> Response:
    if wants_json(connection):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


def wants_json(connection: HTTPConnection) -> bool:
    """Whether the caller reads JSON: an API path, or `Accept: application/json`."""
    accepts = connection.headers.get("accept", "")
    return connection.url.path.startswith("/api/") or "application/json" in accepts


def _keep_token(connection: HTTPConnection, token: str) -> Response:
    """Back to the same address without the token, which goes into a cookie instead."""
    given = parse_qsl(connection.url.query, keep_blank_values=True)
    query = urlencode([(key, value) for key, value in given if key != "token"])
    path = _same_site_path(connection.scope)
    response = RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


_LEADING_SLASHES = re.compile(r"^(?:/|%2f|%5c)+", re.IGNORECASE)
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
"""What stays as it is in a path sent back: RFC 3986's path characters, and `%` to keep
what the request encoded (`%2F` in a thread id) encoded."""


def _same_site_path(scope: Scope) -> str:
    """The request's path as it came, for a `Location` that stays on this site: any other
    byte (a `\\`, a control character, a space) percent-encoded, and the slashes and
    backslashes it starts with, plain or encoded, made one `/`. So `//evil.example/`,
    `/\\evil.example/` or `/%2F%2Fevil.example/` go to `/evil.example/` here, never to
    that host."""
    raw = scope.get("raw_path") or scope["path"].encode()
    path = quote_from_bytes(raw.partition(b"?")[0], safe=_PATH_SAFE)
    return "/" + _LEADING_SLASHES.sub("", path)


async def _refuse(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008)


def _with_headers(send: Send, host: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            raw = list(message.get("headers", []))
            extra = {
                "x-content-type-options": "nosniff",
                "referrer-policy": "same-origin",
                "x-frame-options": "DENY",
                "cache-control": "no-store",
            }
            if "content-security-policy" not in headers:
                extra["content-security-policy"] = page_policy(host)
            raw += [(key.encode(), value.encode()) for key, value in extra.items()]
            message = {**message, "headers": raw}
        await send(message)

    return sending


def csrf_value(request: Request) -> tuple[str, bool]:
    """The CSRF value for the forms of a page, and whether it is new (to be set as a cookie
    with `remember_csrf`)."""
    kept = request.cookies.get(CSRF_COOKIE)
    if kept and len(kept) >= CSRF_CHARS:
        return kept, False
    return secrets.token_urlsafe(24), True


def remember_csrf(response: Response, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", path="/")


def check_csrf(request: Request, form: Any, token: str | None) -> bool:
    """Whether a POST carries the CSRF value of its browser (as long as those the app
    makes: an empty or short one is none), or the app's token in its `Authorization`
    header."""
    bearer = bearer_token(request.headers)
    if token is not None and bearer is not None:
        return secrets.compare_digest(bearer.encode(), token.encode())
    kept = request.cookies.get(CSRF_COOKIE)
    given = form.get(CSRF_FIELD)
    return (
        isinstance(given, str)
        and kept is not None
        and len(kept) >= CSRF_CHARS
        and secrets.compare_digest(given.encode(), kept.encode())
    )
