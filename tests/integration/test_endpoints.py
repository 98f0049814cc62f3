"""The Endpoints controller in kubelab-controller-manager against the real apiserver, with hollow
nodes giving the pods IPs and readiness, read through the real kubectl: ready and not-ready
addresses, named target ports, headless labels, Services without a selector left alone, and the
Endpoints of a deleted Service removed."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from kubelab.lab.controlplane import spawn, stop
from polling import wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def test_endpoints_follow_pods(control_plane, kubectl, namespace, tmp_path):
    uid = uuid.uuid4().hex[:5]
    ns, prefix = namespace, f"ep{uid}"
    kc = str(control_plane.kubeconfig)
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc, "--controllers", "endpoint",
                    "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp_path / "cm.log"),
             spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "1", "--prefix", prefix,
                    "--pod-ready-delay", "100ms"], tmp_path / "hollow.log")]
    node = f"{prefix}-00000"
    try:
        wait(lambda: kubectl.run("get", "node", node, check=False).returncode == 0, 30, "the hollow node")
        pods = "".join(f"""---
apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  hostname: web-{i}
  subdomain: web
  containers: [{{name: c, image: nginx, ports: [{{name: http, containerPort: 8080}}]}}]
""" for i in range(3))
        kubectl("apply", "-n", ns, "-f", "-", input=pods + """---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{port: 80}]
""")

        def ready_ips():
            ep = kubectl.json("get", "endpoints", "web", "-n", ns) if kubectl.run(
                "get", "endpoints", "web", "-n", ns, check=False).returncode == 0 else {}
            subs = ep.get("subsets") or []
            return ep if len(subs) == 1 and len(subs[0].get("addresses") or []) == 3 else None
        ep = wait(ready_ips, 30, "three ready addresses")
        sub = ep["subsets"][0]
        assert sub["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
        addrs = sorted(sub["addresses"], key=lambda a: a["targetRef"]["name"])
        assert [a["hostname"] for a in addrs] == ["web-0", "web-1", "web-2"]
        assert all(a["nodeName"] == node and a["targetRef"]["kind"] == "Pod" for a in addrs)
        assert ep["metadata"]["labels"] == {"tier": "front", "service.kubernetes.io/headless": ""}
        out = kubectl("get", "endpoints", "web", "-n", ns)
        assert all(f"{a['ip']}:8080" in out for a in addrs)

        # a pod that stops being Ready moves to notReadyAddresses
        kubectl("patch", "pod", "web-0", "-n", ns, "--subresource=status", "--type=merge", "-p",
                '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}')

        def moved():
            sub = (kubectl.json("get", "endpoints", "web", "-n", ns).get("subsets") or [{}])[0]
            return sub if [a["targetRef"]["name"] for a in sub.get("notReadyAddresses") or []] == ["web-0"] \
                and len(sub.get("addresses") or []) == 2 else None
        wait(moved, 30, "web-0 not ready")
        # a Service without a selector keeps its own Endpoints
        assert kubectl.run("get", "endpoints", "manual", "-n", ns, check=False).returncode != 0
        # the Endpoints of a deleted Service go
        kubectl("delete", "service", "web", "-n", ns)
        wait(lambda: kubectl.run("get", "endpoints", "web", "-n", ns, check=False).returncode != 0, 30,
             "endpoints of the deleted service gone")
    finally:
        for p in procs:
            stop(p, 30)
    for log in ("cm.log", "hollow.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
