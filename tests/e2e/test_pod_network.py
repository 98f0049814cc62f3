"""The node's host-gw routes and CNI config (kubelab.kubelet.podnet) in a real network namespace,
driven by real Node objects in the apiserver: routes follow nodes coming, changing address and
going; a route deleted by hand is back after the next resync; routes of others are left alone."""
from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest

from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import Client
from kubelab.kubelet.podnet import RTPROT_KUBELAB, PodNetwork

pytestmark = pytest.mark.e2e


def ip(*args: str, check: bool = True) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {r.stderr}")
    return r.stdout


def our_routes(ns: str) -> dict[str, str]:
    out = {}
    for line in ip("-n", ns, "-4", "route", "show", "proto", str(RTPROT_KUBELAB)).splitlines():
        parts = line.split()
        out[parts[0]] = parts[parts.index("via") + 1]
    return out


async def eventually(cond, timeout: float = 10.0, what: str = ""):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def netns():
    name = f"kpodnet-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", name)
    try:
        # an uplink (this kernel has no dummy links: a veth pair inside the namespace)
        ip("-n", name, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer")
        ip("-n", name, "addr", "add", "192.168.199.11/24", "dev", "uplink")
        ip("-n", name, "link", "set", "uplink-peer", "up")
        ip("-n", name, "link", "set", "uplink", "up")
        # somebody else's route, which must survive every sync
        ip("-n", name, "route", "add", "10.99.0.0/16", "via", "192.168.199.254")
        yield name
    finally:
        ip("netns", "del", name, check=False)
    assert name not in ip("netns", "list")


def node(name: str, cidr: str | None, addr: str) -> dict:
    n = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}
    if cidr:
        n["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    return n


async def set_address(c: Client, name: str, addr: str) -> None:
    await c.patch("v1", "nodes", None, name, {"status": {"addresses": [
        {"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}]}}, "merge",
        subresource="status")


async def test_routes_and_cni_config_follow_nodes(control_plane, netns, tmp_path):
    uid = uuid.uuid4().hex[:5]
    me, b, c_, d = (f"pn-{uid}-{x}" for x in "abcd")
    async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="podnet-test") as c:
        for name, cidr, addr in ((me, None, "192.168.199.11"), (b, "10.240.2.0/24", "192.168.199.12"),
                                 (c_, "10.240.3.0/24", "192.168.199.13")):
            await c.create("v1", "nodes", node(name, cidr, addr))
            await set_address(c, name, addr)
        factory = SharedInformerFactory(c)
        net = PodNetwork(factory, me, cni_conf_dir=tmp_path / "net.d", netns=netns, resync_period=0.5)
        factory.informer("v1", "nodes")
        factory.start()
        task = asyncio.create_task(net.run())
        try:
            await eventually(lambda: our_routes(netns) == {"10.240.2.0/24": "192.168.199.12",
                                                           "10.240.3.0/24": "192.168.199.13"}, what="routes")
            conf = tmp_path / "net.d" / "10-kubelab.conflist"
            assert not conf.exists(), "a CNI config was written before the node had a pod CIDR"

            # our node gets its CIDR (the node IPAM controller's job): the CNI config appears
            await c.patch("v1", "nodes", None, me, {"spec": {"podCIDR": "10.240.1.0/24",
                                                             "podCIDRs": ["10.240.1.0/24"]}})
            await eventually(conf.exists, what="CNI config")
            cfg = json.loads(conf.read_text())
            assert cfg["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.240.1.0/24"}]]
            assert cfg["plugins"][0]["type"] == "kubelab-bridge"
            assert "10.240.1.0/24" not in our_routes(netns), "a route to our own pod CIDR"

            # a node comes, one changes its address, one goes
            await c.create("v1", "nodes", node(d, "10.240.4.0/24", "192.168.199.14"))
            await set_address(c, d, "192.168.199.14")
            await set_address(c, c_, "192.168.199.23")
            await c.delete("v1", "nodes", None, b)
            await eventually(lambda: our_routes(netns) == {"10.240.3.0/24": "192.168.199.23",
                                                           "10.240.4.0/24": "192.168.199.14"},
                             what=f"routes after changes: {our_routes(netns)}")

            # deleted by hand: back after the next resync
            ip("-n", netns, "route", "del", "10.240.4.0/24")
            await eventually(lambda: "10.240.4.0/24" in our_routes(netns), timeout=5, what="route repaired")
            assert "10.99.0.0/16 via 192.168.199.254" in ip("-n", netns, "route")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            removed = await net.remove_routes()
            await factory.shutdown()
            for n in (me, b, c_, d):
                try:
                    await c.delete("v1", "nodes", None, n)
                except Exception:
                    pass
        assert removed == 2
        assert our_routes(netns) == {}
        assert "10.99.0.0/16 via 192.168.199.254" in ip("-n", netns, "route")
