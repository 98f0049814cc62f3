"""Forwarding what the cluster zone does not answer: upstream servers and a TTL-respecting cache.

    ups = upstreams_from_resolv_conf("/etc/resolv.conf")        # or [parse_upstream("10.0.0.2:53")]
    fwd = Forwarder(ups)
    res = await fwd.resolve(dns.name.from_text("example.com"), dns.rdatatype.A)

Upstreams come from a resolv.conf's `nameserver` lines, skipping local stub resolvers
(127.0.0.0/8 and ::1, e.g. systemd-resolved's 127.0.0.53, or this server's own address): a
stub would hand the query back to the node's resolver, which may point at the cluster DNS again
(the loop CoreDNS's `loop` plugin exists to catch). When that leaves nothing, the real upstreams
systemd-resolved itself uses (/run/systemd/resolve/resolv.conf) are read instead, as the kubelet
does. Each skip is logged. `--upstream` overrides all this (and may name a loopback server).

Queries go over UDP (EDNS0, 1232-byte payload) and again over TCP when the answer is truncated;
each upstream is tried in turn (starting with the last one that answered) with a per-try timeout.
Answers are cached: a positive one for the smallest TTL of its answer and authority RRsets (at
most `max_ttl`), a negative one (NXDOMAIN or NODATA) for min(SOA TTL, SOA minimum) (RFC 2308, at
most `max_negative_ttl`); answers without TTL (0), SERVFAIL and failures are not cached. Cached
answers are served with their TTLs reduced by the time spent in the cache. Concurrent identical
questions share one upstream query.
"""
from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger(__name__)

DEFAULT_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLVED_UPSTREAMS = "/run/systemd/resolve/resolv.conf"
UPSTREAM_PAYLOAD = 1232


class ConfigError(Exception):
    """A bad --upstream value or an unreadable resolv.conf; one line for people."""


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """"1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353" -> Upstream."""
    t = text.strip()
    host, port = t, 53
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ConfigError(f"bad upstream {text!r}: missing ']'")
        host, rest = t[1:end], t[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad upstream {text!r}")
            port = _port(rest[1:], text)
    elif t.count(":") == 1:
        host, p = t.split(":")
        port = _port(p, text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"bad upstream {text!r}: {host!r} is not an IP address") from None
    return Upstream(host, port)


def _port(p: str, text: str) -> int:
    try:
        port = int(p)
    except ValueError:
        raise ConfigError(f"bad upstream {text!r}: port {p!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"bad upstream {text!r}: port {port} out of range")
    return port


def parse_resolv_conf(text: str) -> list[str]:
    """The addresses of the `nameserver` lines, in order (IPv6 zone ids are dropped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            addr = parts[1].split("%", 1)[0]
            try:
                out.append(str(ipaddress.ip_address(addr)))
            except ValueError:
                log.warning("resolv.conf: ignoring nameserver %r: not an IP address", parts[1])
    return out


def is_local_stub(addr: str) -> bool:
    """True for loopback addresses (127.0.0.0/8, ::1): a local stub resolver, not an upstream."""
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def upstreams_from_resolv_conf(path: str = DEFAULT_RESOLV_CONF, *, own: frozenset[str] = frozenset(),
                               fallback: str | None = SYSTEMD_RESOLVED_UPSTREAMS) -> list[Upstream]:
    """The upstream servers of a resolv.conf, without local stubs and without `own` (the
    addresses this server answers on); when none is left, those of `fallback` (systemd-resolved's
    list of real upstreams), filtered the same way. Raises ConfigError when `path` is unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            addrs = parse_resolv_conf(f.read())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    out = _usable(addrs, path, own)
    if not out and fallback and os.path.abspath(fallback) != os.path.abspath(path) and os.path.exists(fallback):
        log.info("no usable upstream in %s; reading %s (systemd-resolved's upstream servers)", path, fallback)
        try:
            with open(fallback, encoding="utf-8", errors="replace") as f:
                out = _usable(parse_resolv_conf(f.read()), fallback, own)
        except OSError as e:
            log.warning("cannot read %s: %s", fallback, e.strerror or e)
    if not out:
        log.warning("no upstream DNS server: names outside the cluster domain will get SERVFAIL "
                    "(set --upstream or --resolv-conf)")
    return out


def _usable(addrs: list[str], path: str, own: frozenset[str]) -> list[Upstream]:
    out = []
    for a in addrs:
        if is_local_stub(a):
            log.info("skipping nameserver %s from %s: a local stub resolver would loop back (use its upstream "
                     "servers or --upstream)", a, path)
        elif a in own:
            log.info("skipping nameserver %s from %s: that is this server", a, path)
        elif Upstream(a) not in out:
            out.append(Upstream(a))
    return out


@dataclass
class Resolved:
    """An upstream answer (or a cached one, TTLs aged)."""
    rcode: int
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    cached: bool = False


CacheKey = tuple[dns.name.Name, int, int]
QueryFunc = Callable[[dns.message.Message, Upstream, bool, float], Awaitable[dns.message.Message]]


async def _query(q: dns.message.Message, up: Upstream, tcp: bool, timeout: float) -> dns.message.Message:
    if tcp:
        return await dns.asyncquery.tcp(q, up.host, timeout=timeout, port=up.port)
    return await dns.asyncquery.udp(q, up.host, timeout=timeout, port=up.port)


class Forwarder:
    """Resolves questions through the upstream servers, with a cache (see the module doc).

    `query(message, upstream, tcp, timeout)` sends one query (dnspython's asyncio transport by
    default; tests may pass their own); `clock` is monotonic seconds.
    """

    def __init__(self, upstreams: list[Upstream], *, timeout: float = 2.0, cache_size: int = 10000,
                 max_ttl: int = 3600, max_negative_ttl: int = 1800, query: QueryFunc | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.cache_size = cache_size
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._query = query or _query
        self._clock = clock
        self._cache: collections.OrderedDict[CacheKey, tuple[float, float, Resolved]] = collections.OrderedDict()
        self._inflight: dict[CacheKey, asyncio.Future] = {}
        self._preferred = 0
        self.stats = {"requests": 0, "cache_hits": 0, "cache_misses": 0, "upstream_queries": 0,
                      "upstream_failures": 0, "servfail": 0}

    def __len__(self) -> int:
        return len(self._cache)

    async def resolve(self, qname: dns.name.Name, rdtype: int, rdclass: int = dns.rdataclass.IN) -> Resolved:
        """The answer for one question: from the cache, or from an upstream (SERVFAIL when none answers)."""
        self.stats["requests"] += 1
        key = (qname.canonicalize(), int(rdtype), int(rdclass))
        hit = self._cached(key)
        if hit is not None:
            self.stats["cache_hits"] += 1
            return hit
        self.stats["cache_misses"] += 1
        fut = self._inflight.get(key)
        if fut is not None:
            return _copy(await asyncio.shield(fut), 0)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            res = await self._ask_upstreams(qname, rdtype, rdclass)
            self._store(key, res)
            fut.set_result(res)
            return res
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters get it, nobody logs it as never retrieved
            raise
        finally:
            self._inflight.pop(key, None)

    async def _ask_upstreams(self, qname: dns.name.Name, rdtype: int, rdclass: int) -> Resolved:
        n = len(self.upstreams)
        for i in range(n):
            idx = (self._preferred + i) % n
            up = self.upstreams[idx]
            q = dns.message.make_query(qname, rdtype, rdclass, use_edns=0, payload=UPSTREAM_PAYLOAD)
            try:
                self.stats["upstream_queries"] += 1
                r = await self._query(q, up, False, self.timeout)
                if r.flags & dns.flags.TC:
                    self.stats["upstream_queries"] += 1
                    r = await self._query(q, up, True, self.timeout)
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as e:
                self.stats["upstream_failures"] += 1
                log.info("upstream %s failed for %s %s: %s", up, qname, dns.rdatatype.to_text(rdtype),
                         type(e).__name__ if not str(e) else e)
                continue
            rcode = r.rcode()
            if rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED) and i + 1 < n:
                self.stats["upstream_failures"] += 1
                continue
            self._preferred = idx
            return Resolved(rcode, list(r.answer), list(r.authority), list(r.additional))
        self.stats["servfail"] += 1
        return Resolved(dns.rcode.SERVFAIL)

    # -- cache ---------------------------------------------------------------------------------

    def _cache_ttl(self, res: Resolved) -> int:
        if res.rcode == dns.rcode.NOERROR and res.answer:
            ttls = [r.ttl for r in res.answer] + [r.ttl for r in res.authority]
            return min(min(ttls), self.max_ttl)
        if res.rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            for r in res.authority:
                if r.rdtype == dns.rdatatype.SOA and len(r):
                    return min(r.ttl, r[0].minimum, self.max_negative_ttl)
        return 0

    def _store(self, key: CacheKey, res: Resolved) -> None:
        ttl = self._cache_ttl(res)
        if ttl <= 0 or self.cache_size <= 0:
            return
        now = self._clock()
        self._cache[key] = (now, now + ttl, res)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _cached(self, key: CacheKey) -> Resolved | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        stored, expires, res = entry
        now = self._clock()
        if now >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return _copy(res, int(now - stored), cached=True)

    def flush(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()


def _copy(res: Resolved, age: int, cached: bool = False) -> Resolved:
    def aged(rrsets: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
        out = []
        for r in rrsets:
            c = r.copy()
            c.ttl = max(0, r.ttl - age)
            out.append(c)
        return out
    return Resolved(res.rcode, aged(res.answer), aged(res.authority), aged(res.additional), cached)
