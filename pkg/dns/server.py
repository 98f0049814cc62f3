"""The DNS wire server: UDP and TCP on one address, answers from the Zone, the rest forwarded.

    server = DNSServer(zone, forwarder, host="0.0.0.0", port=53)
    await server.start()
    server.apply(zone.commit())      # after each batch of zone updates: re-render what changed
    server.ready = True              # until then names in the cluster zone get SERVFAIL
    ...
    await server.stop()

Hot path. Every RRset of the zone is rendered ahead of time (with dnspython) into an `Entry`: the
response header's counts and everything after the question, for a plain and an EDNS0 reply. A
query that is a plain QUERY with one question of uncompressed labels, no answer or authority
records and at most an EDNS0 OPT (version 0, DO clear) is answered by looking up its lowercased
question in that table and splicing: query id + flags (RD and CD copied) + counts + the query's own
question bytes (so the client's letter case is echoed) + the pre-rendered body, whose compression
pointers refer to the question at its fixed offset. No message is parsed or rendered per query.
Answers computed on the slow path for in-zone names that do not depend on upstream servers
(NXDOMAIN, NODATA, insecure pod names...) are rendered the same way into a second, bounded table
that every zone change empties.

Everything else (other opcodes, EDNS versions above 0 -> BADVERS, the DO bit, several questions,
malformed queries -> FORMERR, names outside the zone -> the Forwarder) is parsed and answered with
dnspython. Over UDP the reply may be as large as the client's EDNS0 payload size (512 without
EDNS0), capped at `max_udp_payload` (1232, the DNS flag day 2020 value, which we also advertise);
a larger reply goes out with TC set and no records, and the client asks again over TCP (RFC 7766:
length-prefixed, several queries per connection, answered as they complete, idle timeout).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, Awaitable, Coroutine

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .forward import Forwarder
from .records import Answer, Key, Zone

log = logging.getLogger(__name__)

MAX_UDP_PAYLOAD = 1232
TCP_IDLE_TIMEOUT = 10.0
TCP_MAX_INFLIGHT = 64
UDP_BATCH = 128                 # datagrams handled per readiness callback before yielding to the loop
DYNAMIC_CACHE_SIZE = 20000

_FLAG_QR_AA = 0x84              # byte 2 of a response: QR | AA (opcode 0); RD is copied from the query
_FLAG_TC = 0x02
_SIMPLE_COUNTS = frozenset((b"\x00\x01\x00\x00\x00\x00\x00\x00", b"\x00\x01\x00\x00\x00\x00\x00\x01"))
_TC_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_TC_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_IN = struct.pack("!H", dns.rdataclass.IN)


class ListenError(Exception):
    """A socket could not be bound; one line naming the address."""


def describe_os_error(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


@dataclass(slots=True)
class Entry:
    """A pre-rendered answer to one (name, type) question: byte 3 of the header (RA | rcode),
    the section counts and everything after the question, without and with our OPT record."""
    flags_lo: int
    counts: bytes
    body: bytes
    counts_edns: bytes
    body_edns: bytes


def table_key(name: dns.name.Name, rdtype: int) -> bytes:
    """The fast path's key: the lowercased uncompressed name, the type and the class IN."""
    return name.canonicalize().to_wire() + struct.pack("!H", rdtype) + _IN


def opt_record(payload: int = MAX_UDP_PAYLOAD) -> bytes:
    """Our OPT record as dnspython renders it (root owner, type 41, class = payload size, TTL 0,
    no options): what an EDNS0 reply carries last in its additional section."""
    m = dns.message.Message(id=0)
    plain = m.to_wire()
    m.use_edns(0, 0, payload)
    return m.to_wire()[len(plain):]


def render_entry(name: dns.name.Name, rdtype: int, ans: Answer, opt: bytes) -> Entry:
    """Render an answer for (name, rdtype) once, with dnspython; see the module doc. The EDNS0
    form is the same message with `opt` (see opt_record) appended as the last additional record."""
    name = name.canonicalize()
    r = dns.message.Message(id=0)
    r.flags = dns.flags.QR | dns.flags.AA | dns.flags.RA
    r.set_rcode(ans.rcode)
    r.question = [dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)]
    r.answer = list(ans.answer)
    r.authority = list(ans.authority)
    r.additional = list(ans.additional)
    wire = r.to_wire(max_size=65535)
    start = 12 + len(name.to_wire()) + 4
    counts = wire[4:12]
    counts_edns = counts[:6] + (int.from_bytes(counts[6:], "big") + 1).to_bytes(2, "big")
    body = wire[start:]
    return Entry(wire[3] & 0xEF, counts, body, counts_edns, body + opt)


IP_PKTINFO = 8                # <linux/in.h>; Python's socket module does not export it
IPV6_RECVPKTINFO, IPV6_PKTINFO = 49, 50


def _reply_pktinfo(anc: list) -> list:
    """The ancillary data that sends a reply from the address a query arrived at."""
    for level, kind, data in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr}: reply from addr
            return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, data[8:12], bytes(4)))]
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            # struct in6_pktinfo {in6_addr addr; int ifindex}
            return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, data[:16] + struct.pack("=i", 0))]
    return []


class DNSServer:
    """UDP and TCP DNS service for one Zone, forwarding other names (see the module doc)."""

    def __init__(self, zone: Zone, forwarder: Forwarder, *, host: str = "0.0.0.0", port: int = 53,
                 max_udp_payload: int = MAX_UDP_PAYLOAD, dynamic_cache_size: int = DYNAMIC_CACHE_SIZE) -> None:
        self.zone = zone
        self.forwarder = forwarder
        self.host = host
        self.port = port
        self.max_udp_payload = max(512, min(int(max_udp_payload), 65535))
        self.dynamic_cache_size = dynamic_cache_size
        self._opt = opt_record(self.max_udp_payload)
        self.ready = False
        self._table: dict[bytes, Entry] = {}
        self._dynamic: dict[bytes, Entry] = {}
        self._udp: socket.socket | None = None
        self._pktinfo = False
        self._tcp: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        # counters (plain ints: the hot path cannot afford more), read by the metrics collector
        self.udp_queries = 0
        self.tcp_queries = 0
        self.fast_rcodes = [0] * 16     # fast-path answers by rcode
        self.truncated = 0
        self.udp_send_dropped = 0
        self.rcodes: dict[int, int] = {}
        self.forwarded = 0
        self.renders = 0

    # -- zone changes ----------------------------------------------------------------------------

    def apply(self, changed: set[Key]) -> None:
        """Re-render the answers of the changed (name, type) keys; empties the dynamic table."""
        for name, rdtype in changed:
            k = table_key(name, rdtype)
            if self.zone.rrset(name, rdtype) is None:
                self._table.pop(k, None)
                continue
            ans = self.zone.lookup(name, rdtype)
            if ans is None or ans.chase is not None:
                self._table.pop(k, None)
                continue
            self._table[k] = render_entry(name, rdtype, ans, self._opt)
            self.renders += 1
        if changed:
            self._dynamic.clear()

    def rebuild(self) -> None:
        """Render every answer of the zone afresh."""
        self._table.clear()
        self.apply(set(self.zone.keys()))

    @property
    def precomputed(self) -> int:
        return len(self._table)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on one port; raises ListenError when that fails.

        With port 0 the kernel picks a free UDP port, which may be taken on TCP: then another is
        tried, a few times, before giving up."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._pktinfo = self.host in ("0.0.0.0", "::", "")
        pick = self.port == 0
        for attempt in range(20 if pick else 1):
            sock = self._bind_udp(family, 0 if pick else self.port)
            port = sock.getsockname()[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_client, self.host, port, reuse_address=True,
                                                       family=family)
            except OSError as e:
                sock.close()
                if pick and e.errno == errno.EADDRINUSE:
                    continue
                raise ListenError(f"cannot listen on {self.host}:{port}/tcp: {describe_os_error(e)}") from None
            break
        else:
            raise ListenError(f"cannot listen on {self.host}: no port free on both udp and tcp")
        self.port = port
        self._udp = sock
        self._loop.add_reader(sock.fileno(), self._udp_readable_pktinfo if self._pktinfo else self._udp_readable)
        log.info("serving DNS on %s:%d (udp, tcp) for %s", self.host, self.port, self.zone.domain)

    def _bind_udp(self, family: int, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)     # no SO_REUSEADDR: on UDP it would let a second server share the port
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                except OSError:
                    pass
            if self._pktinfo:      # replies must leave from the address each query was sent to
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            sock.bind((self.host, port))
        except OSError as e:
            sock.close()
            raise ListenError(f"cannot listen on {self.host}:{port}/udp: {describe_os_error(e)}") from None
        return sock

    async def stop(self) -> None:
        if self._udp is not None and self._loop is not None:
            self._loop.remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
            self._tcp = None

    def _spawn(self, coro: Coroutine) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- UDP -------------------------------------------------------------------------------------

    def _udp_readable(self) -> None:
        sock = self._udp
        if sock is None:
            return
        recv, send, fast = sock.recvfrom, sock.sendto, self.fast_answer
        count = 0
        try:
            for _ in range(UDP_BATCH):
                try:
                    data, addr = recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # e.g. ECONNREFUSED: the ICMP error of an earlier reply
                    if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                        continue
                    log.warning("udp receive failed: %s", e)
                    break
                count += 1
                reply = fast(data, True)
                if reply is None:
                    res = self.answer(data, True)
                    if res is None:
                        continue
                    if not isinstance(res, bytes):
                        self._spawn(self._udp_later(res, addr))
                        continue
                    reply = res
                try:
                    send(reply, addr)
                except (BlockingIOError, InterruptedError):
                    self.udp_send_dropped += 1
                except OSError as e:
                    log.debug("udp reply to %s failed: %s", addr, e)
        finally:
            self.udp_queries += count

    def _udp_readable_pktinfo(self) -> None:
        """The same for a wildcard address: each query's destination address comes with it
        (IP_PKTINFO) and its reply is sent from that address. Without this a node with several
        addresses answers from whichever the route back prefers, and a client behind a Service
        DNAT (or any client checking the source) drops the reply."""
        sock = self._udp
        if sock is None:
            return
        count = 0
        try:
            for _ in range(UDP_BATCH):
                try:
                    data, anc, _flags, addr = sock.recvmsg(65535, 256)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                        continue
                    log.warning("udp receive failed: %s", e)
                    break
                count += 1
                cmsg = _reply_pktinfo(anc)
                reply = self.fast_answer(data, True)
                if reply is None:
                    res = self.answer(data, True)
                    if res is None:
                        continue
                    if not isinstance(res, bytes):
                        self._spawn(self._udp_later(res, addr, cmsg))
                        continue
                    reply = res
                self._send_from(reply, addr, cmsg)
        finally:
            self.udp_queries += count

    def _send_from(self, reply: bytes, addr: Any, cmsg: list) -> None:
        if self._udp is None:
            return
        try:
            self._udp.sendmsg([reply], cmsg, 0, addr)
        except (BlockingIOError, InterruptedError):
            self.udp_send_dropped += 1
        except OSError as e:
            log.debug("udp reply to %s failed: %s", addr, e)

    async def _udp_later(self, res: Awaitable[bytes | None], addr: Any, cmsg: list | None = None) -> None:
        try:
            reply = await res
        except Exception:  # noqa: BLE001 - one bad query must not stop the server
            log.exception("answering a query from %s failed", addr)
            return
        if reply is not None and self._udp is not None:
            if cmsg is not None:
                self._send_from(reply, addr, cmsg)
                return
            try:
                self._udp.sendto(reply, addr)
            except OSError as e:
                log.debug("udp reply to %s failed: %s", addr, e)

    # -- TCP -------------------------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(TCP_MAX_INFLIGHT)
        me = asyncio.current_task()
        if me is not None:
            self._tasks.add(me)

        async def later(res: Awaitable[bytes | None]) -> None:
            try:
                reply = await res
                if reply is not None and not writer.is_closing():
                    writer.write(len(reply).to_bytes(2, "big") + reply)
            except Exception:  # noqa: BLE001
                log.exception("answering a TCP query failed")
            finally:
                slots.release()

        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")),
                                                  TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    break
                self.tcp_queries += 1
                reply = self.fast_answer(data, False)
                if reply is None:
                    res = self.answer(data, False)
                    if res is None:
                        break  # not even a header: close, as for garbage
                    if not isinstance(res, bytes):
                        await slots.acquire()
                        t = asyncio.get_running_loop().create_task(later(res))
                        pending.add(t)
                        t.add_done_callback(pending.discard)
                        continue
                    reply = res
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
            if pending:
                await asyncio.wait(pending, timeout=TCP_IDLE_TIMEOUT)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for t in pending:
                t.cancel()
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (asyncio.TimeoutError, ConnectionError, asyncio.CancelledError):
                pass
            if me is not None:
                self._tasks.discard(me)

    # -- answering -------------------------------------------------------------------------------

    def fast_answer(self, data: bytes, udp: bool) -> bytes | None:
        """The reply to a simple query from the pre-rendered tables, or None (take the slow path)."""
        n = len(data)
        if n < 17 or data[2] & 0xF8 or data[4:12] not in _SIMPLE_COUNTS:
            return None                                     # a response, another opcode, odd counts
        i = 12
        try:
            ln = data[12]
            while ln:
                if ln > 63:
                    return None                             # a compression pointer
                i += ln + 1
                ln = data[i]
        except IndexError:
            return None
        qend = i + 5
        key = data[12:i + 1].lower() + data[i + 1:qend]
        entry = self._table.get(key)
        if entry is None:
            entry = self._dynamic.get(key)
            if entry is None:
                return None
        if data[11]:                                         # one additional record: it must be an OPT
            if (data[qend:qend + 3] != b"\x00\x00\x29" or n < qend + 11 or data[qend + 6]
                    or data[qend + 7] & 0x80 or qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) != n):
                return None                                 # not OPT, EDNS version > 0, DO set, junk
            counts, body = entry.counts_edns, entry.body_edns
            if udp:
                limit = data[qend + 3] << 8 | data[qend + 4]
                limit = 512 if limit < 512 else (limit if limit < self.max_udp_payload else self.max_udp_payload)
            else:
                limit = 65535
            if qend + len(body) > limit:
                self.truncated += 1
                return b"".join((data[:2], bytes((_FLAG_QR_AA | _FLAG_TC | (data[2] & 1),
                                                  entry.flags_lo | (data[3] & 0x10))),
                                 _TC_COUNTS_EDNS, data[12:qend], self._opt))
        else:
            if qend != n:
                return None
            counts, body = entry.counts, entry.body
            if qend + len(body) > (512 if udp else 65535):
                self.truncated += 1
                return b"".join((data[:2], bytes((_FLAG_QR_AA | _FLAG_TC | (data[2] & 1),
                                                  entry.flags_lo | (data[3] & 0x10))),
                                 _TC_COUNTS, data[12:qend]))
        self.fast_rcodes[entry.flags_lo & 15] += 1
        return b"".join((data[:2], bytes((_FLAG_QR_AA | (data[2] & 1), entry.flags_lo | (data[3] & 0x10))),
                         counts, data[12:qend], body))

    def answer(self, data: bytes, udp: bool) -> bytes | Awaitable[bytes | None] | None:
        """The slow path: parse with dnspython; returns the reply, an awaitable of it (forwarding),
        or None when nothing should be sent (not a DNS query at all)."""
        try:
            q = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except dns.exception.DNSException:
            return self._formerr(data)
        if q.flags & dns.flags.QR:
            return None                                     # a response: never answer those
        r = dns.message.make_response(q, our_payload=self.max_udp_payload)
        r.flags |= dns.flags.RA | (q.flags & dns.flags.CD)
        if q.edns >= 0 and q.ednsflags & dns.flags.DO:
            r.ednsflags |= dns.flags.DO
        limit = 65535 if not udp else (max(512, min(q.payload, self.max_udp_payload)) if q.edns >= 0 else 512)
        if q.opcode() != dns.opcode.QUERY:
            return self._finish(r, dns.rcode.NOTIMP, limit)
        if len(q.question) != 1:
            return self._finish(r, dns.rcode.FORMERR, limit)
        if q.edns > 0:
            return self._finish(r, dns.rcode.BADVERS, limit)
        question = q.question[0]
        qname, rdtype, rdclass = question.name, question.rdtype, question.rdclass
        if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
            return self._finish(r, dns.rcode.NOTIMP, limit)      # AXFR, IXFR, ...
        ours = self.zone.is_ours(qname)
        if ours and rdclass != dns.rdataclass.IN:
            return self._finish(r, dns.rcode.REFUSED, limit)
        if ours and not self.ready:
            return self._finish(r, dns.rcode.SERVFAIL, limit)   # not synced: no lies, ask again
        ans = self.zone.lookup(qname, rdtype) if rdclass == dns.rdataclass.IN and self.ready else None
        if ans is not None:
            r.flags |= dns.flags.AA
            r.answer, r.authority, r.additional = list(ans.answer), list(ans.authority), list(ans.additional)
            if ans.chase is None:
                self._remember(qname, rdtype, ans)
                return self._finish(r, ans.rcode, limit)
            return self._chase(r, ans, rdtype, limit)
        return self._forward(r, qname, rdtype, rdclass, limit)

    def _remember(self, qname: dns.name.Name, rdtype: int, ans: Answer) -> None:
        """Keep a slow-path answer in the dynamic table, so the next identical question is fast."""
        if len(self._dynamic) >= self.dynamic_cache_size:
            self._dynamic.clear()
        self._dynamic[table_key(qname, rdtype)] = render_entry(qname, rdtype, ans, self._opt)

    async def _chase(self, r: dns.message.Message, ans: Answer, rdtype: int, limit: int) -> bytes:
        assert ans.chase is not None
        res = await self.forwarder.resolve(ans.chase, rdtype)
        self.forwarded += 1
        r.answer = list(ans.answer) + res.answer
        r.authority = res.authority if not res.answer else []
        r.additional = []
        return self._finish(r, res.rcode, limit)

    async def _forward(self, r: dns.message.Message, qname: dns.name.Name, rdtype: int, rdclass: int,
                       limit: int) -> bytes:
        res = await self.forwarder.resolve(qname, rdtype, rdclass)
        self.forwarded += 1
        r.answer, r.authority = res.answer, res.authority
        r.additional = [rr for rr in res.additional if rr.rdtype not in (dns.rdatatype.OPT, dns.rdatatype.TSIG)]
        return self._finish(r, res.rcode, limit)

    def _finish(self, r: dns.message.Message, rcode: int, limit: int) -> bytes:
        r.set_rcode(rcode)
        self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
        try:
            return r.to_wire(max_size=limit)
        except dns.exception.TooBig:
            self.truncated += 1
            r.answer, r.authority, r.additional = [], [], []
            r.flags |= dns.flags.TC
            return r.to_wire(max_size=limit)

    def _formerr(self, data: bytes) -> bytes | None:
        if data[2] & 0x80:
            return None
        r = dns.message.Message(id=int.from_bytes(data[:2], "big"))
        r.flags = dns.flags.QR | dns.flags.RA
        r.set_rcode(dns.rcode.FORMERR)
        self.rcodes[dns.rcode.FORMERR] = self.rcodes.get(dns.rcode.FORMERR, 0) + 1
        return r.to_wire()


def rcode_counts(server: DNSServer) -> dict[str, int]:
    """Responses by rcode name, the fast path's answers counted as NOERROR."""
    out: dict[str, int] = {}
    for code, n in server.rcodes.items():
        out[dns.rcode.to_text(code)] = out.get(dns.rcode.to_text(code), 0) + n
    for code, n in enumerate(server.fast_rcodes):
        if n:
            out[dns.rcode.to_text(code)] = out.get(dns.rcode.to_text(code), 0) + n
    return out
