"""Time for a 1,000-replica Deployment to become fully available, through the real apiserver, etcd,
kubelab-controller-manager (Deployment and ReplicaSet controllers) and kubelab-scheduler, on hollow
nodes that make a bound pod Running and Ready at once.

Peer, in the same run on the same cluster: the same 1,000 pods created directly by this script
(32 requests in flight, as the scheduler bench) and bound by the same scheduler, timed from the first
create to the last pod Ready. The ratio says what the controllers add on top of the API and the
scheduler; the issue names no limit, so the figure has no pass/fail.

Environment: BENCH_DEPLOY_REPLICAS (default 1000), BENCH_DEPLOY_NODES (default 100); BENCH_QUIET_WAIT,
BENCH_MAX_OTHER_CORES, BENCH_ATTEMPTS, BENCH_BUDGET_S as in bench/harness.py.
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
from harness import ControlPlane, CpuMeter, figure, log, print_figure
from kubelab.lab.controlplane import spawn, stop

NAME = "deployment"
REPLICAS = int(os.environ.get("BENCH_DEPLOY_REPLICAS", "1000"))
NODES = int(os.environ.get("BENCH_DEPLOY_NODES", "100"))
CONCURRENCY = 32
BIN = Path(sys.executable).parent


class BenchError(Exception):
    pass


def template() -> dict:
    return {"metadata": {"labels": {"app": "bench"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "registry.local/pause:3.9",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not happen within {timeout:.0f}s")
        await asyncio.sleep(0.5)


async def until_ready(client, ns: str, rv: str, n: int, timeout: float) -> float:
    """Wait until n pods of the namespace are Ready; the perf_counter time the last one was seen."""
    ready: set[str] = set()
    done = asyncio.Event()
    last = [0.0]

    async def watch() -> None:
        async with client.watch("v1", "pods", ns, resource_version=rv, timeout_seconds=3600) as w:
            async for etype, obj in w:
                if etype in ("ADDED", "MODIFIED") and _ready(obj):
                    ready.add(obj["metadata"]["name"])
                    if len(ready) >= n:
                        last[0] = time.perf_counter()
                        done.set()
                        return
    task = asyncio.create_task(watch())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        raise BenchError(f"only {len(ready)} of {n} pods Ready within {timeout:.0f}s") from None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return last[0]


async def measure(cp: ControlPlane) -> dict:
    tmp = cp.tmp
    kc = str(cp.kubeconfig)
    hollow = spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", str(NODES),
                    "--prefix", "bench", "--pod-ready-delay", "0s", "--max-pods", "250"], tmp / "hollow.log")
    sched = spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--leader-elect=false", "--secure-port", "0"],
                  tmp / "scheduler.log")
    cm = spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers",
                "replicaset,deployment", "--leader-elect=false", "--secure-port", "0"], tmp / "cm.log")
    client = cp.client()
    try:
        async def registered() -> bool:
            for p, lg in ((hollow, "hollow.log"), (sched, "scheduler.log"), (cm, "cm.log")):
                if p.poll() is not None:
                    raise BenchError(f"{lg[:-4]} exited: {(tmp / lg).read_text()[-500:]}")
            lst = await client.list("v1", "nodes")
            return len([n for n in lst["items"] if (n.get("status") or {}).get("allocatable")]) >= NODES \
                and "caches synced" in (tmp / "scheduler.log").read_text()
        await wait_for(registered, 300, f"{NODES} hollow nodes and the scheduler")
        for ns in ("direct", "deploy"):
            await harness.ensure_namespace(client, ns)
        meter = CpuMeter({"apiserver": cp.api_pid, "etcd": cp.etcd_pid, "bench": os.getpid(),
                          "scheduler": sched.pid, "controller-manager": cm.pid, "hollow-nodes": hollow.pid})

        # peer: the pods created directly
        rv = (await client.list("v1", "pods", "direct", limit=1))["metadata"]["resourceVersion"]
        waiter = asyncio.create_task(until_ready(client, "direct", rv, REPLICAS, max(300.0, REPLICAS / 5)))
        await asyncio.sleep(0.3)
        meter.start()
        t0 = time.perf_counter()
        it = iter(range(REPLICAS))

        async def creator() -> None:
            for i in it:
                await client.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod",
                                                   "metadata": {"name": f"p-{i:05d}", **template()["metadata"]},
                                                   "spec": template()["spec"]}, "direct")
        await asyncio.gather(*(creator() for _ in range(CONCURRENCY)))
        direct = await waiter - t0
        cpu_direct = meter.stop()
        log(f"{REPLICAS} pods created directly: all Ready after {direct:.2f}s; cpu {cpu_direct}")
        await client.delete_collection("v1", "pods", "direct")

        # the Deployment
        rv = (await client.list("v1", "pods", "deploy", limit=1))["metadata"]["resourceVersion"]
        waiter = asyncio.create_task(until_ready(client, "deploy", rv, REPLICAS, max(300.0, REPLICAS / 5)))
        await asyncio.sleep(0.3)
        meter.start()
        t0 = time.perf_counter()
        await client.create("apps/v1", "deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "bench"}}, "template": template()}},
            "deploy")
        await waiter

        async def available() -> bool:
            st = (await client.get("apps/v1", "deployments", "deploy", "bench")).get("status") or {}
            return st.get("availableReplicas") == REPLICAS
        await wait_for(available, 120, "the Deployment's status showing every replica available")
        deploy = time.perf_counter() - t0
        cpu_deploy = meter.stop()
        log(f"Deployment of {REPLICAS}: fully available after {deploy:.2f}s; cpu {cpu_deploy}")
        other = cpu_deploy.get("other", 0.0) / deploy if deploy else 0.0
        f = figure(f"time for a {REPLICAS:,}-replica Deployment to become fully available ({NODES} hollow nodes)",
                   deploy, "s", peer_name=f"the same {REPLICAS:,} pods created directly", peer_value=direct,
                   higher_is_better=False, group="Controllers",
                   note="creation to status.availableReplicas, through the apiserver, controller-manager and scheduler",
                   other_cores=other)
        print_figure(f)
        return {"title": "Deployment rollout time on hollow nodes",
                "description": ("A Deployment created through the apiserver; kubelab-controller-manager creates its "
                                "ReplicaSet and pods, kubelab-scheduler binds them, hollow nodes make them Ready at "
                                "once. Peer: the same pods created directly in the same run."),
                "figures": [f], "direct_s": round(direct, 2), "deployment_s": round(deploy, 2),
                "cpu_s": {"direct": cpu_direct, "deployment": cpu_deploy}, "other_cores": round(other, 3)}
    finally:
        await client.close()
        for p in (cm, sched, hollow):
            stop(p, 30)


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
