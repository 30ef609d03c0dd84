"""Several worker processes on one port, each accepting its own connections.

uvicorn's supervisor binds one listening socket and hands it to every worker:
they share one accept queue, and whichever worker's event loop is awake takes
the connection. The busy worker is the one awake, so a few long-lived
connections (a reverse proxy's keep-alive pool, a load generator's) all land on
one worker while the others idle (figures in bench/README.md).

Here every worker binds the address itself with ``SO_REUSEPORT``: each has its
own accept queue, and the kernel spreads new connections over them by a hash of
the connection's addresses. The supervisor first checks that no one else holds
the port (``SO_REUSEPORT`` alone would let a second ``idp serve`` of the same
user quietly share it), then binds it the workers' way without listening, so
nothing queues there. :class:`WorkerAddress` carries the address to the
workers: handed to a new worker process, it arrives as a socket of that
worker's own, bound to the same address, rather than as a copy of this one
(and, at that point of the worker's start, ties the worker to the supervisor).

When a worker stops, connections still waiting in its own queue are reset; uvicorn
stops accepting before it finishes the requests in hand, so that window is short.

A worker lives no longer than its supervisor: were the supervisor killed (SIGKILL,
the OOM killer), workers left behind would serve unsupervised and hold the port
against the next ``idp serve``. On Linux each worker asks the kernel for SIGTERM
when its parent dies (``PR_SET_PDEATHSIG``) as soon as it starts, and so stops as
it would on ``idp serve``'s own SIGTERM.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys

from uvicorn import Config
from uvicorn.supervisors import Multiprocess


def _bind(family: int, address: tuple, kind: type[socket.socket] = socket.socket) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEPORT``, not yet listening."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


log = logging.getLogger("idp.workers")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with(supervisor: int) -> None:
    """In a worker: be sent SIGTERM when ``supervisor`` (its parent) dies, Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("worker %d will outlive a killed supervisor: prctl failed", os.getpid())
        return
    # The supervisor may have died before the request: then the worker has a new parent
    # already, and no signal will come.
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_socket(family: int, address: tuple, supervisor: int) -> socket.socket:
    """In a worker, as it starts: its own socket on the supervisor's address (uvicorn makes
    it listen), and a life no longer than the supervisor's."""
    _exit_with(supervisor)
    return _bind(family, address)


class WorkerAddress(socket.socket):
    """The supervisor's socket on the serving address, bound and never listening."""

    @classmethod
    def on(cls, host: str, port: int) -> WorkerAddress:
        """Bind ``host:port``; OSError if anyone holds it, with or without ``SO_REUSEPORT``."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as alone:
            alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            alone.bind((host, port))
            address = alone.getsockname()  # port 0: the port the system chose
        return _bind(family, address, cls)  # type: ignore[return-value]

    def __reduce_ex__(self, protocol: object) -> tuple:
        return _worker_socket, (self.family, self.getsockname(), os.getpid())


def run_workers(config: Config) -> None:
    """Serve ``config`` in ``config.workers`` processes, each with its own listening socket."""
    address = WorkerAddress.on(config.host, config.port)
    try:
        Multiprocess(config, sockets=[address]).run()
    finally:
        address.close()
