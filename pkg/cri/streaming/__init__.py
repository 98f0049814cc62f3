"""kubelab-cri's streaming server: the URLs Exec, Attach and PortForward return (as containerd's and
the kubelet's k8s.io/kubelet/pkg/cri/streaming server serve them), over SPDY/3.1 and WebSocket.

This package root holds what the protocol side (spdy.py, websocket.py, server.py) and the container
side (exec.py, attach.py, portforward.py) share: byte pipes to and from the client, the set of pipes
of one exec or attach, terminal sizes, and the metav1.Status the error channel carries.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import AsyncIterator, Protocol

# remotecommand protocol names (k8s.io/apimachinery/pkg/util/remotecommand)
STREAM_PROTOCOL_V1 = "channel.k8s.io"
STREAM_PROTOCOL_V2 = "v2.channel.k8s.io"
STREAM_PROTOCOL_V3 = "v3.channel.k8s.io"
STREAM_PROTOCOL_V4 = "v4.channel.k8s.io"
STREAM_PROTOCOL_V5 = "v5.channel.k8s.io"
PORT_FORWARD_PROTOCOL_V1 = "portforward.k8s.io"

NON_ZERO_EXIT_CODE_REASON = "NonZeroExitCode"
EXIT_CODE_CAUSE_TYPE = "ExitCode"


class Source(Protocol):
    """Bytes the client sends (stdin, a forwarded connection's data)."""

    async def read(self) -> bytes:
        """The next chunk; b"" once the client closed its side."""


class Sink(Protocol):
    """Bytes to the client (stdout, stderr, the error channel)."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None:
        """No more data from this side (a half-close where the protocol has one)."""


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


@dataclass
class CommandStreams:
    """The client's end of one exec or attach, whatever the protocol."""
    stdin: Source | None
    stdout: Sink | None
    stderr: Sink | None
    resize: Source | None            # a stream of JSON {"Width": w, "Height": h} objects
    tty: bool
    gone: asyncio.Event              # set when the client went away


async def terminal_sizes(source: Source, limit: int = 64 * 1024) -> AsyncIterator[TerminalSize]:
    """Decode the resize stream: JSON objects one after the other, split anywhere (Go's json.Decoder
    on the stream; keys matched case-insensitively as Go does). Ends at EOF or on garbage."""
    decoder = json.JSONDecoder()
    buf = ""
    while True:
        chunk = await source.read()
        if not chunk:
            return
        buf += chunk.decode(errors="replace")
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                obj, end = decoder.raw_decode(buf)
            except ValueError:
                if len(buf) > limit:
                    return
                break                       # incomplete: wait for more
            buf = buf[end:]
            if not isinstance(obj, dict):
                return
            keys = {str(k).lower(): v for k, v in obj.items()}
            try:
                w, h = int(keys.get("width", 0)), int(keys.get("height", 0))
            except (TypeError, ValueError):
                return
            yield TerminalSize(max(0, min(w, 65535)), max(0, min(h, 65535)))


# ---------------------------------------------------------------------------------------------- status

def status_success() -> dict:
    """metav1.Status{Status: Success} as Go marshals it."""
    return {"metadata": {}, "status": "Success"}


def status_exit_code(code: int, cmd: list[str]) -> dict:
    """The status of a command that exited non-zero, as the kubelet's ServeExec writes it."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(cmd)}], exit code {code}",
            "reason": NON_ZERO_EXIT_CODE_REASON,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE_TYPE, "message": str(code)}]}}


def status_internal_error(message: str) -> dict:
    """apierrors.NewInternalError(err)."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


def encode_status(status: dict, structured: bool) -> bytes:
    """What the error channel carries: v4+ the JSON status; earlier protocols only a failure's message."""
    if structured:
        return json.dumps(status, separators=(",", ":")).encode()
    if status.get("status") == "Success":
        return b""
    return str(status.get("message", "")).encode()
