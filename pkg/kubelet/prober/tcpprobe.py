"""tcpSocket probes, as upstream's pkg/probe/tcp: success when a TCP connection to host:port opens
within the timeout; otherwise a failure quoting Go's dial error ("dial tcp 10.0.0.5:80: connect:
connection refused", "dial tcp 10.0.0.5:80: i/o timeout"). Like upstream's probe dialer, the
socket is closed with SO_LINGER 1 s so probes leave no TIME_WAIT sockets behind."""
from __future__ import annotations

import asyncio
import socket
import struct

from .ports import dial_error, join_host_port
from .results import Outcome, ProbeRun

_LINGER_1S = struct.pack("ii", 1, 1)


def set_probe_linger(sock: socket.socket | None) -> None:
    """SO_LINGER {on, 1 s}: what upstream's ProbeDialer sets on every probe connection."""
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_1S)
        except OSError:
            pass


async def probe_tcp(host: str, port: int, timeout: float) -> ProbeRun:
    """Connect to host:port within ``timeout`` seconds and close the connection again."""
    addr = join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeRun(Outcome.FAILURE, dial_error(addr, host, None))
    except OSError as e:
        return ProbeRun(Outcome.FAILURE, dial_error(addr, host, e))
    set_probe_linger(writer.get_extra_info("socket"))
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return ProbeRun(Outcome.SUCCESS, "")
