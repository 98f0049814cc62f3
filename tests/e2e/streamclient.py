"""Clients of the CRI streaming protocols, for the tests: remotecommand (exec, attach) and port
forwarding, over WebSocket (aiohttp) and over SPDY/3.1 (kubelab's own framing, kubelab.cri.streaming.spdy),
speaking to the URLs Exec, Attach and PortForward return, as kubectl and the kubelet's clients do.
"""
from __future__ import annotations

import asyncio
import base64
import json
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from kubelab.cri.streaming import spdy

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
BASE64_V4 = "v4.base64.channel.k8s.io"
PORT_FORWARD = "portforward.k8s.io"


class HTTPStatus(Exception):
    """The server answered the upgrade request with something else than 101."""

    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"HTTP {status}: {body.strip()}")
        self.status = status
        self.body = body


@dataclass
class Result:
    stdout: bytes = b""
    stderr: bytes = b""
    error: bytes = b""                      # what the error channel carried

    @property
    def status(self) -> dict | None:
        """The v4 metav1.Status, or None if the error channel carried none."""
        return json.loads(self.error) if self.error.strip().startswith(b"{") else None

    @property
    def exit_code(self) -> int | None:
        st = self.status
        if st is None:
            return None
        if st.get("status") == "Success":
            return 0
        for cause in (st.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        return None


@dataclass
class _Output:
    data: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray(),
                                                                "error": bytearray()})
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, kind: str, chunk: bytes) -> None:
        self.data[kind] += chunk
        self.changed.set()

    async def wait_for(self, kind: str, needle: bytes, timeout: float) -> bytes:
        async def until() -> None:
            while needle not in self.data[kind]:
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{needle!r} not in {kind} after {timeout}s: {bytes(self.data[kind])!r}") from None
        return bytes(self.data[kind])

    def result(self) -> Result:
        return Result(bytes(self.data["stdout"]), bytes(self.data["stderr"]), bytes(self.data["error"]))


class CommandClient:
    """One exec or attach session seen from the client."""
    out: _Output
    done: asyncio.Future

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_stdin(self) -> None:
        raise NotImplementedError

    async def resize(self, width: int, height: int) -> None:
        raise NotImplementedError

    async def abort(self) -> None:
        """Drop the connection in the middle of the session."""
        raise NotImplementedError

    async def read_until(self, needle: bytes, timeout: float = 10, kind: str = "stdout") -> bytes:
        return await self.out.wait_for(kind, needle, timeout)

    async def result(self, timeout: float = 20) -> Result:
        """Wait until the server ended the session; what came on each channel."""
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except asyncio.TimeoutError:
            await self.abort()
            raise AssertionError(f"the session did not end within {timeout}s: {self.out.result()}") from None
        return self.out.result()


# ---------------------------------------------------------------------------------------------- WebSocket

class WsCommand(CommandClient):
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.protocol = ws.protocol or ""
        self.binary = "base64" not in self.protocol
        self.out = _Output()
        self.done = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, protocol: str | None = V4, timeout: float = 10, ssl=None) -> "WsCommand":
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, protocols=(protocol,) if protocol else (), ssl=ssl if ssl else True,
                                       timeout=aiohttp.ClientWSTimeout(ws_close=timeout), autoping=True)
        except aiohttp.WSServerHandshakeError as e:
            await http.close()
            raise HTTPStatus(e.status, e.message) from None
        except BaseException:
            await http.close()
            raise
        return cls(http, ws)

    def _encode(self, channel: int, data: bytes) -> bytes | str:
        if self.binary:
            return bytes([channel]) + data
        return chr(48 + channel) + base64.b64encode(data).decode()

    async def _send(self, channel: int, data: bytes) -> None:
        msg = self._encode(channel, data)
        if isinstance(msg, bytes):
            await self.ws.send_bytes(msg)
        else:
            await self.ws.send_str(msg)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    raw = msg.data
                    channel, data = raw[0], raw[1:]
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    channel, data = ord(msg.data[0]) - 48, base64.b64decode(msg.data[1:])
                else:
                    break
                kind = {1: "stdout", 2: "stderr", 3: "error"}.get(channel)
                if kind and data:
                    self.out.add(kind, data)
        finally:
            await self.http.close()

    async def send(self, data: bytes) -> None:
        await self._send(0, data)

    async def close_stdin(self) -> None:
        if self.protocol != V5:
            raise RuntimeError(f"{self.protocol or 'no protocol'} cannot half-close stdin (v5 can)")
        await self.ws.send_bytes(bytes([255, 0]))

    async def resize(self, width: int, height: int) -> None:
        await self._send(4, json.dumps({"Width": width, "Height": height}).encode())

    async def abort(self) -> None:
        await self.ws.close()
        await asyncio.gather(self.done, return_exceptions=True)


# ---------------------------------------------------------------------------------------------- SPDY

async def spdy_connect(url: str, protocols: list[str], timeout: float = 10, ssl=None
                       ) -> tuple[spdy.SpdySession, asyncio.Task, asyncio.StreamWriter]:
    """POST the upgrade request; return the client session once the server switched to SPDY/3.1.
    ssl: an SSLContext for https URLs."""
    u = urlsplit(url)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(u.hostname, u.port, ssl=ssl if u.scheme == "https" else None), timeout)
    target = u.path + (f"?{u.query}" if u.query else "")
    head = [f"POST {target} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
            "Content-Length: 0"] + [f"X-Stream-Protocol-Version: {p}" for p in protocols]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        writer.close()
        raise HTTPStatus(0, f"no HTTP response: {e}") from None
    status = int(raw.split(b" ", 2)[1])
    if status != 101:
        headers = raw.decode(errors="replace").lower()
        body = b""
        if "content-length:" in headers:
            n = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
            body = await asyncio.wait_for(reader.readexactly(n), timeout)
        writer.close()
        raise HTTPStatus(status, body.decode(errors="replace"))

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    session = spdy.SpdySession(send, server=False)

    async def pump() -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                session.feed(data)
        except ConnectionError:
            pass
        finally:
            session.feed_eof()

    return session, asyncio.ensure_future(pump()), writer


class SpdyCommand(CommandClient):
    def __init__(self, session: spdy.SpdySession, pump: asyncio.Task, writer: asyncio.StreamWriter,
                 streams: dict[str, spdy.SpdyStream]) -> None:
        self.session = session
        self.pump = pump
        self.writer = writer
        self.streams = streams
        self.out = _Output()
        self.done = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool,
                   protocol: str = V4, ssl=None) -> "SpdyCommand":
        session, pump, writer = await spdy_connect(url, [protocol], ssl=ssl)
        streams = {}
        kinds = ["error"] + [k for k, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr),
                                             ("resize", tty)) if on]
        for kind in kinds:          # client-go's order: the error stream first
            streams[kind] = await session.open_stream([("streamtype", kind)])
        return cls(session, pump, writer, streams)

    async def _read(self) -> None:
        async def drain(kind: str) -> None:
            s = self.streams.get(kind)
            if s is None:
                return
            while True:
                data = await s.read()
                if not data:
                    return
                self.out.add(kind, data)
        try:
            await asyncio.gather(drain("stdout"), drain("stderr"), drain("error"))
            await self.session.closed.wait()
        finally:
            await self._close()

    async def _close(self) -> None:
        await self.session.close(reset_streams=False, timeout=2)
        self.writer.close()
        self.pump.cancel()
        await asyncio.gather(self.pump, return_exceptions=True)

    async def send(self, data: bytes) -> None:
        await self.streams["stdin"].write(data)

    async def close_stdin(self) -> None:
        await self.streams["stdin"].close()

    async def resize(self, width: int, height: int) -> None:
        await self.streams["resize"].write(json.dumps({"Width": width, "Height": height}).encode())

    async def abort(self) -> None:
        self.writer.transport.abort()
        await asyncio.gather(self.done, return_exceptions=True)


async def open_command(proto: str, url: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = False,
                       tty: bool = False, ssl=None) -> CommandClient:
    """proto: "spdy", "spdy-v5", "ws" (v4), "ws-base64", "ws-v5", "ws-v1" (channel.k8s.io), "ws-none".
    ssl: an SSLContext for https URLs."""
    if proto.startswith("spdy"):
        return await SpdyCommand.open(url, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty,
                                      protocol=V5 if proto == "spdy-v5" else V4, ssl=ssl)
    protocol = {"ws": V4, "ws-base64": BASE64_V4, "ws-v5": V5, "ws-v1": "channel.k8s.io", "ws-none": None}[proto]
    return await WsCommand.open(url, protocol, ssl=ssl)


# ---------------------------------------------------------------------------------------------- port forward

async def ws_port_forward(url: str, port: int, payload: bytes, protocol: str | None = V4,
                          timeout: float = 20, ssl=None) -> tuple[bytes, bytes]:
    """Send payload to the forwarded port; return (data, error) received until the server closed."""
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, protocols=(protocol,) if protocol else (), ssl=ssl if ssl else True,
                                       timeout=aiohttp.ClientWSTimeout(ws_close=10))
        except aiohttp.WSServerHandshakeError as e:
            raise HTTPStatus(e.status, e.message) from None
        data, error = bytearray(), bytearray()
        seen = {0: False, 1: False}
        await ws.send_bytes(b"\x00" + payload)

        async def read() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                ch, chunk = msg.data[0], msg.data[1:]
                if ch in seen and not seen[ch]:      # each channel starts with the port, uint16 LE
                    assert struct.unpack("<H", chunk[:2])[0] == port, chunk
                    chunk, seen[ch] = chunk[2:], True
                (data if ch == 0 else error).extend(chunk)
        try:
            await asyncio.wait_for(read(), timeout)
        finally:
            await ws.close()
        return bytes(data), bytes(error)


async def spdy_port_forward(url: str, port: int, payload: bytes, timeout: float = 20,
                            request_id: str = "0", ssl=None) -> tuple[bytes, bytes]:
    """As kubectl port-forward does one connection: an error and a data stream, paired by requestID."""
    session, pump, writer = await spdy_connect(url, [PORT_FORWARD], ssl=ssl)
    try:
        hdr = [("port", str(port)), ("requestid", request_id)]
        error = await session.open_stream([("streamtype", "error")] + hdr)
        await error.close()                         # nothing to say on the error stream
        data = await session.open_stream([("streamtype", "data")] + hdr)
        await data.write(payload)

        async def collect(s: spdy.SpdyStream) -> bytes:
            out = bytearray()
            while chunk := await s.read():
                out += chunk
            return bytes(out)
        got, err = await asyncio.wait_for(asyncio.gather(collect(data), collect(error)), timeout)
        return got, err
    finally:
        await session.close(timeout=2)
        writer.close()
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)


async def upgrade_status(url: str, proto: str) -> int:
    """The HTTP status the server answers an upgrade request to url with (101 when it upgrades)."""
    try:
        if proto.startswith("spdy"):
            protocols = [PORT_FORWARD] if "/portforward/" in url else [V4]
            session, pump, writer = await spdy_connect(url, protocols)
            await session.close(timeout=2)
            writer.close()
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        else:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url, protocols=(V4,), timeout=aiohttp.ClientWSTimeout(ws_close=10))
                await ws.close()
    except HTTPStatus as e:
        return e.status
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    return 101
