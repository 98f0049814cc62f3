"""Lab nodes as network namespaces on one host.

The lab network is a bridge (`kubelab0`, 192.168.56.1/24 on the host, as the Vagrant private
network) and each node is a network namespace plugged into it by a veth pair: its `eth0` holds
192.168.56.(10+index). A node's daemons run in its namespace (entered with `nsenter --net`, which
keeps the host's mount namespace, so the runtime's mounts outlive a restart of the runtime), with
their own state dirs. Pods hang off the node's own `cni0` with the node's pod CIDR
(10.244.<index>.0/24), and host-gw routes carry pod traffic: every node routes each other node's
pod CIDR via that node's address, and so does the host (tests and the user reach pods from it).

Everything made here is named after the lab, so teardown finds it all even after a crash.
"""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from kubelab.lab.runtimes import run_sync

LAB_BRIDGE = "kubelab0"
LAB_NET = ipaddress.ip_network("192.168.56.0/24")
HOST_IP = "192.168.56.1"
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")
NETNS_DIR = Path("/run/netns")


class NodeError(Exception):
    pass


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    res = run_sync(cmd, timeout=30, check=False)
    if check and res.returncode != 0:
        raise NodeError(f"{' '.join(cmd)}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode()


def _sysctl(key: str, value: str, netns: str | None = None) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    if netns is None:
        Path(path).write_text(value)
    else:
        run_sync(["nsenter", f"--net={NETNS_DIR / netns}", "sh", "-c", f"echo {value} > {path}"], timeout=10)


@dataclass(frozen=True)
class Node:
    name: str
    index: int                      # 1-based: node IP .10+index, pod CIDR 10.244.<index>.0/24

    @property
    def netns(self) -> str:
        return f"kubelab-{self.name}"

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    @property
    def ip(self) -> str:
        return str(LAB_NET.network_address + 10 + self.index)

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return list(CLUSTER_CIDR.subnets(new_prefix=24))[self.index]

    @property
    def host_veth(self) -> str:
        return f"kl-{self.name}"[:15]

    def nsenter(self) -> list[str]:
        """The prefix that runs a command in this node's network namespace."""
        return ["nsenter", f"--net={self.netns_path}"]

    def cni_conflist(self, bridge: str = "cni0", plugin: str = "bridge") -> dict:
        """The node's CNI config: its pods on its own bridge and pod CIDR, with portmap for hostPorts."""
        return {"cniVersion": "1.0.0", "name": "kubelab", "plugins": [
            {"type": plugin, "bridge": bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(self.pod_cidr)}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]}


class LabNetwork:
    """The lab bridge on the host and the nodes plugged into it."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def up(self, routes: bool = True) -> None:
        """Make the bridge and the nodes; with routes, the static host-gw routes of the nodes' fixed pod
        CIDRs (without: pod CIDRs come from the node IPAM controller and routes from each node's
        kubelab.kubelet.podnet)."""
        try:
            if not Path(f"/sys/class/net/{LAB_BRIDGE}").exists():
                _ip("link", "add", LAB_BRIDGE, "type", "bridge")
                _ip("addr", "add", f"{HOST_IP}/{LAB_NET.prefixlen}", "dev", LAB_BRIDGE)
            _ip("link", "set", LAB_BRIDGE, "up")
            _sysctl("net.ipv4.ip_forward", "1")
            for n in self.nodes:
                self._node_up(n)
            if routes:
                self.sync_routes()
        except Exception:
            self.down()
            raise

    def _node_up(self, n: Node) -> None:
        if not n.netns_path.exists():
            _ip("netns", "add", n.netns)
        if not Path(f"/sys/class/net/{n.host_veth}").exists():
            _ip("link", "add", n.host_veth, "type", "veth", "peer", "name", "eth0", "netns", n.netns)
        _ip("link", "set", n.host_veth, "master", LAB_BRIDGE, "up")
        if n.ip not in _ip("-o", "-4", "addr", "show", "dev", "eth0", netns=n.netns):
            _ip("addr", "add", f"{n.ip}/{LAB_NET.prefixlen}", "dev", "eth0", netns=n.netns)
        _ip("link", "set", "lo", "up", netns=n.netns)
        _ip("link", "set", "eth0", "up", netns=n.netns)
        _ip("route", "replace", "default", "via", HOST_IP, netns=n.netns)
        _sysctl("net.ipv4.ip_forward", "1", netns=n.netns)

    def sync_routes(self) -> None:
        """host-gw: each node (and the host) routes every other node's pod CIDR via that node."""
        for n in self.nodes:
            _ip("route", "replace", str(n.pod_cidr), "via", n.ip)
            for other in self.nodes:
                if other != n:
                    _ip("route", "replace", str(other.pod_cidr), "via", other.ip, netns=n.netns)

    def down(self) -> None:
        """Remove every node namespace, veth, route and the bridge this lab made (idempotent)."""
        for n in self.nodes:
            _ip("route", "del", str(n.pod_cidr), check=False)
            _ip("link", "del", n.host_veth, check=False)
            if n.netns_path.exists():
                _ip("netns", "del", n.netns, check=False)
        if Path(f"/sys/class/net/{LAB_BRIDGE}").exists():
            _ip("link", "del", LAB_BRIDGE, check=False)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this lab still exists (for leak checks)."""
        links = [n for n in os.listdir("/sys/class/net") if n == LAB_BRIDGE or n.startswith("kl-")]
        netns = [p.name for p in NETNS_DIR.glob("kubelab-*")] if NETNS_DIR.exists() else []
        routes = [r for r in _ip("-o", "route").splitlines() if "192.168.56." in r and "via" in r]
        return {k: v for k, v in (("links", links), ("netns", netns), ("routes", routes)) if v}


def write_cni_config(conf_dir: Path, node: Node, plugin: str = "bridge") -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "10-kubelab.conflist"
    path.write_text(json.dumps(node.cni_conflist(plugin=plugin), indent=2))
    return path
