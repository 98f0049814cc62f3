"""SPDY/3.1, as much as the Kubernetes streaming protocols use (the kubelet's and containerd's
streaming servers speak it through github.com/moby/spdystream; kubectl and client-go are its clients).

Wire format (draft-mbelshe-httpbis-spdy-00, SPDY/3):
  control frame  |1|version=3 (15)|type (16)|flags (8)|length (24)|payload
  data frame     |0|stream id (31)|flags (8)|length (24)|payload          flags 0x01 = FIN
  SYN_STREAM(1)  stream id, associated stream id, priority (3 bits) + 5 unused + slot, header block
  SYN_REPLY(2)   stream id, header block          RST_STREAM(3)  stream id, status
  SETTINGS(4)    count, (flags 8 | id 24, value 32)*                PING(6)  id
  GOAWAY(7)      last good stream id, status      HEADERS(8)  stream id, header block
  WINDOW_UPDATE(9) stream id, delta
A header block is `count, (len name, name, len value, value)*` (32-bit big-endian lengths, lower-case
names, several values joined by NUL), compressed with zlib using the SPDY/3 dictionary; each direction
of a connection keeps ONE compression context for all its header blocks, flushed (Z_SYNC_FLUSH) after
each block, so blocks must be compressed and decompressed in wire order.

Streams opened by the client have odd ids, by the server even ids. Either side half-closes a stream
with FIN (an empty DATA frame with the FIN flag) and aborts it with RST_STREAM. Like spdystream, this
implementation does no flow control: it never sends WINDOW_UPDATE and ignores received ones (spdystream
peers never send them either, so enforcing windows would stall every stream after 64 KiB).

SpdySession is transport-neutral: feed() it received bytes, give it an async send() for outgoing
bytes. upgrade() turns an aiohttp request into a server session (HTTP/1.1 101 `Upgrade: SPDY/3.1`).
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar, Iterable

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("kubelab.cri.streaming.spdy")

VERSION = 3
UPGRADE_TOKEN = "SPDY/3.1"

# control frame types
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
FLOW_CONTROL_ERROR, STREAM_IN_USE, STREAM_ALREADY_CLOSED, INVALID_CREDENTIALS, FRAME_TOO_LARGE = 7, 8, 9, 10, 11
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

MAX_FRAME_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20          # decompressed bytes; more is treated as a protocol error
DATA_CHUNK = 32 * 1024              # outgoing DATA frames carry at most this much
READ_HIGH_WATER = 1 << 20           # unread bytes in one stream that pause reading from the peer
READ_LOW_WATER = 256 * 1024         # ... and resume it

_HEADER_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
    "set-cookie", "keep-alive", "origin")
_HEADER_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")

# The zlib dictionary of SPDY/3 header compression (spec section 2.6.10.1): each well-known word
# with a 32-bit length prefix, then a run of common values without prefixes.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _HEADER_WORDS) + _HEADER_TAIL.encode()


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3; the session is over."""


class StreamClosed(Exception):
    """Writing to a stream that was half-closed by us, reset, or whose session is gone."""


Headers = list[tuple[str, str]]


def encode_header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """The uncompressed name/value block: names lower-cased, repeated names joined with NUL."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value)
    out = [struct.pack(">I", len(merged))]
    for name, values in merged.items():
        n, v = name.encode(), "\0".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos, out = 4, []
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + n]
            pos += 4 + n
            (m,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + m]
            pos += 4 + m
            if len(name) != n or len(value) != m:
                raise ProtocolError("truncated header block")
            if not name or name != name.lower():
                raise ProtocolError(f"invalid header name {name!r}")
            for v in value.split(b"\0"):
                out.append((name.decode("latin-1"), v.decode("latin-1")))
    except struct.error:
        raise ProtocolError("truncated header block") from None
    if pos != len(block):
        raise ProtocolError("trailing bytes after the header block")
    return out


class HeaderCompressor:
    """One direction's header compression context."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def compress(self, headers: Iterable[tuple[str, str]]) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The peer's header compression context, as seen from this side."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, DICTIONARY)

    def decompress(self, data: bytes) -> Headers:
        try:
            block = self._z.decompress(data, MAX_HEADER_BLOCK + 1)
        except zlib.error as e:
            raise ProtocolError(f"cannot decompress a header block: {e}") from None
        if len(block) > MAX_HEADER_BLOCK or self._z.unconsumed_tail:
            raise ProtocolError("header block too large")
        return decode_header_block(block)


# ---------------------------------------------------------------------------------------------- frames

@dataclass
class Frame:
    pass


@dataclass
class DataFrame(Frame):
    stream_id: int
    data: bytes = b""
    flags: int = 0


@dataclass
class SynStream(Frame):
    stream_id: int
    headers: Headers = field(default_factory=list)
    flags: int = 0
    associated_id: int = 0
    priority: int = 0
    slot: int = 0


@dataclass
class StreamHeaders(Frame):
    """The payload SYN_REPLY and HEADERS share (a stream id and a header block); TYPE tells them apart."""
    TYPE: ClassVar[int]
    stream_id: int
    headers: Headers = field(default_factory=list)
    flags: int = 0


@dataclass
class SynReply(StreamHeaders):
    TYPE: ClassVar[int] = SYN_REPLY


@dataclass
class RstStream(Frame):
    stream_id: int
    status: int = CANCEL


@dataclass
class Settings(Frame):
    entries: list[tuple[int, int, int]] = field(default_factory=list)   # (flags, id, value)
    flags: int = 0


@dataclass
class Ping(Frame):
    id: int


@dataclass
class GoAway(Frame):
    last_good_stream_id: int = 0
    status: int = GOAWAY_OK


@dataclass
class HeadersFrame(StreamHeaders):
    TYPE: ClassVar[int] = HEADERS


@dataclass
class WindowUpdate(Frame):
    stream_id: int
    delta: int


@dataclass
class UnknownControl(Frame):
    type: int
    flags: int
    payload: bytes


def _control(type_: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError("SPDY frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, type_, (flags << 24) | len(payload)) + payload


def encode_frame(frame: Frame, compressor: HeaderCompressor) -> bytes:
    """Serialize a frame; header blocks go through (and advance) the compressor."""
    if isinstance(frame, DataFrame):
        if len(frame.data) > MAX_FRAME_LENGTH:
            raise ValueError("SPDY frame too large")
        return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data)) + frame.data
    if isinstance(frame, SynStream):
        fixed = struct.pack(">IIBB", frame.stream_id & 0x7FFFFFFF, frame.associated_id & 0x7FFFFFFF,
                            (frame.priority & 0x7) << 5, frame.slot)
        return _control(SYN_STREAM, frame.flags, fixed + compressor.compress(frame.headers))
    if isinstance(frame, StreamHeaders):
        return _control(frame.TYPE, frame.flags, struct.pack(">I", frame.stream_id & 0x7FFFFFFF)
                        + compressor.compress(frame.headers))
    if isinstance(frame, RstStream):
        return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF, frame.status))
    if isinstance(frame, Settings):
        body = struct.pack(">I", len(frame.entries)) + b"".join(
            struct.pack(">II", (f << 24) | (i & 0xFFFFFF), v) for f, i, v in frame.entries)
        return _control(SETTINGS, frame.flags, body)
    if isinstance(frame, Ping):
        return _control(PING, 0, struct.pack(">I", frame.id))
    if isinstance(frame, GoAway):
        return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id & 0x7FFFFFFF, frame.status))
    if isinstance(frame, WindowUpdate):
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF, frame.delta & 0x7FFFFFFF))
    raise TypeError(f"cannot encode {type(frame).__name__}")


class FrameParser:
    """Incremental parser: feed() bytes as they arrive, get back the complete frames."""

    def __init__(self, decompressor: HeaderDecompressor | None = None) -> None:
        self._buf = bytearray()
        self._headers = decompressor or HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            word0, word1 = struct.unpack_from(">II", self._buf, 0)
            length = word1 & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = word1 >> 24
            if word0 & 0x80000000:
                version, type_ = (word0 >> 16) & 0x7FFF, word0 & 0xFFFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(self._control(type_, flags, payload))
            else:
                frames.append(DataFrame(word0 & 0x7FFFFFFF, payload, flags))
        return frames

    def _control(self, type_: int, flags: int, p: bytes) -> Frame:
        try:
            if type_ == SYN_STREAM:
                sid, assoc, pri, slot = struct.unpack_from(">IIBB", p, 0)
                return SynStream(sid & 0x7FFFFFFF, self._headers.decompress(p[10:]), flags, assoc & 0x7FFFFFFF,
                                 pri >> 5, slot)
            if type_ in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                cls = SynReply if type_ == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._headers.decompress(p[4:]), flags)
            if type_ == RST_STREAM:
                sid, status = struct.unpack_from(">II", p, 0)
                return RstStream(sid & 0x7FFFFFFF, status)
            if type_ == SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(entries, flags)
            if type_ == PING:
                return Ping(struct.unpack_from(">I", p, 0)[0])
            if type_ == GOAWAY:
                # SPDY/2 peers send no status: accept a 4-byte payload too
                last = struct.unpack_from(">I", p, 0)[0]
                status = struct.unpack_from(">I", p, 4)[0] if len(p) >= 8 else GOAWAY_OK
                return GoAway(last & 0x7FFFFFFF, status)
            if type_ == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p, 0)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise ProtocolError(f"truncated control frame of type {type_}") from None
        return UnknownControl(type_, flags, p)


# ---------------------------------------------------------------------------------------------- streams

class SpdyStream:
    """One stream of a session: a byte pipe in each direction, each half-closed with FIN."""

    def __init__(self, session: "SpdySession", stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._incoming: asyncio.Queue[bytes] = asyncio.Queue()
        self.buffered = 0              # bytes received and not read yet
        self.discarding = False        # nobody reads this stream: drop what comes
        self.remote_closed = False     # FIN or RST received: no more data will come
        self.local_closed = False      # FIN sent
        self.was_reset = False
        self.replied = asyncio.Event()

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    # -- incoming
    def discard_input(self) -> None:
        """Nobody will read this stream: drop what the peer sends on it (so it cannot stall the others)."""
        self.discarding = True
        while not self._incoming.empty():
            if not self._incoming.get_nowait():
                self._incoming.put_nowait(b"")
                break
        self.buffered = 0
        self.session._resume(self)

    def _deliver(self, data: bytes) -> None:
        if data and not self.remote_closed and not self.discarding:
            self._incoming.put_nowait(data)
            self.buffered += len(data)
            if self.buffered > READ_HIGH_WATER:
                self.session._pause(self)

    def _remote_fin(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._incoming.put_nowait(b"")

    async def read(self) -> bytes:
        """The next chunk the peer sent; b"" once it half-closed (or reset) the stream."""
        data = await self._incoming.get()
        if not data:
            self._incoming.put_nowait(b"")     # keep answering EOF
        else:
            self.buffered -= len(data)
            if self.buffered < READ_LOW_WATER:
                self.session._resume(self)
        return data

    # -- outgoing
    async def write(self, data: bytes) -> None:
        if self.local_closed or self.was_reset:
            raise StreamClosed(f"stream {self.id} is closed")
        view = memoryview(data)
        for i in range(0, len(view), DATA_CHUNK):
            await self.session.send_frame(DataFrame(self.id, bytes(view[i:i + DATA_CHUNK])))

    async def close(self) -> None:
        """Half-close: tell the peer nothing more comes from this side (idempotent)."""
        if self.local_closed or self.was_reset or self.session.closed.is_set():
            self.local_closed = True
            return
        self.local_closed = True
        try:
            await self.session.send_frame(DataFrame(self.id, b"", FLAG_FIN))
        except StreamClosed:
            pass
        self.session._maybe_forget(self)

    async def reset(self, status: int = CANCEL) -> None:
        if self.was_reset:
            return
        self._on_reset()
        if not self.session.closed.is_set():
            try:
                await self.session.send_frame(RstStream(self.id, status))
            except StreamClosed:
                pass

    def _on_reset(self) -> None:
        self.was_reset = True
        self.local_closed = True
        self._remote_fin()
        self.replied.set()
        self.session.streams.pop(self.id, None)
        self.session._resume(self)

    def __repr__(self) -> str:
        return f"SpdyStream({self.id}, {self.headers})"


# ---------------------------------------------------------------------------------------------- session

StreamHandler = Callable[[SpdyStream], bool]


class SpdySession:
    """One SPDY connection. Outgoing frames go through a single writer task in order (header
    compression depends on it); incoming bytes are fed synchronously.

    on_stream(stream) is called for each stream the peer opens and returns whether to accept it
    (a SYN_REPLY is queued) or refuse it (RST_STREAM REFUSED_STREAM). `closed` is set when the
    connection ended: EOF, a GOAWAY from the peer, a protocol error, the idle timeout, or close().
    """

    def __init__(self, send: Callable[[bytes], Awaitable[None]], *, server: bool,
                 on_stream: StreamHandler | None = None, idle_timeout: float | None = None,
                 pause_reading: Callable[[], None] | None = None,
                 resume_reading: Callable[[], None] | None = None) -> None:
        self._send = send
        self._pause_reading = pause_reading
        self._resume_reading = resume_reading
        self._full: set[int] = set()     # streams over the high-water mark
        self.server = server
        self.on_stream = on_stream
        self.streams: dict[int, SpdyStream] = {}
        self._compressor = HeaderCompressor()
        self._parser = FrameParser()
        self._next_id = 2 if server else 1
        self._next_ping = 2 if server else 1
        self._last_remote_id = 0
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._out: asyncio.Queue[tuple[Frame | None, asyncio.Future[None] | None]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.peer_eof = asyncio.Event()  # the transport reached end of input
        self.goaway_received = False
        self.close_reason = ""
        self.idle_timeout = idle_timeout
        self._last_activity = time.monotonic()
        self._writer = asyncio.ensure_future(self._write_loop())
        self._idle = asyncio.ensure_future(self._idle_loop()) if idle_timeout else None

    # -- feeding
    def feed(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        self._last_activity = time.monotonic()
        try:
            frames = self._parser.feed(data)
        except ProtocolError as e:
            self._protocol_error(str(e))
            return
        for f in frames:
            try:
                self._handle(f)
            except ProtocolError as e:
                self._protocol_error(str(e))
                return

    def feed_eof(self) -> None:
        self.peer_eof.set()
        self._finish("connection closed by the peer")

    def _protocol_error(self, message: str) -> None:
        log.info("spdy: protocol error: %s", message)
        self._enqueue(GoAway(self._last_remote_id, GOAWAY_PROTOCOL_ERROR))
        self._finish(f"protocol error: {message}")

    def _handle(self, f: Frame) -> None:
        if isinstance(f, DataFrame):
            s = self.streams.get(f.stream_id)
            if s is None:
                return                      # stream already gone: drop, as spdystream does
            s._deliver(f.data)
            if f.flags & FLAG_FIN:
                s._remote_fin()
                self._maybe_forget(s)
        elif isinstance(f, SynStream):
            self._on_syn_stream(f)
        elif isinstance(f, SynReply):
            s = self.streams.get(f.stream_id)
            if s is not None:
                s.replied.set()
                if f.flags & FLAG_FIN:
                    s._remote_fin()
                    self._maybe_forget(s)
        elif isinstance(f, RstStream):
            s = self.streams.get(f.stream_id)
            if s is not None:
                s._on_reset()
        elif isinstance(f, Ping):
            if (f.id & 1) == (self._next_ping & 1):
                fut = self._pings.pop(f.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            else:
                self._enqueue(Ping(f.id))    # the peer's ping: echo it
        elif isinstance(f, GoAway):
            self.goaway_received = True
            self._finish("the peer went away (GOAWAY)")
        elif isinstance(f, HeadersFrame):
            s = self.streams.get(f.stream_id)
            if s is not None:
                s.headers.extend(f.headers)
                if f.flags & FLAG_FIN:
                    s._remote_fin()
                    self._maybe_forget(s)
        # SETTINGS, WINDOW_UPDATE and unknown control frames are ignored (no flow control)

    def _on_syn_stream(self, f: SynStream) -> None:
        peer_parity = 1 if self.server else 0
        if f.stream_id == 0 or (f.stream_id & 1) != peer_parity or f.stream_id <= self._last_remote_id:
            self._enqueue(RstStream(f.stream_id, PROTOCOL_ERROR))
            return
        self._last_remote_id = f.stream_id
        s = SpdyStream(self, f.stream_id, list(f.headers))
        s.replied.set()
        if f.flags & FLAG_UNIDIRECTIONAL:
            s.local_closed = True
        self.streams[s.id] = s
        if f.flags & FLAG_FIN:
            s._remote_fin()
        accept = False
        if self.on_stream is not None:
            try:
                accept = bool(self.on_stream(s))
            except Exception as e:  # noqa: BLE001 - a refused stream, not a dead session
                log.info("spdy: stream %d refused: %s", s.id, e)
        if accept:
            self._enqueue(SynReply(s.id, []))
        else:
            s._on_reset()
            self._enqueue(RstStream(s.id, REFUSED_STREAM))

    def _maybe_forget(self, s: SpdyStream) -> None:
        if s.remote_closed and s.local_closed:
            self.streams.pop(s.id, None)

    # -- backpressure: a stream the application does not read stops reading from the peer (TCP
    # pushes back on it), as spdystream's unbuffered data channels do
    def _pause(self, s: SpdyStream) -> None:
        if not self._full and self._pause_reading is not None:
            self._pause_reading()
        self._full.add(s.id)

    def _resume(self, s: SpdyStream) -> None:
        if s.id in self._full:
            self._full.discard(s.id)
            if not self._full and self._resume_reading is not None:
                self._resume_reading()

    # -- sending
    def _enqueue(self, frame: Frame | None, fut: asyncio.Future[None] | None = None) -> None:
        self._out.put_nowait((frame, fut))

    async def send_frame(self, frame: Frame) -> None:
        """Queue a frame and wait until it was handed to the transport."""
        if self.closed.is_set():
            raise StreamClosed(f"connection closed: {self.close_reason}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(frame, fut)
        await fut

    async def _write_loop(self) -> None:
        while True:
            frame, fut = await self._out.get()
            if frame is None:                 # close marker: everything before it was written
                if fut is not None and not fut.done():
                    fut.set_result(None)
                return
            try:
                data = encode_frame(frame, self._compressor)
                await self._send(data)
                self._last_activity = time.monotonic()
            except Exception as e:  # noqa: BLE001 - the transport is gone; fail every waiter
                if fut is not None and not fut.done():
                    fut.set_exception(StreamClosed(f"connection lost: {e}"))
                self._finish(f"write failed: {e}")
                self._fail_pending(f"connection lost: {e}")
                return
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _fail_pending(self, why: str) -> None:
        while not self._out.empty():
            _, fut = self._out.get_nowait()
            if fut is not None and not fut.done():
                fut.set_exception(StreamClosed(why))

    async def _idle_loop(self) -> None:
        assert self.idle_timeout
        while not self.closed.is_set():
            left = self._last_activity + self.idle_timeout - time.monotonic()
            if left <= 0:
                self._enqueue(GoAway(self._last_remote_id, GOAWAY_OK))
                self._finish(f"idle for {self.idle_timeout:g}s")
                return
            try:
                await asyncio.wait_for(self.closed.wait(), min(left, 60))
            except asyncio.TimeoutError:
                pass

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        if self._full:
            self._full.clear()
            if self._resume_reading is not None:
                self._resume_reading()
        for s in list(self.streams.values()):
            s._remote_fin()
            s.replied.set()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(StreamClosed(reason))
        self._pings.clear()

    # -- API
    async def open_stream(self, headers: Iterable[tuple[str, str]], fin: bool = False,
                          timeout: float = 30.0) -> SpdyStream:
        """Open a stream (SYN_STREAM) and wait for the peer's SYN_REPLY."""
        if self.closed.is_set():
            raise StreamClosed(f"connection closed: {self.close_reason}")
        sid = self._next_id
        self._next_id += 2
        s = SpdyStream(self, sid, list(headers))
        s.local_closed = fin
        self.streams[sid] = s
        await self.send_frame(SynStream(sid, s.headers, FLAG_FIN if fin else 0))
        try:
            await asyncio.wait_for(s.replied.wait(), timeout)
        except asyncio.TimeoutError:
            await s.reset()
            raise StreamClosed(f"stream {sid} was not answered within {timeout:g}s") from None
        if s.was_reset or self.closed.is_set():
            raise StreamClosed(f"stream {sid} was refused")
        return s

    async def ping(self, timeout: float = 10.0) -> float:
        pid = self._next_ping
        self._next_ping += 2
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[pid] = fut
        start = time.monotonic()
        await self.send_frame(Ping(pid))
        await asyncio.wait_for(fut, timeout)
        return time.monotonic() - start

    async def close(self, reset_streams: bool = True, timeout: float = 5.0) -> None:
        """Reset the open streams, say GOAWAY, flush what is queued and stop the writer."""
        if not self._writer.done():
            if not self.closed.is_set():
                if reset_streams:
                    for s in list(self.streams.values()):
                        if not s.was_reset:
                            s._on_reset()
                            self._enqueue(RstStream(s.id, CANCEL))
                self._enqueue(GoAway(self._last_remote_id, GOAWAY_OK))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._enqueue(None, done)
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout)
            except (asyncio.TimeoutError, StreamClosed):
                pass
        self._finish(self.close_reason or "closed")
        for t in (self._writer, self._idle):
            if t is not None and not t.done():
                t.cancel()
        for t in (self._writer, self._idle):
            if t is not None:
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already reported
                    pass
        self._fail_pending("connection closed")


# ---------------------------------------------------------------------------------------------- HTTP upgrade

class _SessionFeeder:
    """Takes the place of aiohttp's payload parser on an upgraded connection (the same hook
    aiohttp's own WebSocketResponse uses): raw bytes go to the SPDY session."""

    def __init__(self, session: SpdySession) -> None:
        self.session = session

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.session.feed(data)
        return False, b""

    def feed_eof(self) -> None:
        self.session.feed_eof()


async def upgrade(request: "web.Request", protocol: str, on_stream: StreamHandler,
                  idle_timeout: float | None = None) -> tuple["web.StreamResponse", SpdySession]:
    """Answer an aiohttp request with `101 Switching Protocols` to SPDY/3.1 and return
    (response, server session). The handler must keep running while the session is used and
    return the response at the end (aiohttp then closes the connection)."""
    from aiohttp import web

    headers = {"Connection": "Upgrade", "Upgrade": UPGRADE_TOKEN}
    if protocol:
        headers["X-Stream-Protocol-Version"] = protocol
    resp = web.StreamResponse(status=101, headers=headers)
    resp.force_close()
    await resp.prepare(request)
    transport = request.transport

    def pause() -> None:
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume() -> None:
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    session = SpdySession(resp.write, server=True, on_stream=on_stream, idle_timeout=idle_timeout,
                          pause_reading=pause, resume_reading=resume)
    request.protocol.set_parser(_SessionFeeder(session))
    return resp, session


def is_upgrade_request(headers) -> bool:
    """Connection: Upgrade and Upgrade: SPDY/3.1 (case-insensitive, as upstream checks)."""
    return ("upgrade" in headers.get("Connection", "").lower()
            and UPGRADE_TOKEN.lower() in headers.get("Upgrade", "").lower())
