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

import asyncio
import collections
import ipaddress
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import Client
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.image.archive import import_archive
from kubelab.cri.image.store import ImageStore
from kubelab.cri.runtime import cgroups
from kubelab.kubelet.podnet import PodNetwork
from kubelab.lab.controlplane import APIServerProc, Etcd, Pki, free_port, spawn, stop
from kubelab.lab.nodes import HOST_IP, LabNetwork, Node
from kubelab.lab.runtimes import KubelabCRIProc
from kubelab.proxy.servicechange import SERVICE_NAME_LABEL, port_proto_hash
from e2e.cri_client import CRI, Pods

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
NS = "lab"
DNS_IP = "10.96.0.10"
OUTSIDE = ("outside.example.", "203.0.113.7")


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"{shlex.join(args)}: {r.stderr.strip()}")
    return r.stdout


class FakeUpstream:
    """A DNS server for names outside the cluster: OUTSIDE's A record, NXDOMAIN for the rest."""

    def __init__(self, host: str) -> None:
        import dns.message
        import dns.rrset
        self._msg, self._rrset = dns.message, dns.rrset
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.addr = f"{host}:{self.sock.getsockname()[1]}"
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


class LoopThread:
    """An asyncio loop in a thread, for the parts the test runs in-process (podnet)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Lab:
    def __init__(self, test_images: dict[str, Path]) -> None:
        self.images = test_images
        self.nodes = [Node("node1", 1), Node("node2", 2)]
        self.net = LabNetwork(self.nodes)
        self.tmp = Path(tempfile.mkdtemp(prefix="kubelab-labnet-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.cris: list[KubelabCRIProc] = []
        self.clients: list[CRI] = []
        self.pods: list[Pods] = []
        self.loop: LoopThread | None = None
        self.podnets: list[PodNetwork] = []
        self.podnet_tasks: list = []
        self.upstream: FakeUpstream | None = None
        self.client: Client | None = None
        self.factory: SharedInformerFactory | None = None
        self.api: APIServerProc | None = None
        self.etcd: Etcd | None = None

    # -- bring-up ---------------------------------------------------------------------------

    def up(self) -> None:
        self.net.up(routes=False)
        self.etcd = Etcd(self.tmp / "etcd", free_port(), free_port())
        self.etcd.start(self.tmp / "etcd.log")
        pki = Pki(self.tmp / "pki")
        pki.ensure((HOST_IP, "127.0.0.1"))
        self.api = APIServerProc(self.etcd.url, free_port(HOST_IP), pki, host=HOST_IP)
        self.api.start(self.tmp / "apiserver.log")
        self.kubeconfig = self.tmp / "admin.kubeconfig"
        pki.kubeconfig(f"https://{HOST_IP}:{self.api.port}", self.kubeconfig)
        self.procs["controller-manager"] = spawn(
            [str(BIN / "kubelab-controller-manager"), "--kubeconfig", str(self.kubeconfig), "--allocate-node-cidrs",
             "--cluster-cidr", "10.244.0.0/16", "--service-cluster-ip-range", "10.96.0.0/12",
             "--leader-elect=false", "--secure-port", "0"], self.tmp / "controller-manager.log")
        self.loop = LoopThread()
        self.loop.run(self._api_up())
        self.cni_bin = self.tmp / "cnibin"
        self.cni_bin.mkdir()
        exe = self.cni_bin / "kubelab-bridge"
        exe.write_text(f"#!{sys.executable}\nimport sys\nfrom kubelab.cmd.cni_bridge import main\nsys.exit(main())\n")
        exe.chmod(0o755)
        os.symlink("/usr/lib/cni/portmap", self.cni_bin / "portmap")
        self.upstream = FakeUpstream(HOST_IP)
        for n in self.nodes:
            self._node_up(n)
        self._wait_proxies()

    async def _api_up(self) -> None:
        self.client = Client.from_kubeconfig(str(self.kubeconfig), component="lab-e2e")
        c = self.client
        await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        for n in self.nodes:
            await c.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name}})
            await c.patch("v1", "nodes", None, n.name, {"status": {"addresses": [
                {"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]}},
                subresource="status")
        # the node IPAM controller's work, then the node's: CNI configs and host-gw routes
        self.factory = SharedInformerFactory(c)
        for n in self.nodes:
            self.podnets.append(PodNetwork(self.factory, n.name, cni_conf_dir=self.tmp / n.name / "net.d",
                                           ipam_data_dir=str(self.tmp / n.name / "ipam"), netns=str(n.netns_path),
                                           resync_period=2))
        self.podnets.append(PodNetwork(self.factory, None, resync_period=2))     # the host
        self.factory.informer("v1", "nodes")
        self.factory.start()
        self.podnet_tasks = [asyncio.create_task(p.run()) for p in self.podnets]
        deadline = time.monotonic() + 30
        while not all(p.pod_cidrs for p in self.podnets[:2]) or len(self.podnets[2].routes) < 2:
            if time.monotonic() > deadline:
                raise AssertionError("nodes got no pod CIDRs / routes within 30s: "
                                     + (self.tmp / "controller-manager.log").read_text()[-2000:])
            await asyncio.sleep(0.1)
        # cluster DNS: the kube-dns Service at its well-known address, served from node1
        await c.create("v1", "services", {"apiVersion": "v1", "kind": "Service",
                                          "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                                          "spec": {"clusterIP": DNS_IP, "ports": [
                                              {"name": "dns", "port": 53, "protocol": "UDP"},
                                              {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}, "kube-system")
        await c.create("discovery.k8s.io/v1", "endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kube-dns-1", "namespace": "kube-system", "labels": {SERVICE_NAME_LABEL: "kube-dns"}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
            "endpoints": [{"addresses": [self.nodes[0].ip], "conditions": {"ready": True}, "nodeName": "node1"}]},
            "kube-system")

    def pod_cidr(self, i: int) -> str:
        return self.podnets[i].pod_cidrs[0]

    def _node_up(self, n: Node) -> None:
        d = self.tmp / n.name
        cri = KubelabCRIProc(d, {"conf_dir": d / "net.d", "bin_dir": self.cni_bin}, prefix=n.nsenter(),
                             cgroup_parent=f"/kubelab-e2e-{n.name}")
        store = ImageStore(cri.root)
        names = {"busybox": asyncio.run(import_archive(store, self.images["busybox"]))[0].repo_tags[0]}
        self.cris.append(cri)
        cri.start()
        client = CRI("kubelab-cri", cri.socket, names, cgroup_base=f"kubelab-e2e-{n.name}")
        self.clients.append(client)
        self.pods.append(Pods(client, d / "logs"))
        self.procs[f"proxy-{n.name}"] = spawn(
            n.nsenter() + [str(BIN / "kubelab-proxy"), "--kubeconfig", str(self.kubeconfig), "--hostname-override",
                           n.name, "--cluster-cidr", "10.244.0.0/16", "--iptables-sync-period", "2s"],
            d / "proxy.log")
        if n.index == 1:
            self.procs["dns"] = spawn(
                # bound to the node's address: replies to local pods must leave from the address the
                # Service DNATs to (on a wildcard socket they would leave from cni0's)
                n.nsenter() + [str(BIN / "kubelab-dns"), "--kubeconfig", str(self.kubeconfig), "--upstream",
                               self.upstream.addr, "--pods", "insecure", "--bind-address", n.ip], d / "dns.log")

    def _wait_proxies(self) -> None:
        deadline = time.monotonic() + 30
        for n in self.nodes:
            log = self.tmp / n.name / "proxy.log"
            while "sync complete full=True ok=True" not in log.read_text():
                p = self.procs[f"proxy-{n.name}"]
                if p.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"kubelab-proxy on {n.name} did not sync: {log.read_text()[-3000:]}")
                time.sleep(0.1)

    # -- use ----------------------------------------------------------------------------------

    def call(self, fn):
        async def go():
            return await fn(self.client)
        return self.loop.run(go())

    def dns_config(self) -> pb.DNSConfig:
        return pb.DNSConfig(servers=[DNS_IP], searches=[f"{NS}.svc.cluster.local", "svc.cluster.local",
                                                        "cluster.local"], options=["ndots:5"])

    def run_pod(self, node: int, name: str, command: list[str]) -> tuple[str, str]:
        """(container id, pod IP) of a busybox pod on node (0-based)."""
        pods = self.pods[node]
        sid, sc = pods.run_sandbox(name=name, hostname=name, dns=self.dns_config())
        cid = pods.start(sid, sc, pods.container_config(name, "busybox", command))
        ip = pods.cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
        return cid, ip

    def exec(self, node: int, cid: str, cmd: str, timeout: int = 120) -> tuple[int, str]:
        r = self.clients[node].rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", cmd],
                                                              timeout=timeout), timeout=timeout + 10)
        return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")

    # -- teardown ------------------------------------------------------------------------------

    def down(self) -> list[str]:
        problems = []
        for p in self.pods:
            try:
                p.cleanup()
            except Exception as e:
                problems.append(f"pod cleanup: {e}")
        for c in self.clients:
            c.close()
        for name, p in self.procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    problems.append(f"{name} did not stop on SIGTERM")
        for cri in self.cris:
            cri.stop()
        if self.loop is not None:
            async def stop_podnets():
                for t in self.podnet_tasks:
                    t.cancel()
                await asyncio.gather(*self.podnet_tasks, return_exceptions=True)
                if len(self.podnets) > 2:
                    await self.podnets[2].remove_routes()
                if self.factory is not None:
                    await self.factory.shutdown()
                if self.client is not None:
                    await self.client.close()
            try:
                self.loop.run(stop_podnets())
            except Exception as e:
                problems.append(f"podnet shutdown: {e}")
            self.loop.close()
        if self.upstream:
            self.upstream.close()
        if self.api and self.api.proc:
            stop(self.api.proc)
        if self.etcd and self.etcd.proc:
            stop(self.etcd.proc)
        self.net.down()
        for n in self.nodes:
            cgroups.remove(f"/kubelab-e2e-{n.name}")
            ipam = self.tmp / n.name / "ipam" / "kubelab"
            held = [f.name for f in ipam.iterdir() if f.name[0].isdigit()] if ipam.exists() else []
            if held:
                problems.append(f"IP reservations left on {n.name}: {held}")
        for name in ("controller-manager", "proxy-node1", "proxy-node2", "dns"):
            log = self.tmp / ("controller-manager.log" if name == "controller-manager" else
                              f"node1/dns.log" if name == "dns" else f"{name.split('-')[1]}/proxy.log")
            if log.exists() and "Traceback" in log.read_text():
                problems.append(f"{name} logged a traceback: {log.read_text()[-2000:]}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        left = self.net.leftovers()
        if left:
            problems.append(f"lab network left behind: {left}")
        procs = [p.pid for p in psutil.process_iter(["cmdline"]) if str(self.tmp) in " ".join(p.info["cmdline"] or [])]
        if procs:
            problems.append(f"processes left: {procs}")
        return problems


@pytest.fixture(scope="module")
def lab(test_images):
    lab = Lab(test_images)
    assert not lab.net.leftovers(), f"a lab network exists already: {lab.net.leftovers()}"
    try:
        lab.up()
        yield lab
    finally:
        problems = lab.down()
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
        pods[name] = lab.run_pod(node, name, ["sh", "-c", HTTPD])
    for node, name in ((0, "c1"), (1, "c2")):
        pods[name] = lab.run_pod(node, name, ["sleep", "3600"])
    ips = {k: v[1] for k, v in pods.items()}
    assert ipaddress.ip_address(ips["w1"]) in ipaddress.ip_network(lab.pod_cidr(0))
    assert ipaddress.ip_address(ips["w2"]) in ipaddress.ip_network(lab.pod_cidr(1))
    node_of = {"w1": "node1", "w2": "node2", "w3": "node2"}

    def eps(names, hostnames=False):
        return [{"addresses": [ips[n]], "conditions": {"ready": True}, "nodeName": node_of[n],
                 **({"hostname": n} if hostnames else {})} for n in names]

    async def make(c):
        out = {}
        for name, spec, names, hostnames in (("web", {"type": "NodePort"}, ["w1", "w2", "w3"], False),
                                             ("web-h", {"clusterIP": "None"}, ["w1", "w2", "w3"], True),
                                             ("self", {}, ["w1"], False)):
            out[name] = await c.create("v1", "services", {"apiVersion": "v1", "kind": "Service",
                                                          "metadata": {"name": name, "namespace": NS},
                                                          "spec": {"ports": HTTP, **spec}}, NS)
            await c.create("discovery.k8s.io/v1", "endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-1", "namespace": NS, "labels": {SERVICE_NAME_LABEL: name}},
                "addressType": "IPv4", "ports": HTTP_EP, "endpoints": eps(names, hostnames)}, NS)
        return out
    svcs = lab.call(make)
    # every pod's server answers on its own IP before the tests start
    for name in ("w1", "w2", "w3"):
        deadline = time.monotonic() + 15
        while True:
            rc, out = lab.exec(1, pods["c2"][0], f"timeout 5 wget -qO- http://{ips[name]}:8080/")
            if rc == 0 and out.strip() == name:
                break
            assert time.monotonic() < deadline, f"{name} at {ips[name]}:8080 not reachable from c2: {out}"
            time.sleep(0.3)
    return {"pods": pods, "ips": ips, "svcs": svcs}


def wget_until(lab, node: int, cid: str, url: str, want, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        rc, out = lab.exec(node, cid, f"timeout 5 wget -qO- {url}")
        if rc == 0 and want(out.strip()):
            return out.strip()
        assert time.monotonic() < deadline, f"{url} from {cid[:12]}: rc={rc} {out!r}"
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
    assert wget_until(lab, 1, p["c2"][0], f"http://{ips['w1']}:8080/", lambda o: o == "w1") == "w1"
    assert wget_until(lab, 0, p["c1"][0], f"http://{ips['w2']}:8080/", lambda o: o == "w2") == "w2"


def test_cluster_ip_spreads_1000_requests_over_three_endpoints(lab, web):
    ip = web["svcs"]["web"]["spec"]["clusterIP"]
    c2 = web["pods"]["c2"][0]
    wget_until(lab, 1, c2, f"http://{ip}/", lambda o: o in ("w1", "w2", "w3"))
    rc, out = lab.exec(1, c2, f"for i in $(seq 1000); do timeout 5 wget -qO- http://{ip}/ || echo FAIL; done", timeout=300)
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
    assert wget_until(lab, 0, web["pods"]["w1"][0], f"http://{ip}/", lambda o: o == "w1") == "w1"


def _nslookup(lab, node: int, cid: str, args: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        rc, out = lab.exec(node, cid, f"nslookup {args}")
        if rc == 0 or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


@pytest.mark.parametrize("node,client", [(1, "c2"), (0, "c1")])
def test_dns_from_pods(lab, web, node, client):
    cid = web["pods"][client][0]
    ips = web["ips"]
    cluster_ip = web["svcs"]["web"]["spec"]["clusterIP"]
    # short, namespaced and full service names through the pod's resolv.conf (search list, ndots)
    for name in ("web", f"web.{NS}", f"web.{NS}.svc.cluster.local"):
        assert wget_until(lab, node, cid, f"http://{name}/", lambda o: o in ("w1", "w2", "w3"))
    out = _nslookup(lab, node, cid, f"web.{NS}.svc.cluster.local")
    assert cluster_ip in out, out
    # headless: every ready endpoint, and each by its hostname
    out = _nslookup(lab, node, cid, f"web-h.{NS}.svc.cluster.local")
    assert all(ips[n] in out for n in ("w1", "w2", "w3")), out
    out = _nslookup(lab, node, cid, f"w2.web-h.{NS}.svc.cluster.local")
    assert ips["w2"] in out and ips["w1"] not in out, out
    # SRV for the named port, PTR for a service IP and a headless pod
    out = _nslookup(lab, node, cid, f"-type=srv _http._tcp.web.{NS}.svc.cluster.local")
    assert f"web.{NS}.svc.cluster.local" in out and " 80 " in f" {out} ", out
    out = _nslookup(lab, node, cid, cluster_ip)
    assert f"web.{NS}.svc.cluster.local" in out, out
    out = _nslookup(lab, node, cid, ips["w3"])
    assert f"w3.web-h.{NS}.svc.cluster.local" in out, out
    # pod records and a name outside the cluster, answered by the (fake) upstream
    dashed = ips["c1"].replace(".", "-")
    out = _nslookup(lab, node, cid, f"{dashed}.{NS}.pod.cluster.local")
    assert ips["c1"] in out, out
    before = lab.upstream.queries
    out = _nslookup(lab, node, cid, OUTSIDE[0].rstrip("."))
    assert OUTSIDE[1] in out, out
    assert lab.upstream.queries > before or node == 0   # the second run may be answered from the cache
    rc, out = lab.exec(node, cid, "nslookup no-such-service.lab.svc.cluster.local")
    assert rc != 0 and "NXDOMAIN" in out, out


def test_endpoint_removal_stops_new_connections_within_a_second(lab, web):
    ips, c2 = web["ips"], web["pods"]["c2"][0]
    ip = web["svcs"]["web"]["spec"]["clusterIP"]

    def set_eps(names):
        eps = [{"addresses": [ips[n]], "conditions": {"ready": True},
                "nodeName": "node1" if n == "w1" else "node2"} for n in names]
        lab.call(lambda c: c.patch("discovery.k8s.io/v1", "endpointslices", NS, "web-1", {"endpoints": eps}))
    try:
        set_eps(["w1", "w2"])
        t0 = time.monotonic()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        rc, out = lab.exec(1, c2, f"for i in $(seq 100); do timeout 5 wget -qO- http://{ip}/ || echo FAIL; done")
        counts = collections.Counter(out.split())
        assert counts["w3"] == 0 and counts["w1"] + counts["w2"] == 100, counts
    finally:
        set_eps(["w1", "w2", "w3"])
    wget_until(lab, 1, c2, f"http://{ip}/", lambda o: o == "w3", timeout=15)


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
    rc, _ = lab.exec(1, web["pods"]["c2"][0], f"timeout 2 wget -qO- http://{ip}/")
    assert rc != 0, "the service answered without its chain"
    t0 = time.monotonic()
    wget_until(lab, 1, web["pods"]["c2"][0], f"http://{ip}/", lambda o: o == "w1", timeout=10)
    print(f"\nchain restored and serving after {time.monotonic() - t0:.2f}s")
    assert f":{chain} " in sh(*n.nsenter(), "iptables-save", "-t", "nat")
