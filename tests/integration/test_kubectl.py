"""The real kubectl against the real apiserver on a real etcd: output checked, not only exit codes."""
from __future__ import annotations

import json
import re
import time

import yaml

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"""


def test_version_reports_server(kubectl):
    out = kubectl("version", "-o", "json")
    v = json.loads(out)
    assert v["serverVersion"]["gitVersion"].startswith("v1.36")
    assert v["clientVersion"]["major"] == "1"


def test_api_resources_lists_builtin_kinds(kubectl):
    out = kubectl("api-resources")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "SHORTNAMES"]
    rows = {}
    for line in lines[1:]:          # pods and nodes appear twice: v1 and metrics.k8s.io/v1beta1
        rows.setdefault(line.split()[0], line)
    assert re.search(r"^pods\s+po\s+v1\s+true\s+Pod$", rows["pods"])
    assert re.search(r"^pods\s+metrics\.k8s\.io/v1beta1\s+true\s+PodMetrics$", out, re.M)
    assert re.search(r"^nodes\s+metrics\.k8s\.io/v1beta1\s+false\s+NodeMetrics$", out, re.M)
    assert re.search(r"deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", rows["deployments"])
    assert re.search(r"namespaces\s+ns\s+v1\s+false\s+Namespace$", rows["namespaces"])
    for name in ("configmaps", "secrets", "services", "endpointslices", "leases", "jobs", "cronjobs",
                 "statefulsets", "daemonsets", "roles", "clusterrolebindings", "poddisruptionbudgets",
                 "horizontalpodautoscalers", "priorityclasses", "certificatesigningrequests",
                 "customresourcedefinitions", "limitranges", "resourcequotas", "persistentvolumes",
                 "persistentvolumeclaims", "controllerrevisions", "serviceaccounts"):
        assert name in rows, name


def test_system_namespaces_and_kubernetes_service(kubectl):
    out = kubectl("get", "namespaces")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert ns in names
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    svc = kubectl("get", "service", "kubernetes", "-n", "default")
    header, row = svc.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row.split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]


def test_create_apply_get_table_wide_yaml_json(kubectl, namespace):
    out = kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOY)
    assert out.strip() == "deployment.apps/web created"
    out = kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOY)
    assert out.strip() == "deployment.apps/web unchanged"
    out = kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOY.replace("replicas: 2", "replicas: 3"))
    assert out.strip() == "deployment.apps/web configured"
    d = kubectl.json("get", "deployment", "web", "-n", namespace)
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]
    # defaults as upstream
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["ports"][0]["protocol"] == "TCP"
    table = kubectl("get", "deployments", "-n", namespace)
    assert table.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table.splitlines()[1].split()[:4] == ["web", "0/3", "0", "0"]
    wide = kubectl("get", "deployments", "-n", namespace, "-o", "wide")
    assert wide.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS",
                                            "IMAGES", "SELECTOR"]
    assert wide.splitlines()[1].split()[-3:] == ["nginx", "nginx:1.25", "app=web"]
    y = yaml.safe_load(kubectl("get", "deploy/web", "-n", namespace, "-o", "yaml"))
    assert y["kind"] == "Deployment" and y["metadata"]["namespace"] == namespace
    jp = kubectl("get", "deploy", "web", "-n", namespace, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert jp == "nginx:1.25"


def test_get_all_namespaces_labels_field_selector(kubectl, namespace):
    kubectl("create", "configmap", "a", "-n", namespace, "--from-literal=k=v")
    kubectl("create", "configmap", "b", "-n", namespace, "--from-literal=k=v", "--from-literal=x=y")
    kubectl("label", "configmap", "a", "-n", namespace, "tier=front")
    out = kubectl("get", "configmaps", "-n", namespace, "-l", "tier=front")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["a"]
    out = kubectl("get", "configmaps", "-n", namespace, "--field-selector", "metadata.name=b")
    rows = out.splitlines()
    assert rows[0].split() == ["NAME", "DATA", "AGE"] and rows[1].split()[:2] == ["b", "2"]
    out = kubectl("get", "configmaps", "-A", "-l", "tier=front")
    assert out.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "a"] for line in out.splitlines()[1:])
    out = kubectl("get", "configmaps", "-n", namespace, "--show-labels")
    assert out.splitlines()[0].split()[-1] == "LABELS"
    row_a = [line for line in out.splitlines() if line.startswith("a ")][0]
    assert row_a.split()[-1] == "tier=front"
    bad = kubectl.run("get", "pods", "-n", namespace, "--field-selector", "spec.bogus=x", check=False)
    assert bad.returncode != 0 and "field label not supported: spec.bogus" in bad.stderr


def test_create_subcommands(kubectl, namespace):
    import uuid
    ns2 = f"made-{uuid.uuid4().hex[:6]}"
    assert kubectl("create", "namespace", ns2).strip() == f"namespace/{ns2} created"
    assert kubectl.json("get", "namespace", ns2)["status"]["phase"] == "Active"
    assert kubectl("create", "configmap", "c1", "--from-literal=a=b", "-n", ns2).strip() == "configmap/c1 created"
    assert kubectl.json("get", "configmap", "c1", "-n", ns2)["data"] == {"a": "b"}
    assert kubectl("create", "deployment", "d1", "--image=nginx", "-n", namespace).strip() == \
        "deployment.apps/d1 created"
    assert kubectl("create", "secret", "generic", "s1", "--from-literal=pw=hunter2", "-n", namespace).strip() == \
        "secret/s1 created"
    s = kubectl.json("get", "secret", "s1", "-n", namespace)
    assert s["type"] == "Opaque" and s["data"]["pw"] == "aHVudGVyMg=="
    assert kubectl("create", "service", "clusterip", "svc1", "--tcp=80:8080", "-n", namespace).strip() == \
        "service/svc1 created"
    svc = kubectl.json("get", "service", "svc1", "-n", namespace)
    assert re.fullmatch(r"10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+", svc["spec"]["clusterIP"])
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    np = kubectl("create", "service", "nodeport", "svc2", "--tcp=80:80", "-n", namespace)
    assert np.strip() == "service/svc2 created"
    port = kubectl.json("get", "service", "svc2", "-n", namespace)["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767


def test_annotate_patch_scale_edit(kubectl, namespace):
    kubectl("create", "deployment", "p", "--image=nginx:1", "-n", namespace)
    assert kubectl("annotate", "deploy", "p", "-n", namespace, "owner=me").strip() == "deployment.apps/p annotated"
    out = kubectl("patch", "deploy", "p", "-n", namespace, "-p", '{"spec":{"replicas":4}}')
    assert out.strip() == "deployment.apps/p patched"
    out = kubectl("patch", "deploy", "p", "-n", namespace, "--type=merge", "-p",
                  '{"metadata":{"labels":{"m":"1"}}}')
    assert out.strip() == "deployment.apps/p patched"
    out = kubectl("patch", "deploy", "p", "-n", namespace, "--type=json", "-p",
                  '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:2"}]')
    assert out.strip() == "deployment.apps/p patched"
    # strategic merge: containers merge by name, so this adds env without replacing the list
    kubectl("patch", "deploy", "p", "-n", namespace, "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"A","value":"1"}]}]}}}}')
    d = kubectl.json("get", "deploy", "p", "-n", namespace)
    assert d["metadata"]["annotations"]["owner"] == "me"
    assert d["metadata"]["labels"]["m"] == "1"
    assert d["spec"]["replicas"] == 4
    c = d["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["image"] == "nginx:2" and c[0]["env"] == [{"name": "A", "value": "1"}]
    assert kubectl("scale", "deploy", "p", "-n", namespace, "--replicas=7").strip() == "deployment.apps/p scaled"
    assert kubectl.json("get", "deploy", "p", "-n", namespace)["spec"]["replicas"] == 7
    out = kubectl("edit", "deploy", "p", "-n", namespace, env={"EDITOR": "sed -i s/replicas:\\ 7/replicas:\\ 5/",
                                                               "KUBE_EDITOR": ""})
    assert out.strip() == "deployment.apps/p edited"
    assert kubectl.json("get", "deploy", "p", "-n", namespace)["spec"]["replicas"] == 5


def test_delete_with_wait(kubectl, namespace):
    kubectl("create", "configmap", "gone", "-n", namespace)
    out = kubectl("delete", "configmap", "gone", "-n", namespace, "--wait=true", "--timeout=20s")
    assert out.strip() == f'configmap "gone" deleted from {namespace} namespace'
    r = kubectl.run("get", "configmap", "gone", "-n", namespace, check=False)
    assert r.returncode == 1 and 'configmaps "gone" not found' in r.stderr
    # a pod never scheduled is deleted at once (no kubelet has to finish it)
    kubectl("run", "lone", "--image=busybox", "-n", namespace, "--restart=Never")
    out = kubectl("delete", "pod", "lone", "-n", namespace, "--wait=true", "--timeout=20s")
    assert out.strip() == f'pod "lone" deleted from {namespace} namespace'


def test_server_side_apply_creates_then_updates(kubectl, namespace):
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n  b: '1'\n"
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=cm)
    assert out.strip() == "configmap/ssa serverside-applied"
    # dropping a field this manager applied removes it; changing one updates it
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                  input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '2'\n")
    assert out.strip() == "configmap/ssa serverside-applied"
    got = kubectl.json("get", "cm", "ssa", "-n", namespace, "--show-managed-fields")
    assert got["data"] == {"a": "2"}
    entries = {(m["manager"], m["operation"]): m for m in got["metadata"]["managedFields"]}
    assert entries[("kubectl", "Apply")]["fieldsV1"] == {"f:data": {"f:a": {}}}


def test_server_side_apply_conflicts_and_force(kubectl, namespace):
    kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=DEPLOY)
    # another manager takes spec.replicas
    kubectl("scale", "deploy", "web", "-n", namespace, "--replicas=5")
    r = kubectl.run("apply", "--server-side", "-n", namespace, "-f", "-", input=DEPLOY, check=False)
    assert r.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: ' \
           '.spec.replicas' in r.stderr or 'conflict with "kubectl-scale"' in r.stderr, r.stderr
    out = kubectl("apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", "-", input=DEPLOY)
    assert out.strip() == "deployment.apps/web serverside-applied"
    assert kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["replicas"] == 2


def test_errors_are_upstream_statuses(kubectl, namespace):
    r = kubectl.run("get", "deploy", "nope", "-n", namespace, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    kubectl("create", "configmap", "dup", "-n", namespace)
    r = kubectl.run("create", "configmap", "dup", "-n", namespace, check=False)
    assert r.stderr.strip() == 'error: failed to create configmap: configmaps "dup" already exists'
    r = kubectl.run("create", "-n", namespace, "-f", "-", check=False,
                    input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n")
    assert r.stderr.strip() == 'Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" ' \
                               'already exists'
    bad = DEPLOY.replace("name: nginx\n", "name: Bad_Name\n")
    r = kubectl.run("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith('The Deployment "web" is invalid: spec.template.spec.containers[0].name: '
                               'Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of'), r.stderr
    r = kubectl.run("create", "configmap", "x", "-n", "no-such-ns", check=False)
    assert 'namespaces "no-such-ns" not found' in r.stderr


def test_get_watch_streams_changes(kubectl, namespace):
    kubectl("create", "configmap", "w1", "-n", namespace)
    p = kubectl.popen("get", "configmaps", "-n", namespace, "-w", "--no-headers")
    try:
        time.sleep(1.5)
        kubectl("create", "configmap", "w2", "-n", namespace)
        kubectl("label", "configmap", "w1", "-n", namespace, "x=y")
        time.sleep(1.5)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    # the initial list, then w2 added and w1 modified
    assert names[0] == "w1", out + err
    assert "w2" in names[1:], out + err
    assert names.count("w1") == 2, out + err


def test_describe_and_auth_whoami(kubectl, namespace):
    kubectl("create", "deployment", "desc", "--image=nginx:1.25", "-n", namespace)
    out = kubectl("describe", "deployment", "desc", "-n", namespace)
    assert re.search(r"^Name:\s+desc$", out, re.M)
    assert re.search(r"^Namespace:\s+" + namespace + "$", out, re.M)
    assert re.search(r"^Selector:\s+app=desc$", out, re.M)
    assert re.search(r"Image:\s+nginx:1.25", out)
    out = kubectl("describe", "service", "kubernetes", "-n", "default")
    assert re.search(r"^IP:\s+10\.96\.0\.1$", out, re.M)
    out = kubectl("auth", "whoami")
    assert re.search(r"Username\s+kubernetes-admin", out)
    assert re.search(r"Groups\s+\[system:masters system:authenticated\]", out)


NODE = """
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, node-role.kubernetes.io/worker: ""}}
spec:
  podCIDR: 10.244.7.0/24
"""

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: p1
  labels: {{app: p}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: nginx:1.25
    ports: [{{containerPort: 80}}]
"""


def test_pods_nodes_wide_describe_and_get_all(kubectl, namespace):
    import uuid
    node = f"node-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=NODE.format(name=node))
    kubectl("apply", "-n", namespace, "-f", "-", input=POD.format(node=node))
    out = kubectl("get", "pods", "-n", namespace, "-o", "wide")
    header = out.splitlines()[0].split()
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS",
                      "GATES"]
    row = out.splitlines()[1].split()
    assert row[:4] == ["p1", "0/1", "Pending", "0"] and row[5:7] == ["<none>", node]
    nodes = kubectl("get", "nodes", "-o", "wide")
    assert nodes.splitlines()[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    nrow = [line for line in nodes.splitlines() if line.startswith(node)][0].split()
    assert nrow[1:3] == ["Unknown", "worker"]
    d = kubectl("describe", "pod", "p1", "-n", namespace)
    assert re.search(r"^Node:\s+" + node + "/", d, re.M)
    assert re.search(r"^Status:\s+Pending$", d, re.M)
    assert re.search(r"^QoS Class:\s+BestEffort$", d, re.M)
    assert re.search(r"node\.kubernetes\.io/not-ready:NoExecute op=Exists for 300s", d)
    dn = kubectl("describe", "node", node)
    assert re.search(r"^Name:\s+" + node + "$", dn, re.M)
    assert re.search(r"^PodCIDR:\s+10\.244\.7\.0/24$", dn, re.M)
    assert re.search(r"^\s+" + namespace + r"\s+p1\s", dn, re.M), dn  # its pods, listed by field selector
    kubectl("create", "-n", namespace, "-f", "-", input=(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selector: {app: p}\n  ports:\n  - port: 80\n"))
    everything = kubectl("get", "all", "-n", namespace)
    assert "pod/p1" in everything and "service/s" in everything
    assert kubectl("delete", "node", node).strip() == f'node "{node}" deleted'


def test_events_listed_by_involved_object(kubectl, namespace):
    ev = ("apiVersion: v1\nkind: Event\nmetadata:\n  name: e1\ninvolvedObject:\n  kind: Pod\n  name: p9\n"
          f"  namespace: {namespace}\nreason: Testing\nmessage: hello there\ntype: Warning\n")
    kubectl("create", "-n", namespace, "-f", "-", input=ev)
    out = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=p9,type=Warning")
    assert out.splitlines()[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "hello there" in out and "pod/p9" in out
    none = kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=other")
    assert "hello there" not in none
