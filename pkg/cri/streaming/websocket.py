"""The Kubernetes channel protocols over WebSocket (k8s.io/apiserver/pkg/util/wsstream).

Every message carries one channel's bytes, prefixed by the channel number: a raw byte for the binary
protocols ("channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io"), an ASCII digit followed by
the base64 of the data (text messages) for the base64 ones ("base64.channel.k8s.io",
"v4.base64.channel.k8s.io"). No subprotocol at all means binary. For exec and attach the channels
are 0 stdin, 1 stdout, 2 stderr, 3 error (the status), 4 resize; "v4." protocols write the status as
a metav1.Status JSON, earlier ones only a failure's message, and v5 adds the client's half-close:
the message [255, channel] ends that channel's input. Port forwarding over WebSocket uses the
channels 2i (data) and 2i+1 (error) for the i-th requested port, each starting with the port number
as a little-endian uint16. The server negotiates the first protocol the client lists that it knows,
and refuses (403) a client that lists only unknown ones.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import struct
import time
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from kubelab.cri.streaming import (STREAM_PROTOCOL_V1, STREAM_PROTOCOL_V4, STREAM_PROTOCOL_V5, CommandStreams,
                                   encode_status)

log = logging.getLogger("kubelab.cri.streaming.websocket")

PROTOCOL_HEADER = "Sec-WebSocket-Protocol"
STREAM_CLOSE = 255
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
PORT_DATA, PORT_ERROR = 0, 1


@dataclass(frozen=True)
class ChannelProtocol:
    name: str
    binary: bool                 # raw channel byte (else: digit + base64, text messages)
    structured_status: bool      # the error channel carries a metav1.Status JSON
    stream_close: bool = False   # v5: [255, channel] half-closes a channel


BASE64_V1 = "base64." + STREAM_PROTOCOL_V1
BASE64_V4 = "v4.base64." + STREAM_PROTOCOL_V1

REMOTE_COMMAND_PROTOCOLS = {p.name: p for p in (
    ChannelProtocol("", True, False),
    ChannelProtocol(STREAM_PROTOCOL_V1, True, False),
    ChannelProtocol(BASE64_V1, False, False),
    ChannelProtocol(STREAM_PROTOCOL_V4, True, True),
    ChannelProtocol(BASE64_V4, False, True),
    ChannelProtocol(STREAM_PROTOCOL_V5, True, True, stream_close=True),
)}
PORT_FORWARD_PROTOCOLS = {p.name: p for p in (
    ChannelProtocol("", True, False),
    ChannelProtocol(STREAM_PROTOCOL_V4, True, False),
    ChannelProtocol(BASE64_V4, False, False),
)}


def is_websocket_request(headers) -> bool:
    return headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in headers.get("Connection", "").lower()


def requested_protocols(values: list[str]) -> list[str]:
    """The subprotocols a client asked for, in its order (comma-separated, possibly several headers)."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def negotiate(requested: list[str], supported: dict[str, ChannelProtocol]) -> ChannelProtocol | None:
    """The first requested protocol the server supports; "" when none was requested; None if the
    client asked only for unknown ones."""
    if not requested:
        return supported.get("")
    for p in requested:
        if p and p in supported:
            return supported[p]
    return None


def encode_message(proto: ChannelProtocol, channel: int, data: bytes) -> bytes | str:
    if proto.binary:
        return bytes([channel]) + data
    return chr(ord("0") + channel) + base64.b64encode(data).decode()


def decode_message(proto: ChannelProtocol, msg: bytes | str) -> tuple[int, bytes]:
    """(channel, data) of a client message; raises ValueError on a malformed one."""
    raw = msg.encode("latin-1") if isinstance(msg, str) else msg
    if not raw:
        raise ValueError("empty message")
    if proto.stream_close and raw[0] == STREAM_CLOSE:
        return STREAM_CLOSE, raw[1:]
    if proto.binary:
        return raw[0], raw[1:]
    channel = raw[0] - ord("0")
    try:
        return channel, base64.b64decode(raw[1:], validate=True)
    except binascii.Error:
        raise ValueError("invalid base64 data") from None


def port_prefix(port: int) -> bytes:
    return struct.pack("<H", port)


class Channel:
    """One channel: a Source when readable, a Sink when writable (else reads give EOF and writes
    are dropped, as upstream's ignored channels)."""

    def __init__(self, conn: "ChannelConn", num: int, readable: bool, writable: bool) -> None:
        self.conn = conn
        self.num = num
        self.readable = readable
        self.writable = writable
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)
        self.eof = False

    async def read(self) -> bytes:
        if not self.readable:
            return b""
        data = await self._incoming.get()
        if not data:
            self._incoming.put_nowait(b"")
        return data

    def _end_input(self) -> None:
        if not self.eof:
            self.eof = True
            try:
                self._incoming.put_nowait(b"")
            except asyncio.QueueFull:
                self._incoming.get_nowait()
                self._incoming.put_nowait(b"")

    async def _deliver(self, data: bytes) -> None:
        if self.readable and not self.eof and data:
            await self._incoming.put(data)

    async def write(self, data: bytes) -> None:
        if self.writable:
            await self.conn.send(self.num, data)

    async def close(self) -> None:
        """Nothing goes on the wire: the channel protocols have no server-side half-close."""


class ChannelConn:
    """A WebSocket carrying channels. Created after the upgrade; run() reads until the client closes
    (then `gone` is set and every channel's input ends)."""

    def __init__(self, ws: web.WebSocketResponse, proto: ChannelProtocol, kinds: list[tuple[bool, bool]],
                 idle_timeout: float | None = None) -> None:
        self.ws = ws
        self.proto = proto
        self.channels = [Channel(self, i, r, w) for i, (r, w) in enumerate(kinds)]
        self.gone = asyncio.Event()
        self.idle_timeout = idle_timeout
        self._last = time.monotonic()
        self._lock = asyncio.Lock()
        self._reader = asyncio.ensure_future(self._run())

    async def send(self, channel: int, data: bytes) -> None:
        if self.gone.is_set() or self.ws.closed:
            raise ConnectionResetError("the websocket is closed")
        msg = encode_message(self.proto, channel, data)
        async with self._lock:
            if isinstance(msg, bytes):
                await self.ws.send_bytes(msg)
            else:
                await self.ws.send_str(msg)
        self._last = time.monotonic()

    async def _run(self) -> None:
        try:
            while True:
                timeout = None
                if self.idle_timeout:
                    timeout = max(0.1, self._last + self.idle_timeout - time.monotonic())
                try:
                    msg = await self.ws.receive(timeout=timeout)
                except asyncio.TimeoutError:
                    if self.idle_timeout and time.monotonic() - self._last >= self.idle_timeout:
                        log.info("websocket: idle for %ss, closing", self.idle_timeout)
                        return
                    continue
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    return
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                self._last = time.monotonic()
                try:
                    channel, data = decode_message(self.proto, msg.data)
                except ValueError as e:
                    log.debug("websocket: dropping a message: %s", e)
                    continue
                if channel == STREAM_CLOSE:
                    if len(data) != 1 or data[0] >= len(self.channels):
                        log.info("websocket: invalid close signal %r, closing", data)
                        return
                    self.channels[data[0]]._end_input()
                    continue
                if 0 <= channel < len(self.channels):
                    await self.channels[channel]._deliver(data)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return
        finally:
            self.gone.set()
            for c in self.channels:
                c._end_input()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        if not self._reader.done():
            self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def accept(request: web.Request,
                 supported: dict[str, ChannelProtocol]) -> tuple[web.StreamResponse, ChannelProtocol | None]:
    """Negotiate the subprotocol and upgrade. Returns (ws, protocol), or (error response, None)."""
    proto = negotiate(requested_protocols(request.headers.getall(PROTOCOL_HEADER, [])), supported)
    if proto is None:
        offered = ", ".join(sorted(p or '""' for p in supported))
        return web.Response(status=403, text=f"requested protocol(s) are not supported: "
                                             f"{request.headers.get(PROTOCOL_HEADER, '')}; supports {offered}\n"), None
    ws = web.WebSocketResponse(protocols=(proto.name,) if proto.name else (), autoping=True, max_msg_size=16 << 20)
    await ws.prepare(request)
    return ws, proto


class CommandConn:
    """exec/attach over a WebSocket: the five channels and the status on the error channel."""

    def __init__(self, ws: web.WebSocketResponse, proto: ChannelProtocol, stdin: bool, stdout: bool, stderr: bool,
                 tty: bool, idle_timeout: float | None) -> None:
        self.response = ws
        self.proto = proto
        self.conn = ChannelConn(ws, proto, [(stdin, False), (False, stdout), (False, stderr), (False, True),
                                            (tty, False)], idle_timeout)
        ch = self.conn.channels
        self.streams = CommandStreams(stdin=ch[STDIN] if stdin else None, stdout=ch[STDOUT] if stdout else None,
                                      stderr=ch[STDERR] if stderr else None, resize=ch[RESIZE] if tty else None,
                                      tty=tty, gone=self.conn.gone)

    async def start(self) -> None:
        # an empty message on the lowest writable channel tells the client the streams are ready
        first = STDOUT if self.streams.stdout else STDERR if self.streams.stderr else ERROR
        await self.conn.send(first, b"")

    async def send_status(self, status: dict) -> None:
        data = encode_status(status, self.proto.structured_status)
        if data:
            await self.conn.send(ERROR, data)

    async def close(self) -> None:
        await self.conn.close()
