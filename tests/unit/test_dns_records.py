"""The cluster zone (kubelab.dns.records): every record kind, negative answers, TTLs, updates."""
from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype as T
import dns.reversename
import pytest

from kubelab.dns.records import DEFAULT_TTL, Zone

NOW = [1_700_000_000.0]


def clock() -> float:
    return NOW[0]


def zone(**kw) -> Zone:
    kw.setdefault("clock", clock)
    return Zone("cluster.local", **kw)


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def svc(ns: str, nm: str, cluster_ip: str | list[str] | None = "10.96.0.20", ports=(("http", 80, "TCP"),),
        **spec) -> dict:
    s: dict = {"ports": [dict({"port": p, "protocol": pr}, **({"name": n} if n else {})) for n, p, pr in ports]}
    if cluster_ip is not None:
        ips = [cluster_ip] if isinstance(cluster_ip, str) else cluster_ip
        s["clusterIP"], s["clusterIPs"] = ips[0], ips
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": nm}, "spec": s}


def slice_(ns: str, nm: str, service: str, endpoints: list[dict], ports=(("http", 8080, "TCP"),),
           address_type: str = "IPv4") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": address_type,
            "metadata": {"namespace": ns, "name": nm, "labels": {"kubernetes.io/service-name": service}},
            "ports": [dict({"port": p, "protocol": pr}, **({"name": n} if n else {})) for n, p, pr in ports],
            "endpoints": endpoints}


def ep(ip: str, ready: bool | None = True, hostname: str | None = None, pod: str | None = None) -> dict:
    e: dict = {"addresses": [ip]}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    if pod:
        e["targetRef"] = {"kind": "Pod", "name": pod}
    return e


def pod(ns: str, nm: str, ip: str | None, phase: str = "Running", **spec) -> dict:
    st: dict = {"phase": phase}
    if ip:
        st["podIP"], st["podIPs"] = ip, [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": nm},
            "spec": dict({"containers": [{"name": "c", "image": "x"}]}, **spec), "status": st}


def texts(ans, rdtype=None) -> list[str]:
    out = []
    for rrset in ans.answer:
        if rdtype is None or rrset.rdtype == rdtype:
            out += sorted(rd.to_text() for rd in rrset)
    return out


def ptr(ip: str) -> dns.name.Name:
    return dns.reversename.from_address(ip)


def assert_nodata(z: Zone, q: str, rdtype: int) -> None:
    ans = z.lookup(name(q), rdtype)
    assert ans is not None, q
    assert ans.rcode == dns.rcode.NOERROR and ans.answer == [], (q, ans)
    assert [r.rdtype for r in ans.authority] == [T.SOA]


def assert_nxdomain(z: Zone, q: str, rdtype: int = T.A) -> None:
    ans = z.lookup(name(q), rdtype)
    assert ans is not None, q
    assert ans.rcode == dns.rcode.NXDOMAIN and ans.answer == [], (q, ans)
    assert [r.rdtype for r in ans.authority] == [T.SOA]


# -- ClusterIP services ---------------------------------------------------------------------


def test_cluster_ip_service_a_ptr_srv():
    z = zone()
    z.set_service(svc("default", "web", "10.96.0.20", ports=(("http", 80, "TCP"), ("dns", 53, "UDP"),
                                                            (None, 9000, "TCP"))))
    changed = z.commit()
    assert (name("web.default.svc.cluster.local"), T.A) in changed
    a = z.lookup(name("web.default.svc.cluster.local"), T.A)
    assert texts(a) == ["10.96.0.20"] and a.answer[0].ttl == DEFAULT_TTL == 5
    assert_nodata(z, "web.default.svc.cluster.local", T.AAAA)
    # PTR of the cluster IP
    p = z.lookup(ptr("10.96.0.20"), T.PTR)
    assert texts(p) == ["web.default.svc.cluster.local."]
    # SRV per named port, with the service's A record as additional data
    srv = z.lookup(name("_http._tcp.web.default.svc.cluster.local"), T.SRV)
    assert texts(srv) == ["0 100 80 web.default.svc.cluster.local."]
    assert [(r.name.to_text(), sorted(x.to_text() for x in r)) for r in srv.additional] == \
        [("web.default.svc.cluster.local.", ["10.96.0.20"])]
    assert texts(z.lookup(name("_dns._udp.web.default.svc.cluster.local"), T.SRV)) == \
        ["0 100 53 web.default.svc.cluster.local."]
    # wrong protocol: no such name
    assert_nxdomain(z, "_dns._tcp.web.default.svc.cluster.local", T.SRV)
    # the bare name's SRV lists every port (CoreDNS), weights split
    bare = z.lookup(name("web.default.svc.cluster.local"), T.SRV)
    assert texts(bare) == ["0 33 53 web.default.svc.cluster.local.", "0 33 80 web.default.svc.cluster.local.",
                           "0 33 9000 web.default.svc.cluster.local."]


def test_unnamed_ports_have_no_port_names():
    z = zone()
    z.set_service(svc("default", "plain", "10.96.0.21", ports=((None, 80, "TCP"),)))
    z.commit()
    assert_nxdomain(z, "_._tcp.plain.default.svc.cluster.local", T.SRV)
    # _tcp.<svc> is not an empty non-terminal either: nothing lives below it
    assert_nxdomain(z, "_tcp.plain.default.svc.cluster.local", T.SRV)


def test_dual_stack_service_a_and_aaaa():
    z = zone()
    z.set_service(svc("default", "ds", ["10.96.0.30", "fd00:10:96::30"]))
    z.commit()
    assert texts(z.lookup(name("ds.default.svc.cluster.local"), T.A)) == ["10.96.0.30"]
    assert texts(z.lookup(name("ds.default.svc.cluster.local"), T.AAAA)) == ["fd00:10:96::30"]
    assert texts(z.lookup(ptr("fd00:10:96::30"), T.PTR)) == ["ds.default.svc.cluster.local."]


def test_cluster_ip_service_endpoints_get_names_and_ptrs():
    z = zone()
    z.set_service(svc("default", "web", "10.96.0.20"))
    z.set_endpoint_slice(slice_("default", "web-abc", "web", [ep("10.244.1.5"), ep("10.244.1.6", ready=False)]))
    z.commit()
    # the service name still answers with the cluster IP, not the endpoints
    assert texts(z.lookup(name("web.default.svc.cluster.local"), T.A)) == ["10.96.0.20"]
    assert texts(z.lookup(name("10-244-1-5.web.default.svc.cluster.local"), T.A)) == ["10.244.1.5"]
    assert texts(z.lookup(ptr("10.244.1.5"), T.PTR)) == ["10-244-1-5.web.default.svc.cluster.local."]
    assert_nxdomain(z, "10-244-1-6.web.default.svc.cluster.local")
    assert z.lookup(ptr("10.244.1.6"), T.PTR) is None   # not ours: forwarded


# -- headless services -------------------------------------------------------------------------


def test_headless_service_ready_endpoints_only():
    z = zone()
    z.set_service(svc("db", "pg", "None", ports=(("pg", 5432, "TCP"),)))
    z.set_endpoint_slice(slice_("db", "pg-1", "pg", [ep("10.244.1.10", hostname="pg-0"), ep("10.244.2.11"),
                                                     ep("10.244.2.12", ready=False), ep("10.244.2.13", ready=None)],
                                ports=(("pg", 5432, "TCP"),)))
    z.commit()
    base = "pg.db.svc.cluster.local"
    assert texts(z.lookup(name(base), T.A)) == ["10.244.1.10", "10.244.2.11", "10.244.2.13"]
    # hostname records: the endpoint's hostname, else the dashed address
    assert texts(z.lookup(name("pg-0." + base), T.A)) == ["10.244.1.10"]
    assert texts(z.lookup(name("10-244-2-11." + base), T.A)) == ["10.244.2.11"]
    assert_nxdomain(z, "10-244-2-12." + base)
    # SRV: one per ready endpoint, target its name, A records as additional data
    srv = z.lookup(name("_pg._tcp." + base), T.SRV)
    assert texts(srv) == ["0 33 5432 10-244-2-11." + base + ".", "0 33 5432 10-244-2-13." + base + ".",
                          "0 33 5432 pg-0." + base + "."]
    extra = {r.name.to_text(): [x.to_text() for x in r] for r in srv.additional}
    assert extra == {"pg-0." + base + ".": ["10.244.1.10"], "10-244-2-11." + base + ".": ["10.244.2.11"],
                     "10-244-2-13." + base + ".": ["10.244.2.13"]}
    # PTR to the hostname record
    assert texts(z.lookup(ptr("10.244.1.10"), T.PTR)) == ["pg-0." + base + "."]
    # no cluster IP: "None" is not an address
    assert z.lookup(ptr("0.0.0.0"), T.PTR) is None


def test_headless_service_without_ready_endpoints_is_nxdomain():
    z = zone()
    z.set_service(svc("db", "empty", "None"))
    z.set_endpoint_slice(slice_("db", "empty-1", "empty", [ep("10.244.3.3", ready=False)]))
    z.commit()
    assert_nxdomain(z, "empty.db.svc.cluster.local")
    assert_nxdomain(z, "empty.db.svc.cluster.local", T.SRV)
    # publishNotReadyAddresses publishes them anyway
    z.set_service(svc("db", "empty", "None", publishNotReadyAddresses=True))
    z.commit()
    assert texts(z.lookup(name("empty.db.svc.cluster.local"), T.A)) == ["10.244.3.3"]


def test_hostname_and_subdomain_pods():
    z = zone()
    z.set_service(svc("apps", "sub", "None", ports=(("http", 80, "TCP"),)))
    z.set_pod(pod("apps", "p1", "10.244.1.21", hostname="alpha", subdomain="sub"))
    z.set_pod(pod("apps", "p2", "10.244.1.22", hostname="beta", subdomain="other"))
    z.set_endpoint_slice(slice_("apps", "sub-1", "sub", [ep("10.244.1.21", pod="p1"), ep("10.244.1.22", pod="p2")],
                                ports=(("http", 80, "TCP"),)))
    z.commit()
    assert texts(z.lookup(name("alpha.sub.apps.svc.cluster.local"), T.A)) == ["10.244.1.21"]
    # p2's subdomain names another service: it keeps the dashed name
    assert_nxdomain(z, "beta.sub.apps.svc.cluster.local")
    assert texts(z.lookup(name("10-244-1-22.sub.apps.svc.cluster.local"), T.A)) == ["10.244.1.22"]
    assert texts(z.lookup(ptr("10.244.1.21"), T.PTR)) == ["alpha.sub.apps.svc.cluster.local."]
    # the pod going away takes its hostname with it
    z.delete_pod("apps", "p1")
    changed = z.commit()
    assert (name("alpha.sub.apps.svc.cluster.local"), T.A) in changed
    assert_nxdomain(z, "alpha.sub.apps.svc.cluster.local")
    assert texts(z.lookup(name("10-244-1-21.sub.apps.svc.cluster.local"), T.A)) == ["10.244.1.21"]


def test_ipv6_endpoints_and_fqdn_slices():
    z = zone()
    z.set_service(svc("v6", "h", "None"))
    z.set_endpoint_slice(slice_("v6", "h-6", "h", [ep("fd00:244::5")], address_type="IPv6"))
    z.set_endpoint_slice(slice_("v6", "h-f", "h", [{"addresses": ["example.com"]}], address_type="FQDN"))
    z.commit()
    assert texts(z.lookup(name("h.v6.svc.cluster.local"), T.AAAA)) == ["fd00:244::5"]
    assert_nodata(z, "h.v6.svc.cluster.local", T.A)
    assert texts(z.lookup(name("fd00-244--5.h.v6.svc.cluster.local"), T.AAAA)) == ["fd00:244::5"]


# -- ExternalName --------------------------------------------------------------------------


def test_external_name_cname():
    z = zone()
    z.set_service(svc("default", "ext", None, ports=(), type="ExternalName", externalName="www.Example.com"))
    z.set_service(svc("default", "alias", None, ports=(), type="ExternalName",
                      externalName="web.default.svc.cluster.local"))
    z.set_service(svc("default", "web", "10.96.0.20"))
    z.commit()
    c = z.lookup(name("ext.default.svc.cluster.local"), T.CNAME)
    assert texts(c) == ["www.Example.com."] and c.chase is None
    a = z.lookup(name("ext.default.svc.cluster.local"), T.A)
    assert texts(a) == ["www.Example.com."] and a.chase == name("www.example.com")
    # a target inside the zone is followed here
    a = z.lookup(name("alias.default.svc.cluster.local"), T.A)
    assert a.chase is None and texts(a) == ["web.default.svc.cluster.local.", "10.96.0.20"]
    a = z.lookup(name("alias.default.svc.cluster.local"), T.AAAA)
    assert a.chase is None and texts(a) == ["web.default.svc.cluster.local."] and a.authority


# -- pods ------------------------------------------------------------------------------------


def test_pod_records_verified():
    z = zone()
    z.set_namespace("apps")
    z.set_pod(pod("apps", "a", "10.244.1.7"))
    z.set_pod(pod("apps", "done", "10.244.1.8", phase="Succeeded"))
    z.set_pod(pod("apps", "pending", None, phase="Pending"))
    z.commit()
    assert texts(z.lookup(name("10-244-1-7.apps.pod.cluster.local"), T.A)) == ["10.244.1.7"]
    assert_nxdomain(z, "10-244-1-8.apps.pod.cluster.local")          # finished: its IP is gone
    assert_nxdomain(z, "10-244-1-9.apps.pod.cluster.local")          # no such pod
    assert_nxdomain(z, "10-244-1-7.other.pod.cluster.local")         # wrong namespace
    assert_nodata(z, "apps.pod.cluster.local", T.A)
    # a pod IP no service claims: PTR to the pod name
    assert texts(z.lookup(ptr("10.244.1.7"), T.PTR)) == ["10-244-1-7.apps.pod.cluster.local."]
    z.delete_pod("apps", "a")
    z.commit()
    assert_nxdomain(z, "10-244-1-7.apps.pod.cluster.local")
    assert z.lookup(ptr("10.244.1.7"), T.PTR) is None


def test_pod_records_insecure_and_disabled():
    z = zone(pod_mode="insecure")
    z.set_namespace("apps")
    z.commit()
    assert texts(z.lookup(name("1-2-3-4.apps.pod.cluster.local"), T.A)) == ["1.2.3.4"]
    assert texts(z.lookup(name("fd00--1.apps.pod.cluster.local"), T.AAAA)) == ["fd00::1"]
    assert_nodata(z, "1-2-3-4.apps.pod.cluster.local", T.AAAA)
    assert_nxdomain(z, "1-2-3-4.nons.pod.cluster.local")
    assert_nxdomain(z, "not-an-ip.apps.pod.cluster.local")
    d = zone(pod_mode="disabled")
    d.set_namespace("apps")
    d.set_pod(pod("apps", "a", "10.244.1.7"))
    d.commit()
    assert_nxdomain(d, "10-244-1-7.apps.pod.cluster.local")
    with pytest.raises(ValueError):
        zone(pod_mode="sometimes")


def test_ptr_precedence_cluster_ip_then_endpoint_then_pod():
    z = zone()
    z.set_pod(pod("apps", "a", "10.244.1.30"))
    z.commit()
    assert texts(z.lookup(ptr("10.244.1.30"), T.PTR)) == ["10-244-1-30.apps.pod.cluster.local."]
    z.set_service(svc("apps", "web", "10.96.0.40"))
    z.set_endpoint_slice(slice_("apps", "web-1", "web", [ep("10.244.1.30")]))
    z.commit()
    assert texts(z.lookup(ptr("10.244.1.30"), T.PTR)) == ["10-244-1-30.web.apps.svc.cluster.local."]
    z.delete_endpoint_slice("apps", "web-1")
    z.commit()
    assert texts(z.lookup(ptr("10.244.1.30"), T.PTR)) == ["10-244-1-30.apps.pod.cluster.local."]


# -- negative answers, SOA, structure --------------------------------------------------------


def test_nxdomain_vs_nodata_with_soa():
    z = zone()
    z.set_namespace("default")
    z.set_service(svc("default", "web", "10.96.0.20"))
    z.commit()
    assert_nodata(z, "web.default.svc.cluster.local", T.TXT)
    assert_nodata(z, "web.default.svc.cluster.local", T.MX)
    assert_nxdomain(z, "nope.default.svc.cluster.local")
    assert_nxdomain(z, "web.nons.svc.cluster.local")
    assert_nxdomain(z, "foo.cluster.local")
    assert_nxdomain(z, "a.b.c.web.default.svc.cluster.local")
    # empty non-terminals and the fixed structure are NODATA
    for n in ("cluster.local", "svc.cluster.local", "pod.cluster.local", "default.svc.cluster.local",
              "default.pod.cluster.local", "_tcp.web.default.svc.cluster.local"):
        assert_nodata(z, n, T.A)
    # a namespace without services: exists while the namespace does
    z.set_namespace("quiet")
    assert_nodata(z, "quiet.svc.cluster.local", T.A)
    z.delete_namespace("quiet")
    assert_nxdomain(z, "quiet.svc.cluster.local")
    # the SOA, as CoreDNS writes it
    soa = z.lookup(name("nope.default.svc.cluster.local"), T.A).authority[0]
    assert soa.name == name("cluster.local") and soa.ttl == 5
    assert soa[0].to_text() == f"ns.dns.cluster.local. hostmaster.cluster.local. {int(NOW[0])} 7200 1800 86400 5"


def test_soa_serial_moves_on_change_and_ttl_option():
    z = zone(ttl=30)
    serial = z.serial
    NOW[0] += 100
    z.set_service(svc("default", "web", "10.96.0.20"))
    changed = z.commit()
    assert (name("cluster.local"), T.SOA) in changed
    assert z.serial == serial + 100
    soa = z.lookup(name("cluster.local"), T.SOA).answer[0]
    assert soa[0].serial == z.serial and soa.ttl == 30 and soa[0].minimum == 30
    assert z.lookup(name("web.default.svc.cluster.local"), T.A).answer[0].ttl == 30
    assert z.commit() == set()          # nothing pending, nothing changed
    # a no-op update changes nothing either
    z.set_service(svc("default", "web", "10.96.0.20"))
    assert z.commit() == set()


def test_case_insensitive_and_wildcard_free():
    z = zone()
    z.set_service(svc("default", "web", "10.96.0.20"))
    z.commit()
    assert texts(z.lookup(name("WeB.DeFault.SVC.Cluster.Local"), T.A)) == ["10.96.0.20"]
    assert texts(z.lookup(name("_HTTP._TCP.web.default.svc.cluster.local"), T.SRV))
    assert_nxdomain(z, "*.default.svc.cluster.local")
    assert_nxdomain(z, "web.*.svc.cluster.local")
    assert_nxdomain(z, "_http._tcp.*.default.svc.cluster.local", T.SRV)


def test_schema_version_apex_and_ns():
    z = zone()
    z.set_service(svc("kube-system", "kube-dns", "10.96.0.10", ports=(("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"))))
    changed = z.commit()
    txt = z.lookup(name("dns-version.cluster.local"), T.TXT)
    assert texts(txt) == ['"1.1.0"'] and txt.answer[0].ttl == 28800
    ns = z.lookup(name("cluster.local"), T.NS)
    assert texts(ns) == ["ns.dns.cluster.local."]
    assert [x.to_text() for r in ns.additional for x in r] == ["10.96.0.10"]
    assert (name("cluster.local"), T.NS) in changed
    assert texts(z.lookup(name("ns.dns.cluster.local"), T.A)) == ["10.96.0.10"]
    assert texts(z.lookup(name("cluster.local"), T.SOA))
    any_ = z.lookup(name("cluster.local"), T.ANY)
    assert sorted(r.rdtype for r in any_.answer) == [T.NS, T.SOA]


def test_outside_names_are_not_ours():
    z = zone()
    assert z.lookup(name("example.com"), T.A) is None
    assert z.lookup(ptr("8.8.8.8"), T.PTR) is None
    assert z.lookup(name("cluster.local.example.com"), T.A) is None
    other = Zone("k8s.example.", clock=clock)
    other.set_service(svc("default", "web", "10.96.0.20"))
    other.commit()
    assert texts(other.lookup(name("web.default.svc.k8s.example"), T.A)) == ["10.96.0.20"]
    assert other.lookup(name("web.default.svc.cluster.local"), T.A) is None


# -- incremental updates -----------------------------------------------------------------------


def test_endpoint_removed_and_service_deleted():
    z = zone()
    z.set_service(svc("db", "pg", "None"))
    z.set_endpoint_slice(slice_("db", "pg-1", "pg", [ep("10.244.1.1"), ep("10.244.1.2")]))
    z.commit()
    assert texts(z.lookup(name("pg.db.svc.cluster.local"), T.A)) == ["10.244.1.1", "10.244.1.2"]
    z.set_endpoint_slice(slice_("db", "pg-1", "pg", [ep("10.244.1.1")]))
    changed = z.commit()
    assert (name("pg.db.svc.cluster.local"), T.A) in changed
    assert (name("10-244-1-2.pg.db.svc.cluster.local"), T.A) in changed
    assert (ptr("10.244.1.2"), T.PTR) in changed
    assert (name("10-244-1-1.pg.db.svc.cluster.local"), T.A) not in changed   # untouched
    assert texts(z.lookup(name("pg.db.svc.cluster.local"), T.A)) == ["10.244.1.1"]
    assert_nxdomain(z, "10-244-1-2.pg.db.svc.cluster.local")
    z.delete_service("db", "pg")
    z.commit()
    for q in ("pg.db.svc.cluster.local", "10-244-1-1.pg.db.svc.cluster.local", "db.svc.cluster.local"):
        assert_nxdomain(z, q)
    assert z.lookup(ptr("10.244.1.1"), T.PTR) is None
    # the slice arriving alone (before its service) is kept and used once the service comes
    z.set_service(svc("db", "pg", "None"))
    z.commit()
    assert texts(z.lookup(name("pg.db.svc.cluster.local"), T.A)) == ["10.244.1.1"]
    # nothing but the static records left once everything is gone
    z.delete_service("db", "pg")
    z.delete_endpoint_slice("db", "pg-1")
    z.commit()
    assert sorted(k[1] for k in z.keys()) == sorted([T.TXT, T.NS, T.SOA])
    assert set(z._name_refs) == {name("dns-version.cluster.local"), name("cluster.local")}


def test_slice_relabelled_to_another_service():
    z = zone()
    z.set_service(svc("a", "one", "None"))
    z.set_service(svc("a", "two", "None"))
    z.set_endpoint_slice(slice_("a", "s", "one", [ep("10.244.5.5")]))
    z.commit()
    assert texts(z.lookup(name("one.a.svc.cluster.local"), T.A)) == ["10.244.5.5"]
    z.set_endpoint_slice(slice_("a", "s", "two", [ep("10.244.5.5")]))
    z.commit()
    assert_nxdomain(z, "one.a.svc.cluster.local")
    assert texts(z.lookup(name("two.a.svc.cluster.local"), T.A)) == ["10.244.5.5"]


def test_service_turns_external_and_back():
    z = zone()
    z.set_service(svc("a", "x", "10.96.1.1"))
    z.commit()
    z.set_service(svc("a", "x", None, ports=(), type="ExternalName", externalName="example.org"))
    z.commit()
    assert texts(z.lookup(name("x.a.svc.cluster.local"), T.CNAME)) == ["example.org."]
    assert z.lookup(ptr("10.96.1.1"), T.PTR) is None
    z.set_service(svc("a", "x", "10.96.1.2"))
    z.commit()
    assert texts(z.lookup(name("x.a.svc.cluster.local"), T.A)) == ["10.96.1.2"]
    assert_nodata(z, "x.a.svc.cluster.local", T.CNAME)


def test_many_services_commit_once():
    z = zone()
    for i in range(300):
        z.set_service(svc("bulk", f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}"))
    changed = z.commit()
    # A, PTR, bare SRV, _http._tcp SRV per service, plus the SOA
    assert len(changed) == 300 * 4 + 1
    assert texts(z.lookup(name("s299.bulk.svc.cluster.local"), T.A)) == ["10.96.1.50"]


def test_namespace_changes_count_as_changes_and_bad_objects_are_skipped(caplog):
    z = zone()
    z.commit()
    z.set_namespace("n1")
    assert z.pending and (name("cluster.local"), T.SOA) in z.commit()
    z.set_namespace({"metadata": {"name": "n1"}})
    assert not z.pending and z.commit() == set()
    z.set_service(svc("n1", "good", "10.96.0.8"))
    z.set_service({"metadata": {"namespace": "n1", "name": "bad"},
                   "spec": {"clusterIP": "10.96.0.9", "ports": [{"name": "x", "port": "eighty"}]}})
    with caplog.at_level("WARNING", logger="kubelab.dns.records"):
        z.commit()
    assert texts(z.lookup(name("good.n1.svc.cluster.local"), T.A)) == ["10.96.0.8"]
    assert_nxdomain(z, "bad.n1.svc.cluster.local")
    assert "service n1/bad: cannot compute its records" in caplog.text
    z.delete_namespace("n1")
    assert (name("cluster.local"), T.SOA) in z.commit()
