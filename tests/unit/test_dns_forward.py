"""Upstream selection and the forward cache (kubelab.dns.forward), with a scripted upstream."""
from __future__ import annotations

import asyncio
import logging

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest

from kubelab.dns.forward import (ConfigError, Forwarder, Upstream, parse_resolv_conf, parse_upstream,
                                 upstreams_from_resolv_conf)


def test_parse_upstream():
    assert parse_upstream("10.0.0.2") == Upstream("10.0.0.2", 53)
    assert parse_upstream("10.0.0.2:5353") == Upstream("10.0.0.2", 5353)
    assert parse_upstream("::1") == Upstream("::1", 53)
    assert parse_upstream("[fd00::2]:54") == Upstream("fd00::2", 54)
    assert str(parse_upstream("[fd00::2]:54")) == "[fd00::2]:54"
    for bad in ("dns.google", "10.0.0.2:x", "10.0.0.2:0", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ConfigError):
            parse_upstream(bad)


def test_parse_resolv_conf():
    text = ("# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 # link-local\n"
            "options ndots:5\nnameserver bogus\n; other comment\nnameserver 127.0.0.53\n")
    assert parse_resolv_conf(text) == ["10.0.0.2", "fe80::1", "127.0.0.53"]


def test_local_stubs_are_skipped_with_a_log_line(tmp_path, caplog):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 10.96.0.10\n"
                    "nameserver 10.0.0.2\n")
    with caplog.at_level(logging.INFO, logger="kubelab.dns.forward"):
        ups = upstreams_from_resolv_conf(str(conf), own=frozenset({"10.96.0.10"}), fallback=None)
    assert ups == [Upstream("10.0.0.2")]
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "skipping nameserver 127.0.0.53" in msgs and "skipping nameserver ::1" in msgs
    assert "10.96.0.10" in msgs and "that is this server" in msgs


def test_stub_only_resolv_conf_falls_back_to_resolved_upstreams(tmp_path, caplog):
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    real = tmp_path / "resolved.conf"
    real.write_text("nameserver 192.0.2.53\nnameserver 127.0.0.1\n")
    assert upstreams_from_resolv_conf(str(stub), fallback=str(real)) == [Upstream("192.0.2.53")]
    with caplog.at_level(logging.WARNING, logger="kubelab.dns.forward"):
        assert upstreams_from_resolv_conf(str(stub), fallback=str(tmp_path / "missing")) == []
    assert "no upstream DNS server" in caplog.text
    with pytest.raises(ConfigError, match="cannot read"):
        upstreams_from_resolv_conf(str(tmp_path / "nope"))


class Scripted:
    """An upstream that answers from a table and records every query."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, bool]] = []
        self.ttl = 300
        self.fail: set[str] = set()
        self.truncate = False
        self.delay = 0.0

    async def __call__(self, q: dns.message.Message, up: Upstream, tcp: bool, timeout: float) -> dns.message.Message:
        qn = q.question[0].name.to_text()
        self.asked.append((qn, up.host, tcp))
        if self.delay:
            await asyncio.sleep(self.delay)
        if up.host in self.fail:
            raise dns.exception.Timeout()
        r = dns.message.make_response(q)
        if self.truncate and not tcp:
            r.flags |= dns.flags.TC
            return r
        if qn.startswith("nx."):
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(dns.rrset.from_text("example.com.", 900, "IN", "SOA", "ns. h. 1 2 3 4 60"))
        elif qn.startswith("nosoa."):
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif qn.startswith("broken."):
            r.set_rcode(dns.rcode.SERVFAIL)
        elif qn.startswith("zero."):
            r.answer.append(dns.rrset.from_text(q.question[0].name, 0, "IN", "A", "192.0.2.9"))
        else:
            r.answer.append(dns.rrset.from_text(q.question[0].name, self.ttl, "IN", "A", "192.0.2.1"))
            r.answer.append(dns.rrset.from_text("x.example.com.", self.ttl + 100, "IN", "A", "192.0.2.2"))
        return r


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fwd(script: Scripted, clock: Clock, ups=("192.0.2.53",), **kw) -> Forwarder:
    return Forwarder([Upstream(u) for u in ups], query=script, clock=clock, **kw)


async def test_cache_respects_and_ages_ttls():
    s, c = Scripted(), Clock()
    f = fwd(s, c)
    q = dns.name.from_text("www.example.com")
    r1 = await f.resolve(q, T.A)
    assert r1.rcode == dns.rcode.NOERROR and not r1.cached and r1.answer[0].ttl == 300
    c.t += 100
    r2 = await f.resolve(dns.name.from_text("WWW.Example.COM"), T.A)
    assert r2.cached and r2.answer[0].ttl == 200 and r2.answer[1].ttl == 300
    assert len(s.asked) == 1, "the second question must not reach the upstream"
    assert f.stats["cache_hits"] == 1 and f.stats["cache_misses"] == 1
    c.t += 200                                   # the smallest TTL has run out
    r3 = await f.resolve(q, T.A)
    assert not r3.cached and len(s.asked) == 2
    # the cached entry was not aged by handing out copies
    c.t += 1
    assert (await f.resolve(q, T.A)).answer[0].ttl == 299
    # another type is another question
    await f.resolve(q, T.AAAA)
    assert len(s.asked) == 3


async def test_negative_answers_cached_by_soa_minimum_and_failures_not_at_all():
    s, c = Scripted(), Clock()
    f = fwd(s, c, max_ttl=3600, max_negative_ttl=1800)
    nx = dns.name.from_text("nx.example.com")
    assert (await f.resolve(nx, T.A)).rcode == dns.rcode.NXDOMAIN
    c.t += 59
    assert (await f.resolve(nx, T.A)).cached
    c.t += 1
    assert not (await f.resolve(nx, T.A)).cached        # min(SOA TTL 900, minimum 60)
    for name in ("nosoa.example.com", "broken.example.com", "zero.example.com"):
        await f.resolve(dns.name.from_text(name), T.A)
        await f.resolve(dns.name.from_text(name), T.A)
        assert sum(1 for a in s.asked if a[0] == name + ".") == 2, name
    s.ttl = 10**6
    big = dns.name.from_text("big.example.com")
    await f.resolve(big, T.A)
    c.t += 3599
    assert (await f.resolve(big, T.A)).cached
    c.t += 1
    assert not (await f.resolve(big, T.A)).cached        # capped at max_ttl


async def test_failover_truncation_and_servfail():
    s, c = Scripted(), Clock()
    f = fwd(s, c, ups=("192.0.2.1", "192.0.2.2"))
    s.fail = {"192.0.2.1"}
    r = await f.resolve(dns.name.from_text("a.example.com"), T.A)
    assert r.rcode == dns.rcode.NOERROR
    assert [a[1] for a in s.asked] == ["192.0.2.1", "192.0.2.2"]
    await f.resolve(dns.name.from_text("b.example.com"), T.A)
    assert s.asked[-1][1] == "192.0.2.2", "the server that answered is asked first next time"
    s.truncate = True
    await f.resolve(dns.name.from_text("c.example.com"), T.A)
    assert s.asked[-2:] == [("c.example.com.", "192.0.2.2", False), ("c.example.com.", "192.0.2.2", True)]
    s.truncate = False
    s.fail = {"192.0.2.1", "192.0.2.2"}
    r = await f.resolve(dns.name.from_text("d.example.com"), T.A)
    assert r.rcode == dns.rcode.SERVFAIL and f.stats["servfail"] == 1
    none = Forwarder([], query=s)
    assert (await none.resolve(dns.name.from_text("e.example.com"), T.A)).rcode == dns.rcode.SERVFAIL


async def test_concurrent_identical_questions_share_one_upstream_query():
    s, c = Scripted(), Clock()
    s.delay = 0.05
    f = fwd(s, c)
    rs = await asyncio.gather(*(f.resolve(dns.name.from_text("same.example.com"), T.A) for _ in range(20)))
    assert len(s.asked) == 1
    assert all(r.answer and r.answer[0][0].to_text() == "192.0.2.1" for r in rs)


async def test_cache_size_is_bounded():
    s, c = Scripted(), Clock()
    f = fwd(s, c, cache_size=10)
    for i in range(25):
        await f.resolve(dns.name.from_text(f"n{i}.example.com"), T.A)
    assert len(f) == 10
    await f.resolve(dns.name.from_text("n24.example.com"), T.A)
    assert f.stats["cache_hits"] == 1
    await f.resolve(dns.name.from_text("n0.example.com"), T.A)
    assert f.stats["cache_hits"] == 1, "the oldest entries went first"
