"""The node's share of pod networking (host-gw), kept in step with Node objects:

- this node's CNI config, written from its spec.podCIDRs once the node IPAM controller has set
  them (the bridge plugin's conflist: pods on `cni0`, host-local IPAM over the pod CIDR, portmap
  for hostPorts), atomically and only when it changes;
- a route to every other node's pod CIDR via that node's InternalIP, tagged with our own routing
  protocol number so that routes we no longer want (a node gone, a CIDR or address changed) are
  found and removed while everybody else's are left alone.

    net = PodNetwork(factory, "node1", cni_conf_dir=Path("/etc/cni/net.d"))
    await net.run()          # until cancelled; repairs routes every resync_period as well

With node_name None it programs routes to every node's pod CIDR and writes no CNI config: how the
single-host lab's host reaches the pods. With netns (a /run/netns name or path) the routes go into
that network namespace instead of our own. Routes are written through the rtnetlink socket of
kubelab.cni.netlink from a worker thread.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from kubelab.client.informer import SharedInformerFactory

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RTPROT_KUBELAB = 0x6b       # rtnetlink protocol of the routes we own (rt_protos has no entry for it)
CONFLIST_NAME = "10-kubelab.conflist"


def node_internal_ip(node: Obj, version: int = 4) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            try:
                ip = ipaddress.ip_address(a.get("address", ""))
            except ValueError:
                continue
            if ip.version == version:
                return str(ip)
    return None


def node_pod_cidrs(node: Obj) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


def desired_routes(nodes: list[Obj], own: str | None) -> dict[str, str]:
    """{pod CIDR: gateway} for every node but `own` that has both a pod CIDR and an InternalIP of
    the CIDR's family."""
    out: dict[str, str] = {}
    for n in nodes:
        if n["metadata"]["name"] == own or (n["metadata"].get("deletionTimestamp")):
            continue
        for cidr in node_pod_cidrs(n):
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            gw = node_internal_ip(n, net.version)
            if gw:
                out[str(net)] = gw
    return out


def cni_conflist(pod_cidrs: list[str], *, plugin: str = "kubelab-bridge", bridge: str = "cni0",
                 mtu: int = 0, ipam_data_dir: str = "") -> Obj:
    ranges = [[{"subnet": str(ipaddress.ip_network(c, strict=False))}] for c in pod_cidrs]
    routes = [{"dst": "0.0.0.0/0" if ":" not in c else "::/0"} for c in pod_cidrs]
    bridge_conf: Obj = {"type": plugin, "bridge": bridge, "isGateway": True, "ipMasq": False,
                        "hairpinMode": True, "ipam": {"type": "host-local", "ranges": ranges, "routes": routes}}
    if mtu:
        bridge_conf["mtu"] = mtu
    if ipam_data_dir:       # several nodes on one host (the single-host lab) keep their leases apart
        bridge_conf["ipam"]["dataDir"] = ipam_data_dir
    return {"cniVersion": "1.0.0", "name": "kubelab", "plugins": [
        bridge_conf, {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}


def write_if_changed(path: Path, text: str) -> bool:
    """Replace path's content atomically if it differs; True if written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


class PodNetwork:
    def __init__(self, factory: SharedInformerFactory, node_name: str | None, *, cni_conf_dir: Path | None = None,
                 plugin: str = "kubelab-bridge", bridge: str = "cni0", mtu: int = 0, ipam_data_dir: str = "",
                 netns: str | None = None, resync_period: float = 30.0) -> None:
        self.nodes = factory.informer("v1", "nodes")
        self.node_name = node_name
        self.cni_conf_dir = cni_conf_dir
        self.plugin, self.bridge, self.mtu = plugin, bridge, mtu
        self.ipam_data_dir = ipam_data_dir
        self.netns = netns
        self.resync_period = resync_period
        self.routes: dict[str, str] = {}           # what the last sync left in the kernel
        self.pod_cidrs: list[str] = []
        self.syncs = 0
        self._kick = asyncio.Event()

    # -- the parts ---------------------------------------------------------------------------

    def write_cni_config(self) -> bool:
        """Write the CNI config from our Node's pod CIDRs (nothing until it has them)."""
        if self.node_name is None or self.cni_conf_dir is None:
            return False
        node = self.nodes.get(self.node_name)
        cidrs = node_pod_cidrs(node) if node else []
        if not cidrs:
            return False
        self.pod_cidrs = cidrs
        text = json.dumps(cni_conflist(cidrs, plugin=self.plugin, bridge=self.bridge, mtu=self.mtu,
                                       ipam_data_dir=self.ipam_data_dir), indent=2) + "\n"
        written = write_if_changed(self.cni_conf_dir / CONFLIST_NAME, text)
        if written:
            log.info("wrote CNI config path=%s podCIDRs=%s", self.cni_conf_dir / CONFLIST_NAME, ",".join(cidrs))
        return written

    async def sync_routes(self) -> tuple[int, int]:
        """Make our routes exactly the desired ones; (added or changed, removed)."""
        want = desired_routes(self.nodes.list(), self.node_name)
        changed, removed = await asyncio.to_thread(self._apply, want)
        self.routes = want
        self.syncs += 1
        if changed or removed:
            log.info("synced host-gw routes routes=%d changed=%d removed=%d", len(want), changed, removed)
        return changed, removed

    async def remove_routes(self) -> int:
        """Delete every route we own (for teardown)."""
        _, removed = await asyncio.to_thread(self._apply, {})
        self.routes = {}
        return removed

    def _rtnl(self):
        """A netlink socket in our namespace or the one named (opened on this worker thread, which
        enters the namespace only while the socket is made: a netlink socket stays bound to the
        namespace it was created in). Never pyroute2's netns support, which forks this process."""
        from kubelab.cni.netlink import RTNL, rtnl_in
        if not self.netns:
            return RTNL()
        path = self.netns if "/" in self.netns else f"/run/netns/{self.netns}"
        return rtnl_in(path)

    def _apply(self, want: dict[str, str]) -> tuple[int, int]:
        changed = removed = 0
        with self._rtnl() as rt:
            have: dict[str, tuple[int, str | None]] = {}
            for r in rt.routes():
                if r.proto == RTPROT_KUBELAB and r.table == 254 and r.dst:
                    have[f"{r.dst}/{r.dst_len}"] = (r.family, r.gateway)
            for dst, gw in want.items():
                if have.get(dst, (0, None))[1] == gw:
                    continue
                net = ipaddress.ip_network(dst)
                try:
                    rt.replace_route(socket.AF_INET if net.version == 4 else socket.AF_INET6,
                                     str(net.network_address), net.prefixlen, gw, RTPROT_KUBELAB)
                    changed += 1
                except OSError as e:  # e.g. the gateway is not on a connected network yet
                    log.warning("route to %s via %s not set: %s", dst, gw, e)
            for dst in have.keys() - want.keys():
                net = ipaddress.ip_network(dst)
                try:
                    rt.del_route(have[dst][0], str(net.network_address), net.prefixlen, RTPROT_KUBELAB)
                    removed += 1
                except OSError as e:
                    log.warning("stale route to %s not removed: %s", dst, e)
        return changed, removed

    # -- the loop ------------------------------------------------------------------------------

    def _changed(self, *_: Any) -> None:
        self._kick.set()

    async def run(self) -> None:
        self.nodes.add_event_handler(self._changed, self._changed, self._changed)
        if not await self.nodes.wait_for_sync():
            return
        while True:
            self._kick.clear()
            try:
                self.write_cni_config()
                await self.sync_routes()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("pod network sync failed (will retry): %s", e)
            try:
                async with asyncio.timeout(self.resync_period):
                    await self._kick.wait()
            except TimeoutError:
                pass
