"""Services and EndpointSlices -> the proxier's service-port and endpoint maps, with change tracking.

Follows upstream's pkg/proxy: informer events are recorded as pending changes per Service
(namespace/name); a sync checks them out and applies them to the maps, learning which Services
changed (for partial syncs), which UDP endpoints and service ports went away and which UDP
services gained their first endpoint (for conntrack cleanup).

Chain names are computed here once per service port and endpoint, as upstream does:
    KUBE-SVC-/SVL-/EXT-/FW- + base32(sha256(<ns>/<name>[:<port>] + <protocol lower-case>))[:16]
    KUBE-SEP- + base32(sha256(<ns>/<name>[:<port>] + <protocol lower-case> + <ip>:<port>))[:16]
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, NamedTuple
from kubelab.api.timefmt import parse_time

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
# kube-proxy watches only Services and EndpointSlices without these labels
INFORMER_LABEL_SELECTOR = f"!{SERVICE_PROXY_NAME_LABEL},!{HEADLESS_LABEL}"

DEFAULT_STICKY_SECONDS = 10800

SVC_PREFIX = "KUBE-SVC-"
SVL_PREFIX = "KUBE-SVL-"
EXT_PREFIX = "KUBE-EXT-"
FW_PREFIX = "KUBE-FW-"
SEP_PREFIX = "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX)


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]


def _hash16(text: str) -> str:
    """The first 16 characters of base32(sha256(text)): base32 of the digest's first 10 bytes
    (the same as base64.b32encode, which is slow in pure Python, two characters at a time)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _B32_PAIRS
    return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """Upstream's portProtoHash: 16 base32 characters of sha256(name + protocol)."""
    return _hash16(service_port_name + protocol)


@lru_cache(maxsize=200_000)
def endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-<16> for one endpoint ("ip:port") of a service port; protocol lower-case."""
    return SEP_PREFIX + _hash16(service_port_name + protocol + endpoint)


def is_service_chain(name: str) -> bool:
    """True for chains kube-proxy creates per service or endpoint (and may delete)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)


class ServicePortName(NamedTuple):
    """One port of one Service. str() is upstream's ServicePortName.String(): ns/name[:port]."""
    namespace: str
    name: str
    port: str
    protocol: str

    @property
    def service(self) -> str:
        """The Service's namespace/name."""
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}" if self.port else f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """What the proxier needs of one service port (upstream's BaseServicePortInfo + chain names)."""
    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str                      # TCP, UDP, SCTP
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_vips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = DEFAULT_STICKY_SECONDS
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    name_string: str = field(default="", compare=False)
    cluster_chain: str = field(default="", compare=False)
    local_chain: str = field(default="", compare=False)
    external_chain: str = field(default="", compare=False)
    firewall_chain: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        ns = str(self.name)
        base = port_proto_hash(ns, self.protocol.lower())
        object.__setattr__(self, "name_string", ns)
        object.__setattr__(self, "cluster_chain", SVC_PREFIX + base)
        object.__setattr__(self, "local_chain", SVL_PREFIX + base)
        object.__setattr__(self, "external_chain", EXT_PREFIX + base)
        object.__setattr__(self, "firewall_chain", FW_PREFIX + base)

    @property
    def externally_accessible(self) -> bool:
        return bool(self.node_port or self.load_balancer_vips or self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        # Cluster endpoints also serve the short-circuit of external traffic from this node
        return (not self.internal_policy_local) or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


class Endpoint(NamedTuple):
    """One endpoint of one service port (upstream's BaseEndpointInfo + its KUBE-SEP chain)."""
    ip: str
    port: int
    is_local: bool
    ready: bool
    serving: bool
    terminating: bool
    chain: str = ""

    @property
    def string(self) -> str:
        """"ip:port" (upstream's Endpoint.String())."""
        return f"{self.ip}:{self.port}"


ServicePortMap = dict[ServicePortName, ServicePort]
EndpointsMap = dict[ServicePortName, list[Endpoint]]


def _ipv4(s: Any) -> str | None:
    try:
        ip = ipaddress.ip_address(str(s).strip())
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


def _ipv4_cidr(s: Any) -> str | None:
    try:
        net = ipaddress.ip_network(str(s).strip(), strict=False)
    except ValueError:
        return None
    return str(net) if net.version == 4 else None


def service_ports(svc: Obj | None) -> ServicePortMap:
    """The proxied ports of a Service (empty for headless, ExternalName, IPv6-only Services)."""
    if not svc:
        return {}
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return {}
    cluster_ip = None
    for ip in (spec.get("clusterIPs") or []) or [spec.get("clusterIP")]:
        if ip and ip != "None":
            cluster_ip = _ipv4(ip)
            if cluster_ip:
                break
    if not cluster_ip:
        return {}
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    stype = spec.get("type") or "ClusterIP"
    external_ips = tuple(x for x in (_ipv4(ip) for ip in spec.get("externalIPs") or []) if x)
    accessible = stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and bool(external_ips))
    ext_local = accessible and spec.get("externalTrafficPolicy") in ("Local", "OnlyLocal")
    int_local = spec.get("internalTrafficPolicy") == "Local"
    affinity = spec.get("sessionAffinity") == "ClientIP"
    sticky = DEFAULT_STICKY_SECONDS
    if affinity:
        t = (((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds"))
        if isinstance(t, int) and t > 0:
            sticky = t
    lb_vips = []
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if not isinstance(ing, dict) or ing.get("ipMode") == "Proxy":
            continue
        ip = _ipv4(ing.get("ip") or "")
        if ip:
            lb_vips.append(ip)
    ranges = tuple(x for x in (_ipv4_cidr(r) for r in spec.get("loadBalancerSourceRanges") or []) if x)
    hc = int(spec.get("healthCheckNodePort") or 0) if ext_local and stype == "LoadBalancer" else 0
    out: ServicePortMap = {}
    for p in spec.get("ports") or []:
        if not isinstance(p, dict) or not p.get("port"):
            continue
        proto = str(p.get("protocol") or "TCP").upper()
        spn = ServicePortName(ns, name, p.get("name") or "", proto)
        out[spn] = ServicePort(
            name=spn, cluster_ip=cluster_ip, port=int(p["port"]), protocol=proto,
            node_port=int(p.get("nodePort") or 0),
            external_ips=external_ips, load_balancer_vips=tuple(lb_vips), load_balancer_source_ranges=ranges,
            session_affinity_client_ip=affinity, sticky_max_age_seconds=sticky,
            external_policy_local=ext_local, internal_policy_local=int_local, health_check_node_port=hc)
    return out


# --- Services ------------------------------------------------------------------------------


@dataclass
class _ServiceChange:
    previous: ServicePortMap
    current: ServicePortMap


@dataclass
class ServiceUpdateResult:
    """What applying the Service changes did (upstream's UpdateServiceMapResult)."""
    updated_services: set[str] = field(default_factory=set)              # namespace/name
    deleted_udp_ports: list[ServicePort] = field(default_factory=list)


def _meta_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


class ServiceChangeTracker:
    """Accumulates Service changes between syncs: for each Service, its ports as last applied
    (previous) and as now (current)."""

    def __init__(self) -> None:
        self._items: dict[str, _ServiceChange] = {}
        self._applied: dict[str, ServicePortMap] = {}
        self.total_changes = 0

    def update(self, old: Obj | None, new: Obj | None) -> bool:
        """Record an add (old None), update or delete (new None). Returns whether anything is
        pending."""
        obj = new if new is not None else old
        if obj is None:
            return bool(self._items)
        key = _meta_key(obj)
        self.total_changes += 1
        change = self._items.get(key)
        if change is None:
            change = _ServiceChange(previous=self._applied.get(key, {}), current={})
            self._items[key] = change
        change.current = service_ports(new)
        if change.current == change.previous:
            del self._items[key]
        return bool(self._items)

    @property
    def pending(self) -> int:
        return len(self._items)

    def checkout(self) -> dict[str, _ServiceChange]:
        """The pending changes; they count as applied from now on."""
        items, self._items = self._items, {}
        for key, ch in items.items():
            if ch.current:
                self._applied[key] = ch.current
            else:
                self._applied.pop(key, None)
        return items


def apply_service_changes(svc_map: ServicePortMap, changes: dict[str, _ServiceChange]) -> ServiceUpdateResult:
    """Apply checked-out Service changes to svc_map in place."""
    result = ServiceUpdateResult()
    for key, ch in changes.items():
        result.updated_services.add(key)
        svc_map.update(ch.current)
        for spn, sp in ch.previous.items():
            if spn in ch.current:
                continue
            if svc_map.pop(spn, None) is not None and sp.protocol == "UDP":
                result.deleted_udp_ports.append(sp)
    return result


# --- EndpointSlices ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SliceData:
    """The parts of an EndpointSlice the proxier uses: ((port name, protocol, port), ...) and
    ((ip, node name, ready, serving, terminating), ...)."""
    ports: tuple[tuple[str, str, int], ...]
    endpoints: tuple[tuple[str, str, bool, bool, bool], ...]
    trigger_time: float | None = field(default=None, compare=False)




def _slice_data(es: Obj) -> _SliceData | None:
    if es.get("addressType", "IPv4") != "IPv4":
        return None
    ports = []
    for p in es.get("ports") or []:
        if not isinstance(p, dict) or p.get("name") is None or not p.get("port"):
            continue  # upstream ignores ports with a nil name or port ("all ports" is not handled)
        ports.append((str(p["name"]), str(p.get("protocol") or "TCP").upper(), int(p["port"])))
    eps = []
    for e in es.get("endpoints") or []:
        addrs = (e or {}).get("addresses") or []
        if not addrs:
            continue
        ip = _ipv4(addrs[0])
        if not ip:
            continue
        cond = e.get("conditions") or {}
        ready = cond.get("ready") is not False
        serving = cond.get("serving") is not False     # upstream: nil means serving
        terminating = cond.get("terminating") is True
        eps.append((ip, str(e.get("nodeName") or ""), ready, serving, terminating))
    trig = parse_time(((es.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION))
    return _SliceData(tuple(ports), tuple(eps), trig)


@dataclass
class _EndpointsChange:
    previous: EndpointsMap
    current: EndpointsMap


@dataclass
class EndpointsUpdateResult:
    """What applying the EndpointSlice changes did (upstream's UpdateEndpointsMapResult)."""
    updated_services: set[str] = field(default_factory=set)
    deleted_udp_endpoints: list[tuple[ServicePortName, str]] = field(default_factory=list)   # (port, "ip:port")
    newly_active_udp_services: list[ServicePortName] = field(default_factory=list)
    last_change_trigger_times: dict[str, list[float]] = field(default_factory=dict)


class EndpointsChangeTracker:
    """Upstream's EndpointSliceCache: per Service, the slices as applied by the last sync and the
    pending ones; endpoints merged across slices (an IP in two slices counts once, a
    non-terminating copy wins), sorted by "ip:port"."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self._applied: dict[str, dict[str, _SliceData]] = {}
        self._pending: dict[str, dict[str, _SliceData | None]] = {}
        self._trigger: dict[str, list[float]] = {}
        self.total_changes = 0

    def endpoint_slice_update(self, es: Obj, removed: bool = False) -> bool:
        """Record an EndpointSlice add/update (removed False) or delete. Returns whether anything
        is pending."""
        meta = es.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        ns, name = meta.get("namespace"), meta.get("name")
        if not svc or not ns or not name:
            log.debug("ignoring EndpointSlice %s/%s without the %s label", ns, name, SERVICE_NAME_LABEL)
            return bool(self._pending)
        key = f"{ns}/{svc}"
        data = None if removed else _slice_data(es)
        applied = self._applied.get(key, {}).get(name)
        pending = self._pending.get(key, {})
        if name in pending:
            changed = pending[name] != data
        else:
            changed = applied != data
        if changed:
            self.total_changes += 1
            self._pending.setdefault(key, {})[name] = data
            if data is not None and data.trigger_time is not None:
                self._trigger.setdefault(key, []).append(data.trigger_time)
        return bool(self._pending)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def checkout(self) -> tuple[dict[str, _EndpointsChange], dict[str, list[float]]]:
        """The pending changes (previous and current endpoints per Service) and the
        last-change-trigger-times seen; they count as applied from now on."""
        changes: dict[str, _EndpointsChange] = {}
        pending, self._pending = self._pending, {}
        triggers, self._trigger = self._trigger, {}
        for key, slices in pending.items():
            applied = self._applied.setdefault(key, {})
            previous = self._endpoints_map(key, applied)
            for name, data in slices.items():
                if data is None:
                    applied.pop(name, None)
                else:
                    applied[name] = data
            if not applied:
                del self._applied[key]
            current = self._endpoints_map(key, applied)
            changes[key] = _EndpointsChange(previous, current)
        return changes, triggers

    def _endpoints_map(self, key: str, slices: dict[str, _SliceData]) -> EndpointsMap:
        ns, _, svc = key.partition("/")
        by_port: dict[ServicePortName, dict[str, Endpoint]] = {}
        hostname = self.hostname
        for data in slices.values():
            for pname, proto, pnum in data.ports:
                spn = ServicePortName(ns, svc, pname, proto)
                sname = str(spn)
                lproto = proto.lower()
                eps = by_port.setdefault(spn, {})
                for ip, node, ready, serving, terminating in data.endpoints:
                    s = f"{ip}:{pnum}"
                    if s in eps and terminating:
                        continue
                    eps[s] = Endpoint(ip, pnum, bool(hostname) and node == hostname, ready, serving, terminating,
                                      endpoint_chain_name(sname, lproto, s))
        return {spn: [eps[s] for s in sorted(eps)] for spn, eps in by_port.items() if eps}


def apply_endpoint_changes(ep_map: EndpointsMap, changes: dict[str, _EndpointsChange],
                           triggers: dict[str, list[float]] | None = None) -> EndpointsUpdateResult:
    """Apply checked-out endpoint changes to ep_map in place; detect stale UDP conntrack state
    (upstream's detectStaleConntrackEntries)."""
    result = EndpointsUpdateResult(last_change_trigger_times=dict(triggers or {}))
    for key, ch in changes.items():
        result.updated_services.add(key)
        for spn in ch.previous:
            ep_map.pop(spn, None)
        ep_map.update(ch.current)
        _detect_stale(ch.previous, ch.current, result)
    return result


def _detect_stale(old: EndpointsMap, new: EndpointsMap, result: EndpointsUpdateResult) -> None:
    for spn, eps in old.items():
        if spn.protocol != "UDP":
            continue
        now = {e.string: e.serving for e in new.get(spn, ())}
        for e in eps:
            # an endpoint that was not serving got no traffic; one that went from serving to not
            # serving (or vanished) may own conntrack entries that must go
            if e.serving and now.get(e.string) is not True:
                result.deleted_udp_endpoints.append((spn, e.string))
    for spn, eps in new.items():
        if spn.protocol != "UDP":
            continue
        if any(e.serving for e in eps) and not any(e.serving for e in old.get(spn, ())):
            result.newly_active_udp_services.append(spn)


def services_of(names: Iterable[ServicePortName]) -> set[str]:
    """namespace/name of each service port."""
    return {n.service for n in names}
