"""Flushing stale UDP conntrack entries with the `conntrack` tool (upstream's CleanStaleEntries).

UDP has no connection teardown: an entry that DNATs a client's flow to a removed endpoint keeps
sending it there until it times out, and an entry made while a Service had no endpoints keeps
black-holing. After each sync the proxier deletes
  - for each removed (or no longer serving) UDP endpoint: entries to the cluster IP, external IPs
    and LB IPs DNATed to it, and NodePort entries DNATed to it;
  - for each UDP service port that got its first endpoint, or was deleted: every entry to its
    IPs and port, and to its NodePort.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from .. import proc
from .servicechange import EndpointsUpdateResult, ServicePort, ServicePortMap, ServiceUpdateResult

log = logging.getLogger(__name__)


def stale_entry_filters(svc_map: ServicePortMap, svc_result: ServiceUpdateResult,
                        ep_result: EndpointsUpdateResult) -> list[list[str]]:
    """The `conntrack -D` argument lists to run (pure: tested without the tool)."""
    out: list[list[str]] = []
    seen_nodeports: set[int] = set()

    def service_ip_ports(sp: ServicePort) -> None:
        for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_vips):
            out.append(["-D", "--orig-dst", ip, "-p", "udp", "--dport", str(sp.port)])
        if sp.protocol == "UDP" and sp.node_port and sp.node_port not in seen_nodeports:
            seen_nodeports.add(sp.node_port)
            out.append(["-D", "-p", "udp", "--dport", str(sp.node_port)])

    for sp in svc_result.deleted_udp_ports:
        service_ip_ports(sp)
    for spn in ep_result.newly_active_udp_services:
        sp = svc_map.get(spn)
        if sp is not None:
            service_ip_ports(sp)
    for spn, endpoint in ep_result.deleted_udp_endpoints:
        sp = svc_map.get(spn)
        if sp is None:
            continue
        ep_ip = endpoint.rpartition(":")[0]
        if sp.node_port:
            out.append(["-D", "-p", "udp", "--dport", str(sp.node_port), "--dst-nat", ep_ip])
        for ip in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_vips):
            out.append(["-D", "--orig-dst", ip, "--dst-nat", ep_ip, "-p", "udp"])
    return out


async def clear(filters: Sequence[Sequence[str]], prefix: Sequence[str] = (), binary: str = "conntrack") -> int:
    """Run `conntrack` for each filter; failures are logged (best effort, as upstream). Returns
    how many commands failed."""
    failed = 0

    async def one(args: Sequence[str]) -> None:
        nonlocal failed
        try:
            res = await proc.run([*prefix, binary, *args], check=False, timeout=30)
        except proc.CommandError as e:
            failed += 1
            log.error("conntrack %s: %s", " ".join(args), e)
            return
        err = (res.stderr or b"").decode(errors="replace")
        # exit 1 with "0 flow entries have been deleted" just means there was nothing to delete
        if res.returncode != 0 and "0 flow entries" not in err:
            failed += 1
            log.error("conntrack %s failed: %s", " ".join(args), err.strip().splitlines()[-1:] or res.returncode)

    sem = asyncio.Semaphore(8)

    async def bounded(args: Sequence[str]) -> None:
        async with sem:
            await one(args)

    await asyncio.gather(*(bounded(f) for f in filters))
    return failed
