"""OpenAPI v3 (per group version) and v2 documents generated from the kind declarations.

Paths carry upstream's extensions (x-kubernetes-action, x-kubernetes-group-version-kind) and
the query parameters each verb takes, fieldValidation included, which is what tells kubectl
to leave field validation to the server. Schemas describe each kind's envelope; per-field
schemas are not declared yet.
"""
from __future__ import annotations

import hashlib
import json

from ..api.registry import Kind, Registry

_GROUP_PREFIX = {"": "io.k8s.api.core", "apps": "io.k8s.api.apps", "batch": "io.k8s.api.batch",
                 "discovery.k8s.io": "io.k8s.api.discovery", "coordination.k8s.io": "io.k8s.api.coordination",
                 "events.k8s.io": "io.k8s.api.events", "rbac.authorization.k8s.io": "io.k8s.api.rbac",
                 "policy": "io.k8s.api.policy", "autoscaling": "io.k8s.api.autoscaling",
                 "scheduling.k8s.io": "io.k8s.api.scheduling", "certificates.k8s.io": "io.k8s.api.certificates",
                 "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
                 "authentication.k8s.io": "io.k8s.api.authentication"}


def schema_name(k: Kind) -> str:
    if k.crd is not None:
        parts = k.group.split(".")
        return ".".join(reversed(parts)) + f".{k.version}.{k.kind}"
    return f"{_GROUP_PREFIX.get(k.group, k.group)}.{k.version}.{k.kind}"


def _gvk(k: Kind) -> dict:
    return {"group": k.group, "version": k.version, "kind": k.kind}


def _param(name: str, typ: str = "string", where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "schema": {"type": typ}}


WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
LIST_PARAMS = [_param("allowWatchBookmarks", "boolean"), _param("continue"), _param("fieldSelector"),
               _param("labelSelector"), _param("limit", "integer"), _param("resourceVersion"),
               _param("resourceVersionMatch"), _param("sendInitialEvents", "boolean"),
               _param("timeoutSeconds", "integer"), _param("watch", "boolean")]
PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]


def _ref(k: Kind) -> dict:
    return {"$ref": f"#/components/schemas/{schema_name(k)}"}


def _op(k: Kind, action: str, op_id: str, params: list, body: bool = False, patch: bool = False) -> dict:
    op = {"operationId": op_id, "parameters": params, "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": _gvk(k),
          "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": _ref(k)}}}}}
    if body:
        types = PATCH_TYPES if patch else ["application/json", "application/yaml"]
        op["requestBody"] = {"required": True, "content": {t: {"schema": {"type": "object"} if patch else _ref(k)}
                                                           for t in types}}
    return op


def _paths(k: Kind) -> dict:
    base = "/api/v1" if not k.group else f"/apis/{k.group}/{k.version}"
    ns = "/namespaces/{namespace}" if k.namespaced else ""
    coll = f"{base}{ns}/{k.plural}"
    item = coll + "/{name}"
    name = k.kind
    paths = {
        coll: {"get": _op(k, "list", f"list{name}", LIST_PARAMS),
               "post": _op(k, "post", f"create{name}", WRITE_PARAMS, body=True),
               "delete": _op(k, "deletecollection", f"deleteCollection{name}", LIST_PARAMS + [_param("dryRun")])},
        item: {"get": _op(k, "get", f"read{name}", []),
               "put": _op(k, "put", f"replace{name}", WRITE_PARAMS, body=True),
               "patch": _op(k, "patch", f"patch{name}", WRITE_PARAMS + [_param("force", "boolean")], body=True,
                            patch=True),
               "delete": _op(k, "delete", f"delete{name}", [_param("dryRun"), _param("gracePeriodSeconds", "integer"),
                                                            _param("propagationPolicy")])},
    }
    for sub in k.subresources:
        if sub in ("status", "scale"):
            p = f"{item}/{sub}"
            paths[p] = {"get": _op(k, "get", f"read{name}{sub.title()}", []),
                        "put": _op(k, "put", f"replace{name}{sub.title()}", WRITE_PARAMS, body=True),
                        "patch": _op(k, "patch", f"patch{name}{sub.title()}", WRITE_PARAMS, body=True, patch=True)}
    return paths


def _schema(k: Kind) -> dict:
    s = {"type": "object", "description": k.description or f"{k.kind} ({k.api_version})",
         "x-kubernetes-group-version-kind": [_gvk(k)],
         "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
         "x-kubernetes-preserve-unknown-fields": True}
    if k.crd is not None:
        schema = ((k.crd.get("schema") or {}).get("openAPIV3Schema")) or {}
        if schema:
            s = {**schema, "x-kubernetes-group-version-kind": [_gvk(k)]}
    return s


def v3_index(reg: Registry) -> dict:
    paths = {}
    for g, vs in reg.groups():
        for v in vs:
            rel = "api/v1" if not g else f"apis/{g}/{v}"
            doc = v3_group(reg, g, v)
            h = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
            paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={h}"}
    return {"paths": paths}


def v3_group(reg: Registry, group: str, version: str) -> dict:
    kinds = reg.resources_in(group, version)
    paths: dict = {}
    schemas: dict = {}
    for k in kinds:
        paths.update(_paths(k))
        schemas[schema_name(k)] = _schema(k)
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.0"}, "paths": paths,
            "components": {"schemas": schemas}}


def v2(reg: Registry) -> dict:
    paths: dict = {}
    defs: dict = {}
    for k in reg.kinds():
        for p, ops in _paths(k).items():
            paths[p] = {verb: {key: val for key, val in op.items() if key != "requestBody"}
                        for verb, op in ops.items()}
        defs[schema_name(k)] = _schema(k)
    s = json.dumps({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.36.0"}, "paths": paths,
                    "definitions": defs})
    return json.loads(s.replace("#/components/schemas/", "#/definitions/"))
