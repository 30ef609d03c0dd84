"""The HTTP/1.1 protocol ``idp serve`` runs: uvicorn's httptools protocol, one send per response.

uvicorn writes a response's status line and headers when the app starts the
response, and the body when it arrives: two ``send()`` calls, two TCP segments
and two wake-ups of the client for each answer of a few hundred bytes. On a
small machine, where the load balancer or the client shares the cores, those
system calls are a good part of a token request's cost.

Here the writes made in one turn of the event loop are joined and leave in one
``send()`` at the end of that turn; a large body (at least ``FLUSH_AT`` bytes
waiting) leaves at once, so the transport's flow control still sees it.
Everything else is the transport's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from idp.settings import Settings

FLUSH_AT = 64 * 1024

# How uvicorn serves idp, in `idp serve` and in the tests' live server alike (with the
# proxy options of server_options).
SERVER_OPTIONS: dict[str, Any] = {
    "server_header": False,
    "access_log": False,
    # One send per response (this module's docstring; figures in bench/README.md).
    "http": f"{__name__}:HttpProtocol",
}


def server_options(settings: Settings) -> dict[str, Any]:
    """:data:`SERVER_OPTIONS` with the proxies trusted for ``X-Forwarded-*`` (settings).

    uvicorn's own default trusts them from 127.0.0.1 (or its ``FORWARDED_ALLOW_IPS``
    variable); idp trusts only IDP_FORWARDED_ALLOW_IPS, and with it empty reads no
    forwarded header at all: the client address is the TCP peer's.
    """
    trusted = settings.forwarded_allow_ips
    return {**SERVER_OPTIONS, "proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


class JoinedWrites:
    """A transport whose writes of one loop turn reach the socket together."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._size = 0
        if not self._transport.is_closing():  # a peer that left gets nothing
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over :class:`JoinedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(JoinedWrites(transport, self.loop))  # type: ignore[arg-type]
