"""Structural OpenAPI v3 schemas of CustomResourceDefinitions: validation, pruning, defaulting.

The subset upstream's apiextensions-apiserver enforces for a structural schema: types,
properties, additionalProperties, items, required, enum, nullable, bounds, lengths, patterns,
formats int32/int64, and the x-kubernetes-* extensions preserve-unknown-fields,
int-or-string and embedded-resource. Messages follow upstream's wording.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from . import validation as v

_TYPE_OK = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool) or (isinstance(x, float) and x.is_integer()),
    "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
}


def _json_type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int):
        return "integer"
    if isinstance(x, float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    return "object"


def validate(schema: dict, obj: Any, path: str = "") -> list:
    """Field errors of obj against schema (paths like `spec.replicas`)."""
    errs: list = []
    _validate(schema or {}, obj, path, errs)
    return errs


def _p(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _validate(s: dict, x: Any, path: str, errs: list) -> None:
    if x is None:
        if not s.get("nullable") and s.get("type"):
            errs.append(v.invalid(path, "null", f'{path or "body"} in body must be of type {s["type"]}: "null"'))
        return
    t = s.get("type")
    if s.get("x-kubernetes-int-or-string"):
        if not (isinstance(x, str) or _TYPE_OK["integer"](x)):
            errs.append(v.invalid(path, _json_type(x), f"{path} in body must be of type integer,string: "
                                                       f"\"{_json_type(x)}\""))
            return
    elif t and t in _TYPE_OK and not _TYPE_OK[t](x):
        # upstream names the offending type, not the value
        errs.append(v.invalid(path, _json_type(x), f'{path or "body"} in body must be of type {t}: "{_json_type(x)}"'))
        return
    enum = s.get("enum")
    if enum is not None and x not in enum:
        errs.append(v.not_supported(path, x, [str(e) if not isinstance(e, str) else e for e in enum]))
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        if "minimum" in s and (x < s["minimum"] or (s.get("exclusiveMinimum") and x == s["minimum"])):
            errs.append(v.invalid(path, x, f"{path} in body should be greater than or equal to {s['minimum']}"))
        if "maximum" in s and (x > s["maximum"] or (s.get("exclusiveMaximum") and x == s["maximum"])):
            errs.append(v.invalid(path, x, f"{path} in body should be less than or equal to {s['maximum']}"))
        if s.get("format") == "int32" and not -(2 ** 31) <= x < 2 ** 31:
            errs.append(v.invalid(path, x, f"{path} in body must be of type int32"))
    if isinstance(x, str):
        if "minLength" in s and len(x) < s["minLength"]:
            errs.append(v.invalid(path, x, f"{path} in body should be at least {s['minLength']} chars long"))
        if "maxLength" in s and len(x) > s["maxLength"]:
            errs.append(v.too_long(path, x, s["maxLength"]))
        pat = s.get("pattern")
        if pat:
            try:
                if not re.search(pat, x):
                    errs.append(v.invalid(path, x, f'{path} in body should match \'{pat}\''))
            except re.error:
                pass
    if isinstance(x, list):
        if "minItems" in s and len(x) < s["minItems"]:
            errs.append(v.invalid(path, x, f"{path} in body should have at least {s['minItems']} items"))
        if "maxItems" in s and len(x) > s["maxItems"]:
            errs.append(v.too_many(path, len(x), s["maxItems"]))
        items = s.get("items")
        if isinstance(items, dict):
            for i, e in enumerate(x):
                _validate(items, e, f"{path}[{i}]", errs)
    if isinstance(x, dict):
        props = s.get("properties") or {}
        for r in s.get("required") or []:
            if r not in x:
                errs.append(v.required(_p(path, r), ""))
        for k, val in x.items():
            if k in props:
                _validate(props[k], val, _p(path, k), errs)
            elif isinstance(s.get("additionalProperties"), dict):
                _validate(s["additionalProperties"], val, _p(path, k), errs)
        if "minProperties" in s and len(x) < s["minProperties"]:
            errs.append(v.invalid(path, x, f"{path} in body should have at least {s['minProperties']} properties"))
        if "maxProperties" in s and len(x) > s["maxProperties"]:
            errs.append(v.too_many(path, len(x), s["maxProperties"]))


def prune(schema: dict, obj: Any, path: str = "", unknown: list | None = None, *, root: bool = True) -> Any:
    """Drop fields the schema does not know (unless x-kubernetes-preserve-unknown-fields); list them in unknown."""
    if unknown is None:
        unknown = []
    s = schema or {}
    if isinstance(obj, dict):
        if s.get("x-kubernetes-preserve-unknown-fields") and not s.get("properties"):
            return obj
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        out = {}
        for k, val in obj.items():
            if root and k in ("apiVersion", "kind", "metadata"):
                out[k] = val
            elif k in props:
                out[k] = prune(props[k], val, _p(path, k), unknown, root=False)
            elif isinstance(addl, dict):
                out[k] = prune(addl, val, _p(path, k), unknown, root=False)
            elif addl is True or s.get("x-kubernetes-preserve-unknown-fields"):
                out[k] = val
            else:
                unknown.append(_p(path, k))
        return out
    if isinstance(obj, list) and isinstance(s.get("items"), dict):
        return [prune(s["items"], e, f"{path}[{i}]", unknown, root=False) for i, e in enumerate(obj)]
    return obj


def apply_defaults(schema: dict, obj: Any) -> Any:
    """Fill `default` values of missing properties, recursively (in place; returns obj)."""
    s = schema or {}
    if isinstance(obj, dict):
        for k, ps in (s.get("properties") or {}).items():
            if k not in obj and "default" in ps:
                obj[k] = copy.deepcopy(ps["default"])
            if k in obj:
                apply_defaults(ps, obj[k])
        addl = s.get("additionalProperties")
        if isinstance(addl, dict):
            for k in obj:
                apply_defaults(addl, obj[k])
    elif isinstance(obj, list) and isinstance(s.get("items"), dict):
        for e in obj:
            apply_defaults(s["items"], e)
    return obj


def structural_errors(schema: Any, path: str = "spec.validation.openAPIV3Schema") -> list[str]:
    """Reasons a CRD schema is not structural (the few checks that matter for serving)."""
    out: list[str] = []
    if not isinstance(schema, dict):
        return [f"{path}: Required value: schemas are required"]
    t = schema.get("type")
    if not t and not schema.get("x-kubernetes-int-or-string") and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.append(f"{path}.type: Required value: must not be empty for specified object fields")
    for k, ps in (schema.get("properties") or {}).items():
        out += structural_errors(ps, f"{path}.properties[{k}]")
    if isinstance(schema.get("items"), dict):
        out += structural_errors(schema["items"], f"{path}.items")
    return out
