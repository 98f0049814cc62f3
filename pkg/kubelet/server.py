"""The kubelet's HTTPS server (pkg/kubelet/server/server.go): what the apiserver reaches for
`kubectl logs/exec/attach/port-forward/top` and nodes/proxy.

    GET  /healthz                                   "ok"
    GET  /pods                                      PodList of the kubelet's pods
    GET  /containerLogs/{ns}/{pod}/{container}      the container's log (logs.py), PodLogOptions
                                                    as query: follow, tailLines (or tail), timestamps,
                                                    previous, sinceSeconds, sinceTime, limitBytes
    *    /exec/{ns}/{pod}[/{uid}]/{container}       ?command=..&input=1&output=1&error=1&tty=1
    *    /attach/{ns}/{pod}[/{uid}]/{container}
    *    /portForward/{ns}/{pod}[/{uid}]            ?ports=80,8080 (WebSocket; SPDY names them per stream)
    GET  /stats/summary                             stats/v1alpha1 Summary (stats.py)
    GET  /metrics/resource                          resource metrics, Prometheus text
    GET  /metrics                                   the process's Prometheus registry

exec, attach and port-forward ask the runtime (CRI Exec, Attach, PortForward) for a streaming URL
and proxy the client's upgraded connection (WebSocket v5/v4 channel protocols or SPDY/3.1) to it
byte for byte, as the kubelet's proxyStream does (an upgrade is required: a plain request is a 400).
Errors are upstream's texts: `pod "p" does not exist`, `container "c" not found in pod "p"`,
`container not found ("c")`, and the log status checks of validateContainerLogStatus
(`container "c" in pod "p" is waiting to start: ContainerCreating`, ...).

With a client CA, every request must present a client certificate it signed (401 otherwise).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any, Callable

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from kubelab.api.timefmt import parse_time
from kubelab.client.healthz import healthz_handler
from kubelab.client import upgradeproxy
from kubelab.cri.api import api_pb2 as pb
from kubelab.kubelet import logs, stats

log = logging.getLogger(__name__)

CRI_TIMEOUT = 30.0
ERR_IMAGE_PULL, ERR_IMAGE_PULL_BACKOFF = "ErrImagePull", "ImagePullBackOff"


class HTTPError(Exception):
    """An error answered as plain text, as the kubelet's go-restful WriteError does."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip("\n") + "\n",
                        headers={"Content-Type": "text/plain; charset=utf-8"})


def _flag(q, name: str) -> bool:
    return q.get(name, "").lower() in ("1", "true")


def _int_param(q, name: str) -> int | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise HTTPError(400, '{"message": "Unable to decode query."}') from None


def log_options(q, now_ns: int | None = None) -> tuple[logs.LogOptions, bool]:
    """(LogOptions, previous) from the query of a /containerLogs request (the kubelet decodes it
    as v1.PodLogOptions and validates it with ValidatePodLogOptions)."""
    tail = q.get("tail")        # the kubelet's old name for tailLines; "all" means no limit
    if tail == "all":
        tail_lines = None
    else:
        tail_lines = _int_param({"tailLines": tail} if tail else q, "tailLines")
    limit = _int_param(q, "limitBytes")
    since_s = _int_param(q, "sinceSeconds")
    since_time = q.get("sinceTime")
    since_ns = None
    if since_time:
        t = parse_time(since_time)
        if t is None:
            raise HTTPError(400, '{"message": "Unable to decode query."}')
        since_ns = int(t * 1e9)
    if (tail_lines is not None and tail_lines < 0) or (limit is not None and limit < 1) or \
            (since_s is not None and since_s < 1) or (since_s is not None and since_time):
        raise HTTPError(422, '{"message": "Invalid request."}')
    if since_s is not None:
        since_ns = (now_ns if now_ns is not None else time.time_ns()) - since_s * 1_000_000_000
    return logs.LogOptions(tail_lines=tail_lines, limit_bytes=limit, since_ns=since_ns,
                           timestamps=_flag(q, "timestamps"), follow=_flag(q, "follow")), _flag(q, "previous")


def _all_containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or []) + \
        list(spec.get("ephemeralContainers") or [])


def _all_statuses(pod: dict) -> list[dict]:
    st = pod.get("status") or {}
    return list(st.get("containerStatuses") or []) + list(st.get("initContainerStatuses") or []) + \
        list(st.get("ephemeralContainerStatuses") or [])


def _strip_scheme(cid: str) -> str:
    return cid.split("://", 1)[1] if "://" in cid else cid


def container_log_status(pod: dict, container: str, previous: bool) -> str:
    """The container ID whose log to read, or an HTTPError(400) with upstream's message
    (kubelet_pods.go validateContainerLogStatus)."""
    name = (pod.get("metadata") or {}).get("name", "")
    cs = next((s for s in _all_statuses(pod) if s.get("name") == container), None)
    if cs is None:
        raise HTTPError(400, f'container "{container}" in pod "{name}" is not available')
    last = (cs.get("lastState") or {}).get("terminated")
    state = cs.get("state") or {}
    waiting, running, terminated = state.get("waiting"), state.get("running"), state.get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise HTTPError(400, f'previous terminated container "{container}" in pod "{name}" not found')
        return _strip_scheme(last["containerID"])
    if running is not None:
        return _strip_scheme(cs.get("containerID", ""))
    if terminated is not None:
        if terminated.get("containerID"):
            return _strip_scheme(terminated["containerID"])
        if last and last.get("containerID"):
            return _strip_scheme(last["containerID"])
        raise HTTPError(400, f'container "{container}" in pod "{name}" is terminated')
    if last is not None:
        if not last.get("containerID"):
            raise HTTPError(400, f'container "{container}" in pod "{name}" is terminated')
        return _strip_scheme(last["containerID"])
    if waiting is not None:
        reason = waiting.get("reason", "")
        if reason == ERR_IMAGE_PULL:
            raise HTTPError(400, f'container "{container}" in pod "{name}" is waiting to start: '
                                 f'image can\'t be pulled')
        if reason == ERR_IMAGE_PULL_BACKOFF:
            raise HTTPError(400, f'container "{container}" in pod "{name}" is waiting to start: '
                                 f'trying and failing to pull image')
        raise HTTPError(400, f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    raise HTTPError(400, f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


class KubeletServer:
    def __init__(self, *, address: str, port: int, tls_cert: Path, tls_key: Path, client_ca: Path | None,
                 runtime: Any, pods: Callable[[], list[dict]],
                 log_path: Callable[[dict, str, bool], Path | None], node_name: str,
                 root_dir: Path | None = None, healthz: Callable | None = None,
                 stats_provider: stats.StatsProvider | None = None) -> None:
        self.address = address
        self.healthz = healthz or healthz_handler({})
        self.port = port
        self.tls_cert, self.tls_key, self.client_ca = tls_cert, tls_key, client_ca
        self.runtime = runtime
        self.pods = pods
        self.log_path = log_path
        self.node_name = node_name
        self.stats = stats_provider or stats.StatsProvider(runtime, root_dir)
        self._runner: web.AppRunner | None = None
        self._active: set[asyncio.Task] = set()
        self.bound_port = 0

    # ------------------------------------------------------------------------------------ lifecycle

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            if self.client_ca is not None:
                ctx.load_verify_locations(cafile=str(self.client_ca))
                ctx.verify_mode = ssl.CERT_OPTIONAL     # checked per request: 401 without one
        except (OSError, ssl.SSLError) as e:
            raise OSError(f"cannot load the kubelet's TLS files: {e}") from None
        return ctx

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._authn])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/pods", self._pods)
        r.add_get("/pods/", self._pods)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self._container_logs)
        for kind in ("exec", "attach"):
            h = self._exec if kind == "exec" else self._attach
            for path in (f"/{kind}/{{ns}}/{{pod}}/{{container}}", f"/{kind}/{{ns}}/{{pod}}/{{uid}}/{{container}}"):
                r.add_route("GET", path, h)
                r.add_route("POST", path, h)
        for path in ("/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"):
            r.add_route("GET", path, self._port_forward)
            r.add_route("POST", path, self._port_forward)
        r.add_get("/stats/summary", self._summary)
        r.add_get("/stats/summary/", self._summary)
        r.add_get("/metrics/resource", self._resource_metrics)
        r.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        ctx = self.ssl_context()
        try:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            sock = socket.create_server((self.address, self.port), family=family, backlog=128)
        except OSError as e:
            raise OSError(f"cannot serve on {self.address}:{self.port}: {e.strerror or e}") from None
        self.bound_port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        log.info("kubelet server listening on %s:%d", self.address, self.bound_port)

    async def stop(self) -> None:
        for t in list(self._active):
            t.cancel()
        if self._active:
            await asyncio.wait(list(self._active), timeout=10)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------ middleware

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            return await handler(request)
        except HTTPError as e:
            return _text(e.status, e.message)
        except upgradeproxy.BackendError as e:
            return _text(500, str(e))
        except grpc.aio.AioRpcError as e:
            return _text(_grpc_http_status(e.code()), e.details() or str(e.code()))
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # noqa: BLE001 - never a traceback to the client
            log.exception("kubelet server: %s %s", request.method, request.path)
            return _text(500, f"internal error: {type(e).__name__}: {e}")
        finally:
            if task is not None:
                self._active.discard(task)

    @web.middleware
    async def _authn(self, request: web.Request, handler):
        if self.client_ca is not None:
            cert = request.transport.get_extra_info("peercert") if request.transport is not None else None
            if not cert:
                return _text(401, "Unauthorized")
        return await handler(request)

    # ------------------------------------------------------------------------------------ handlers

    async def _pods(self, request: web.Request) -> web.Response:
        items = [{"kind": "Pod", "apiVersion": "v1", **p} for p in self.pods()]
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    def _pod(self, ns: str, name: str) -> dict | None:
        for p in self.pods():
            md = p.get("metadata") or {}
            if md.get("namespace") == ns and md.get("name") == name:
                return p
        return None

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        opts, previous = log_options(request.query)
        pod = self._pod(ns, name)
        if pod is None:
            raise HTTPError(404, f'pod "{name}" does not exist')
        if not any(c.get("name") == container for c in _all_containers(pod)):
            raise HTTPError(404, f'container "{container}" not found in pod "{name}"')
        cid = container_log_status(pod, container, previous)
        path = self.log_path(pod, container, previous)
        if path is None or not Path(path).exists():
            raise HTTPError(400, f'container "{container}" in pod "{name}" is not available')
        if not cid:
            cid = await self._find_container_id(pod, container) or ""

        async def running() -> bool:
            if previous or not cid:
                return False
            try:
                st = await self.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid),
                                                        timeout=CRI_TIMEOUT)
            except grpc.aio.AioRpcError:
                return False
            return st.status.state == pb.CONTAINER_RUNNING

        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            await logs.read_logs(Path(path), opts, resp.write, running)
            await resp.write_eof()
        except ConnectionResetError:
            log.debug("logs %s/%s/%s: the client went away", ns, name, container)
        except OSError as e:
            log.info("logs %s/%s/%s: %s", ns, name, container, e)
        return resp

    async def _find_container_id(self, pod: dict, container: str, running_only: bool = False) -> str | None:
        """The runtime's newest container of that name in the pod (by the kubelet's labels)."""
        md = pod.get("metadata") or {}
        sel = {stats.POD_NAMESPACE: md.get("namespace", ""), stats.POD_NAME: md.get("name", ""),
               stats.CONTAINER_NAME: container}
        if md.get("uid"):
            sel[stats.POD_UID] = md["uid"]
        f = pb.ContainerFilter(label_selector=sel)
        if running_only:
            f.state.state = pb.CONTAINER_RUNNING
        found = (await self.runtime.ListContainers(pb.ListContainersRequest(filter=f), timeout=CRI_TIMEOUT)).containers
        if not found:
            return None
        return max(found, key=lambda c: c.created_at).id

    async def _stream_target(self, request: web.Request) -> tuple[dict, str]:
        ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        pod = self._pod(ns, name)
        if pod is None:
            raise HTTPError(404, "pod does not exist")
        uid = request.match_info.get("uid")
        if uid and (pod.get("metadata") or {}).get("uid") != uid:
            raise HTTPError(404, "pod not found")
        cid = None
        for cs in _all_statuses(pod):
            if cs.get("name") == container and (cs.get("state") or {}).get("running") and cs.get("containerID"):
                cid = _strip_scheme(cs["containerID"])
        if cid is None:
            cid = await self._find_container_id(pod, container, running_only=True)
        if cid is None:
            raise HTTPError(404, f'container not found ("{container}")')
        return pod, cid

    @staticmethod
    def _stream_options(q) -> tuple[bool, bool, bool, bool]:
        """remotecommand NewOptions: stdin, stdout, stderr, tty (stderr ignored with a tty)."""
        stdin, stdout, stderr, tty = (_flag(q, k) for k in ("input", "output", "error", "tty"))
        if tty and stderr:
            stderr = False
        if not (stdin or stdout or stderr):
            raise HTTPError(400, "you must specify at least 1 of stdin, stdout, stderr")
        return stdin, stdout, stderr, tty

    @staticmethod
    def _require_upgrade(request: web.Request) -> None:
        if not upgradeproxy.is_upgrade_request(request.headers):
            raise HTTPError(400, "Upgrade request required")

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        stdin, stdout, stderr, tty = self._stream_options(q)
        self._require_upgrade(request)
        _, cid = await self._stream_target(request)
        resp = await self.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=q.getall("command", []), tty=tty,
                                                      stdin=stdin, stdout=stdout, stderr=stderr), timeout=CRI_TIMEOUT)
        return await upgradeproxy.proxy_upgrade(request, _url(resp.url))

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        stdin, stdout, stderr, tty = self._stream_options(request.query)
        self._require_upgrade(request)
        _, cid = await self._stream_target(request)
        resp = await self.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=stdin, stdout=stdout,
                                                          stderr=stderr, tty=tty), timeout=CRI_TIMEOUT)
        return await upgradeproxy.proxy_upgrade(request, _url(resp.url))

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        pod = self._pod(ns, name)
        if pod is None:
            raise HTTPError(404, "pod does not exist")
        md = pod.get("metadata") or {}
        uid = request.match_info.get("uid")
        if uid and md.get("uid") != uid:
            raise HTTPError(404, "pod not found")
        ports = []
        for v in request.query.getall("ports", []) + request.query.getall("port", []):
            for p in v.split(","):
                p = p.strip()
                if not p:
                    continue
                try:
                    n = int(p)
                except ValueError:
                    raise HTTPError(400, f'unable to parse "{p}" as a port: invalid syntax') from None
                if not 0 < n < 65536:
                    raise HTTPError(400, f"port {n} must be > 0 and < 65536")
                ports.append(n)
        self._require_upgrade(request)
        sel = {stats.POD_NAMESPACE: ns, stats.POD_NAME: name}
        if md.get("uid"):
            sel[stats.POD_UID] = md["uid"]
        f = pb.PodSandboxFilter(label_selector=sel)
        f.state.state = pb.SANDBOX_READY
        items = (await self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=f), timeout=CRI_TIMEOUT)).items
        if not items:
            raise HTTPError(404, f'pod not found ("{name}_{ns}")')
        sandbox = max(items, key=lambda s: s.created_at)
        resp = await self.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=sandbox.id, port=ports),
                                              timeout=CRI_TIMEOUT)
        return await upgradeproxy.proxy_upgrade(request, _url(resp.url))

    async def _summary(self, request: web.Request) -> web.Response:
        summary = await self.stats.summary(self.node_name)
        if _flag(request.query, "only_cpu_and_memory"):
            summary = _cpu_and_memory_only(summary)
        return web.Response(text=json.dumps(summary, indent=2), content_type="application/json")

    async def _resource_metrics(self, request: web.Request) -> web.Response:
        try:
            summary = await self.stats.summary(self.node_name)
        except grpc.aio.AioRpcError as e:
            log.info("resource metrics: %s", e.details())
            summary = None
        return web.Response(body=stats.resource_metrics(summary).encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _url(url: str):
    from yarl import URL
    return URL(url)


def _cpu_and_memory_only(summary: dict) -> dict:
    node = {k: v for k, v in summary["node"].items() if k in ("nodeName", "startTime", "cpu", "memory")}
    pods = [{k: v for k, v in p.items() if k in ("podRef", "startTime", "cpu", "memory")}
            | {"containers": [{k: v for k, v in c.items() if k in ("name", "startTime", "cpu", "memory")}
                              for c in p.get("containers", [])]} for p in summary["pods"]]
    return {"node": node, "pods": pods}


def _grpc_http_status(code: grpc.StatusCode) -> int:
    """streaming.WriteError: NotFound 404, ResourceExhausted 429, anything else 500."""
    return {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429}.get(code, 500)
