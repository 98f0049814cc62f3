"""Pod and Service networking on a two-node lab, end to end, with real containers.

    host (tests, etcd, apiserver on 192.168.56.1, controller-manager, a fake upstream DNS server)
      |  kubelab0 192.168.56.0/24, host routes to both pod CIDRs (podnet with no node)
    node1 netns 192.168.56.11                    node2 netns 192.168.56.12
      kubelab-cri, kubelab-proxy, kubelab-dns      kubelab-cri, kubelab-proxy
      podnet: CNI config + host-gw routes          podnet: CNI config + host-gw routes
      cni0: w1 (httpd), c1 (client)                cni0: w2, w3 (httpd), c2 (client)

Pod CIDRs come from the node IPAM controller (kubelab-controller-manager), the CNI config and the
routes between nodes from kubelab.kubelet.podnet (the kubelet's part, run here in the test
process until the kubelet exists), pods from kubelab-cri with kubelab-bridge, Services through
kubelab-proxy in iptables mode and names from kubelab-dns at the kube-dns ClusterIP 10.96.0.10.
The test plays the kubelet and the EndpointSlice controller: it starts pods through CRI and writes
Nodes and EndpointSlices to the API.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import shlex
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from kubelab.lab.cluster import LabCluster, Pod, endpoint_slice
from kubelab.lab.nodes import HOST_IP
from kubelab.proxy.servicechange import port_proto_hash

pytestmark = pytest.mark.e2e

NS = "lab"
OUTSIDE = ("outside.example.", "203.0.113.7")


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{shlex.join(args)}: {r.stderr.strip()}")
    return r.stdout


class FakeUpstream:
    """A DNS server for names outside the cluster: OUTSIDE's A record, NXDOMAIN for the rest."""

    def __init__(self) -> None:
        import dns.message
        import dns.rrset
        self._msg, self._rrset = dns.message, dns.rrset
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))      # reached from the nodes at the lab bridge's address
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import dns.rcode
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            q = self._msg.from_wire(data)
            self.queries += 1
            r = self._msg.make_response(q)
            qn = q.question[0]
            if str(qn.name).lower() == OUTSIDE[0] and qn.rdtype == 1:
                r.answer.append(self._rrset.from_text(qn.name, 30, "IN", "A", OUTSIDE[1]))
            elif str(qn.name).lower() != OUTSIDE[0]:
                r.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(r.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def lab(test_images):
    upstream = FakeUpstream()
    cluster = LabCluster({"busybox": test_images["busybox"]}, dns_upstreams=(f"{HOST_IP}:{upstream.port}",))
    try:
        cluster.up()
        cluster.upstream = upstream
        cluster.call(lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": NS}}))
        yield cluster
    finally:
        problems = cluster.down()
        upstream.close()
        assert not problems, problems


HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"
HTTP = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
HTTP_EP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


@pytest.fixture(scope="module")
def web(lab):
    """w1 on node1, w2 and w3 on node2 (httpd answering their names), clients c1 and c2, and the
    Services: web (NodePort over all three), web-h (headless, with hostnames), self (w1 alone)."""
    pods = {}
    for node, name in ((0, "w1"), (1, "w2"), (1, "w3")):
        pods[name] = lab.run_pod(node, name, ["sh", "-c", HTTPD], namespace=NS)
    for node, name in ((0, "c1"), (1, "c2")):
        pods[name] = lab.run_pod(node, name, ["sleep", "3600"], namespace=NS)
    ips = {k: v.ip for k, v in pods.items()}
    assert ipaddress.ip_address(ips["w1"]) in ipaddress.ip_network(lab.pod_cidr(0))
    assert ipaddress.ip_address(ips["w2"]) in ipaddress.ip_network(lab.pod_cidr(1))
    node_of = {"w1": "node1", "w2": "node2", "w3": "node2"}

    def eps(names, hostnames=False):
        return [(ips[n], node_of[n], n if hostnames else None) for n in names]

    async def make(c):
        out = {}
        for name, spec, names, hostnames in (("web", {"type": "NodePort"}, ["w1", "w2", "w3"], False),
                                             ("web-h", {"clusterIP": "None"}, ["w1", "w2", "w3"], True),
                                             ("self", {}, ["w1"], False)):
            out[name] = await c.create("v1", "services", {"apiVersion": "v1", "kind": "Service",
                                                          "metadata": {"name": name, "namespace": NS},
                                                          "spec": {"ports": HTTP, **spec}}, NS)
            await c.create("discovery.k8s.io/v1", "endpointslices",
                           endpoint_slice(NS, name, eps(names, hostnames), HTTP_EP), NS)
        return out
    svcs = lab.call(make)
    # every pod's server answers on its own IP before the tests start
    for name in ("w1", "w2", "w3"):
        deadline = time.monotonic() + 15
        while True:
            rc, out = lab.exec(pods["c2"], f"timeout 5 wget -qO- http://{ips[name]}:8080/")
            if rc == 0 and out.strip() == name:
                break
            assert time.monotonic() < deadline, f"{name} at {ips[name]}:8080 not reachable from c2: {out}"
            time.sleep(0.3)
    return {"pods": pods, "ips": ips, "svcs": svcs}


def wget_until(lab, pod: Pod, url: str, want, timeout: float = 10) -> str:
    """GET url from inside pod (busybox wget; its -T option crashes the static build) until want(body)."""
    deadline = time.monotonic() + timeout
    while True:
        rc, out = lab.exec(pod, f"timeout 5 wget -qO- {url}")
        if rc == 0 and want(out.strip()):
            return out.strip()
        assert time.monotonic() < deadline, f"{url} from {pod.name}: rc={rc} {out!r}"
        time.sleep(0.3)


# -- the tests ------------------------------------------------------------------------------------


def test_nodes_have_pod_cidrs_cni_configs_and_routes(lab):
    cidrs = [lab.pod_cidr(0), lab.pod_cidr(1)]
    assert len(set(cidrs)) == 2 and all(c.startswith("10.244.") and c.endswith("/24") for c in cidrs)
    for i, n in enumerate(lab.nodes):
        conf = json.loads((lab.tmp / n.name / "net.d" / "10-kubelab.conflist").read_text())
        assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": cidrs[i]}]]
        other = lab.nodes[1 - i]
        assert f"{cidrs[1 - i]} via {other.ip}" in sh("ip", "-n", n.netns, "route")
    host = sh("ip", "route")
    assert f"{cidrs[0]} via {lab.nodes[0].ip}" in host and f"{cidrs[1]} via {lab.nodes[1].ip}" in host


def test_pod_to_pod_across_nodes(lab, web):
    p, ips = web["pods"], web["ips"]
    assert wget_until(lab, p["c2"], f"http://{ips['w1']}:8080/", lambda o: o == "w1") == "w1"
    assert wget_until(lab, p["c1"], f"http://{ips['w2']}:8080/", lambda o: o == "w2") == "w2"


def test_cluster_ip_spreads_1000_requests_over_three_endpoints(lab, web):
    ip = web["svcs"]["web"]["spec"]["clusterIP"]
    c2 = web["pods"]["c2"]
    wget_until(lab, c2, f"http://{ip}/", lambda o: o in ("w1", "w2", "w3"))
    rc, out = lab.exec(c2, f"for i in $(seq 1000); do timeout 5 wget -qO- http://{ip}/ || echo FAIL; done", timeout=300)
    counts = collections.Counter(out.split())
    print(f"\n1000 requests from c2 to {ip}: {dict(counts)}")
    assert sum(counts[n] for n in ("w1", "w2", "w3")) == 1000, counts
    for n in ("w1", "w2", "w3"):
        assert 200 <= counts[n] <= 460, counts


def test_node_port_on_every_node_reaches_the_other_node(lab, web):
    port = web["svcs"]["web"]["spec"]["ports"][0]["nodePort"]
    on = {"node1": {"w1"}, "node2": {"w2", "w3"}}
    for n in lab.nodes:
        seen = collections.Counter()
        deadline = time.monotonic() + 20
        while not (seen.keys() - on[n.name]) and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{n.ip}:{port}/", timeout=2) as r:
                    seen[r.read().decode().strip()] += 1
            except OSError:
                time.sleep(0.1)
        assert seen.keys() - on[n.name], f"NodePort {n.ip}:{port} never reached a pod on the other node: {seen}"


def test_pod_reaches_itself_through_its_service(lab, web):
    ip = web["svcs"]["self"]["spec"]["clusterIP"]
    assert wget_until(lab, web["pods"]["w1"], f"http://{ip}/", lambda o: o == "w1") == "w1"


def _nslookup(lab, pod: Pod, args: str) -> str:
    """busybox nslookup (which, unlike the libc resolver wget uses, applies no search list)."""
    deadline = time.monotonic() + 10
    while True:
        rc, out = lab.exec(pod, f"nslookup {args}")
        if rc == 0 or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


@pytest.mark.parametrize("client", ["c2", "c1"])
def test_dns_from_pods(lab, web, client):
    pod = web["pods"][client]
    ips = web["ips"]
    cluster_ip = web["svcs"]["web"]["spec"]["clusterIP"]
    # short, namespaced and full service names through the pod's resolv.conf (search list, ndots)
    for name in ("web", f"web.{NS}", f"web.{NS}.svc.cluster.local"):
        assert wget_until(lab, pod, f"http://{name}/", lambda o: o in ("w1", "w2", "w3"))
    out = _nslookup(lab, pod, f"web.{NS}.svc.cluster.local")
    assert cluster_ip in out, out
    # headless: every ready endpoint, and each by its hostname
    out = _nslookup(lab, pod, f"web-h.{NS}.svc.cluster.local")
    assert all(ips[n] in out for n in ("w1", "w2", "w3")), out
    out = _nslookup(lab, pod, f"w2.web-h.{NS}.svc.cluster.local")
    assert ips["w2"] in out and ips["w1"] not in out, out
    # SRV for the named port, PTR for a service IP and a headless pod
    out = _nslookup(lab, pod, f"-type=srv _http._tcp.web.{NS}.svc.cluster.local")
    assert f"web.{NS}.svc.cluster.local" in out and " 80 " in f" {out} ", out
    out = _nslookup(lab, pod, cluster_ip)
    assert f"web.{NS}.svc.cluster.local" in out, out
    out = _nslookup(lab, pod, ips["w3"])
    assert f"w3.web-h.{NS}.svc.cluster.local" in out, out
    # pod records and a name outside the cluster, answered by the (fake) upstream
    dashed = ips["c1"].replace(".", "-")
    out = _nslookup(lab, pod, f"{dashed}.{NS}.pod.cluster.local")
    assert ips["c1"] in out, out
    before = lab.upstream.queries
    out = _nslookup(lab, pod, OUTSIDE[0].rstrip("."))
    assert OUTSIDE[1] in out, out
    assert lab.upstream.queries > before or client == "c1"   # the second run may be answered from the cache
    rc, out = lab.exec(pod, "nslookup no-such-service.lab.svc.cluster.local")
    assert rc != 0 and "NXDOMAIN" in out, out


def test_endpoint_removal_stops_new_connections_within_a_second(lab, web):
    ips, c2 = web["ips"], web["pods"]["c2"]
    ip = web["svcs"]["web"]["spec"]["clusterIP"]

    def set_eps(names):
        eps = endpoint_slice(NS, "web", [(ips[n], "node1" if n == "w1" else "node2", None) for n in names],
                             HTTP_EP)["endpoints"]
        lab.call(lambda c: c.patch("discovery.k8s.io/v1", "endpointslices", NS, "web-1", {"endpoints": eps}))
    try:
        set_eps(["w1", "w2"])
        t0 = time.monotonic()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        rc, out = lab.exec(c2, f"for i in $(seq 100); do timeout 5 wget -qO- http://{ip}/ || echo FAIL; done")
        counts = collections.Counter(out.split())
        assert counts["w3"] == 0 and counts["w1"] + counts["w2"] == 100, counts
    finally:
        set_eps(["w1", "w2", "w3"])
    wget_until(lab, c2, f"http://{ip}/", lambda o: o == "w3", timeout=15)


def test_service_chain_deleted_by_hand_comes_back(lab, web):
    n = lab.nodes[1]
    ip = web["svcs"]["self"]["spec"]["clusterIP"]
    chain = "KUBE-SVC-" + port_proto_hash(f"{NS}/self:http", "tcp")
    ipt = n.nsenter() + ["iptables", "-t", "nat"]
    for line in sh(*ipt, "-S", "KUBE-SERVICES").splitlines():
        if f"-j {chain}" in line:
            sh(*ipt, *shlex.split(line.replace("-A ", "-D ", 1)))
    sh(*ipt, "-F", chain)
    sh(*ipt, "-X", chain)
    assert f":{chain} " not in sh(*n.nsenter(), "iptables-save", "-t", "nat")
    rc, _ = lab.exec(web["pods"]["c2"], f"timeout 2 wget -qO- http://{ip}/")
    assert rc != 0, "the service answered without its chain"
    t0 = time.monotonic()
    wget_until(lab, web["pods"]["c2"], f"http://{ip}/", lambda o: o == "w1", timeout=10)
    print(f"\nchain restored and serving after {time.monotonic() - t0:.2f}s")
    assert f":{chain} " in sh(*n.nsenter(), "iptables-save", "-t", "nat")
