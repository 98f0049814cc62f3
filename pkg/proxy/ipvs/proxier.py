"""The IPVS proxier: informer events -> change trackers -> syncs that make the kernel hold the
DesiredState (state.build): kube-ipvs0's addresses, the ipsets (one `ipset restore` of the
difference), the iptables rules matching them (one `iptables-restore --noflush` of our chains) and
the virtual/real servers (a planned diff sent over generic netlink). Syncs are spaced by the same
SyncRunner as iptables mode; every sync is a full one (the ipset and IPVS diffs keep it cheap)."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from kubelab import proc

from .. import conntrack
from ..base import ProxierBase
from ..iptables.runner import Executor, IPTables, IPTablesError
from ..metrics import ProxyMetrics
from ..servicechange import apply_endpoint_changes, apply_service_changes
from ..syncrunner import SyncRunner
from . import ipsets as S
from . import state as ST
from .kernel import KernelDest, Op, plan

log = logging.getLogger(__name__)


class Kernel(Protocol):
    """The IPVS tables and kube-ipvs0 (blocking calls; the proxier runs them in a worker thread)."""

    def dump(self) -> tuple[dict, dict[tuple[str, str, int], dict[tuple[str, int], KernelDest]]]: ...

    def apply(self, ops: list[Op]) -> list[str]: ...

    def ensure_dummy(self, addrs: set[str]) -> tuple[int, int]: ...

    def local_addresses(self) -> set[str]: ...


class LinuxKernel:
    """The real kernel: IPVS over generic netlink, kube-ipvs0 over rtnetlink."""

    def __init__(self) -> None:
        from .kernel import KernelIPVS
        self.ipvs = KernelIPVS()

    def dump(self):
        return self.ipvs.dump()

    def apply(self, ops: list[Op]) -> list[str]:
        return self.ipvs.apply(ops)

    def ensure_dummy(self, addrs: set[str]) -> tuple[int, int]:
        from .kernel import ensure_dummy
        return ensure_dummy(addrs)

    def local_addresses(self) -> set[str]:
        """The node's addresses, except those on kube-ipvs0."""
        from kubelab.cni.netlink import RTNL
        with RTNL() as rt:
            dummy = rt.get_link(ST.DUMMY_DEVICE)
            skip = dummy.index if dummy is not None else -1
            return {a.address for a in rt.addrs() if a.index != skip}


class IPSet:
    """The ipset command (save, restore, destroy), through the same Executor as iptables (so a
    prefix can enter another network namespace: ipsets are per namespace)."""

    def __init__(self, executor: Executor | None = None, binary: str = "ipset") -> None:
        self.executor = executor or Executor()
        self.binary = binary

    async def save(self) -> str:
        return (await self.executor.run([self.binary, "save"], timeout=60)).text

    async def restore(self, text: str) -> None:
        await self.executor.run([self.binary, "restore"], input=text.encode(), timeout=120)

    async def destroy(self, name: str) -> bool:
        return (await self.executor.run([self.binary, "destroy", name], check=False, timeout=30)).returncode == 0


@dataclass
class IPVSProxierConfig:
    hostname: str
    ipvs: ST.IPVSConfig = field(default_factory=ST.IPVSConfig)
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    nodeport_addresses: tuple[str, ...] = ()
    exclude_cidrs: tuple[str, ...] = ()
    conntrack_binary: str = "conntrack"


@dataclass
class IPVSSyncStats:
    ok: bool = False
    services: int = 0
    virtual_servers: int = 0
    ops: int = 0
    ipset_lines: int = 0
    bound: int = 0
    unbound: int = 0
    total_s: float = 0.0
    error: str = ""


class IPVSProxier(ProxierBase):
    def __init__(self, ipt: IPTables, kernel: Kernel, cfg: IPVSProxierConfig, ipset: IPSet | None = None,
                 metrics: ProxyMetrics | None = None) -> None:
        super().__init__(cfg.hostname, metrics)
        self.ipt, self.kernel, self.cfg = ipt, kernel, cfg
        self.ipset = ipset or IPSet(ipt.executor)
        self.sync_period = cfg.sync_period
        self.runner = SyncRunner(self._run_sync, cfg.min_sync_period, cfg.sync_period)
        self.last_stats = IPVSSyncStats()
        self.last_state: ST.DesiredState | None = None
        self._lock = asyncio.Lock()
        self.syncs = 0

    async def prepare(self) -> None:
        """The sysctls IPVS mode needs (upstream sets them at start)."""
        for key, value in (("net.ipv4.vs.conntrack", "1"), ("net.ipv4.vs.expire_nodest_conn", "1"),
                           ("net.ipv4.vs.expire_quiescent_template", "1"), ("net.ipv4.ip_forward", "1")):
            r = await proc.run(["sysctl", "-w", f"{key}={value}"], check=False, timeout=10)
            if r.returncode != 0:
                log.warning("cannot set sysctl %s=%s: %s", key, value, r.stderr.decode(errors="replace").strip())

    def _node_ips(self, local: set[str]) -> list[str]:
        addrs = sorted((a for a in local if ipaddress.ip_address(a).version == 4
                        and not ipaddress.ip_address(a).is_loopback), key=ipaddress.ip_address)
        if not self.cfg.nodeport_addresses:
            return addrs
        nets = []
        for c in self.cfg.nodeport_addresses:
            if c == "primary":
                if self.cfg.ipvs.node_ip:
                    nets.append(ipaddress.ip_network(f"{self.cfg.ipvs.node_ip}/32"))
                continue
            nets.append(ipaddress.ip_network(c, strict=False))
        return [a for a in addrs if any(ipaddress.ip_address(a) in n for n in nets)]

    async def _run_sync(self) -> None:
        stats = await self.sync()
        if not stats.ok and self.initialized:
            self.runner.retry_after(min(self.cfg.sync_period, max(1.0, self.cfg.min_sync_period)))

    async def sync(self) -> IPVSSyncStats:
        async with self._lock:
            if not self.initialized:
                return IPVSSyncStats(error="not initialized")
            start = time.monotonic()
            try:
                stats = await self._sync()
            except Exception as e:   # a bug must not kill the loop
                log.exception("sync failed unexpectedly")
                stats = IPVSSyncStats(error=str(e))
            stats.total_s = time.monotonic() - start
            self.metrics.sync_duration.observe(stats.total_s)
            self.last_stats = stats
            self.syncs += 1
            log.info("sync complete ok=%s services=%d virtual_servers=%d ipvs_ops=%d bound=%d unbound=%d "
                     "elapsed=%.3fs%s", stats.ok, stats.services, stats.virtual_servers, stats.ops, stats.bound,
                     stats.unbound, stats.total_s, f" error={stats.error}" if stats.error else "")
            return stats

    async def _sync(self) -> IPVSSyncStats:
        stats = IPVSSyncStats()
        queued_at = self.oldest_queued
        self.oldest_queued = None
        svc_res = apply_service_changes(self.svc_map, self.svc_tracker.checkout())
        ep_changes, triggers = self.ep_tracker.checkout()
        ep_res = apply_endpoint_changes(self.ep_map, ep_changes, triggers)
        local = await asyncio.to_thread(self.kernel.local_addresses)
        st = ST.build(self.svc_map, self.ep_map, self.cfg.ipvs, self._node_ips(local), local)
        self.last_state = st
        stats.services, stats.virtual_servers = len(self.svc_map), len(st.services)
        try:
            stats.bound, stats.unbound = await asyncio.to_thread(self.kernel.ensure_dummy, st.bind_addrs)
            existing = S.parse_save(await self.ipset.save())
            text = S.restore_text(st.sets, existing)
            stats.ipset_lines = text.count("\n")
            await self.ipset.restore(text)
            await self.ipt.restore(ST.rules_text(st, self.cfg.ipvs))     # makes the chains the jumps need
            await self.ipt.ensure_jumps(ST.JUMP_RULES)
            services, dests = await asyncio.to_thread(self.kernel.dump)
            ops = plan(st, services, dests, self.cfg.exclude_cidrs)
            errors = await asyncio.to_thread(self.kernel.apply, ops) if ops else []
            stats.ops = len(ops)
            if errors:
                raise RuntimeError(f"{len(errors)} IPVS operations failed, first: {errors[0]}")
        except (IPTablesError, proc.CommandError, RuntimeError, OSError) as e:
            stats.error = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.oldest_queued = queued_at
            return stats
        filters = conntrack.stale_entry_filters(self.svc_map, svc_res, ep_res)
        if filters:
            await conntrack.clear(filters, binary=self.cfg.conntrack_binary)
        stats.ok = True
        self.last_updated = time.time()
        self.metrics.last_timestamp.set(self.last_updated)
        return stats


async def cleanup_leftovers(ipt: IPTables, ipset: IPSet | None = None) -> bool:
    """Remove what IPVS mode made in this process's network namespace: virtual servers (all of
    them, as upstream), kube-ipvs0, our iptables chains and jumps, our ipsets. True on success;
    parts the kernel lacks are skipped."""
    from .kernel import IPVSUnavailable, KernelIPVS, delete_dummy
    ok = True
    try:
        k = KernelIPVS()
    except IPVSUnavailable:
        k = None
    if k is not None:
        try:
            services, _ = k.dump()
            errs = k.apply([Op("del_service", vs) for vs in services.values()])
            ok = ok and not errs
        finally:
            k.close()
    try:
        await asyncio.to_thread(delete_dummy)
    except OSError as e:
        log.error("cannot delete %s: %s", ST.DUMMY_DEVICE, e)
        ok = False
    await ipt.delete_jumps(ST.JUMP_RULES)
    try:
        nat, flt = await ipt.chains("nat"), await ipt.chains("filter")
    except IPTablesError as e:
        log.error("%s", e)
        return False
    lines = []
    for table, chains, have in (("filter", ST.FILTER_CHAINS, flt), ("nat", ST.NAT_CHAINS, nat)):
        gone = [c for c in chains if c in have]
        if gone:
            lines += [f"*{table}"] + [f":{c} - [0:0]" for c in gone] + [f"-X {c}" for c in gone] + ["COMMIT"]
    if lines:
        try:
            await ipt.restore("\n".join(lines) + "\n")
        except IPTablesError as e:
            log.error("%s", e)
            ok = False
    ipset = ipset or IPSet(ipt.executor)
    existing = S.parse_save(await ipset.save())
    for s in S.SETS:
        if s.name in existing and not await ipset.destroy(s.name):
            log.error("cannot destroy ipset %s", s.name)
            ok = False
    return ok
