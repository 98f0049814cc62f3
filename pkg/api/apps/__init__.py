"""apps/v1 kinds: Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision."""
from __future__ import annotations

from .. import validation as v
from ..core import pods
from ..registry import Kind, ScaleSpec
from ..selectors import SelectorError, label_selector_from_api


def default_template(obj: dict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    tpl = spec.get("template")
    if isinstance(tpl, dict):
        ps = tpl.setdefault("spec", {})
        if isinstance(ps, dict):
            pods.default_pod_spec(ps)


def _default_deployment(d: dict) -> None:
    spec = d.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_template(d)


def _default_replicaset(rs: dict) -> None:
    spec = rs.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
    default_template(rs)


def _default_daemonset(ds: dict) -> None:
    spec = ds.setdefault("spec", {})
    if isinstance(spec, dict):
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
    default_template(ds)


def _default_statefulset(ss: dict) -> None:
    spec = ss.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {})
        us.setdefault("type", "RollingUpdate")
        if us["type"] == "RollingUpdate":
            us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy",
                        {"whenDeleted": "Retain", "whenScaled": "Retain"})
    default_template(ss)


def validate_selector_and_template(obj: dict, *, template_required: bool = True) -> list:
    errs: list = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [v.required("spec", "")]
    sel = spec.get("selector")
    selector = None
    if sel is None:
        errs.append(v.required("spec.selector", ""))
    else:
        try:
            selector = label_selector_from_api(sel)
        except SelectorError as e:
            errs.append(v.invalid("spec.selector", sel, str(e)))
        if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
            errs.append(v.invalid("spec.selector", sel, "empty selector is invalid for deployment"))
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        if template_required:
            errs.append(v.required("spec.template", ""))
        return errs
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    if selector is not None and not selector.empty and not selector.matches(labels):
        errs.append(v.invalid("spec.template.metadata.labels", labels,
                              "`selector` does not match template `labels`"))
    errs += pods.validate_pod_spec(tpl.get("spec"), "spec.template.spec")
    for name in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        val = spec.get(name)
        if val is not None and (not isinstance(val, int) or val < 0):
            errs.append(v.invalid(f"spec.{name}", val, "must be greater than or equal to 0"))
    return errs


def _validate_deployment(d: dict) -> list:
    errs = validate_selector_and_template(d)
    spec = d.get("spec") or {}
    st = (spec.get("strategy") or {}).get("type")
    if st is not None and st not in ("Recreate", "RollingUpdate"):
        errs.append(v.not_supported("spec.strategy.type", st, ["Recreate", "RollingUpdate"]))
    if st == "Recreate" and (spec.get("strategy") or {}).get("rollingUpdate"):
        errs.append(v.forbidden("spec.strategy.rollingUpdate",
                                "may not be specified when strategy `type` is 'Recreate'"))
    tpl = spec.get("template") or {}
    rp = ((tpl.get("spec") or {}).get("restartPolicy"))
    if rp is not None and rp != "Always":
        errs.append(v.not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    return errs


def _selector_immutable(kind_name: str):
    def check(new: dict, old: dict) -> list:
        validate = VALIDATORS[kind_name]
        errs = validate(new)
        if (new.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
            errs.append(v.invalid("spec.selector", (new.get("spec") or {}).get("selector"), "field is immutable"))
        return errs
    return check


def _validate_rs(rs: dict) -> list:
    return validate_selector_and_template(rs)


def _validate_statefulset(ss: dict) -> list:
    return validate_selector_and_template(ss)


def _validate_daemonset(ds: dict) -> list:
    return validate_selector_and_template(ds)


def _validate_ss_update(new: dict, old: dict) -> list:
    errs = _validate_statefulset(new)
    allowed = ("replicas", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
               "minReadySeconds", "ordinals", "revisionHistoryLimit")
    ns = {k: val for k, val in (new.get("spec") or {}).items() if k not in allowed}
    os_ = {k: val for k, val in (old.get("spec") or {}).items() if k not in allowed}
    if ns != os_:
        errs.append(v.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                "'template', 'updateStrategy', 'revisionHistoryLimit', "
                                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errs


VALIDATORS = {"Deployment": _validate_deployment, "ReplicaSet": _validate_rs, "DaemonSet": _validate_daemonset}

KINDS = [
    Kind("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=("all",),
         subresources=("status", "scale"), scale=ScaleSpec(label_selector="spec.selector"),
         defaults=_default_deployment, validate=_validate_deployment,
         validate_update=_selector_immutable("Deployment")),
    Kind("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
         subresources=("status", "scale"), scale=ScaleSpec(label_selector="spec.selector"),
         defaults=_default_replicaset, validate=_validate_rs, validate_update=_selector_immutable("ReplicaSet")),
    Kind("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",),
         subresources=("status",), defaults=_default_daemonset, validate=_validate_daemonset,
         validate_update=_selector_immutable("DaemonSet")),
    Kind("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=("all",),
         subresources=("status", "scale"), scale=ScaleSpec(label_selector="spec.selector"),
         defaults=_default_statefulset, validate=_validate_statefulset, validate_update=_validate_ss_update),
    Kind("apps", "v1", "ControllerRevision", "controllerrevisions", generation=False),
]
