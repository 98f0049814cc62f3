"""Attach to a running container's stdio through its conmon (see kubelab.cri.runtime.conmon).

The container's conmon listens on <bundle>/attach (SOCK_SEQPACKET). Each packet it sends is one
read of the container's output prefixed by a byte naming the pipe (2 stdout, 3 stderr); what the
client sends is written to the container's stdin as is. The attach ends when conmon closes the
socket (the container exited), when the client goes away, or when the client closes its stdin: then
the socket's sending side is shut down, conmon closes the container's stdin if it was created with
stdin_once (otherwise it leaves it open for the next attach), and, as containerd does, the output of
a stdin_once container keeps coming until it exits while other attaches end there.
Resizes go to conmon's ctl fifo.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from kubelab.cri.runtime.conmon import (ATTACH_PIPE_STDERR, ATTACH_PIPE_STDOUT, ConmonError, attach_socket_path,
                                        resize_terminal)
from kubelab.cri.streaming import CommandStreams, Sink, Source, terminal_sizes

log = logging.getLogger("kubelab.cri.streaming.attach")

CONNECT_TIMEOUT = 10.0
PACKET = 8192 + 64          # conmon sends at most its 8 KiB buffer plus the pipe byte


class AttachError(Exception):
    """The container's conmon cannot be reached; str() is one line."""


async def connect(bundle: Path, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A non-blocking SEQPACKET connection to the conmon attach socket of this bundle."""
    path = attach_socket_path(bundle)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    dirfd = -1
    try:
        addr = str(path)
        if len(addr.encode()) >= 108:       # sockaddr_un: reach it through the directory's fd
            dirfd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
            addr = f"/proc/self/fd/{dirfd}/{path.name}"
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, addr), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        sock.close()
        why = "timed out" if isinstance(e, asyncio.TimeoutError) else (e.strerror or str(e))
        raise AttachError(f"cannot connect to the attach socket of the container: {why}") from None
    finally:
        if dirfd >= 0:
            os.close(dirfd)
    return sock


async def run(target: Any, streams: CommandStreams) -> None:
    """Attach streams to the container target (a RuntimeService ExecTarget) until the attach ends."""
    sock = await connect(target.bundle)
    tasks: dict[str, asyncio.Task] = {}
    try:
        tasks["out"] = asyncio.ensure_future(_copy_out(sock, streams.stdout, streams.stderr, target.tty))
        if streams.stdin is not None and target.stdin:
            tasks["in"] = asyncio.ensure_future(_copy_in(streams.stdin, sock))
        elif streams.stdin is not None:
            tasks["discard"] = asyncio.ensure_future(_discard(streams.stdin))
        if streams.resize is not None:
            tasks["resize"] = asyncio.ensure_future(_resize(target, streams.resize))
        while True:
            waiting = [t for k, t in tasks.items() if k in ("out", "in") and not t.done()]
            if not waiting:
                break
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if tasks["out"].done():
                break                       # conmon closed the socket: the container exited
            if "in" in tasks and tasks["in"].done() and not target.stdin_once:
                break                       # the client closed stdin: detach
        for t in tasks.values():
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.debug("attach %s: %s", target.id[:13], t.exception())
    finally:
        for t in tasks.values():
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        sock.close()


async def _copy_out(sock: socket.socket, stdout: Sink | None, stderr: Sink | None, tty: bool) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            packet = await loop.sock_recv(sock, PACKET)
        except (ConnectionError, OSError):
            return
        if not packet:
            return
        pipe, data = packet[0], packet[1:]
        if not data:
            continue
        sink = stderr if (pipe == ATTACH_PIPE_STDERR and not tty) else stdout
        if pipe not in (ATTACH_PIPE_STDOUT, ATTACH_PIPE_STDERR):
            continue
        if sink is not None:
            await sink.write(data)


async def _copy_in(source: Source, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await source.read()
            if not data:
                break
            # conmon reads at most 8 KiB per packet: send in pieces it takes whole
            for i in range(0, len(data), 8191):
                await loop.sock_sendall(sock, data[i:i + 8191])
    except (ConnectionError, OSError):
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


async def _discard(source: Source) -> None:
    """The container has no stdin: what the client types goes nowhere (but is read)."""
    while await source.read():
        pass


async def _resize(target: Any, source: Source) -> None:
    async for size in terminal_sizes(source):
        try:
            resize_terminal(target.id, target.bundle, size.height, size.width)
        except ConmonError as e:
            log.info("attach %s: %s", target.id[:13], e)
            return
