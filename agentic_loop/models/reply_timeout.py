"""A time limit on a whole reply from a model server over HTTP.

httpx's own timeout bounds each wait for the next part of a response, and starts again with
every part; a server that keeps sending empty parts would hold a reply open for ever.
`whole_reply_limit` gives an httpx client what it needs to end any response still coming a
given number of seconds after its request was sent (ChatOllama takes it as
`async_client_kwargs`)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx


class ReplyTimeout(httpx.ReadTimeout):
    """A response was still coming when the time for the whole reply ran out."""


def whole_reply_limit(seconds: float) -> dict[str, Any]:
    """Keyword arguments for an `httpx.AsyncClient` that end a response with
    `ReplyTimeout` once `seconds` have passed since its request was sent."""
    sent: weakref.WeakKeyDictionary[httpx.Request, float] = weakref.WeakKeyDictionary()

    async def on_request(request: httpx.Request) -> None:
        sent[request] = asyncio.get_running_loop().time()

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        started = sent.pop(request, None)
        if started is None:  # sent by a client without `on_request`
            started = asyncio.get_running_loop().time()
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _Limited(response.stream, request, started + seconds, seconds)

    return {"event_hooks": {"request": [on_request], "response": [on_response]}}


class _Limited(httpx.AsyncByteStream):
    """A response's body that ends with `ReplyTimeout` at `ends` (the event loop's clock)."""

    def __init__(
        self, stream: httpx.AsyncByteStream, request: httpx.Request, ends: float, seconds: float
    ) -> None:
        self._stream = stream
        self._request = request
        self._ends = ends
        self._seconds = seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts = aiter(self._stream)
        while True:
            limit = asyncio.timeout_at(self._ends)
            try:
                async with limit:
                    part = await anext(parts)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not limit.expired():
                    raise
                raise ReplyTimeout(
                    f"its reply was still coming after {self._seconds:g} s", request=self._request
                ) from None
            yield part

    async def aclose(self) -> None:
        await self._stream.aclose()
