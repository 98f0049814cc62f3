"""The WebSocket channel protocols, tokens, resize decoding and status encoding of the streaming
server (kubelab.cri.streaming), and its port forwarding over both protocols against a local TCP
echo server (the runtime side is a stand-in that names the host network: no containers here).
"""
from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
from aiohttp import web

from kubelab.cri import errors
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.streaming import (CommandStreams, TerminalSize, encode_status, spdy, status_exit_code,
                                   status_internal_error, status_success, terminal_sizes, websocket as wsmod)
from kubelab.cri.streaming.server import StreamServer, TokenCache, TooManyInFlight

P = wsmod.REMOTE_COMMAND_PROTOCOLS


# ---------------------------------------------------------------------------------------------- negotiation

def test_protocol_negotiation_follows_the_client_order():
    assert wsmod.requested_protocols(["v4.channel.k8s.io, channel.k8s.io", "base64.channel.k8s.io"]) == [
        "v4.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io"]
    assert wsmod.negotiate(["v9.channel.k8s.io", "v4.base64.channel.k8s.io", "v4.channel.k8s.io"], P).name \
        == "v4.base64.channel.k8s.io"
    assert wsmod.negotiate([], P).name == ""                       # no subprotocol: binary channels
    assert wsmod.negotiate(["v9.channel.k8s.io"], P) is None       # only unknown ones: refused
    assert wsmod.negotiate(["v5.channel.k8s.io"], wsmod.PORT_FORWARD_PROTOCOLS) is None
    assert P["v4.channel.k8s.io"].structured_status and not P["channel.k8s.io"].structured_status
    assert P["v5.channel.k8s.io"].stream_close and not P["v4.channel.k8s.io"].stream_close


def test_channel_codecs():
    binary, b64, v5 = P["v4.channel.k8s.io"], P["v4.base64.channel.k8s.io"], P["v5.channel.k8s.io"]
    assert wsmod.encode_message(binary, 1, b"out") == b"\x01out"
    assert wsmod.encode_message(b64, 1, b"foo\n") == "1" + base64.b64encode(b"foo\n").decode()
    assert wsmod.encode_message(b64, 3, b"") == "3"
    assert wsmod.decode_message(binary, b"\x00typed") == (0, b"typed")
    assert wsmod.decode_message(b64, "0Zm9vCg==") == (0, b"foo\n")
    assert wsmod.decode_message(b64, b"4" + base64.b64encode(b'{"Width":1}')) == (4, b'{"Width":1}')
    assert wsmod.decode_message(v5, b"\xff\x00") == (wsmod.STREAM_CLOSE, b"\x00")
    assert wsmod.decode_message(binary, b"\xff\x00") == (255, b"\x00")    # before v5 just a channel number
    with pytest.raises(ValueError):
        wsmod.decode_message(b64, "0not base64!")
    with pytest.raises(ValueError):
        wsmod.decode_message(binary, b"")
    assert wsmod.port_prefix(80) == b"P\x00" and wsmod.port_prefix(8080) == b"\x90\x1f"


def test_websocket_requests_are_recognised():
    assert wsmod.is_websocket_request({"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"})
    assert not wsmod.is_websocket_request({"Upgrade": "SPDY/3.1", "Connection": "Upgrade"})
    assert spdy.is_upgrade_request({"Upgrade": "SPDY/3.1", "Connection": "Upgrade"})
    assert not spdy.is_upgrade_request({"Upgrade": "SPDY/3.1"})


# ---------------------------------------------------------------------------------------------- tokens

def test_tokens_are_single_use_and_expire():
    now = [1000.0]
    cache = TokenCache(ttl=60, max_in_flight=3, clock=lambda: now[0])
    t1 = cache.insert("one")
    assert len(t1) == 8 and all(c.isalnum() or c in "-_" for c in t1)
    assert cache.consume(t1) == "one"
    assert cache.consume(t1) is None                     # used
    assert cache.consume("AAAAAAAA") is None             # unknown
    t2 = cache.insert("two")
    now[0] += 61
    assert cache.consume(t2) is None                     # expired
    for i in range(3):
        cache.insert(i)
    with pytest.raises(TooManyInFlight) as e:
        cache.insert("too many")
    assert e.value.code.name == "RESOURCE_EXHAUSTED"
    now[0] += 61
    cache.insert("room again")                          # expired entries were collected
    assert len(cache) == 1


# ---------------------------------------------------------------------------------------------- resize and status

class Chunks:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


async def _sizes(*chunks: bytes) -> list[TerminalSize]:
    return [s async for s in terminal_sizes(Chunks(*chunks))]


async def test_resize_stream_is_decoded_across_chunks():
    assert await _sizes(b'{"Width":80,', b'"Height":24}{"width":100,"height":40}\n', b' {"Width":1', b',"Height":2}') \
        == [TerminalSize(80, 24), TerminalSize(100, 40), TerminalSize(1, 2)]
    assert await _sizes(b'{"Width":80,"Height":24}[1,2]{"Width":5,"Height":5}') == [TerminalSize(80, 24)]
    assert await _sizes(b'{"Width":"x"}') == []


def test_status_encoding():
    assert json.loads(encode_status(status_success(), True)) == {"metadata": {}, "status": "Success"}
    st = status_exit_code(3, ["sh", "-c", "exit 3"])
    assert st["reason"] == "NonZeroExitCode" and st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert st["message"] == "command terminated with non-zero exit code: error executing command [sh -c exit 3], " \
                            "exit code 3"
    assert encode_status(status_success(), False) == b""           # pre-v4: nothing on success
    assert encode_status(st, False) == st["message"].encode()
    ie = status_internal_error("boom")
    assert (ie["reason"], ie["code"], ie["message"]) == ("InternalError", 500, "Internal error occurred: boom")


# ---------------------------------------------------------------------------------------------- over a websocket

async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/ws"


async def test_command_channels_over_websocket():
    """A stand-in command: echoes stdin to stdout upper-cased, reports resizes on stderr."""
    seen: dict = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        ws, proto = await wsmod.accept(request, P)
        if proto is None:
            return ws
        conn = wsmod.CommandConn(ws, proto, stdin=True, stdout=True, stderr=True, tty=True, idle_timeout=None)
        streams: CommandStreams = conn.streams
        await conn.start()

        async def sizes():
            async for s in terminal_sizes(streams.resize):
                await streams.stderr.write(f"{s.width}x{s.height}".encode())
        resize = asyncio.ensure_future(sizes())
        while data := await streams.stdin.read():
            await streams.stdout.write(data.upper())
        seen["eof"] = True
        await conn.send_status(status_exit_code(4, ["x"]))
        resize.cancel()
        await conn.close()
        return ws

    runner, url = await _serve(handler)
    try:
        for protocol in ("v5.channel.k8s.io", "v4.base64.channel.k8s.io"):
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(url, protocols=(protocol,))
                assert ws.protocol == protocol
                b64 = "base64" in protocol
                first = await ws.receive()
                assert first.data in (b"\x01", "1")                  # the empty "ready" message on stdout

                async def send(ch: int, data: bytes) -> None:
                    if b64:
                        await ws.send_str(str(ch) + base64.b64encode(data).decode())
                    else:
                        await ws.send_bytes(bytes([ch]) + data)

                await send(4, b'{"Width":90,"Height":30}')
                await send(0, b"abc")
                got: dict[int, bytes] = {}
                while got.get(1) != b"ABC" or got.get(2) != b"90x30":
                    msg = await asyncio.wait_for(ws.receive(), 5)
                    ch, data = (msg.data[0], msg.data[1:]) if not b64 else (int(msg.data[0]),
                                                                             base64.b64decode(msg.data[1:]))
                    got[ch] = got.get(ch, b"") + data
                if protocol.startswith("v5"):
                    await ws.send_bytes(b"\xff\x00")               # half-close stdin
                else:
                    await ws.close()
                    continue
                status = None
                async for msg in ws:
                    if msg.data[0] == 3:
                        status = json.loads(msg.data[1:])
                assert seen.pop("eof") and status["details"]["causes"][0]["message"] == "4"
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await http.ws_connect(url, protocols=("v9.channel.k8s.io",))
            assert e.value.status == 403
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------------------------------------- port forwarding

class HostNetwork:
    """The runtime side of port forwarding: every sandbox is on the host network."""

    def sandbox_netns(self, sandbox_id: str) -> str:
        if sandbox_id != "pod":
            raise errors.NotFound(f"sandbox {sandbox_id!r} not found")
        return ""

    def exec_target(self, container_id: str):
        raise errors.NotFound("no containers here")


async def _echo_server():
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(b"echo:" + data)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_port_forward_over_websocket():
    echo, port = await _echo_server()
    closed = await _free_port()
    server = StreamServer(HostNetwork(), "127.0.0.1", 0)
    await server.start()
    try:
        # WebSocket: channels 0/1 for the first port, 2/3 for the second; each starts with the port
        url = server.get_port_forward(pb.PortForwardRequest(pod_sandbox_id="pod", port=[port, closed]))
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, protocols=("v4.channel.k8s.io",))
            await ws.send_bytes(b"\x00ping")
            got: dict[int, bytes] = {}
            while b"refused" not in got.get(3, b"") or b"echo:ping" not in got.get(0, b""):
                msg = await asyncio.wait_for(ws.receive(), 5)
                got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
            assert got[0].startswith(wsmod.port_prefix(port)) and got[1] == wsmod.port_prefix(port)
            assert got[3].startswith(wsmod.port_prefix(closed))
            assert f"error forwarding port {closed} to pod pod".encode() in got[3]
            await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:         # the token is gone
            async with aiohttp.ClientSession() as http:
                await http.ws_connect(url)
        assert e.value.status == 404
    finally:
        await server.stop()
        echo.close()
        await echo.wait_closed()


async def test_port_forward_over_spdy():
    echo, port = await _echo_server()
    server = StreamServer(HostNetwork(), "127.0.0.1", 0, stream_creation_timeout=0.3)
    await server.start()
    try:
        url = server.get_port_forward(pb.PortForwardRequest(pod_sandbox_id="pod", port=[port]))
        host, _, path = url[len("http://"):].partition("/")
        reader, writer = await asyncio.open_connection(*host.split(":"))
        writer.write(f"POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                     f"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101") and b"x-stream-protocol-version: portforward.k8s.io" in head.lower()

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()
        session = spdy.SpdySession(send, server=False)

        async def pump():
            while data := await reader.read(65536):
                session.feed(data)
            session.feed_eof()
        pumping = asyncio.ensure_future(pump())

        async def connection(rid: str | None, payload: bytes) -> bytes:
            extra = [("requestid", rid)] if rid is not None else []
            err = await session.open_stream([("streamtype", "error"), ("port", str(port))] + extra)
            data = await session.open_stream([("streamtype", "data"), ("port", str(port))] + extra)
            await data.write(payload)
            await data.close()                       # half-close: the target sees EOF and hangs up
            out = b""
            while chunk := await data.read():
                out += chunk
            assert await err.read() == b""
            return out

        assert await asyncio.gather(connection("1", b"one"), connection("2", b"two")) == [b"echo:one", b"echo:two"]
        assert await connection(None, b"old") == b"echo:old"         # ids paired as error=n, data=n+2
        with pytest.raises(spdy.StreamClosed):                         # no port header: refused
            await session.open_stream([("streamtype", "data")])
        lonely = await session.open_stream([("streamtype", "error"), ("port", str(port)), ("requestid", "9")])
        assert b"timed out waiting for streams" in await lonely.read()
        await session.close()
        writer.close()
        await asyncio.wait_for(pumping, 5)
    finally:
        await server.stop()
        echo.close()
        await echo.wait_closed()


async def test_streaming_requests_are_validated():
    server = StreamServer(HostNetwork(), "127.0.0.1", 0)
    with pytest.raises(errors.CRIError):                          # not started: no URL to give
        server.get_exec(pb.ExecRequest(container_id="c", cmd=["true"], stdout=True))
    await server.start()
    try:
        assert server.base_url.startswith("http://127.0.0.1:")
        bad = [pb.ExecRequest(container_id="c", cmd=["true"], stdout=True, stderr=True, tty=True),
               pb.ExecRequest(container_id="c", cmd=["true"]),
               pb.ExecRequest(container_id="c", stdout=True),
               pb.ExecRequest(cmd=["true"], stdout=True)]
        for req in bad:
            with pytest.raises(errors.InvalidArgument):
                server.get_exec(req)
        with pytest.raises(errors.InvalidArgument):
            server.get_attach(pb.AttachRequest(container_id="c"))
        with pytest.raises(errors.InvalidArgument):
            server.get_port_forward(pb.PortForwardRequest(pod_sandbox_id="pod", port=[70000]))
        url = server.get_exec(pb.ExecRequest(container_id="c", cmd=["true"], stdout=True))
        assert url.startswith(server.base_url + "/exec/")
        async with aiohttp.ClientSession() as http:
            async with http.post(url) as r:                # neither WebSocket nor SPDY
                assert r.status == 400
            async with http.post(url) as r:                # and the token was used by that
                assert r.status == 404
    finally:
        await server.stop()
