"""`idp serve` with several workers: each worker accepts connections on a socket of its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from tests.test_cli import run, serve_env, serving

LISTEN, ESTABLISHED = "0A", "01"
# What reading /proc/<pid>/... raises when the process ends meanwhile (or is no longer ours).
GONE = (FileNotFoundError, ProcessLookupError, PermissionError)


def tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, remote port, inode) of each IPv4 TCP socket whose local port is ``port``."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if int(local.rsplit(":", 1)[1], 16) == port:
            found.append((state, int(remote.rsplit(":", 1)[1], 16), inode))
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds (none once it has ended)."""
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except GONE:
        return inodes
    for fd in fds:
        try:
            target = fd.readlink().as_posix()
        except OSError:  # closed meanwhile, or the process ended
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (none once it has ended)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except GONE:
        return []


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie no longer does: it serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except GONE:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def listening(port: int, pids: Iterable[int]) -> dict[int, set[int]]:
    """Per process, the inodes of its listening sockets on ``port``."""
    listeners = {inode for state, _, inode in tcp_sockets(port) if state == LISTEN}
    return {pid: socket_inodes(pid) & listeners for pid in pids}


def listening_workers(supervisor: int, port: int) -> dict[int, set[int]]:
    """The supervisor's child processes that listen on ``port``, with their sockets' inodes
    (multiprocessing's resource tracker is a child too, and listens nowhere)."""
    return {pid: inodes for pid, inodes in listening(port, children(supervisor)).items() if inodes}


def wait_for_workers(supervisor: int, port: int, count: int) -> dict[int, set[int]]:
    """The supervisor's listening workers, once there are ``count`` (/healthz answered once
    one worker was up)."""
    deadline = time.monotonic() + 30
    while True:
        workers = listening_workers(supervisor, port)
        if len(workers) == count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(workers) == count, workers
    return workers


def test_each_of_two_workers_listens_and_serves_on_its_own_socket(tmp_path: Path):
    env = serve_env(tmp_path, IDP_WORKERS="2")
    port = int(env["IDP_PORT"])
    with serving(env, "--migrate") as server:
        workers = wait_for_workers(server.pid, port, 2)
        first, second = workers.values()
        assert first.isdisjoint(second), "the workers share one listening socket"
        assert not listening(port, [server.pid])[server.pid], "the supervisor listens"

        # 24 connections, kept open: the kernel spreads them over the two queues (the
        # chance that all land on one worker is 2 in 2**24)
        clients = []
        try:
            for _ in range(24):
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert client.recv(4096).startswith(b"HTTP/1.1 200"), "no answer"
                clients.append(client)
            ours = {client.getsockname()[1] for client in clients}
            served = {
                inode
                for state, remote, inode in tcp_sockets(port)
                if state == ESTABLISHED and remote in ours
            }
            assert len(served) == 24
            per_worker = {pid: len(socket_inodes(pid) & served) for pid in workers}
            assert sum(per_worker.values()) == 24, per_worker
            assert all(count > 0 for count in per_worker.values()), per_worker
        finally:
            for client in clients:
                client.close()

        # a worker that dies is replaced by one that binds a socket of its own again
        dead = next(iter(workers))
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            now = listening_workers(server.pid, port)
            if (len(now) == 2 and dead not in now) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(now) == 2 and dead not in now, now
        first, second = now.values()
        assert first.isdisjoint(second)


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "reuse-port"])
def test_workers_refuse_a_port_someone_else_listens_on(tmp_path: Path, reuse_port: bool):
    env = serve_env(tmp_path, IDP_WORKERS="2")
    port = int(env["IDP_PORT"])
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("keys", "ensure", env=env).returncode == 0
    with socket.socket() as other:
        # another server, or another idp serve (which would otherwise share the port)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        try:
            result = run("serve", env=env, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("idp serve started on a port another server listens on")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"idp: cannot listen on 127.0.0.1:{port}:"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.faults
def test_workers_stop_with_a_killed_master_and_a_new_server_takes_the_port(tmp_path: Path):
    env = serve_env(tmp_path, IDP_WORKERS="2")
    port = int(env["IDP_PORT"])
    with serving(env, "--migrate") as master:
        workers = wait_for_workers(master.pid, port, 2)
        os.kill(master.pid, signal.SIGKILL)
        master.wait()
        deadline = time.monotonic() + 10
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
        for pid in left:  # no one else would stop them
            os.kill(pid, signal.SIGKILL)
        assert not left, "workers outlived their master"

    with serving(env) as again:
        assert len(wait_for_workers(again.pid, port, 2)) == 2
        assert httpx.get(f"{env['IDP_ISSUER']}/readyz").status_code == 200


def test_the_proc_helpers_see_a_process_that_ends_as_one_without_sockets():
    # A worker that exits while a test lists its sockets: gone, or a zombie not yet reaped.
    ended = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while alive(ended.pid) and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.01)
    assert not alive(ended.pid)
    assert socket_inodes(ended.pid) == set()
    assert children(ended.pid) == []
    ended.wait()
    assert (socket_inodes(ended.pid), children(ended.pid), alive(ended.pid)) == (set(), [], False)
