"""kubelab-proxy's IPVS mode against the real kernel, as far as this kernel goes.

This machine's kernel has no IP_VS (and no dummy links), so virtual servers and kube-ipvs0 are
tested through the netlink messages they produce (tests/unit/test_proxy_ipvs.py). Here, with the
real kernel: the ipsets and the iptables rules that match them, applied and changed in a fresh
network namespace by the proxier's own code and removed by `kubelab-proxy --cleanup`; and the
binary in --proxy-mode ipvs on a two-node lab serving a ClusterIP from a pod on the other node,
through IPVS where the kernel has it (checked with ipvsadm) and otherwise through iptables after
saying loudly that it falls back.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.lab.cluster import LabCluster, endpoint_slice
from kubelab.proxy.iptables.runner import Executor, IPTables
from kubelab.proxy.ipvs import ipsets as S
from kubelab.proxy.ipvs import state as ST
from kubelab.proxy.ipvs.kernel import IPVSUnavailable, check_available
from kubelab.proxy.ipvs.proxier import IPSet
from kubelab.proxy.servicechange import Endpoint, service_ports

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(args)}: {r.stderr}")
    return r.stdout


def host_kube_sets() -> set[str]:
    return {n for n in sh("ipset", "list", "-n").split() if n.startswith("KUBE-")}


@pytest.fixture
def netns():
    name = f"kipvs-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)
    assert name not in sh("ip", "netns", "list")


def services(with_extra: bool) -> tuple[dict, dict]:
    m = {}
    m.update(service_ports({"metadata": {"name": "web", "namespace": "a"}, "spec": {
        "clusterIP": "10.96.0.10", "type": "NodePort", "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}))
    m.update(service_ports({"metadata": {"name": "dns", "namespace": "a"}, "spec": {
        "clusterIP": "10.96.0.53", "type": "NodePort", "ports": [{"name": "dns", "port": 53, "protocol": "UDP",
                                                                  "nodePort": 30053}]}}))
    if with_extra:
        m.update(service_ports({"metadata": {"name": "lb", "namespace": "a"}, "spec": {
            "clusterIP": "10.96.0.20", "type": "LoadBalancer", "externalIPs": ["203.0.113.5"],
            # the node is inside the source ranges: no `-m ipvs` rule (xt_ipvs comes with IP_VS)
            "loadBalancerSourceRanges": ["198.51.100.0/24", "192.168.77.0/24"],
            "ports": [{"name": "http", "port": 80, "nodePort": 30081}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}))
    eps = {}
    for spn in m:
        eps[spn] = [Endpoint("10.244.0.5", 8080, True, True, True, False),
                    Endpoint("10.244.1.5" if with_extra else "10.244.1.6", 8080, False, True, True, False)]
    return m, eps


async def apply(ns: str, with_extra: bool) -> ST.DesiredState:
    ex = Executor(prefix=["nsenter", f"--net=/run/netns/{ns}"])
    ipt = await IPTables.detect(ex)
    ipset = IPSet(ex)
    svcs, eps = services(with_extra)
    cfg = ST.IPVSConfig(cluster_cidr="10.244.0.0/16", node_ip="192.168.77.2")
    st = ST.build(svcs, eps, cfg, ["192.168.77.2"], {"192.168.77.2"})
    await ipset.restore(S.restore_text(st.sets, S.parse_save(await ipset.save())))
    await ipt.restore(ST.rules_text(st, cfg))
    await ipt.ensure_jumps(ST.JUMP_RULES)
    return st


def test_ipsets_and_rules_in_a_real_kernel(netns):
    before = host_kube_sets()
    in_ns = ["nsenter", f"--net=/run/netns/{netns}"]
    for with_extra in (True, False):         # create, then change (one service gone, one endpoint moved)
        st = asyncio.run(apply(netns, with_extra))
        saved = S.parse_save(sh(*in_ns, "ipset", "save"))
        for s in S.SETS:
            assert saved.get(s.name) == st.sets.entries[s.name], s.name
        nat = sh(*in_ns, "iptables-save", "-t", "nat")
        flt = sh(*in_ns, "iptables-save", "-t", "filter")
        assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
        assert "--match-set KUBE-CLUSTER-IP dst,dst" in nat and "--match-set KUBE-LOOP-BACK dst,dst,src" in nat
        assert "-A KUBE-NODE-PORT -p udp" in nat and "--match-set KUBE-NODE-PORT-UDP dst -j KUBE-MARK-MASQ" in nat
        assert "--match-set KUBE-IPVS-IPS dst -j REJECT" in flt
        assert ("--match-set KUBE-LOAD-BALANCER-FW dst,dst" in flt) == with_extra
        assert ("203.0.113.9,tcp:80" in saved[S.LOAD_BALANCER]) == with_extra
    assert saved[S.LOOP_BACK] == {"10.244.0.5,tcp:8080,10.244.0.5", "10.244.0.5,udp:8080,10.244.0.5"}
    assert not any("10.244.1.5" in e for entries in saved.values() for e in entries)
    # --cleanup in the namespace removes every set, chain and jump of both modes
    r = subprocess.run([*in_ns, str(BIN / "kubelab-proxy"), "--cleanup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert not [n for n in sh(*in_ns, "ipset", "list", "-n").split() if n.startswith("KUBE-")]
    assert "KUBE-" not in sh(*in_ns, "iptables-save")
    assert host_kube_sets() == before, "the host's ipsets changed"


def _ipvs_available() -> str | None:
    try:
        check_available()
        return None
    except IPVSUnavailable as e:
        return str(e)


def test_ipvs_mode_serves_a_cluster_ip_or_falls_back_loudly(test_images):
    lack = _ipvs_available()
    lab = LabCluster({"busybox": test_images["busybox"]}, proxy_args=("--proxy-mode", "ipvs"))
    try:
        lab.up()
        w1 = lab.run_pod(0, "w1", ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && "
                                              "exec httpd -f -p 8080 -h /www"])
        c2 = lab.run_pod(1, "c2", ["sleep", "3600"])
        svc = lab.call(lambda c: c.create("v1", "services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, "default"))
        lab.call(lambda c: c.create("discovery.k8s.io/v1", "endpointslices", endpoint_slice(
            "default", "web", [(w1.ip, "node1", None)], [{"name": "http", "port": 8080, "protocol": "TCP"}]),
            "default"))
        ip = svc["spec"]["clusterIP"]
        deadline = time.monotonic() + 15
        while True:
            rc, out = lab.exec(c2, f"timeout 5 wget -qO- http://{ip}/")
            if rc == 0 and out.strip() == "w1":
                break
            assert time.monotonic() < deadline, f"{ip} not served: {out}"
            time.sleep(0.3)
        log = (lab.tmp / "node2" / "proxy.log").read_text()
        if lack is None:
            assert "mode=ipvs" in log, log[-2000:]
            table = sh(*lab.nodes[1].nsenter(), "ipvsadm", "-Ln")
            assert f"{ip}:80" in table and f"{w1.ip}:8080" in table, table
        else:
            print(f"\nthis kernel has no IPVS ({lack}): kubelab-proxy fell back to iptables")
            assert "CANNOT USE THE IPVS PROXIER" in log and "FALLING BACK TO iptables" in log, log[-2000:]
            assert "mode=iptables" in log
    finally:
        problems = lab.down()
        assert not problems, problems
