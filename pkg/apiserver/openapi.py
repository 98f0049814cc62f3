"""OpenAPI v3 (per group version) and v2 documents generated from the kind declarations.

Paths carry upstream's extensions (x-kubernetes-action, x-kubernetes-group-version-kind) and
the query parameters each verb takes, fieldValidation included, which is what tells kubectl
to leave field validation to the server.  Schemas come from :mod:`kubelab.api.schema` (the
declared types of the built-in kinds, with strategic-merge extensions); each group-version
document holds every schema its kinds reach.  Custom resources publish the openAPIV3Schema of
their CRD version, with metadata pointing at ObjectMeta.  Documents are cached per registry
and rebuilt when the registry's generation changes.
"""
from __future__ import annotations

import copy
import hashlib
import json
import weakref
from dataclasses import dataclass, field

from ..api import schema as types
from ..api.registry import Kind, Registry

INFO = {"title": "Kubernetes", "version": "v1.36.0"}
REF = types.V3_PREFIX
OBJECT_META = "meta/v1.ObjectMeta"
LIST_META = "meta/v1.ListMeta"
STATUS = "meta/v1.Status"
SCALE = "autoscaling/v1.Scale"
STATUS_NAME = types.published_name(STATUS)


def _param(name: str, typ: str = "string", where: str = "query", required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "schema": {"type": typ, "uniqueItems": True}}


WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
LIST_PARAMS = [_param("allowWatchBookmarks", "boolean"), _param("continue"), _param("fieldSelector"),
               _param("labelSelector"), _param("limit", "integer"), _param("resourceVersion"),
               _param("resourceVersionMatch"), _param("sendInitialEvents", "boolean"),
               _param("timeoutSeconds", "integer"), _param("watch", "boolean")]
DELETE_PARAMS = [_param("dryRun"), _param("gracePeriodSeconds", "integer"), _param("propagationPolicy")]
PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
# Custom resources take no strategic merge patch (the server answers 415).
CR_PATCH_TYPES = [t for t in PATCH_TYPES if "strategic" not in t]
BODY_TYPES = ["application/json", "application/yaml"]


# --- names -------------------------------------------------------------------------------------

def schema_name(k: Kind) -> str:
    """Published schema name of a kind: io.k8s.api.apps.v1.Deployment; com.example.v1.Widget for CRs."""
    if k.crd is not None:
        return ".".join(reversed(k.group.split("."))) + f".{k.version}.{k.kind}"
    t = types.kind_type(k.group, k.version, k.kind)
    if t is not None:
        return types.published_name(t)
    return types.published_name(f"{k.group or 'core'}/{k.version}.{k.kind}")


def _list_name(k: Kind) -> str:
    return schema_name(k) + "List"


def _gvk(k: Kind, kind: str | None = None) -> dict:
    return {"group": k.group, "kind": kind or k.kind, "version": k.version}


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


# --- paths -------------------------------------------------------------------------------------

def _op(k: Kind, action: str, op_id: str, params: list, response: str, gvk: dict | None = None,
        body: str | None = None, patch: bool = False) -> dict:
    op = {"operationId": op_id, "parameters": params, "x-kubernetes-action": action,
          "x-kubernetes-group-version-kind": gvk or _gvk(k),
          "responses": {"200": {"description": "OK",
                                "content": {t: {"schema": _ref(response)} for t in BODY_TYPES}},
                        "401": {"description": "Unauthorized"}}}
    if patch:
        ptypes = CR_PATCH_TYPES if k.crd is not None else PATCH_TYPES
        op["requestBody"] = {"required": True, "content": {t: {"schema": {"type": "object"}} for t in ptypes}}
    elif body:
        op["requestBody"] = {"required": True, "content": {t: {"schema": _ref(body)} for t in BODY_TYPES}}
    return op


def _path_params(k: Kind, item: bool) -> list:
    ps = []
    if item:
        ps.append(_param("name", where="path", required=True))
    if k.namespaced:
        ps.append(_param("namespace", where="path", required=True))
    return ps + [_param("pretty")]


def _paths(k: Kind) -> dict:
    base = "/api/v1" if not k.group else f"/apis/{k.group}/{k.version}"
    ns = "/namespaces/{namespace}" if k.namespaced else ""
    coll = f"{base}{ns}/{k.plural}"
    item = coll + "/{name}"
    name, obj, verbs = k.kind, schema_name(k), set(k.verbs)
    lst = _list_name(k) if k.crd is not None or types.kind_type(k.group, k.version, k.kind + "List") else obj
    c: dict = {}
    if verbs & {"list", "watch"}:
        c["get"] = _op(k, "list", f"list{name}", LIST_PARAMS, lst)
    if "create" in verbs:
        c["post"] = _op(k, "post", f"create{name}", WRITE_PARAMS, obj, body=obj)
    if "deletecollection" in verbs:
        c["delete"] = _op(k, "deletecollection", f"deleteCollection{name}", LIST_PARAMS + DELETE_PARAMS, STATUS_NAME)
    i: dict = {}
    if "get" in verbs:
        i["get"] = _op(k, "get", f"read{name}", [], obj)
    if "update" in verbs:
        i["put"] = _op(k, "put", f"replace{name}", WRITE_PARAMS, obj, body=obj)
    if "patch" in verbs:
        i["patch"] = _op(k, "patch", f"patch{name}", WRITE_PARAMS + [_param("force", "boolean")], obj, patch=True)
    if "delete" in verbs:
        i["delete"] = _op(k, "delete", f"delete{name}", DELETE_PARAMS, obj)
    paths = {}
    if c:
        paths[coll] = {**c, "parameters": _path_params(k, False)}
    if i:
        paths[item] = {**i, "parameters": _path_params(k, True)}
    for sub in k.subresources:
        if sub not in ("status", "scale"):
            continue
        t = sub.title()
        if sub == "scale":
            resp, gvk = types.published_name(SCALE), {"group": "autoscaling", "kind": "Scale", "version": "v1"}
        else:
            resp, gvk = obj, None
        paths[f"{item}/{sub}"] = {
            "get": _op(k, "get", f"read{name}{t}", [], resp, gvk),
            "put": _op(k, "put", f"replace{name}{t}", WRITE_PARAMS, resp, gvk, body=resp),
            "patch": _op(k, "patch", f"patch{name}{t}", WRITE_PARAMS + [_param("force", "boolean")], resp, gvk,
                         patch=True),
            "parameters": _path_params(k, True)}
    return paths


# --- schemas -----------------------------------------------------------------------------------

_ENVELOPE = {
    "apiVersion": {"type": "string", "description": types.ENVELOPE_DOC["apiVersion"]},
    "kind": {"type": "string", "description": types.ENVELOPE_DOC["kind"]},
    "metadata": {"allOf": [_ref(types.published_name(OBJECT_META))],
                 "description": types.ENVELOPE_DOC["metadata"]},
}


def _custom_schema(k: Kind) -> dict:
    """The schema of a custom resource: its CRD's openAPIV3Schema with the standard envelope."""
    declared = (((k.crd or {}).get("schema") or {}).get("openAPIV3Schema")) or {}
    s = copy.deepcopy(declared) if isinstance(declared, dict) else {}
    s.setdefault("type", "object")
    if not s.get("properties"):
        s["x-kubernetes-preserve-unknown-fields"] = True
    props = dict(s.get("properties") or {})
    for key in ("apiVersion", "kind"):
        props.setdefault(key, dict(_ENVELOPE[key]))
    props["metadata"] = dict(_ENVELOPE["metadata"])
    s["properties"] = props
    if k.description and not s.get("description"):
        s["description"] = k.description
    s["x-kubernetes-group-version-kind"] = [_gvk(k)]
    return s


def _list_schema(k: Kind) -> dict:
    return {"description": f"A list of {k.kind} objects.", "type": "object",
            "properties": {"apiVersion": dict(_ENVELOPE["apiVersion"]),
                           "items": {"type": "array", "items": _ref(schema_name(k)),
                                     "description": f"The {k.kind} objects."},
                           "kind": dict(_ENVELOPE["kind"]),
                           "metadata": {"allOf": [_ref(types.published_name(LIST_META))],
                                        "description": "Standard list metadata."}},
            "required": ["items"], "x-kubernetes-group-version-kind": [_gvk(k, k.kind + "List")]}


def _fallback_schema(k: Kind) -> dict:
    """A built-in kind without declared types: the envelope, other fields kept as given."""
    return {"description": k.description or f"{k.kind} ({k.api_version}).", "type": "object",
            "properties": {key: dict(v) for key, v in _ENVELOPE.items()},
            "x-kubernetes-preserve-unknown-fields": True, "x-kubernetes-group-version-kind": [_gvk(k)]}


def _schemas(kinds: list[Kind]) -> dict[str, dict]:
    """components.schemas for a set of kinds: each kind and everything its schema reaches."""
    roots = [STATUS, OBJECT_META, LIST_META]
    extra: dict[str, dict] = {}
    for k in kinds:
        if "scale" in k.subresources:
            roots.append(SCALE)
        t = types.kind_type(k.group, k.version, k.kind) if k.crd is None else None
        if t is not None:
            roots.append(t)
            lt = types.kind_type(k.group, k.version, k.kind + "List")
            if lt:
                roots.append(lt)
            if k.description:
                extra[schema_name(k)] = {**types.type_schema(t), "description": k.description}
        elif k.crd is not None:
            extra[schema_name(k)] = _custom_schema(k)
            extra[_list_name(k)] = _list_schema(k)
        else:
            extra[schema_name(k)] = _fallback_schema(k)
    out = types.components(roots)
    out.update(extra)
    return dict(sorted(out.items()))


# --- documents ---------------------------------------------------------------------------------

@dataclass
class _Docs:
    generation: int
    v3: dict = field(default_factory=dict)
    index: dict | None = None
    v2: dict | None = None


_CACHE: "weakref.WeakKeyDictionary[Registry, _Docs]" = weakref.WeakKeyDictionary()


def _docs(reg: Registry) -> _Docs:
    d = _CACHE.get(reg)
    if d is None or d.generation != reg.generation:
        d = _CACHE[reg] = _Docs(reg.generation)
    return d


def _build_group(reg: Registry, group: str, version: str) -> dict:
    kinds = sorted(reg.resources_in(group, version), key=lambda k: k.plural)
    paths: dict = {}
    for k in kinds:
        paths.update(_paths(k))
    return {"openapi": "3.0.0", "info": dict(INFO), "paths": dict(sorted(paths.items())),
            "components": {"schemas": _schemas(kinds)}}


def v3_group(reg: Registry, group: str, version: str) -> dict:
    """The OpenAPI v3 document of one group version (shared and cached: do not modify it)."""
    d = _docs(reg)
    doc = d.v3.get((group, version))
    if doc is None:
        doc = d.v3[(group, version)] = _build_group(reg, group, version)
    return doc


def _hash(doc: dict) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()


def v3_index(reg: Registry) -> dict:
    """/openapi/v3: the URL of each group version's document, with a hash of its content."""
    d = _docs(reg)
    if d.index is None:
        paths = {}
        for g, vs in reg.groups():
            for v in vs:
                rel = "api/v1" if not g else f"apis/{g}/{v}"
                paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={_hash(v3_group(reg, g, v))}"}
        d.index = {"paths": paths}
    return d.index


def _v2_param(p: dict) -> dict:
    out = {"name": p["name"], "in": p["in"], "type": p["schema"]["type"], "uniqueItems": True}
    if p.get("required"):
        out["required"] = True
    return out


def _v2_op(op: dict) -> dict:
    out = {"operationId": op["operationId"], "x-kubernetes-action": op["x-kubernetes-action"],
           "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
           "parameters": [_v2_param(p) for p in op["parameters"]],
           "produces": list(BODY_TYPES), "schemes": ["https"]}
    resp = op["responses"]["200"]["content"]["application/json"]["schema"]
    out["responses"] = {"200": {"description": "OK", "schema": types.to_v2(resp)},
                        "401": {"description": "Unauthorized"}}
    body = op.get("requestBody")
    if body:
        content = body["content"]
        first = next(iter(content.values()))["schema"]
        out["parameters"].insert(0, {"name": "body", "in": "body", "required": True,
                                     "schema": types.to_v2(first)})
        out["consumes"] = list(content)
    else:
        out["consumes"] = ["*/*"]
    return out


def v2(reg: Registry) -> dict:
    """The Swagger 2.0 document of every kind (cached: do not modify it)."""
    d = _docs(reg)
    if d.v2 is None:
        paths: dict = {}
        defs: dict = {}
        for g, vs in reg.groups():
            for v in vs:
                doc = v3_group(reg, g, v)
                for p, item in doc["paths"].items():
                    paths[p] = {verb: (_v2_op(op) if verb != "parameters" else [_v2_param(x) for x in op])
                                for verb, op in item.items()}
                for name, s in doc["components"]["schemas"].items():
                    if name not in defs:
                        defs[name] = types.to_v2(s, name)
        d.v2 = {"swagger": "2.0", "info": dict(INFO), "paths": dict(sorted(paths.items())),
                "definitions": dict(sorted(defs.items()))}
    return d.v2
