"""Pure rule generation for the iptables proxier: service ports + endpoints -> iptables-restore text.

The chain layout, rule order, comments and matches are upstream kube-proxy's (pkg/proxy/iptables):

  nat     PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-* / KUBE-SVL-* (internal traffic)
                                             -> KUBE-EXT-* (external IPs, LB IPs) [-> KUBE-FW-*]
                                             -> KUBE-NODEPORTS -> KUBE-EXT-*   (last rule, dst LOCAL)
          KUBE-SVC-*/KUBE-SVL-* -> KUBE-SEP-* (statistic random 1/n; recent for ClientIP affinity)
          KUBE-SEP-* -> KUBE-MARK-MASQ (hairpin) + DNAT
          POSTROUTING -> KUBE-POSTROUTING (MASQUERADE what KUBE-MARK-MASQ marked)
  filter  KUBE-SERVICES (REJECT: no endpoints), KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS (health
          check ports), KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-FIREWALL (localnet protection)

Everything here is a function of its arguments; the proxier decides what to write when.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ..servicechange import Endpoint, ServicePort
from ..topology import categorize_endpoints

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"

# above this many endpoints, rules are written without per-endpoint comments (upstream: 40% less text)
LARGE_CLUSTER_ENDPOINTS = 1000

NODEPORTS_COMMENT = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


@dataclass(frozen=True)
class JumpRule:
    """A rule in a built-in chain jumping to one of ours (ensured outside iptables-restore)."""
    table: str
    src: str
    dst: str
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        a = list(self.extra)
        if self.comment:
            a += ["-m", "comment", "--comment", self.comment]
        return a + ["-j", self.dst]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)
# the kubelet's copy of the localnet protection, created only with localhost NodePorts
KUBELET_JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", "INPUT", KUBE_FIREWALL, ""),
    JumpRule("filter", "OUTPUT", KUBE_FIREWALL, ""),
)


@dataclass(frozen=True)
class RuleConfig:
    """Node-wide settings that shape the rules."""
    masquerade_bit: int = 14
    masquerade_all: bool = False
    cluster_cidr: str | None = None                 # the local-traffic detector (--cluster-cidr)
    node_ip: str | None = None
    nodeport_ips: tuple[str, ...] | None = None     # None: NodePorts on every local address
    localhost_nodeports: bool = True
    conntrack_tcp_liberal: bool = False
    random_fully: bool = True

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


@dataclass(slots=True)
class ServiceRules:
    """Everything one service port contributes: rules in shared chains and its own chains."""
    nat_services: list[str] = field(default_factory=list)
    nat_nodeports: list[str] = field(default_factory=list)
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    filter_nodeports: list[str] = field(default_factory=list)
    filter_firewall: list[str] = field(default_factory=list)
    nat_chains: dict[str, list[str]] = field(default_factory=dict)   # its own chains, in write order
    no_local_internal: bool = False
    no_local_external: bool = False
    nat_rule_count: int = 0            # rules in its own chains


_PROBABILITIES: list[str] = ["<bad value>"]


def probability(n: int) -> str:
    """1/n with ten decimals, as upstream writes it (0.3333333333 for n=3)."""
    while len(_PROBABILITIES) <= n:
        _PROBABILITIES.append(f"{1.0 / len(_PROBABILITIES):.10f}")
    return _PROBABILITIES[n]


def service_rules(svc: ServicePort, endpoints: Sequence[Endpoint], cfg: RuleConfig,
                  large_cluster: bool = False) -> ServiceRules:
    """The rules of one service port given all its endpoints (upstream syncProxyRules' loop body)."""
    out = ServiceRules()
    p = svc.protocol.lower()
    name = svc.name_string
    cat = categorize_endpoints(list(endpoints), svc)
    has_any = cat.has_any
    cluster_chain, local_chain = svc.cluster_chain, svc.local_chain
    uses_cluster_chain = bool(cat.cluster) and svc.uses_cluster_endpoints
    uses_local_chain = bool(cat.local) and svc.uses_local_endpoints

    internal_chain, has_internal = cluster_chain, has_any
    if svc.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(cat.local)
    external_policy_chain, has_external = cluster_chain, has_any
    if svc.external_policy_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(cat.local)
    ext_chain = svc.external_chain
    uses_ext_chain = has_any and svc.externally_accessible
    lb_chain = ext_chain
    fw_chain = svc.firewall_chain
    uses_fw = has_any and bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    if uses_fw:
        lb_chain = fw_chain

    int_target = int_comment = ext_target = ext_comment = ""
    if not has_any:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f'"{name} has no endpoints"'
    else:
        if not has_internal:
            int_target, int_comment = "DROP", f'"{name} has no local endpoints"'
            out.no_local_internal = True
        if not has_external:
            ext_target, ext_comment = "DROP", f'"{name} has no local endpoints"'
            out.no_local_external = True

    port = svc.port
    cip = svc.cluster_ip
    mp = f"-m {p} -p {p}"
    # capture the cluster IP
    if has_internal:
        out.nat_services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} cluster IP" {mp} '
                                f'-d {cip} --dport {port} -j {internal_chain}')
    else:
        out.filter_services.append(f"-A {KUBE_SERVICES} -m comment --comment {int_comment} {mp} "
                                   f"-d {cip} --dport {port} -j {int_target}")
    # external IPs
    for ip in svc.external_ips:
        if has_any:
            out.nat_services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} external IP" {mp} '
                                    f'-d {ip} --dport {port} -j {ext_chain}')
        if not has_external:
            out.filter_external.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {mp} "
                                       f"-d {ip} --dport {port} -j {ext_target}")
    # load-balancer ingress IPs
    for ip in svc.load_balancer_vips:
        if has_any:
            out.nat_services.append(f'-A {KUBE_SERVICES} -m comment --comment "{name} loadbalancer IP" {mp} '
                                    f'-d {ip} --dport {port} -j {lb_chain}')
        if uses_fw:
            out.filter_firewall.append(f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{name} traffic not '
                                       f'accepted by {fw_chain}" {mp} -d {ip} --dport {port} -j DROP')
    if not has_external:
        for ip in svc.load_balancer_vips:
            out.filter_external.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {mp} "
                                       f"-d {ip} --dport {port} -j {ext_target}")
    # node ports
    if svc.node_port:
        if has_any:
            out.nat_nodeports.append(f"-A {KUBE_NODEPORTS} -m comment --comment {name} {mp} "
                                     f"--dport {svc.node_port} -j {ext_chain}")
        if not has_external:
            out.filter_external.append(f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                       f"-m addrtype --dst-type LOCAL {mp} --dport {svc.node_port} "
                                       f"-j {ext_target}")
    if svc.health_check_node_port:
        out.filter_nodeports.append(f'-A {KUBE_NODEPORTS} -m comment --comment "{name} health check node port" '
                                    f"-m tcp -p tcp --dport {svc.health_check_node_port} -j ACCEPT")

    chains = out.nat_chains
    # internal traffic: masquerade off-cluster sources (or everything with --masquerade-all)
    internal_rules: list[str] = []
    if has_internal:
        head = f'-A {internal_chain} -m comment --comment "{name} cluster IP" {mp} -d {cip} --dport {port}'
        if cfg.masquerade_all:
            internal_rules.append(f"{head} -j {KUBE_MARK_MASQ}")
        elif cfg.cluster_cidr:
            internal_rules.append(f"{head} ! -s {cfg.cluster_cidr} -j {KUBE_MARK_MASQ}")

    if uses_ext_chain:
        rules: list[str] = []
        if not svc.external_policy_local:
            rules.append(f'-A {ext_chain} -m comment --comment "masquerade traffic for {name} external '
                         f'destinations" -j {KUBE_MARK_MASQ}')
        else:
            if cfg.cluster_cidr:
                rules.append(f'-A {ext_chain} -m comment --comment "pod traffic for {name} external destinations" '
                             f"-s {cfg.cluster_cidr} -j {cluster_chain}")
            rules.append(f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {name} external '
                         f'destinations" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}')
            rules.append(f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {name} external '
                         f'destinations" -m addrtype --src-type LOCAL -j {cluster_chain}')
        if has_external:
            rules.append(f"-A {ext_chain} -j {external_policy_chain}")
        chains[ext_chain] = rules

    if uses_fw:
        head = f'-A {fw_chain} -m comment --comment "{name} loadbalancer IP"'
        rules = [f"{head} -s {cidr} -j {ext_chain}" for cidr in svc.load_balancer_source_ranges]
        if cfg.node_ip and any(_in_cidr(cfg.node_ip, c) for c in svc.load_balancer_source_ranges):
            rules += [f"{head} -s {ip} -j {ext_chain}" for ip in svc.load_balancer_vips]
        rules.append(f'-A {fw_chain} -m comment --comment "other traffic to {name} will be dropped by '
                     f'{KUBE_PROXY_FIREWALL}"')
        chains[fw_chain] = rules

    if uses_cluster_chain:
        rules = internal_rules if internal_chain == cluster_chain else []
        chains[cluster_chain] = rules + _endpoint_rules(svc, cluster_chain, cat.cluster, large_cluster)
    if uses_local_chain:
        rules = internal_rules if internal_chain == local_chain else []
        chains[local_chain] = rules + _endpoint_rules(svc, local_chain, cat.local, large_cluster)

    # one chain per endpoint: hairpin masquerade, affinity bookkeeping, DNAT
    comment = "" if large_cluster else f" -m comment --comment {name}"
    recent = svc.session_affinity_client_ip
    for ep in cat.reachable:
        sep = ep.chain
        dnat = f"-A {sep}{comment}"
        if recent:
            dnat += f" -m recent --name {sep} --set"
        chains[sep] = [f"-A {sep}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}",
                       f"{dnat} {mp} -j DNAT --to-destination {ep.ip}:{ep.port}"]
    out.nat_rule_count = sum(len(r) for r in chains.values())
    return out


def _endpoint_rules(svc: ServicePort, chain: str, endpoints: Sequence[Endpoint], large: bool) -> list[str]:
    rules: list[str] = []
    name = svc.name_string
    if svc.session_affinity_client_ip:
        secs = svc.sticky_max_age_seconds
        for ep in endpoints:
            c = "" if large else f' -m comment --comment "{name} -> {ep.ip}:{ep.port}"'
            rules.append(f"-A {chain}{c} -m recent --name {ep.chain} --rcheck --seconds {secs} --reap -j {ep.chain}")
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        c = "" if large else f' -m comment --comment "{name} -> {ep.ip}:{ep.port}"'
        if i < n - 1:
            rules.append(f"-A {chain}{c} -m statistic --mode random --probability {probability(n - i)} -j {ep.chain}")
        else:
            rules.append(f"-A {chain}{c} -j {ep.chain}")
    return rules


def _in_cidr(ip: str, cidr: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def is_large_cluster(endpoint_counts: Iterable[int]) -> bool:
    """Upstream's largeClusterMode: more than 1000 endpoints over all service ports."""
    return sum(endpoint_counts) > LARGE_CLUSTER_ENDPOINTS


def top_level_chains(cfg: RuleConfig, services: Iterable[ServiceRules]) -> tuple[dict[str, list[str]],
                                                                                 dict[str, list[str]]]:
    """The shared chains of both tables, in declaration order, with every service's rules in them.

    Returns (filter chains, nat chains); nat holds KUBE-SERVICES, KUBE-NODEPORTS,
    KUBE-POSTROUTING and KUBE-MARK-MASQ."""
    mark = cfg.mark
    f_services: list[str] = []
    f_external: list[str] = []
    f_nodeports: list[str] = []
    f_firewall: list[str] = []
    n_services: list[str] = []
    n_nodeports: list[str] = []
    for s in services:
        if s.filter_services:
            f_services += s.filter_services
        if s.filter_external:
            f_external += s.filter_external
        if s.filter_nodeports:
            f_nodeports += s.filter_nodeports
        if s.filter_firewall:
            f_firewall += s.filter_firewall
        n_services += s.nat_services
        if s.nat_nodeports:
            n_nodeports += s.nat_nodeports
    forward = []
    if not cfg.conntrack_tcp_liberal:
        forward.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    forward.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                   f"-m mark --mark {mark}/{mark} -j ACCEPT")
    forward.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                   f"-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    filt: dict[str, list[str]] = {KUBE_SERVICES: f_services, KUBE_EXTERNAL_SERVICES: f_external,
                                  KUBE_FORWARD: forward, KUBE_NODEPORTS: f_nodeports, KUBE_PROXY_FIREWALL: f_firewall}
    if cfg.localhost_nodeports:
        filt[KUBE_FIREWALL] = [f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
                               f"-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT "
                               f"-j DROP"]
    if cfg.nodeport_ips is None:
        local = "" if cfg.localhost_nodeports else " ! -d 127.0.0.0/8"
        n_services.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_COMMENT} "
                          f"-m addrtype --dst-type LOCAL{local} -j {KUBE_NODEPORTS}")
    else:
        for ip in cfg.nodeport_ips:
            if ip.startswith("127.") and not cfg.localhost_nodeports:
                continue
            n_services.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_COMMENT} "
                              f"-d {ip} -j {KUBE_NODEPORTS}")
    masq = f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    if cfg.random_fully:
        masq += " --random-fully"
    nat = {KUBE_SERVICES: n_services, KUBE_NODEPORTS: n_nodeports,
           KUBE_POSTROUTING: [f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
                              f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}", masq],
           KUBE_MARK_MASQ: [f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"]}
    return filt, nat


# chains that service chains jump to: written first when the nat table is split into sections
NAT_HEAD = (KUBE_MARK_MASQ, KUBE_POSTROUTING)
# chains that jump to service chains: written last
NAT_TAIL = (KUBE_SERVICES, KUBE_NODEPORTS)


def jump_inserts(jumps: Iterable[JumpRule], table: str) -> list[str]:
    """iptables-restore lines putting jump rules at the top of their built-in chains (each one
    inserted before the previous, as upstream's EnsureRule(Prepend) calls do)."""
    out = []
    for j in jumps:
        if j.table == table:
            args = " ".join(f'"{a}"' if " " in a else a for a in j.args())
            out.append(f"-I {j.src} 1 {args}")
    return out


def render_table(table: str, chains: Mapping[str, Sequence[str]], deleted: Sequence[str] = (),
                 inserts: Sequence[str] = ()) -> list[str]:
    """One iptables-restore table section: chain lines (which create or flush), rules, deletions,
    then rule insertions into built-in chains."""
    lines = [f"*{table}"]
    lines += [f":{c} - [0:0]" for c in chains]
    lines += [f":{c} - [0:0]" for c in deleted]
    for rules in chains.values():
        lines += rules
    lines += [f"-X {c}" for c in deleted]
    lines += inserts
    lines.append("COMMIT")
    return lines


def render_nat(top: Mapping[str, Sequence[str]], groups: Sequence[Mapping[str, Sequence[str]]],
               deleted: Sequence[str] = (), max_section_chains: int | None = None,
               inserts: Sequence[str] = ()) -> list[str]:
    """The nat table: `top` (shared chains to write), `groups` (each service port's own chains to
    write) and chains to delete.

    One transaction unless it would declare more than max_section_chains chains: then it is
    split so that every transaction stays small (iptables-nft-restore's --noflush path is
    quadratic in the number of chains one transaction names). The order keeps every state in
    between consistent: KUBE-MARK-MASQ/KUBE-POSTROUTING first, then whole service ports (a
    KUBE-SVC chain and its KUBE-SEP chains always commit together, before anything jumps to
    them), then KUBE-SERVICES/KUBE-NODEPORTS with the deletion of stale chains."""
    total = len(top) + sum(len(g) for g in groups) + len(deleted)
    if max_section_chains is None or total <= max_section_chains:
        merged: dict[str, Sequence[str]] = {c: top[c] for c in NAT_TAIL if c in top}
        merged.update((c, r) for c, r in top.items() if c not in merged)
        for g in groups:
            merged.update(g)
        return render_table("nat", merged, deleted, inserts)
    lines: list[str] = []
    head = {c: top[c] for c in NAT_HEAD if c in top}
    if head:
        lines += render_table("nat", head)
    section: dict[str, Sequence[str]] = {}
    for g in groups:
        if section and len(section) + len(g) > max_section_chains:
            lines += render_table("nat", section)
            section = {}
        section.update(g)
    if section:
        lines += render_table("nat", section)
    tail = {c: r for c, r in top.items() if c not in head}
    if tail or deleted or inserts:
        lines += render_table("nat", tail, deleted, inserts)
    return lines


def restore_text(filter_chains: Mapping[str, Sequence[str]] | None, nat_lines: list[str],
                 filter_inserts: Sequence[str] = ()) -> str:
    """The whole iptables-restore input (filter first, as upstream)."""
    lines = render_table("filter", filter_chains, (), filter_inserts) if filter_chains else []
    lines += nat_lines
    lines.append("")
    return "\n".join(lines)
