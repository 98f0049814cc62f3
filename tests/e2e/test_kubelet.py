"""The kubelet on a two-node lab with real containers, driven with the real kubectl: an nginx
Deployment and its Service come up and answer on the ClusterIP and a NodePort from inside the
nodes; pods get their IPs, conditions and container statuses; scaling 3 -> 10 -> 2 converges;
a deleted pod goes through graceful termination and is replaced; a container that keeps failing
goes into CrashLoopBackOff with RESTARTS counting up; and a SIGKILLed kubelet with 20 running pods, restarted,
adopts its running containers without restarting any; volumes, env and configMap updates; static
pods with mirror pods; init containers in order, OOMKilled, exec -it with a TTY, cp and attach. The whole suite runs twice: on kubelab-cri and on containerd 1.6.

    host: etcd, apiserver on 192.168.56.1, controller-manager, scheduler, kubectl
    node1 / node2 (network namespaces): kubelab-cri, kubelab-kubelet, kubelab-proxy (+ kubelab-dns on node1)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from kubelab.lab.cluster import LabCluster
from e2e.labkubectl import KUBECTL, kjson, kubectl, wait_phase
from polling import wait

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module", params=["kubelab-cri", "containerd"])
def lab(request, test_images):
    """The same suite on each runtime under the same kubelet."""
    images = {"nginx": test_images["nginx"], "busybox": test_images["busybox"]}
    if request.param == "containerd":
        images["pause"] = test_images["pause"]        # containerd's sandbox image
    cluster = LabCluster(images, kubelets=True, runtime=request.param)
    cluster.up()
    try:
        yield cluster
    finally:
        problems = cluster.down()
        assert not problems, problems


@pytest.fixture(scope="module")
def k(lab, tmp_path_factory):
    return kubectl(lab, tmp_path_factory.mktemp("kube-cache"))


def fetch(lab, node: int, url: str) -> str:
    """GET url from inside a node's network namespace (where kube-proxy's rules are)."""
    code = f"import urllib.request,sys; sys.stdout.write(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    p = subprocess.run(lab.nodes[node].nsenter() + [sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=20)
    return p.stdout if p.returncode == 0 else f"FAILED: {p.stderr.strip().splitlines()[-1:] }"


def test_nginx_deployment_is_reachable_and_scales(lab, k):
    image = lab.image_refs[0]["nginx"]
    k("apply", "-f", "-", input=f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: nginx, namespace: default}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: nginx}}}}
  template:
    metadata: {{labels: {{app: nginx}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: nginx
        image: {image}
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nginx, namespace: default}}
spec:
  type: NodePort
  selector: {{app: nginx}}
  ports: [{{port: 80, targetPort: 80, nodePort: 30080}}]
""")
    out = k("rollout", "status", "deployment/nginx", "--timeout=120s", timeout=150)
    assert 'deployment "nginx" successfully rolled out' in out
    pods = kjson(k, "get", "pods", "-l", "app=nginx")["items"]
    assert len(pods) == 3
    for p in pods:
        st = p["status"]
        assert st["phase"] == "Running" and st["podIP"].startswith("10.244.")
        conds = {c["type"]: c["status"] for c in st["conditions"]}
        assert conds == {"PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
                         "ContainersReady": "True", "PodScheduled": "True"}
        cs = st["containerStatuses"][0]
        assert cs["ready"] and cs["started"] and cs["restartCount"] == 0 and "running" in cs["state"]
        assert cs["containerID"].startswith(f"{lab.runtime}://") and st["qosClass"] == "BestEffort"
        assert st["hostIP"] in {n.ip for n in lab.nodes}
        # the pod answers on its own IP, from the other node
        assert "nginx" in fetch(lab, 1, f"http://{st['podIP']}/").lower()
    svc = kjson(k, "get", "service", "nginx")
    cluster_ip = svc["spec"]["clusterIP"]
    assert "nginx" in wait(lambda: (lambda t: t if "nginx" in t.lower() else None)(
        fetch(lab, 0, f"http://{cluster_ip}/")), 30, "the ClusterIP answering").lower()
    assert "nginx" in wait(lambda: (lambda t: t if "nginx" in t.lower() else None)(
        fetch(lab, 1, f"http://{lab.nodes[0].ip}:30080/")), 30, "the NodePort answering").lower()
    nodes = kjson(k, "get", "nodes")["items"]
    for n in nodes:
        st = n["status"]
        assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
        assert st["nodeInfo"]["containerRuntimeVersion"].startswith(f"{lab.runtime}://")
        assert {a["type"] for a in st["addresses"]} == {"InternalIP", "Hostname"}
        assert int(st["capacity"]["pods"]) == 110
    events = k("get", "events", "--field-selector", "involvedObject.kind=Pod")
    for reason in ("Scheduled", "Pulled", "Created", "Started"):
        assert reason in events

    # scale 3 -> 10 -> 2
    for n in (10, 2):
        k("scale", "deployment", "nginx", f"--replicas={n}")
        k("rollout", "status", "deployment/nginx", "--timeout=120s", timeout=150)
        wait(lambda n=n: len(kjson(k, "get", "pods", "-l", "app=nginx")["items"]) == n, 60, f"{n} pods")
    running = [p for p in kjson(k, "get", "pods", "-l", "app=nginx")["items"] if p["status"].get("phase") == "Running"]
    assert len(running) == 2


def test_graceful_delete_and_replacement(lab, k):
    before = {p["metadata"]["name"] for p in kjson(k, "get", "pods", "-l", "app=nginx")["items"]}
    victim = sorted(before)[0]
    t0 = time.monotonic()
    k("delete", "pod", victim, "--timeout=60s", timeout=90)        # waits until the kubelet deleted it
    assert time.monotonic() - t0 < 30
    assert victim not in k("get", "pods", "-o", "name")
    wait(lambda: len([p for p in kjson(k, "get", "pods", "-l", "app=nginx")["items"]
                      if p["status"].get("phase") == "Running" and p["metadata"]["name"] not in before]) == 1,
         60, "a replacement Running")
    events = k("get", "events", "--field-selector", f"involvedObject.name={victim}")
    assert "Killing" in events and "Stopping container nginx" in events


def test_crashing_container_backs_off_and_counts_restarts(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("run", "crasher", f"--image={image}", "--image-pull-policy=IfNotPresent", "--restart=Always", "--",
      "sh", "-c", "echo boom; exit 3")

    def restarted():
        p = kjson(k, "get", "pod", "crasher")
        cs = (p["status"].get("containerStatuses") or [{}])[0]
        return cs if cs.get("restartCount", 0) >= 1 and "terminated" in (cs.get("lastState") or {}) else None
    cs = wait(restarted, 60, "a restart")
    assert cs["lastState"]["terminated"]["exitCode"] == 3 and cs["lastState"]["terminated"]["reason"] == "Error"
    wait(lambda: (kjson(k, "get", "pod", "crasher")["status"]["containerStatuses"][0].get("state") or {})
         .get("waiting", {}).get("reason") == "CrashLoopBackOff", 60, "CrashLoopBackOff")
    out = k("get", "pod", "crasher")
    assert "CrashLoopBackOff" in out
    events = k("get", "events", "--field-selector", "involvedObject.name=crasher")
    assert "Back-off restarting failed container crasher in pod crasher_default" in events
    k("delete", "pod", "crasher", "--grace-period=1")


def test_kubelet_restart_adopts_running_containers(lab, k):
    k("scale", "deployment", "nginx", "--replicas=20")
    k("rollout", "status", "deployment/nginx", "--timeout=120s", timeout=150)

    def state():
        return {p["metadata"]["name"]: (p["status"]["containerStatuses"][0]["containerID"],
                                        p["status"]["containerStatuses"][0]["restartCount"])
                for p in kjson(k, "get", "pods", "-l", "app=nginx")["items"]}
    before = wait(lambda: (lambda st: st if len(st) == 20 else None)(state()), 60, "20 nginx pods")
    for i in range(len(lab.nodes)):
        lab.restart_kubelet(i, kill=True)
    time.sleep(8)               # several PLEG relists and syncs after the restart
    wait(lambda: all(c["status"] == "True" for n in kjson(k, "get", "nodes")["items"]
                     for c in n["status"]["conditions"] if c["type"] == "Ready"), 30, "nodes Ready")
    assert state() == before, "containers were restarted or replaced after a kubelet restart"
    assert all(restarts == 0 for _, restarts in before.values())
    # each restarted kubelet answers its plain-HTTP healthz on the node's loopback (upstream's 10248)
    assert [fetch(lab, i, "http://127.0.0.1:10248/healthz") for i in range(len(lab.nodes))] == ["ok"] * len(lab.nodes)
    k("scale", "deployment", "nginx", "--replicas=2")
    assert os.path.exists(lab.kubeconfig)


def exec_in(lab, k, pod: str, cmd: list[str]) -> tuple[int, str]:
    """Run cmd in the pod's first container through its node's CRI (ExecSync)."""
    from kubelab.cri.api import api_pb2 as pb
    p = kjson(k, "get", "pod", pod)
    node = next(i for i, n in enumerate(lab.nodes) if n.name == p["spec"]["nodeName"])
    cid = p["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    r = lab.rt[node].ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=10), timeout=20)
    return r.exit_code, (r.stdout + r.stderr).decode(errors="replace")


def test_volumes_env_and_configmap_updates(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{greeting: hello, mode: fast}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: vols, labels: {{app: vols, tier: test}}}}
spec:
  terminationGracePeriodSeconds: 1
  subdomain: grp
  hostAliases:
  - {{ip: 10.1.2.3, hostnames: [registry.lab, reg]}}
  containers:
  - name: c
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: MSG, value: "$(GREETING) from $(MY_IP)"}}
    envFrom: [{{secretRef: {{name: sec}}, prefix: SEC_}}]
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec, readOnly: true}}
    - {{name: scratch, mountPath: /data}}
    - {{name: info, mountPath: /etc/info}}
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: sec, secret: {{secretName: sec, defaultMode: 0400}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
""")
    wait(lambda: kjson(k, "get", "pod", "vols")["status"].get("phase") == "Running", 60, "the pod Running")
    ip = kjson(k, "get", "pod", "vols")["status"]["podIP"]
    code, out = exec_in(lab, k, "vols", ["cat", "/etc/cfg/greeting", "/etc/sec/password", "/etc/info/labels"])
    assert code == 0 and out == 'hellos3cretapp="vols"\ntier="test"', out
    code, out = exec_in(lab, k, "vols", ["cat", "/etc/hosts"])     # the kubelet's, with the pod's aliases
    assert code == 0 and out.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n") and out.endswith(
        f"{ip}\tvols.grp.default.svc.cluster.local\tvols\n\n# Entries added by HostAliases.\n"
        "10.1.2.3\tregistry.lab\treg\n"), out
    code, out = exec_in(lab, k, "vols", ["env"])
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["GREETING"] == "hello" and env["MY_IP"] == ip and env["MSG"] == f"hello from {ip}"
    assert env["SEC_password"] == "s3cret" and env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert exec_in(lab, k, "vols", ["sh", "-c", "echo x > /data/f && cat /data/f"]) == (0, "x\n")
    assert exec_in(lab, k, "vols", ["sh", "-c", "echo x > /etc/sec/password"])[0] != 0     # read-only
    k("patch", "configmap", "cfg", "--type=merge", "-p", '{"data":{"greeting":"bonjour"}}')
    wait(lambda: exec_in(lab, k, "vols", ["cat", "/etc/cfg/greeting"])[1] == "bonjour", 30,
         "the configMap update in the mounted file")
    # a missing configMap key keeps the container waiting with upstream's reason
    k("run", "broken", f"--image={image}", "--image-pull-policy=IfNotPresent", "--overrides", json.dumps(
        {"spec": {"containers": [{"name": "broken", "image": image, "command": ["sleep", "1000"],
                                  "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope",
                                                                                          "key": "k"}}}]}]}}))
    st = wait(lambda: (kjson(k, "get", "pod", "broken")["status"].get("containerStatuses") or [{}])[0]
              .get("state", {}).get("waiting"), 60, "the broken pod waiting")
    assert st["reason"] == "CreateContainerConfigError" and st["message"] == 'configmap "nope" not found'
    uids = [kjson(k, "get", "pod", n)["metadata"]["uid"] for n in ("vols", "broken")]
    k("delete", "pod", "vols", "broken", "--grace-period=1")
    # the kubelet tears the volumes down right after the final delete
    wait(lambda: not [u for n in ("node1", "node2") for u in uids if (lab.tmp / n / "kubelet" / "pods" / u).exists()],
         20, "the pods' volumes and directories removed")
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    assert not [u for u in uids if u in mounts]


def test_static_pod_shows_as_a_mirror_pod(lab, k):
    image = lab.image_refs[0]["busybox"]
    manifests = lab.tmp / "node1" / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "static-web.yaml").write_text(f"""apiVersion: v1
kind: Pod
metadata: {{name: static-web, labels: {{role: static}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{{name: web, image: {image}, imagePullPolicy: IfNotPresent, command: [sleep, "100000"]}}]
""")
    name = "static-web-node1"
    p = wait(lambda: (lambda p: p if p.get("status", {}).get("phase") == "Running" else None)(
        json.loads(k("get", "pod", name, "-o", "json", check=False) or "{}")), 60, "the mirror pod Running")
    ann = p["metadata"]["annotations"]
    assert ann["kubernetes.io/config.source"] == "file" and ann["kubernetes.io/config.mirror"] == \
        ann["kubernetes.io/config.hash"]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "Node" and p["spec"]["nodeName"] == "node1"
    cid = p["status"]["containerStatuses"][0]["containerID"]
    # deleting the mirror pod does not stop the static pod: the mirror comes back with the same container
    k("delete", "pod", name, "--wait=false")
    first_uid = p["metadata"]["uid"]

    def recreated():
        q = json.loads(k("get", "pod", name, "-o", "json", check=False) or "{}")
        uid = (q.get("metadata") or {}).get("uid")
        return q if uid and uid != first_uid and (q.get("status") or {}).get("containerStatuses") else None
    try:
        back = wait(recreated, 60, "the mirror pod re-created")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{(lab.tmp / 'node1' / 'kubelet.log').read_text()[-3000:]}") from None
    assert back["status"]["containerStatuses"][0]["containerID"] == cid
    # removing the manifest stops it and removes the mirror
    (manifests / "static-web.yaml").unlink()
    wait(lambda: k("get", "pod", name, check=False) == "", 60, "the mirror pod gone")
    from kubelab.cri.api import api_pb2 as pb
    wait(lambda: not [c for c in lab.rt[0].ListContainers(pb.ListContainersRequest(), timeout=10).containers
                      if c.labels.get("io.kubernetes.pod.name") == name and c.state == pb.CONTAINER_RUNNING],
         30, "the static pod's container stopped")


def test_logs_exec_port_forward_and_top_through_the_apiserver(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("run", "talker", f"--image={image}", "--image-pull-policy=IfNotPresent", "--",
      "sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 100000")
    wait(lambda: kjson(k, "get", "pod", "talker")["status"].get("phase") == "Running", 60, "talker Running")
    assert wait(lambda: k("logs", "talker", check=False) == "line 1\nline 2\nline 3\n", 20, "the logs")
    assert k("logs", "talker", "--tail=1") == "line 3\n"
    assert k("exec", "talker", "--", "sh", "-c", "echo $((6 * 7))") == "42\n"
    p = subprocess.run([KUBECTL, "--kubeconfig", str(lab.kubeconfig), "exec", "-i", "talker", "--", "cat"],
                       input="through stdin\n", capture_output=True, text=True, timeout=30)
    assert p.stdout == "through stdin\n", p.stderr
    p = subprocess.run([KUBECTL, "--kubeconfig", str(lab.kubeconfig), "exec", "talker", "--", "sh", "-c", "exit 3"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 3
    pf = subprocess.Popen([KUBECTL, "--kubeconfig", str(lab.kubeconfig), "port-forward", "deployment/nginx",
                           "18080:80"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import urllib.request
        body = wait(lambda: _get("http://127.0.0.1:18080/"), 30, "port-forward answering")
        assert "nginx" in body.lower()
    finally:
        pf.terminate()
        pf.wait(10)
    # kubectl cp: tar through exec, both ways
    src = lab.tmp / "cp-src.txt"
    src.write_text("copied through the apiserver\n" * 100)
    k("cp", str(src), "talker:/tmp/in.txt")
    assert k("exec", "talker", "--", "wc", "-c", "/tmp/in.txt").split()[0] == str(len(src.read_text()))
    k("cp", "talker:/tmp/in.txt", str(lab.tmp / "cp-back.txt"))
    assert (lab.tmp / "cp-back.txt").read_text() == src.read_text()
    # kubectl attach to a container waiting on its stdin
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: attacher}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: attacher
    image: {image}
    imagePullPolicy: IfNotPresent
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'read line; echo "got: $line"']
""")
    wait(lambda: kjson(k, "get", "pod", "attacher")["status"].get("phase") == "Running", 60, "attacher Running")
    p = subprocess.run([KUBECTL, "--kubeconfig", str(lab.kubeconfig), "attach", "-i", "attacher"],
                       input="hello over attach\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "got: hello over attach" in p.stdout, (p.stdout, p.stderr)
    wait_phase(k, "attacher", "Succeeded", 30, "attacher Succeeded once its stdin closed")
    assert k("logs", "attacher") == "got: hello over attach\n"
    k("delete", "pod", "attacher", "--grace-period=1")
    top = wait(lambda: (lambda o: o if "node1" in o else None)(k("top", "nodes", check=False)), 60, "kubectl top")
    assert "CPU(cores)" in top and "node2" in top
    assert "talker" in wait(lambda: k("top", "pods", check=False), 60, "kubectl top pods")
    k("delete", "pod", "talker", "--grace-period=1")


def _get(url: str) -> str | None:
    import urllib.request
    try:
        return urllib.request.urlopen(url, timeout=3).read().decode()
    except OSError:
        return None


def test_liveness_restarts_and_readiness_gates_endpoints(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: sick}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 100000"]
    livenessProbe: {{exec: {{command: [cat, /tmp/healthy]}}, periodSeconds: 1, failureThreshold: 2}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gated, labels: {{app: gated}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: gated}}
spec:
  selector: {{app: gated}}
  ports: [{{port: 80}}]
""")
    cs = wait(lambda: (lambda c: c if c.get("restartCount", 0) >= 1 else None)(
        (kjson(k, "get", "pod", "sick")["status"].get("containerStatuses") or [{}])[0]), 60, "a liveness restart")
    assert cs["lastState"]["terminated"]["exitCode"] != 0
    events = k("get", "events", "--field-selector", "involvedObject.name=sick")
    assert "Liveness probe failed" in events and "failed liveness probe, will be restarted" in events

    def endpoint_ready():
        items = kjson(k, "get", "endpointslices", "-l", "kubernetes.io/service-name=gated")["items"]
        eps = [e for s in items for e in s.get("endpoints") or []]
        return eps[0]["conditions"]["ready"] if eps else None
    wait(lambda: endpoint_ready() is False, 60, "a not-ready endpoint")
    pod = kjson(k, "get", "pod", "gated")
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "False"
    assert pod["status"]["containerStatuses"][0]["started"] is True
    k("exec", "gated", "--", "touch", "/tmp/ready")
    wait(lambda: endpoint_ready() is True, 30, "the endpoint ready")
    k("exec", "gated", "--", "rm", "/tmp/ready")
    wait(lambda: endpoint_ready() is False, 30, "the endpoint not ready again")
    k("delete", "pod", "sick", "gated", "--grace-period=1")
    k("delete", "service", "gated")


def test_init_containers_in_order_oom_killed_and_exec_with_a_tty(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: inits}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {{name: first, image: {image}, imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 1; echo one >> /w/order"],
     volumeMounts: [{{name: w, mountPath: /w}}]}}
  - {{name: second, image: {image}, imagePullPolicy: IfNotPresent, command: [sh, -c, "echo two >> /w/order"],
     volumeMounts: [{{name: w, mountPath: /w}}]}}
  containers:
  - {{name: main, image: {image}, imagePullPolicy: IfNotPresent, command: [sh, -c, "cat /w/order; sleep 100000"],
     volumeMounts: [{{name: w, mountPath: /w}}]}}
  volumes: [{{name: w, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: oom
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [dd, if=/dev/zero, of=/dev/null, bs=64M, count=1]     # dd's 64M buffer, in a 32Mi cgroup
    resources: {{limits: {{memory: 32Mi}}}}
""")
    wait(lambda: kjson(k, "get", "pod", "inits")["status"].get("phase") == "Running", 60, "inits Running")
    assert wait(lambda: k("logs", "inits", check=False), 20, "main's output") == "one\ntwo\n"
    st = kjson(k, "get", "pod", "inits")["status"]
    first, second = (c["state"]["terminated"] for c in st["initContainerStatuses"])
    assert (first["reason"], first["exitCode"], second["reason"], second["exitCode"]) == ("Completed", 0, "Completed", 0)
    assert first["finishedAt"] <= second["startedAt"]
    term = wait(lambda: ((kjson(k, "get", "pod", "oom")["status"].get("containerStatuses") or [{}])[0]
                         .get("state") or {}).get("terminated"), 60, "the oom container terminated")
    assert (term["reason"], term["exitCode"]) == ("OOMKilled", 137), term
    assert kjson(k, "get", "pod", "oom")["status"]["phase"] == "Failed"
    # exec -it: kubectl on a terminal gets a TTY in the container (the remote command sees /dev/pts/N)
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(KUBECTL, [KUBECTL, "--kubeconfig", str(lab.kubeconfig), "exec", "-it", "inits", "-c", "main", "--",
                           "sh", "-c", "tty; echo cols=$(stty size)"])
    out = b""
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
    except OSError:         # EIO once kubectl exits and the pty closes
        pass
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0 and "/dev/pts/" in text and "cols=" in text, text
    # a pod bound past the scheduler that does not fit is refused by the kubelet's admission
    k("run", "too-big", f"--image={image}", "--image-pull-policy=IfNotPresent", "--overrides", json.dumps(
        {"spec": {"nodeName": "node1", "containers": [{"name": "too-big", "image": image, "command": ["sleep", "9"],
                                                       "resources": {"requests": {"cpu": "1000"}}}]}}))
    st = wait_phase(k, "too-big", "Failed", 30, "too-big refused")
    assert st["reason"] == "OutOfcpu" and st["message"].startswith(
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: "), st
    k("delete", "pod", "inits", "oom", "too-big", "--grace-period=1")


def test_lifecycle_hooks_run_within_the_grace_period(lab, k):
    image = lab.image_refs[0]["busybox"]
    hooks = lab.tmp / "hooks"
    hooks.mkdir(exist_ok=True)
    k("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sleep, "100000"]
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /host/poststart"]}}}}
      preStop: {{exec: {{command: [sh, -c, "sleep 1; echo stopping > /host/prestop"]}}}}
  volumes: [{{name: host, hostPath: {{path: {hooks}, type: Directory}}}}]
""")
    wait(lambda: kjson(k, "get", "pod", "hooked")["status"].get("phase") == "Running", 60, "hooked Running")
    assert wait(lambda: (hooks / "poststart").exists(), 10, "postStart ran")
    assert (hooks / "poststart").read_text() == "started\n"
    t0 = time.monotonic()
    k("delete", "pod", "hooked", "--timeout=60s", timeout=90)
    took = time.monotonic() - t0
    assert (hooks / "prestop").read_text() == "stopping\n"
    assert 1.0 <= took < 10.0, f"deletion took {took:.1f}s"


def test_hpa_scales_a_busy_deployment_on_real_cpu_metrics(lab, k):
    image = lab.image_refs[0]["busybox"]
    k("apply", "-f", "-", input=f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: {image}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "while :; do :; done"]
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 300m}}}}
""")
    k("rollout", "status", "deployment/burner", "--timeout=60s", timeout=90)
    k("autoscale", "deployment", "burner", "--min=1", "--max=3", "--cpu-percent=50")
    hpa = wait(lambda: (lambda h: h if (h.get("status") or {}).get("currentMetrics") else None)(
        kjson(k, "get", "hpa", "burner")), 90, "the HPA reading CPU metrics")
    util = hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
    assert util > 100, hpa["status"]
    wait(lambda: kjson(k, "get", "deployment", "burner")["spec"]["replicas"] == 3, 90, "scaled to maxReplicas")
    events = k("get", "events", "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")
    assert "SuccessfulRescale" in events and "cpu resource utilization (percentage of request) above target" in events
    k("delete", "hpa", "burner")
    k("delete", "deployment", "burner")
