"""Field management for server-side apply: structured-merge-diff semantics over JSON dicts.

Behaviour follows k8s.io/apimachinery/pkg/util/managedfields (the field manager the
apiserver runs) and sigs.k8s.io/structured-merge-diff v4 (merge.Updater, typed
Merge/Compare/ToFieldSet/RemoveItems, fieldpath serialization), re-implemented here:

* A field set is a flat ``set`` of paths; a path is a tuple of path elements
  ``("f", name)`` (struct field or map key), ``("k", '{"name":"nginx"}')`` (associative
  list item, canonical compact JSON of its key fields, sorted), ``("v", '"x"')`` (set
  member, canonical JSON) and ``("i", 3)`` (atomic-list index, only ever parsed).
* Types come from :mod:`patchmeta`: a list with a patch merge key is an associative
  list keyed by it (a few upstream composite keys are hard-coded below), a list with
  strategy ``merge`` and no key is a set of scalars, every other list is atomic.  Dicts
  are structs (granular) except a few atomic ones (label selectors, ``nodeSelector``,
  Service/RC ``selector``).  Custom resources (``root_type=None``): all keys are struct
  fields and all lists are atomic, except under ``metadata`` (ObjectMeta).
* ``apply`` = Updater.Apply: merge, prune what the applier stopped applying and nobody
  else owns, detect conflicts with other managers (``force`` takes the fields over).
* ``update`` = Updater.Update for POST/PUT/PATCH: the manager takes every changed field.
* Entries are stored and sorted like upstream (operation, time, manager, apiVersion,
  subresource); Apply entries are identified by manager (+subresource), Update entries
  also by apiVersion; at most 10 Update entries are kept (older ones merged into
  ``ancient-changes``).

Not modelled: API-version conversion of field sets (all versions are treated alike), the
``kubectl.kubernetes.io/last-applied-configuration`` interplay (lastAppliedManager /
lastAppliedUpdater) and the scale subresource's replicas mapping.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable

from .objcopy import deep_copy
from .patchmeta import OBJECT_META, field_meta
from .validation import go_quote

__all__ = [
    "ApplyConflict",
    "Conflict",
    "FieldManagerError",
    "apply",
    "update",
    "fields_v1",
    "parse_fields_v1",
    "serialize_fields_v1",
    "path_string",
]

PathElement = tuple[str, Any]
Path = tuple[PathElement, ...]

MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"

# x-kubernetes-list-map-keys that differ from the strategic-merge patchMergeKey
# (k8s.io/api: +listMapKey markers), with the schema default of a key field if it has one.
_PORT_KEYS = (("containerPort", None), ("protocol", "TCP"))
_COMPOSITE_KEYS: dict[tuple[str | None, str], tuple[tuple[str, Any], ...]] = {
    ("core/v1.Container", "ports"): _PORT_KEYS,
    ("core/v1.EphemeralContainer", "ports"): _PORT_KEYS,
    ("core/v1.ServiceSpec", "ports"): (("port", None), ("protocol", "TCP")),
    ("core/v1.PodSpec", "topologySpreadConstraints"): (("topologyKey", None), ("whenUnsatisfiable", None)),
}
# Dict-valued fields of built-in types that are atomic (+structType=atomic on
# metav1.LabelSelector, +mapType=atomic on PodSpec.nodeSelector and the Service and
# ReplicationController selectors).
_ATOMIC_FIELDS = frozenset({"selector", "nodeSelector", "podSelector", "namespaceSelector", "labelSelector"})
# Fields of built-in Go types that are present even in the zero value (non-pointer
# structs serialize as {}, PodSpec.containers has no omitempty and serializes as null),
# so their appearance or disappearance is not itself a change: name -> zero value.
_GO_ZERO: dict[str, Any] = {n: {} for n in ("metadata", "spec", "status", "template", "jobTemplate",
                                             "strategy", "updateStrategy", "resources")}
_GO_ZERO["containers"] = None
# Never tracked (stripMetaManager), plus the deletion fields only the server sets.
_STRIP: frozenset[Path] = frozenset({
    (("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),),
    *((("f", "metadata"), ("f", n)) for n in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
        "managedFields", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds")),
})
_CR_ROOT = "<custom resource>"


class FieldManagerError(ValueError):
    """The request cannot be handled by the field manager (a bad applied configuration,
    undecodable managedFields); the message names the problem."""


# ---------------------------------------------------------------------------
# Conflicts


@dataclass(frozen=True)
class Conflict:
    """One conflicting field and the managedFields entry that owns it."""
    manager: str
    path: str
    operation: str = "Apply"
    api_version: str = ""
    subresource: str = ""

    def describe(self) -> str:
        """The manager as upstream prints it (printManager in conflict.go)."""
        s = go_quote(self.manager)
        if self.subresource:
            s += f" with subresource {go_quote(self.subresource)}"
        if self.operation == "Update":
            s += f" using {self.api_version}"
        return s

    def identifier(self) -> str:
        return _identifier(self.manager, self.operation, self.api_version, self.subresource)


class ApplyConflict(Exception):
    """Apply would change fields owned by other managers (HTTP 409, reason Conflict)."""

    def __init__(self, conflicts: Iterable[Conflict | tuple[str, str]]):
        self.details: list[Conflict] = [c if isinstance(c, Conflict) else Conflict(c[0], c[1])
                                        for c in conflicts]
        super().__init__(self.message())

    @property
    def conflicts(self) -> list[tuple[str, str]]:
        return [(c.manager, c.path) for c in self.details]

    def message(self) -> str:
        if len(self.details) == 1:
            c = self.details[0]
            return f"Apply failed with 1 conflict: conflict with {c.describe()}: {c.path}"
        groups: dict[str, list[Conflict]] = {}
        for c in self.details:
            groups.setdefault(c.identifier(), []).append(c)
        lines: list[str] = []
        for ident in sorted(groups):
            lines.append(f"conflicts with {groups[ident][0].describe()}:")
            lines.extend(f"- {c.path}" for c in groups[ident])
        return f"Apply failed with {len(self.details)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {c.describe()}", "field": c.path}
                for c in self.details]

    def to_status(self) -> dict:
        """The metav1.Status upstream answers with."""
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message(), "reason": "Conflict",
                "details": {"causes": self.causes()}, "code": 409}


# ---------------------------------------------------------------------------
# Path elements and their serialization


def _norm_json(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() and abs(v) < 2 ** 63 else v
    if isinstance(v, dict):
        return {k: _norm_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm_json(x) for x in v]
    return v


def _canon(v: Any) -> str:
    """Compact JSON with sorted keys and Go's HTML-safe escaping (encoding/json)."""
    s = json.dumps(_norm_json(v), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _value_rank(v: Any) -> tuple:
    """Total order of values as value.Compare: numbers < strings < bools < lists < maps < null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, float(v))
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, tuple(_value_rank(x) for x in v))
    if isinstance(v, dict):
        return (4, tuple((k, _value_rank(v[k])) for k in sorted(v)))
    return (5,)


@lru_cache(maxsize=8192)
def _pe_order(pe: PathElement) -> tuple:
    kind, val = pe
    if kind == "f":
        return (0, val)
    if kind == "k":
        d = json.loads(val)
        return (1, tuple((k, _value_rank(d[k])) for k in sorted(d)))
    if kind == "v":
        return (2, _value_rank(json.loads(val)))
    return (3, val)


def _pe_key(pe: PathElement) -> str:
    kind, val = pe
    return f"{kind}:{val}"


def _value_string(v: Any) -> str:
    """value.ToString."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return _canon(v)


def _pe_string(pe: PathElement) -> str:
    kind, val = pe
    if kind == "f":
        return "." + val
    if kind == "k":
        d = json.loads(val)
        return "[" + ",".join(f"{k}={_value_string(d[k])}" for k in sorted(d)) + "]"
    if kind == "v":
        return f"[={_value_string(json.loads(val))}]"
    return f"[{val}]"


def path_string(path: Path) -> str:
    """A path as upstream prints it: ``.spec.template.spec.containers[name="nginx"].image``."""
    return "".join(_pe_string(pe) for pe in path)


def _parse_pe(key: str) -> PathElement | None:
    if len(key) < 2 or key[1] != ":":
        raise FieldManagerError(f"invalid path element {key!r}")
    kind, body = key[0], key[2:]
    try:
        if kind == "f":
            return ("f", body)
        if kind == "k":
            d = json.loads(body)
            if not isinstance(d, dict):
                raise ValueError("key must be an object")
            return ("k", _canon(d))
        if kind == "v":
            return ("v", _canon(json.loads(body)))
        if kind == "i":
            return ("i", int(body))
    except ValueError as e:
        raise FieldManagerError(f"invalid path element {key!r}: {e}") from None
    return None  # unknown element types are dropped, as upstream


def parse_fields_v1(d: dict) -> set[Path]:
    """The set of paths a FieldsV1 JSON object holds."""
    if not isinstance(d, dict):
        raise FieldManagerError("fieldsV1 must be a JSON object")
    out: set[Path] = set()

    def walk(node: dict, prefix: Path) -> None:
        for key, sub in node.items():
            if key == ".":
                continue
            pe = _parse_pe(key)
            if pe is None:
                continue
            if not isinstance(sub, dict):
                raise FieldManagerError(f"invalid fieldsV1 value under {key!r}")
            path = prefix + (pe,)
            before = len(out)
            walk(sub, path)
            if "." in sub or len(out) == before:
                out.add(path)

    walk(d, ())
    return out


def _trie(paths: Iterable[Path]) -> dict:
    """path element -> [is member, children trie]."""
    root: dict = {}
    for p in paths:
        node = root
        for pe in p[:-1]:
            node = node.setdefault(pe, [False, {}])[1]
        node.setdefault(p[-1], [False, {}])[0] = True
    return root


def serialize_fields_v1(paths: Iterable[Path]) -> dict:
    """FieldsV1 JSON of a set of paths, keys in upstream's order ('.' first)."""
    def emit(node: dict) -> dict:
        out: dict = {}
        for pe in sorted(node, key=_pe_order):
            member, children = node[pe]
            if children:
                sub = emit(children)
                out[_pe_key(pe)] = {".": {}, **sub} if member else sub
            else:
                out[_pe_key(pe)] = {}
        return out
    return emit(_trie(paths))


def _iter_order(paths: set[Path]) -> list[Path]:
    """Set.Iterate order: at each level members first, then children, both sorted."""
    out: list[Path] = []

    def walk(node: dict, prefix: Path) -> None:
        pes = sorted(node, key=_pe_order)
        out.extend(prefix + (pe,) for pe in pes if node[pe][0])
        for pe in pes:
            if node[pe][1]:
                walk(node[pe][1], prefix + (pe,))

    walk(_trie(paths), ())
    return out


# ---------------------------------------------------------------------------
# Schema


class _Node:
    """Type of one value: struct/atomic for dicts, list kind and keys for lists."""
    __slots__ = ("tname", "builtin", "atomic", "list_kind", "keys")

    def __init__(self, tname: str | None, builtin: bool, atomic: bool = False,
                 list_kind: str = "atomic", keys: tuple = ()):
        self.tname, self.builtin, self.atomic = tname, builtin, atomic
        self.list_kind, self.keys = list_kind, keys

    def field(self, name: str) -> _Node:
        return _field_node(self.tname, self.builtin, name)

    def item(self) -> _Node:
        return _item_node(self.tname, self.builtin)


@lru_cache(maxsize=4096)
def _field_node(tname: str | None, builtin: bool, name: str) -> _Node:
    if tname == _CR_ROOT:
        child, strategy, key = (OBJECT_META if name == "metadata" else None), None, None
    else:
        child, strategy, key = field_meta(tname, name)
    keys = _COMPOSITE_KEYS.get((tname, name)) or (((key, None),) if key else ())
    if keys:
        kind = "map"
    elif strategy and "merge" in strategy.split(","):
        kind = "set"
    else:
        kind = "atomic"
    return _Node(child, builtin, builtin and name in _ATOMIC_FIELDS, kind, keys)


@lru_cache(maxsize=1024)
def _item_node(tname: str | None, builtin: bool) -> _Node:
    return _Node(tname, builtin)


def _root(root_type: str | None) -> _Node:
    return _Node(root_type, True) if root_type is not None else _Node(_CR_ROOT, False)


_MAP, _LIST, _LEAF = "map", "list", "leaf"


def _kind(node: _Node, v: Any) -> str:
    if isinstance(v, dict):
        return _LEAF if node.atomic else _MAP
    if isinstance(v, list):
        return _LIST if node.list_kind != "atomic" else _LEAF
    return _LEAF


def _item_pe(node: _Node, item: Any, index: int, path: Path, strict: bool) -> PathElement | None:
    """Path element of a list item (listItemToPathElement); None when it has none."""
    err = None
    if node.list_kind == "map":
        if not isinstance(item, dict):
            err = "associative list with keys may not have non-map elements"
        else:
            kv = {}
            for name, default in node.keys:
                if name in item:
                    kv[name] = item[name]
                elif default is not None:
                    kv[name] = default
                else:
                    err = (f"associative list with keys has an element that omits key field "
                           f"{go_quote(name)} (and doesn't have default value)")
                    break
            if err is None:
                return ("k", _canon(kv))
    else:
        if isinstance(item, dict):
            err = "associative list without keys has an element that's a map type"
        elif isinstance(item, list):
            err = "not supported: associative list with lists as elements"
        elif item is None:
            err = "associative list without keys has an element that's an explicit null"
        else:
            return ("v", _canon(item))
    if strict:
        raise FieldManagerError(f"{path_string(path)}: element {index}: {err}")
    return None


def _index_items(node: _Node, items: list, path: Path, strict: bool) -> tuple[list, dict]:
    """(ordered unique path elements, pe -> first item); duplicates rejected when strict."""
    order: list = []
    seen: dict = {}
    for i, item in enumerate(items):
        pe = _item_pe(node, item, i, path, strict)
        if pe is None:
            continue
        if pe in seen:
            if strict:
                raise FieldManagerError(f"{path_string(path)}: duplicate entries for key {_pe_string(pe)}")
            continue
        seen[pe] = item
        order.append(pe)
    return order, seen


# ---------------------------------------------------------------------------
# Values: equality, field sets, merge, compare, removal

_MISSING = object()


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _field_set(v: Any, node: _Node, strict: bool = False) -> set[Path]:
    """TypedValue.ToFieldSet: leaves, list items, null or empty-map fields."""
    out: set[Path] = set()

    def walk(v: Any, node: _Node, path: Path) -> None:
        kind = _kind(node, v)
        if kind == _MAP:
            for k, cv in v.items():
                p = path + (("f", k),)
                walk(cv, node.field(k), p)
                if cv is None or (isinstance(cv, dict) and not cv):
                    out.add(p)
        elif kind == _LIST:
            item_node = node.item()
            for i, item in enumerate(v):
                pe = _item_pe(node, item, i, path, strict)
                if pe is None:
                    continue
                walk(item, item_node, path + (pe,))
                out.add(path + (pe,))
            if strict:
                _index_items(node, v, path, True)  # reject duplicates
        elif path:
            out.add(path)

    walk(v, node, ())
    return out


def _ensure_named(paths: set[Path]) -> set[Path]:
    """Set.EnsureNamedFieldsAreMembers: struct fields above owned fields become members."""
    out = set(paths)
    for p in paths:
        for i in range(1, len(p)):
            if p[i - 1][0] == "f":
                out.add(p[:i])
    return out


def _recursive_difference(paths: set[Path], prefixes: Iterable[Path]) -> set[Path]:
    prefixes = list(prefixes)
    if not prefixes:
        return set(paths)
    return {p for p in paths if not any(p[:len(q)] == q for q in prefixes)}


def _drop_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


def _merge(lhs: Any, rhs: Any, node: _Node, path: Path) -> Any:
    """TypedValue.Merge (rhs = applied config wins).  Explicit nulls are kept (they
    count as changes) and dropped from the final object, as a round trip through the
    Go types does."""
    kl, kr = _kind(node, lhs), _kind(node, rhs)
    if rhs is None:
        if kl in (_MAP, _LIST) and lhs:
            return deep_copy(lhs)  # null against a granular value keeps the live items
        return None
    if kl == kr == _MAP:
        if not lhs and not rhs:
            return {}
        out = {}
        for k, lv in lhs.items():
            if k in rhs:
                out[k] = _merge(lv, rhs[k], node.field(k), path + (("f", k),))
            else:
                out[k] = deep_copy(lv)
        for k, rv in rhs.items():
            if k not in lhs:
                out[k] = _merge_new(rv, node.field(k), path + (("f", k),))
        return out
    if kl == kr == _LIST:
        return _merge_list(lhs, rhs, node, path)
    return _merge_new(rhs, node, path)


def _merge_new(rhs: Any, node: _Node, path: Path) -> Any:
    """An applied value with nothing live under it."""
    if _kind(node, rhs) == _LIST:
        _index_items(node, rhs, path, True)
    return deep_copy(rhs)


def _merge_list(lhs: list, rhs: list, node: _Node, path: Path) -> list:
    """Associative list merge keeping upstream's order (shared items in rhs order)."""
    r_order, r_map = _index_items(node, rhs, path, True)
    l_entries: list = []  # (pe or None for opaque, item)
    l_map: dict = {}
    for i, item in enumerate(lhs):
        pe = _item_pe(node, item, i, path, False)
        if pe is not None and pe not in l_map:
            l_map[pe] = item
            l_entries.append((pe, item))
        elif pe is None or pe not in r_map:
            l_entries.append((None, item))  # kept untouched
    item_node = node.item()

    def merged(pe: PathElement) -> Any:
        rv = r_map[pe]
        if node.list_kind == "set":
            return deep_copy(rv)
        if pe in l_map:
            return _merge(l_map[pe], rv, item_node, path + (pe,))
        return _merge_new(rv, item_node, path + (pe,))

    shared = [pe for pe in r_order if pe in l_map]
    si = 0
    out: list = []
    li = ri = 0
    while li < len(l_entries) or ri < len(r_order):
        next_shared = shared[si] if si < len(shared) else None
        if li < len(l_entries) and ri < len(r_order):
            pe = l_entries[li][0]
            if pe is not None and pe == r_order[ri]:
                out.append(merged(pe))
                li, ri, si = li + 1, ri + 1, si + 1
                continue
            if pe is not None and pe in r_map and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(l_entries):
            pe, item = l_entries[li]
            if pe is None or pe not in r_map:
                out.append(deep_copy(item))
                li += 1
                continue
        if ri < len(r_order):
            pe = r_order[ri]
            out.append(merged(pe))
            ri += 1
            if next_shared == pe:
                si += 1
            continue
        li += 1  # an lhs item already emitted through rhs
    return out


class _Comparison:
    __slots__ = ("added", "removed", "modified")

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.removed: set[Path] = set()
        self.modified: set[Path] = set()

    def exclude(self, prefixes: list[Path]) -> _Comparison:
        if prefixes:
            self.added = _recursive_difference(self.added, prefixes)
            self.removed = _recursive_difference(self.removed, prefixes)
            self.modified = _recursive_difference(self.modified, prefixes)
        return self


def _compare(lhs: Any, rhs: Any, node: _Node) -> _Comparison:
    """TypedValue.Compare: which fields rhs added, removed or modified."""
    c = _Comparison()

    def children(v: Any, node: _Node, path: Path, into: set[Path]) -> None:
        for p in _field_set_all(v, node):
            into.add(path + p)

    def walk(l: Any, r: Any, node: _Node, path: Path) -> None:
        if path:
            if l is _MISSING:
                c.added.add(path)
            elif r is _MISSING:
                c.removed.add(path)
        kl = None if l is _MISSING or l is None else _kind(node, l)
        kr = None if r is _MISSING or r is None else _kind(node, r)
        if kl and kr and kl != kr:
            if kl != _LEAF:
                children(l, node, path, c.removed)
            if kr != _LEAF:
                children(r, node, path, c.added)
            if l is not _MISSING and r is not _MISSING:
                c.modified.add(path)
            return
        kind = kl or kr or _LEAF
        if kind == _MAP:
            ld = l if isinstance(l, dict) else {}
            rd = r if isinstance(r, dict) else {}
            if ld or rd:
                for k in list(ld) + [k for k in rd if k not in ld]:
                    lv, rv = ld.get(k, _MISSING), rd.get(k, _MISSING)
                    if node.builtin and k in _GO_ZERO:
                        # a present parent's Go zero value already holds this field
                        zero = _GO_ZERO[k]
                        shape = dict if zero is not None else list
                        if lv is _MISSING and isinstance(l, dict) and isinstance(rv, shape):
                            lv = copy.copy(zero)
                        if rv is _MISSING and isinstance(r, dict) and isinstance(lv, shape):
                            rv = copy.copy(zero)
                    walk(lv, rv, node.field(k), path + (("f", k),))
                return
        elif kind == _LIST:
            ll = l if isinstance(l, list) else []
            rl = r if isinstance(r, list) else []
            if ll or rl:
                lo, lm = _index_items(node, ll, path, False)
                ro, rm = _index_items(node, rl, path, False)
                item_node = node.item()
                for pe in ro:
                    walk(lm.get(pe, _MISSING), rm[pe], item_node, path + (pe,))
                for pe in lo:
                    if pe not in rm:
                        walk(lm[pe], _MISSING, item_node, path + (pe,))
                return
        # leaf (scalars, atomic values, empty or null containers)
        if l is not _MISSING and r is not _MISSING and not _eq(l, r):
            c.modified.add(path)

    walk(lhs, rhs, node, ())
    return c


def _field_set_all(v: Any, node: _Node) -> set[Path]:
    """Every node below v (what Compare reports when a whole subtree appears or goes)."""
    out: set[Path] = set()

    def walk(v: Any, node: _Node, path: Path) -> None:
        kind = _kind(node, v)
        if kind == _MAP:
            for k, cv in v.items():
                p = path + (("f", k),)
                out.add(p)
                walk(cv, node.field(k), p)
        elif kind == _LIST:
            order, items = _index_items(node, v, path, False)
            for pe in order:
                out.add(path + (pe,))
                walk(items[pe], node.item(), path + (pe,))

    walk(v, node, ())
    return out


def _remove_items(v: Any, paths: set[Path], node: _Node) -> Any:
    """TypedValue.RemoveItems; containers emptied by the removal disappear."""
    def walk(v: Any, trie: dict, node: _Node) -> Any:
        kind = _kind(node, v)
        if kind == _MAP and v:
            out = {}
            for k, cv in v.items():
                t = trie.get(("f", k))
                if t is None:
                    out[k] = cv
                elif not t[0]:
                    nv = walk(cv, t[1], node.field(k)) if t[1] else cv
                    if nv is not _MISSING:
                        out[k] = nv
            return out if out else _MISSING
        if kind == _LIST and v:
            out_l = []
            item_node = node.item()
            for i, item in enumerate(v):
                pe = _item_pe(node, item, i, (), False)
                t = trie.get(pe) if pe is not None else None
                if t is None:
                    out_l.append(item)
                elif not t[0]:
                    nv = walk(item, t[1], item_node) if t[1] else item
                    if nv is not _MISSING:
                        out_l.append(nv)
            return out_l if out_l else _MISSING
        return v

    if not paths:
        return v
    out = walk(v, _trie(paths), node)
    return {} if out is _MISSING else out


def _prune(merged: dict, managed_sets: list[set[Path]], last: set[Path] | None, node: _Node) -> dict:
    """Updater.prune: drop what the applier applied last time, no longer applies, and
    nobody else owns (including the items below it)."""
    if not last:
        return merged
    last_e = _ensure_named(last)
    pruned = _remove_items(merged, last_e, node)
    managed: set[Path] = set()
    for s in managed_sets:
        managed |= s
    managed = _ensure_named(managed)
    merged_set = _ensure_named(_field_set(merged, node))
    pruned = _remove_items(merged, merged_set - (_ensure_named(_field_set(pruned, node)) | managed), node)
    pruned_set = _ensure_named(_field_set(pruned, node))
    return _remove_items(merged, (merged_set - pruned_set) & last_e, node)


# ---------------------------------------------------------------------------
# managedFields entries


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str | None
    subresource: str
    fields: set[Path]

    def identifier(self) -> str:
        return _identifier(self.manager, self.operation, self.api_version, self.subresource)

    def encode(self) -> dict:
        out: dict = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time is not None:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = serialize_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _identifier(manager: str, operation: str, api_version: str, subresource: str) -> str:
    """BuildManagerIdentifier: Apply entries are not told apart by apiVersion."""
    d: dict = {"manager": manager, "operation": operation}
    if operation != "Apply" and api_version:
        d["apiVersion"] = api_version
    if subresource:
        d["subresource"] = subresource
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def _decode(entries: Any) -> dict[str, _Entry]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise FieldManagerError("metadata.managedFields must be a list")
    out: dict[str, _Entry] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise FieldManagerError(f"managed fields entry {i} is not an object")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise FieldManagerError("operation must be `Apply` or `Update`")
        if not e.get("apiVersion"):
            raise FieldManagerError("apiVersion must not be empty")
        ft = e.get("fieldsType") or ""
        if ft == "":
            raise FieldManagerError(f"missing fieldsType in managed fields entry {i}")
        if ft != "FieldsV1":
            raise FieldManagerError(f"invalid fieldsType {ft!r} in managed fields entry {i}")
        entry = _Entry(str(e.get("manager") or ""), op, str(e["apiVersion"]), e.get("time"),
                       str(e.get("subresource") or ""), parse_fields_v1(e.get("fieldsV1") or {}))
        out[entry.identifier()] = entry
    return out


def _seconds(t: str | None) -> int:
    if not t:
        return 0
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp())


def _encode(obj: dict, managers: dict[str, _Entry]) -> dict:
    entries = [e for e in managers.values() if e.fields]
    entries.sort(key=lambda e: (e.operation, _seconds(e.time), e.manager, e.api_version, e.subresource))
    md = obj.setdefault("metadata", {})
    if entries:
        md["managedFields"] = [e.encode() for e in entries]
    else:
        md.pop("managedFields", None)
    return obj


def _cap_update_managers(managers: dict[str, _Entry], limit: int = MAX_UPDATE_MANAGERS) -> None:
    """capManagersManager: merge the oldest Update entries into per-version buckets."""
    updaters = [k for k, e in managers.items() if e.operation != "Apply"]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda k: (_seconds(managers[k].time), k))
    first_for_version: dict[str, str] = {}
    length = len(updaters)
    for ident in updaters:
        if length <= limit:
            break
        e = managers[ident]
        bucket = _identifier(ANCIENT_CHANGES, "Update", e.api_version, "")
        if e.api_version in first_for_version:
            if bucket not in managers:
                first = managers.pop(first_for_version[e.api_version])
                managers[bucket] = _Entry(ANCIENT_CHANGES, "Update", first.api_version, first.time, "",
                                          first.fields)
            b = managers[bucket]
            b.fields = e.fields | b.fields
            b.time = e.time
            if ident != bucket:
                del managers[ident]
            length -= 1
        else:
            first_for_version[e.api_version] = ident


def _without_managed_fields(obj: dict | None) -> dict:
    out = deep_copy(obj) if obj is not None else {}
    md = out.get("metadata")
    if isinstance(md, dict):
        md.pop("managedFields", None)
    return out


def _ignored(ignore_status: bool, subresource: str) -> list[Path]:
    out: list[Path] = []
    if ignore_status:
        out.append((("f", "status"),))
    if subresource == "status":
        out.append((("f", "spec"),))
    return out


def _reset(obj: dict, live: dict, ignored: list[Path]) -> None:
    for p in ignored:
        name = p[0][1]
        if name in live:
            obj[name] = deep_copy(live[name])
        else:
            obj.pop(name, None)


# ---------------------------------------------------------------------------
# Public operations


def apply(live: dict | None, applied: dict, *, manager: str, api_version: str, root_type: str | None,
          force: bool, now: str, subresource: str = "", ignore_status: bool = False) -> dict:
    """Server-side apply of ``applied`` by ``manager`` onto ``live`` (None: create).

    Returns the new object with metadata.managedFields updated.  Raises ApplyConflict
    when another manager owns a field whose value would change (unless ``force``),
    FieldManagerError for an applied configuration the schema rejects.
    ``ignore_status``: status belongs to a status subresource and is neither merged nor
    tracked; with ``subresource == "status"`` spec is the part left alone.
    """
    if not isinstance(applied, dict):
        raise FieldManagerError("the applied configuration must be an object")
    amd = applied.get("metadata")
    if isinstance(amd, dict) and amd.get("managedFields") is not None:
        raise FieldManagerError("metadata.managedFields must be nil")
    node = _root(root_type)
    live_md = (live or {}).get("metadata") or {}
    try:
        managers = _decode(live_md.get("managedFields") if isinstance(live_md, dict) else None)
    except FieldManagerError as e:
        raise FieldManagerError(f"failed to decode managed fields: {e}") from None
    live_obj = _without_managed_fields(live)
    ident = _identifier(manager or "unknown", "Apply", api_version, subresource)
    ignored = _ignored(ignore_status, subresource)

    merged = _merge(live_obj, applied, node, ())
    new_obj: dict = merged if isinstance(merged, dict) else {}
    previous = managers.get(ident)
    last = previous.fields if previous else None
    applied_set = _recursive_difference(_field_set(applied, node, strict=True), ignored)
    managers[ident] = _Entry(manager or "unknown", "Apply", api_version, previous.time if previous else None,
                             subresource, applied_set)
    new_obj = _prune(new_obj, [e.fields for e in managers.values()], last, node)
    _reset(new_obj, live_obj, ignored)

    cmp = _compare(live_obj, new_obj, node).exclude(ignored)
    changed = cmp.added | cmp.modified
    conflicts: list[Conflict] = []
    for key in sorted(managers):
        e = managers[key]
        if key == ident:
            continue
        owned = e.fields & changed
        if owned:
            conflicts.extend(Conflict(e.manager, path_string(p), e.operation, e.api_version, e.subresource)
                             for p in _iter_order(owned))
            e.fields = e.fields - owned
        e.fields = e.fields - cmp.removed
    if conflicts and not force:
        raise ApplyConflict(conflicts)

    mine = managers[ident]
    mine.fields = mine.fields - _STRIP
    final = _drop_nulls(new_obj)
    if live is None or not _eq(final, _drop_nulls(live_obj)):
        mine.time = now
        result = final
    else:
        result = live_obj
    return _encode(result, managers)


def update(old: dict | None, new: dict, *, manager: str, api_version: str, root_type: str | None, now: str,
           subresource: str = "", operation: str = "Update", ignore_status: bool = False) -> dict:
    """Field ownership for a create (``old`` None), update or non-apply patch: ``manager``
    takes every field that changed from every other manager.  Returns a copy of ``new``
    with metadata.managedFields updated.

    managedFields sent in ``new`` are honoured (``[]`` or ``[{}]`` clear them), except for
    subresources, which always start from ``old``'s, as upstream.
    """
    node = _root(root_type)
    old_md = (old or {}).get("metadata") or {}
    new_md = new.get("metadata") or {}
    managers: dict[str, _Entry] = {}
    from_old = True
    if not subresource and isinstance(new_md, dict) and "managedFields" in new_md:
        mf = new_md.get("managedFields")
        if isinstance(mf, list) and (not mf or (len(mf) == 1 and mf[0] == {})):
            from_old = False
        else:
            try:
                managers = _decode(mf)
            except FieldManagerError:
                managers = {}
            from_old = not managers
    if from_old:
        try:
            managers = _decode(old_md.get("managedFields") if isinstance(old_md, dict) else None)
        except FieldManagerError:
            managers = {}

    old_obj = _without_managed_fields(old)
    new_obj = _without_managed_fields(new)
    ignored = _ignored(ignore_status, subresource)
    cmp = _compare(old_obj, new_obj, node).exclude(ignored)
    changed = cmp.modified | cmp.added
    for e in managers.values():
        e.fields = e.fields - changed - cmp.removed
    taken = _recursive_difference(changed - cmp.removed, ignored) - _STRIP
    if taken:
        ident = _identifier(manager or "unknown", operation, api_version, subresource)
        prev = managers.get(ident)
        managers[ident] = _Entry(manager or "unknown", operation, api_version, now, subresource,
                                 taken | (prev.fields if prev else set()))
    for k in [k for k, e in managers.items() if not e.fields]:
        del managers[k]
    _cap_update_managers(managers)
    return _encode(new_obj, managers)


def fields_v1(obj: dict, root_type: str | None) -> dict:
    """FieldsV1 JSON of the fields set in ``obj`` (as an applier of ``obj`` would own
    them; apiVersion, kind and server-owned metadata are left out, as upstream)."""
    return serialize_fields_v1(_field_set(obj, _root(root_type)) - _STRIP)
