"""The kubelet's prober against real things: each probe handler against a real local server
(aiohttp HTTP and HTTPS with redirects, a TCP listener, a grpc.aio server with a health servicer),
exec probes against a real subprocess-backed ExecSync, the probe manager driving restarts and
readiness with real timers, and its "Unhealthy" events written to the real apiserver."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from typing import Any, AsyncIterator, Callable

import grpc
import pytest
from aiohttp import web

from kubelab.client.events import EventRecorder
from kubelab.client.rest import Client
from kubelab.kubelet.prober import Outcome, ProbeError, ProbeManager
from kubelab.kubelet.prober.execprobe import probe_exec
from kubelab.kubelet.prober.grpcprobe import probe_grpc
from kubelab.kubelet.prober.healthpb import health_pb2, health_pb2_grpc
from kubelab.kubelet.prober.httpprobe import build_request, probe_http
from kubelab.kubelet.prober.tcpprobe import probe_tcp
from kubelab.lab.controlplane import free_port
from kubelab.pki.certs import issue, make_ca
from kubelab.proc import CommandError, run

pytestmark = pytest.mark.integration


async def eventually(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


# -- an HTTP(S) server -------------------------------------------------------------------------------

class HTTPServer:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.status = 200
        self.port = 0

    def app(self) -> web.Application:
        async def ok(request: web.Request) -> web.Response:
            self.seen.append(dict(request.headers))
            return web.Response(status=self.status, text=f"ok {request.path_qs}")

        async def big(request: web.Request) -> web.Response:
            return web.Response(body=b"x" * 65536)

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(5)
            return web.Response(text="late")

        async def same_host(request: web.Request) -> web.Response:
            raise web.HTTPFound("/ok?from=redirect")

        async def other_host(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://localhost:{self.port}/ok", text="moved")

        async def loop(request: web.Request) -> web.Response:
            n = int(request.match_info["n"])
            raise web.HTTPFound(f"/loop/{n + 1}")

        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_get("/big", big)
        app.router.add_get("/slow", slow)
        app.router.add_get("/same-host", same_host)
        app.router.add_get("/other-host", other_host)
        app.router.add_get("/loop/{n}", loop)
        return app


@contextlib.asynccontextmanager
async def http_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[HTTPServer]:
    server = HTTPServer()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.2)
    await runner.setup()
    server.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", server.port, ssl_context=tls).start()
    try:
        yield server
    finally:
        await runner.cleanup()


def http_get(port: int, path: str, **extra) -> Any:
    return build_request({"port": port, "path": path, **extra}, {"name": "c"}, "127.0.0.1")


async def test_http_success_sends_upstreams_headers():
    async with http_server() as srv:
        req = http_get(srv.port, "/ok", httpHeaders=[{"name": "x-probe", "value": "1"},
                                                     {"name": "Host", "value": "vhost.test"}])
        run_ = await probe_http(req, 1)
        assert (run_.outcome, run_.output) == (Outcome.SUCCESS, "ok /ok")
        h = srv.seen[-1]
        assert h["User-Agent"] == "kube-probe/1.36" and h["Accept"] == "*/*" and h["X-Probe"] == "1"
        assert h["Host"] == "vhost.test" and h["Connection"] == "close"
        assert "Accept-Encoding" not in h


async def test_http_error_status_is_a_failure_without_the_body():
    async with http_server() as srv:
        srv.status = 500
        run_ = await probe_http(http_get(srv.port, "/ok"), 1)
        assert (run_.outcome, run_.output) == (Outcome.FAILURE, "HTTP probe failed with statuscode: 500")
        srv.status = 399
        assert (await probe_http(http_get(srv.port, "/ok"), 1)).outcome == Outcome.WARNING  # a 3xx answer


async def test_http_redirects():
    async with http_server() as srv:
        run_ = await probe_http(http_get(srv.port, "/same-host"), 1)
        assert (run_.outcome, run_.output) == (Outcome.SUCCESS, "ok /ok?from=redirect")
        assert srv.seen[-1]["Referer"] == f"http://127.0.0.1:{srv.port}/same-host"

        seen = len(srv.seen)
        run_ = await probe_http(http_get(srv.port, "/other-host"), 1)
        assert (run_.outcome, run_.output) == (Outcome.WARNING, "Probe terminated redirects, Response body: moved")
        assert len(srv.seen) == seen  # not followed to localhost

        run_ = await probe_http(http_get(srv.port, "/loop/0"), 2)
        assert (run_.outcome, run_.output) == (Outcome.FAILURE, 'Get "/loop/10": stopped after 10 redirects')


async def test_http_body_is_read_up_to_10_kib():
    async with http_server() as srv:
        run_ = await probe_http(http_get(srv.port, "/big"), 1)
        assert run_.outcome == Outcome.SUCCESS and run_.output == "x" * 10240


async def test_http_timeout_and_refused():
    async with http_server() as srv:
        t0 = time.monotonic()
        run_ = await probe_http(http_get(srv.port, "/slow"), 0.3)
        assert time.monotonic() - t0 < 2
        assert (run_.outcome, run_.output) == (
            Outcome.FAILURE, f'Get "http://127.0.0.1:{srv.port}/slow": context deadline exceeded '
                             "(Client.Timeout exceeded while awaiting headers)")
    port = free_port()
    run_ = await probe_http(http_get(port, "/"), 1)
    assert (run_.outcome, run_.output) == (
        Outcome.FAILURE, f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: connection refused')


async def test_https_does_not_verify_the_certificate(tmp_path):
    ca, ca_key = make_ca("probe-test-ca")
    cert, key = issue(ca, ca_key, "elsewhere.test", sans=("elsewhere.test",), server=True)
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    async with http_server(tls) as srv:
        run_ = await probe_http(http_get(srv.port, "/ok", scheme="HTTPS"), 2)
        assert (run_.outcome, run_.output) == (Outcome.SUCCESS, "ok /ok")   # a CA nobody trusts, another name
        plain = await probe_http(http_get(srv.port, "/ok"), 2)              # HTTP to an HTTPS port
        assert plain.outcome == Outcome.FAILURE
        assert plain.output.startswith(f'Get "http://127.0.0.1:{srv.port}/ok": ')


# -- TCP ---------------------------------------------------------------------------------------------

async def test_tcp_connect_refused_and_timeout():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await probe_tcp("127.0.0.1", port, 1)).outcome == Outcome.SUCCESS
    finally:
        server.close()
        await server.wait_closed()
    run_ = await probe_tcp("127.0.0.1", port, 1)
    assert (run_.outcome, run_.output) == (Outcome.FAILURE,
                                           f"dial tcp 127.0.0.1:{port}: connect: connection refused")

    # a listener whose accept queue is full drops further SYNs: the connect hangs until the timeout
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fport = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", fport))
                fillers.append(s)
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            run_ = await probe_tcp("127.0.0.1", fport, 0.5)
            assert (run_.outcome, run_.output) == (Outcome.FAILURE, f"dial tcp 127.0.0.1:{fport}: i/o timeout")
            assert 0.4 < time.monotonic() - t0 < 2
        finally:
            for s in fillers:
                s.close()


# -- gRPC --------------------------------------------------------------------------------------------

class Health(health_pb2_grpc.HealthServicer):
    STATUS = {"": health_pb2.HealthCheckResponse.SERVING, "web": health_pb2.HealthCheckResponse.SERVING,
              "down": health_pb2.HealthCheckResponse.NOT_SERVING}

    def __init__(self) -> None:
        self.agents: list[str] = []

    async def Check(self, request, context):
        self.agents.append(dict(context.invocation_metadata()).get("user-agent", ""))
        if request.service not in self.STATUS:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=self.STATUS[request.service])


@contextlib.asynccontextmanager
async def grpc_server(with_health: bool = True) -> AsyncIterator[tuple[int, Health]]:
    server = grpc.aio.server()
    health = Health()
    if with_health:
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, health
    finally:
        await server.stop(None)


async def test_grpc_health_check():
    async with grpc_server() as (port, health):
        ok = await probe_grpc("127.0.0.1", "", port, 2)
        assert (ok.outcome, ok.output) == (Outcome.SUCCESS, "service healthy")
        assert health.agents[-1].startswith("kube-probe/1.36")
        assert (await probe_grpc("127.0.0.1", "web", port, 2)).outcome == Outcome.SUCCESS
        down = await probe_grpc("127.0.0.1", "down", port, 2)
        assert (down.outcome, down.output) == (Outcome.FAILURE, 'service unhealthy (responded with "NOT_SERVING")')
        unknown = await probe_grpc("127.0.0.1", "nope", port, 2)
        assert (unknown.outcome, unknown.output) == (
            Outcome.FAILURE, "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service")
    async with grpc_server(with_health=False) as (port, _):
        run_ = await probe_grpc("127.0.0.1", "", port, 2)
        assert run_.outcome == Outcome.FAILURE
        assert run_.output.startswith("error: this server does not implement the grpc health protocol "
                                      "(grpc.health.v1.Health): ")


async def test_grpc_connect_timeout():
    port = free_port()
    t0 = time.monotonic()
    run_ = await probe_grpc("127.0.0.1", "", port, 0.5)
    assert time.monotonic() - t0 < 3
    assert (run_.outcome, run_.output) == (
        Outcome.FAILURE, f'timeout: failed to connect service "127.0.0.1:{port}" within 500ms: '
                         "context deadline exceeded")


# -- exec with a real subprocess ----------------------------------------------------------------------

async def host_exec(container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    """An ExecSync that runs the command on this host (what the CRI's ExecSync does in a container)."""
    try:
        res = await run(cmd, timeout=timeout, check=False)
    except CommandError as e:
        if e.timed_out:
            raise asyncio.TimeoutError() from None
        raise
    return res.returncode, res.stdout, res.stderr


async def test_exec_probe_with_real_commands():
    ok = await probe_exec(host_exec, "cid", ["sh", "-c", "echo fine"], 2)
    assert (ok.outcome, ok.output) == (Outcome.SUCCESS, "fine\n")
    bad = await probe_exec(host_exec, "cid", ["sh", "-c", "echo out; echo err >&2; exit 3"], 2)
    assert (bad.outcome, bad.output) == (Outcome.FAILURE, "out\nerr\n")
    big = await probe_exec(host_exec, "cid", ["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' x; exit 1"], 2)
    assert big.output == "x" * 10240
    t0 = time.monotonic()
    slow = await probe_exec(host_exec, "cid", ["sleep", "10"], 0.3)
    assert time.monotonic() - t0 < 3
    assert (slow.outcome, slow.output) == (Outcome.FAILURE, 'command "sleep 10" timed out')
    with pytest.raises(ProbeError):
        await probe_exec(host_exec, "cid", ["/nonexistent/probe"], 1)


# -- the manager with real timers ---------------------------------------------------------------------

def a_pod(containers: list[dict], uid: str = "uid-1", name: str = "web", ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": uid},
            "spec": {"containers": containers, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}}


async def test_liveness_failure_calls_back_for_a_restart(tmp_path):
    healthy = tmp_path / "healthy"
    healthy.write_text("")
    failures: list[tuple[str, str, str]] = []
    probed: list[tuple[str, int]] = []

    async def exec_sync(container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        code, out, err = await host_exec(container_id, cmd, timeout)
        probed.append((container_id, code))
        return code, out, err

    m = ProbeManager(exec_sync, on_change=lambda uid: None, on_liveness_failure=lambda *a: failures.append(a))
    c = {"name": "app", "livenessProbe": {"exec": {"command": ["test", "-f", str(healthy)]},
                                          "periodSeconds": 1, "failureThreshold": 2}}
    try:
        m.container_started(a_pod([c]), "app", "cid-1", time.time(), "127.0.0.1")
        await eventually(lambda: probed.count(("cid-1", 0)) >= 2, 5, "two passing probes")
        assert failures == []
        healthy.unlink()
        await eventually(lambda: failures, 6, "the liveness failure")
        assert failures == [("uid-1", "app", "Container app failed liveness probe")]
        assert probed[-2:] == [("cid-1", 1), ("cid-1", 1)]    # failureThreshold failures in a row
        # the kubelet restarts the container; the new instance is probed afresh
        healthy.write_text("")
        m.container_started(a_pod([c]), "app", "cid-2", time.time(), "127.0.0.1")
        await eventually(lambda: probed.count(("cid-2", 0)) >= 2, 5, "the new container's probes")
        assert len(failures) == 1 and m.result("uid-1", "app", "liveness").value == "Success"
        assert all(cid == "cid-2" for cid, _ in probed[probed.index(("cid-2", 0)):])
    finally:
        await m.close()
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("probe-"))


async def test_readiness_follows_the_http_endpoint():
    changes: list[str] = []
    async with http_server() as srv:
        m = ProbeManager(host_exec, on_change=changes.append, on_liveness_failure=lambda *a: None)
        c = {"name": "web", "ports": [{"name": "http", "containerPort": srv.port}],
             "readinessProbe": {"httpGet": {"path": "/ok", "port": "http"}, "periodSeconds": 1,
                                "failureThreshold": 1}}
        try:
            m.container_started(a_pod([c]), "web", "cid-1", time.time(), "127.0.0.1")
            assert not m.ready("uid-1", "web")
            await eventually(lambda: m.ready("uid-1", "web"), 4, "readiness")
            assert changes == ["uid-1"]
            srv.status = 503
            await eventually(lambda: not m.ready("uid-1", "web"), 4, "unreadiness")
            assert changes == ["uid-1", "uid-1"]
        finally:
            await m.close()


# -- events in the real apiserver ----------------------------------------------------------------------

async def test_unhealthy_events_are_written(control_plane, namespace):
    api = Client.from_kubeconfig(str(control_plane.kubeconfig), component="kubelet")
    recorder = EventRecorder(api, "kubelet", host="node-1")
    port = free_port()
    try:
        pod = await api.create("v1", "pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "nginx", "readinessProbe": {
                "tcpSocket": {"port": port}, "periodSeconds": 1}}]}}, namespace)
        m = ProbeManager(host_exec, on_change=lambda uid: None, on_liveness_failure=lambda *a: None,
                         recorder=recorder)
        try:
            m.container_started(pod, "c", "cid-1", time.time(), "127.0.0.1")

            async def unhealthy():
                evs = (await api.list("v1", "events", namespace,
                                      field_selector="involvedObject.name=probed"))["items"]
                return [e for e in evs if e["reason"] == "Unhealthy"]
            evs = await eventually(unhealthy, 10, "an Unhealthy event")
        finally:
            await m.close()
        ev = evs[0]
        assert ev["type"] == "Warning"
        assert ev["message"] == f"Readiness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused"
        assert ev["involvedObject"]["fieldPath"] == "spec.containers{c}"
        assert ev["involvedObject"]["uid"] == pod["metadata"]["uid"]
        assert ev["source"] == {"component": "kubelet", "host": "node-1"}
        await api.delete("v1", "pods", namespace, "probed", grace_period_seconds=0)
    finally:
        await recorder.shutdown()
        await api.close()
