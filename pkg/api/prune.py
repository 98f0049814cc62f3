"""Unknown fields of built-in kinds, found with the schema declarations (pkg/api/schemas).

Upstream's decoder drops fields its Go types do not have, and reports them for
fieldValidation=Warn/Strict. The same here: walk the object alongside the kind's declared
type; what the declaration does not know is dropped and listed (`spec.replicaz`,
`spec.template.spec.containers[0].imagee`). Free-form types (RawExtension, JSON, object)
keep everything.
"""
from __future__ import annotations

import re
from functools import lru_cache

from . import schema

_FREE = {"object", "runtime.RawExtension", "meta/v1.FieldsV1", "apiextensions.k8s.io/v1.JSON",
         "apiextensions.k8s.io/v1.JSONSchemaPropsOrArray", "apiextensions.k8s.io/v1.JSONSchemaPropsOrBool",
         "apiextensions.k8s.io/v1.JSONSchemaPropsOrStringArray"}
_ENVELOPE = {"apiVersion", "kind", "metadata"}


@lru_cache(maxsize=None)
def _fields(type_name: str) -> dict[str, tuple[str, str]] | None:
    """field -> (type expression, package) of a declared struct type; None for non-struct types."""
    decl = schema.declarations().get(type_name)
    if decl is None:
        return None
    return {f.name: (f.type, decl.package) for f in decl.fields}


def _walk(expr: str, package: str, value, path: str, unknown: list[str]):
    if expr.startswith("[]"):
        if isinstance(value, list):
            return [_walk(expr[2:], package, e, f"{path}[{i}]", unknown) for i, e in enumerate(value)]
        return value
    if expr.startswith("map[string]"):
        if isinstance(value, dict):
            inner = expr[len("map[string]"):]
            return {k: _walk(inner, package, val, f"{path}[{k}]", unknown) for k, val in value.items()}
        return value
    if expr in _FREE or re.fullmatch(r"string\{.*\}", expr) or expr in schema._PRIMITIVES:
        return value
    try:
        name = schema.resolve(expr, package)
    except schema.SchemaError:
        return value
    return _struct(name, value, path, unknown)


def _struct(type_name: str, value, path: str, unknown: list[str], *, top: bool = False):
    fields = _fields(type_name)
    if fields is None or not isinstance(value, dict) or type_name in _FREE:
        return value
    out = {}
    envelope = top or schema.declarations()[type_name].kind     # embedded kinds (volumeClaimTemplates) too
    for k, val in value.items():
        if envelope and k in _ENVELOPE:
            out[k] = val
        elif k in fields:
            expr, pkg = fields[k]
            out[k] = _walk(expr, pkg, val, f"{path}.{k}" if path else k, unknown)
        else:
            unknown.append(f"{path}.{k}" if path else k)
    return out


def pruner_for(group: str, version: str, kind: str):
    """A Kind.prune hook for a built-in kind, or None when its type is not declared."""
    type_name = schema.kind_type(group, version, kind)
    if type_name is None:
        return None

    def prune(obj: dict) -> tuple[dict, list[str]]:
        unknown: list[str] = []
        out = _struct(type_name, obj, "", unknown, top=True)
        return out, unknown
    return prune
