"""kube-proxy (iptables mode) sync time beside raw iptables-restore of the same ruleset.

A real etcd and kubelab-apiserver hold N Services (BENCH_PROXY_SIZES, default 1,000 and 5,000),
each with one EndpointSlice of BENCH_PROXY_ENDPOINTS (10) ready endpoints on another node. The
proxier (kubelab.proxy.iptables.proxier, in this process, fed by its own informers) programs a
fresh network namespace through `ip netns exec`, so the host's rules are never touched; the
iptables backend is the host's (detected as the daemon does).

Per size and repetition (BENCH_PROXY_REPS, default 3; fresh namespaces each time):
  * cold full sync: the proxier's first sync (rule generation, iptables-restore, the jump rules
    from the built-in chains) into an empty namespace; the peer is iptables-restore of the very
    text the proxier wrote, into another empty namespace, with the same binary and flags;
  * periodic full sync: the proxier's forced full sync on top of its own state; the peer applies
    the same text again on top of the first;
  the proxier and the peer take turns going first. The figures are the medians; target <= 1.3x.
  At each size, BENCH_PROXY_CHANGES (10) times: one endpoint of one Service replaced in its
  EndpointSlice through the API; once the informer has it, the partial sync is timed (target
  <= 100 ms at 5,000), and the very text it wrote is restored again as a peer. With the nft
  backend every commit that adds a rule makes the kernel validate the whole table reachable
  from the base chains, so even a 19-line restore costs in proportion to all the rules there
  are: the peer shows that floor. Also reported: API write -> rules in place for that change.
  At 1,000 Services the same ruleset is also restored as one transaction, for context: with the
  nft backend iptables-restore --noflush is quadratic in the chains one transaction names, which
  is why the proxier splits large nat writes (see pkg/proxy/iptables/rules.py render_nat).

Environment: BENCH_PROXY_SIZES (1000,5000), BENCH_PROXY_ENDPOINTS (10), BENCH_PROXY_REPS (3),
BENCH_PROXY_CHANGES (10); BENCH_QUIET_WAIT, BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S as
in bench/harness.py. Everything started here (etcd, apiserver, namespaces, temp dir) is stopped
and removed, also on errors, Ctrl-C and SIGTERM.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

import psutil

import harness
from harness import ControlPlane, CpuMeter, figure, log, print_figure, summarize
from kubelab import proc
from kubelab.client.informer import SharedInformerFactory
from kubelab.client.rest import ApiError
from kubelab.proxy.iptables import rules as R
from kubelab.proxy.iptables.proxier import Proxier, ProxierConfig, register_informers, wait_synced
from kubelab.proxy.iptables.runner import Executor, IPTables, detect_backend
from kubelab.proxy.servicechange import SERVICE_NAME_LABEL

NAME = "proxy_sync"
SIZES = [int(x) for x in os.environ.get("BENCH_PROXY_SIZES", "1000,5000").split(",") if x.strip()]
ENDPOINTS = int(os.environ.get("BENCH_PROXY_ENDPOINTS", "10"))
REPS = int(os.environ.get("BENCH_PROXY_REPS", "3"))
CHANGES = int(os.environ.get("BENCH_PROXY_CHANGES", "10"))
NS = "proxybench"
TARGET_RATIO = 1.3
TARGET_CHANGE = 0.1
SINGLE_TRANSACTION_AT = 1000


class BenchError(Exception):
    """Something the benchmark needs did not work; one line saying what."""


class Meter(CpuMeter):
    """CpuMeter that also counts the bench's finished children (iptables-restore, ip, conntrack)
    as the bench's, so they are not taken for other people's load."""

    def _read(self) -> dict[str, float]:
        out = super()._read()
        try:
            t = psutil.Process().cpu_times()
            out["bench"] = out.get("bench", 0.0) + t.children_user + t.children_system
        except psutil.Error:
            pass
        return out


def endpoint_ip(n: int) -> str:
    return f"10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i:05d}", "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                     "selector": {"app": f"svc-{i:05d}"}}}


def endpoint_slice(i: int, ips: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{i:05d}-abcde", "namespace": NS,
                         "labels": {SERVICE_NAME_LABEL: f"svc-{i:05d}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "other-node"}
                          for ip in ips]}


class Netns:
    """Throwaway network namespaces, all deleted by close()."""

    def __init__(self) -> None:
        self.prefix = f"kpbench-{uuid.uuid4().hex[:6]}"
        self.names: list[str] = []

    def new(self) -> str:
        name = f"{self.prefix}-{len(self.names)}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        self.names.append(name)
        return name

    def delete(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if name in self.names:
            self.names.remove(name)

    def close(self) -> None:
        for n in list(self.names):
            self.delete(n)
        left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith(self.prefix)]
        if left:
            raise BenchError(f"network namespaces left behind: {left}")


async def raw_restore(ipt_backend: str, ns: str, text: str) -> float:
    """Seconds for iptables-restore (same binary and flags as the proxier) of `text` in `ns`."""
    args = ["ip", "netns", "exec", ns, f"iptables-{ipt_backend}-restore", "-w", "5", "--noflush", "--counters"]
    t0 = time.perf_counter()
    await proc.run(args, input=text.encode(), timeout=1800)
    return time.perf_counter() - t0


async def nat_rules(ns: str, backend: str) -> list[str]:
    out = (await proc.run(["ip", "netns", "exec", ns, f"iptables-{backend}-save", "-t", "nat"], timeout=600)).text
    return sorted(ln for ln in out.splitlines() if ln.startswith(("-A KUBE-", ":KUBE-")))


async def create_objects(client, start: int, stop: int) -> None:
    async def create(i: int) -> None:
        for attempt in range(10):
            try:
                await client.create("v1", "services", service(i), NS)
                break
            except ApiError as e:
                # concurrent creates can collide on the apiserver's cluster IP allocation (500 Conflict)
                if e.code != 500 or "Conflict" not in e.message or attempt == 9:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        await client.create("discovery.k8s.io/v1", "endpointslices",
                            endpoint_slice(i, [endpoint_ip(i * ENDPOINTS + j) for j in range(ENDPOINTS)]), NS)
    phase = await harness.run_workers(range(start, stop), 16, create)
    if phase.errors:
        raise BenchError(f"creating services failed {phase.errors} times: {phase.first_error}")


async def new_proxier(client, backend: str, ns: str) -> tuple[Proxier, SharedInformerFactory]:
    ipt = IPTables(backend, Executor(["ip", "netns", "exec", ns]))
    # sync_period long: the bench decides when a sync is full; min_sync_period unused (no runner loop)
    p = Proxier(ipt, ProxierConfig(hostname="bench-node", rules=R.RuleConfig(cluster_cidr="10.128.0.0/9"),
                                   sync_period=3600.0, min_sync_period=0.0, keep_restore_text=True))
    await p.prepare()
    factory = SharedInformerFactory(client)
    infs = register_informers(factory, p)
    factory.start()
    await asyncio.wait_for(wait_synced(infs, p), 600)
    return p, factory


async def measure(cp: ControlPlane) -> dict:
    client = cp.client(timeout=300.0)
    nets = Netns()
    meter = Meter({"apiserver": cp.api_pid, "etcd": cp.etcd_pid, "bench": os.getpid()})
    wall_measured = 0.0
    cpu: dict[str, float] = {}
    figures: list[dict] = []
    per_size: dict[str, dict] = {}
    latency: dict[str, dict] = {}
    try:
        backend = await detect_backend(Executor())
        log(f"iptables backend of this host: {backend}")
        await harness.ensure_namespace(client, NS)
        created = 0
        for size in SIZES:
            log(f"creating services {created}..{size} with {ENDPOINTS} endpoints each")
            await create_objects(client, created, size)
            created = size
            runs = []
            text = ""
            for rep in range(REPS):
                ours_first = rep % 2 == 0 or not text
                ns_ours, ns_raw = nets.new(), nets.new()
                p, factory = await new_proxier(client, backend, ns_ours)
                try:
                    meter.start()
                    t_phase = time.perf_counter()
                    run: dict = {}
                    if not ours_first:
                        run["raw_cold_s"] = await raw_restore(backend, ns_raw, text)
                    cold = await p.sync()
                    if not cold.ok or not cold.full:
                        raise BenchError(f"the proxier's first sync failed: {cold.error}")
                    text = p.last_restore_text
                    if ours_first:
                        run["raw_cold_s"] = await raw_restore(backend, ns_raw, text)
                    if not ours_first:
                        run["raw_warm_s"] = await raw_restore(backend, ns_raw, text)
                    warm = await p.sync(full=True)
                    if not warm.ok:
                        raise BenchError(f"the proxier's periodic full sync failed: {warm.error}")
                    if ours_first:
                        run["raw_warm_s"] = await raw_restore(backend, ns_raw, text)
                    used = meter.stop()
                    wall_measured += time.perf_counter() - t_phase
                    for k, v in used.items():
                        cpu[k] = cpu.get(k, 0.0) + v
                    run.update({"ours_first": ours_first, "cold_s": cold.total_s, "cold_generate_s": cold.generate_s,
                                "cold_restore_s": cold.restore_s, "warm_s": warm.total_s,
                                "warm_generate_s": warm.generate_s, "warm_restore_s": warm.restore_s,
                                "lines": cold.lines, "nat_chains": cold.nat_chains, "other_cores": round(
                                    used.get("other", 0.0) / max(1e-9, time.perf_counter() - t_phase), 3)})
                    runs.append(run)
                    log(f"{size} services, run {rep + 1}: full sync {cold.total_s:.2f}s (restore "
                        f"{cold.restore_s:.2f}s) vs raw {run['raw_cold_s']:.2f}s; periodic {warm.total_s:.2f}s vs "
                        f"raw {run['raw_warm_s']:.2f}s; {cold.lines:,} lines, {cold.nat_chains:,} nat chains")
                    if rep == 0:
                        ours_rules, raw_rules = await nat_rules(ns_ours, backend), await nat_rules(ns_raw, backend)
                        if ours_rules != raw_rules:
                            raise BenchError(f"the raw restore did not produce the proxier's ruleset "
                                             f"({len(ours_rules)} vs {len(raw_rules)} lines)")
                        expect_sep = size * ENDPOINTS
                        got_sep = sum(1 for ln in ours_rules if ln.startswith(":KUBE-SEP-"))
                        # (+ the apiserver's own `kubernetes` Service in default)
                        if not expect_sep <= got_sep <= expect_sep + 5:
                            raise BenchError(f"expected {expect_sep} KUBE-SEP chains, found {got_sep}")
                    if rep == 0 and CHANGES > 0:
                        latency.update(await endpoint_changes(client, p, size, backend, ns_ours))
                finally:
                    await factory.shutdown()
                    nets.delete(ns_ours)
                    nets.delete(ns_raw)
            single = None
            if size == SINGLE_TRANSACTION_AT and backend == "nft":
                ns = nets.new()
                try:
                    one_tx = "\n".join(_single_transaction(text)) + "\n"
                    single = await raw_restore(backend, ns, one_tx)
                    log(f"{size} services as one nat transaction: raw iptables-restore {single:.2f}s")
                finally:
                    nets.delete(ns)
            per_size[str(size)] = {"runs": runs, "single_transaction_raw_s": single}
            med = {k: statistics.median(r[k] for r in runs) for k in ("cold_s", "raw_cold_s", "warm_s", "raw_warm_s",
                                                                     "cold_generate_s", "cold_restore_s")}
            other = statistics.mean(r["other_cores"] for r in runs)
            g = f"{size:,} Services x {ENDPOINTS} endpoints"
            note = (f"median of {len(runs)}; {runs[0]['lines']:,} restore lines, {runs[0]['nat_chains']:,} nat "
                    f"chains; generation {med['cold_generate_s'] * 1000:.0f} ms")
            figures.append(_ratio_figure(f"full sync, {size:,} Services", med["cold_s"], med["raw_cold_s"], g, note,
                                         other))
            figures.append(_ratio_figure(f"periodic full sync, {size:,} Services", med["warm_s"], med["raw_warm_s"],
                                         g, "on top of the same rules; median", other))
            if single is not None:
                figures.append(figure(f"raw iptables-restore, {size:,} Services in one nat transaction", single, "s",
                                      group=g, note="for context, no target: why large nat writes are split",
                                      other_cores=other))
            if f"endpoint change @{size}" in latency:
                ch, raw = latency[f"endpoint change @{size}"], latency[f"raw restore of the same @{size}"]
                lines = latency.pop(f"_lines@{size}")
                figures.append(figure(f"one endpoint change at {size:,} Services (partial sync)", ch["p50"], "s",
                                      target="<= 100 ms", target_value=TARGET_CHANGE, higher_is_better=False,
                                      group=g, note=f"median of {ch['n']}, max {ch['max'] * 1000:.0f} ms; "
                                                    f"{lines} restore lines; raw iptables-restore of the same text: "
                                                    f"{raw['p50'] * 1000:.0f} ms", other_cores=other))
                figures.append(figure(f"partial sync beside raw iptables-restore, {size:,} Services", ch["p50"], "s",
                                      peer_name="raw iptables-restore", peer_value=raw["p50"], group=g,
                                      note="the same text restored again; no target", other_cores=other))
                e2e = latency[f"API write to rules in place @{size}"]
                figures.append(figure(f"API write to rules in place, {size:,} Services", e2e["p50"], "s", group=g,
                                      note=f"median of {e2e['n']}: PATCH, watch, informer, partial sync; no target",
                                      other_cores=other))
    finally:
        await client.close()
        nets.close()
    other = cpu.get("other", 0.0) / wall_measured if wall_measured else None
    for f in figures:
        print_figure(f)
    return {
        "title": f"kube-proxy iptables sync, {', '.join(f'{s:,}' for s in SIZES)} Services x {ENDPOINTS} endpoints",
        "description": (f"Services and EndpointSlices ({ENDPOINTS} ready endpoints each) in a real apiserver; the "
                        f"iptables proxier (in the bench process, fed by its informers) programs a fresh network "
                        f"namespace with the host's backend (iptables-{backend}). Full sync: the proxier's first "
                        f"sync into an empty namespace (rule generation + iptables-restore + jump rules) beside "
                        f"iptables-restore of the very text it wrote into another empty namespace, same binary and "
                        f"flags; periodic: a forced full sync on top of the same rules, beside the same text "
                        f"restored again. {REPS} runs per size, taking turns, medians. Endpoint change: one endpoint "
                        f"of one Service replaced through the API, the partial sync timed once the informer has it "
                        f"({CHANGES} times), beside iptables-restore of the very text it wrote; with the nft backend "
                        f"the kernel validates the whole nat table reachable from its base chains on every commit "
                        f"that adds a rule, so that peer is the floor for any partial write. Restores of more than "
                        f"1,000 nat chains are split into transactions of whole services (KUBE-MARK-MASQ first, "
                        f"KUBE-SERVICES and deletions last), because "
                        f"iptables-nft-restore --noflush is quadratic in the chains one transaction names."),
        "params": {"sizes": SIZES, "endpoints": ENDPOINTS, "reps": REPS, "changes": CHANGES, "backend": backend},
        "figures": figures,
        "latency": latency,
        "sizes": per_size,
        "measured_s": round(wall_measured, 2),
        "cpu_total_s": {k: round(v, 2) for k, v in cpu.items()},
        "other_cores": None if other is None else round(other, 3),
    }


def _single_transaction(text: str) -> list[str]:
    """The same restore input with all nat sections merged into one transaction."""
    lines = text.splitlines()
    out: list[str] = []
    decls: list[str] = []
    rules: list[str] = []
    deletes: list[str] = []
    table = None
    for ln in lines:
        if ln.startswith("*"):
            table = ln
            if table != "*nat":
                out.append(ln)
            continue
        if table == "*nat":
            if ln == "COMMIT":
                continue
            (decls if ln.startswith(":") else deletes if ln.startswith("-X") else rules).append(ln)
        else:
            out.append(ln)
    return out + ["*nat"] + decls + rules + deletes + ["COMMIT"]


def _ratio_figure(name: str, ours: float, raw: float, group: str, note: str, other: float | None) -> dict:
    f = figure(name, ours, "s", peer_name="raw iptables-restore", peer_value=raw, target="<= 1.3x raw",
               group=group, note=note, other_cores=other)
    f["pass"] = f["ratio"] is not None and f["ratio"] <= TARGET_RATIO
    return f


async def endpoint_changes(client, p: Proxier, size: int, backend: str, ns: str) -> dict:
    """CHANGES times: replace one endpoint of a random Service; time the partial sync, then
    iptables-restore of the very text it wrote (the same kernel work again: a peer)."""
    rng = random.Random(42 + size)
    syncs, e2e, raws, restores = [], [], [], []
    for k in range(CHANGES):
        i = rng.randrange(size)
        ips = [endpoint_ip(i * ENDPOINTS + j) for j in range(ENDPOINTS)]
        ips[rng.randrange(ENDPOINTS)] = endpoint_ip(size * ENDPOINTS + 1000 + k)
        t0 = time.perf_counter()
        await client.patch("discovery.k8s.io/v1", "endpointslices", NS, f"svc-{i:05d}-abcde",
                           {"endpoints": endpoint_slice(i, ips)["endpoints"]})
        while p.ep_tracker.pending == 0:
            if time.perf_counter() - t0 > 30:
                raise BenchError("the informer did not deliver an EndpointSlice update within 30s")
            await asyncio.sleep(0.001)
        stats = await p.sync()
        if not stats.ok or stats.full:
            raise BenchError(f"the partial sync failed: {stats.error or 'it was a full sync'}")
        e2e.append(time.perf_counter() - t0)
        syncs.append(stats.total_s)
        restores.append(stats.restore_s)
        raws.append(await raw_restore(backend, ns, p.last_restore_text))
        await asyncio.sleep(0.1)
    log(f"endpoint change at {size} services: partial sync median {statistics.median(syncs) * 1000:.1f} ms "
        f"(its iptables-restore {statistics.median(restores) * 1000:.1f} ms), raw iptables-restore of the same "
        f"text {statistics.median(raws) * 1000:.1f} ms; API write to rules {statistics.median(e2e) * 1000:.1f} ms; "
        f"{p.last_stats.lines} restore lines")
    return {f"endpoint change @{size}": summarize(syncs), f"raw restore of the same @{size}": summarize(raws),
            f"API write to rules in place @{size}": summarize(e2e), f"_lines@{size}": p.last_stats.lines}


def run_once(quiet_wait: float | None) -> dict:
    quiet = harness.wait_quiet(quiet_wait)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with ControlPlane(NAME) as cp:
        result = asyncio.run(measure(cp))
    result.update({"wall_total_s": round(time.perf_counter() - t0, 1),
                   "loadavg_before": [round(x, 2) for x in load_before], "quiet_wait": quiet, "benchmark": NAME,
                   "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "machine": harness.machine_info()})
    return result


def main() -> int:
    return harness.main_loop(NAME, lambda quiet: run_once(quiet_wait=quiet),
                             (BenchError, proc.CommandError, RuntimeError, OSError, asyncio.TimeoutError), needs_root="network namespaces and iptables")


if __name__ == "__main__":
    sys.exit(main())
