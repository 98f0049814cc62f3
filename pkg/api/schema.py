"""OpenAPI schemas of the built-in types, built from compact declarations.

The types are declared in ``pkg/api/schemas/`` in a small text notation, one block per
package (``package apps/v1``)::

    Deployment kind: Declarative updates for a set of identical pods.
      spec DeploymentSpec  Desired behaviour of the Deployment.

A header line (no indent) names a type, optionally marks it as an API ``kind`` (which adds
``apiVersion``, ``kind`` and ``metadata``, the group-version-kind extension and, unless
``kind without list`` is written, a ``<Kind>List`` type), and gives its description.  Each indented line is a field:
``name[*] type description`` where ``*`` marks a required field and ``type`` is one of

* ``string``, ``boolean``, ``int32``, ``int64``, ``number``, ``byte`` (base64 string),
  ``object`` (free-form), ``string{A,B}`` (an enum);
* ``[]T`` (a list) and ``map[string]T`` (a map);
* a type name, unqualified (looked up in the block's package, then ``meta/v1``, then
  ``core/v1``) or qualified (``core/v1.PodTemplateSpec``).  ``Time``, ``MicroTime``,
  ``Quantity``, ``IntOrString``, ``RawExtension`` and ``FieldsV1`` are the apimachinery types.

Type names inside this module are ``<group or core or meta>/<version>.<Name>``, the naming of
:mod:`kubelab.api.patchmeta`, whose table supplies the strategic-merge extensions
(``x-kubernetes-patch-strategy``/``x-kubernetes-patch-merge-key``); list types
(``x-kubernetes-list-type``/``x-kubernetes-list-map-keys``) follow from them.  Published
names are upstream's (``io.k8s.api.core.v1.Pod``).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

from . import patchmeta

V3_PREFIX = "#/components/schemas/"
V2_PREFIX = "#/definitions/"

# Package -> the prefix of upstream's schema names.
_PUBLISHED = {
    "meta/v1": "io.k8s.apimachinery.pkg.apis.meta.v1",
    "resource": "io.k8s.apimachinery.pkg.api.resource",
    "intstr": "io.k8s.apimachinery.pkg.util.intstr",
    "runtime": "io.k8s.apimachinery.pkg.runtime",
    "apiextensions.k8s.io/v1": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "metrics.k8s.io/v1beta1": "io.k8s.metrics.pkg.apis.metrics.v1beta1",
}

# Types with a fixed schema (scalars with a format, free-form values).
_SPECIAL: dict[str, dict] = {
    "meta/v1.Time": {"type": "string", "format": "date-time",
                     "description": "A timestamp in RFC 3339 form, to the second (e.g. 2024-05-01T12:00:00Z)."},
    "meta/v1.MicroTime": {"type": "string", "format": "date-time",
                          "description": "A timestamp in RFC 3339 form with microseconds."},
    "meta/v1.FieldsV1": {"type": "object",
                         "description": "The set of fields a manager owns, in the fieldsV1 trie encoding."},
    "resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}],
                          "description": "A decimal amount with an optional suffix: binary (Ki, Mi, Gi, ...), "
                                         "decimal (k, M, G, ...) or an exponent; e.g. 500m, 128Mi, 1.5, 2e3."},
    "intstr.IntOrString": {"oneOf": [{"type": "integer"}, {"type": "string"}], "format": "int-or-string",
                           "description": "A value that is either an integer or a string (such as a named "
                                          "port or a percentage like 25%)."},
    "runtime.RawExtension": {"type": "object",
                             "description": "An embedded object of any kind, stored as given."},
    "apiextensions.k8s.io/v1.JSON": {
        "description": "Any JSON value: boolean, number, string, array, object or null.",
        "x-kubernetes-preserve-unknown-fields": True},
    "apiextensions.k8s.io/v1.JSONSchemaPropsOrArray": {
        "description": "Either one schema for every item, or a list of schemas, one per position.",
        "x-kubernetes-preserve-unknown-fields": True},
    "apiextensions.k8s.io/v1.JSONSchemaPropsOrBool": {
        "description": "Either a boolean (allowed or not) or a schema the values must match.",
        "x-kubernetes-preserve-unknown-fields": True},
    "apiextensions.k8s.io/v1.JSONSchemaPropsOrStringArray": {
        "description": "Either a schema or a list of property names.",
        "x-kubernetes-preserve-unknown-fields": True},
}

_ALIASES = {"Time": "meta/v1.Time", "MicroTime": "meta/v1.MicroTime", "FieldsV1": "meta/v1.FieldsV1",
            "Quantity": "resource.Quantity", "IntOrString": "intstr.IntOrString",
            "RawExtension": "runtime.RawExtension"}

# Lists whose list-map keys differ from their strategic merge key (upstream's listMapKey tags).
_LIST_MAP_KEYS: dict[tuple[str, str], list[str]] = {
    ("core/v1.Container", "ports"): ["containerPort", "protocol"],
    ("core/v1.EphemeralContainer", "ports"): ["containerPort", "protocol"],
    ("core/v1.ServiceSpec", "ports"): ["port", "protocol"],
    ("core/v1.PodSpec", "topologySpreadConstraints"): ["topologyKey", "whenUnsatisfiable"],
}

_PRIMITIVES = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "int32": {"type": "integer", "format": "int32"},
    "int64": {"type": "integer", "format": "int64"},
    "number": {"type": "number", "format": "double"},
    "byte": {"type": "string", "format": "byte"},
    "object": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}

ENVELOPE_DOC = {
    "apiVersion": "The versioned schema of this object (group/version, or v1 for the core group).",
    "kind": "The REST kind of this object, in CamelCase (e.g. Pod). Set by clients; cannot be updated.",
    "metadata": "Standard object metadata: name, namespace, labels, annotations, owners and more.",
}


class SchemaError(ValueError):
    """A declaration that cannot be read or a reference that does not resolve."""


@dataclass
class Field:
    name: str
    type: str
    description: str
    required: bool = False


@dataclass
class TypeDecl:
    name: str                   # internal name, e.g. "core/v1.Pod"
    description: str
    fields: list[Field] = field(default_factory=list)
    kind: bool = False
    has_list: bool = True   # kinds: whether a <Kind>List type is generated

    @property
    def package(self) -> str:
        return split_name(self.name)[0]


def split_name(name: str) -> tuple[str, str]:
    """("core/v1", "Pod") from "core/v1.Pod"; the package may itself hold dots (discovery.k8s.io/v1)."""
    if "/" in name:
        group, _, rest = name.partition("/")
        version, _, short = rest.partition(".")
        return f"{group}/{version}", short
    pkg, _, short = name.rpartition(".")
    return pkg, short


def published_name(name: str) -> str:
    """Upstream's schema name: core/v1.Pod -> io.k8s.api.core.v1.Pod."""
    pkg, short = split_name(name)
    prefix = _PUBLISHED.get(pkg)
    if prefix is None:
        group, _, version = pkg.partition("/")
        prefix = f"io.k8s.api.{group.split('.')[0]}.{version}"
    return f"{prefix}.{short}"


def gvk_of(name: str) -> dict:
    """The group-version-kind of a kind type (group "" for core)."""
    pkg, short = split_name(name)
    group, _, version = pkg.partition("/")
    return {"group": "" if group == "core" else group, "kind": short, "version": version}


# --- parsing ------------------------------------------------------------------------------------

_HEADER = re.compile(r"^(?P<name>[A-Z][A-Za-z0-9]*)(?P<kind> kind(?P<nolist> without list)?)?:\s*(?P<doc>.*)$")


def parse(text: str) -> list[TypeDecl]:
    """Read one declaration block (see the module docstring)."""
    pkg = ""
    out: list[TypeDecl] = []
    cur: TypeDecl | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("package "):
            pkg = line.split(None, 1)[1].strip()
            continue
        if not line[0].isspace():
            m = _HEADER.match(line)
            if not m or not pkg:
                raise SchemaError(f"line {lineno}: bad type header: {line!r}")
            cur = TypeDecl(f"{pkg}.{m['name']}", m["doc"].strip(), kind=bool(m["kind"]),
                           has_list=not m["nolist"])
            out.append(cur)
            continue
        if cur is None:
            raise SchemaError(f"line {lineno}: field outside a type: {line!r}")
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise SchemaError(f"line {lineno}: a field needs a name, a type and a description: {line!r}")
        fname, ftype, doc = parts
        required = fname.endswith("*")
        cur.fields.append(Field(fname.rstrip("*"), ftype, doc.strip(), required))
    return out


@lru_cache(maxsize=1)
def declarations() -> dict[str, TypeDecl]:
    """Every declared type by internal name, List types of the kinds included."""
    from .schemas import SOURCES
    decls: dict[str, TypeDecl] = {}
    for text in SOURCES:
        for d in parse(text):
            if d.name in decls or d.name in _SPECIAL:
                raise SchemaError(f"type {d.name} declared twice")
            decls[d.name] = d
    for d in [d for d in decls.values() if d.kind and d.has_list]:
        pkg, short = split_name(d.name)
        lst = TypeDecl(f"{pkg}.{short}List", f"A list of {short} objects.", kind=True, has_list=False)
        lst.fields = [Field("items", f"[]{d.name}", f"The {short} objects.", True),
                      Field("metadata", "meta/v1.ListMeta",
                            "Standard list metadata: resourceVersion and the continue token.")]
        decls.setdefault(lst.name, lst)
    return decls


@lru_cache(maxsize=1)
def _kind_index() -> dict[tuple[str, str, str], str]:
    out = {}
    for d in declarations().values():
        if d.kind:
            g = gvk_of(d.name)
            out[(g["group"], g["version"], g["kind"])] = d.name
    return out


def kind_type(group: str, version: str, kind: str) -> str | None:
    """The internal type name of a built-in kind (None when not declared)."""
    return _kind_index().get(("" if group == "core" else group, version, kind))


def all_kinds() -> list[str]:
    return sorted(_kind_index().values())


def resolve(ref: str, package: str) -> str:
    """The internal name a type reference in `package` stands for."""
    if ref in _ALIASES:
        return _ALIASES[ref]
    decls = declarations()
    if "." in ref or "/" in ref:
        if ref in decls or ref in _SPECIAL:
            return ref
        raise SchemaError(f"unknown type {ref}")
    for pkg in (package, "meta/v1", "core/v1"):
        name = f"{pkg}.{ref}"
        if name in decls or name in _SPECIAL:
            return name
    raise SchemaError(f"unknown type {ref} (from {package})")


# --- building -----------------------------------------------------------------------------------

def _type_schema(expr: str, package: str) -> dict:
    """A schema for a type expression: primitives inline, named types as a $ref."""
    if expr.startswith("[]"):
        return {"type": "array", "items": _type_schema(expr[2:], package)}
    if expr.startswith("map[string]"):
        return {"type": "object", "additionalProperties": _type_schema(expr[len("map[string]"):], package)}
    m = re.fullmatch(r"string\{(.*)\}", expr)
    if m:
        return {"type": "string", "enum": ["" if v == '""' else v for v in m.group(1).split(",")]}
    if expr in _PRIMITIVES:
        return dict(_PRIMITIVES[expr])
    return {"$ref": V3_PREFIX + published_name(resolve(expr, package))}


def _field_schema(owner: TypeDecl, f: Field) -> dict:
    s = _type_schema(f.type, owner.package)
    if "$ref" in s:
        s = {"allOf": [s]}
    s["description"] = f.description
    _, strategy, key = patchmeta.field_meta(owner.name, f.name)
    if strategy:
        s["x-kubernetes-patch-strategy"] = strategy
    if key:
        s["x-kubernetes-patch-merge-key"] = key
    if s.get("type") == "array":
        if key:
            s["x-kubernetes-list-type"] = "map"
            s["x-kubernetes-list-map-keys"] = _LIST_MAP_KEYS.get((owner.name, f.name), [key])
        elif strategy == patchmeta.MERGE:
            s["x-kubernetes-list-type"] = "set"
        else:
            s["x-kubernetes-list-type"] = "atomic"
    return s


def _envelope(d: TypeDecl) -> list[Field]:
    fields = [Field("apiVersion", "string", ENVELOPE_DOC["apiVersion"]),
              Field("kind", "string", ENVELOPE_DOC["kind"]),
              Field("metadata", "meta/v1.ObjectMeta", ENVELOPE_DOC["metadata"])]
    names = {f.name for f in d.fields}
    return [f for f in fields if f.name not in names] + d.fields


@lru_cache(maxsize=None)
def _built(name: str) -> dict:
    if name in _SPECIAL:
        return _SPECIAL[name]
    d = declarations().get(name)
    if d is None:
        raise SchemaError(f"unknown type {name}")
    fields = _envelope(d) if d.kind else d.fields
    s: dict = {"description": d.description, "type": "object",
               "properties": {f.name: _field_schema(d, f) for f in sorted(fields, key=lambda f: f.name)}}
    req = [f.name for f in fields if f.required]
    if req:
        s["required"] = req
    if d.kind:
        s["x-kubernetes-group-version-kind"] = [gvk_of(name)]
    return s


def type_schema(name: str) -> dict:
    """The OpenAPI v3 schema of one type (a fresh copy, safe to change)."""
    return copy.deepcopy(_built(name))


def refs(schema) -> set[str]:
    """The published names a schema refers to (any depth)."""
    out: set[str] = set()
    stack = [schema]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            r = cur.get("$ref")
            if isinstance(r, str) and r.startswith(V3_PREFIX):
                out.add(r[len(V3_PREFIX):])
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return out


@lru_cache(maxsize=1)
def _by_published() -> dict[str, str]:
    names = list(declarations()) + list(_SPECIAL)
    return {published_name(n): n for n in names}


def internal_name(published: str) -> str | None:
    return _by_published().get(published)


@lru_cache(maxsize=None)
def _closure(name: str) -> frozenset[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for pub in refs(_built(n)):
            inner = internal_name(pub)
            if inner is None:
                raise SchemaError(f"{n} refers to unknown schema {pub}")
            todo.append(inner)
    return frozenset(seen)


def components(roots: Iterable[str]) -> dict[str, dict]:
    """The v3 schemas of `roots` (internal names) and of every type they reach, by published name.

    The values are shared, cached dicts: treat them as read-only (use `type_schema` to edit)."""
    names: set[str] = set()
    for r in roots:
        names |= _closure(r)
    return {published_name(n): _built(n) for n in sorted(names, key=published_name)}


# --- OpenAPI v2 -----------------------------------------------------------------------------------

_V2_SPECIAL = {
    "resource.Quantity": {"type": "string"},
    "intstr.IntOrString": {"type": "string", "format": "int-or-string"},
}


def to_v2(schema, published: str | None = None):
    """A v3 schema rewritten for Swagger 2.0 `definitions` (returns a new object).

    A single-entry allOf around a $ref becomes the $ref itself (siblings kept, as upstream's
    v2 document does); oneOf scalars take their v2 form; refs point into #/definitions/."""
    if published is not None:
        inner = internal_name(published)
        if inner in _V2_SPECIAL:
            return {**_V2_SPECIAL[inner], "description": schema.get("description", "")}
    if isinstance(schema, list):
        return [to_v2(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "allOf" and isinstance(v, list) and len(v) == 1 and "$ref" in v[0]:
            out["$ref"] = V2_PREFIX + v[0]["$ref"][len(V3_PREFIX):]
        elif k == "$ref" and isinstance(v, str) and v.startswith(V3_PREFIX):
            out["$ref"] = V2_PREFIX + v[len(V3_PREFIX):]
        elif k in ("properties", "definitions", "patternProperties") and isinstance(v, dict):
            out[k] = {pk: to_v2(pv) for pk, pv in v.items()}
        else:
            out[k] = to_v2(v)
    return out
