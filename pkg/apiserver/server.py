"""The apiserver: aiohttp app, TLS, authentication, routing to discovery and the generic handler."""
from __future__ import annotations

import asyncio
import csv
import gc
import logging
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ..api.builtin import builtin_registry
from ..api.registry import Kind, Registry
from ..storage.cacher import Cacher
from ..storage.etcd import Store
from . import codec, discovery, openapi, status
from .admission import Admission
from .allocators import NodePortAllocator, ServiceIPAllocator, owner_of, service_ports_of
from .bootstrap import bootstrap
from .crds import CRDController
from .kubeletproxy import DEFAULT_ADDRESS_TYPES, METRICS_GROUP, KubeletClientConfig, KubeletProxy
from .rest import Req, ResourceHandler
from .serviceaccounts import JWKS_PATH, OPENID_CONFIG_PATH, ServiceAccountTokenREST, ServiceAccountTokens, TokenError

log = logging.getLogger(__name__)

VERSION = {"major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36",
           "minCompatibilityMajor": "1", "minCompatibilityMinor": "35", "gitVersion": "v1.36.0-kubelab",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2026-11-23T00:00:00Z", "goVersion": "python3.11", "compiler": "cpython",
           "platform": "linux/amd64"}

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")

REQUESTS = Counter("apiserver_request_total", "API requests", ["verb", "resource", "code"])
LATENCY = Histogram("apiserver_request_duration_seconds", "API request latency", ["verb", "resource"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60))


@dataclass
class Config:
    etcd_servers: list[str]
    bind_address: str = "127.0.0.1"
    secure_port: int = 6443
    advertise_address: str = "127.0.0.1"
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    client_ca_file: str | None = None
    token_auth_file: str | None = None
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    anonymous_auth: bool = False
    insecure_port: int = 0  # plain HTTP for local debugging only; 0 = off
    kubelet_client_certificate: str | None = None
    kubelet_client_key: str | None = None
    kubelet_certificate_authority: str | None = None
    kubelet_preferred_address_types: tuple[str, ...] = DEFAULT_ADDRESS_TYPES
    kubelet_port: int = 10250
    tokens: dict[str, dict] = field(default_factory=dict)
    #: --service-account-*, --api-audiences: the keys loaded (no signing key: TokenRequest is not served)
    service_accounts: ServiceAccountTokens = field(default_factory=ServiceAccountTokens)
    #: the admission plugins that run (--enable-admission-plugins / --disable-admission-plugins)
    admission_plugins: frozenset[str] | None = None


def load_tokens(path: str) -> dict[str, dict]:
    """Static token file, upstream format: token,user,uid,"group1,group2"."""
    out = {}
    with open(path) as f:
        for row in csv.reader(f):
            if len(row) < 3 or row[0].startswith("#"):
                continue
            groups = [g for g in (row[3].split(",") if len(row) > 3 else []) if g]
            out[row[0]] = {"username": row[1], "uid": row[2], "groups": groups + ["system:authenticated"]}
    return out


def _peer_user(request: web.Request) -> dict | None:
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    cn, orgs = None, []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if cn is None:
        return None
    return {"username": cn, "groups": orgs + ["system:authenticated"]}


def _parse_path(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """('', 'v1', rest) for /api/v1/..., (group, version, rest) for /apis/g/v/..."""
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


class APIServer:
    def __init__(self, cfg: Config, registry: Registry | None = None) -> None:
        self.cfg = cfg
        self.registry = registry or builtin_registry()
        self.store = Store(cfg.etcd_servers)
        self.cacher = Cacher(self.store)
        self.service_ips = ServiceIPAllocator(self.store, cfg.service_cluster_ip_range)
        self.node_ports = NodePortAllocator(self.store, cfg.service_node_port_range)
        self.admission = Admission(self.cacher, self.service_ips, self.node_ports, store=self.store,
                                   plugins=cfg.admission_plugins)
        self.sa_tokens = ServiceAccountTokenREST(cfg.service_accounts, self.store, self.cacher)
        self.handler = ResourceHandler(self.store, self.cacher, self.registry, self.admission)
        self.kubelet = KubeletProxy(self.cacher, self.store, KubeletClientConfig(
            client_certificate=cfg.kubelet_client_certificate, client_key=cfg.kubelet_client_key,
            certificate_authority=cfg.kubelet_certificate_authority,
            preferred_address_types=cfg.kubelet_preferred_address_types, port=cfg.kubelet_port))
        self.handler.kubelet = self.kubelet
        self.crds = CRDController(self.store, self.cacher, self.registry)
        self.ready = False
        self._system_task: asyncio.Task | None = None
        self.runner: web.AppRunner | None = None
        self._register_virtual()

    def _register_virtual(self) -> None:
        """Kinds served without storage: authentication.k8s.io SelfSubjectReview and TokenReview, and
        metrics.k8s.io NodeMetrics and PodMetrics (read from the kubelets, kubeletproxy.py)."""
        self.registry.add(Kind("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
                               namespaced=False, verbs=("create",)))
        self.registry.add(Kind("authentication.k8s.io", "v1", "TokenReview", "tokenreviews",
                               namespaced=False, verbs=("create",)))
        self.registry.add(Kind(METRICS_GROUP, "v1beta1", "NodeMetrics", "nodes", namespaced=False,
                               verbs=("get", "list")))
        self.registry.add(Kind(METRICS_GROUP, "v1beta1", "PodMetrics", "pods", verbs=("get", "list")))

    # --- app -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=codec.MAX_BODY + 1, middlewares=[self._errors, self._authn])
        app.router.add_route("*", "/{tail:.*}", self._route)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        t0 = time.monotonic()
        verb = request.method
        code = 500
        try:
            resp = await handler(request)
            code = resp.status
            return resp
        except status.StatusError as e:
            code = e.code
            return e.response()
        except web.HTTPException as e:
            code = e.status
            if e.status == 413:
                return status.too_large("the request is too large: limit is 3145728 bytes").response()
            return status.StatusError(e.status, e.reason, e.text or e.reason).response()
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:  # never a traceback to the user
            log.exception("internal error path=%s", request.path)
            code = 500
            return status.internal(f"{type(e).__name__}: {e}").response()
        finally:
            # labels are bounded: the resource (plural[/subresource]) or the top path segment, never a name
            res = request.get("resource") or (request.path.split("/", 2)[1:2] or [""])[0][:20]
            if _bool_watch(request):
                verb = "WATCH"
            else:
                LATENCY.labels(verb, res).observe(time.monotonic() - t0)
            REQUESTS.labels(verb, res, str(code)).inc()

    @web.middleware
    async def _authn(self, request: web.Request, handler):
        user = None
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
            user = self.cfg.tokens.get(token)
            if user is None:
                try:
                    user = await self.sa_tokens.authenticate(token)
                except TokenError as e:
                    log.info("Unable to authenticate the request err=%r", str(e))
                    raise status.unauthorized()
            if user is None:
                raise status.unauthorized()
        if user is None:
            user = _peer_user(request)
        if user is None:
            if self.cfg.anonymous_auth or request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PATHS):
                user = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
            else:
                raise status.unauthorized()
        request["user"] = user
        return await handler(request)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if not parts:
            return codec.json_response({"paths": sorted({"/api", "/api/v1", "/apis", "/healthz", "/livez",
                                                         "/readyz", "/version", "/openapi/v2", "/openapi/v3",
                                                         "/metrics", OPENID_CONFIG_PATH, JWKS_PATH})})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return await self._health(request, head, parts[1:])
        if head == "version":
            return codec.json_response(VERSION)
        if head == "metrics":
            return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
        if head == "openapi":
            return self._openapi_route(parts)
        if path in (OPENID_CONFIG_PATH, JWKS_PATH):
            if request.method != "GET":
                raise status.method_not_allowed()
            return self.sa_tokens.discovery(path)
        codec.check_acceptable(request)
        if head == "api" and len(parts) == 1:
            return self._discovery(request, core=True)
        if head == "apis" and len(parts) == 1:
            return self._discovery(request, core=False)
        if head == "apis" and len(parts) == 2:
            vs = self.registry.group_versions(parts[1])
            if not vs:
                raise status.route_not_found(path)
            return codec.json_response(discovery.api_group(parts[1], vs))
        gvr = _parse_path(parts)
        if gvr is None:
            raise status.route_not_found(path)
        group, version, rest = gvr
        if not rest:
            rl = discovery.resource_list(self.registry, group, version)
            if rl is None:
                raise status.route_not_found(path)
            return codec.json_response(rl)
        return await self._resource(request, group, version, rest)

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]):
        reg = self.registry
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace = rest[1]
            rest = rest[2:]
        plural = rest[0]
        k = reg.resource(group, version, plural)
        if k is None:
            raise status.route_not_found(request.path)
        request["resource"] = f"{plural}/{rest[2]}" if len(rest) > 2 and k.subresources and rest[2] in \
            k.subresources else plural
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 and not (sub == "proxy"):
            raise status.route_not_found(request.path)
        if k.namespaced and namespace is None and name is not None:
            raise status.route_not_found(request.path)
        if not k.namespaced and namespace is not None:
            raise status.route_not_found(request.path)
        if k.plural == "selfsubjectreviews":
            return await self._whoami(request)
        if k.group == METRICS_GROUP:
            if sub is not None:
                raise status.route_not_found(request.path)
            return await self.kubelet.metrics(request, k.plural, namespace, name)
        if k.group == "authentication.k8s.io" and k.plural == "tokenreviews":
            if request.method != "POST" or name is not None:
                raise status.method_not_allowed()
            return await self.sa_tokens.token_review(request, self.cfg.tokens)
        if not self.ready:
            raise status.unavailable("the apiserver is starting: the watch cache is not ready")
        if k.group == "" and k.plural == "serviceaccounts" and sub == "token":
            if request.method != "POST":
                raise status.method_not_allowed()
            return await self.sa_tokens.create_token(request, namespace, name)
        return await self.handler.handle(request, Req(k, namespace, name, sub))

    async def _whoami(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            raise status.method_not_allowed()
        user = request["user"]
        return codec.json_response({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                                    "metadata": {"creationTimestamp": None},
                                    "status": {"userInfo": {k: v for k, v in user.items() if v}}}, 201)

    def _discovery(self, request: web.Request, core: bool) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            body = codec.dumps(discovery.aggregated(self.registry, core))
            return web.Response(body=body, headers={"Content-Type": discovery.AGGREGATED_CT})
        if core:
            return codec.json_response(discovery.api_versions(f"{self.cfg.advertise_address}:{self.cfg.secure_port}"))
        return codec.json_response(discovery.api_group_list(self.registry))

    def _openapi_route(self, parts: list[str]) -> web.Response:
        if parts[1:2] == ["v2"]:
            return codec.json_response(openapi.v2(self.registry))
        if parts[1:2] == ["v3"]:
            if len(parts) == 2:
                return codec.json_response(openapi.v3_index(self.registry))
            rel = parts[2:]
            if rel[0] == "api" and len(rel) == 2:
                return codec.json_response(openapi.v3_group(self.registry, "", rel[1]))
            if rel[0] == "apis" and len(rel) == 3 and self.registry.resources_in(rel[1], rel[2]):
                return codec.json_response(openapi.v3_group(self.registry, rel[1], rel[2]))
        raise status.route_not_found("/" + "/".join(parts))

    async def _health(self, request: web.Request, which: str, sub: list[str]) -> web.Response:
        checks = {"ping": True, "etcd": await self.store.healthy(), "informer-sync": self.ready}
        if which == "livez":
            checks.pop("informer-sync")
        if sub:
            name = sub[0]
            if name not in checks:
                raise status.route_not_found(request.path)
            ok = checks[name]
            return web.Response(status=200 if ok else 500, text="ok" if ok else f"{name} failed")
        ok = all(checks.values())
        if "verbose" in request.query:
            lines = [f"[{'+' if v else '-'}]{k} {'ok' if v else 'failed'}" for k, v in checks.items()]
            lines.append(f"{which} check {'passed' if ok else 'failed'}")
            return web.Response(status=200 if ok else 500, text="\n".join(lines) + "\n")
        return web.Response(status=200 if ok else 500, text="ok" if ok else f"{which} check failed")

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.connect()
        while True:
            try:
                await self.cacher.start()
                break
            except Exception as e:
                log.warning("waiting for etcd err=%r", e)
                await asyncio.sleep(0.5)
        await bootstrap(self)
        self._system_task = asyncio.create_task(self._keep_system_objects(), name="system-objects")
        await self.repair_allocations()
        self.crds.sync_all_now()
        await self.crds.start()
        # the watch cache holds many long-lived objects: keep the collector from walking them
        # again and again (full collections of a large cache stalled requests for ~200 ms)
        gc.collect()
        gc.freeze()
        gc.set_threshold(50000, 20, 100)
        self.ready = True
        ssl_ctx = self._ssl()
        # handler_cancellation: a watch whose client went away ends at once instead of at its timeout
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, handler_cancellation=True,
                                    shutdown_timeout=5.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.bind_address, self.cfg.secure_port, ssl_context=ssl_ctx,
                           reuse_address=True)
        await site.start()
        log.info("serving address=%s:%d tls=%s", self.cfg.bind_address, self.cfg.secure_port, ssl_ctx is not None)

    async def _keep_system_objects(self, period: float = 10.0) -> None:
        """As upstream's apiserver does: the system namespaces and the `kubernetes` Service and
        endpoints are put back every 10 s when someone removed them."""
        while True:
            await asyncio.sleep(period)
            try:
                await bootstrap(self)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("system objects reconcile failed err=%r", e)

    async def repair_allocations(self) -> None:
        svcs, _ = self.cacher.list("/registry/services/", "/registry/services/")
        ips: dict[str, str] = {}
        ports: dict[str, str] = {}
        for s in svcs:
            i, p = service_ports_of(s)
            for x in i:
                ips[x] = owner_of(s)
            for x in p:
                ports[x] = owner_of(s)
        await self.service_ips.repair(ips)
        await self.node_ports.repair(ports)

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert_file:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cfg.tls_cert_file, self.cfg.tls_private_key_file)
        if self.cfg.client_ca_file:
            ctx.load_verify_locations(self.cfg.client_ca_file)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    async def stop(self) -> None:
        # end every open watch first (as upstream does on shutdown), so no handler holds the exit
        self.ready = False
        self.cacher.close_watchers()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.crds.stop()
        if self._system_task is not None:
            self._system_task.cancel()
        await self.cacher.stop()
        await self.store.close()


def _bool_watch(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("true", "1")

