"""The Deployment controller, the garbage collector and the namespace controller in
kubelab-controller-manager against the real apiserver, with the real scheduler and hollow nodes
making pods Running and Ready, driven through the real kubectl where a user would use it:

* a 100-replica Deployment rolls v1 -> v2 with maxUnavailable=0 and never has fewer than 100 ready
  pods (watched continuously); `kubectl rollout status`, `history` and `undo` work;
* Recreate, pause/resume and scaling 3 -> 10 -> 2;
* Foreground deletion removes pods and ReplicaSets before the Deployment; Orphan leaves the pods;
  Background removes everything;
* deleting a namespace empties it, and a finalizer left on its content holds it with upstream's
  conditions until removed.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from kubelab.client.rest import ApiError, Client
from polling import until

pytestmark = pytest.mark.integration

CONTROLLERS = "replicaset,deployment,garbagecollector,namespace"


def deployment(name: str, replicas: int, image: str, cl, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": cl.pod_spec(containers=[{"name": "c", "image": image}])}, **spec}}


def client(cp) -> Client:
    return Client.from_kubeconfig(str(cp.kubeconfig), component="deployment-test")


async def make_namespace(c: Client, ns: str) -> None:
    await c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})


def _ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def test_rolling_update_keeps_every_replica_available(control_plane, kubectl, hollow_cluster):
    ns = f"roll-{uuid.uuid4().hex[:5]}"

    async def rollout(cl) -> tuple[int, int]:
        async with client(control_plane) as c:
            await make_namespace(c, ns)
            d = deployment("web", 100, "nginx:1.0", cl,
                           strategy={"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}})
            await c.create("apps/v1", "deployments", d, ns)

            async def available():
                s = (await c.get("apps/v1", "deployments", ns, "web")).get("status") or {}
                return s if s.get("availableReplicas") == 100 and s.get("updatedReplicas") == 100 else None
            await until(available, 120, "100 available replicas of v1")
            # every pod event from here on: ready, not deleting pods never fewer than 100
            listing = await c.list("v1", "pods", ns)
            pods = {p["metadata"]["name"]: p for p in listing["items"]}
            counts = [sum(_ready(p) for p in pods.values())]

            async def watch():
                async with c.watch("v1", "pods", ns, resource_version=listing["metadata"]["resourceVersion"]) as w:
                    async for etype, pod in w:
                        if etype == "BOOKMARK":
                            continue
                        if etype == "DELETED":
                            pods.pop(pod["metadata"]["name"], None)
                        else:
                            pods[pod["metadata"]["name"]] = pod
                        counts.append(sum(_ready(p) for p in pods.values()))
            watcher = asyncio.create_task(watch())
            await c.patch("apps/v1", "deployments", ns, "web",
                          {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2.0"}]}}}},
                          "strategic")
            out = await asyncio.to_thread(kubectl, "rollout", "status", "deployment/web", "-n", ns,
                                          "--timeout=180s", timeout=200)
            assert 'deployment "web" successfully rolled out' in out

            async def only_v2():
                items = [p for p in pods.values()]
                return len(items) == 100 and all(p["spec"]["containers"][0]["image"] == "nginx:2.0" for p in items)
            await until(only_v2, 60, "only the 100 v2 pods left")
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            return min(counts), len(counts)

    with hollow_cluster(CONTROLLERS, nodes=10) as cl:
        lowest, events = asyncio.run(rollout(cl))
        assert events > 300, f"the watch saw only {events} pod events"
        assert lowest >= 100, f"ready pods dropped to {lowest} during a maxUnavailable=0 rollout"

        d = kubectl.json("get", "deployment", "web", "-n", ns)
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        conds = {x["type"]: x for x in d["status"]["conditions"]}
        assert conds["Available"]["status"] == "True" and conds["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
        assert d["status"]["updatedReplicas"] == d["status"]["availableReplicas"] == 100
        rss = kubectl.json("get", "replicasets", "-n", ns)["items"]
        assert len(rss) == 2
        by_rev = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in rss}
        assert by_rev["1"]["spec"]["replicas"] == 0 and by_rev["2"]["spec"]["replicas"] == 100
        h = by_rev["2"]["metadata"]["labels"]["pod-template-hash"]
        assert by_rev["2"]["metadata"]["name"] == f"web-{h}"
        assert by_rev["2"]["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h

        hist = kubectl("rollout", "history", "deployment/web", "-n", ns)
        assert "REVISION" in hist and "\n1 " in hist and "\n2 " in hist

        kubectl("rollout", "undo", "deployment/web", "-n", ns)
        kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=180s", timeout=200)
        d = kubectl.json("get", "deployment", "web", "-n", ns)
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.0"
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        first = kubectl.json("get", "replicaset", by_rev["1"]["metadata"]["name"], "-n", ns)
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        assert first["spec"]["replicas"] == 100
        events = kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Deployment")
        assert "ScalingReplicaSet" in events and f"Scaled up replica set web-{h} from 0 to 25" in events
        kubectl("delete", "namespace", ns, "--wait=false")


def test_recreate_pause_resume_and_scaling(control_plane, kubectl, hollow_cluster):
    ns = f"recreate-{uuid.uuid4().hex[:5]}"

    async def main(cl):
        async with client(control_plane) as c:
            await make_namespace(c, ns)
            await c.create("apps/v1", "deployments", deployment("app", 3, "nginx:1.0", cl,
                                                                strategy={"type": "Recreate"}), ns)

            def settled(n, image):
                async def f():
                    s = (await c.get("apps/v1", "deployments", ns, "app")).get("status") or {}
                    items = [p for p in (await c.list("v1", "pods", ns))["items"]]
                    return (s.get("availableReplicas") == n and s.get("updatedReplicas") == n and s.get("replicas") == n
                            and len(items) == n and all(p["spec"]["containers"][0]["image"] == image
                                                        for p in items)) or None
                return f
            await until((settled(3, "nginx:1.0")), 60, "3 v1 pods")
            # Recreate: the old pods are all gone before any new one exists
            listing = await c.list("v1", "pods", ns)
            seen: list[tuple[str, str]] = []

            async def watch():
                async with c.watch("v1", "pods", ns, resource_version=listing["metadata"]["resourceVersion"]) as w:
                    async for etype, pod in w:
                        if etype in ("ADDED", "DELETED"):
                            seen.append((etype, pod["spec"]["containers"][0]["image"]))
            watcher = asyncio.create_task(watch())
            await c.patch("apps/v1", "deployments", ns, "app",
                          {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2.0"}]}}}},
                          "strategic")
            await until((settled(3, "nginx:2.0")), 60, "3 v2 pods")
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            first_add = next(i for i, e in enumerate(seen) if e == ("ADDED", "nginx:2.0"))
            assert [e for e in seen[:first_add] if e[0] == "DELETED"] == [("DELETED", "nginx:1.0")] * 3, seen

            # scaling 3 -> 10 -> 2 converges
            for n in (10, 2):
                await c.patch("apps/v1", "deployments", ns, "app", {"spec": {"replicas": n}})
                await until((settled(n, "nginx:2.0")), 60, f"{n} replicas")

            # paused: a template change does nothing until resumed
            kubectl("rollout", "pause", "deployment/app", "-n", ns)
            await c.patch("apps/v1", "deployments", ns, "app",
                          {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:3.0"}]}}}},
                          "strategic")

            async def paused():
                d = await c.get("apps/v1", "deployments", ns, "app")
                cond = {x["type"]: x for x in (d.get("status") or {}).get("conditions") or []}.get("Progressing")
                return cond if cond and cond["reason"] == "DeploymentPaused" and cond["status"] == "Unknown" else None
            await until(paused, 30, "Progressing Unknown DeploymentPaused")
            await asyncio.sleep(1.5)
            items = (await c.list("v1", "pods", ns))["items"]
            assert len(items) == 2 and all(p["spec"]["containers"][0]["image"] == "nginx:2.0" for p in items)
            assert len((await c.list("apps/v1", "replicasets", ns))["items"]) == 2
            kubectl("rollout", "resume", "deployment/app", "-n", ns)
            await until((settled(2, "nginx:3.0")), 60, "2 v3 pods after resume")
            d = await c.get("apps/v1", "deployments", ns, "app")
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    with hollow_cluster(CONTROLLERS, nodes=3) as cl:
        asyncio.run(main(cl))
        kubectl("delete", "namespace", ns, "--wait=false")


def test_foreground_orphan_and_background_deletion(control_plane, kubectl, hollow_cluster):
    ns = f"gc-{uuid.uuid4().hex[:5]}"

    async def main(cl):
        async with client(control_plane) as c:
            await make_namespace(c, ns)
            for name in ("fg", "orphan", "bg"):
                await c.create("apps/v1", "deployments", deployment(name, 4, "nginx", cl), ns)

            async def ready():
                items = (await c.list("v1", "pods", ns))["items"]
                return len([p for p in items if _ready(p)]) == 12 or None
            await until(ready, 60, "12 ready pods")

            # Foreground: pods and the ReplicaSet go before the Deployment
            listing = await c.list("v1", "pods", ns)
            gone: list[tuple[str, str]] = []

            async def watch(api_version, resource, rv):
                async with c.watch(api_version, resource, ns, resource_version=rv) as w:
                    async for etype, obj in w:
                        if etype == "DELETED":
                            gone.append((resource, obj["metadata"]["name"]))
            rv = listing["metadata"]["resourceVersion"]
            watchers = [asyncio.create_task(watch(a, r, rv)) for a, r in
                        (("v1", "pods"), ("apps/v1", "replicasets"), ("apps/v1", "deployments"))]
            await asyncio.sleep(0.3)
            out = await asyncio.to_thread(kubectl, "delete", "deployment", "fg", "-n", ns, "--cascade=foreground",
                                          "--wait=false")
            assert 'deployment.apps "fg" deleted' in out
            d = await c.get("apps/v1", "deployments", ns, "fg")
            assert d["metadata"]["deletionTimestamp"] and "foregroundDeletion" in d["metadata"]["finalizers"]

            async def fg_gone():
                try:
                    await c.get("apps/v1", "deployments", ns, "fg")
                    return None
                except ApiError as e:
                    return e.code == 404
            await until(fg_gone, 60, "the foreground-deleted Deployment gone")
            await asyncio.sleep(0.5)
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            fg = [g for g in gone if g[1].startswith("fg")]
            assert fg[-1] == ("deployments", "fg"), fg
            assert len([g for g in fg if g[0] == "pods"]) == 4 and len([g for g in fg if g[0] == "replicasets"]) == 1
            rs_at = next(i for i, g in enumerate(fg) if g[0] == "replicasets")
            assert all(g[0] == "pods" for g in fg[:rs_at]), fg

            # Orphan: the ReplicaSet and pods stay, without a reference to the Deployment
            await asyncio.to_thread(kubectl, "delete", "deployment", "orphan", "-n", ns, "--cascade=orphan")
            rss = [r for r in (await c.list("apps/v1", "replicasets", ns))["items"]
                   if r["metadata"]["name"].startswith("orphan-")]
            assert len(rss) == 1 and not rss[0]["metadata"].get("ownerReferences")
            pods = [p for p in (await c.list("v1", "pods", ns))["items"] if p["metadata"]["name"].startswith("orphan-")]
            assert len(pods) == 4 and all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)

            # Background: the Deployment goes at once, the garbage collector takes the rest
            await asyncio.to_thread(kubectl, "delete", "deployment", "bg", "-n", ns)

            async def bg_gone():
                rss = (await c.list("apps/v1", "replicasets", ns))["items"]
                pods = (await c.list("v1", "pods", ns))["items"]
                return (not [r for r in rss if r["metadata"]["name"].startswith("bg-")]
                        and not [p for p in pods if p["metadata"]["name"].startswith("bg-")]) or None
            await until(bg_gone, 60, "the background-deleted Deployment's ReplicaSet and pods gone")
            # an object whose owner never existed is collected; one with a live owner is not
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dangling", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "nobody", "uid": str(uuid.uuid4())}]}}
            await c.create("v1", "configmaps", cm, ns)
            owner = await c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                        "metadata": {"name": "owner"}}, ns)
            await c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "owned", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                      "uid": owner["metadata"]["uid"]}]}}, ns)

            async def dangling_gone():
                names = {x["metadata"]["name"] for x in (await c.list("v1", "configmaps", ns))["items"]}
                return "dangling" not in names or None
            await until(dangling_gone, 30, "the configmap with a dangling owner collected")
            names = {x["metadata"]["name"] for x in (await c.list("v1", "configmaps", ns))["items"]}
            assert {"owner", "owned"} <= names

    with hollow_cluster(CONTROLLERS, nodes=3) as cl:
        asyncio.run(main(cl))
        kubectl("delete", "namespace", ns, "--wait=false")


def test_deleting_a_namespace_empties_it(control_plane, kubectl, hollow_cluster):
    ns = f"nsdel-{uuid.uuid4().hex[:5]}"

    async def main(cl):
        async with client(control_plane) as c:
            await make_namespace(c, ns)
            await c.create("apps/v1", "deployments", deployment("web", 3, "nginx", cl), ns)
            await c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, ns)
            await c.create("v1", "secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                             "stringData": {"k": "v"}}, ns)

            async def running():
                return len([p for p in (await c.list("v1", "pods", ns))["items"] if _ready(p)]) == 3 or None
            await until(running, 60, "3 ready pods")
            await asyncio.to_thread(kubectl, "delete", "namespace", ns, "--wait=false")

            async def held():
                n = await c.get("v1", "namespaces", None, ns)
                conds = {x["type"]: x for x in (n.get("status") or {}).get("conditions") or []}
                fin = conds.get("NamespaceFinalizersRemaining")
                left = [r for r in ("pods", "secrets") if (await c.list("v1", r, ns))["items"]]
                return (n, conds) if fin and fin["status"] == "True" and not left else None
            n, conds = await until(held, 60, "content deleted but for the held configmap")
            assert n["status"]["phase"] == "Terminating"
            assert conds["NamespaceFinalizersRemaining"]["message"] == \
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            assert conds["NamespaceContentRemaining"]["message"] == \
                "Some resources are remaining: configmaps. has 1 resource instances"
            assert conds["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
            await c.patch("v1", "configmaps", ns, "held", {"metadata": {"finalizers": None}})

            async def ns_gone():
                try:
                    await c.get("v1", "namespaces", None, ns)
                    return None
                except ApiError as e:
                    return e.code == 404
            await until(ns_gone, 60, "the namespace gone")

    with hollow_cluster(CONTROLLERS, nodes=2) as cl:
        asyncio.run(main(cl))
