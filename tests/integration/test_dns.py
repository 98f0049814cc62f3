"""kubelab-dns as a process against the real apiserver: queried with dnspython and with the real `dig`.

The tests create Services, EndpointSlices and Pods through the API themselves (there is no
EndpointSlice controller yet). Names outside the cluster domain go to a small dnspython upstream
run by the test, which counts what it is asked.
"""
from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import psutil
import pytest

from kubelab import proc
from kubelab.client.rest import Client
from kubelab.lab.controlplane import free_port, spawn, stop

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
ZONE = "cluster.local"


# -- a fake upstream ---------------------------------------------------------------------------


class FakeUpstream:
    """A UDP DNS server in a thread: *.example.test A 192.0.2.<n> (TTL 300), everything else NXDOMAIN."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except (socket.timeout, OSError):
                continue
            try:
                q = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001
                continue
            qn = q.question[0].name
            self.asked.append(qn.to_text())
            r = dns.message.make_response(q)
            r.flags |= dns.flags.RA
            if qn.to_text().endswith(".example.test.") and q.question[0].rdtype == dns.rdatatype.A:
                r.answer.append(dns.rrset.from_text(qn, 300, "IN", "A", f"192.0.2.{len(qn.labels)}"))
            else:
                r.set_rcode(dns.rcode.NXDOMAIN)
                r.authority.append(dns.rrset.from_text("example.test.", 60, "IN", "SOA",
                                                       "ns.example.test. h.example.test. 1 7200 1800 86400 30"))
            self.sock.sendto(r.to_wire(), addr)

    def count(self, name: str) -> int:
        return sum(1 for n in self.asked if n.lower() == name.lower().rstrip(".") + ".")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# -- the server process ----------------------------------------------------------------------


class DNSProc:
    def __init__(self, tmp: Path, kubeconfig: Path, args: list[str]) -> None:
        self.port = free_port()
        self.health = free_port()
        self.metrics = free_port()
        self.log = tmp / f"kubelab-dns-{self.port}.log"
        cmd = [sys.executable, "-c", "from kubelab.cmd.dns import main; main()", "--kubeconfig", str(kubeconfig),
               "--bind-address", HOST, "--port", str(self.port), "--health-port", str(self.health),
               "--metrics-port", str(self.metrics), *args]
        self.proc = spawn(cmd, self.log)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kubelab-dns exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.health}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"kubelab-dns not ready within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> str:
        stop(self.proc)
        text = self.log.read_text()
        assert "Traceback" not in text, text[-3000:]
        return text


def _listening(port: int) -> bool:
    return any(c.laddr and c.laddr.port == port for c in psutil.net_connections("inet")
               if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE))


@pytest.fixture(scope="module")
def upstream():
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def server(control_plane, upstream, tmp_path_factory):
    d = DNSProc(tmp_path_factory.mktemp("dns"), control_plane.kubeconfig, ["--upstream", f"{HOST}:{upstream.port}"])
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()
    assert d.proc.returncode == 0, f"kubelab-dns exited {d.proc.returncode} on SIGTERM"
    for port in (d.port, d.health, d.metrics):
        assert not _listening(port), f"port {port} still open after kubelab-dns stopped"


@pytest.fixture
async def api(control_plane):
    c = Client.from_kubeconfig(str(control_plane.kubeconfig), component="dns-itest")
    try:
        yield c
    finally:
        await c.close()


# -- helpers ---------------------------------------------------------------------------------


async def query(server: DNSProc, name: str, rdtype: str = "A", tcp: bool = False, **kw) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    if tcp:
        return await dns.asyncquery.tcp(q, HOST, port=server.port, timeout=3)
    return await dns.asyncquery.udp(q, HOST, port=server.port, timeout=3)


async def dig(server: DNSProc, *args: str) -> str:
    res = await proc.run(["dig", f"@{HOST}", "-p", str(server.port), "+time=2", "+tries=1", *args], timeout=20)
    return res.text


def rdatas(msg: dns.message.Message, rdtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rr in msg.answer if rr.rdtype == t for rd in rr)


async def eventually(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        last = cond()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def service(ns: str, name: str, *, headless: bool = False, ports=(("http", 80),), **spec) -> dict:
    s: dict = {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports], "selector": {"app": name}}
    if headless:
        s["clusterIP"] = "None"
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def endpoint_slice(ns: str, name: str, svc: str, endpoints: list[dict], ports=(("http", 8080),)) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports], "endpoints": endpoints}


def endpoint(ip: str, ready: bool = True, **extra) -> dict:
    return dict({"addresses": [ip], "conditions": {"ready": ready}}, **extra)


async def make_pod(api: Client, ns: str, name: str, ip: str, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": dict({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}, **spec)}
    await api.create("v1", "pods", body, ns)
    return await api.patch("v1", "pods", ns, name, {"status": {"phase": "Running", "podIP": ip,
                                                               "podIPs": [{"ip": ip}]}}, subresource="status")


def fqdn(*labels: str) -> str:
    return ".".join(labels) + "." + ZONE


# -- tests -----------------------------------------------------------------------------------


async def test_service_a_srv_ptr_with_dnspython_and_dig(server, api, namespace):
    svc = await api.create("v1", "services", service(namespace, "web", ports=(("http", 80), ("metrics", 9090))),
                           namespace)
    ip = svc["spec"]["clusterIP"]
    name = fqdn("web", namespace, "svc")
    r = await eventually(lambda: _answered(server, name), 5, f"{name} in DNS")
    assert rdatas(r) == [ip] and r.answer[0].ttl == 5 and r.flags & dns.flags.AA
    assert (await dig(server, name, "+short")).split() == [ip]
    # mixed case in, the same records out
    assert rdatas(await query(server, name.upper())) == [ip]
    srv = (await dig(server, f"_http._tcp.{name}", "SRV", "+short")).strip()
    assert srv == f"0 100 80 {name}."
    r = await query(server, f"_metrics._tcp.{name}", "SRV")
    assert rdatas(r, "SRV") == [f"0 100 9090 {name}."]
    assert [rd.to_text() for rr in r.additional if rr.rdtype == dns.rdatatype.A for rd in rr] == [ip]
    assert (await dig(server, "-x", ip, "+short")).split() == [name + "."]
    # NODATA (with the SOA) against NXDOMAIN
    out = await dig(server, name, "AAAA")
    assert "status: NOERROR" in out and "ANSWER: 0" in out
    assert re.search(r"cluster\.local\.\s+5\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. "
                     r"\d+ 7200 1800 86400 5", out), out
    out = await dig(server, fqdn("nothere", namespace, "svc"))
    assert "status: NXDOMAIN" in out and "AUTHORITY: 1" in out
    out = await dig(server, fqdn(namespace, "svc"))
    assert "status: NOERROR" in out, "an existing namespace is an empty non-terminal"
    assert "status: NXDOMAIN" in await dig(server, fqdn("web", "no-such-namespace", "svc"))


async def _answered(server: DNSProc, name: str, rdtype: str = "A") -> dns.message.Message | None:
    r = await query(server, name, rdtype)
    return r if r.rcode() == dns.rcode.NOERROR and r.answer else None


async def test_headless_ready_endpoints_and_update_within_one_second(server, api, namespace):
    await api.create("v1", "services", service(namespace, "db", headless=True, ports=(("pg", 5432),)), namespace)
    eps = [endpoint("10.244.7.1", hostname="db-0"), endpoint("10.244.7.2"), endpoint("10.244.7.3"),
           endpoint("10.244.7.4", ready=False)]
    await api.create("discovery.k8s.io/v1", "endpointslices",
                     endpoint_slice(namespace, "db-1", "db", eps, ports=(("pg", 5432),)), namespace)
    name = fqdn("db", namespace, "svc")
    r = await eventually(lambda: _answered(server, name), 5, f"{name} in DNS")
    assert rdatas(r) == ["10.244.7.1", "10.244.7.2", "10.244.7.3"], "ready endpoints only"
    assert sorted((await dig(server, name, "+short")).split()) == ["10.244.7.1", "10.244.7.2", "10.244.7.3"]
    assert rdatas(await query(server, "db-0." + name)) == ["10.244.7.1"]
    assert rdatas(await query(server, "10-244-7-2." + name)) == ["10.244.7.2"]
    assert (await query(server, "10-244-7-4." + name)).rcode() == dns.rcode.NXDOMAIN
    srv = await query(server, f"_pg._tcp.{name}", "SRV")
    assert rdatas(srv, "SRV") == [f"0 33 5432 10-244-7-2.{name}.", f"0 33 5432 10-244-7-3.{name}.",
                                  f"0 33 5432 db-0.{name}."]
    assert (await dig(server, "-x", "10.244.7.1", "+short")).split() == [f"db-0.{name}."]

    # an endpoint leaves its slice: gone from DNS within a second
    t0 = time.monotonic()
    await api.patch("discovery.k8s.io/v1", "endpointslices", namespace, "db-1",
                    {"endpoints": [eps[0], eps[1], eps[3]]}, "merge")
    await eventually(lambda: _a_set(server, name, ["10.244.7.1", "10.244.7.2"]), 1.0,
                     "the removed endpoint to leave the answer")
    took = time.monotonic() - t0
    assert took < 1.0, f"update took {took:.3f}s"
    assert (await query(server, "10-244-7-3." + name)).rcode() == dns.rcode.NXDOMAIN
    # no ready endpoint at all: NXDOMAIN (the spec's choice for headless services)
    await api.delete("discovery.k8s.io/v1", "endpointslices", namespace, "db-1")
    await eventually(lambda: _rcode(server, name, dns.rcode.NXDOMAIN), 1.0, "NXDOMAIN for the empty service")


async def _a_set(server: DNSProc, name: str, want: list[str]) -> bool:
    return rdatas(await query(server, name)) == want


async def _rcode(server: DNSProc, name: str, rcode: int, rdtype: str = "A") -> bool:
    return (await query(server, name, rdtype)).rcode() == rcode


async def test_pod_records_and_hostname_subdomain(server, api, namespace):
    await make_pod(api, namespace, "plain", "10.244.8.5")
    name = fqdn("10-244-8-5", namespace, "pod")
    r = await eventually(lambda: _answered(server, name), 5, "the pod record")
    assert rdatas(r) == ["10.244.8.5"]
    assert (await dig(server, name, "+short")).split() == ["10.244.8.5"]
    assert (await query(server, fqdn("10-244-8-6", namespace, "pod"))).rcode() == dns.rcode.NXDOMAIN
    assert (await dig(server, "-x", "10.244.8.5", "+short")).split() == [name + "."]
    # a pod with hostname + subdomain behind a headless service of that name
    await api.create("v1", "services", service(namespace, "sub", headless=True), namespace)
    await make_pod(api, namespace, "named", "10.244.8.6", hostname="alpha", subdomain="sub")
    await api.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(
        namespace, "sub-1", "sub", [endpoint("10.244.8.6", targetRef={"kind": "Pod", "name": "named",
                                                                       "namespace": namespace})]), namespace)
    host = fqdn("alpha", "sub", namespace, "svc")
    r = await eventually(lambda: _answered(server, host), 5, f"{host} in DNS")
    assert rdatas(r) == ["10.244.8.6"]
    assert (await dig(server, "-x", "10.244.8.6", "+short")).split() == [host + "."]
    await api.delete("v1", "pods", namespace, "plain", grace_period_seconds=0)
    await eventually(lambda: _rcode(server, name, dns.rcode.NXDOMAIN), 2.0, "the deleted pod's record to go")


async def test_external_name_cname_resolved_upstream(server, api, namespace, upstream):
    await api.create("v1", "services", {"apiVersion": "v1", "kind": "Service",
                                        "metadata": {"name": "ext", "namespace": namespace},
                                        "spec": {"type": "ExternalName", "externalName": "www.example.test"}},
                     namespace)
    name = fqdn("ext", namespace, "svc")
    r = await eventually(lambda: _answered(server, name), 5, f"{name} in DNS")
    assert [rr.rdtype for rr in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert rdatas(r, "CNAME") == ["www.example.test."] and rdatas(r) == ["192.0.2.4"]
    out = await dig(server, name, "+noall", "+answer")
    assert re.search(rf"{re.escape(name)}\.\s+5\s+IN\s+CNAME\s+www\.example\.test\.", out), out
    assert re.search(r"www\.example\.test\.\s+\d+\s+IN\s+A\s+192\.0\.2\.4", out), out
    assert rdatas(await query(server, name, "CNAME"), "CNAME") == ["www.example.test."]


async def test_truncated_over_udp_then_full_over_tcp(server, api, namespace):
    await api.create("v1", "services", service(namespace, "wide", headless=True), namespace)
    eps = [endpoint(f"10.245.{i // 250}.{i % 250 + 1}") for i in range(100)]
    await api.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(namespace, "wide-1", "wide", eps),
                     namespace)
    name = fqdn("wide", namespace, "svc")
    await eventually(lambda: _answered_tcp(server, name, 100), 5, "100 endpoints in DNS")
    r = await query(server, name, use_edns=0, payload=1232)
    assert r.flags & dns.flags.TC and not r.answer
    r = await query(server, name)                         # no EDNS0: 512 bytes
    assert r.flags & dns.flags.TC
    r = await query(server, name, tcp=True)
    assert not r.flags & dns.flags.TC and len(rdatas(r)) == 100
    out = await dig(server, name, "+ignore", "+notcp", "+noall", "+comments")
    assert re.search(r"flags:[^;]*\btc\b", out), out
    out = await dig(server, name, "+short")               # dig retries over TCP by itself
    assert len(out.split()) == 100
    out = await dig(server, name, "+tcp", "+noall", "+answer")
    assert len(out.strip().splitlines()) == 100


async def _answered_tcp(server: DNSProc, name: str, n: int) -> bool:
    return len(rdatas(await query(server, name, tcp=True))) == n


async def test_edns0(server, api, namespace):
    svc = await api.create("v1", "services", service(namespace, "e"), namespace)
    name = fqdn("e", namespace, "svc")
    await eventually(lambda: _answered(server, name), 5, f"{name} in DNS")
    out = await dig(server, name)
    assert "EDNS: version: 0, flags:; udp: 1232" in out and svc["spec"]["clusterIP"] in out
    r = await query(server, name, use_edns=0, payload=4096)
    assert r.edns == 0 and r.payload == 1232 and rdatas(r) == [svc["spec"]["clusterIP"]]
    r = await query(server, name)
    assert r.edns == -1, "no OPT in the answer to a query without one"
    out = await dig(server, name, "+edns=1", "+noednsneg")
    assert "status: BADVERS" in out, out
    r = await query(server, name, use_edns=0, want_dnssec=True)
    assert r.ednsflags & dns.flags.DO and rdatas(r) == [svc["spec"]["clusterIP"]]


async def test_outside_name_forwarded_and_cached(server, upstream):
    name = "cache-me.example.test"
    before = upstream.count(name)
    r1 = await query(server, name)
    assert rdatas(r1) == ["192.0.2.4"] and not r1.flags & dns.flags.AA and r1.flags & dns.flags.RA
    assert upstream.count(name) == before + 1
    r2 = await query(server, name)
    assert rdatas(r2) == ["192.0.2.4"] and r2.answer[0].ttl <= r1.answer[0].ttl
    assert upstream.count(name) == before + 1, "the second query must be answered from the cache"
    assert (await dig(server, name, "+short")).split() == ["192.0.2.4"]
    assert upstream.count(name) == before + 1
    out = await dig(server, "nope.example.org")
    assert "status: NXDOMAIN" in out
    metrics = server.metrics_text()
    hits = re.search(r"^kubelab_dns_forward_cache_hits_total (\S+)$", metrics, re.M)
    assert hits and float(hits.group(1)) >= 2, metrics
    assert re.search(r'^kubelab_dns_requests_total\{proto="udp"\} \d+', metrics, re.M)


async def test_no_forwarding_loop_through_a_local_stub(control_plane, tmp_path):
    """resolv.conf names a local stub (127.0.0.53, systemd-resolved's address): it is skipped, not
    asked; with nothing else, outside names get SERVFAIL quickly."""
    try:
        stub = FakeUpstream("127.0.0.53", 53)
    except OSError:
        stub = None                # port 53 there is taken: the log line still shows the skip
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    d = DNSProc(tmp_path, control_plane.kubeconfig, ["--resolv-conf", str(conf)])
    try:
        d.wait_ready()
        t0 = time.monotonic()
        r = await query(d, "outside.example.test")
        assert r.rcode() == dns.rcode.SERVFAIL and time.monotonic() - t0 < 1.0
        out = await dig(d, "outside.example.test")
        assert "status: SERVFAIL" in out
        if stub is not None:
            assert stub.asked == [], "the local stub was asked: a forwarding loop"
    finally:
        text = d.stop()
        if stub is not None:
            stub.close()
    assert "skipping nameserver 127.0.0.53" in text and "no upstream DNS server" in text


async def test_health_metrics_and_bad_flags(server, control_plane, tmp_path):
    with urllib.request.urlopen(f"http://{HOST}:{server.health}/healthz", timeout=5) as r:
        assert r.status == 200
    text = server.metrics_text()
    assert re.search(r"^kubelab_dns_synced 1\.0$", text, re.M), text
    assert re.search(r"^kubelab_dns_precomputed_entries \d+", text, re.M)
    # one clear line for people, no traceback
    p = subprocess.run([sys.executable, "-c", "from kubelab.cmd.dns import main; main()", "--kubeconfig",
                        str(tmp_path / "missing"), "--port", str(free_port())], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("kubelab-dns: stat "), p.stderr
    p = subprocess.run([sys.executable, "-c", "from kubelab.cmd.dns import main; main()", "--kubeconfig",
                        str(control_plane.kubeconfig), "--bind-address", HOST, "--port", str(server.port),
                        "--upstream", "10.0.0.1", "--health-port", "0", "--metrics-port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last == f"kubelab-dns: cannot listen on {HOST}:{server.port}/udp: Address already in use", p.stderr
    p = subprocess.run([sys.executable, "-c", "from kubelab.cmd.dns import main; main()", "--upstream", "dns.google",
                        "--kubeconfig", str(control_plane.kubeconfig)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("kubelab-dns: bad upstream"), p.stderr


async def test_tcp_pipelining_on_one_connection(server, api, namespace, upstream):
    """RFC 7766: several queries on one connection, answered (possibly out of order) by id."""
    svc = await api.create("v1", "services", service(namespace, "pipe"), namespace)
    name = fqdn("pipe", namespace, "svc")
    await eventually(lambda: _answered(server, name), 5, f"{name} in DNS")
    queries = [dns.message.make_query(name, "A"), dns.message.make_query(fqdn("nope", namespace, "svc"), "A"),
               dns.message.make_query("pipelined.example.test", "A"), dns.message.make_query(name, "SRV")]
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        writer.write(b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries)))
        await writer.drain()
        answers = {}
        for _ in queries:
            n = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5), "big")
            r = dns.message.from_wire(await asyncio.wait_for(reader.readexactly(n), 5))
            answers[r.id] = r
    finally:
        writer.close()
        await writer.wait_closed()
    by_q = [answers[q.id] for q in queries]
    assert rdatas(by_q[0]) == [svc["spec"]["clusterIP"]]
    assert by_q[1].rcode() == dns.rcode.NXDOMAIN
    assert rdatas(by_q[2]) == ["192.0.2.4"]
    assert rdatas(by_q[3], "SRV") == [f"0 100 80 {name}."]


async def test_wildcard_server_answers_from_the_address_it_was_asked_at():
    """Bound to 0.0.0.0, replies leave from the query's destination address (IP_PKTINFO): asked at
    127.0.0.2, the kernel's own choice would be 127.0.0.1, which dnspython (like a client behind a
    Service DNAT) refuses as an unexpected source."""
    from kubelab.dns.forward import Forwarder
    from kubelab.dns.records import Zone
    from kubelab.dns.server import DNSServer
    z = Zone(ZONE)
    z.set_namespace("default")
    z.set_service({"metadata": {"namespace": "default", "name": "web"},
                   "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    server = DNSServer(z, Forwarder([]), host="0.0.0.0", port=0)
    server.apply(z.commit())
    server.ready = True
    await server.start()
    try:
        for where in ("127.0.0.2", "127.0.0.1"):
            for name, rdtype in (("web.default.svc.cluster.local.", "A"),          # fast path
                                 ("web.default.svc.cluster.local.", "TXT"),        # slow path
                                 ("nope.default.svc.cluster.local.", "A")):
                q = dns.message.make_query(name, rdtype)
                r = await dns.asyncquery.udp(q, where, port=server.port, timeout=2)   # raises on a foreign source
                assert r.id == q.id
        assert dns.rcode.to_text(r.rcode()) == "NXDOMAIN"
        q = dns.message.make_query("web.default.svc.cluster.local.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.2", port=server.port, timeout=2)
        assert r.answer[0][0].address == "10.96.0.20"
    finally:
        await server.stop()
