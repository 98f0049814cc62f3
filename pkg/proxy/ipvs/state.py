"""What the IPVS proxier wants the kernel to hold, as a pure function of the service ports and their
endpoints (upstream's syncProxyRules in pkg/proxy/ipvs, read for its behaviour):

- a virtual server per ClusterIP:port, per external IP:port, per load balancer ingress IP:port and
  per node IP:nodePort, with the configured scheduler (persistence with the affinity timeout for
  ClientIP affinity, the source-hash flag for "mh"), whose real servers are the endpoints the
  traffic policy selects (Local: the node's own, falling back to all when it has none), weight 1;
- every ClusterIP (and every external / LB IP not already a node address) bound to kube-ipvs0, and
  listed in KUBE-IPVS-IPS;
- the ipset entries (KUBE-CLUSTER-IP, KUBE-LOOP-BACK for hairpin, node ports, external and load
  balancer IPs, source ranges);
- the iptables rules matching those sets (rules_text).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..iptables.rules import JumpRule
from ..servicechange import Endpoint, ServicePort, ServicePortName
from ..topology import categorize_endpoints
from . import ipsets as S

DUMMY_DEVICE = "kube-ipvs0"
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos")
FLAG_PERSISTENT = 0x1
FLAG_HASHED = 0x2
FLAG_SOURCE_HASH = 0x10          # IP_VS_SVC_F_SCHED2: "mh" hashes the source port too (upstream sets it for mh)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_NODE_PORT = "KUBE-NODE-PORT"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_IPVS_OUT_FILTER = "KUBE-IPVS-OUT-FILTER"

NAT_CHAINS = (KUBE_SERVICES, KUBE_POSTROUTING, KUBE_NODE_PORT, KUBE_LOAD_BALANCER, KUBE_MARK_MASQ)
FILTER_CHAINS = (KUBE_FORWARD, KUBE_NODE_PORT, KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, KUBE_IPVS_FILTER,
                 KUBE_IPVS_OUT_FILTER)

JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", KUBE_NODE_PORT, "kubernetes health check rules"),
    JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    JumpRule("filter", "INPUT", KUBE_IPVS_FILTER, "kubernetes ipvs access filter"),
    JumpRule("filter", "OUTPUT", KUBE_IPVS_OUT_FILTER, "kubernetes ipvs access filter"),
)

# (set, table, from chain, target, match type, protocol match) in upstream's order; a rule is
# written only when its set has entries. Local node port sets come before the masquerading ones.
SET_RULES = (
    (S.LOOP_BACK, "nat", KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (S.LOAD_BALANCER, "nat", KUBE_SERVICES, KUBE_LOAD_BALANCER, "dst,dst", ""),
    (S.LOAD_BALANCER_LOCAL, "nat", KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (S.NODE_PORT_LOCAL_TCP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (S.NODE_PORT_TCP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "tcp"),
    (S.NODE_PORT_LOCAL_UDP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (S.NODE_PORT_UDP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "udp"),
    (S.NODE_PORT_LOCAL_SCTP, "nat", KUBE_NODE_PORT, "RETURN", "dst,dst", "sctp"),
    (S.NODE_PORT_SCTP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst,dst", "sctp"),
    (S.LOAD_BALANCER_FW, "filter", KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, "dst,dst", ""),
    (S.LOAD_BALANCER_SOURCE_CIDR, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
    (S.LOAD_BALANCER_SOURCE_IP, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
)


@dataclass(frozen=True)
class IPVSConfig:
    scheduler: str = "rr"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    cluster_cidr: str | None = None
    node_ip: str | None = None
    random_fully: bool = True

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(frozen=True)
class VirtualServer:
    address: str
    port: int
    protocol: str               # TCP, UDP, SCTP
    scheduler: str = "rr"
    flags: int = 0
    timeout: int = 0            # persistence timeout (s), with FLAG_PERSISTENT

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.address, self.port)

    def __str__(self) -> str:
        return f"{self.address}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class RealServer:
    address: str
    port: int
    weight: int = 1

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass
class DesiredState:
    services: dict[tuple[str, str, int], VirtualServer] = field(default_factory=dict)
    dests: dict[tuple[str, str, int], dict[tuple[str, int], RealServer]] = field(default_factory=dict)
    bind_addrs: set[str] = field(default_factory=set)
    sets: S.SetEntries = field(default_factory=S.SetEntries)
    lb_no_node_access: list[tuple[str, str, int]] = field(default_factory=list)   # (ip, proto, port)


def _selected(endpoints: list[Endpoint], sp: ServicePort, only_local: bool) -> list[Endpoint]:
    cat = categorize_endpoints(endpoints, sp)
    if only_local:
        return cat.local or cat.cluster or [e for e in endpoints if e.ready]
    return cat.cluster if sp.uses_cluster_endpoints else [e for e in endpoints if e.ready]


def build(svc_map: Mapping[ServicePortName, ServicePort], ep_map: Mapping[ServicePortName, list[Endpoint]],
          cfg: IPVSConfig, node_ips: Sequence[str] = (), local_addrs: set[str] | frozenset[str] = frozenset()
          ) -> DesiredState:
    """node_ips: the addresses NodePorts listen on; local_addrs: the node's own addresses (not on
    kube-ipvs0), which external/LB IPs must not be bound to kube-ipvs0 again."""
    st = DesiredState()
    flags = FLAG_SOURCE_HASH if cfg.scheduler == "mh" else 0

    def vs(addr: str, port: int, sp: ServicePort) -> VirtualServer:
        f, timeout = flags, 0
        if sp.session_affinity_client_ip:
            f |= FLAG_PERSISTENT
            timeout = sp.sticky_max_age_seconds
        return VirtualServer(addr, port, sp.protocol, cfg.scheduler, f, timeout)

    def add(v: VirtualServer, eps: list[Endpoint]) -> None:
        st.services[v.key] = v
        st.dests[v.key] = {(e.ip, e.port): RealServer(e.ip, e.port, 1) for e in eps}

    for name in sorted(svc_map):
        sp = svc_map[name]
        proto = sp.protocol.lower()
        endpoints = list(ep_map.get(name, ()))
        for e in endpoints:
            if e.is_local and e.ip and e.port:
                st.sets.add(S.LOOP_BACK, f"{e.ip},{proto}:{e.port},{e.ip}")
        entry = S.ip_port(sp.cluster_ip, proto, sp.port)
        st.sets.add(S.CLUSTER_IP, entry)
        add(vs(sp.cluster_ip, sp.port, sp), _selected(endpoints, sp, sp.internal_policy_local))
        st.bind_addrs.add(sp.cluster_ip)
        external = _selected(endpoints, sp, sp.external_policy_local)
        for ip in sp.external_ips:
            st.sets.add(S.EXTERNAL_IP_LOCAL if sp.external_policy_local else S.EXTERNAL_IP, S.ip_port(ip, proto, sp.port))
            add(vs(ip, sp.port, sp), external)
            if ip not in local_addrs:
                st.bind_addrs.add(ip)
        for ip in sp.load_balancer_vips:
            e = S.ip_port(ip, proto, sp.port)
            st.sets.add(S.LOAD_BALANCER, e)
            if sp.external_policy_local:
                st.sets.add(S.LOAD_BALANCER_LOCAL, e)
            if sp.load_balancer_source_ranges:
                st.sets.add(S.LOAD_BALANCER_FW, e)
                allow_node = False
                for cidr in sp.load_balancer_source_ranges:
                    st.sets.add(S.LOAD_BALANCER_SOURCE_CIDR, f"{e},{cidr}")
                    if cfg.node_ip and ipaddress.ip_address(cfg.node_ip) in ipaddress.ip_network(cidr, strict=False):
                        allow_node = True
                if allow_node:
                    st.sets.add(S.LOAD_BALANCER_SOURCE_IP, f"{e},{ip}")
                else:
                    st.lb_no_node_access.append((ip, proto, sp.port))
            add(vs(ip, sp.port, sp), external)
            if ip not in local_addrs:
                st.bind_addrs.add(ip)
        if sp.node_port and node_ips:
            if proto == "sctp":
                for ip in node_ips:
                    st.sets.add(S.NODE_PORT_SCTP, S.ip_port(ip, proto, sp.node_port))
                    if sp.external_policy_local:
                        st.sets.add(S.NODE_PORT_LOCAL_SCTP, S.ip_port(ip, proto, sp.node_port))
            else:
                st.sets.add(S.NODE_PORT_TCP if proto == "tcp" else S.NODE_PORT_UDP, str(sp.node_port))
                if sp.external_policy_local:
                    st.sets.add(S.NODE_PORT_LOCAL_TCP if proto == "tcp" else S.NODE_PORT_LOCAL_UDP, str(sp.node_port))
            for ip in node_ips:
                add(vs(ip, sp.node_port, sp), external)
        if sp.health_check_node_port:
            st.sets.add(S.HEALTH_CHECK_NODE_PORT, str(sp.health_check_node_port))
    for ip in st.bind_addrs:
        st.sets.add(S.IPVS_IPS, ip)
    return st


def _comment(name: str) -> str:
    return f'"{S.BY_NAME[name].comment}"'


def rules_text(st: DesiredState, cfg: IPVSConfig) -> str:
    """iptables-restore input (--noflush) for both tables: our chains, flushed and rewritten."""
    sets = st.sets
    nat: list[str] = [f"-A {KUBE_SERVICES} -s 127.0.0.0/8 -j RETURN"]
    filt: list[str] = []
    for name, table, src, dst, match, proto in SET_RULES:
        if sets.empty(name):
            continue
        p = f" -p {proto}" if proto else ""
        (nat if table == "nat" else filt).append(
            f"-A {src}{p} -m comment --comment {_comment(name)} -m set --match-set {name} {match} -j {dst}")
    if not sets.empty(S.CLUSTER_IP):
        head = f"-A {KUBE_SERVICES} -m comment --comment {_comment(S.CLUSTER_IP)} -m set --match-set {S.CLUSTER_IP}"
        if cfg.masquerade_all:
            nat.append(f"{head} dst,dst -j {KUBE_MARK_MASQ}")
        elif cfg.cluster_cidr:
            nat.append(f"{head} dst,dst ! -s {cfg.cluster_cidr} -j {KUBE_MARK_MASQ}")
        else:
            nat.append(f"{head} src,dst -j {KUBE_MARK_MASQ}")

    def external_rules(head: str) -> None:
        nat.append(f"{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"{head} -m addrtype --dst-type LOCAL -j ACCEPT")

    if not sets.empty(S.EXTERNAL_IP):
        head = f"-A {KUBE_SERVICES} -m comment --comment {_comment(S.EXTERNAL_IP)} -m set --match-set {S.EXTERNAL_IP} dst,dst"
        nat.append(f"{head} -j {KUBE_MARK_MASQ}")
        external_rules(head)
    if not sets.empty(S.EXTERNAL_IP_LOCAL):
        external_rules(f"-A {KUBE_SERVICES} -m comment --comment {_comment(S.EXTERNAL_IP_LOCAL)} "
                       f"-m set --match-set {S.EXTERNAL_IP_LOCAL} dst,dst")
    nat.append(f"-A {KUBE_SERVICES} -m addrtype --dst-type LOCAL -j {KUBE_NODE_PORT}")
    nat.append(f"-A {KUBE_LOAD_BALANCER} -j {KUBE_MARK_MASQ}")
    filt.append(f"-A {KUBE_SOURCE_RANGES_FIREWALL} -j DROP")
    for ip, proto, port in st.lb_no_node_access:
        filt.append(f"-A {KUBE_IPVS_OUT_FILTER} -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP")
    for name in (S.CLUSTER_IP, S.LOAD_BALANCER):        # accept IPVS traffic: last in KUBE-SERVICES
        if not sets.empty(name):
            nat.append(f"-A {KUBE_SERVICES} -m set --match-set {name} dst,dst -j ACCEPT")
    mark = cfg.mark
    filt.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filt.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                f"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    filt.append(f"-A {KUBE_NODE_PORT} -m comment --comment {_comment(S.HEALTH_CHECK_NODE_PORT)} "
                f"-m set --match-set {S.HEALTH_CHECK_NODE_PORT} dst -j ACCEPT")
    for name, match in ((S.LOAD_BALANCER, "dst,dst"), (S.CLUSTER_IP, "dst,dst"), (S.EXTERNAL_IP, "dst,dst"),
                        (S.EXTERNAL_IP_LOCAL, "dst,dst"), (S.HEALTH_CHECK_NODE_PORT, "dst")):
        filt.append(f"-A {KUBE_IPVS_FILTER} -m set --match-set {name} {match} -j RETURN")
    filt.append(f"-A {KUBE_IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {S.IPVS_IPS} dst -j REJECT")
    masq = f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    if cfg.random_fully:
        masq += " --random-fully"
    nat += [f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
            f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}", masq,
            f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"]
    lines = ["*filter"] + [f":{c} - [0:0]" for c in FILTER_CHAINS] + filt + ["COMMIT",
             "*nat"] + [f":{c} - [0:0]" for c in NAT_CHAINS] + nat + ["COMMIT"]
    return "\n".join(lines) + "\n"
