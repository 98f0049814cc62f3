"""The single-host lab's nodes: network namespaces on the lab bridge, each with its own kubelab-cri
and pod CIDR, pods reaching each other across nodes over host-gw routes, without NAT."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.image.archive import import_archive
from kubelab.cri.image.store import ImageStore
from kubelab.cri.runtime import cgroups
from kubelab.lab.nodes import LabNetwork, Node, write_cni_config
from kubelab.lab.runtimes import CNI_BIN_DIR, KubelabCRIProc
from e2e.cri_client import CRI, Pods

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab_nodes(test_images, tmp_path):
    nodes = [Node("node1", 1), Node("node2", 2)]
    net = LabNetwork(nodes)
    assert not net.leftovers(), f"a lab network exists already: {net.leftovers()}"
    tmp = Path(tempfile.mkdtemp(prefix="kubelab-nodes-"))
    procs, clients, pods = [], [], []
    try:
        net.up()
        for n in nodes:
            d = tmp / n.name
            write_cni_config(d / "net.d", n)
            cri = KubelabCRIProc(d, {"conf_dir": d / "net.d", "bin_dir": CNI_BIN_DIR}, prefix=n.nsenter(),
                                 cgroup_parent=f"/kubelab-e2e-{n.name}")
            store = ImageStore(cri.root)
            names = {}
            for short in ("busybox", "nginx"):
                names[short] = asyncio.run(import_archive(store, test_images[short]))[0].repo_tags[0]
            procs.append(cri)
            cri.start()
            client = CRI("kubelab-cri", cri.socket, names, cgroup_base=f"kubelab-e2e-{n.name}")
            clients.append(client)
            pods.append(Pods(client, tmp_path / f"logs-{n.name}"))
        yield nodes, net, pods
    finally:
        for p in pods:
            p.cleanup()
        for c in clients:
            c.close()
        for p in procs:
            p.stop()
        net.down()
        for n in nodes:
            cgroups.remove(f"/kubelab-e2e-{n.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        left = net.leftovers()
        assert not left, f"lab network left behind: {left}"


def _ip(pods: Pods, sid: str) -> str:
    return pods.cri.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip


def test_pods_reach_each_other_across_nodes_without_nat(lab_nodes):
    nodes, net, (p1, p2) = lab_nodes
    sid1, sc1 = p1.run_sandbox()
    web = p1.container_config("nginx", "nginx")
    p1.start(sid1, sc1, web)
    sid2, sc2 = p2.run_sandbox()
    client = p2.start(sid2, sc2, p2.container_config("client", "busybox", ["sleep", "3600"]))
    ip1, ip2 = _ip(p1, sid1), _ip(p2, sid2)
    assert ip1.startswith("10.244.1.") and ip2.startswith("10.244.2.")

    # pod on node2 -> pod on node1, across the lab bridge
    deadline = time.monotonic() + 15
    while True:
        r = p2.cri.rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["wget", "-qO-", f"http://{ip1}/"],
                                                  timeout=10))
        if r.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.exit_code == 0, r.stderr
    assert b"nginx" in r.stdout.lower()
    # nginx saw the client pod's own address: no NAT between pods
    log = p1.log_file(sc1, web).read_text()
    assert f"stdout F {ip2} - -" in log, log[-500:]

    # the host reaches pods on every node
    with urllib.request.urlopen(f"http://{ip1}/", timeout=5) as resp:
        assert resp.status == 200
    # and a node's own address answers from the other node (ICMP through the lab bridge)
    r = p2.cri.rt.ExecSync(pb.ExecSyncRequest(container_id=client, cmd=["ping", "-c", "1", "-W", "2",
                                                                         nodes[0].ip], timeout=10))
    assert r.exit_code == 0, r.stdout + r.stderr
