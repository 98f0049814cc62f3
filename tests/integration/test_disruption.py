"""PodDisruptionBudgets end to end: the disruption controller keeps their status, the eviction
subresource refuses with upstream's 429 when no disruption is allowed and spends one atomically
when it is, and the real `kubectl drain` empties a hollow node while a Deployment's ready pods never
drop below the budget (evictions are retried until the replacements are Ready elsewhere)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from kubelab.client.rest import ApiError, Client
from polling import until

pytestmark = pytest.mark.integration

CONTROLLERS = "replicaset,deployment,disruption"


def _ready(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def test_budget_eviction_and_drain(control_plane, kubectl, hollow_cluster):
    ns = f"pdb-{uuid.uuid4().hex[:5]}"
    with hollow_cluster(CONTROLLERS, nodes=3) as cl:
        async def setup():
            async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="pdb-test") as c:
                await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                await c.create("apps/v1", "deployments", {
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}}, "spec": cl.pod_spec()}}}, ns)
                await c.create("policy/v1", "poddisruptionbudgets", {
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}, ns)

                async def budget():
                    st = (await c.get("policy/v1", "poddisruptionbudgets", ns, "web")).get("status") or {}
                    return st if st.get("currentHealthy") == 4 and st.get("disruptionsAllowed") == 1 else None
                st = await until(budget, 60, "the budget allowing one disruption")
                assert (st["desiredHealthy"], st["expectedPods"]) == (3, 4)
                # two evictions at once: exactly one is granted (bare pods: nothing replaces the evicted one)
                for i in range(4):
                    await c.create("v1", "pods", {"apiVersion": "v1", "kind": "Pod",
                                                  "metadata": {"name": f"bare-{i}", "labels": {"app": "bare"}},
                                                  "spec": cl.pod_spec()}, ns)
                await c.create("policy/v1", "poddisruptionbudgets", {
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "bare"},
                    "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "bare"}}}}, ns)

                async def bare_budget():
                    st = (await c.get("policy/v1", "poddisruptionbudgets", ns, "bare")).get("status") or {}
                    return st if st.get("currentHealthy") == 4 and st.get("disruptionsAllowed") == 1 else None
                await until(bare_budget, 60, "the bare pods' budget allowing one disruption")

                def evict(name):
                    return c.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction",
                                     body={"apiVersion": "policy/v1", "kind": "Eviction",
                                           "metadata": {"name": name, "namespace": ns}})
                results = await asyncio.gather(*(evict(f"bare-{i}") for i in range(3)), return_exceptions=True)
                refused = [r for r in results if isinstance(r, ApiError)]
                assert len(refused) == 2 and all(r.code == 429 for r in refused), results
                assert refused[0].message == "Cannot evict pod as it would violate the pod's disruption budget."
                assert refused[0].causes[0]["reason"] == "DisruptionBudget"
                assert refused[0].causes[0]["message"] in (
                    "The disruption budget bare needs 3 healthy pods and has 4 currently",
                    "The disruption budget bare needs 3 healthy pods and has 3 currently")

                async def settled():
                    st = (await c.get("policy/v1", "poddisruptionbudgets", ns, "bare")).get("status") or {}
                    return st if st.get("currentHealthy") == 3 and st.get("disruptionsAllowed") == 0 \
                        and not st.get("disruptedPods") else None
                await until(settled, 60, "the budget at 3 healthy, none allowed")
                assert len((await c.list("v1", "pods", ns, label_selector="app=bare"))["items"]) == 3
                await c.delete_collection("v1", "pods", ns, label_selector="app=bare")
        asyncio.run(setup())

        node = kubectl.json("get", "pods", "-n", ns)["items"][0]["spec"]["nodeName"]
        floor: list[int] = []

        async def drain():
            async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="pdb-test") as c:
                listing = await c.list("v1", "pods", ns)
                pods = {p["metadata"]["name"]: p for p in listing["items"]}

                async def watch():
                    async with c.watch("v1", "pods", ns, resource_version=listing["metadata"]["resourceVersion"]) as w:
                        async for etype, pod in w:
                            if etype == "DELETED":
                                pods.pop(pod["metadata"]["name"], None)
                            elif etype != "BOOKMARK":
                                pods[pod["metadata"]["name"]] = pod
                            floor.append(sum(_ready(p) for p in pods.values()))
                watcher = asyncio.create_task(watch())
                out = await asyncio.to_thread(kubectl, "drain", node, "--ignore-daemonsets", "--timeout=90s",
                                              timeout=120)
                await asyncio.sleep(0.5)
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                return out
        out = asyncio.run(drain())
        assert f"node/{node} drained" in out
        assert floor and min(floor) >= 3, f"ready pods dropped to {min(floor)} below the budget during the drain"
        left = [p for p in kubectl.json("get", "pods", "-n", ns)["items"] if p["spec"].get("nodeName") == node]
        assert not left
        assert kubectl.json("get", "node", node)["spec"]["unschedulable"] is True
        kubectl("delete", "namespace", ns, "--wait=false")
