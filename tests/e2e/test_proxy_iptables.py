"""kubelab-proxy in iptables mode against the real kernel, the real apiserver and real traffic.

Everything runs in fresh network namespaces, so the host's rules are never touched:

    client netns (10.244.2.2) --veth-- NODE netns --bridge kbr0 (10.244.1.1/24)-- 3 pod netns
                                        |  kubelab-proxy runs here (ip netns exec)     (10.244.1.11-13,
                                        |  uplink veth with the default route           TCP 8080 and
                                        |  127.0.0.1:<relay> -> apiserver on the host    UDP 5353 servers
                                                                                         answering their name)

The apiserver of the session `control_plane` fixture listens on the host's 127.0.0.1; the node
namespace reaches it through a relay whose listening socket is opened inside the node namespace
(a thread that setns()es there), so the proxier's kubeconfig keeps https://127.0.0.1 and the
serving certificate verifies. Services and EndpointSlices are created through the API by the test
(there is no EndpointSlice controller yet).
"""
from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from kubelab.client.rest import Client
from kubelab.proxy.servicechange import SERVICE_NAME_LABEL, port_proto_hash

pytestmark = pytest.mark.e2e

CLONE_NEWNET = 0x40000000
POD_IPS = ["10.244.1.11", "10.244.1.12", "10.244.1.13"]
NODE_BR_IP = "10.244.1.1"
NODE_CLIENT_IP = "10.244.2.1"
CLIENT_IP = "10.244.2.2"
PY = sys.executable

SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(512)
    while True:
        c, a = s.accept()
        try: c.sendall(f"{name} {a[0]}\n".encode())
        except OSError: pass
        c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5353))
    while True:
        d, a = u.recvfrom(2048); u.sendto(f"{name} {a[0]}".encode(), a)
threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import json, socket, sys, time
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]); timeout = float(sys.argv[5])
out = []
if mode == "tcp":
    for _ in range(n):
        t = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                out.append([t, s.recv(100).decode().split()[0]])
        except ConnectionRefusedError:
            out.append([t, "refused", time.monotonic() - t])
        except OSError as e:
            out.append([t, "error:" + type(e).__name__, time.monotonic() - t])
elif mode == "tcp-for":                 # keep connecting for n/1000 seconds, about 300/s
    end = time.monotonic() + n / 1000
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                out.append([t, s.recv(100).decode().split()[0]])
        except OSError as e:
            out.append([t, "error:" + type(e).__name__])
        time.sleep(0.003)
elif mode == "udp":                     # n datagrams, each from its own source port
    socks = []
    for i in range(n):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(timeout)
        u.bind(("0.0.0.0", 40000 + i)); socks.append(u)
        try:
            u.sendto(b"hi", (host, port)); out.append([i, u.recvfrom(100)[0].decode().split()[0]])
        except OSError as e:
            out.append([i, "error:" + type(e).__name__])
    for u in socks: u.close()
print(json.dumps(out))
"""


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 60) -> str:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


# --- a relay from the node namespace's loopback to the host's apiserver -----------------------

_libc = ctypes.CDLL(None, use_errno=True)


def listen_in_netns(ns: str) -> socket.socket:
    """A listening socket on 127.0.0.1 inside netns `ns` (opened by a thread that entered it)."""
    box: dict = {}

    def enter() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            box["sock"] = s
        except BaseException as e:   # reported to the caller
            box["error"] = e

    t = threading.Thread(target=enter)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


class Relay:
    def __init__(self, listener: socket.socket, target_port: int) -> None:
        self.listener = listener
        self.port = listener.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self.conns: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped = True
        self.listener.close()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass


# --- the environment ----------------------------------------------------------------------


class Env:
    def __init__(self, control_plane) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.node = f"kpn-{self.id}"
        self.client = f"kpc-{self.id}"
        self.pods = [f"kpp-{self.id}-{i}" for i in range(3)]
        self.ns = f"proxy-e2e-{self.id}"
        self.cp = control_plane
        self.tmp = Path(tempfile.mkdtemp(prefix="kubelab-proxy-e2e-"))
        self.servers: list[subprocess.Popen] = []
        self.proxier: subprocess.Popen | None = None
        self.relay: Relay | None = None
        self.healthz_port = 0
        self.metrics_port = 0

    @property
    def namespaces(self) -> list[str]:
        return [self.node, self.client, *self.pods]

    # network
    def build(self) -> None:
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        n = self.node
        in_ns(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(n, "ip", "link", "add", "kbr0", "type", "bridge")
        in_ns(n, "ip", "addr", "add", f"{NODE_BR_IP}/24", "dev", "kbr0")
        in_ns(n, "ip", "link", "set", "kbr0", "up")
        for i, (pod, ip) in enumerate(zip(self.pods, POD_IPS)):
            sh("ip", "-n", n, "link", "add", f"kpv{i}", "type", "veth", "peer", "name", "eth0", "netns", pod)
            in_ns(n, "ip", "link", "set", f"kpv{i}", "master", "kbr0")
            in_ns(n, "ip", "link", "set", f"kpv{i}", "type", "bridge_slave", "hairpin", "on")
            in_ns(n, "ip", "link", "set", f"kpv{i}", "up")
            in_ns(pod, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            in_ns(pod, "ip", "link", "set", "eth0", "up")
            in_ns(pod, "ip", "route", "add", "default", "via", NODE_BR_IP)
        sh("ip", "-n", n, "link", "add", "kpc0", "type", "veth", "peer", "name", "eth0", "netns", self.client)
        in_ns(n, "ip", "addr", "add", f"{NODE_CLIENT_IP}/24", "dev", "kpc0")
        in_ns(n, "ip", "link", "set", "kpc0", "up")
        in_ns(self.client, "ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        in_ns(self.client, "ip", "link", "set", "eth0", "up")
        in_ns(self.client, "ip", "route", "add", "default", "via", NODE_CLIENT_IP)
        # the node's uplink: its default route (service IPs must route somewhere, as on a real node)
        in_ns(n, "ip", "link", "add", "kup0", "type", "veth", "peer", "name", "kup1")
        in_ns(n, "ip", "addr", "add", "192.168.77.2/24", "dev", "kup0")
        in_ns(n, "ip", "link", "set", "kup0", "up")
        in_ns(n, "ip", "link", "set", "kup1", "up")
        in_ns(n, "ip", "route", "add", "default", "via", "192.168.77.1")
        for pod in self.pods:
            p = subprocess.Popen(["ip", "netns", "exec", pod, PY, "-c", SERVER, pod], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, cwd=self.tmp)
            self.servers.append(p)
        for p in self.servers:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def start_proxier(self) -> None:
        self.relay = Relay(listen_in_netns(self.node), self.cp.api.port)
        cfg = yaml.safe_load(Path(self.cp.kubeconfig).read_text())
        for c in cfg["clusters"]:
            c["cluster"]["server"] = f"https://127.0.0.1:{self.relay.port}"
        kc = self.tmp / "node.kubeconfig"
        kc.write_text(yaml.safe_dump(cfg))
        self.healthz_port, self.metrics_port = 10256, 10249   # the node netns is ours alone
        self.log = self.tmp / "proxy.log"
        with open(self.log, "wb") as out:
            self.proxier = subprocess.Popen(
                ["ip", "netns", "exec", self.node, PY, "-c", "from kubelab.cmd.proxy import main; main()",
                 "--kubeconfig", str(kc), "--hostname-override", "node1", "--cluster-cidr", "10.244.0.0/16",
                 "--iptables-sync-period", "3s", "--iptables-min-sync-period", "1s",
                 "--healthz-bind-address", f"127.0.0.1:{self.healthz_port}",
                 "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proxier.poll() is not None:
                raise AssertionError(f"kubelab-proxy exited: {self.log.read_text()[-3000:]}")
            if "sync complete full=True ok=True" in self.log.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"kubelab-proxy did not sync within 30s: {self.log.read_text()[-3000:]}")

    def teardown(self) -> list[str]:
        problems = []
        if self.proxier is not None and self.proxier.poll() is None:
            self.proxier.send_signal(signal.SIGTERM)
            try:
                self.proxier.wait(15)
            except subprocess.TimeoutExpired:
                self.proxier.kill()
                self.proxier.wait()
                problems.append("kubelab-proxy did not stop on SIGTERM")
        for p in self.servers:
            p.kill()
            p.wait()
            if p.stdout:
                p.stdout.close()
        if self.relay:
            self.relay.close()
        for ns in self.namespaces:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        left = [ns for ns in sh("ip", "netns", "list").split() if self.id in ns]
        if left:
            problems.append(f"namespaces left: {left}")
        procs = [p.pid for p in psutil.process_iter(["cmdline"]) if self.id in " ".join(p.info["cmdline"] or [])]
        if procs:
            problems.append(f"processes left: {procs}")
        links = [ln for ln in sh("ip", "-o", "link").splitlines() if re.search(r"\bkp[vcu]\d", ln)]
        if links:
            problems.append(f"links left on the host: {links}")
        return problems

    # API
    def api(self, fn):
        async def go():
            async with Client.from_kubeconfig(str(self.cp.kubeconfig), component="proxy-e2e") as c:
                return await fn(c)
        return asyncio.run(go())

    def service(self, name: str, ports: list[dict], **spec) -> dict:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": self.ns},
                "spec": {"ports": ports, **spec}}
        return self.api(lambda c: c.create("v1", "services", body, self.ns))

    def endpoint_slice(self, name: str, service: str, ips: list[str], ports: list[dict]) -> dict:
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": self.ns, "labels": {SERVICE_NAME_LABEL: service}},
                "addressType": "IPv4", "ports": ports,
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node1"} for ip in ips]}
        return self.api(lambda c: c.create("discovery.k8s.io/v1", "endpointslices", body, self.ns))

    def set_slice_endpoints(self, name: str, ips: list[str]) -> None:
        eps = [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node1"} for ip in ips]
        self.api(lambda c: c.patch("discovery.k8s.io/v1", "endpointslices", self.ns, name, {"endpoints": eps}))

    # traffic
    def client_run(self, mode: str, host: str, port: int, n: int, timeout: float = 2.0, ns: str | None = None) -> list:
        out = in_ns(ns or self.client, PY, "-c", CLIENT, mode, host, str(port), str(n), str(timeout), timeout=120)
        return json.loads(out)

    def wait_reachable(self, host: str, port: int, timeout: float = 10.0, ns: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.client_run("tcp", host, port, 1, timeout=0.5, ns=ns)
            if last[0][1].startswith("kpp-"):
                return
            time.sleep(0.2)
        raise AssertionError(f"{host}:{port} not reachable within {timeout}s: {last}; log:\n"
                             f"{self.log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def env(control_plane):
    e = Env(control_plane)
    host_kube_chains = _host_kube_chains()
    try:
        e.build()
        e.api(lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": e.ns}}))
        e.start_proxier()
        yield e
    finally:
        log = e.log.read_text() if getattr(e, "log", None) and e.log.exists() else ""
        problems = e.teardown()
        import shutil
        shutil.rmtree(e.tmp, ignore_errors=True)
        assert not problems, problems
        assert not e.tmp.exists()
        assert _host_kube_chains() <= host_kube_chains, "chains appeared in the host's own tables"
        assert "Traceback" not in log, log[-4000:]


def _host_kube_chains() -> set[str]:
    out = sh("iptables-save", check=False) + sh("iptables-legacy-save", check=False)
    return {ln.split()[0][1:] for ln in out.splitlines() if ln.startswith(":KUBE-")}


def _names(results: list) -> list[str]:
    return [r[1] for r in results]


TCP = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
TCP_EP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


# --- tests -------------------------------------------------------------------------------------


def test_cluster_ip_spreads_over_three_endpoints(env):
    s = env.service("web", TCP)
    ip = s["spec"]["clusterIP"]
    env.endpoint_slice("web-1", "web", POD_IPS, TCP_EP)
    env.wait_reachable(ip, 80)
    names = _names(env.client_run("tcp", ip, 80, 1000))
    counts = {p: names.count(p) for p in env.pods}
    assert sum(counts.values()) == 1000, f"failed requests: {[n for n in names if not n.startswith('kpp-')][:5]}"
    for pod, c in counts.items():
        assert 200 <= c <= 460, f"{pod} got {c / 10:.1f}% of 1000 requests: {counts}"
    # the node itself reaches the service too (nat OUTPUT)
    assert _names(env.client_run("tcp", ip, 80, 5, ns=env.node))[0].startswith("kpp-")
    # rules are where upstream puts them
    chain = "KUBE-SVC-" + port_proto_hash(f"{env.ns}/web:http", "tcp")
    nat = in_ns(env.node, "iptables-nft-save", "-t", "nat")
    assert f"-j {chain}" in nat and nat.count(f"-A {chain} ") == 4   # masquerade + 3 endpoints
    assert "--probability 0.33333333349" in nat                         # 1/3 as the kernel keeps it
    assert ":KUBE-SERVICES" not in in_ns(env.node, "iptables-legacy-save", check=False)   # backend: nft


def test_node_port_and_localhost(env):
    s = env.service("np", TCP, type="NodePort")
    np_ = s["spec"]["ports"][0]["nodePort"]
    env.endpoint_slice("np-1", "np", POD_IPS[:2], TCP_EP)
    env.wait_reachable(NODE_CLIENT_IP, np_)
    assert set(_names(env.client_run("tcp", NODE_CLIENT_IP, np_, 40))) <= set(env.pods[:2])
    # from the node itself, on loopback (route_localnet) and on its uplink address
    assert _names(env.client_run("tcp", "127.0.0.1", np_, 3, ns=env.node))[0] in env.pods[:2]
    assert _names(env.client_run("tcp", "192.168.77.2", np_, 3, ns=env.node))[0] in env.pods[:2]


def test_no_endpoints_is_rejected_quickly(env):
    s = env.service("empty", TCP)
    ip = s["spec"]["clusterIP"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and f"-d {ip}/32" not in in_ns(env.node, "iptables-save", "-t", "filter"):
        time.sleep(0.1)
    # the kernel sends at most one ICMP unreachable per second to a host: start from a clean slate
    time.sleep(1.1)
    res = env.client_run("tcp", ip, 80, 1, timeout=3.0)
    assert res[0][1] == "refused", res
    assert res[0][2] < 0.5, f"refusal took {res[0][2]:.2f}s"
    assert '"%s/empty:http has no endpoints"' % env.ns in in_ns(env.node, "iptables-save", "-t", "filter")


def test_session_affinity_client_ip(env):
    s = env.service("sticky", TCP, sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    ip = s["spec"]["clusterIP"]
    env.endpoint_slice("sticky-1", "sticky", POD_IPS, TCP_EP)
    env.wait_reachable(ip, 80)
    names = set(_names(env.client_run("tcp", ip, 80, 60)))
    assert len(names) == 1 and names <= set(env.pods), names
    assert "--rcheck --seconds 60 --reap" in in_ns(env.node, "iptables-nft-save", "-t", "nat")


def test_hairpin_pod_reaches_itself_through_its_service(env):
    s = env.service("self", TCP)
    ip = s["spec"]["clusterIP"]
    env.endpoint_slice("self-1", "self", POD_IPS[:1], TCP_EP)
    env.wait_reachable(ip, 80, ns=env.pods[0])
    out = in_ns(env.pods[0], PY, "-c", "import socket; s=socket.create_connection((%r, 80), 2); print(s.recv(99).decode())"
                % ip)
    name, src = out.split()
    assert name == env.pods[0]
    assert src == NODE_BR_IP, "hairpin traffic must be masqueraded to the node"


def test_external_ip_and_load_balancer_ingress(env):
    s = env.service("lb", TCP, type="LoadBalancer", externalIPs=["198.51.100.20"])
    env.endpoint_slice("lb-1", "lb", POD_IPS, TCP_EP)
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.30"}]}}
    env.api(lambda c: c.update_status("v1", "services", s, env.ns))
    env.wait_reachable("198.51.100.20", 80)
    env.wait_reachable("203.0.113.30", 80)
    assert _names(env.client_run("tcp", "203.0.113.30", 80, 5))[0] in env.pods


def _conntrack_to(env, cluster_ip: str) -> list[str]:
    """Reply sources (endpoint IPs) of the UDP conntrack entries for a cluster IP."""
    out = in_ns(env.node, "conntrack", "-L", "-p", "udp", "--orig-dst", cluster_ip, check=False)
    return [m.group(1) for m in re.finditer(r"dport=\d+\s+src=(\S+)", out)]


def test_endpoint_removal_takes_effect_within_a_second(env):
    tcp = env.service("churn", TCP)
    udp = env.service("churn-udp", [{"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])
    tip, uip = tcp["spec"]["clusterIP"], udp["spec"]["clusterIP"]
    env.endpoint_slice("churn-1", "churn", POD_IPS, TCP_EP)
    env.endpoint_slice("churn-udp-1", "churn-udp", POD_IPS, [{"name": "dns", "port": 5353, "protocol": "UDP"}])
    env.wait_reachable(tip, 80)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            n.startswith("kpp-") for n in _names(env.client_run("udp", uip, 53, 1, timeout=0.5))):
        time.sleep(0.2)
    got = _names(env.client_run("udp", uip, 53, 60, timeout=1.0))
    assert set(got) == set(env.pods), got
    assert set(_conntrack_to(env, uip)) == set(POD_IPS)
    gone_ip, gone_pod = POD_IPS[2], env.pods[2]

    # --iptables-min-sync-period (1s, burst 2): the periodic full syncs (every 3s here) take tokens
    # too, as upstream's. Start right after one, then wait 2s: both removals below find a token.
    full = env.log.read_text().count("sync complete full=True")
    deadline = time.monotonic() + 10
    while env.log.read_text().count("sync complete full=True") == full and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(2.0)
    # keep connecting while the endpoint is removed from both slices
    loop = subprocess.Popen(["ip", "netns", "exec", env.client, PY, "-c", CLIENT, "tcp-for", tip, "80", "2500", "1.5"],
                            stdout=subprocess.PIPE, text=True, cwd=env.tmp)
    time.sleep(0.4)
    t0 = time.monotonic()
    env.set_slice_endpoints("churn-1", POD_IPS[:2])
    t_udp = time.monotonic()        # the UDP endpoint's removal: its conntrack entries count from here
    env.set_slice_endpoints("churn-udp-1", POD_IPS[:2])
    ct_gone = None
    while time.monotonic() < t_udp + 2:
        if gone_ip not in _conntrack_to(env, uip):
            ct_gone = time.monotonic() - t_udp
            break
        time.sleep(0.05)
    out, _ = loop.communicate(timeout=30)
    results = json.loads(out)
    after = [r for r in results if r[0] >= t0 + 1.0]
    assert after, "no connections were made after the first second"
    assert gone_pod not in _names(after), "a new connection reached the removed endpoint after 1s"
    bad = [(round(r[0] - t0, 3), r[1]) for r in after if r[1] not in env.pods[:2]]
    errs = [(round(r[0] - t0, 3), r[1]) for r in results if not r[1].startswith("kpp-")]
    assert not bad, (bad[:5], errs, len(results))
    last_hit = max((r[0] - t0 for r in results if r[1] == gone_pod), default=None)
    assert last_hit is None or last_hit < 1.0
    assert ct_gone is not None and ct_gone < 1.0, ("UDP conntrack entries of the removed endpoint stayed", in_ns(env.node, "conntrack", "-L", "-p", "udp", check=False), env.log.read_text()[-3000:])
    assert set(_conntrack_to(env, uip)) == set(POD_IPS[:2]), "entries of the other endpoints must stay"
    print(f"removed endpoint: last TCP hit {last_hit if last_hit is None else round(last_hit, 3)}s, "
          f"UDP conntrack flushed after {ct_gone:.3f}s")


def test_chain_deleted_by_hand_comes_back(env):
    s = env.service("tamper", TCP)
    ip = s["spec"]["clusterIP"]
    env.endpoint_slice("tamper-1", "tamper", POD_IPS, TCP_EP)
    env.wait_reachable(ip, 80)
    chain = "KUBE-SVC-" + port_proto_hash(f"{env.ns}/tamper:http", "tcp")
    for line in in_ns(env.node, "iptables", "-t", "nat", "-S", "KUBE-SERVICES").splitlines():
        if f"-j {chain}" in line:
            in_ns(env.node, "iptables", "-t", "nat", *shlex.split(line.replace("-A ", "-D ", 1)))
    in_ns(env.node, "iptables", "-t", "nat", "-F", chain)
    in_ns(env.node, "iptables", "-t", "nat", "-X", chain)
    assert f":{chain} " not in in_ns(env.node, "iptables-save", "-t", "nat")
    assert not _names(env.client_run("tcp", ip, 80, 1, timeout=0.3))[0].startswith("kpp-")
    t0 = time.monotonic()
    env.wait_reachable(ip, 80, timeout=10)    # the next full sync (every 3s here) repairs it
    took = time.monotonic() - t0
    nat = in_ns(env.node, "iptables-save", "-t", "nat")
    assert f":{chain} " in nat and f"-j {chain}" in nat
    print(f"chain restored after {took:.2f}s")
    # several full syncs later, every jump rule from the built-in chains is there exactly once
    flt = in_ns(env.node, "iptables-save", "-t", "filter")
    for table, text in (("nat", nat), ("filter", flt)):
        jumps = [ln for ln in text.splitlines() if re.match(r"-A (PREROUTING|INPUT|OUTPUT|FORWARD|POSTROUTING) ", ln)]
        assert len(jumps) == len(set(jumps)), f"duplicate jump rules in {table}: {jumps}"
    assert sum(1 for ln in flt.splitlines() if ln.startswith("-A ")
               and ln.split()[1] in ("INPUT", "OUTPUT", "FORWARD")) == 11


def test_health_and_metrics(env):
    code = ("import urllib.request,sys; r=urllib.request.urlopen(sys.argv[1], timeout=5); "
            "print(r.status); print(r.read().decode())")
    out = in_ns(env.node, PY, "-c", code, f"http://127.0.0.1:{env.healthz_port}/healthz")
    status, body = out.split("\n", 1)
    assert status == "200" and json.loads(body)["lastUpdated"]
    out = in_ns(env.node, PY, "-c", code, f"http://127.0.0.1:{env.metrics_port}/metrics")
    m = re.search(r"^kubeproxy_sync_proxy_rules_duration_seconds_count (\S+)$", out, re.M)
    assert m and float(m.group(1)) >= 2
    assert re.search(r"^kubeproxy_sync_full_proxy_rules_duration_seconds_count [1-9]", out, re.M)
    assert re.search(r"^kubeproxy_sync_partial_proxy_rules_duration_seconds_count [1-9]", out, re.M)
    assert re.search(r'^kubeproxy_sync_proxy_rules_iptables_total\{table="nat"\} [1-9]', out, re.M)
    assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in out
    mode = in_ns(env.node, PY, "-c", code, f"http://127.0.0.1:{env.metrics_port}/proxyMode").split("\n")[1]
    assert mode.strip() == "iptables"


def test_cleanup_removes_rules(env):
    """Last test on the environment: stop kubelab-proxy, then `kubelab-proxy --cleanup`."""
    env.proxier.send_signal(signal.SIGTERM)
    assert env.proxier.wait(15) == 0
    out = subprocess.run(["ip", "netns", "exec", env.node, PY, "-c", "from kubelab.cmd.proxy import main; main()",
                          "--cleanup"], capture_output=True, text=True, cwd=env.tmp, timeout=60)
    assert out.returncode == 0, out.stderr
    left = in_ns(env.node, "iptables-save")
    chains = {ln.split()[0][1:] for ln in left.splitlines() if ln.startswith(":KUBE-")}
    assert chains == {"KUBE-FIREWALL"}, chains          # the kubelet's chain stays, as upstream
    assert "KUBE-SERVICES" not in left and "KUBE-POSTROUTING" not in left


# --- backend detection in throwaway namespaces ------------------------------------------------


def test_backend_detection_follows_the_host():
    from kubelab.proxy.iptables.runner import Executor, detect_backend
    names = [f"kpb-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    try:
        for n in names:
            sh("ip", "netns", "add", n)
        # kubelet's hint chain in legacy's mangle table: legacy
        in_ns(names[0], "iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT")
        # no hint, more legacy rules than nft rules: legacy
        in_ns(names[1], "iptables-legacy", "-A", "INPUT", "-s", "10.9.9.9", "-j", "ACCEPT")
        in_ns(names[1], "iptables-legacy", "-A", "INPUT", "-s", "10.9.9.8", "-j", "ACCEPT")
        in_ns(names[1], "iptables-nft", "-A", "INPUT", "-s", "10.9.9.7", "-j", "ACCEPT")
        # the hint in nft, even with more legacy rules: nft
        in_ns(names[2], "iptables-nft", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY")
        in_ns(names[2], "iptables-legacy", "-A", "INPUT", "-s", "10.9.9.9", "-j", "ACCEPT")

        async def detect(n: str) -> str:
            return await detect_backend(Executor(["ip", "netns", "exec", n]))
        assert [asyncio.run(detect(n)) for n in names] == ["legacy", "legacy", "nft"]
    finally:
        for n in names:
            sh("ip", "netns", "del", n, check=False)
    assert not [n for n in sh("ip", "netns", "list").split() if n in names]
