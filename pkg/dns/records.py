"""The cluster zone: DNS records for Services, EndpointSlices and Pods, kept as ready RRsets.

    zone = Zone("cluster.local")
    zone.set_service(svc); zone.set_endpoint_slice(es); zone.set_pod(pod); zone.set_namespace(ns)
    changed = zone.commit()            # recompute what the updates touched; the (name, type) keys that changed
    ans = zone.lookup(qname, rdtype)   # an Answer, or None when the name is not ours (forward it)

Pure logic, no I/O. Record shapes follow the Kubernetes DNS specification (kubernetes/dns
docs/specification.md) and, where it is silent, CoreDNS's kubernetes plugin (the cluster DNS
kubeadm deploys):

* ClusterIP Service: `<svc>.<ns>.svc.<zone>` A/AAAA <cluster IPs>; PTR of each cluster IP.
* Headless Service (clusterIP None): `<svc>.<ns>.svc.<zone>` A/AAAA of every ready endpoint; a
  Service with no ready endpoint has no records (NXDOMAIN).
* Every ready endpoint of a Service: `<hostname>.<svc>.<ns>.svc.<zone>` A/AAAA and the PTR of its
  address pointing there. The hostname is the endpoint's `hostname`, else the hostname of the Pod
  its targetRef names when that Pod's `subdomain` is the Service's name (what the EndpointSlice
  controller would have copied), else the address with dots (or colons) as dashes, like CoreDNS.
* SRV: `_<port>._<proto>.<svc>.<ns>.svc.<zone>` for each named port, and the bare
  `<svc>.<ns>.svc.<zone>` SRV for all ports, as CoreDNS: priority 0, weight 100/n (at least 1);
  the target is the Service name (ClusterIP) or each endpoint's name (headless); the targets'
  A/AAAA records go to the additional section. Unnamed ports have no `_port._proto` name.
* ExternalName Service: `<svc>.<ns>.svc.<zone>` CNAME `<externalName>.`; other types asked at
  that name return the CNAME and the caller resolves the target (`Answer.chase`).
* Pods ("verified" mode, the default here): `<a-b-c-d>.<ns>.pod.<zone>` A (IPv6: colons as
  dashes, AAAA) for every pod IP of a pod that is not finished; "insecure" answers any well-formed
  name in an existing namespace without looking for the pod (CoreDNS `pods insecure`); "disabled"
  has no pod records. A pod IP no Service claims gets the PTR `<a-b-c-d>.<ns>.pod.<zone>`.
* PTR precedence for one address: a Service's cluster IP, else endpoint names, else the pod name.
* `dns-version.<zone>` TXT "1.1.0" (TTL 28800); the apex has SOA and NS `ns.dns.<zone>`, whose
  A/AAAA records are the cluster IPs of the cluster DNS Service (kube-system/kube-dns).
* Negative answers carry the zone's SOA in the authority section, as CoreDNS writes it:
  `<zone> <min(ttl,300)> SOA ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>`,
  the serial being the Unix time of the last change. A name that exists, or has names below it
  (an empty non-terminal, e.g. `<ns>.svc.<zone>` of an existing namespace or `_tcp.<svc>...`), is
  NODATA (NOERROR, no answer); any other name in the zone is NXDOMAIN. There are no wildcards.
* Names compare case-insensitively. Reverse names (in-addr.arpa, ip6.arpa) the cluster does not
  know are not ours: the server forwards them, like CoreDNS's `fallthrough in-addr.arpa ip6.arpa`.

Updates are incremental: set_*/delete_* only record what changed and which Services, Pods and
Namespaces are stale; commit() recomputes the records of those owners alone, diffs them against
what each owner contributed before and rebuilds just the (name, type) RRsets that differ.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[dns.name.Name, int]          # (owner name, rdtype); names are lower case

IN = dns.rdataclass.IN
TYPE_A = dns.rdatatype.A
TYPE_AAAA = dns.rdatatype.AAAA
TYPE_SRV = dns.rdatatype.SRV
TYPE_PTR = dns.rdatatype.PTR
TYPE_CNAME = dns.rdatatype.CNAME
TYPE_TXT = dns.rdatatype.TXT
TYPE_SOA = dns.rdatatype.SOA
TYPE_NS = dns.rdatatype.NS
TYPE_ANY = dns.rdatatype.ANY

DEFAULT_TTL = 5                          # CoreDNS kubernetes plugin `ttl` default
DNS_SCHEMA_VERSION = "1.1.0"
SCHEMA_TTL = 28800
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400
MAX_CNAME_CHAIN = 8

POD_MODES = ("verified", "insecure", "disabled")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
FINISHED_PHASES = ("Succeeded", "Failed")

# PTR precedence: the lowest class present for an address wins
PRIO_CLUSTER_IP, PRIO_ENDPOINT, PRIO_POD = 0, 1, 2

REVERSE_V4 = dns.name.from_text("in-addr.arpa.")
REVERSE_V6 = dns.name.from_text("ip6.arpa.")


@dataclass
class Answer:
    """What the zone says about one question. Empty `answer` with rcode NOERROR is NODATA.
    `chase`: the answer ends in a CNAME to a name outside the zone, which the caller resolves
    (upstream) and appends."""
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    chase: dns.name.Name | None = None


def _label(s: str) -> bytes:
    return s.lower().encode("ascii", "replace")


def dashed(ip: str) -> str:
    """The address as one DNS label: 10.0.0.1 -> 10-0-0-1, fd00::1 -> fd00--1."""
    return ip.replace(".", "-").replace(":", "-")


def _address_rdata(ip: str) -> dns.rdata.Rdata | None:
    """An A or AAAA rdata for a textual address; None when it is not an address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 4:
        return A(IN, TYPE_A, str(addr))
    return AAAA(IN, TYPE_AAAA, str(addr))


def _reverse(ip: str) -> dns.name.Name | None:
    """The in-addr.arpa / ip6.arpa name of an address."""
    try:
        ptr = ipaddress.ip_address(ip).reverse_pointer
    except ValueError:
        return None
    return dns.name.Name(tuple(label.encode("ascii") for label in ptr.split(".")) + (b"",))


def _rdata_sort_key(rd: dns.rdata.Rdata) -> bytes:
    return rd.to_digestable()


def _meta(obj: Obj) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _spec(obj: Obj) -> Obj:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


class Zone:
    """The records of one cluster domain, built from Kubernetes objects (see the module doc).

    `ttl`: the TTL of every record but dns-version (CoreDNS's default is 5 s).
    `pod_mode`: "verified", "insecure" or "disabled".
    `dns_service`: "namespace/name" of the Service whose cluster IPs are `ns.dns.<zone>`.
    `clock`: returns Unix time; the SOA serial is its value at the last change.
    """

    def __init__(self, domain: str = "cluster.local", *, ttl: int = DEFAULT_TTL, pod_mode: str = "verified",
                 dns_service: str = "kube-system/kube-dns", clock: Callable[[], float] = time.time) -> None:
        if pod_mode not in POD_MODES:
            raise ValueError(f"pod mode must be one of {', '.join(POD_MODES)}, not {pod_mode!r}")
        if ttl < 0 or ttl > 2**31 - 1:
            raise ValueError(f"ttl out of range: {ttl}")
        self.origin = dns.name.from_text(domain.strip(".") or ".").canonicalize()
        self.domain = self.origin.to_text(omit_final_dot=True)
        self.ttl = int(ttl)
        self.pod_mode = pod_mode
        ns, _, name = dns_service.partition("/")
        self.dns_service = (ns, name) if name else ("kube-system", ns)
        self._clock = clock
        self.serial = int(clock()) & 0xFFFFFFFF

        self._svc_name = dns.name.Name((b"svc",) + self.origin.labels)
        self._pod_name = dns.name.Name((b"pod",) + self.origin.labels)
        self._ns_dns = dns.name.Name((b"ns", b"dns") + self.origin.labels)
        self._hostmaster = dns.name.Name((b"hostmaster",) + self.origin.labels)
        self._version_name = dns.name.Name((b"dns-version",) + self.origin.labels)

        # the objects, as last seen
        self._services: dict[tuple[str, str], Obj] = {}
        self._slices: dict[tuple[str, str], Obj] = {}
        self._slice_service: dict[tuple[str, str], tuple[str, str]] = {}
        self._slices_by_service: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._pods: dict[tuple[str, str], Obj] = {}
        self._pods_by_subdomain: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._namespaces: set[str] = set()
        self._namespaces_changed = False

        # owners whose records must be recomputed at the next commit
        self._stale_services: set[tuple[str, str]] = set()
        self._stale_pods: set[tuple[str, str]] = set()

        # what each owner contributes: owner -> {key: (priority, rdatas)}
        self._owned: dict[tuple, dict[Key, tuple[int, frozenset]]] = {}
        # key -> {owner: (priority, rdatas)}
        self._contrib: dict[Key, dict[tuple, tuple[int, frozenset]]] = {}
        # the RRsets served, and how many RRsets each name (and each in-zone ancestor) has
        self._rrsets: dict[Key, dns.rrset.RRset] = {}
        self._name_refs: dict[dns.name.Name, int] = {}
        self._types: dict[dns.name.Name, set[int]] = {}

        self._put_static(self._version_name, TYPE_TXT, [TXT(IN, TYPE_TXT, [DNS_SCHEMA_VERSION.encode()])],
                         SCHEMA_TTL)
        self._put_static(self.origin, TYPE_NS, [NS(IN, TYPE_NS, self._ns_dns)], self.ttl)
        self._put_static(self.origin, TYPE_SOA, [self._soa_rdata()], min(self.ttl, 300))

    # -- inputs --------------------------------------------------------------------------------

    def set_service(self, svc: Obj) -> None:
        """Add or replace a Service."""
        key = self._key(svc)
        self._services[key] = svc
        self._stale_services.add(key)

    def delete_service(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if self._services.pop(key, None) is not None:
            self._stale_services.add(key)

    def set_endpoint_slice(self, es: Obj) -> None:
        """Add or replace an EndpointSlice (its Service: the kubernetes.io/service-name label)."""
        key = self._key(es)
        self._unlink_slice(key)
        self._slices[key] = es
        svc_name = (_meta(es).get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc_name:
            svc = (key[0], svc_name)
            self._slice_service[key] = svc
            self._slices_by_service.setdefault(svc, set()).add(key)
            self._stale_services.add(svc)

    def delete_endpoint_slice(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._unlink_slice(key)
        self._slices.pop(key, None)

    def set_pod(self, pod: Obj) -> None:
        key = self._key(pod)
        self._unlink_pod(key)
        self._pods[key] = pod
        spec = _spec(pod)
        if spec.get("hostname") and spec.get("subdomain"):
            sub = (key[0], str(spec["subdomain"]))
            self._pods_by_subdomain.setdefault(sub, set()).add(key)
            self._stale_services.add(sub)
        self._stale_pods.add(key)

    def delete_pod(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._unlink_pod(key)
        if self._pods.pop(key, None) is not None:
            self._stale_pods.add(key)

    def set_namespace(self, ns: Obj | str) -> None:
        name = ns if isinstance(ns, str) else str(_meta(ns).get("name") or "")
        if name and name not in self._namespaces:
            self._namespaces.add(name)
            self._namespaces_changed = True

    def delete_namespace(self, name: str) -> None:
        if name in self._namespaces:
            self._namespaces.discard(name)
            self._namespaces_changed = True

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        m = _meta(obj)
        return (str(m.get("namespace") or "default"), str(m.get("name") or ""))

    def _unlink_slice(self, key: tuple[str, str]) -> None:
        svc = self._slice_service.pop(key, None)
        if svc is not None:
            keys = self._slices_by_service.get(svc)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._slices_by_service[svc]
            self._stale_services.add(svc)

    def _unlink_pod(self, key: tuple[str, str]) -> None:
        old = self._pods.get(key)
        if old is None:
            return
        spec = _spec(old)
        if spec.get("hostname") and spec.get("subdomain"):
            sub = (key[0], str(spec["subdomain"]))
            keys = self._pods_by_subdomain.get(sub)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._pods_by_subdomain[sub]
            self._stale_services.add(sub)

    # -- commit --------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True when updates wait for commit()."""
        return bool(self._stale_services or self._stale_pods or self._namespaces_changed)

    def commit(self) -> set[Key]:
        """Recompute the stale owners; returns the keys whose RRset changed (appeared, went or
        differs). A change moves the SOA serial, so the apex SOA key is then among them."""
        touched: set[Key] = set()
        services, self._stale_services = self._stale_services, set()
        pods, self._stale_pods = self._stale_pods, set()
        for key in services:
            self._recompute(("svc",) + key, self._service_records, key, touched)
        if self.pod_mode == "disabled":
            pods = set()
        for key in pods:
            self._recompute(("pod",) + key, self._pod_records, key, touched)
        changed: set[Key] = set()
        for key in touched:
            if self._rebuild(key):
                changed.add(key)
        # a namespace coming or going turns NXDOMAIN into NODATA (and back) below it
        if changed or self._namespaces_changed:
            self._namespaces_changed = False
            if any(name == self._ns_dns for name, _ in changed):
                changed.add((self.origin, TYPE_NS))   # its additional section holds ns.dns
            serial = max(int(self._clock()) & 0xFFFFFFFF, self.serial)
            if serial != self.serial:
                self.serial = serial
                self._put_static(self.origin, TYPE_SOA, [self._soa_rdata()], min(self.ttl, 300))
            changed.add((self.origin, TYPE_SOA))
        return changed

    def _recompute(self, owner: tuple, compute: Callable[[tuple[str, str]], dict], key: tuple[str, str],
                   touched: set[Key]) -> None:
        try:
            records = compute(key)
        except Exception as e:  # noqa: BLE001 - one odd object must not stop the others (or the server)
            log.warning("%s %s/%s: cannot compute its records, keeping the previous ones: %s",
                        "service" if owner[0] == "svc" else "pod", key[0], key[1], e)
            return
        self._apply(owner, records, touched)

    def _apply(self, owner: tuple, new: dict[Key, tuple[int, frozenset]], touched: set[Key]) -> None:
        old = self._owned.get(owner, {})
        for key in old.keys() | new.keys():
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            contrib = self._contrib.setdefault(key, {})
            if after is None:
                contrib.pop(owner, None)
                if not contrib:
                    del self._contrib[key]
            else:
                contrib[owner] = after
            touched.add(key)
        if new:
            self._owned[owner] = new
        else:
            self._owned.pop(owner, None)

    def _rebuild(self, key: Key) -> bool:
        """Rebuild one served RRset from its contributions; True when it changed."""
        contrib = self._contrib.get(key)
        old = self._rrsets.get(key)
        if not contrib:
            if old is None:
                return False
            self._drop_rrset(key)
            return True
        if key[1] == TYPE_PTR:
            best = min(p for p, _ in contrib.values())
            rdatas = set().union(*(r for p, r in contrib.values() if p == best))
        else:
            rdatas = set().union(*(r for _, r in contrib.values()))
        rrset = dns.rrset.from_rdata_list(key[0], self.ttl,
                                          sorted(rdatas, key=_rdata_sort_key) if len(rdatas) > 1 else rdatas)
        if old is not None and old == rrset and old.ttl == rrset.ttl:
            return False
        self._set_rrset(key, rrset)
        return True

    def _put_static(self, name: dns.name.Name, rdtype: int, rdatas: list, ttl: int) -> None:
        self._set_rrset((name, rdtype), dns.rrset.from_rdata_list(name, ttl, rdatas))

    def _set_rrset(self, key: Key, rrset: dns.rrset.RRset) -> None:
        if key not in self._rrsets:
            for n in self._existence_names(key[0]):
                self._name_refs[n] = self._name_refs.get(n, 0) + 1
            self._types.setdefault(key[0], set()).add(key[1])
        self._rrsets[key] = rrset

    def _drop_rrset(self, key: Key) -> None:
        if self._rrsets.pop(key, None) is None:
            return
        types = self._types.get(key[0])
        if types is not None:
            types.discard(key[1])
            if not types:
                del self._types[key[0]]
        for n in self._existence_names(key[0]):
            left = self._name_refs.get(n, 0) - 1
            if left > 0:
                self._name_refs[n] = left
            else:
                self._name_refs.pop(n, None)

    def _existence_names(self, name: dns.name.Name) -> Iterable[dns.name.Name]:
        """The name and, inside the zone, its ancestors up to (not including) the apex."""
        yield name
        if name.is_subdomain(self.origin):
            n = name
            while len(n.labels) > len(self.origin.labels) + 1:
                n = n.parent()
                yield n

    def _soa_rdata(self) -> SOA:
        return SOA(IN, TYPE_SOA, self._ns_dns, self._hostmaster, self.serial, SOA_REFRESH, SOA_RETRY,
                   SOA_EXPIRE, self.ttl)

    # -- record computation ----------------------------------------------------------------------

    def _service_name(self, ns: str, name: str) -> dns.name.Name:
        return dns.name.Name((_label(name), _label(ns)) + self._svc_name.labels)

    def _service_records(self, key: tuple[str, str]) -> dict[Key, tuple[int, frozenset]]:
        svc = self._services.get(key)
        if svc is None:
            return {}
        ns, name = key
        base = self._service_name(ns, name)
        spec = _spec(svc)
        out: dict[Key, set] = {}
        prio: dict[Key, int] = {}

        def add(k: Key, rd: dns.rdata.Rdata, p: int = 0) -> None:
            out.setdefault(k, set()).add(rd)
            if k[1] == TYPE_PTR:
                prio[k] = min(prio.get(k, p), p)

        if spec.get("type") == "ExternalName":
            ext = str(spec.get("externalName") or "").strip()
            if ext and _address_rdata(ext) is None:
                try:
                    target = dns.name.from_text(ext.rstrip(".") + ".")
                except dns.exception.DNSException:
                    target = None
                if target is not None and target != base:
                    add((base, TYPE_CNAME), CNAME(IN, TYPE_CNAME, target))
            return self._freeze(out, prio)

        cluster_ips = [ip for ip in (spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP")
                                                                  else [])) if ip]
        headless = spec.get("clusterIP") == "None" or cluster_ips == ["None"]
        ports = [p for p in (spec.get("ports") or []) if isinstance(p, dict) and p.get("port")]
        if not headless:
            addrs = [rd for rd in (_address_rdata(ip) for ip in cluster_ips) if rd is not None]
            for rd in addrs:
                add((base, rd.rdtype), rd)
                rev = _reverse(rd.address)
                if rev is not None:
                    add((rev, TYPE_PTR), PTR(IN, TYPE_PTR, base), PRIO_CLUSTER_IP)
                if key == self.dns_service:
                    add((self._ns_dns, rd.rdtype), rd)
            if addrs:
                srv: dict[Key, set[tuple[int, dns.name.Name]]] = {}
                for p in ports:
                    self._srv_for_port(srv, base, p.get("name"), p.get("protocol"), int(p["port"]), base)
                self._add_srv(srv, add)

        # endpoints: names and PTRs for every ready one; the Service's own records when headless
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        srv = {}
        for es_key in sorted(self._slices_by_service.get(key, ())):
            es = self._slices.get(es_key) or {}
            if es.get("addressType") not in ("IPv4", "IPv6"):
                continue
            es_ports = [p for p in (es.get("ports") or []) if isinstance(p, dict) and p.get("port")]
            for ep in es.get("endpoints") or []:
                if not isinstance(ep, dict):
                    continue
                ready = (ep.get("conditions") or {}).get("ready")
                if ready is False and not publish_not_ready:
                    continue
                for ip in ep.get("addresses") or []:
                    rd = _address_rdata(str(ip))
                    if rd is None:
                        continue
                    host = self._endpoint_hostname(ep, ns, name, rd.address)
                    try:
                        ep_name = dns.name.Name((_label(host),) + base.labels)
                    except dns.exception.DNSException:
                        continue
                    add((ep_name, rd.rdtype), rd)
                    rev = _reverse(rd.address)
                    if rev is not None:
                        add((rev, TYPE_PTR), PTR(IN, TYPE_PTR, ep_name), PRIO_ENDPOINT)
                    if headless:
                        add((base, rd.rdtype), rd)
                        for p in es_ports:
                            self._srv_for_port(srv, base, p.get("name"), p.get("protocol"), int(p["port"]),
                                               ep_name)
        if headless:
            self._add_srv(srv, add)
        return self._freeze(out, prio)

    def _endpoint_hostname(self, ep: Obj, ns: str, svc_name: str, address: str) -> str:
        host = ep.get("hostname")
        if host:
            return str(host)
        ref = ep.get("targetRef") or {}
        if ref.get("kind") == "Pod" and ref.get("name"):
            pod = self._pods.get((str(ref.get("namespace") or ns), str(ref["name"])))
            if pod is not None:
                spec = _spec(pod)
                if spec.get("hostname") and spec.get("subdomain") == svc_name:
                    return str(spec["hostname"])
        return dashed(address)

    @staticmethod
    def _srv_for_port(srv: dict, base: dns.name.Name, port_name: Any, protocol: Any, port: int,
                      target: dns.name.Name) -> None:
        if not 0 < port < 65536:
            return
        srv.setdefault((base, TYPE_SRV), set()).add((port, target))
        if port_name:
            proto = str(protocol or "TCP").lower()
            try:
                name = dns.name.Name((b"_" + _label(str(port_name)), b"_" + _label(proto)) + base.labels)
            except dns.exception.DNSException:
                return
            srv.setdefault((name, TYPE_SRV), set()).add((port, target))

    @staticmethod
    def _add_srv(srv: dict[Key, set[tuple[int, dns.name.Name]]], add: Callable) -> None:
        for k, entries in srv.items():
            weight = max(1, 100 // len(entries))
            for port, target in entries:
                add(k, SRV(IN, TYPE_SRV, 0, weight, port, target))

    def _pod_records(self, key: tuple[str, str]) -> dict[Key, tuple[int, frozenset]]:
        pod = self._pods.get(key)
        if pod is None:
            return {}
        status = pod.get("status") or {}
        if status.get("phase") in FINISHED_PHASES:      # its IPs are released
            return {}
        ips = [str(p.get("ip")) for p in (status.get("podIPs") or []) if isinstance(p, dict) and p.get("ip")]
        if not ips and status.get("podIP"):
            ips = [str(status["podIP"])]
        ns = key[0]
        host_network = bool(_spec(pod).get("hostNetwork"))
        out: dict[Key, set] = {}
        prio: dict[Key, int] = {}
        for ip in ips:
            rd = _address_rdata(ip)
            if rd is None:
                continue
            name = dns.name.Name((_label(dashed(rd.address)), _label(ns)) + self._pod_name.labels)
            out.setdefault((name, rd.rdtype), set()).add(rd)
            rev = _reverse(rd.address)
            if rev is not None and not host_network:
                out.setdefault((rev, TYPE_PTR), set()).add(PTR(IN, TYPE_PTR, name))
                prio[(rev, TYPE_PTR)] = PRIO_POD
        return self._freeze(out, prio)

    @staticmethod
    def _freeze(out: dict[Key, set], prio: dict[Key, int]) -> dict[Key, tuple[int, frozenset]]:
        return {k: (prio.get(k, 0), frozenset(v)) for k, v in out.items()}

    # -- queries ---------------------------------------------------------------------------------

    def keys(self) -> list[Key]:
        """Every (name, type) that has an RRset: the answers worth precomputing."""
        return list(self._rrsets)

    def rrset(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        return self._rrsets.get((name, rdtype))

    def soa(self) -> dns.rrset.RRset:
        return self._rrsets[(self.origin, TYPE_SOA)]

    def is_ours(self, qname: dns.name.Name) -> bool:
        """True for names in the cluster zone (answered here, whatever the answer)."""
        return qname.is_subdomain(self.origin)

    def exists(self, name: dns.name.Name) -> bool:
        """True when the name has records or names below it (NODATA rather than NXDOMAIN)."""
        if name in self._name_refs or name == self.origin:
            return True
        n = len(name.labels) - len(self.origin.labels)
        if n == 1:
            return name == self._svc_name or name == self._pod_name
        if n == 2 and name.parent() in (self._svc_name, self._pod_name):
            return name.labels[0].decode("ascii", "replace").lower() in self._namespaces
        return False

    def lookup(self, qname: dns.name.Name, rdtype: int) -> Answer | None:
        """The answer for (qname, IN, rdtype); None when the name is not this zone's to answer."""
        if not qname.is_subdomain(self.origin):
            if rdtype == TYPE_PTR and (qname.is_subdomain(REVERSE_V4) or qname.is_subdomain(REVERSE_V6)):
                rrset = self._rrsets.get((qname, TYPE_PTR))
                if rrset is not None:
                    return Answer(answer=[rrset])
            return None
        ans = Answer()
        if rdtype == TYPE_ANY:
            ans.answer = [self._rrsets[(qname, t)] for t in sorted(self._types.get(qname, ()))]
            if not ans.answer:
                self._negative(qname, ans)
            return ans
        rrset = self._rrsets.get((qname, rdtype))
        if rrset is not None:
            ans.answer.append(rrset)
            self._add_additional(rrset, ans)
            return ans
        if rdtype != TYPE_CNAME and (qname, TYPE_CNAME) in self._rrsets:
            return self._follow_cname(qname, rdtype, ans)
        dyn = self._insecure_pod(qname, rdtype)
        if dyn is not None:
            if dyn.rdtype == rdtype:
                ans.answer.append(dyn)
            else:
                ans.authority.append(self.soa())
            return ans
        self._negative(qname, ans)
        return ans

    def _negative(self, qname: dns.name.Name, ans: Answer) -> None:
        if not self.exists(qname):
            ans.rcode = dns.rcode.NXDOMAIN
        ans.authority.append(self.soa())

    def _add_additional(self, rrset: dns.rrset.RRset, ans: Answer) -> None:
        targets: list[dns.name.Name] = []
        if rrset.rdtype == TYPE_SRV:
            targets = [rd.target for rd in rrset]
        elif rrset.rdtype == TYPE_NS:
            targets = [rd.target for rd in rrset]
        seen = set()
        for t in targets:
            if t in seen:
                continue
            seen.add(t)
            for typ in (TYPE_A, TYPE_AAAA):
                extra = self._rrsets.get((t, typ))
                if extra is not None:
                    ans.additional.append(extra)

    def _follow_cname(self, qname: dns.name.Name, rdtype: int, ans: Answer) -> Answer:
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            cname = self._rrsets.get((name, TYPE_CNAME))
            if cname is None:
                break
            ans.answer.append(cname)
            name = cname[0].target
            if not name.is_subdomain(self.origin):
                ans.chase = name
                return ans
            final = self._rrsets.get((name, rdtype))
            if final is not None:
                ans.answer.append(final)
                return ans
        else:
            return ans
        if not self.exists(name):
            ans.rcode = dns.rcode.NXDOMAIN
        ans.authority.append(self.soa())
        return ans

    def _insecure_pod(self, qname: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """`pods insecure`: an address record for any well-formed pod name in an existing namespace."""
        if self.pod_mode != "insecure" or len(qname.labels) != len(self._pod_name.labels) + 2:
            return None
        if not qname.is_subdomain(self._pod_name):
            return None
        ns = qname.labels[1].decode("ascii", "replace").lower()
        if ns not in self._namespaces:
            return None
        label = qname.labels[0].decode("ascii", "replace")
        text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
        rd = _address_rdata(text)
        if rd is None:
            return None
        return dns.rrset.from_rdata_list(qname, self.ttl, [rd])

    # -- introspection -------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return {"services": len(self._services), "endpointslices": len(self._slices), "pods": len(self._pods),
                "namespaces": len(self._namespaces), "rrsets": len(self._rrsets)}
