"""ControllerRevision history shared by the DaemonSet and StatefulSet controllers (upstream's
pkg/controller/history and the DaemonSet controller's snapshot/Match/cleanupHistory).

A revision holds the patch that restores the owner's pod template, as upstream's getPatch:
``{"spec": {"template": {..., "$patch": "replace"}}}``, serialized as Go's encoding/json does it
(keys sorted, compact, ``<``, ``>``, ``&`` escaped). kubectl's `rollout undo` sends exactly this
patch back as a strategic merge patch.

Hashes:
- StatefulSet revisions (upstream HashControllerRevision): FNV-32 (FNV-1, not 1a) over the raw
  patch bytes, then the collision count as decimal text, rendered with SafeEncodeString. Identical
  to upstream for identical bytes; the bytes differ from upstream's only where Go's struct encoding
  adds zero-valued fields (e.g. ``"metadata":{"creationTimestamp":null}``) that our stored objects
  do not carry.
- DaemonSet revisions (upstream controller.ComputeHash): FNV-32a over the pod template, then the
  collision count as 8 bytes (uint32 little endian, zero padded). Upstream feeds the hasher a
  go-spew dump of the Go struct, which has no Python equivalent; here the template is fed as the
  canonical JSON above. Same algorithm, different input bytes: the hash values differ from a real
  cluster's for the same template.

Revision numbers start at 1 and grow by one per new template (nextRevision); a rollback to an
older template re-numbers that revision instead of creating a new one. History is pruned to
revisionHistoryLimit (default 10) old revisions, oldest first, never one still in use.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Iterable

from kubelab.controller.refmanager import make_owner_ref

Obj = dict[str, Any]

ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
CONTROLLER_REVISION_HASH_LABEL = "controller.kubernetes.io/hash"      # on StatefulSet revisions
DEFAULT_UNIQUE_LABEL = "controller-revision-hash"                   # on DaemonSet revisions and both's pods
DEFAULT_HISTORY_LIMIT = 10

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv32(data: bytes, h: int = _FNV32_OFFSET) -> int:
    """FNV-1 32-bit (Go's hash/fnv New32): multiply, then xor."""
    for b in data:
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
        h ^= b
    return h


def fnv32a(data: bytes, h: int = _FNV32_OFFSET) -> int:
    """FNV-1a 32-bit (Go's hash/fnv New32a): xor, then multiply."""
    for b in data:
        h ^= b
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode_string(s: str) -> str:
    """apimachinery's rand.SafeEncodeString: each character mapped into a vowel-free alphabet."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in s)


def go_json(obj: Any) -> bytes:
    """Bytes as Go's json.Marshal writes a map: sorted keys, no spaces, HTML characters escaped,
    non-ASCII as UTF-8."""
    s = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return s.encode()


def hash_controller_revision(raw: bytes, probe: int | None = None) -> str:
    """Upstream HashControllerRevision over a revision's Data.Raw and the collision count."""
    h = fnv32(raw)
    if probe is not None:
        h = fnv32(str(probe).encode(), h)
    return safe_encode_string(str(h))


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """Upstream controller.ComputeHash (the DaemonSet's revision hash), over canonical JSON."""
    h = fnv32a(go_json(template))
    if collision_count is not None:
        h = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0", h)
    return safe_encode_string(str(h))


def controller_revision_name(prefix: str, hash_: str) -> str:
    """prefix-hash, the prefix cut to 223 characters so the name stays within 253."""
    return f"{prefix[:223]}-{hash_}"


def template_patch(obj: Obj) -> Obj:
    """Upstream getPatch: the patch that replaces .spec.template with the owner's."""
    tmpl = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
    tmpl["$patch"] = "replace"
    return {"spec": {"template": tmpl}}


def revision_template(revision: Obj) -> Obj:
    """The pod template a revision restores."""
    tmpl = copy.deepcopy((((revision.get("data") or {}).get("spec") or {}).get("template")) or {})
    tmpl.pop("$patch", None)
    return tmpl


def apply_revision(obj: Obj, revision: Obj) -> Obj:
    """Upstream ApplyRevision: a copy of the owner with the revision's template."""
    out = copy.deepcopy(obj)
    out.setdefault("spec", {})["template"] = revision_template(revision)
    return out


def owner_reference(parent: Obj, kind: str) -> Obj:
    return make_owner_ref(parent, "apps/v1", kind)


def new_controller_revision(parent: Obj, kind: str, template_labels: dict[str, str] | None, data: Obj,
                            revision: int, collision_count: int | None) -> Obj:
    """Upstream NewControllerRevision: named parent-hash, labelled with the template's labels and
    controller.kubernetes.io/hash, owned by the parent."""
    labels = dict(template_labels or {})
    h = hash_controller_revision(go_json(data), collision_count)
    labels[CONTROLLER_REVISION_HASH_LABEL] = h
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": controller_revision_name(parent["metadata"]["name"], h),
                         "namespace": parent["metadata"].get("namespace", ""), "labels": labels,
                         "ownerReferences": [owner_reference(parent, kind)]},
            "data": data, "revision": revision}


def rename_for_collision(cr: Obj, parent_name: str, collision_count: int) -> Obj:
    """The same revision under the name (and hash label) a higher collision count gives it."""
    out = copy.deepcopy(cr)
    h = hash_controller_revision(go_json(cr.get("data")), collision_count)
    out["metadata"]["name"] = controller_revision_name(parent_name, h)
    out["metadata"].setdefault("labels", {})[CONTROLLER_REVISION_HASH_LABEL] = h
    return out


def sort_revisions(revisions: Iterable[Obj]) -> list[Obj]:
    """Ascending by revision number, stable (upstream SortControllerRevisions)."""
    return sorted(revisions, key=lambda r: int(r.get("revision") or 0))


def next_revision(revisions: list[Obj]) -> int:
    """1 for no history, else the highest revision number plus one."""
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def equal_revision(a: Obj | None, b: Obj | None) -> bool:
    """Upstream EqualRevision: same hash label (when both have one) and the same data."""
    if a is None or b is None:
        return a is b
    ha = ((a.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
    hb = ((b.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)
    if ha and hb and ha != hb:
        return False
    return a.get("data") == b.get("data")


def find_equal_revisions(revisions: list[Obj], needle: Obj) -> list[Obj]:
    return [r for r in revisions if equal_revision(r, needle)]


def matches_template(obj: Obj, revision: Obj) -> bool:
    """Upstream Match (DaemonSet): the revision's patch is the owner's current one."""
    return revision.get("data") == template_patch(obj)


def revisions_to_prune(revisions: list[Obj], live: set[str], limit: int | None) -> list[Obj]:
    """Upstream truncateHistory: of the revisions not in use (`live` names), keep the newest
    `limit` and return the rest, oldest first."""
    keep = DEFAULT_HISTORY_LIMIT if limit is None else max(0, int(limit))
    history = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
    if len(history) <= keep:
        return []
    return history[:len(history) - keep]


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"].get("uid")
    return any(r.get("controller") and r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])
