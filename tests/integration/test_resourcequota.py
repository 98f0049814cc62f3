"""ResourceQuota end to end: the resource quota controller fills status.hard and status.used, the
apiserver's admission refuses what would exceed a quota with upstream's 403 messages (seen through
the real kubectl), concurrent creations never overshoot, and a deletion frees its share."""
from __future__ import annotations

import asyncio

import pytest

from kubelab.client.rest import ApiError, Client
from polling import wait

pytestmark = pytest.mark.integration


POD = """apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: c
    image: nginx
    resources: {resources}
"""


def test_quota_is_counted_and_enforced(control_plane, kubectl, namespace, hollow_cluster):
    ns = namespace
    with hollow_cluster("resourcequota", nodes=1):
        kubectl("create", "configmap", "seed", "-n", ns)
        kubectl("apply", "-n", ns, "-f", "-", input="""apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard: {pods: "3", requests.cpu: "1", limits.memory: 1Gi, configmaps: "4", count/deployments.apps: "1"}
""")
        st = wait(lambda: (kubectl.json("get", "resourcequota", "compute", "-n", ns).get("status") or {}).get("used"),
                  30, "status.used")
        assert st == {"pods": "0", "requests.cpu": "0", "limits.memory": "0", "configmaps": "1",
                      "count/deployments.apps": "0"}
        res = '{requests: {cpu: 400m}, limits: {memory: 256Mi}}'
        for n in ("a", "b"):
            kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name=n, resources=res))
        # a third 400m would exceed requests.cpu=1
        p = kubectl.run("apply", "-n", ns, "-f", "-", input=POD.format(name="c", resources=res), check=False)
        assert p.returncode != 0
        assert 'pods "c" is forbidden: exceeded quota: compute, requested: requests.cpu=400m, used: ' \
               'requests.cpu=800m, limited: requests.cpu=1' in p.stderr
        # limits.memory is tracked, so a pod must say it
        p = kubectl.run("apply", "-n", ns, "-f", "-", input=POD.format(name="d", resources="{requests: {cpu: 10m}}"),
                        check=False)
        assert 'pods "d" is forbidden: failed quota: compute: must specify limits.memory for: c' in p.stderr
        wait(lambda: kubectl.json("get", "resourcequota", "compute", "-n", ns)["status"]["used"] ==
             {"pods": "2", "requests.cpu": "800m", "limits.memory": "512Mi", "configmaps": "1",
              "count/deployments.apps": "0"}, 30, "used after two pods")
        out = kubectl("describe", "resourcequota", "compute", "-n", ns)
        assert "requests.cpu" in out and "800m" in out
        # a deletion frees its share
        kubectl("delete", "pod", "a", "-n", ns, "--grace-period=0", "--force")
        wait(lambda: kubectl.json("get", "resourcequota", "compute", "-n", ns)["status"]["used"]["pods"] == "1",
             30, "pods used back to 1")
        kubectl("apply", "-n", ns, "-f", "-", input=POD.format(name="c", resources=res))

        # concurrent creations: configmaps=4 with 1 present admits exactly 3 of 10
        async def burst():
            async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="quota-test") as c:
                res = await asyncio.gather(*(c.create("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                                           "metadata": {"name": f"cm-{i}"}}, ns)
                                             for i in range(10)), return_exceptions=True)
                return res
        results = asyncio.run(burst())
        refused = [r for r in results if isinstance(r, ApiError)]
        assert len(refused) == 7 and all(r.code == 403 and "exceeded quota: compute" in r.message for r in refused)
        assert len(kubectl.json("get", "configmaps", "-n", ns)["items"]) == 4
        # count/<resource>.<group>
        kubectl("create", "deployment", "one", "--image=nginx", "-n", ns)
        p = kubectl.run("create", "deployment", "two", "--image=nginx", "-n", ns, check=False)
        assert "exceeded quota: compute, requested: count/deployments.apps=1" in p.stderr
