"""The kernel side of IPVS mode: virtual and real servers over generic netlink (pyroute2's IPVS
socket and message classes), the kube-ipvs0 dummy link and its addresses (rtnetlink), and the
check whether this kernel has IPVS at all.

The changes are planned as a pure diff (plan()) of what the kernel holds against DesiredState, and
each planned operation becomes one netlink message (message()); the same pyroute2 objects are what
the kernel socket sends, so the messages can be checked without IP_VS in the kernel.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

from .state import DUMMY_DEVICE, DesiredState, RealServer, VirtualServer

log = logging.getLogger(__name__)

# pyroute2 leaves a coroutine behind when the IPVS family does not exist; the error says it all
warnings.filterwarnings("ignore", message="coroutine 'AsyncIPVSSocket.setup_endpoint' was never awaited")

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
FWD_MASQ = 0          # IP_VS_CONN_F_MASQ: NAT to the real server, as upstream


class IPVSUnavailable(Exception):
    """This kernel cannot do IPVS (no ip_vs, no dummy links): one line saying why."""


@dataclass(frozen=True)
class Op:
    kind: str                          # add_service, set_service, del_service, add_dest, set_dest, del_dest
    service: VirtualServer
    dest: RealServer | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.service}" + (f" -> {self.dest.address}:{self.dest.port} w{self.dest.weight}"
                                               if self.dest else "")


@dataclass(frozen=True)
class KernelDest:
    dest: RealServer
    connections: int                   # active + inactive


def plan(desired: DesiredState, services: dict[tuple[str, str, int], VirtualServer],
         dests: dict[tuple[str, str, int], dict[tuple[str, int], KernelDest]],
         exclude: Iterable[str] = ()) -> list[Op]:
    """The operations that turn the kernel's virtual servers into the desired ones. Real servers
    that are no longer wanted but still carry TCP connections are first given weight 0 (no new
    connections) and deleted by a later sync once they have none (upstream's graceful termination);
    UDP and SCTP ones go at once. Virtual servers in `exclude` CIDRs are never touched."""
    nets = [ipaddress.ip_network(c, strict=False) for c in exclude]
    ops: list[Op] = []
    for key, vs in desired.services.items():
        have = services.get(key)
        if have is None:
            ops.append(Op("add_service", vs))
        elif (have.scheduler, have.flags, have.timeout) != (vs.scheduler, vs.flags, vs.timeout):
            ops.append(Op("set_service", vs))
        cur = dests.get(key, {}) if have is not None else {}
        want = desired.dests.get(key, {})
        for dk, rs in want.items():
            k = cur.get(dk)
            if k is None:
                ops.append(Op("add_dest", vs, rs))
            elif k.dest.weight != rs.weight:
                ops.append(Op("set_dest", vs, rs))
        for dk, k in cur.items():
            if dk in want:
                continue
            if k.connections and vs.protocol == "TCP":
                if k.dest.weight != 0:
                    ops.append(Op("set_dest", vs, RealServer(k.dest.address, k.dest.port, 0)))
            else:
                ops.append(Op("del_dest", vs, k.dest))
    for key, vs in services.items():
        if key in desired.services:
            continue
        if any(ipaddress.ip_address(vs.address) in n for n in nets):
            continue
        ops.append(Op("del_service", vs))
    return ops


# -- messages ----------------------------------------------------------------------------------

def service_nla(vs: VirtualServer) -> Any:
    """pyroute2's IPVSService for a virtual server (AF, protocol, address, port, scheduler, flags,
    persistence timeout, /32 or /128 netmask)."""
    from pyroute2.ipvs import IPVSService
    ip = ipaddress.ip_address(vs.address)
    kw: dict[str, Any] = {"af": socket.AF_INET if ip.version == 4 else socket.AF_INET6, "addr": vs.address,
                          "port": vs.port, "protocol": PROTOCOLS[vs.protocol], "sched_name": vs.scheduler,
                          "timeout": vs.timeout, "flags": {"flags": vs.flags, "mask": 0xFFFFFFFF}}
    if ip.version == 6:
        kw["netmask"] = 128
    return IPVSService(**kw)


def dest_nla(rs: RealServer) -> Any:
    from pyroute2.ipvs import IPVSDest
    ip = ipaddress.ip_address(rs.address)
    return IPVSDest(addr=rs.address, port=rs.port, weight=rs.weight, fwd_method=FWD_MASQ,
                    addr_family=socket.AF_INET if ip.version == 4 else socket.AF_INET6)


_CMDS = {"add_service": 1, "set_service": 2, "del_service": 3, "add_dest": 5, "set_dest": 6, "del_dest": 7}


def message(op: Op) -> Any:
    """The generic netlink message (pyroute2 ipvsmsg) an operation sends: IPVS_CMD_* with the
    service attribute (the full one for service commands, the key for dest commands) and the
    dest attribute."""
    from pyroute2.netlink.generic.ipvs import GENL_VERSION, ipvsmsg
    msg = ipvsmsg()
    msg["cmd"] = _CMDS[op.kind]
    msg["version"] = GENL_VERSION
    svc = service_nla(op.service)
    if op.dest is None:
        msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", svc.dump_nla())]
    else:
        msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", svc.dump_key()), ("IPVS_CMD_ATTR_DEST", dest_nla(op.dest).dump_nla())]
    return msg


def _vs_from(msg: Any) -> VirtualServer:
    from pyroute2.ipvs import IPVSService
    s = IPVSService.from_message(msg)
    flags = s.get("flags") or {}
    return VirtualServer(str(s.get("addr")), int(s.get("port") or 0), PROTOCOL_NAMES.get(s.get("protocol"), "TCP"),
                         s.get("sched_name") or "", int(flags.get("flags", 0)) & ~0x2, int(s.get("timeout") or 0))


# -- the kernel ------------------------------------------------------------------------------------

class KernelIPVS:
    """Blocking access to the kernel's IPVS tables (call from a worker thread)."""

    def __init__(self) -> None:
        try:
            from pyroute2.ipvs import IPVS
            self.sock = IPVS()
        except Exception as e:
            raise IPVSUnavailable(f"the kernel has no IPVS (generic netlink family IPVS not found: {e}); "
                                  "load the ip_vs module or use --proxy-mode iptables") from None

    def close(self) -> None:
        self.sock.close()

    def dump(self) -> tuple[dict[tuple[str, str, int], VirtualServer], dict[tuple[str, str, int], dict]]:
        from pyroute2.ipvs import IPVSDest
        services, dests = {}, {}
        for m in self.sock.service("dump"):
            vs = _vs_from(m)
            services[vs.key] = vs
            cur = {}
            for d in self.sock.dest("dump", service=service_nla(vs)):
                x = IPVSDest.from_message(d)
                rs = RealServer(str(x.get("addr")), int(x.get("port") or 0), int(x.get("weight") or 0))
                attrs = dict(d.get("IPVS_CMD_ATTR_DEST")["attrs"])
                conns = int(attrs.get("IPVS_DEST_ATTR_ACTIVE_CONNS", 0)) + int(attrs.get("IPVS_DEST_ATTR_INACT_CONNS", 0))
                cur[rs.key] = KernelDest(rs, conns)
            dests[vs.key] = cur
        return services, dests

    def apply(self, ops: list[Op]) -> list[str]:
        """Carry out the operations; returns the errors (one line each), going on after one."""
        verbs = {"add_service": "add", "set_service": "set", "del_service": "del", "add_dest": "add",
                 "set_dest": "set", "del_dest": "del"}
        errors = []
        for op in ops:
            try:
                if op.dest is None:
                    self.sock.service(verbs[op.kind], service=service_nla(op.service))
                else:
                    self.sock.dest(verbs[op.kind], service=service_nla(op.service), dest=dest_nla(op.dest))
            except Exception as e:
                errors.append(f"{op}: {e}")
        return errors


def ensure_dummy(addrs: set[str]) -> tuple[int, int]:
    """kube-ipvs0 (a dummy link, down as upstream leaves it) holding exactly addrs as /32 (or /128);
    (bound, unbound). Raises IPVSUnavailable when the kernel cannot make dummy links."""
    from kubelab.cni.netlink import RTNL, NetlinkError
    with RTNL() as rt:
        link = rt.get_link(DUMMY_DEVICE)
        if link is None:
            try:
                rt.add_link(DUMMY_DEVICE, "dummy")
            except NetlinkError as e:
                if e.errno == errno.EOPNOTSUPP:
                    raise IPVSUnavailable("the kernel cannot make dummy links (no dummy module) for "
                                          f"{DUMMY_DEVICE}") from None
                raise
            link = rt.get_link(DUMMY_DEVICE)
        have = {a.address for a in rt.addrs(link.index)}
        bound = unbound = 0
        for a in sorted(addrs - have):
            ip = ipaddress.ip_address(a)
            rt.add_addr(link.index, a, 32 if ip.version == 4 else 128,
                        socket.AF_INET if ip.version == 4 else socket.AF_INET6)
            bound += 1
        for a in sorted(have - addrs):
            ip = ipaddress.ip_address(a)
            rt.del_addr(link.index, a, 32 if ip.version == 4 else 128,
                        socket.AF_INET if ip.version == 4 else socket.AF_INET6)
            unbound += 1
        return bound, unbound


def delete_dummy() -> None:
    from kubelab.cni.netlink import RTNL
    with RTNL() as rt:
        link = rt.get_link(DUMMY_DEVICE)
        if link is not None:
            rt.del_link(link.index)


def check_available(scheduler: str = "rr") -> None:
    """Raise IPVSUnavailable unless this kernel can run the IPVS proxier: the IPVS generic netlink
    family answers and a probe virtual server with the scheduler can be added (upstream's
    CanUseIPVSProxier: 198.51.100.0:20000/TCP, removed again)."""
    k = KernelIPVS()
    try:
        probe = VirtualServer("198.51.100.0", 20000, "TCP", scheduler)
        errs = k.apply([Op("add_service", probe)])
        if errs:
            raise IPVSUnavailable(f"cannot create an IPVS virtual server with scheduler {scheduler!r}: {errs[0]}")
        k.apply([Op("del_service", probe)])
    finally:
        k.close()
