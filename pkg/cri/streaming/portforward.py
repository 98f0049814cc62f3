"""Forward one client connection to a port inside a pod sandbox's network namespace.

The TCP socket is made and connected in a short-lived thread that setns()es into the sandbox's
network namespace (namespaces.run_in_netns: a socket stays in the namespace it was created in),
then handed to asyncio.
As containerd does, the target is localhost: 127.0.0.1, then ::1. A sandbox on the host network
(no namespace of its own) is reached on the host's loopback.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from kubelab.cri.runtime import namespaces
from kubelab.cri.streaming import Sink, Source

log = logging.getLogger("kubelab.cri.streaming.portforward")

CONNECT_TIMEOUT = 10.0


class PortForwardError(Exception):
    """The port cannot be reached; str() is one line."""


def _connect(port: int, timeout: float) -> socket.socket:
    """A connected non-blocking socket to localhost:port in this thread's network namespace."""
    errors = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError as e:
            errors.append(f"{host}: {e.strerror}")
            continue
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            errors.append(f"{host}: {e.strerror or 'timed out'}")
    raise PortForwardError(f"failed to connect to localhost:{port} inside the pod network namespace: "
                           + "; ".join(errors))


async def connect(netns: str, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connected non-blocking socket to localhost:port in the namespace at path netns ("" = host)."""
    if not 0 < port < 65536:
        raise PortForwardError(f"invalid port {port}")
    if not netns:
        return await asyncio.to_thread(_connect, port, timeout)
    try:
        return await namespaces.run_in_netns(Path(netns), lambda: _connect(port, timeout))
    except namespaces.NamespaceError as e:
        raise PortForwardError(str(e)) from None


async def forward(netns: str, port: int, source: Source, sink: Sink) -> None:
    """Connect to the port and copy both ways until the target closes its side (or the client's side
    and then the target's end). The client's end of input becomes a TCP half-close."""
    sock = await connect(netns, port)
    loop = asyncio.get_running_loop()

    async def upstream() -> None:
        try:
            while True:
                data = await source.read()
                if not data:
                    break
                await loop.sock_sendall(sock, data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    up = asyncio.ensure_future(upstream())
    try:
        while True:
            try:
                data = await loop.sock_recv(sock, 64 * 1024)
            except ConnectionError:
                break
            if not data:
                break
            await sink.write(data)
    finally:
        if not up.done():
            up.cancel()
        await asyncio.gather(up, return_exceptions=True)
        sock.close()
