"""The iptables proxier: informer events -> change trackers -> syncs -> iptables-restore.

A sync (upstream's syncProxyRules) checks out the pending Service and EndpointSlice changes,
regenerates the rules of the service ports that changed (the others come from a cache), and
writes with one `iptables-restore --noflush`:
  - full sync (at start, every sync period, after a failure): every chain of both tables, the
    jump rules from the built-in chains, deletion of every stale chain;
  - partial sync: only the chains whose rules differ from what the last successful restore
    wrote, and the deletion of chains that are gone.
Then stale UDP conntrack entries are flushed. Syncs are spaced by a SyncRunner (minSyncPeriod
with a burst of 2) and happen at least every syncPeriod, as full syncs, which repair rules
tampered with by hand.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .. import conntrack
from ..base import ProxierBase
from ..metrics import ProxyMetrics
from ..servicechange import (ServicePortName, apply_endpoint_changes, apply_service_changes, is_service_chain)
from ..syncrunner import SyncRunner
from . import rules as R
from .runner import IPTables, IPTablesError

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass
class ProxierConfig:
    hostname: str
    rules: R.RuleConfig = field(default_factory=R.RuleConfig)
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    nodeport_addresses: tuple[str, ...] = ()     # CIDRs or "primary"; empty: every local address
    # nft backend: split the nat table into transactions of at most this many chains
    max_section_chains: int = 1000
    conntrack_binary: str = "conntrack"
    keep_restore_text: bool = False     # keep the last iptables-restore input in last_restore_text


@dataclass
class SyncStats:
    """What the last sync did (for logs, tests and the benchmark)."""
    full: bool = False
    ok: bool = False
    services: int = 0
    endpoints: int = 0
    regenerated: int = 0
    filter_chains: int = 0
    nat_chains: int = 0
    deleted_chains: int = 0
    lines: int = 0
    generate_s: float = 0.0
    read_s: float = 0.0          # reading the kernel's state: existing chains, jump rules
    restore_s: float = 0.0
    conntrack_s: float = 0.0
    total_s: float = 0.0
    error: str = ""


class Proxier(ProxierBase):
    """kube-proxy in iptables mode for one node (IPv4)."""

    def __init__(self, ipt: IPTables, cfg: ProxierConfig, metrics: ProxyMetrics | None = None) -> None:
        super().__init__(cfg.hostname, metrics)
        self.ipt = ipt
        self.cfg = cfg
        self.sync_period = cfg.sync_period
        self.rule_cfg = cfg.rules
        self.need_full_sync = True
        self._scan_needed = True          # read the kernel's chains on the next full sync
        self._large = False
        self._cache: dict[ServicePortName, R.ServiceRules] = {}
        self._order: list[ServicePortName] = []
        self._chains_of: dict[ServicePortName, tuple[str, ...]] = {}
        self._applied_filter: dict[str, list[str]] = {}
        self._applied_nat: dict[str, list[str]] = {}
        self._pending_conntrack: list[list[str]] = []
        self._last_full = 0.0
        self._lock = asyncio.Lock()
        self._gc_paused = False
        self.runner = SyncRunner(self._run_sync, cfg.min_sync_period, cfg.sync_period)
        self.last_stats = SyncStats()
        self.last_restore_text = ""
        self.syncs = 0

    # -- running ------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Host settings the rules rely on (before the first sync)."""
        r = self.rule_cfg
        if r.localhost_nodeports and self._nodeports_include_loopback():
            # NodePorts on 127.0.0.1 need route_localnet (upstream does the same; KUBE-FIREWALL
            # drops martian localnet traffic from elsewhere)
            await self._sysctl_set("net.ipv4.conf.all.route_localnet", "1")
        liberal = await self._sysctl_get("net.netfilter.nf_conntrack_tcp_be_liberal")
        if liberal not in (None, "0"):
            log.info("nf_conntrack_tcp_be_liberal is set: not installing DROP rules for INVALID packets")
            self.rule_cfg = dataclasses.replace(self.rule_cfg, conntrack_tcp_liberal=True)

    def _nodeports_include_loopback(self) -> bool:
        addrs = self.cfg.nodeport_addresses
        if not addrs:
            return True
        for a in addrs:
            try:
                if ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network("127.0.0.0/8")):
                    return True
            except ValueError:
                continue
        return False

    async def _sysctl_get(self, key: str) -> str | None:
        res = await self.ipt.executor.run(["sysctl", "-n", key], check=False, timeout=10)
        return res.text.strip() if res.returncode == 0 else None

    async def _sysctl_set(self, key: str, value: str) -> None:
        res = await self.ipt.executor.run(["sysctl", "-w", f"{key}={value}"], check=False, timeout=10)
        if res.returncode != 0:
            log.warning("cannot set sysctl %s=%s: %s", key, value, res.stderr.decode(errors="replace").strip())

    async def _run_sync(self) -> None:
        stats = await self.sync()
        if not stats.ok and self.initialized:
            retry = min(self.cfg.sync_period, max(1.0, self.cfg.min_sync_period))
            log.info("sync failed; retrying in %.1fs", retry)
            self.runner.retry_after(retry)

    async def sync(self, full: bool = False) -> SyncStats:
        """One sync (full when asked, when needed, or when a sync period has passed)."""
        async with self._lock:
            if not self.initialized:
                log.info("not syncing iptables until Services and EndpointSlices have been received")
                return SyncStats(error="not initialized")
            start = time.monotonic()
            full = full or self.need_full_sync or (start - self._last_full >= self.cfg.sync_period)
            # the rule generation allocates hundreds of thousands of acyclic objects: the cyclic GC
            # would walk the informers' caches again and again meanwhile (_sync enables it again
            # before it waits for iptables-restore)
            self._gc_paused = gc.isenabled()
            if self._gc_paused:
                gc.disable()
            try:
                stats = await self._sync(full, start)
            except Exception as e:   # a bug must not kill the loop; the next sync is full
                log.exception("sync failed unexpectedly")
                self.need_full_sync = True
                stats = SyncStats(full=full, error=str(e))
            finally:
                self._resume_gc()
            stats.total_s = time.monotonic() - start
            self.metrics.sync_duration.observe(stats.total_s)
            (self.metrics.sync_full_duration if full else self.metrics.sync_partial_duration).observe(stats.total_s)
            self.last_stats = stats
            self.syncs += 1
            log.info("sync complete full=%s ok=%s services=%d endpoints=%d regenerated=%d nat_chains=%d "
                     "deleted=%d lines=%d elapsed=%.3fs", full, stats.ok, stats.services, stats.endpoints,
                     stats.regenerated, stats.nat_chains, stats.deleted_chains, stats.lines, stats.total_s)
            return stats

    async def _sync(self, full: bool, start: float) -> SyncStats:
        stats = SyncStats(full=full)
        queued_at = self.oldest_queued
        self.oldest_queued = None
        svc_changes = self.svc_tracker.checkout()
        ep_changes, triggers = self.ep_tracker.checkout()
        self.metrics.service_changes_pending.set(0)
        self.metrics.endpoint_changes_pending.set(0)
        svc_res = apply_service_changes(self.svc_map, svc_changes)
        ep_res = apply_endpoint_changes(self.ep_map, ep_changes, triggers)

        changed_ports: set[ServicePortName] = set()
        for ch in svc_changes.values():
            changed_ports.update(ch.previous, ch.current)
        for ch in ep_changes.values():
            changed_ports.update(ch.previous, ch.current)
        if svc_changes or len(self._order) != len(self.svc_map):
            self._order = sorted(self.svc_map, key=str)

        total_eps = sum(len(self.ep_map.get(spn, ())) for spn in self.svc_map)
        large = total_eps > R.LARGE_CLUSTER_ENDPOINTS
        if large != self._large:
            self._cache.clear()        # comments come and go: every chain changes
            self._large = large
        for spn in changed_ports:
            self._cache.pop(spn, None)

        # -- generate ------------------------------------------------------------------
        t0 = time.monotonic()
        if full and self.cfg.nodeport_addresses:
            self.rule_cfg = dataclasses.replace(self.rule_cfg, nodeport_ips=tuple(await self._nodeport_ips()))
        cfg = self.rule_cfg
        cache = self._cache
        ordered = []
        regenerated: list[ServicePortName] = []
        empty: list = []
        for spn in self._order:
            sr = cache.get(spn)
            if sr is None:
                sr = R.service_rules(self.svc_map[spn], self.ep_map.get(spn, empty), cfg, large)
                cache[spn] = sr
                regenerated.append(spn)
            ordered.append(sr)
        filt, nat_top = R.top_level_chains(cfg, ordered)

        # chains that belonged to changed service ports and are gone now
        stale: set[str] = set()
        new_chains: dict[ServicePortName, tuple[str, ...]] = {}
        for spn in changed_ports | set(regenerated):
            sr = cache.get(spn)
            now = tuple(sr.nat_chains) if sr is not None else ()
            new_chains[spn] = now
            old = self._chains_of.get(spn)
            if old:
                stale.update(set(old) - set(now))

        if full:
            if self._scan_needed or not large:
                tr = time.monotonic()
                try:
                    existing = await self.ipt.chains("nat")
                except IPTablesError as e:
                    log.warning("cannot list existing chains; stale chains stay for now: %s", e)
                    existing = set()
                else:
                    self._scan_needed = False
                stats.read_s += time.monotonic() - tr
                active = set()
                for spn, names in self._chains_of.items():
                    if spn not in new_chains:
                        active.update(names)
                for names in new_chains.values():
                    active.update(names)
                stale.update(c for c in existing if is_service_chain(c) and c not in active)
            filter_write: dict[str, list[str]] | None = filt
            nat_top_write = nat_top
            groups = [sr.nat_chains for sr in ordered if sr.nat_chains]
        else:
            applied_f = self._applied_filter
            filter_write = filt if (set(filt) != set(applied_f)
                                    or any(applied_f.get(c) != r for c, r in filt.items())) else None
            applied_n = self._applied_nat
            nat_top_write = {c: r for c, r in nat_top.items() if applied_n.get(c) != r}
            groups = []
            for spn in regenerated:
                own = cache[spn].nat_chains
                diff = {c: r for c, r in own.items() if applied_n.get(c) != r}
                if diff:
                    groups.append(diff)
        # chain bookkeeping is about what we want, whether or not this restore succeeds
        for spn, names in new_chains.items():
            if names:
                self._chains_of[spn] = names
            else:
                self._chains_of.pop(spn, None)
        self._pending_conntrack += conntrack.stale_entry_filters(self.svc_map, svc_res, ep_res)

        deleted = sorted(stale)
        # full syncs also put back missing jump rules from the built-in chains, in the same restore
        missing: list[R.JumpRule] = []
        if full:
            jumps = list(R.JUMP_RULES) + (list(R.KUBELET_JUMP_RULES) if cfg.localhost_nodeports else [])
            tr = time.monotonic()
            try:
                missing = await self.ipt.missing_jumps(jumps)
            except IPTablesError as e:
                return self._failed(stats, str(e), full, queued_at)
            stats.read_s += time.monotonic() - tr
        max_chains = self.cfg.max_section_chains if self.ipt.backend == "nft" else None
        nat_ins = R.jump_inserts(missing, "nat")
        nat_lines = R.render_nat(nat_top_write, groups, deleted, max_chains, nat_ins) \
            if (nat_top_write or groups or deleted or nat_ins) else []
        text = R.restore_text(filter_write, nat_lines, R.jump_inserts(missing, "filter")) \
            if (filter_write or nat_lines) else ""
        stats.generate_s = time.monotonic() - t0 - stats.read_s
        stats.services = len(self.svc_map)
        stats.endpoints = total_eps
        stats.regenerated = len(regenerated)
        stats.filter_chains = len(filter_write or ())
        stats.nat_chains = len(nat_top_write) + sum(len(g) for g in groups)
        stats.deleted_chains = len(deleted)
        stats.lines = text.count("\n")

        # -- write ---------------------------------------------------------------------
        self._resume_gc()
        t1 = time.monotonic()
        try:
            if text:
                if self.cfg.keep_restore_text:
                    self.last_restore_text = text
                await self.ipt.restore(text)
        except IPTablesError as e:
            stats.restore_s = time.monotonic() - t1
            return self._failed(stats, str(e), full, queued_at)
        stats.restore_s = time.monotonic() - t1

        if filter_write is not None:
            self._applied_filter = dict(filter_write)
        applied_n = self._applied_nat
        if full:
            applied_n.clear()
        applied_n.update(nat_top_write)
        for g in groups:
            applied_n.update(g)
        for c in deleted:
            applied_n.pop(c, None)
        if full:
            self._last_full = start
        self.need_full_sync = False

        # -- after a successful write ---------------------------------------------------
        t2 = time.monotonic()
        filters, self._pending_conntrack = self._pending_conntrack, []
        if filters:
            await conntrack.clear(filters, self.ipt.executor.prefix, self.cfg.conntrack_binary)
        stats.conntrack_s = time.monotonic() - t2
        stats.ok = True
        now = time.time()
        self.last_updated = now
        m = self.metrics
        m.last_timestamp.set(now)
        for times in ep_res.last_change_trigger_times.values():
            for t in times:
                m.network_programming.observe(max(0.0, now - t))
        filter_rules = sum(len(r) for r in filt.values())
        nat_rules = sum(len(r) for r in nat_top.values()) + sum(sr.nat_rule_count for sr in ordered)
        m.iptables_rules_total.labels("filter").set(filter_rules)
        m.iptables_rules_total.labels("nat").set(nat_rules)
        m.iptables_rules_last.labels("filter").set(sum(len(r) for r in (filter_write or {}).values()))
        m.iptables_rules_last.labels("nat").set(sum(len(r) for r in nat_top_write.values())
                                                + sum(len(r) for g in groups for r in g.values()))
        m.no_local_endpoints.labels("internal").set(sum(1 for sr in ordered if sr.no_local_internal))
        m.no_local_endpoints.labels("external").set(sum(1 for sr in ordered if sr.no_local_external))
        return stats

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def _failed(self, stats: SyncStats, error: str, full: bool, queued_at: float | None) -> SyncStats:
        """After a failed write: the kernel's state is unknown, so the next sync is full."""
        stats.error = error
        log.error("%s", error)
        self.metrics.restore_failures.inc()
        if not full:
            self.metrics.partial_restore_failures.inc()
        self.need_full_sync = True
        self._scan_needed = True
        self._applied_filter = {}
        self._applied_nat = {}
        self.oldest_queued = queued_at or time.time()
        return stats

    async def _nodeport_ips(self) -> list[str]:
        """Local IPv4 addresses inside --nodeport-addresses (upstream's GetNodeIPs)."""
        res = await self.ipt.executor.run(["ip", "-4", "-o", "addr", "show"], check=False, timeout=10)
        addrs = []
        for line in res.text.splitlines():
            parts = line.split()
            if "inet" in parts:
                addrs.append(parts[parts.index("inet") + 1].split("/")[0])
        nets = []
        for a in self.cfg.nodeport_addresses:
            if a == "primary":
                if self.rule_cfg.node_ip:
                    nets.append(ipaddress.ip_network(f"{self.rule_cfg.node_ip}/32"))
                continue
            try:
                nets.append(ipaddress.ip_network(a, strict=False))
            except ValueError:
                continue
        return sorted({a for a in addrs if any(ipaddress.ip_address(a) in n for n in nets)},
                      key=lambda s: ipaddress.ip_address(s))



async def cleanup_leftovers(ipt: IPTables, other_jumps: Sequence[R.JumpRule] = (),
                            other_chains: Mapping[str, Sequence[str]] | None = None) -> bool:
    """Remove kube-proxy's jump rules and chains (upstream's CleanupLeftovers). Returns True on
    success. other_jumps/other_chains ({table: chains}) are another mode's, removed in the same
    transactions: the modes share chain names, and their chains refer to each other's."""
    ok = True
    await ipt.delete_jumps(tuple(R.JUMP_RULES) + tuple(other_jumps))
    try:
        nat = await ipt.chains("nat")
        flt = await ipt.chains("filter")
    except IPTablesError as e:
        log.error("%s", e)
        return False
    nat_gone = [c for c in (R.KUBE_SERVICES, R.KUBE_NODEPORTS, R.KUBE_POSTROUTING, R.KUBE_MARK_MASQ) if c in nat]
    nat_gone += sorted(c for c in nat if is_service_chain(c))
    flt_gone = [c for c in (R.KUBE_SERVICES, R.KUBE_EXTERNAL_SERVICES, R.KUBE_FORWARD, R.KUBE_NODEPORTS,
                            R.KUBE_PROXY_FIREWALL) if c in flt]
    for table, have, gone in (("nat", nat, nat_gone), ("filter", flt, flt_gone)):
        gone += [c for c in (other_chains or {}).get(table, ()) if c in have and c not in gone]
    text = []
    if flt_gone:
        text += R.render_table("filter", {}, flt_gone)
    if nat_gone:
        text += R.render_table("nat", {}, nat_gone)
    if text:
        try:
            await ipt.restore("\n".join(text) + "\n")
        except IPTablesError as e:
            log.error("%s", e)
            ok = False
    return ok


def register_informers(factory: Any, proxier: Proxier) -> list:
    """Services and EndpointSlices informers (without kube-proxy-excluded labels) feeding the
    proxier; returns them (start the factory, then await wait_synced)."""
    from ..servicechange import INFORMER_LABEL_SELECTOR
    svc = factory.informer("v1", "services", label_selector=INFORMER_LABEL_SELECTOR)
    svc.add_event_handler(on_add=proxier.on_service_add, on_update=proxier.on_service_update,
                          on_delete=proxier.on_service_delete)
    eps = factory.informer("discovery.k8s.io/v1", "endpointslices", label_selector=INFORMER_LABEL_SELECTOR)
    eps.add_event_handler(on_add=proxier.on_endpoint_slice_add, on_update=proxier.on_endpoint_slice_update,
                          on_delete=proxier.on_endpoint_slice_delete)
    return [svc, eps]


async def wait_synced(informers: list, proxier: Proxier) -> None:
    """Tell the proxier when each informer's first list has been handled (upstream's
    On*Synced), so it never syncs from half the state."""
    svc, eps = informers

    async def one(inf: Any, done: Any) -> None:
        while not await inf.wait_for_sync(timeout=5):
            log.info("waiting for %r to sync", inf)
        await inf.wait_handlers_idle()
        done()

    await asyncio.gather(one(svc, proxier.on_services_synced), one(eps, proxier.on_endpoint_slices_synced))
