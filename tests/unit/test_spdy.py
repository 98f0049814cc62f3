"""SPDY/3.1 framing, header compression and sessions (kubelab.cri.streaming.spdy).

The e2e suite checks the same code against containerd's Go SPDY stack; these tests pin the wire
format byte by byte and exercise the session logic over an in-memory connection.
"""
from __future__ import annotations

import asyncio
import random
import struct
import zlib

import pytest

from kubelab.cri.streaming import spdy


# ---------------------------------------------------------------------------------------------- dictionary

def test_dictionary_is_the_spdy3_one():
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post")
    assert b"\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url" in d
    assert d.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    # the id zlib writes into each stream header (FDICT); Go's reader refuses a different one
    assert zlib.adler32(d) == 0xE3C6A7C2


# ---------------------------------------------------------------------------------------------- header blocks

def test_header_block_layout():
    block = spdy.encode_header_block([("streamType", "error"), ("Port", "80")])
    assert block == (struct.pack(">I", 2) + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 5) + b"error"
                     + struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80")
    assert spdy.decode_header_block(block) == [("streamtype", "error"), ("port", "80")]


def test_repeated_header_values_are_joined_with_nul():
    block = spdy.encode_header_block([("x", "a"), ("x", "b")])
    assert b"a\x00b" in block
    assert spdy.decode_header_block(block) == [("x", "a"), ("x", "b")]


@pytest.mark.parametrize("block", [
    b"\x00\x00\x00\x01\x00\x00\x00\x04Port\x00\x00\x00\x00",       # upper-case name
    b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x00",           # count says two pairs, one given
    b"\x00\x00\x00\x01\x00\x00\x00\x09a",                           # name length past the end
    b"\x00\x00\x00\x00junk",                                        # trailing bytes
    b"\x00\x00",                                                    # no count
])
def test_malformed_header_blocks_are_protocol_errors(block):
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(block)


def test_header_compression_shares_one_context_per_direction():
    c, d = spdy.HeaderCompressor(), spdy.HeaderDecompressor()
    headers = [("streamtype", "stdout"), ("port", "8080"), ("requestid", "0")]
    first, second = c.compress(headers), c.compress(headers)
    assert first[:2] == b"\x78\xf9"         # zlib header: best compression, preset dictionary follows
    assert first[2:6] == struct.pack(">I", zlib.adler32(spdy.DICTIONARY))
    assert len(second) < len(first)         # the second block refers back to the first
    assert second[-4:] == b"\x00\x00\xff\xff"   # each block ends with a sync flush
    assert d.decompress(first) == headers
    assert d.decompress(second) == headers


def test_header_blocks_must_be_decompressed_in_wire_order():
    c = spdy.HeaderCompressor()
    c.compress([("a", "1")])
    second = c.compress([("a", "1")])
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderDecompressor().decompress(second)


def test_header_bombs_are_refused():
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    big = spdy.encode_header_block([("x", "y" * (spdy.MAX_HEADER_BLOCK + 10))])
    data = z.compress(big) + z.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderDecompressor().decompress(data)


# ---------------------------------------------------------------------------------------------- frames

ALL_FRAMES = [
    spdy.DataFrame(1, b"hello", 0),
    spdy.DataFrame(3, b"", spdy.FLAG_FIN),
    spdy.SynStream(5, [("streamtype", "stdin")], 0, 0, 2, 0),
    spdy.SynStream(7, [("streamtype", "data"), ("port", "80")], spdy.FLAG_FIN, 5, 7, 1),
    spdy.SynReply(5, [], 0),
    spdy.SynReply(7, [("x", "y")], spdy.FLAG_FIN),
    spdy.RstStream(5, spdy.CANCEL),
    spdy.Settings([(0, 4, 100), (1, 7, 65536)], 0),
    spdy.Ping(2),
    spdy.GoAway(7, spdy.GOAWAY_PROTOCOL_ERROR),
    spdy.HeadersFrame(5, [("a", "b")], 0),
    spdy.WindowUpdate(5, 1 << 20),
]


def test_every_frame_round_trips():
    c, p = spdy.HeaderCompressor(), spdy.FrameParser()
    wire = b"".join(spdy.encode_frame(f, c) for f in ALL_FRAMES)
    assert p.feed(wire) == ALL_FRAMES


def test_frames_split_at_any_byte_boundary():
    c = spdy.HeaderCompressor()
    wire = b"".join(spdy.encode_frame(f, c) for f in ALL_FRAMES)
    rng = random.Random(7)
    for _ in range(20):
        p, got, i = spdy.FrameParser(), [], 0
        while i < len(wire):
            n = rng.randint(1, 9)
            got += p.feed(wire[i:i + n])
            i += n
        assert got == ALL_FRAMES


def test_data_and_control_frame_layout():
    c = spdy.HeaderCompressor()
    assert spdy.encode_frame(spdy.DataFrame(5, b"abc", spdy.FLAG_FIN), c) == bytes.fromhex("00000005 01000003") + b"abc"
    assert spdy.encode_frame(spdy.RstStream(5, spdy.CANCEL), c) == bytes.fromhex("80030003 00000008 00000005 00000005")
    assert spdy.encode_frame(spdy.Ping(1), c) == bytes.fromhex("80030006 00000004 00000001")
    assert spdy.encode_frame(spdy.GoAway(3, 0), c) == bytes.fromhex("80030007 00000008 00000003 00000000")
    assert spdy.encode_frame(spdy.WindowUpdate(1, 10), c) == bytes.fromhex("80030009 00000008 00000001 0000000a")
    syn = spdy.encode_frame(spdy.SynStream(1, [("streamtype", "error")], 0, 0, 0, 0), c)
    assert syn[:4] == bytes.fromhex("80030001") and syn[8:18] == bytes.fromhex("00000001 00000000 0000")
    assert struct.unpack(">I", syn[4:8])[0] == len(syn) - 8


def test_unknown_control_frames_and_wrong_versions():
    p = spdy.FrameParser()
    assert p.feed(bytes.fromhex("8003 00ff 00000002 abcd")) == [spdy.UnknownControl(0xFF, 0, b"\xab\xcd")]
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameParser().feed(bytes.fromhex("8002 0006 00000004 00000001"))
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameParser().feed(bytes.fromhex("8003 0003 00000002 0000"))    # truncated RST_STREAM


# ---------------------------------------------------------------------------------------------- sessions

class Pair:
    """A client and a server session joined by in-memory pipes."""

    def __init__(self, on_stream=None, idle_timeout=None, pause=None, resume=None) -> None:
        self.accepted: list[spdy.SpdyStream] = []

        def default(s):
            self.accepted.append(s)
            return True

        async def to_server(data: bytes) -> None:
            self.server.feed(data)

        async def to_client(data: bytes) -> None:
            self.client.feed(data)

        self.client = spdy.SpdySession(to_server, server=False)
        self.server = spdy.SpdySession(to_client, server=True, on_stream=on_stream or default,
                                       idle_timeout=idle_timeout, pause_reading=pause, resume_reading=resume)

    async def close(self) -> None:
        await self.client.close(timeout=1)
        await self.server.close(timeout=1)


async def _read_all(s: spdy.SpdyStream) -> bytes:
    out = b""
    while chunk := await s.read():
        out += chunk
    return out


async def test_streams_carry_data_both_ways_and_half_close():
    p = Pair()
    s = await p.client.open_stream([("streamtype", "stdin")])
    assert s.id == 1 and s.replied.is_set()
    srv = p.accepted[0]
    assert srv.header("streamType") == "stdin" and srv.id == 1
    payload = bytes(range(256)) * 600                   # several DATA frames
    await s.write(payload)
    await s.close()
    assert await _read_all(srv) == payload
    assert await srv.read() == b""                      # EOF stays EOF
    await srv.write(b"back")
    await srv.close()
    assert await _read_all(s) == b"back"
    assert s.id not in p.client.streams and srv.id not in p.server.streams   # both halves closed: forgotten
    with pytest.raises(spdy.StreamClosed):
        await s.write(b"late")
    s2 = await p.client.open_stream([("streamtype", "stdout")])
    assert s2.id == 3
    await p.close()


async def test_refused_streams_and_resets():
    p = Pair(on_stream=lambda s: s.header("streamtype") == "ok")
    with pytest.raises(spdy.StreamClosed):
        await p.client.open_stream([("streamtype", "nope")])
    ok = await p.client.open_stream([("streamtype", "ok")])
    srv = p.server.streams[ok.id]
    await ok.reset()
    await asyncio.sleep(0)
    assert srv.was_reset and await srv.read() == b""
    await p.close()


async def test_ping_goaway_and_eof():
    p = Pair()
    assert await p.client.ping() >= 0
    await p.client.close()
    await asyncio.sleep(0.01)
    assert p.server.closed.is_set() and p.server.goaway_received
    q = Pair()
    s = await q.client.open_stream([("streamtype", "x")])
    srv = q.accepted[0]
    q.server.feed_eof()
    assert q.server.closed.is_set() and q.server.peer_eof.is_set()
    assert await srv.read() == b""
    with pytest.raises(spdy.StreamClosed):
        await srv.write(b"x")
    await q.close()
    del s


async def test_client_ids_must_be_odd_and_increasing():
    p = Pair()
    c = spdy.HeaderCompressor()
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)
    p.server._send = capture
    p.server.feed(spdy.encode_frame(spdy.SynStream(2, [("a", "b")]), c))         # even: a server id
    p.server.feed(spdy.encode_frame(spdy.SynStream(5, [("a", "b")]), c))
    p.server.feed(spdy.encode_frame(spdy.SynStream(3, [("a", "b")]), c))         # going backwards
    await asyncio.sleep(0.01)
    frames = spdy.FrameParser().feed(b"".join(sent))
    assert spdy.RstStream(2, spdy.PROTOCOL_ERROR) in frames
    assert spdy.RstStream(3, spdy.PROTOCOL_ERROR) in frames
    assert [f.stream_id for f in frames if isinstance(f, spdy.SynReply)] == [5]
    await p.close()


async def test_protocol_errors_end_the_session_with_goaway():
    p = Pair()
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)
    p.server._send = capture
    p.server.feed(bytes.fromhex("8002 0006 00000004 00000001"))        # SPDY/2
    await asyncio.sleep(0.01)
    assert p.server.closed.is_set() and "protocol error" in p.server.close_reason
    assert spdy.GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR) in spdy.FrameParser().feed(b"".join(sent))
    await p.close()


async def test_idle_sessions_are_closed():
    p = Pair(idle_timeout=0.2)
    await asyncio.wait_for(p.server.closed.wait(), 2)
    assert "idle" in p.server.close_reason
    await p.close()


async def test_unread_streams_pause_reading_until_drained():
    events: list[str] = []
    p = Pair(pause=lambda: events.append("pause"), resume=lambda: events.append("resume"))
    s = await p.client.open_stream([("streamtype", "stdin")])
    srv = p.accepted[0]
    await s.write(b"x" * (spdy.READ_HIGH_WATER + 1))
    assert events == ["pause"]
    got = 0
    while got < spdy.READ_HIGH_WATER + 1:
        got += len(await srv.read())
    assert events == ["pause", "resume"]
    other = await p.client.open_stream([("streamtype", "ignored")])
    p.accepted[1].discard_input()
    await other.write(b"y" * (spdy.READ_HIGH_WATER * 2))   # nobody reads it: dropped, no pause
    assert events == ["pause", "resume"]
    await p.close()


async def test_write_failure_closes_the_session_and_fails_writers():
    async def broken(data: bytes) -> None:
        raise ConnectionResetError("gone")
    s = spdy.SpdySession(broken, server=True)
    with pytest.raises(spdy.StreamClosed):
        await s.send_frame(spdy.Ping(2))
    assert s.closed.is_set()
    await s.close()
