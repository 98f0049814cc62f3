"""The wire side of kubelab-dns (kubelab.dns.server) without sockets: the pre-rendered fast path
against dnspython's own parse, EDNS0, truncation, the slow path's rcodes, forwarding."""
from __future__ import annotations

import asyncio

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype as T
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelab.dns.forward import Forwarder, Upstream
from kubelab.dns.records import Zone
from kubelab.dns.server import DNSServer


def build(upstream_answers: dict | None = None) -> DNSServer:
    z = Zone("cluster.local", clock=lambda: 1_700_000_000)
    z.set_namespace("default")
    z.set_service({"metadata": {"namespace": "default", "name": "web"},
                   "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    z.set_service({"metadata": {"namespace": "default", "name": "big"},
                   "spec": {"clusterIP": "None", "clusterIPs": ["None"]}})
    z.set_endpoint_slice({"metadata": {"namespace": "default", "name": "big-1",
                                       "labels": {"kubernetes.io/service-name": "big"}},
                          "addressType": "IPv4", "ports": [],
                          "endpoints": [{"addresses": [f"10.244.{i // 200}.{i % 200 + 1}"]} for i in range(120)]})
    z.set_service({"metadata": {"namespace": "default", "name": "ext"},
                   "spec": {"type": "ExternalName", "externalName": "www.example.com"}})

    async def query(q, up, tcp, timeout):
        r = dns.message.make_response(q)
        qn = q.question[0].name.to_text()
        for text in (upstream_answers or {}).get(qn, []):
            r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", q.question[0].rdtype, text))
        if not r.answer:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "SOA",
                                                   "ns. host. 1 2 3 4 30"))
        return r

    s = DNSServer(z, Forwarder([Upstream("192.0.2.1")], query=query), host="127.0.0.1", port=0)
    s.apply(z.commit())
    s.ready = True
    return s


_SHARED: list[DNSServer] = []


def _shared() -> DNSServer:
    """One server for the property test (the fast path does not change it)."""
    if not _SHARED:
        _SHARED.append(build())
    return _SHARED[0]


def ask(s: DNSServer, q: dns.message.Message, udp: bool = True) -> dns.message.Message:
    wire = q.to_wire()
    out = s.fast_answer(wire, udp)
    if out is None:
        res = s.answer(wire, udp)
        if res is not None and not isinstance(res, bytes):
            res = asyncio.run(res)
        out = res
    assert out is not None
    return dns.message.from_wire(out)


def fast(s: DNSServer, q: dns.message.Message, udp: bool = True) -> bytes | None:
    return s.fast_answer(q.to_wire(), udp)


def test_fast_path_answer_is_a_correct_reply():
    s = build()
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    out = fast(s, q)
    assert out is not None, "a precomputed name must take the fast path"
    r = dns.message.from_wire(out)
    assert r.id == q.id and q.is_response(r)
    assert r.flags & dns.flags.QR and r.flags & dns.flags.AA and r.flags & dns.flags.RA
    assert r.flags & dns.flags.RD                      # copied from the query
    assert r.rcode() == dns.rcode.NOERROR and r.edns < 0
    assert [rd.to_text() for rd in r.answer[0]] == ["10.96.0.20"] and r.answer[0].ttl == 5
    # identical to what the slow path (dnspython all the way) says
    slow = dns.message.from_wire(s.answer(q.to_wire(), True))
    assert slow.answer == r.answer and slow.flags == r.flags and slow.rcode() == r.rcode()


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.booleans(), min_size=29, max_size=29), st.booleans(), st.booleans(), st.integers(0, 65535),
       st.sampled_from([None, 512, 1232, 4096]))
def test_fast_path_echoes_case_and_flags(upper, rd, cd, qid, payload):
    s = _shared()
    text = "".join(c.upper() if u else c for c, u in zip("web.default.svc.cluster.local", upper))
    q = dns.message.make_query(text, "A") if payload is None else \
        dns.message.make_query(text, "A", use_edns=0, payload=payload)
    q.id = qid
    q.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    out = fast(s, q)
    assert out is not None
    r = dns.message.from_wire(out)
    assert r.id == qid
    assert r.question[0].name.to_text() == text + "."          # the client's own bytes
    assert r.answer[0].name.to_text() == text + "."            # the compression pointer points at them
    assert bool(r.flags & dns.flags.RD) == rd and bool(r.flags & dns.flags.CD) == cd
    assert (r.edns == 0 and r.payload == 1232) if payload else r.edns < 0


def test_other_types_at_a_name_and_unknown_names_are_cached_after_one_slow_answer():
    s = build()
    q = dns.message.make_query("web.default.svc.cluster.local", "TXT")
    assert fast(s, q) is None
    r = ask(s, q)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority[0].rdtype == T.SOA
    assert fast(s, q) is not None, "NODATA is kept for the next time"
    q2 = dns.message.make_query("nothere.default.svc.cluster.local", "A")
    assert ask(s, q2).rcode() == dns.rcode.NXDOMAIN
    r2 = dns.message.from_wire(fast(s, q2))
    assert r2.rcode() == dns.rcode.NXDOMAIN and r2.flags & dns.flags.AA
    assert r2.authority[0].name == dns.name.from_text("cluster.local")
    # a zone change empties that table
    s.zone.set_service({"metadata": {"namespace": "default", "name": "nothere"},
                        "spec": {"clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.99"]}})
    s.apply(s.zone.commit())
    assert fast(s, q) is None
    r3 = dns.message.from_wire(fast(s, q2))
    assert r3.rcode() == dns.rcode.NOERROR and r3.answer[0][0].to_text() == "10.96.0.99"


def test_truncation_over_udp_and_full_answer_over_tcp():
    s = build()
    q = dns.message.make_query("big.default.svc.cluster.local", "A")          # no EDNS: 512 bytes
    r = dns.message.from_wire(fast(s, q))
    assert r.flags & dns.flags.TC and not r.answer
    q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=4096)
    out = fast(s, q)
    assert len(out) <= 1232, "never more than our own payload limit over UDP"
    r = dns.message.from_wire(out)
    assert r.flags & dns.flags.TC and not r.answer and r.edns == 0
    r = dns.message.from_wire(fast(s, q, udp=False))
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 120
    # the slow path truncates the same way
    q.flags |= dns.flags.AD
    q.want_dnssec(True)                                   # DO set: not for the fast path
    assert fast(s, q) is None
    r = dns.message.from_wire(s.answer(q.to_wire(), True))
    assert r.flags & dns.flags.TC and not r.answer and r.ednsflags & dns.flags.DO
    r = dns.message.from_wire(s.answer(q.to_wire(), False))
    assert len(r.answer[0]) == 120


def test_edns_version_options_and_junk():
    s = build()
    q = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=1)
    assert fast(s, q) is None
    r = ask(s, q)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0
    # an EDNS option (a cookie, as dig sends) is fine for the fast path
    q = dns.message.make_query("web.default.svc.cluster.local", "A", use_edns=0,
                               options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")])
    assert fast(s, q) is not None
    # trailing bytes, a truncated question, a compression pointer: not the fast path
    wire = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
    assert s.fast_answer(wire + b"\x00", True) is None
    assert s.fast_answer(wire[:20], True) is None
    assert s.fast_answer(wire[:12] + b"\xc0\x0c" + wire[-4:], True) is None
    assert s.answer(wire[:20], True) is not None          # FORMERR
    assert dns.message.from_wire(s.answer(wire[:20], True)).rcode() == dns.rcode.FORMERR
    assert s.answer(b"\x01\x02", True) is None            # not even a header: silence
    # a response is never answered
    resp = dns.message.from_wire(fast(s, dns.message.make_query("web.default.svc.cluster.local", "A")))
    assert s.fast_answer(resp.to_wire(), True) is None and s.answer(resp.to_wire(), True) is None


def test_slow_path_rcodes():
    s = build()
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    assert ask(s, q).rcode() == dns.rcode.NOTIMP
    q = dns.message.make_query("cluster.local", "AXFR")
    assert ask(s, q).rcode() == dns.rcode.NOTIMP
    q = dns.message.make_query("web.default.svc.cluster.local", "A", rdclass="CH")
    assert ask(s, q).rcode() == dns.rcode.REFUSED
    s.ready = False
    q = dns.message.make_query("web.default.svc.cluster.local", "MX")
    assert ask(s, q).rcode() == dns.rcode.SERVFAIL


def test_forwarding_and_external_name_chase():
    s = build({"www.example.com.": ["93.184.216.34"], "example.org.": ["192.0.2.7"]})
    r = ask(s, dns.message.make_query("example.org", "A"))
    assert r.rcode() == dns.rcode.NOERROR and [rd.to_text() for rd in r.answer[0]] == ["192.0.2.7"]
    assert not r.flags & dns.flags.AA and r.flags & dns.flags.RA
    r = ask(s, dns.message.make_query("ext.default.svc.cluster.local", "A"))
    assert [rr.rdtype for rr in r.answer] == [T.CNAME, T.A]
    assert r.answer[1].name == dns.name.from_text("www.example.com")
    assert r.flags & dns.flags.AA
    r = ask(s, dns.message.make_query("missing.example.org", "A"))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == T.SOA
    assert s.forwarder.stats["cache_hits"] == 0
    ask(s, dns.message.make_query("example.org", "A"))
    assert s.forwarder.stats["cache_hits"] == 1


def test_reverse_lookups():
    s = build()
    r = ask(s, dns.message.make_query(dns.name.from_text("20.0.96.10.in-addr.arpa"), "PTR"))
    assert [rd.to_text() for rd in r.answer[0]] == ["web.default.svc.cluster.local."]
    assert fast(s, dns.message.make_query(dns.name.from_text("20.0.96.10.in-addr.arpa"), "PTR")) is not None
    # an address the cluster does not know goes upstream (whose answer here is NXDOMAIN)
    r = ask(s, dns.message.make_query(dns.name.from_text("1.1.168.192.in-addr.arpa"), "PTR"))
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.flags & dns.flags.AA


@pytest.mark.parametrize("qname", ["web.default.svc.cluster.local", "_http._tcp.web.default.svc.cluster.local",
                                   "cluster.local", "dns-version.cluster.local"])
def test_every_precomputed_answer_matches_the_slow_path(qname):
    s = build()
    for rdtype in ("A", "SRV", "SOA", "NS", "TXT"):
        q = dns.message.make_query(qname, rdtype, use_edns=0)
        out = fast(s, q)
        if out is None:
            continue
        a = dns.message.from_wire(out)
        b = dns.message.from_wire(s.answer(q.to_wire(), True))
        assert (a.rcode(), a.flags, a.answer, a.authority, a.additional, a.edns, a.payload) == \
            (b.rcode(), b.flags, b.answer, b.authority, b.additional, b.edns, b.payload), (qname, rdtype)
