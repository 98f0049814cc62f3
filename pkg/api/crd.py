"""CustomResourceDefinitions: validation of the CRD itself, and the Kinds it adds to the registry."""
from __future__ import annotations

from typing import Callable

from . import structural
from . import validation as v
from .registry import Kind, ScaleSpec

SCOPES = ["Cluster", "Namespaced"]


def validate_crd(crd: dict) -> list:
    errs: list = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec", "")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    if not group:
        errs.append(v.required("spec.group", ""))
    elif "." not in group:
        errs.append(v.invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        errs.append(v.required("spec.names.plural", ""))
    if not names.get("kind"):
        errs.append(v.required("spec.names.kind", ""))
    name = (crd.get("metadata") or {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        errs.append(v.invalid("metadata.name", name, "must be spec.names.plural+\".\"+spec.group"))
    for f in ("plural", "singular"):
        val = names.get(f)
        if val:
            for msg in v.is_dns1035_label(val):
                errs.append(v.invalid(f"spec.names.{f}", val, msg))
    scope = spec.get("scope")
    if scope not in SCOPES:
        errs.append(v.not_supported("spec.scope", scope or "", SCOPES) if scope else v.required("spec.scope", ""))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(v.required("spec.versions", "must have exactly one version marked as storage version"))
    storage = [ver for ver in versions if isinstance(ver, dict) and ver.get("storage")]
    if versions and len(storage) != 1:
        errs.append(v.invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    seen = set()
    for i, ver in enumerate(versions):
        if not isinstance(ver, dict):
            errs.append(v.invalid(f"spec.versions[{i}]", ver, "must be an object"))
            continue
        vn = ver.get("name") or ""
        if not vn:
            errs.append(v.required(f"spec.versions[{i}].name", ""))
        elif vn in seen:
            errs.append(v.invalid("spec.versions", versions, "must contain unique version names"))
        seen.add(vn)
        for msg in (v.is_dns1035_label(vn) if vn else []):
            errs.append(v.invalid(f"spec.versions[{i}].name", vn, msg))
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errs.append(v.required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
        else:
            for msg in structural.structural_errors(schema, f"spec.versions[{i}].schema.openAPIV3Schema"):
                field, _, detail = msg.partition(": ")
                errs.append(v.forbidden(field, detail) if "Forbidden" in detail else v.required(field, ""))
        sub = ver.get("subresources") or {}
        sc = sub.get("scale")
        if isinstance(sc, dict):
            for f in ("specReplicasPath", "statusReplicasPath"):
                if not sc.get(f):
                    errs.append(v.required(f"spec.versions[{i}].subresources.scale.{f}", ""))
    return errs


def validate_crd_update(new: dict, old: dict) -> list:
    errs = validate_crd(new)
    for f in ("group", "scope"):
        if (new.get("spec") or {}).get(f) != (old.get("spec") or {}).get(f):
            errs.append(v.invalid(f"spec.{f}", (new.get("spec") or {}).get(f), "field is immutable"))
    return errs


def _strip_dot(path: str) -> str:
    return path[1:] if path.startswith(".") else path


def _cr_validator(schema: dict, kind: str) -> Callable[[dict], list]:
    def check(obj: dict) -> list:
        body = {k: val for k, val in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        sch = {**schema, "properties": {k: s for k, s in (schema.get("properties") or {}).items()
                                        if k not in ("apiVersion", "kind", "metadata")}}
        sch.pop("required", None)
        errs = structural.validate(sch, body)
        for r in schema.get("required") or []:
            if r not in obj:
                errs.append(v.required(r, ""))
        return errs
    return check


def kinds_for_crd(crd: dict) -> list[Kind]:
    """One Kind per served version of an established CRD."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec["group"]
    out = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        schema = (ver.get("schema") or {}).get("openAPIV3Schema") or {}
        sub = ver.get("subresources") or {}
        subs = []
        scale = None
        if "status" in sub:
            subs.append("status")
        if isinstance(sub.get("scale"), dict):
            subs.append("scale")
            sc = sub["scale"]
            scale = ScaleSpec(spec_replicas=_strip_dot(sc["specReplicasPath"]),
                              status_replicas=_strip_dot(sc["statusReplicasPath"]),
                              label_selector=_strip_dot(sc.get("labelSelectorPath") or ".status.__none__"))

        def defaults(obj: dict, schema=schema) -> None:
            structural.apply_defaults(schema, obj)

        def prune(obj: dict, schema=schema) -> tuple[dict, list[str]]:
            unknown: list[str] = []
            return structural.prune(schema, obj, "", unknown), unknown

        k = Kind(group, ver["name"], names["kind"], names["plural"],
                 namespaced=spec.get("scope") == "Namespaced", singular=names.get("singular") or "",
                 short_names=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
                 subresources=tuple(subs), defaults=defaults, validate=_cr_validator(schema, names["kind"]),
                 scale=scale, storage=f"{group}/{names['plural']}", crd={**ver, "_crd": crd}, prune=prune,
                 generation=True, description=(schema.get("description") or ""))
        out.append(k)
    return out


def established_status(crd: dict, now: str) -> dict:
    """The status the apiserver gives a CRD it serves: names accepted, established, stored versions."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    stored = [ver["name"] for ver in spec.get("versions") or [] if ver.get("storage")]
    old = crd.get("status") or {}
    stored_versions = list(dict.fromkeys((old.get("storedVersions") or []) + stored))
    conds = []
    for t, reason, msg in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                           ("Established", "InitialNamesAccepted", "the initial names have been accepted")):
        prev = next((c for c in old.get("conditions") or [] if c.get("type") == t), None)
        ltt = prev["lastTransitionTime"] if prev and prev.get("status") == "True" else now
        conds.append({"type": t, "status": "True", "lastTransitionTime": ltt, "reason": reason, "message": msg})
    return {"conditions": conds, "acceptedNames": names, "storedVersions": stored_versions}
