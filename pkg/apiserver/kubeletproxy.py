"""The apiserver's side of the kubelet: pods/log, pods/exec, pods/attach, pods/portforward,
nodes/proxy and pods/proxy, and metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics.

Locations are upstream's (pkg/registry/core/pod/strategy.go, node/strategy.go): the kubelet at the
node's address (the first of --kubelet-preferred-address-types present in status.addresses) and
status.daemonEndpoints.kubeletEndpoint.Port (else --kubelet-port, 10250), over HTTPS with the
apiserver's kubelet client certificate (--kubelet-client-certificate/--kubelet-client-key),
checking the kubelet's serving certificate against --kubelet-certificate-authority when given
(without it, as upstream, the kubelet's certificate is not verified).

- pods/log: PodLogOptions validated (upstream's ValidatePodLogOptions messages, 422 PodLogOptions)
  and passed on as the kubelet's query; the kubelet's errors come back as upstream's
  GenericHttpResponseChecker makes them (400 BadRequest / 404 NotFound / 500 with its text).
- exec, attach, portforward: PodExecOptions/PodAttachOptions/PodPortForwardOptions mapped as
  streamParams does (input/output/error/tty/command, port), then the upgraded connection is
  proxied byte for byte (pkg/client/upgradeproxy.py).
- Containers are chosen as validateContainer: the only one, or "a container name must be specified
  for pod p, choose one of: [a b]"; "container c is not valid for pod p". A pod without a node:
  "pod p does not have a host assigned" (exec/attach/portforward); its logs answer that the
  container is waiting to start.
- metrics.k8s.io: each node's kubelet /metrics/resource is read (twice, a second apart, when no
  earlier reading of that node is at hand) and CPU rates computed over the window between two
  readings, as metrics-server does; memory is the working set. Nodes that report no kubelet
  endpoint port (hollow nodes) are not asked, and a kubelet that could not be read is left alone
  for 30 s; their pods have no metrics (an empty list, as metrics-server answers).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from ..api import validation as v
from ..api.quantity import BINARY_SI, DECIMAL_SI, format_quantity
from ..api.selectors import SelectorError, parse_label_selector
from ..api.timefmt import now_rfc3339, rfc3339
from ..client import upgradeproxy
from ..storage import errors as serr
from . import codec, status

log = logging.getLogger(__name__)

DEFAULT_ADDRESS_TYPES = ("InternalIP", "Hostname", "InternalDNS", "ExternalDNS", "ExternalIP")
METRICS_GROUP = "metrics.k8s.io"
SCRAPE_TIMEOUT = 10.0
MIN_WINDOW = 0.5          # seconds between two readings for a CPU rate
MAX_WINDOW = 600.0
FAILURE_BACKOFF = 30.0    # a node whose kubelet could not be read is not asked again for this long


@dataclass
class KubeletClientConfig:
    client_certificate: str | None = None
    client_key: str | None = None
    certificate_authority: str | None = None
    preferred_address_types: tuple[str, ...] = DEFAULT_ADDRESS_TYPES
    port: int = 10250
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if self.certificate_authority:
                ctx.load_verify_locations(cafile=self.certificate_authority)
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.client_certificate:
                ctx.load_cert_chain(self.client_certificate, self.client_key)
            self._ssl = ctx
        return self._ssl


def _bool(q, name: str) -> bool:
    return q.get(name, "").lower() in ("true", "1")


def _int(q, name: str) -> int | None:
    val = q.get(name)
    if val is None or val == "":
        return None
    try:
        return int(val)
    except ValueError:
        raise status.bad_request(f'strconv.ParseInt: parsing "{val}": invalid syntax') from None


def validate_log_options(name: str, q) -> None:
    """ValidatePodLogOptions: 422 PodLogOptions with upstream's field errors."""
    errs = []
    tail, limit, since = _int(q, "tailLines"), _int(q, "limitBytes"), _int(q, "sinceSeconds")
    if tail is not None and tail < 0:
        errs.append(v.invalid("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        errs.append(v.invalid("limitBytes", limit, "must be greater than 0"))
    if since is not None and q.get("sinceTime"):
        errs.append(v.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since is not None and since < 1:
        errs.append(v.invalid("sinceSeconds", since, "must be greater than 0"))
    if errs:
        raise status.invalid("", "PodLogOptions", name, errs)


def container_names(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    return [c.get("name", "") for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []]


def choose_container(pod: dict, container: str) -> str:
    """validateContainer in pod/strategy.go."""
    name = (pod.get("metadata") or {}).get("name", "")
    if not container:
        regular = (pod.get("spec") or {}).get("containers") or []
        if len(regular) == 1:
            return regular[0].get("name", "")
        if not regular:
            raise status.bad_request(f"a container name must be specified for pod {name}")
        names = " ".join(container_names(pod))
        raise status.bad_request(f"a container name must be specified for pod {name}, choose one of: [{names}]")
    if container not in container_names(pod):
        raise status.bad_request(f"container {container} is not valid for pod {name}")
    return container


def _checker(qualified: str, name: str):
    """GenericHttpResponseChecker: a kubelet error as the Status the client gets."""
    def check(code: int, text: str) -> Exception:
        if code == 500:
            return status.internal(text)
        if code == 400:
            return status.bad_request(text)
        reason = {404: "NotFound", 401: "Unauthorized", 403: "Forbidden"}.get(code, "InternalError")
        return status.StatusError(code, reason, text, {"name": name, "kind": qualified.split(".")[0]})
    return check


class KubeletProxy:
    def __init__(self, cacher: Any, store: Any, config: KubeletClientConfig) -> None:
        self.cacher = cacher
        self.store = store
        self.config = config
        self._readings: dict[str, "_Reading"] = {}
        self._failed: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ locations

    async def _node(self, name: str) -> dict:
        try:
            return await self.store.get(f"/registry/nodes/{name}")
        except serr.NotFound:
            raise status.not_found("", "nodes", name) from None

    def node_address(self, node: dict) -> tuple[str, int]:
        """(host, port) of a node's kubelet (GetPreferredNodeAddress + the kubelet endpoint port)."""
        st = node.get("status") or {}
        addrs = st.get("addresses") or []
        host = None
        for t in self.config.preferred_address_types:
            host = next((a.get("address") for a in addrs if a.get("type") == t and a.get("address")), None)
            if host:
                break
        if not host:
            known = " ".join("{" + f"{a.get('type', '')} {a.get('address', '')}" + "}" for a in addrs)
            raise status.internal(f"no preferred addresses found; known addresses: [{known}]")
        port = ((st.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or self.config.port
        return host, int(port)

    async def kubelet_url(self, node_name: str, path: str, query: list[tuple[str, str]] | None = None) -> URL:
        host, port = self.node_address(await self._node(node_name))
        return URL.build(scheme="https", host=host, port=port, path=path, query=query or [], encoded=False)

    # ------------------------------------------------------------------------------------ pods

    async def pod_subresource(self, request: web.Request, pod: dict, sub: str) -> web.StreamResponse:
        q = request.query
        md = pod.get("metadata") or {}
        ns, name = md.get("namespace", ""), md.get("name", "")
        node = (pod.get("spec") or {}).get("nodeName")
        if sub == "log":
            if request.method != "GET":
                raise status.method_not_allowed()
            container = choose_container(pod, q.get("container", ""))
            validate_log_options(name, q)
            if not node:
                raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                         f'ContainerCreating')
            params = [(k, "true") for k in ("follow", "previous", "timestamps") if _bool(q, k)]
            if q.get("sinceSeconds"):
                params.append(("sinceSeconds", q["sinceSeconds"]))
            if q.get("sinceTime"):
                params.append(("sinceTime", q["sinceTime"]))
            for k in ("tailLines", "limitBytes"):
                if q.get(k):
                    params.append((k, q[k]))
            url = await self.kubelet_url(node, f"/containerLogs/{ns}/{name}/{container}", params)
            return await self._proxy(request, url, _checker("pods", name))
        if sub in ("exec", "attach"):
            if request.method not in ("GET", "POST"):
                raise status.method_not_allowed()
            container = choose_container(pod, q.get("container", ""))
            if not node:
                raise status.bad_request(f"pod {name} does not have a host assigned")
            params = [(kubelet_name, "1") for api_name, kubelet_name in
                      (("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty"))
                      if _bool(q, api_name)]
            if sub == "exec":
                params += [("command", c) for c in q.getall("command", [])]
            url = await self.kubelet_url(node, f"/{sub}/{ns}/{name}/{container}", params)
            return await self._proxy(request, url, None)
        if sub == "portforward":
            if request.method not in ("GET", "POST"):
                raise status.method_not_allowed()
            if not node:
                raise status.bad_request(f"pod {name} does not have a host assigned")
            ports = [p for val in q.getall("ports", []) for p in val.split(",") if p.strip()]
            url = await self.kubelet_url(node, f"/portForward/{ns}/{name}",
                                         [("port", ",".join(ports))] if ports else [])
            return await self._proxy(request, url, None)
        raise status.route_not_found(request.path)

    async def pod_proxy(self, request: web.Request, pod: dict, port: str, scheme: str, rest: str) -> web.StreamResponse:
        """pods/proxy: straight to the pod's IP (ResourceLocation in pod/strategy.go)."""
        if not port:
            for c in (pod.get("spec") or {}).get("containers") or []:
                if c.get("ports"):
                    port = str(c["ports"][0].get("containerPort", ""))
                    break
        ip = ((pod.get("status") or {}).get("podIPs") or [{}])[0].get("ip") or (pod.get("status") or {}).get("podIP")
        if not ip:
            raise status.bad_request("address not allowed")
        host = f"[{ip}]" if ":" in ip else ip
        url = URL(f"{scheme or 'http'}://{host}{':' + port if port else ''}/").with_path("/" + rest, encoded=False)
        return await self._proxy(request, url.with_query(request.query_string), None, plain_ssl=True)

    async def node_proxy(self, request: web.Request, node_name: str, rest: str) -> web.StreamResponse:
        """nodes/proxy: the kubelet (or another port of the node), path and query passed on."""
        scheme, name, port = split_scheme_name_port(node_name)
        node = await self._node(name)
        host, kport = self.node_address(node)
        url = URL.build(scheme=scheme or "https", host=host, port=int(port) if port else kport, path="/" + rest,
                        query_string=request.query_string)
        return await self._proxy(request, url, None)

    async def _proxy(self, request: web.Request, url: URL, on_error, plain_ssl: bool = False) -> web.StreamResponse:
        ctx = self.config.ssl_context() if url.scheme == "https" and not plain_ssl else None
        if plain_ssl and url.scheme == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            return await upgradeproxy.proxy(request, url, ssl=ctx, on_error=on_error)
        except upgradeproxy.BackendError as e:
            raise status.internal(str(e)) from None

    # ------------------------------------------------------------------------------------ metrics.k8s.io

    async def metrics(self, request: web.Request, plural: str, namespace: str | None, name: str | None
                      ) -> web.Response:
        if request.method != "GET":
            raise status.method_not_allowed()
        try:
            selector = parse_label_selector(request.query.get("labelSelector", ""))
        except SelectorError as e:
            raise status.bad_request(str(e)) from None
        if plural == "nodes":
            if name is not None:
                node = await self._node(name)
                m = await self._node_metrics([node])
                if not m:
                    raise status.not_found(METRICS_GROUP, "nodes", name)
                return codec.json_response(m[0])
            nodes, rv = self.cacher.list("/registry/nodes/", "/registry/nodes/")
            items = await self._node_metrics([n for n in nodes if selector.matches(
                (n.get("metadata") or {}).get("labels"))])
            return codec.json_response({"kind": "NodeMetricsList", "apiVersion": f"{METRICS_GROUP}/v1beta1",
                                        "metadata": {}, "items": items})
        prefix = f"/registry/pods/{namespace}/" if namespace else "/registry/pods/"
        pods, _ = self.cacher.list("/registry/pods/", prefix)
        if name is not None:
            pods = [p for p in pods if p["metadata"]["name"] == name]
            if not pods:
                raise status.not_found(METRICS_GROUP, "pods", name)
        else:
            pods = [p for p in pods if selector.matches((p.get("metadata") or {}).get("labels"))]
        items = await self._pod_metrics(pods)
        if name is not None:
            if not items:
                raise status.not_found(METRICS_GROUP, "pods", name)
            return codec.json_response(items[0])
        return codec.json_response({"kind": "PodMetricsList", "apiVersion": f"{METRICS_GROUP}/v1beta1",
                                    "metadata": {}, "items": items})

    async def _scrape(self, node: dict) -> "_Reading | None":
        try:
            url = URL.build(scheme="https", host=self.node_address(node)[0], port=self.node_address(node)[1],
                            path="/metrics/resource")
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.get(url, ssl=self.config.ssl_context()) as r:
                    if r.status != 200:
                        log.info("metrics: node %s answered %d", node["metadata"]["name"], r.status)
                        return None
                    text = await r.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, status.StatusError) as e:
            log.info("metrics: cannot scrape node %s: %s", node["metadata"]["name"], e)
            return None
        return _Reading.parse(text)

    async def _readings_for(self, node: dict) -> "tuple[_Reading, _Reading] | None":
        """(earlier, current) readings of a node at least MIN_WINDOW apart."""
        name = node["metadata"]["name"]
        if not ((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint", {}).get("Port"):
            return None            # no kubelet server reported (hollow nodes)
        if time.monotonic() - self._failed.get(name, -FAILURE_BACKOFF) < FAILURE_BACKOFF:
            return None
        cur = await self._scrape(node)
        if cur is None:
            self._failed[name] = time.monotonic()
            return None
        prev = self._readings.get(name)
        if prev is None or not MIN_WINDOW <= cur.at - prev.at <= MAX_WINDOW:
            await asyncio.sleep(1.0)
            prev, cur = cur, await self._scrape(node)
            if cur is None:
                return None
        if prev is not self._readings.get(name) or cur.at - prev.at >= 2 * MIN_WINDOW:
            self._readings[name] = cur
        return prev, cur

    async def _node_metrics(self, nodes: list[dict]) -> list[dict]:
        pairs = await asyncio.gather(*(self._readings_for(n) for n in nodes))
        out = []
        for node, pair in zip(nodes, pairs):
            if pair is None:
                continue
            prev, cur = pair
            if cur.node is None or prev.node is None:
                continue
            cpu = _rate(prev.node, cur.node)
            if cpu is None:
                continue
            md = node["metadata"]
            out.append({"kind": "NodeMetrics", "apiVersion": f"{METRICS_GROUP}/v1beta1",
                        "metadata": {"name": md["name"], "creationTimestamp": now_rfc3339(),
                                     "labels": md.get("labels") or {}},
                        "timestamp": rfc3339(cur.node.ts), "window": _window(prev.node, cur.node),
                        "usage": {"cpu": _cpu(cpu), "memory": _memory(cur.node.memory)}})
        return out

    async def _pod_metrics(self, pods: list[dict]) -> list[dict]:
        node_names = sorted({(p.get("spec") or {}).get("nodeName") for p in pods} - {None, ""})
        nodes = []
        for n in node_names:
            try:
                nodes.append(await self._node(n))
            except status.StatusError:
                pass
        pairs = dict(zip([n["metadata"]["name"] for n in nodes],
                         await asyncio.gather(*(self._readings_for(n) for n in nodes))))
        out = []
        for p in pods:
            pair = pairs.get((p.get("spec") or {}).get("nodeName"))
            if pair is None:
                continue
            prev, cur = pair
            md = p["metadata"]
            key = (md["namespace"], md["name"])
            now_c, before_c = cur.containers.get(key), prev.containers.get(key)
            if not now_c or not before_c:
                continue
            containers, ts, window = [], None, None
            for cname, sample in sorted(now_c.items()):
                old = before_c.get(cname)
                cpu = _rate(old, sample) if old is not None else None
                if cpu is None:
                    containers = []
                    break
                containers.append({"name": cname, "usage": {"cpu": _cpu(cpu), "memory": _memory(sample.memory)}})
                ts, window = sample.ts, _window(old, sample)
            if not containers:
                continue
            out.append({"kind": "PodMetrics", "apiVersion": f"{METRICS_GROUP}/v1beta1",
                        "metadata": {"name": md["name"], "namespace": md["namespace"],
                                     "creationTimestamp": now_rfc3339(), "labels": md.get("labels") or {}},
                        "timestamp": rfc3339(ts), "window": window, "containers": containers})
        return out


@dataclass
class _Sample:
    cpu: float = 0.0            # cumulative core-seconds
    memory: float = 0.0         # working set bytes
    ts: float = 0.0             # seconds (the reading's own timestamp)


@dataclass
class _Reading:
    at: float
    node: _Sample | None
    containers: dict[tuple[str, str], dict[str, _Sample]]

    @classmethod
    def parse(cls, text: str) -> "_Reading":
        node: _Sample | None = None
        containers: dict[tuple[str, str], dict[str, _Sample]] = {}
        now = time.time()
        try:
            samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
        except ValueError as e:
            log.info("metrics: unreadable resource metrics: %s", e)
            samples = []
        for name, labels, value, sample_ts in ((s.name, s.labels, s.value, s.timestamp) for s in samples):
            ts = float(sample_ts) if sample_ts is not None else now
            if name.startswith("node_"):
                node = node or _Sample()
                target = node
            elif name.startswith("container_") and "container" in labels:
                target = containers.setdefault((labels.get("namespace", ""), labels.get("pod", "")),
                                               {}).setdefault(labels["container"], _Sample())
            else:
                continue
            if name.endswith("_cpu_usage_seconds_total"):
                target.cpu, target.ts = value, ts
            elif name.endswith("_memory_working_set_bytes"):
                target.memory = value
                target.ts = target.ts or ts
        return cls(time.monotonic(), node, containers)


def _rate(prev: _Sample, cur: _Sample) -> float | None:
    dt = cur.ts - prev.ts
    if dt <= 0 or cur.cpu < prev.cpu:
        return None
    return (cur.cpu - prev.cpu) / dt


def _window(prev: _Sample, cur: _Sample) -> str:
    return f"{round(cur.ts - prev.ts, 3):g}s"


def _cpu(cores: float) -> str:
    return format_quantity(Decimal(int(cores * 1e9)) / Decimal(10**9), DECIMAL_SI)


def _memory(b: float) -> str:
    return format_quantity(int(b), BINARY_SI)


def split_scheme_name_port(id: str) -> tuple[str, str, str]:
    """utilnet.SplitSchemeNamePort: name, name:port, scheme:name:port."""
    parts = id.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise status.bad_request(f'invalid request "{id}"')
