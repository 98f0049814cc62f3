"""Scheduling throughput: pods from creation to bound, through the real apiserver and etcd, onto
hollow nodes.

A fresh etcd and kubelab-apiserver; `kubelab hollow-nodes` registers the nodes (8 CPU, 32 GiB, 110
pods each) and renews their Leases every 10 s, as kubelets do; kubelab-scheduler runs with the
default profile. The bench creates the pods (100m CPU, 128 MiB each; 32 requests in flight) and
watches them: a pod counts as scheduled when its watch event first shows .spec.nodeName. The
throughput is pods / (last bound - first created); the latency of each pod is bound - created.
Two sizes: BENCH_SCHED_SIZES (default "1000x3000,5000x10000": nodes x pods). The hollow nodes
leave pods Pending-with-a-node (their ready delay is an hour), so only scheduling is measured.

Target: >= 100 pods/s at 1,000 nodes (the upstream CL2 threshold). Reported beside upstream's
in-process scheduler_perf figure in Go (about 680 pods/s at 5,000 nodes).
Environment: BENCH_SCHED_SIZES; BENCH_QUIET_WAIT, BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS,
BENCH_BUDGET_S as in bench/harness.py. Everything started here is stopped and removed.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import ControlPlane, CpuMeter, figure, log, print_figure, summarize
from kubelab.lab.controlplane import spawn, stop

NAME = "scheduler"
SIZES = [tuple(int(x) for x in s.split("x")) for s in
         os.environ.get("BENCH_SCHED_SIZES", "1000x3000,5000x10000").split(",") if s.strip()]
TARGET = 100.0
UPSTREAM_5000 = 680.0
CONCURRENCY = 32
NS = "schedbench"
BIN = Path(sys.executable).parent


class BenchError(Exception):
    pass


def pod(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i:05d}", "namespace": NS},
            "spec": {"containers": [{"name": "c", "image": "registry.local/pause:3.9",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(1.0)


async def measure_size(cp: ControlPlane, nodes: int, pods: int) -> dict:
    tmp = cp.tmp
    # the nodes go when hollow-nodes stops, so each size sees only its own
    hollow = spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", str(cp.kubeconfig), "--count", str(nodes),
                    "--prefix", f"n{nodes}", "--pod-ready-delay", "1h", "--node-labels", f"bench-size={nodes}"],
                   tmp / f"hollow-{nodes}.log")
    sched = None
    client = cp.client()
    try:
        async def registered() -> bool:
            if hollow.poll() is not None:
                raise BenchError(f"hollow-nodes exited: {(tmp / f'hollow-{nodes}.log').read_text()[-500:]}")
            lst = await client.list("v1", "nodes", label_selector=f"bench-size={nodes}")
            ready = sum(1 for n in lst["items"] if (n.get("status") or {}).get("allocatable"))
            return ready >= nodes
        t_reg = time.perf_counter()
        await wait_for(registered, 600, f"registering {nodes} hollow nodes")
        log(f"{nodes} hollow nodes registered in {time.perf_counter() - t_reg:.1f}s")
        sched_log = tmp / f"scheduler-{nodes}.log"
        sched = spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", str(cp.kubeconfig), "--leader-elect=false",
                       "--secure-port", "0"], sched_log)

        async def synced() -> bool:
            if sched.poll() is not None:
                raise BenchError(f"the scheduler exited: {sched_log.read_text()[-500:]}")
            return "caches synced" in sched_log.read_text()
        await wait_for(synced, 300, "the scheduler's caches syncing")
        try:
            await client.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": NS}})
        except Exception:
            pass
        lst = await client.list("v1", "pods", NS, limit=1)
        rv = lst["metadata"]["resourceVersion"]
        created: dict[str, float] = {}
        bound: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            async with client.watch("v1", "pods", NS, resource_version=rv, timeout_seconds=3600) as w:
                async for etype, obj in w:
                    if etype in ("ADDED", "MODIFIED") and (obj.get("spec") or {}).get("nodeName"):
                        name = obj["metadata"]["name"]
                        if name not in bound:
                            bound[name] = time.perf_counter()
                            if len(bound) >= pods:
                                done.set()
                                return
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        meter = CpuMeter({"apiserver": cp.api_pid, "etcd": cp.etcd_pid, "bench": os.getpid(),
                          "scheduler": sched.pid, "hollow-nodes": hollow.pid})
        meter.start()
        t0 = time.perf_counter()
        it = iter(range(pods))

        async def creator() -> None:
            for i in it:
                created[f"p-{i:05d}"] = time.perf_counter()
                await client.create("v1", "pods", pod(i), NS)
        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
        t_created = time.perf_counter()
        try:
            await asyncio.wait_for(done.wait(), timeout=max(120.0, pods / 10))
        except asyncio.TimeoutError:
            raise BenchError(f"only {len(bound)} of {pods} pods were bound; scheduler log: "
                             f"{sched_log.read_text()[-500:]}") from None
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        wall = max(bound.values()) - t0
        cpu = meter.stop()
        lat = [bound[n] - created[n] for n in bound if n in created]
        rate = pods / wall
        log(f"{nodes} nodes / {pods} pods: {rate:.1f} pods/s (created in {t_created - t0:.1f}s, all bound after "
            f"{wall:.1f}s); latency p50 {summarize(lat)['p50'] * 1000:.0f} ms p99 {summarize(lat)['p99'] * 1000:.0f} ms; "
            f"cpu {cpu}")
        await client.delete_collection("v1", "pods", NS)
        return {"rate": rate, "wall_s": round(wall, 2), "create_s": round(t_created - t0, 2),
                "latency": summarize(lat), "cpu_s": cpu, "other": cpu.get("other", 0.0) / wall}
    finally:
        await client.close()
        for p in (sched, hollow):
            if p is not None:
                stop(p, 30)


async def measure(cp: ControlPlane) -> dict:
    figures, details, others = [], {}, []
    for nodes, pods in SIZES:
        r = await measure_size(cp, nodes, pods)
        details[f"{nodes}x{pods}"] = r
        others.append(r["other"])
        if nodes == 1000:
            f = figure(f"scheduling throughput, {nodes} hollow nodes, {pods} pods", r["rate"], "pods/s",
                       target=f">= {TARGET:g} pods/s", target_value=TARGET, group="Scheduling",
                       note="creation to bound, through the apiserver", other_cores=r["other"])
        else:
            f = figure(f"scheduling throughput, {nodes} hollow nodes, {pods} pods", r["rate"], "pods/s",
                       peer_name="upstream scheduler_perf (Go, in-process, 5,000 nodes)", peer_value=UPSTREAM_5000,
                       group="Scheduling", note="creation to bound, through the apiserver", other_cores=r["other"])
        print_figure(f)
        figures.append(f)
    return {"title": "Scheduling throughput on hollow nodes",
            "description": ("Pods created through the apiserver and bound by kubelab-scheduler (default profile) onto "
                            "`kubelab hollow-nodes` nodes that renew their Leases every 10 s; throughput from the "
                            "first creation to the last binding seen by a watch."),
            "figures": figures, "sizes": details, "other_cores": round(max(others), 3) if others else 0.0,
            "latency": {f"create to bound @{k}": v["latency"] for k, v in details.items()}}


def run_once(quiet_wait: float | None) -> dict:
    quiet = harness.wait_quiet(quiet_wait)
    t0 = time.perf_counter()
    with ControlPlane(NAME) as cp:
        result = asyncio.run(measure(cp))
    result.update({"wall_total_s": round(time.perf_counter() - t0, 1), "quiet_wait": quiet, "benchmark": NAME,
                   "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "machine": harness.machine_info()})
    return result


def main() -> int:
    return harness.main_loop(NAME, lambda quiet: run_once(quiet_wait=quiet),
                             (BenchError, RuntimeError, OSError, subprocess.SubprocessError))


if __name__ == "__main__":
    sys.exit(main())
