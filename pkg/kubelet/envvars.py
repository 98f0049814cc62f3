"""A container's environment, as upstream's kubelet makeEnvironmentVariables (kubelet_pods.go) and
pkg/kubelet/envvars (service links) build it:

1. service variables (`FOO_SERVICE_HOST`, `FOO_SERVICE_PORT[_<NAME>]` and the docker-link
   `FOO_PORT*` set) for the Services with a cluster IP in the pod's namespace when
   `enableServiceLinks` (default true), and always for the `kubernetes` Service of `default`;
2. `envFrom` (configMapRef/secretRef with prefix; keys that are not valid names are skipped and
   reported with upstream's InvalidEnvironmentVariableNames event text);
3. `env` in order: `value` with `$(VAR)` expanded against the variables defined so far and the
   service variables, or `valueFrom` (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef,
   `optional` honoured), each later one overriding earlier ones;
4. the service variables not already defined.

    env = await container_env(client, pod, container, services=svcs, node_name="n1",
                              host_ip="192.168.56.11", pod_ip="10.244.1.5")
    env.warnings   # [(reason, message)] for events the caller should record

Errors raise EnvError with upstream's message (e.g. `configmap "x" not found`, `couldn't find key
k in ConfigMap ns/x`), meant for the CreateContainerConfigError waiting reason's message.
Unset limits in a resourceFieldRef default to the node's allocatable (read from the Node object).
"""
from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

from kubelab.client.rest import ApiError, Client, is_not_found
from kubelab.kubelet.expansion import expand, mapping_func_for
from kubelab.kubelet.fieldpath import FieldPathError, container_resource_value, extract_field_path

Obj = dict[str, Any]

ENV_VAR_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MASTER_SERVICES = ("kubernetes",)


class EnvError(Exception):
    """The environment of a container cannot be built; str() is upstream's message."""


class ContainerEnv(list):
    """The (name, value) pairs of a container's environment, plus `warnings`: (reason, message)
    of the events upstream records while building it."""

    def __init__(self, items: list[tuple[str, str]] = (), warnings: list[tuple[str, str]] | None = None) -> None:
        super().__init__(items)
        self.warnings: list[tuple[str, str]] = warnings or []


def _env_name(s: str) -> str:
    return s.replace("-", "_").upper()


def _service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def _join_host_port(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _link_variables(svc: Obj) -> list[tuple[str, str]]:
    prefix = _env_name(svc["metadata"]["name"])
    ip = svc["spec"]["clusterIP"]
    out: list[tuple[str, str]] = []
    for i, sp in enumerate(svc["spec"].get("ports") or []):
        proto = sp.get("protocol") or "TCP"
        port = int(sp.get("port") or 0)
        url = f"{proto.lower()}://{_join_host_port(ip, port)}"
        if i == 0:
            out.append((prefix + "_PORT", url))
        pp = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [(pp, url), (pp + "_PROTO", proto.lower()), (pp + "_PORT", str(port)), (pp + "_ADDR", ip)]
    return out


def from_services(services: list[Obj]) -> list[tuple[str, str]]:
    """envvars.FromServices: the variables of each Service that has a cluster IP."""
    out: list[tuple[str, str]] = []
    for svc in services:
        if not _service_ip_set(svc) or not (svc["spec"].get("ports")):
            continue
        name = _env_name(svc["metadata"]["name"])
        ports = svc["spec"]["ports"]
        out.append((name + "_SERVICE_HOST", svc["spec"]["clusterIP"]))
        out.append((name + "_SERVICE_PORT", str(int(ports[0].get("port") or 0))))
        for sp in ports:
            if sp.get("name"):
                out.append((name + "_SERVICE_PORT_" + _env_name(sp["name"]), str(int(sp.get("port") or 0))))
        out += _link_variables(svc)
    return out


def service_env(namespace: str, services: list[Obj], enable_service_links: bool) -> dict[str, str]:
    """getServiceEnvVarMap: the pod namespace's Services (with service links) and the master
    Services of `default`, by name."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _service_ip_set(svc):
            continue
        meta = svc.get("metadata") or {}
        name = meta.get("name", "")
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc
    return dict(from_services([chosen[k] for k in sorted(chosen)]))


def _decode(value: str) -> str:
    return base64.b64decode(value or "").decode("utf-8", "replace")


class _Sources:
    """ConfigMaps and Secrets read once per call, with the kubelet managers' error wording."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.cache: dict[tuple[str, str], Obj | None] = {}

    async def get(self, kind: str, name: str, optional: bool) -> Obj | None:
        key = (kind, name)
        if key not in self.cache:
            resource = "configmaps" if kind == "configmap" else "secrets"
            try:
                self.cache[key] = await self.client.get("v1", resource, self.namespace, name)
            except ApiError as e:
                if not is_not_found(e):
                    raise EnvError(f"couldn't get {kind} {self.namespace}/{name}: {e.message}") from None
                self.cache[key] = None
        obj = self.cache[key]
        if obj is None and not optional:
            raise EnvError(f'{kind} "{name}" not found')
        return obj


def _pod_ips(pod: Obj, pod_ip: str) -> list[str]:
    ips = [pod_ip] if pod_ip else []
    for entry in (pod.get("status") or {}).get("podIPs") or []:
        ip = entry.get("ip")
        if ip and ip not in ips:
            ips.append(ip)
    return ips


def pod_field_value(pod: Obj, ref: Obj, *, host_ip: str, pod_ip: str) -> str:
    """podFieldSelectorRuntimeValue: spec and status fields first, then metadata."""
    path = ref.get("fieldPath") or ""
    if ref.get("apiVersion") not in (None, "", "v1"):
        raise EnvError(f"unsupported pod version: {ref['apiVersion']}")
    spec = pod.get("spec") or {}
    ips = _pod_ips(pod, pod_ip)
    if path == "spec.nodeName":
        return spec.get("nodeName") or ""
    if path == "spec.serviceAccountName":
        return spec.get("serviceAccountName") or ""
    if path == "status.hostIP":
        return host_ip
    if path == "status.hostIPs":
        return host_ip
    if path == "status.podIP":
        return ips[0] if ips else ""
    if path == "status.podIPs":
        return ",".join(ips)
    try:
        return extract_field_path(pod, path, ref.get("apiVersion"))
    except FieldPathError as e:
        raise EnvError(str(e)) from None


class _Allocatable:
    def __init__(self, client: Client, node_name: str) -> None:
        self.client, self.node_name, self.value = client, node_name, None

    async def get(self) -> dict[str, Any]:
        if self.value is None:
            try:
                node = await self.client.get("v1", "nodes", None, self.node_name)
            except ApiError as e:
                raise EnvError(f"failed to get node allocatable: {e.message}") from None
            self.value = dict((node.get("status") or {}).get("allocatable") or {})
        return self.value


async def resource_field_value(ref: Obj, pod: Obj, container: Obj, allocatable: _Allocatable | None) -> str:
    """A resourceFieldRef's value; containerName (downward API volumes) picks the container."""
    target = container
    cname = ref.get("containerName")
    if cname and cname != container.get("name"):
        spec = pod.get("spec") or {}
        found = [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
                 if c.get("name") == cname]
        if not found:
            raise EnvError(f"container {cname} not found")
        target = found[0]
    alloc = None
    resource = ref.get("resource") or ""
    if resource.startswith("limits.") and allocatable is not None:
        name = resource.split(".", 1)[1]
        if name not in ((target.get("resources") or {}).get("limits") or {}):
            alloc = await allocatable.get()
    try:
        return container_resource_value(ref, target, alloc)
    except FieldPathError as e:
        raise EnvError(str(e)) from None


async def container_env(client: Client, pod: Obj, container: Obj, *, services: list[Obj], node_name: str,
                        host_ip: str, pod_ip: str) -> ContainerEnv:
    """The environment of `container` of `pod` (see the module docstring)."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    spec = pod.get("spec") or {}
    links = spec.get("enableServiceLinks")
    svc_env = service_env(ns, services, True if links is None else bool(links))
    sources = _Sources(client, ns)
    allocatable = _Allocatable(client, node_name)
    warnings: list[tuple[str, str]] = []
    env: dict[str, str] = {}

    for ef in container.get("envFrom") or []:
        ref, kind, label = ((ef["configMapRef"], "configmap", "configMap") if ef.get("configMapRef")
                            else (ef.get("secretRef"), "secret", "secret"))
        if not ref:
            continue
        name = ref.get("name") or ""
        obj = await sources.get(kind, name, bool(ref.get("optional")))
        if obj is None:
            continue
        data = dict(obj.get("data") or {})
        if kind == "secret":
            data = {k: _decode(v) for k, v in data.items()}
        prefix = ef.get("prefix") or ""
        invalid = []
        for k, v in data.items():
            k = prefix + k
            if not ENV_VAR_NAME_RE.match(k):
                invalid.append(k)
                continue
            env[k] = v
        if invalid:
            warnings.append(("InvalidEnvironmentVariableNames",
                             f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {label} {ns}/{name} were "
                             "skipped since they are considered invalid environment variable names."))

    mapping = mapping_func_for(env, svc_env)
    for ev in container.get("env") or []:
        name = ev.get("name") or ""
        value = ev.get("value") or ""
        vf = ev.get("valueFrom")
        if value:
            value = expand(value, mapping)
        elif vf:
            if vf.get("fieldRef"):
                value = pod_field_value(pod, vf["fieldRef"], host_ip=host_ip, pod_ip=pod_ip)
            elif vf.get("resourceFieldRef"):
                value = await resource_field_value(vf["resourceFieldRef"], pod, container, allocatable)
            elif vf.get("configMapKeyRef") or vf.get("secretKeyRef"):
                is_cm = bool(vf.get("configMapKeyRef"))
                ref = vf["configMapKeyRef"] if is_cm else vf["secretKeyRef"]
                optional = bool(ref.get("optional"))
                obj = await sources.get("configmap" if is_cm else "secret", ref.get("name") or "", optional)
                if obj is None:
                    continue
                key = ref.get("key") or ""
                data = obj.get("data") or {}
                if key in data:
                    value = data[key] if is_cm else _decode(data[key])
                elif optional:
                    continue
                else:
                    raise EnvError(f"couldn't find key {key} in {'ConfigMap' if is_cm else 'Secret'} "
                                   f"{ns}/{ref.get('name')}")
        env[name] = value

    items = list(env.items()) + [(k, v) for k, v in sorted(svc_env.items()) if k not in env]
    return ContainerEnv(items, warnings)
