"""The IPVS proxier's ipsets (upstream's names, types and comments) and `ipset restore` text.

Entries are written as upstream writes them (utilipset.Entry.String()):
  hash:ip,port     "10.96.0.1,tcp:443"
  hash:ip,port,ip  "10.244.1.5,tcp:8080,10.244.1.5"
  hash:ip,port,net "203.0.113.10,tcp:80,198.51.100.0/24"
  bitmap:port      "30080"
  hash:ip          "10.96.0.1"
"""
from __future__ import annotations

from dataclasses import dataclass, field

HASH_IP = "hash:ip"
HASH_IP_PORT = "hash:ip,port"
HASH_IP_PORT_IP = "hash:ip,port,ip"
HASH_IP_PORT_NET = "hash:ip,port,net"
BITMAP_PORT = "bitmap:port"

LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"


@dataclass(frozen=True)
class SetInfo:
    name: str
    type: str
    comment: str

    def create_line(self) -> str:
        """`create` as upstream's IPSet.String() with its defaults (hashsize 1024, maxelem 65536,
        bitmap range 0-65535), idempotent with -exist."""
        if self.type == BITMAP_PORT:
            spec = "range 0-65535"
        else:
            spec = "family inet hashsize 1024 maxelem 65536"
        return f"create {self.name} {self.type} {spec} comment -exist"


SETS: tuple[SetInfo, ...] = (
    SetInfo(LOOP_BACK, HASH_IP_PORT_IP, "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    SetInfo(CLUSTER_IP, HASH_IP_PORT, "Kubernetes service cluster ip + port for masquerade purpose"),
    SetInfo(EXTERNAL_IP, HASH_IP_PORT, "Kubernetes service external ip + port for masquerade and filter purpose"),
    SetInfo(EXTERNAL_IP_LOCAL, HASH_IP_PORT, "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER, HASH_IP_PORT, "Kubernetes service lb portal"),
    SetInfo(LOAD_BALANCER_FW, HASH_IP_PORT, "Kubernetes service load balancer ip + port for load balancer with "
                                            "sourceRange"),
    SetInfo(LOAD_BALANCER_LOCAL, HASH_IP_PORT, "Kubernetes service load balancer ip + port with "
                                               "externalTrafficPolicy=local"),
    SetInfo(LOAD_BALANCER_SOURCE_IP, HASH_IP_PORT_IP, "Kubernetes service load balancer ip + port + source IP for "
                                                      "packet filter purpose"),
    SetInfo(LOAD_BALANCER_SOURCE_CIDR, HASH_IP_PORT_NET, "Kubernetes service load balancer ip + port + source cidr "
                                                         "for packet filter purpose"),
    SetInfo(NODE_PORT_TCP, BITMAP_PORT, "Kubernetes nodeport TCP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_TCP, BITMAP_PORT, "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_UDP, BITMAP_PORT, "Kubernetes nodeport UDP port for masquerade purpose"),
    SetInfo(NODE_PORT_LOCAL_UDP, BITMAP_PORT, "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    SetInfo(NODE_PORT_SCTP, HASH_IP_PORT, "Kubernetes nodeport SCTP port for masquerade purpose with type "
                                          "'hash ip:port'"),
    SetInfo(NODE_PORT_LOCAL_SCTP, HASH_IP_PORT, "Kubernetes nodeport SCTP port with externalTrafficPolicy=local "
                                                "with type 'hash ip:port'"),
    SetInfo(HEALTH_CHECK_NODE_PORT, BITMAP_PORT, "Kubernetes health check node port"),
    SetInfo(IPVS_IPS, HASH_IP, "Addresses on the ipvs interface"),
)
BY_NAME = {s.name: s for s in SETS}


def ip_port(ip: str, proto: str, port: int) -> str:
    return f"{ip},{proto.lower()}:{port}"


@dataclass
class SetEntries:
    """Desired entries per set (every set of SETS present, maybe empty)."""
    entries: dict[str, set[str]] = field(default_factory=lambda: {s.name: set() for s in SETS})

    def add(self, name: str, entry: str) -> None:
        self.entries[name].add(entry)

    def empty(self, name: str) -> bool:
        return not self.entries[name]


def parse_save(text: str) -> dict[str, set[str]]:
    """`ipset save` output -> {set: entries} for the sets it lists (with or without entries)."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "create":
            out.setdefault(parts[1], set())
        elif len(parts) >= 3 and parts[0] == "add":
            out.setdefault(parts[1], set()).add(parts[2])
    return out


def restore_text(desired: SetEntries, existing: dict[str, set[str]]) -> str:
    """`ipset restore` input: create every set (-exist), delete entries no longer wanted, add the new."""
    lines = [s.create_line() for s in SETS]
    for s in SETS:
        want = desired.entries[s.name]
        have = existing.get(s.name, set())
        lines += [f"del {s.name} {e}" for e in sorted(have - want)]
        lines += [f"add {s.name} {e} -exist" for e in sorted(want - have)]
    return "\n".join(lines) + "\n"
