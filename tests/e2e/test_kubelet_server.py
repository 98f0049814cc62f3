"""The kubelet's HTTPS server (kubelab.kubelet.server) over a real kubelab-cri: a pod made through CRI
directly (no kubelet core), then logs (tail, timestamps, limitBytes, follow), exec over WebSocket
v5 and the SPDY fallback, port-forward over both, /stats/summary, /metrics/resource and client
certificate authentication, all through the server's HTTPS port."""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from pathlib import Path

import aiohttp
import grpc
import pytest

from e2e.cri_client import Pods
from e2e.streamclient import V5, open_command, spdy_port_forward, ws_port_forward
from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.api import api_pb2_grpc as pbg
from kubelab.kubelet.server import KubeletServer
from kubelab.pki import certs

pytestmark = pytest.mark.e2e

NS = "cri-test"
TALKER = ["sh", "-c", "echo hello; echo to-stderr >&2; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kubelet-pki")
    ca, ca_key = certs.make_ca()
    out = {"ca": d / "ca.crt"}
    certs.write(out["ca"], ca, 0o644)
    for name, kw in (("server", {"sans": ("127.0.0.1", "localhost"), "server": True}),
                     ("client", {"orgs": ("system:masters",), "client": True})):
        cert, key = certs.issue(ca, ca_key, f"kubelet-{name}", **kw)
        certs.write(d / f"{name}.crt", cert, 0o644)
        certs.write(d / f"{name}.key", key)
        out[name], out[f"{name}-key"] = d / f"{name}.crt", d / f"{name}.key"
    rogue_ca, rogue_key = certs.make_ca("rogue")
    cert, key = certs.issue(rogue_ca, rogue_key, "intruder", client=True)
    certs.write(d / "rogue.crt", cert, 0o644)
    certs.write(d / "rogue.key", key)
    out["rogue"], out["rogue-key"] = d / "rogue.crt", d / "rogue.key"
    return out


@pytest.fixture(scope="module")
def pod(kubelab_cri, tmp_path_factory):
    """A sandbox with a busybox that keeps printing and an nginx on port 80, and the Pod object a
    kubelet would hold for it."""
    cri = kubelab_cri
    cri.pull("busybox")
    cri.pull("nginx")
    pods = Pods(cri, tmp_path_factory.mktemp("kubelet-server-logs"))
    try:
        sid, sconfig = pods.run_sandbox()
        md = sconfig.metadata
        statuses, logs = [], {}
        for name, image, cmd in (("talker", "busybox", TALKER), ("web", "nginx", [])):
            cconfig = pods.container_config(name, image, cmd)
            cconfig.labels.update({k: v for k, v in sconfig.labels.items() if k.startswith("io.kubernetes.pod.")})
            cid = pods.start(sid, sconfig, cconfig)
            cri.wait_state(cid, pb.CONTAINER_RUNNING)
            logs[name] = pods.log_file(sconfig, cconfig)
            statuses.append({"name": name, "containerID": f"kubelab://{cid}", "ready": True, "restartCount": 0,
                             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "image": image})
        obj = {"metadata": {"name": md.name, "namespace": NS, "uid": md.uid},
               "spec": {"nodeName": "node-a", "containers": [{"name": "talker", "image": "busybox"},
                                                             {"name": "web", "image": "nginx"}]},
               "status": {"phase": "Running", "containerStatuses": statuses}}
        pending = {"metadata": {"name": "pending", "namespace": NS, "uid": "u-pending"},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                   "status": {"phase": "Pending", "containerStatuses": [
                       {"name": "c", "ready": False, "restartCount": 0, "image": "busybox",
                        "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
        deadline = time.monotonic() + 15
        while b"tick 2" not in (logs["talker"].read_bytes() if logs["talker"].exists() else b""):
            assert time.monotonic() < deadline, "the talker never logged"
            time.sleep(0.1)
        yield {"pod": obj, "pending": pending, "logs": logs, "sandbox": sid, "cri": cri}
    finally:
        pods.cleanup()


def _client_ssl(pki, cert: str = "client") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        ctx.load_cert_chain(str(pki[cert]), str(pki[f"{cert}-key"]))
    return ctx


@contextlib.asynccontextmanager
async def kubelet_server(pod, pki):
    channel = grpc.aio.insecure_channel(f"unix://{pod['cri'].socket}")
    objs = [pod["pod"], pod["pending"]]

    def log_path(p: dict, container: str, previous: bool) -> Path | None:
        if p is pod["pod"] and not previous:
            return pod["logs"].get(container)
        return None

    server = KubeletServer(address="127.0.0.1", port=0, tls_cert=pki["server"], tls_key=pki["server-key"],
                           client_ca=pki["ca"], runtime=pbg.RuntimeServiceStub(channel), pods=lambda: objs,
                           log_path=log_path, node_name="node-a")
    await server.start()
    try:
        yield f"https://127.0.0.1:{server.bound_port}"
    finally:
        await server.stop()
        await channel.close()


async def _get(base: str, path: str, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path, ssl=ctx) as r:
            return r.status, await r.read()


def test_health_pods_and_client_certificates(pod, pki):
    async def main():
        async with kubelet_server(pod, pki) as base:
            assert await _get(base, "/healthz", _client_ssl(pki)) == (200, b"ok")
            assert (await _get(base, "/healthz", _client_ssl(pki, cert="")))[0] == 401
            with pytest.raises(aiohttp.ClientError):       # a certificate of another CA fails the handshake
                await _get(base, "/healthz", _client_ssl(pki, cert="rogue"))
            code, body = await _get(base, "/pods", _client_ssl(pki))
            assert code == 200
            lst = json.loads(body)
            assert lst["kind"] == "PodList"
            assert [p["metadata"]["name"] for p in lst["items"]] == [pod["pod"]["metadata"]["name"], "pending"]
    asyncio.run(main())


def test_container_logs(pod, pki):
    name = pod["pod"]["metadata"]["name"]
    ctx = _client_ssl(pki)

    async def main():
        async with kubelet_server(pod, pki) as base:
            logs = f"/containerLogs/{NS}/{name}/talker"
            code, body = await _get(base, logs, ctx)
            assert code == 200
            assert body.startswith(b"hello\n") and b"to-stderr\n" in body and b"tick 1\n" in body, body[:200]
            code, body = await _get(base, logs + "?tailLines=1", ctx)
            assert code == 200 and body.count(b"\n") == 1 and body.startswith(b"tick "), body
            code, body = await _get(base, logs + "?tailLines=0", ctx)
            assert (code, body) == (200, b"")
            code, body = await _get(base, logs + "?limitBytes=3", ctx)
            assert (code, body) == (200, b"hel")
            code, body = await _get(base, logs + "?timestamps=true&tailLines=2", ctx)
            first = body.split(b"\n")[0].split(b" ")
            assert first[0][:2] == b"20" and b"T" in first[0] and first[1] == b"tick", body
            code, body = await _get(base, logs + "?sinceSeconds=3600", ctx)
            assert body.startswith(b"hello\n")
            code, body = await _get(base, logs + "?tailLines=-1", ctx)
            assert code == 422
            # upstream's texts for what is not there or not yet running
            assert await _get(base, f"/containerLogs/{NS}/nope/talker", ctx) == (404, b'pod "nope" does not exist\n')
            assert await _get(base, f"/containerLogs/{NS}/{name}/nope", ctx) == (
                404, f'container "nope" not found in pod "{name}"\n'.encode())
            assert await _get(base, f"/containerLogs/{NS}/pending/c", ctx) == (
                400, b'container "c" in pod "pending" is waiting to start: ContainerCreating\n')
            code, body = await _get(base, logs + "?previous=true", ctx)
            assert (code, body) == (400, f'previous terminated container "talker" in pod "{name}" not found\n'.encode())

            # follow: the body stays open and new lines arrive as the container writes them
            async with aiohttp.ClientSession() as http:
                async with http.get(base + logs + "?follow=true&tailLines=1", ssl=ctx) as r:
                    assert r.status == 200
                    got = bytearray()
                    deadline = time.monotonic() + 10
                    while got.count(b"\n") < 4:
                        assert time.monotonic() < deadline, f"follow stalled: {bytes(got)!r}"
                        got += await asyncio.wait_for(r.content.readany(), 10)
                    ticks = [int(ln.split()[1]) for ln in bytes(got).splitlines()[:4]]
                    assert ticks == list(range(ticks[0], ticks[0] + 4)), got
    asyncio.run(main())


def test_exec_over_websocket_v5_and_spdy(pod, pki):
    name = pod["pod"]["metadata"]["name"]
    ctx = _client_ssl(pki)

    async def main():
        async with kubelet_server(pod, pki) as base:
            cmd = "command=sh&command=-c&command=" + "cat%3B%20echo%20oops%20%3E%262%3B%20exit%203"
            url = f"{base}/exec/{NS}/{name}/talker?{cmd}&input=1&output=1&error=1"
            c = await open_command("ws-v5", url.replace("https://", "wss://"), ssl=ctx)
            assert c.protocol == V5
            await c.send(b"through the kubelet\n")
            await c.close_stdin()
            r = await c.result()
            assert r.stdout == b"through the kubelet\n" and r.stderr == b"oops\n"
            assert r.exit_code == 3, r.status
            # kubectl's SPDY fallback (POST with Upgrade: SPDY/3.1)
            c = await open_command("spdy", f"{base}/exec/{NS}/{name}/talker?command=echo&command=hi&output=1",
                                   ssl=ctx)
            r = await c.result()
            assert (r.stdout, r.exit_code) == (b"hi\n", 0)
            # a container that is not there; a plain request
            code, body = await _get(base, f"/exec/{NS}/{name}/nope?command=true&output=1", ctx)
            assert code == 400 and b"Upgrade request required" in body
            with pytest.raises(Exception) as e:
                await open_command("ws-v5", f"wss://127.0.0.1:{base.rsplit(':', 1)[1]}/exec/{NS}/{name}/nope"
                                            f"?command=true&output=1", ssl=ctx)
            assert "404" in str(e.value)
    asyncio.run(main())


REQUEST = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"


def test_port_forward_over_websocket_and_spdy(pod, pki):
    name = pod["pod"]["metadata"]["name"]
    ctx = _client_ssl(pki)

    async def main():
        async with kubelet_server(pod, pki) as base:
            deadline = time.monotonic() + 15
            while True:         # nginx may still be starting
                data, error = await spdy_port_forward(f"{base}/portForward/{NS}/{name}", 80, REQUEST, ssl=ctx)
                if data or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n"), (data[:200], error)
            data, error = await ws_port_forward(f"wss://{base[8:]}/portForward/{NS}/{name}?ports=80", 80, REQUEST,
                                                ssl=ctx)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and error == b"", (data[:200], error)
    asyncio.run(main())


def test_stats_summary_and_resource_metrics(pod, pki):
    name = pod["pod"]["metadata"]["name"]
    ctx = _client_ssl(pki)

    async def main():
        async with kubelet_server(pod, pki) as base:
            await _get(base, "/stats/summary", ctx)         # a first reading, for the CPU rates
            await asyncio.sleep(0.5)
            code, body = await _get(base, "/stats/summary", ctx)
            assert code == 200
            s = json.loads(body)
            assert s["node"]["nodeName"] == "node-a"
            assert s["node"]["cpu"]["usageCoreNanoSeconds"] > 0 and "usageNanoCores" in s["node"]["cpu"]
            assert s["node"]["memory"]["workingSetBytes"] > 0 and s["node"]["fs"]["capacityBytes"] > 0
            mine = [p for p in s["pods"] if p["podRef"]["name"] == name]
            assert len(mine) == 1, s["pods"]
            p = mine[0]
            assert p["podRef"] == {"name": name, "namespace": NS, "uid": pod["pod"]["metadata"]["uid"]}
            by_name = {c["name"]: c for c in p["containers"]}
            assert set(by_name) == {"talker", "web"}
            assert by_name["talker"]["cpu"]["usageCoreNanoSeconds"] > 0
            assert "usageNanoCores" in by_name["talker"]["cpu"]
            assert by_name["web"]["memory"]["workingSetBytes"] > 0
            code, body = await _get(base, "/metrics/resource", ctx)
            text = body.decode()
            assert code == 200
            assert "# TYPE container_cpu_usage_seconds_total counter" in text
            assert f'container_memory_working_set_bytes{{container="web",namespace="{NS}",pod="{name}"}} ' in text
            assert "\nnode_cpu_usage_seconds_total " in text and "\nnode_memory_working_set_bytes " in text
            assert f'pod_cpu_usage_seconds_total{{namespace="{NS}",pod="{name}"}} ' in text
            assert "\nscrape_error 0\n" in text
    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- through the apiserver

@contextlib.contextmanager
def kubelet_server_thread(pod, pki, client_ca: Path):
    """A KubeletServer in its own thread and event loop (kubectl runs in this one), trusting client_ca."""
    import threading
    started, stop = threading.Event(), None
    box: dict = {}

    async def serve():
        nonlocal stop
        stop = asyncio.Event()
        channel = grpc.aio.insecure_channel(f"unix://{pod['cri'].socket}")
        server = KubeletServer(address="127.0.0.1", port=0, tls_cert=pki["server"], tls_key=pki["server-key"],
                               client_ca=client_ca, runtime=pbg.RuntimeServiceStub(channel),
                               pods=lambda: [pod["pod"]],
                               log_path=lambda p, c, prev: None if prev else pod["logs"].get(c), node_name="node-a")
        try:
            await server.start()
            box["port"], box["loop"] = server.bound_port, asyncio.get_running_loop()
            started.set()
            await stop.wait()
        finally:
            await server.stop()
            await channel.close()
            started.set()

    t = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    t.start()
    assert started.wait(20) and "port" in box, "the kubelet server did not start"
    try:
        yield box["port"]
    finally:
        box["loop"].call_soon_threadsafe(stop.set)
        t.join(20)
        assert not t.is_alive()


def test_kubectl_logs_exec_port_forward_top_through_the_apiserver(pod, pki, control_plane, kubectl):
    import re
    import urllib.request
    import uuid
    name = pod["pod"]["metadata"]["name"]
    node = f"kserver-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", NS, check=False)
    with kubelet_server_thread(pod, pki, control_plane.api.pki.dir / "ca.crt") as port:
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": node}}))
        try:
            kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "allocatable": {"cpu": "2", "memory": "4Gi"}, "capacity": {"cpu": "2", "memory": "4Gi"}}}))
            kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": name, "namespace": NS}, "spec": {"nodeName": node, "containers": [
                    {"name": "talker", "image": "busybox"}, {"name": "web", "image": "nginx",
                                                             "ports": [{"containerPort": 80}]}]}}))
            ip = pod["cri"].rt.PodSandboxStatus(
                pb.PodSandboxStatusRequest(pod_sandbox_id=pod["sandbox"])).status.network.ip
            kubectl("patch", "pod", name, "-n", NS, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}))
            kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{name}-unscheduled", "namespace": NS}, "spec": {"containers": [
                    {"name": "c", "image": "busybox"}]}}))

            # logs
            out = kubectl("logs", name, "-n", NS, "-c", "talker", "--tail=2")
            assert re.fullmatch(r"tick \d+\ntick \d+\n", out), out
            p = kubectl.run("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}/log", check=False)
            assert p.returncode != 0 and f"a container name must be specified for pod {name}, choose one of: " \
                                         f"[talker web]" in p.stderr, p.stderr
            p = kubectl.run("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{name}/log?container=web&tailLines=-1",
                            check=False)
            assert "PodLogOptions" in p.stderr and "tailLines: Invalid value: -1: must be greater than or equal " \
                                                  "to 0" in p.stderr, p.stderr
            p = kubectl.run("logs", name, "-n", NS, "-c", "talker", "--previous", check=False)
            assert f'previous terminated container "talker" in pod "{name}" not found' in p.stderr, p.stderr
            p = kubectl.run("logs", f"{name}-unscheduled", "-n", NS, check=False)
            assert 'container "c" in pod "' in p.stderr and "is waiting to start: ContainerCreating" in p.stderr
            f = kubectl.popen("logs", "-f", name, "-n", NS, "-c", "talker", "--tail=1")
            try:
                lines = [f.stdout.readline() for _ in range(3)]
                assert all(ln.startswith("tick ") for ln in lines), lines
            finally:
                f.kill()
                f.communicate()

            # exec (WebSocket v5, kubectl's default), stdin, exit codes
            assert kubectl("exec", name, "-n", NS, "-c", "talker", "--", "echo", "hi") == "hi\n"
            assert kubectl("exec", "-i", name, "-n", NS, "-c", "talker", "--", "cat", input="via kubectl\n") == \
                "via kubectl\n"
            p = kubectl.run("exec", name, "-n", NS, "-c", "talker", "--", "sh", "-c", "exit 3", check=False)
            assert p.returncode == 3 and "command terminated with exit code 3" in p.stderr, (p.returncode, p.stderr)
            p = kubectl.run("exec", f"{name}-unscheduled", "-n", NS, "--", "true", check=False)
            assert p.returncode != 0

            # cp (exec with tar both ways) and attach
            src = control_plane.tmp / f"cp-{node}.txt"
            src.write_text("copied through exec\n")
            try:
                kubectl("cp", str(src), f"{NS}/{name}:/tmp/cp.txt", "-c", "talker")
                assert kubectl("exec", name, "-n", NS, "-c", "talker", "--", "cat", "/tmp/cp.txt") == \
                    "copied through exec\n"
                kubectl("cp", f"{NS}/{name}:/tmp/cp.txt", str(src) + ".back", "-c", "talker")
                assert Path(str(src) + ".back").read_text() == "copied through exec\n"
            finally:
                src.unlink(missing_ok=True)
                Path(str(src) + ".back").unlink(missing_ok=True)
            at = kubectl.popen("attach", name, "-n", NS, "-c", "talker")
            try:
                line = at.stdout.readline()
                assert line.startswith("tick "), (line, at.stderr.read() if at.poll() is not None else "")
            finally:
                at.kill()
                at.communicate()

            # port-forward (SPDY inside WebSocket or raw SPDY)
            pf = kubectl.popen("port-forward", "-n", NS, f"pod/{name}", ":80")
            try:
                first = pf.stdout.readline()
                m = re.search(r"127\.0\.0\.1:(\d+) -> 80", first)
                if not m:
                    pf.kill()
                    raise AssertionError(f"kubectl port-forward: {first!r} {pf.communicate()}")
                with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=10) as r:
                    assert r.status == 200 and b"nginx" in r.read().lower()
            finally:
                pf.kill()
                pf.communicate()

            # nodes/proxy
            assert kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz") == "ok"
            summary = json.loads(kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary"))
            assert summary["node"]["nodeName"] == "node-a"

            # pods/proxy: to the pod's IP, the first declared port or the one named
            for target in (name, f"{name}:80"):
                page = kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/pods/{target}/proxy/")
                assert "nginx" in page.lower(), page[:200]

            # kubectl top, from metrics.k8s.io
            top = kubectl("top", "pod", name, "-n", NS, "--containers")
            assert re.search(rf"{name}\s+talker\s+\d+m\s+\d+Mi", top), top
            top = kubectl("top", "node", node)
            assert re.search(rf"{node}\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%", top), top
        finally:
            kubectl.run("delete", "pod", "-n", NS, name, f"{name}-unscheduled", "--force", "--grace-period=0",
                        check=False)
            kubectl.run("delete", "node", node, check=False)
