"""The apiserver's patch engine: JSON patch, JSON merge patch, strategic merge patch.

Pure functions over JSON dicts; inputs are never mutated.  The behaviour (and the
error wording) follows what the upstream apiserver runs:

* JSON patch (RFC 6902) as gopkg.in/evanphx/json-patch.v4 applies it, quirks
  included: negative array indices count from the end, ``replace`` of a missing
  object member adds it, ``copy`` from a missing member copies null, ``add`` at the
  root path ``""`` fails, ``replace``/``test`` at ``""`` work on the whole document.
* JSON merge patch (RFC 7386) as json-patch.v4's MergePatch: null deletes; a value
  that lands where nothing (or a non-object) was has its nulls pruned, null array
  elements included.
* Strategic merge patch as k8s.io/apimachinery/pkg/util/strategicpatch applies it on
  the server (StrategicMergeMapPatch): merge lists by merge key, primitive merge
  lists as ordered sets, ``$patch`` (replace/delete), ``$setElementOrder/<list>``,
  ``$retainKeys``, ``$deleteFromPrimitiveList/<list>``, null deletes a key.  A value
  added where nothing was has its nulls and directive-bearing maps removed, and the
  directive keys a typed decode would drop never reach the result.

Errors are :class:`PatchError`, carrying the HTTP code, reason and message the
upstream apiserver answers with (see :meth:`PatchError.to_status`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import patchmeta
from .objcopy import deep_copy

__all__ = [
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "has_strategic_meta",
    "MAX_JSON_PATCH_OPERATIONS",
]

MAX_JSON_PATCH_OPERATIONS = 10000

# Status message of apierrors.NewGenericServerResponse(422, ...), which is how the
# apiserver reports a JSON patch that does not apply; the cause carries the detail.
_GENERIC_422 = "the server rejected our request due to an error in our request"


class PatchError(Exception):
    """A patch that cannot be applied.

    ``code``/``reason``/``message`` are those of the upstream Status; ``cause`` is the
    underlying error text when the Status message is the generic 422 one.
    """

    def __init__(self, message: str, code: int = 422, reason: str = "Invalid",
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.cause = cause

    @property
    def detail(self) -> str:
        """The most specific text: the cause when there is one, else the message."""
        return self.cause if self.cause is not None else self.message

    def __str__(self) -> str:
        if self.cause is not None:
            return f"{self.message}: {self.cause}"
        return self.message

    def to_status(self) -> dict[str, Any]:
        """The metav1.Status the apiserver answers with."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:
            status["reason"] = self.reason
        if self.cause is not None:
            status["details"] = {
                "causes": [{"type": "UnexpectedServerResponse", "message": self.cause}],
            }
        return status


def _bad_request(message: str) -> PatchError:
    return PatchError(message, 400, "BadRequest")


def _unprocessable(cause: str) -> PatchError:
    return PatchError(_GENERIC_422, 422, "Invalid", cause=cause)


def _internal(message: str) -> PatchError:
    # A plain Go error reaching the handler becomes a 500 with an empty reason.
    return PatchError(message, 500, "")


# ---------------------------------------------------------------------------
# Go formatting, for upstream-shaped messages
# ---------------------------------------------------------------------------

def _gofmt(v: Any) -> str:
    """fmt's %v of a decoded JSON value."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gofmt(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    return str(v)


def _gotype(v: Any) -> str:
    """reflect.TypeOf(v).String() for a decoded JSON value."""
    if v is None:
        return "%!s(<nil>)"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return type(v).__name__


def _json_kind(v: Any) -> str:
    """The JSON type name encoding/json uses in UnmarshalTypeError."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _json_equal(a: Any, b: Any) -> bool:
    """Structural JSON equality; numbers equal only with the same spelling kind."""
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_json_equal(a[k], b[k]) for k in a))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(_json_equal(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------
# JSON patch (RFC 6902), json-patch.v4 semantics
# ---------------------------------------------------------------------------

class _OpError(Exception):
    """An operation that does not apply (answered as 422)."""


_MISSING = "missing value"
_INVALID_INDEX = "invalid index referenced"
_ATOI_RE = re.compile(r"[+-]?[0-9]+")


def _atoi(s: str) -> int:
    if not _ATOI_RE.fullmatch(s):
        raise _OpError(f"strconv.Atoi: parsing {json.dumps(s)}: invalid syntax")
    n = int(s)
    if not -(2 ** 63) <= n < 2 ** 63:
        raise _OpError(f"strconv.Atoi: parsing {json.dumps(s)}: value out of range")
    return n


def _decode_token(token: str) -> str:
    # RFC 6901: "~1" -> "/", then "~0" -> "~", in one left-to-right pass.
    return re.sub(r"~[01]", lambda m: "/" if m.group(0) == "~1" else "~", token)


def _c_get(con: dict | list, key: str) -> Any:
    if isinstance(con, dict):
        return con.get(key)
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(con):
            raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
        idx += len(con)
    if idx >= len(con):
        raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
    return con[idx]


def _c_set(con: dict | list, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
        return
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(con):
            raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
        idx += len(con)
    con[idx] = val


def _c_add(con: dict | list, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
        return
    if key == "-":
        con.append(val)
        return
    try:
        idx = _atoi(key)
    except _OpError as e:
        raise _OpError(f"value was not a proper array index: '{key}': {e}") from None
    size = len(con) + 1
    if idx >= size:
        raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
    if idx < 0:
        if idx < -size:
            raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
        idx += size
    con.insert(idx, val)


def _c_remove(con: dict | list, key: str) -> None:
    if isinstance(con, dict):
        if key not in con:
            raise _OpError(f"Unable to remove nonexistent key: {key}: {_MISSING}")
        del con[key]
        return
    idx = _atoi(key)
    if idx >= len(con):
        raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
    if idx < 0:
        if idx < -len(con):
            raise _OpError(f"Unable to access invalid index: {idx}: {_INVALID_INDEX}")
        idx += len(con)
    del con[idx]


def _find_object(root: Any, path: str) -> tuple[dict | list | None, str]:
    """The container holding the last token of path, and that token (decoded)."""
    split = path.split("/")
    if len(split) < 2:
        return None, ""
    doc = root
    for part in split[1:-1]:
        try:
            nxt = _c_get(doc, _decode_token(part))
        except _OpError:
            return None, ""
        if not isinstance(nxt, (dict, list)):
            return None, ""
        doc = nxt
    return doc, _decode_token(split[-1])


def _op_str(op: dict, field: str, missing: str) -> str:
    """The string value of an operation's path/from member."""
    v = op.get(field)
    if v is None:
        raise _OpError(f"{missing}: {_MISSING}")
    if not isinstance(v, str):
        raise _OpError(f"json: cannot unmarshal {_json_kind(v)} into Go value of type string")
    return v


def _op_path(op: dict) -> str:
    return _op_str(op, "path", "operation missing path field")


def _op_from(op: dict) -> str:
    return _op_str(op, "from", "operation, missing from field")


def _jp_add(holder: list, op: dict) -> None:
    try:
        path = _op_path(op)
    except _OpError:
        raise _OpError(f"add operation failed to decode path: {_MISSING}") from None
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(f'add operation does not apply: doc is missing path: "{path}": {_MISSING}')
    try:
        _c_add(con, key, deep_copy(op.get("value")))
    except _OpError as e:
        raise _OpError(f"error in add for path: '{path}': {e}") from None


def _jp_remove(holder: list, op: dict) -> None:
    try:
        path = _op_path(op)
    except _OpError:
        raise _OpError(f"remove operation failed to decode path: {_MISSING}") from None
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(
            f'remove operation does not apply: doc is missing path: "{path}": {_MISSING}')
    try:
        _c_remove(con, key)
    except _OpError as e:
        raise _OpError(f"error in remove for path: '{path}': {e}") from None


def _jp_replace(holder: list, op: dict) -> None:
    try:
        path = _op_path(op)
    except _OpError as e:
        raise _OpError(f"replace operation failed to decode path: {e}") from None
    if path == "":
        value = op.get("value")
        if not isinstance(value, (dict, list)):
            raise _OpError("replace operation value must be object or array: %!w(<nil>)")
        holder[0] = deep_copy(value)
        return
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(f"replace operation does not apply: doc is missing path: {path}: {_MISSING}")
    try:
        _c_get(con, key)
    except _OpError:
        raise _OpError(
            f"replace operation does not apply: doc is missing key: {path}: {_MISSING}") from None
    try:
        _c_set(con, key, deep_copy(op.get("value")))
    except _OpError as e:
        raise _OpError(f"error in remove for path: '{path}': {e}") from None


def _jp_move(holder: list, op: dict) -> None:
    try:
        from_path = _op_from(op)
    except _OpError as e:
        raise _OpError(f"move operation failed to decode from: {e}") from None
    con, key = _find_object(holder[0], from_path)
    if con is None:
        raise _OpError(
            f"move operation does not apply: doc is missing from path: {from_path}: {_MISSING}")
    try:
        val = _c_get(con, key)
        _c_remove(con, key)
    except _OpError as e:
        raise _OpError(f"error in move for path: '{key}': {e}") from None
    try:
        path = _op_path(op)
    except _OpError as e:
        raise _OpError(f"move operation failed to decode path: {e}") from None
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(
            f"move operation does not apply: doc is missing destination path: {path}: {_MISSING}")
    try:
        _c_add(con, key, val)
    except _OpError as e:
        raise _OpError(f"error in move for path: '{path}': {e}") from None


def _jp_test(holder: list, op: dict) -> None:
    try:
        path = _op_path(op)
    except _OpError as e:
        raise _OpError(f"test operation failed to decode path: {e}") from None
    expected = op.get("value")
    if path == "":
        if expected is not None and _json_equal(holder[0], expected):
            return
        raise _OpError(f"testing value {path} failed: test failed")
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(f"test operation does not apply: is missing path: {path}: {_MISSING}")
    try:
        val = _c_get(con, key)
    except _OpError as e:
        raise _OpError(f"error in test for path: '{path}': {e}") from None
    if val is None:
        if expected is None:
            return
    elif expected is not None and _json_equal(val, expected):
        return
    raise _OpError(f"testing value {path} failed: test failed")


def _jp_copy(holder: list, op: dict) -> None:
    try:
        from_path = _op_from(op)
    except _OpError as e:
        raise _OpError(f"copy operation failed to decode from: {e}") from None
    con, key = _find_object(holder[0], from_path)
    if con is None:
        raise _OpError(
            f"copy operation does not apply: doc is missing from path: {from_path}: {_MISSING}")
    try:
        val = _c_get(con, key)
    except _OpError as e:
        raise _OpError(f"error in copy for from: '{from_path}': {e}") from None
    try:
        path = _op_path(op)
    except _OpError:
        raise _OpError(f"copy operation failed to decode path: {_MISSING}") from None
    con, key = _find_object(holder[0], path)
    if con is None:
        raise _OpError(
            f"copy operation does not apply: doc is missing destination path: {path}: {_MISSING}")
    try:
        _c_add(con, key, deep_copy(val))
    except _OpError as e:
        raise _OpError(f"error while adding value during copy: {e}") from None


_JSON_PATCH_OPS = {
    "add": _jp_add,
    "remove": _jp_remove,
    "replace": _jp_replace,
    "move": _jp_move,
    "test": _jp_test,
    "copy": _jp_copy,
}


def apply_json_patch(doc: dict, ops: list, *, in_place: bool = False) -> dict:
    """Apply an RFC 6902 JSON patch (the decoded operation list) to a copy of doc (to doc itself
    with in_place, for a caller that owns it and drops it if this raises).

    Raises PatchError: 400 when ops is not a list of objects, 413 past
    MAX_JSON_PATCH_OPERATIONS operations, 422 when an operation does not apply
    (generic Status message, upstream error text in ``cause``).
    """
    if not isinstance(ops, list):
        raise _bad_request(
            f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise _bad_request(f"json: cannot unmarshal {_json_kind(op)} "
                               "into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}", 413, "RequestEntityTooLarge")
    holder = [doc if in_place else deep_copy(doc)]
    for op in ops:
        kind = op.get("op")
        if not isinstance(kind, str):
            kind = "unknown"
        handler = _JSON_PATCH_OPS.get(kind)
        try:
            if handler is None:
                raise _OpError(f"Unexpected kind: {kind}")
            handler(holder, op)
        except _OpError as e:
            raise _unprocessable(str(e)) from None
    return holder[0]


# ---------------------------------------------------------------------------
# JSON merge patch (RFC 7386), json-patch.v4 semantics
# ---------------------------------------------------------------------------

def prune_nulls(v: Any) -> Any:
    """v without its null members and items, at every depth: what a merge patch stores of a value
    it sets (json-patch's pruneNulls)."""
    if isinstance(v, dict):
        return {k: prune_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [prune_nulls(x) for x in v if x is not None]
    return v


def _merge_docs(doc: dict, patch: dict) -> None:
    for k, v in patch.items():
        if v is None:
            doc.pop(k, None)
        elif doc.get(k) is None:
            doc[k] = prune_nulls(v)
        else:
            cur = doc[k]
            if not isinstance(cur, dict):
                doc[k] = prune_nulls(v)
            elif not isinstance(v, dict):
                doc[k] = v
            else:
                _merge_docs(cur, v)


def apply_merge_patch(doc: dict, patch: dict, *, in_place: bool = False) -> dict:
    """Apply an RFC 7386 JSON merge patch to a copy of doc (null deletes); to doc itself with in_place.

    Raises PatchError 400 "Invalid JSON Patch" when patch is not an object.
    """
    if not isinstance(patch, dict):
        raise _bad_request("Invalid JSON Patch")
    if not isinstance(doc, dict):
        raise _bad_request("Invalid JSON Document")
    result = doc if in_place else deep_copy(doc)
    _merge_docs(result, deep_copy(patch))
    return result


# ---------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_DELETE = "delete"
_REPLACE = "replace"
_MERGE = "merge"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
_SET_ELEMENT_ORDER = "$setElementOrder"

_ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"
_ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
_ERR_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"
_ERR_LIST_OF_LISTS = "lists of lists are not supported"


def has_strategic_meta(root_type: str | None) -> bool:
    """True when root_type is a built-in kind's root type (strategic merge allowed).

    Upstream answers 415 to a strategic merge patch on a custom resource; the server
    should do the same when this is False.
    """
    return patchmeta.is_root_type(root_type)


def _no_merge_key(m: Any, key: str) -> PatchError:
    return _internal(f"map: {_gofmt(m)} does not contain declared merge key: {key}")


def _bad_arg_type(expected: str, actual: Any) -> PatchError:
    return _internal(f"expected a {expected}, but received a {_gotype(actual)}")


def _is_directive_key(k: str) -> bool:
    return (k == _RETAIN_KEYS or k.startswith(_SET_ELEMENT_ORDER + "/")
            or k.startswith(_DELETE_FROM_PRIMITIVE_LIST + "/"))


_DROP = object()


def _remove_directives(v: Any) -> Any:
    """A value added where nothing was: nulls in maps discarded, maps carrying
    $patch dropped (upstream removeDirectives), other directive keys stripped.
    Returns _DROP when the value itself is to be dropped."""
    if isinstance(v, dict):
        if _DIRECTIVE in v:
            return _DROP
        out = {}
        for k, x in v.items():
            if x is None or _is_directive_key(k):
                continue
            x = _remove_directives(x)
            if x is not _DROP:
                out[k] = x
        return out
    if isinstance(v, list):
        return [y for y in (_remove_directives(x) for x in v) if y is not _DROP]
    return v


def _strip(v: Any) -> Any:
    """A patch value taken verbatim (appended element, replaced list or map):
    what a typed decode keeps of it -- directive keys and null members go."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items()
                if x is not None and k != _DIRECTIVE and not _is_directive_key(k)}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _jtype(v: Any) -> str:
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "list"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "string"


def _same(a: Any, b: Any) -> bool:
    """Go's == on two decoded JSON scalars (interface equality)."""
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    return _jtype(a) == _jtype(b) and a == b


def _extract_key(key: str, prefix: str) -> str:
    parts = key.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        if prefix == _DELETE_FROM_PRIMITIVE_LIST:
            raise _bad_request(_ERR_PRIMITIVE_LIST)
        raise _bad_request(_ERR_SET_ELEMENT_ORDER)
    return parts[1]


def _strategy(strategy: str | None) -> str:
    """The non-retainKeys part of a patch strategy (retainKeys only shapes the
    client's patch; the server applies $retainKeys wherever it appears)."""
    if not strategy:
        return ""
    parts = strategy.split(",")
    if len(parts) > 2 or (len(parts) == 2 and _RETAIN_KEYS[1:] not in parts):
        raise _internal(f"unexpected patch strategy: [{' '.join(parts)}]")
    rest = [p for p in parts if p != _RETAIN_KEYS[1:]]
    return rest[0] if rest else ""


def _slice_element_kind(*lists: list) -> str:
    """'map' or 'scalar'; all elements must share one type (upstream sliceElementType)."""
    first: str | None = None
    for lst in lists:
        for v in lst:
            t = _jtype(v)
            if first is None:
                if t == "list":
                    raise _unprocessable(_ERR_LIST_OF_LISTS)
                first = t
            elif t != first:
                raise _internal("list element types are not identical: "
                                + _gofmt(list(lists)))
    if first is None:
        raise _internal("no elements in any of the given slices")
    return "map" if first == "map" else "scalar"


def _index(items: list, val: Any, merge_key: str, kind: str) -> int:
    if kind == "map":
        def get(x: Any) -> Any:
            return x.get(merge_key) if isinstance(x, dict) else None
    else:
        def get(x: Any) -> Any:
            return x
    target = get(val)
    for i, v in enumerate(items):
        if _same(target, get(v)):
            return i
    return -1


def _validate_merge_key(merge_key: str, *lists: list) -> None:
    for lst in lists:
        for item in lst:
            if not isinstance(item, dict):
                raise _bad_arg_type("map[string]interface {}", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)


def _normalize_slice_order(to_sort: list, order: list, merge_key: str, kind: str) -> list:
    to_delete: list = []
    if kind == "map":
        _validate_merge_key(merge_key, to_sort, order)
        keep = [v for v in to_sort if v.get(_DIRECTIVE) != _DELETE]
        to_delete = [v for v in to_sort if v.get(_DIRECTIVE) == _DELETE]
        to_sort = keep
    # Stable sort by position in order; elements absent from it go first.
    return sorted(to_sort, key=lambda v: _index(order, v, merge_key, kind)) + to_delete


def _merge_sorted(left: list, right: list, server_order: list, merge_key: str,
                  kind: str) -> list:
    """Interleave server-only items (left) into patch items (right), keeping the
    relative order of each; a left item goes first only when both are in the
    live list and it comes earlier there."""
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(patch_items: list, server_only: list, patch_order: list,
                             server_order: list, merge_key: str, kind: str) -> list:
    patch_items = _normalize_slice_order(patch_items, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted(server_only, patch_items, server_order, merge_key, kind)


def _find_by_key(items: list, merge_key: str, value: Any) -> int:
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise _internal(f"value for key {i} is not a map.")
        if merge_key in v and _same(v[merge_key], value):
            return i
    return -1


def _partition_primitives(items: list, by: list) -> tuple[list, list]:
    inside, outside = [], []
    for v in items:
        (inside if any(_same(v, b) for b in by) else outside).append(v)
    return inside, outside


def _partition_maps(items: list, by: list, merge_key: str) -> tuple[list, list]:
    inside, outside = [], []
    for v in items:
        if not isinstance(v, dict):
            raise _bad_arg_type("map[string]interface {}", v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        (inside if _find_by_key(by, merge_key, v[merge_key]) >= 0 else outside).append(v)
    return inside, outside


def _partition(items: list, by: list, merge_key: str) -> tuple[list, list]:
    if not merge_key:
        return _partition_primitives(items, by)
    return _partition_maps(items, by, merge_key)


def _dedup_scalars(items: list) -> list:
    out: list = []
    for v in items:
        if not any(_same(v, o) for o in out):
            out.append(v)
    return out


def _merge_special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Apply $patch elements of a merge list; returns (original, remaining patch)."""
    rest: list = []
    replace = False
    for v in patch:
        if _DIRECTIVE not in v:
            rest.append(v)
            continue
        directive = v[_DIRECTIVE]
        if directive == _DELETE:
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            while (idx := _find_by_key(original, merge_key, v[merge_key])) >= 0:
                original = original[:idx] + original[idx + 1:]
        elif directive == _REPLACE:
            replace = True
        elif directive == _MERGE:
            raise _internal("merging lists cannot yet be specified in the patch")
        else:
            raise _internal(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(v)}")
    if replace:
        return [_strip(v) for v in rest], []
    return original, rest


def _merge_slice(original: list, patch: list, elem_type: str | None, merge_key: str,
                 is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _slice_element_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged = _dedup_scalars(original + patch)
    else:
        if not merge_key:
            raise _internal(f"cannot merge lists without merge key for {elem_type or 'map'}")
        original, patch = _merge_special_elements(original, patch, merge_key)
        merged = list(original)
        for v in patch:
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            idx = _find_by_key(merged, merge_key, v[merge_key])
            if idx >= 0:
                merged[idx] = _merge_map(merged[idx], v, elem_type)
            else:
                merged.append(_strip(v))
    patch_items, server_only = _partition(merged, patch, merge_key)
    return _normalize_element_order(patch_items, server_only, patch, original, merge_key, kind)


def _merge_slice_handler(original: Any, patch: Any, elem_type: str | None, strategy: str,
                         merge_key: str, is_delete_list: bool) -> list:
    if not isinstance(original, list):
        raise _bad_arg_type("[]interface {}", original)
    if not isinstance(patch, list):
        raise _bad_arg_type("[]interface {}", patch)
    if strategy == _MERGE or is_delete_list:
        return _merge_slice(original, patch, elem_type, merge_key, is_delete_list)
    return _strip(patch)


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad_request(_ERR_RETAIN_KEYS)
    keep = {k for k in retain if isinstance(k, str)}
    for k, v in patch.items():
        if v is None or k.startswith(_DELETE_FROM_PRIMITIVE_LIST) or k.startswith(
                _SET_ELEMENT_ORDER):
            continue
        if k not in keep:
            raise _bad_request(_ERR_RETAIN_KEYS)
    for k in list(original):
        if k not in keep:
            del original[k]


def _validate_set_order(patch_list: list, order: Any, merge_key: str) -> None:
    if not isinstance(order, list):
        raise _bad_request(_ERR_SET_ELEMENT_ORDER)
    if not order or not patch_list:
        return
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg_type("map[string]interface {}", v)
        items = [v for v in patch_list if v.get(_DIRECTIVE) != _DELETE]
    else:
        items = patch_list
    pi = si = 0
    while pi < len(items) and si < len(order):
        item = items[pi]
        if isinstance(item, dict) and _DIRECTIVE in item:
            pi += 1
            continue
        if merge_key:
            other = order[si]
            if not isinstance(other, dict):
                raise _bad_arg_type("map[string]interface {}", other)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            if merge_key not in other:
                raise _no_merge_key(other, merge_key)
            equal = _same(item[merge_key], other[merge_key])
        else:
            equal = _same(item, order[si])
        if equal:
            pi += 1
        si += 1
    if pi < len(items) and si >= len(order):
        raise _internal(f"the order in patch list:\n{_gofmt(patch_list)}\n doesn't match "
                        f"{_SET_ELEMENT_ORDER} list:\n{_gofmt(order)}")


def _apply_set_element_order(original: dict, patch: dict, type_name: str | None) -> None:
    for key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg_type("[]interface {}", order)
        field = _extract_key(key, _SET_ELEMENT_ORDER)
        found_original = field in original
        found_patch = field in patch
        original_list = original.get(field) if found_original else []
        patch_list = patch.get(field) if found_patch else []
        if not isinstance(original_list, list):
            raise _bad_arg_type("[]interface {}", original_list)
        if not isinstance(patch_list, list):
            raise _bad_arg_type("[]interface {}", patch_list)
        elem_type, strategy, merge_key = patchmeta.field_meta(type_name, field)
        strategy = _strategy(strategy)
        merge_key = merge_key or ""
        _validate_set_order(patch_list, order, merge_key)
        if found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, elem_type, strategy,
                                          merge_key, False)
        elif found_original:
            merged = original_list
        elif found_patch:
            merged = _remove_directives(patch_list)
        else:
            continue
        patch_items, server_only = _partition(merged, order, merge_key)
        kind = _slice_element_kind(original_list, patch_list)
        original[field] = _normalize_element_order(patch_items, server_only, order,
                                                   original_list, merge_key, kind)
        patch.pop(field, None)


def _map_directive(directive: Any, patch: dict) -> dict:
    if directive == _REPLACE:
        return _strip({k: v for k, v in patch.items() if k != _DIRECTIVE})
    if directive == _DELETE:
        return {}
    raise _internal(f"unknown patch type: {_gofmt(directive)} in map: {_gofmt(patch)}")


def _merge_map(original: dict, patch: dict, type_name: str | None) -> dict:
    if _DIRECTIVE in patch:
        return _map_directive(patch[_DIRECTIVE], patch)
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, type_name)
    for key, pv in list(patch.items()):
        field, is_delete_list = key, False
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            field, is_delete_list = _extract_key(key, _DELETE_FROM_PRIMITIVE_LIST), True
        if pv is None:
            original.pop(field, None)
            continue
        if field not in original or _jtype(original[field]) != _jtype(pv):
            if not is_delete_list:
                value = _remove_directives(pv)
                if value is _DROP:
                    original.pop(field, None)
                else:
                    original[field] = value
            continue
        ov = original[field]
        child, strategy, merge_key = patchmeta.field_meta(type_name, field)
        strategy = _strategy(strategy)
        if isinstance(ov, dict):
            original[field] = _strip(pv) if strategy == _REPLACE else _merge_map(ov, pv, child)
        elif isinstance(ov, list):
            original[field] = _merge_slice_handler(ov, pv, child, strategy, merge_key or "",
                                                   is_delete_list)
        else:
            original[field] = pv
    return original


def apply_strategic_merge_patch(doc: dict, patch: dict, root_type: str | None, *, in_place: bool = False) -> dict:
    """Apply a Kubernetes strategic merge patch to a copy of doc (to doc itself with in_place).

    root_type names the type of doc in patchmeta (see patchmeta.root_type_for);
    an unknown or None root type has no strategic metadata, so every list is
    replaced and maps merge as in a JSON merge patch (directives still apply).
    Raises PatchError with upstream's code: 400 for malformed directives, 422 for
    lists of lists, 500 (empty reason) for the rest (e.g. a missing merge key).
    """
    if not isinstance(patch, dict):
        raise _bad_request(f"json: cannot unmarshal {_json_kind(patch)} "
                           "into Go value of type map[string]interface {}")
    if not isinstance(doc, dict):
        raise _bad_request("invalid JSON document")
    return _merge_map(doc if in_place else deep_copy(doc), deep_copy(patch), root_type)
