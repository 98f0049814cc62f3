"""Where a probe connects: upstream's probe.ResolveContainerPort and net.JoinHostPort, and the
text Go's dialer gives for a failed connect (which the probes quote in their events)."""
from __future__ import annotations

import errno
import os
import socket

from .results import ProbeError


def resolve_container_port(port: int | str | None, container: dict) -> int:
    """A probe's ``port``: a number, or the name of one of the container's ports (then, as a last
    resort, a number written as a string). ProbeError carries upstream's message otherwise."""
    if port is None or isinstance(port, bool):
        raise ProbeError(f"intOrString had no kind: {port!r}")
    if isinstance(port, int):
        value = port
    else:
        name = str(port)
        value = next((int(p.get("containerPort") or 0) for p in container.get("ports") or []
                      if isinstance(p, dict) and p.get("name") == name), None)
        if value is None:
            try:
                # strconv.Atoi: an optional sign and decimal digits only
                if not name.lstrip("+-").isdigit() or not name.isascii():
                    raise ValueError
                value = int(name)
            except ValueError:
                raise ProbeError(f'strconv.Atoi: parsing "{name}": invalid syntax') from None
    if 0 < value < 65536:
        return value
    raise ProbeError(f"invalid port number: {value}")


def join_host_port(host: str, port: int) -> str:
    """net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Go's syscall error strings for the errnos a connect gives
_GO_ERRNO = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network is unreachable",
    errno.ECONNRESET: "connection reset by peer",
    errno.ETIMEDOUT: "connection timed out",
    errno.EADDRNOTAVAIL: "cannot assign requested address",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def dial_error(addr: str, host: str, err: BaseException | None) -> str:
    """The message of Go's ``net.Dial("tcp", addr)`` failing with ``err`` (None: the timeout)."""
    if err is None:
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(err, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    code = getattr(err, "errno", None)
    if code is None and err.__cause__ is not None:
        code = getattr(err.__cause__, "errno", None)
    if code in _GO_ERRNO:
        return f"dial tcp {addr}: connect: {_GO_ERRNO[code]}"
    if code:
        return f"dial tcp {addr}: connect: {os.strerror(code).lower()}"
    return f"dial tcp {addr}: {err}"
