"""The HTTP protocol `idp serve` runs (idp/web/http_protocol.py): one send per response."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

import pytest

from idp.web.http_protocol import FLUSH_AT, JoinedWrites
from tests.conftest import on_own_loop
from tests.test_cli import run, serve_env, serving

# struct tcp_info (linux/tcp.h): tcpi_data_segs_in, segments that carried data (Linux 4.6+).
DATA_SEGS_IN = 152


class Recorder:
    """The transport's side of the wrapper: what reached it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("eof", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


def scenario(steps: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    """Run ``steps`` on an event loop of its own; ``await asyncio.sleep(0)`` in it ends a
    loop turn (the flush scheduled in a turn runs before the coroutine resumes)."""

    async def run() -> None:
        await steps(asyncio.get_running_loop())

    on_own_loop(run())


def test_writes_of_one_loop_turn_reach_the_transport_as_one():
    async def steps(loop: asyncio.AbstractEventLoop) -> None:
        inner = Recorder()
        joined = JoinedWrites(inner, loop)
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.write(b"{}")
        assert inner.calls == []
        await asyncio.sleep(0)
        assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n{}")]
        joined.write(b"next")
        await asyncio.sleep(0)
        assert inner.calls[1:] == [("write", b"next")]
        assert joined.get_extra_info("peername") == "info peername"

    scenario(steps)


def test_a_large_body_leaves_at_once_so_flow_control_sees_it():
    async def steps(loop: asyncio.AbstractEventLoop) -> None:
        inner = Recorder()
        joined = JoinedWrites(inner, loop)
        joined.write(b"head")
        joined.write(b"x" * FLUSH_AT)
        assert inner.calls == [("write", b"head" + b"x" * FLUSH_AT)]
        await asyncio.sleep(0)
        assert len(inner.calls) == 1

    scenario(steps)


def test_close_and_write_eof_send_what_waits_first():
    async def steps(loop: asyncio.AbstractEventLoop) -> None:
        for end in ("close", "write_eof"):
            inner = Recorder()
            joined = JoinedWrites(inner, loop)
            joined.write(b"last answer")
            getattr(joined, end)()
            assert inner.calls == [("write", b"last answer"), (end.removeprefix("write_"), b"")]

    scenario(steps)


def test_a_transport_that_is_closing_gets_nothing_more():
    async def steps(loop: asyncio.AbstractEventLoop) -> None:
        inner = Recorder()
        joined = JoinedWrites(inner, loop)
        inner.closing = True  # the peer left
        joined.write(b"too late")
        await asyncio.sleep(0)
        assert inner.calls == []

    scenario(steps)


@pytest.fixture
def served(tmp_path):
    env = serve_env(tmp_path)
    assert run("db", "upgrade", env=env).returncode == 0
    with serving(env, "--migrate"):
        yield int(env["IDP_PORT"])


def read_answer(sock: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One whole answer from ``sock`` (after what ``buffer`` holds already): its head, its
    body, and what came after it."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed before the head was complete"
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed before the body was complete"
        rest += chunk
    return head, rest[:length], rest[length:]


def ask(sock: socket.socket, port: int, extra: str = "") -> tuple[bytes, bytes]:
    """One GET of the discovery document; the head and the whole body."""
    request = f"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    sock.sendall(f"{request}{extra}\r\n".encode())
    head, body, rest = read_answer(sock)
    assert rest == b""
    return head, body


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's tcp_info")
def test_each_answer_of_idp_serve_arrives_in_one_tcp_segment(served):
    with socket.create_connection(("127.0.0.1", served)) as sock:

        def data_segments() -> int:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            return struct.unpack_from("I", info, DATA_SEGS_IN)[0]

        ask(sock, served)  # the first answer, measured from here on
        before = data_segments()
        for _ in range(20):
            head, body = ask(sock, served)
            assert head.startswith(b"HTTP/1.1 200")
            assert json.loads(body)["issuer"] == f"http://127.0.0.1:{served}"
        # Status line, headers and body in one segment each: uvicorn alone sends two.
        assert data_segments() - before == 20


def test_an_answer_before_connection_close_arrives_whole(served):
    with socket.create_connection(("127.0.0.1", served)) as sock:
        head, body = ask(sock, served, "Connection: close\r\n")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["issuer"] == f"http://127.0.0.1:{served}"
        sock.settimeout(5)
        assert sock.recv(1) == b""  # and then the server closed


def test_pipelined_requests_get_their_answers_whole_and_in_order(served):
    with socket.create_connection(("127.0.0.1", served)) as sock:
        host = f"Host: 127.0.0.1:{served}\r\n"
        sock.sendall(
            f"GET /jwks.json HTTP/1.1\r\n{host}\r\n"
            f"GET /.well-known/openid-configuration HTTP/1.1\r\n{host}\r\n".encode()
        )
        sock.settimeout(5)
        head, keys, rest = read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200") and "keys" in json.loads(keys)
        head, metadata, rest = read_answer(sock, rest)
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(metadata)["issuer"] == f"http://127.0.0.1:{served}"
        assert rest == b""
