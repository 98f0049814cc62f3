"""Two kubelab-controller-managers and two kubelab-schedulers on one Lease each: SIGKILL the leader
and the other takes over within the lease duration, and replica counts stay exact — every pod
ADDED event in the namespace is counted, so a double creation would show."""
from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.api.timefmt import parse_time
from kubelab.client.leaderelection import JITTER_FACTOR
from kubelab.client.rest import Client
from kubelab.lab.controlplane import free_port, spawn, stop

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
LEASE = ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
         "--leader-elect-retry-period", "500ms"]
LEASE_DURATION = 4.0
RETRY_PERIOD = 0.5


def _leader(procs: dict[str, tuple], logs: Path) -> str:
    """The name of the process whose log says it acquired the lease (and that still runs)."""
    for name, (p, log) in procs.items():
        if p.poll() is None and "successfully acquired lease" in log.read_text():
            return name
    return ""


def test_leader_failover_keeps_replica_counts_exact(control_plane, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns, profile = f"failover-{uid}", f"fo-sched-{uid}"
    kc = str(control_plane.kubeconfig)
    (tmp_path / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                         f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {profile}\n")
    procs: dict[str, tuple] = {}
    for i in (1, 2):
        log = tmp_path / f"cm{i}.log"
        procs[f"cm{i}"] = (spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc,
                                  "--controllers", "replicaset,deployment,garbagecollector",
                                  "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0", *LEASE], log),
                           log)
        log = tmp_path / f"sched{i}.log"
        procs[f"sched{i}"] = (spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config",
                                     str(tmp_path / "sched.yaml"), "--leader-elect-resource-name", f"ks-{uid}",
                                     "--secure-port", str(free_port()), "--bind-address", "127.0.0.1", *LEASE], log),
                              log)
    hollow = spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "4", "--prefix", f"f{uid}",
                    "--pod-ready-delay", "200ms", "--node-labels", f"fo-test={uid}"], tmp_path / "hollow.log")

    async def lease_holder(c: Client, name: str) -> tuple[str, float]:
        spec = (await c.get("coordination.k8s.io/v1", "leases", "kube-system", name)).get("spec") or {}
        return spec.get("holderIdentity") or "", parse_time(spec.get("acquireTime")) or 0.0

    async def main() -> None:
        async with Client.from_kubeconfig(kc, component="failover-test") as c:
            await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            added: set[str] = set()
            rv = (await c.list("v1", "pods", ns))["metadata"]["resourceVersion"]

            async def count():
                async with c.watch("v1", "pods", ns, resource_version=rv) as w:
                    async for etype, pod in w:
                        if etype == "ADDED":
                            added.add(pod["metadata"]["uid"])
            watcher = asyncio.create_task(count())
            dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 30, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"schedulerName": profile, "nodeSelector": {"fo-test": uid},
                                                  "terminationGracePeriodSeconds": 0,
                                                  "containers": [{"name": "c", "image": "nginx"}]}}}}
            await c.create("apps/v1", "deployments", dep, ns)

            async def ready(n: int) -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    s = (await c.get("apps/v1", "deployments", ns, "web")).get("status") or {}
                    if s.get("availableReplicas") == n and s.get("replicas") == n:
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError(f"not {n} available replicas within 60 s: {s}")
            await ready(30)

            for kind, lease in (("cm", f"kcm-{uid}"), ("sched", f"ks-{uid}")):
                leader = _leader({k: v for k, v in procs.items() if k.startswith(kind)}, tmp_path)
                assert leader, f"no {kind} leader"
                holder, _ = await lease_holder(c, lease)
                # scale up and kill the leader at once: the successor finishes the job, exactly
                await c.patch("apps/v1", "deployments", ns, "web",
                              {"spec": {"replicas": 60 if kind == "cm" else 90}})
                procs[leader][0].send_signal(signal.SIGKILL)
                procs[leader][0].wait()
                killed = time.time()
                deadline = time.monotonic() + 30
                rtt = 0.0                   # the slowest lease read meanwhile, under the same load
                while time.monotonic() < deadline:
                    t0 = time.monotonic()
                    now_holder, acquired = await lease_holder(c, lease)
                    rtt = max(rtt, time.monotonic() - t0)
                    if now_holder and now_holder != holder:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"{kind}: nobody took the lease over")
                took = acquired - killed
                # a candidate tries every retry period x (1 + 1.2 x rand) (upstream's JitterUntil with
                # jitter 1.2: up to 2.2 retry periods apart), so it sees the last renewal up to 2.2 retry
                # periods late and the lease's expiry up to 2.2 retry periods late again: lease duration
                # + 2 x 2.2 x retry period is the bound, plus the two lease reads that found the renewal
                # and the expiry (as slow as ours were meanwhile) and 0.3 s of scheduling slack
                bound = LEASE_DURATION + 2 * (1 + JITTER_FACTOR) * RETRY_PERIOD + 2 * rtt + 0.3
                assert took <= bound, f"{kind}: the successor took over after {took:.2f}s (bound {bound:.2f}s)"
                await ready(60 if kind == "cm" else 90)
            await asyncio.sleep(1.5)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            assert len(added) == 90, f"{len(added)} pods were created for 90 replicas"
            assert len((await c.list("v1", "pods", ns))["items"]) == 90
            await c.delete("v1", "namespaces", None, ns)

    try:
        asyncio.run(main())
    finally:
        for p, _ in procs.values():
            stop(p, 30)
        stop(hollow, 30)
