"""Kind declarations and the registry the generic API machinery reads.

Each API kind is declared once (in pkg/api/<group>/) as a `Kind`: its names, scope,
subresources, per-kind strategy hooks (defaults, validation, create/update preparation)
and the field selectors it supports. The apiserver's handlers, discovery, OpenAPI and
table printing all read these declarations; adding a kind means adding one declaration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from .validation import FieldError

Hook = Callable[[dict], None]
UpdateHook = Callable[[dict, dict], None]
Validator = Callable[[dict], "list[FieldError]"]
UpdateValidator = Callable[[dict, dict], "list[FieldError]"]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# The order of groups in discovery, as upstream serves them (kubectl resolves names in this order).
GROUP_ORDER = [
    "", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
]


@dataclass(frozen=True)
class ScaleSpec:
    """Where a kind keeps what the scale subresource shows (dotted paths)."""
    spec_replicas: str = "spec.replicas"
    status_replicas: str = "status.replicas"
    label_selector: str = "status.selector"  # a string path (CRDs) or "spec.selector" (a LabelSelector)


@dataclass
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: subresources served: status, scale, binding, eviction, log, exec, attach, portforward, proxy, finalize,
    #: approval, token
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    #: extra field selector fields: name -> function of the object giving the field's string value
    field_selectors: dict[str, Callable[[dict], str]] = field(default_factory=dict)
    defaults: Hook | None = None
    validate: Validator | None = None
    validate_update: UpdateValidator | None = None
    prepare_create: Hook | None = None
    prepare_update: UpdateHook | None = None
    #: whether metadata.generation is kept (bumped on changes outside metadata and status)
    generation: bool = True
    scale: ScaleSpec | None = None
    #: pods: DELETE sets deletionTimestamp and the kubelet finishes it
    graceful_delete: bool = False
    #: DELETE answers the deleted object (upstream's ReturnDeletedObject) instead of a Success Status
    return_deleted: bool = False
    #: default propagationPolicy on DELETE (upstream: Background for most, Orphan for some legacy kinds)
    default_propagation: str = "Background"
    #: storage key segment (the plural for built-ins; "<group>/<plural>" for custom resources)
    storage: str = ""
    #: custom resources: the CRD's version entry (schema, printer columns) and the CRD itself
    crd: dict | None = None
    #: conversion to and from the stored form when another kind owns the storage (events.k8s.io Events)
    to_storage: Callable[[dict], dict] | None = None
    from_storage: Callable[[dict], dict] | None = None
    #: drops fields the kind does not know; returns (pruned object, dotted paths of what was dropped)
    prune: Callable[[dict], "tuple[dict, list[str]]"] | None = None
    #: a readable description for OpenAPI and explain
    description: str = ""
    #: fields that cannot change after create, dotted paths (checked generically)
    immutable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.storage:
            self.storage = self.plural if "." not in self.group or self.crd is None else f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified(self) -> str:
        """plural.group, as in error messages: `deployments.apps`, `pods`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        """Kind.group, as in Invalid messages: `Deployment.apps`, `Pod`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def key_prefix(self, namespace: str | None = None) -> str:
        base = f"/registry/{self.storage}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"/registry/{self.storage}/{namespace}/{name}"
        return f"/registry/{self.storage}/{name}"


class Registry:
    """Every served kind, by group/version/plural and by group/kind."""

    def __init__(self) -> None:
        self._by_resource: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str, str], Kind] = {}
        self.generation = 0  # bumped on every change, for discovery caching

    def add(self, k: Kind) -> None:
        self._by_resource[(k.group, k.version, k.plural)] = k
        self._by_kind[(k.group, k.version, k.kind)] = k
        self.generation += 1

    def remove(self, group: str, version: str, plural: str) -> None:
        k = self._by_resource.pop((group, version, plural), None)
        if k is not None:
            self._by_kind.pop((group, version, k.kind), None)
            self.generation += 1

    def resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def kind(self, group: str, version: str, kind: str) -> Kind | None:
        return self._by_kind.get((group, version, kind))

    def for_api_version(self, api_version: str, kind: str) -> Kind | None:
        group, _, version = api_version.rpartition("/")
        return self.kind(group, version, kind)

    def kinds(self) -> Iterable[Kind]:
        return self._by_resource.values()

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions) in discovery order; versions preferred-first."""
        seen: dict[str, list[str]] = {}
        for k in self._by_resource.values():
            vs = seen.setdefault(k.group, [])
            if k.version not in vs:
                vs.append(k.version)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        out = sorted(seen.items(), key=lambda gv: (order.get(gv[0], len(order)), gv[0]))
        return [(g, sorted(vs, key=version_priority)) for g, vs in out]

    def group_versions(self, group: str) -> list[str]:
        for g, vs in self.groups():
            if g == group:
                return vs
        return []

    def resources_in(self, group: str, version: str) -> list[Kind]:
        return [k for k in self._by_resource.values() if k.group == group and k.version == version]


def version_priority(v: str) -> tuple:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first (v2 > v1 > v1beta2)."""
    import re
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, v)


def get_path(obj: dict, dotted: str):
    """Value at a dotted path in a dict (None when any part is missing)."""
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = cur[part] = {}
        cur = nxt
    cur[parts[-1]] = value


def field_getter(*path: str) -> Callable[[dict], str]:
    """A field selector's value function: the string at path ('' when absent)."""
    dotted = ".".join(path)

    def get(obj: dict) -> str:
        val = get_path(obj, dotted)
        return "" if val is None else str(val)
    return get
