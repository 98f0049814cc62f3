"""The downward API's values, shared by downwardAPI volumes and container environment variables.

Follows upstream's pkg/fieldpath (ExtractFieldPathAsString, FormatMap: sorted `key="value"` lines with
Go's %q quoting), pkg/api/v1/resource (ExtractContainerResourceValue: CPU as ceil(milli/divisor
milli), memory and storage as ceil(value/divisor value)) and ConvertDownwardAPIFieldLabel (only
apiVersion v1). Limits left unset are filled from the node's allocatable first, as the kubelet's
defaultPodLimitsForDownwardAPI does, when the caller passes it.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

from kubelab.api.quantity import QuantityError, parse

Obj = dict[str, Any]


class FieldPathError(ValueError):
    """A field or resource reference the downward API cannot resolve (upstream's message)."""


_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


def go_quote(s: str) -> str:
    """Go's strconv.Quote: double quotes, escapes for \\, ", control and non-printable runes."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[ch])
        elif o < 0x20 or o == 0x7f:
            out.append(f"\\x{o:02x}")
        elif o < 0x80 or ch.isprintable():
            out.append(ch)
        elif 0xd800 <= o <= 0xdfff:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def format_map(m: Mapping[str, str] | None) -> str:
    """fieldpath.FormatMap: one `key="value"` line per key, keys sorted, no trailing newline."""
    return "\n".join(f"{k}={go_quote(str(v))}" for k, v in sorted((m or {}).items()))


def extract_field_path(obj: Obj, field_path: str, api_version: str | None = "v1") -> str:
    """fieldpath.ExtractFieldPathAsString over the metadata fields the downward API offers."""
    if api_version not in (None, "", "v1"):
        raise FieldPathError(f"unsupported pod version: {api_version}")
    meta = obj.get("metadata") or {}
    m = _SUBSCRIPT.match(field_path)
    if m:
        return str((meta.get(m.group(1).split(".")[1]) or {}).get(m.group(2), ""))
    if field_path == "metadata.annotations":
        return format_map(meta.get("annotations"))
    if field_path == "metadata.labels":
        return format_map(meta.get("labels"))
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(meta.get(field_path.split(".")[1]) or "")
    raise FieldPathError(f"unsupported fieldPath: {field_path}")


RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage",
             "requests.cpu", "requests.memory", "requests.ephemeral-storage")


def _quantity(v: Any, what: str):
    try:
        return parse(str(v))
    except QuantityError as e:
        raise FieldPathError(f"invalid {what} {v!r}: {e}") from None


def container_resource_value(ref: Obj, container: Obj, allocatable: Mapping[str, Any] | None = None) -> str:
    """resource.ExtractContainerResourceValue for a resourceFieldRef on `container`; with
    `allocatable`, unset limits default to it (the kubelet's defaultPodLimitsForDownwardAPI)."""
    resource = ref.get("resource") or ""
    divisor_raw = ref.get("divisor")
    divisor = _quantity(divisor_raw, "divisor") if divisor_raw not in (None, "", "0", 0) else None
    if divisor is not None and divisor.value == 0:
        divisor = None
    res = container.get("resources") or {}
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise FieldPathError(f"unsupported container resource : {resource}")
    if name not in ("cpu", "memory", "ephemeral-storage") and not name.startswith("hugepages-"):
        raise FieldPathError(f"unsupported container resource : {resource}")
    values = dict(res.get(kind) or {})
    if kind == "limits" and allocatable:
        for k, v in allocatable.items():
            values.setdefault(k, v)
    q = _quantity(values.get(name, "0"), resource)
    if name == "cpu":
        d = divisor.milli_value() if divisor else 1000
        return str(math.ceil(q.milli_value() / d))
    d = divisor.int_value() if divisor else 1
    return str(math.ceil(q.int_value() / d))


def find_container(pod: Obj, name: str) -> Obj:
    """The container (app or init) of `pod` called `name` (resource.findContainerInPod)."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == name:
            return c
    raise FieldPathError(f"container {name} not found")
