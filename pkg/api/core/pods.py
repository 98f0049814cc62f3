"""Pod and pod-template knowledge: defaults, validation, status on create, QoS class."""
from __future__ import annotations

from ..quantity import QuantityError, parse_quantity
from .. import validation as v
from ..registry import field_getter

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _image_has_tag_or_digest(image: str) -> bool:
    if "@" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last


def default_container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = c.get("image") or ""
        latest = not _image_has_tag_or_digest(image) or image.endswith(":latest")
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            pr.setdefault("timeoutSeconds", 1)
            pr.setdefault("periodSeconds", 10)
            pr.setdefault("successThreshold", 1)
            pr.setdefault("failureThreshold", 3)
            if isinstance(pr.get("httpGet"), dict):
                pr["httpGet"].setdefault("path", "/")
                pr["httpGet"].setdefault("scheme", "HTTP")
    res = c.get("resources")
    if isinstance(res, dict) and isinstance(res.get("limits"), dict):
        # requests default to limits for the resources only limits name
        req = res.setdefault("requests", {})
        if isinstance(req, dict):
            for name, q in res["limits"].items():
                req.setdefault(name, q)


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if "serviceAccountName" in spec:
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                default_container(c)
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and len(vol) == 1 and "name" in vol:
            vol["emptyDir"] = {}
        for src in ("configMap", "secret"):
            if isinstance(vol, dict) and isinstance(vol.get(src), dict):
                vol[src].setdefault("defaultMode", 420)


def default_pod(pod: dict) -> None:
    spec = pod.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)


def qos_class(spec: dict) -> str:
    """Guaranteed, Burstable or BestEffort, as upstream computes it from cpu and memory."""
    requests: dict[str, object] = {}
    limits: dict[str, object] = {}
    guaranteed = True
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for c in containers:
        res = c.get("resources") or {}
        req = {k: q for k, q in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: q for k, q in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        for k, q in req.items():
            if _nonzero(q):
                requests[k] = q
        for k, q in lim.items():
            if _nonzero(q):
                limits[k] = q
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k in ("cpu", "memory"):
            if k in req and k in lim and _q(req[k]) != _q(lim[k]):
                guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        return "Guaranteed"
    return "Burstable"


def _q(s) -> object:
    try:
        return parse_quantity(str(s))
    except QuantityError:
        return s


def _nonzero(s) -> bool:
    q = _q(s)
    return q != 0 if not isinstance(q, str) else True


def prepare_pod_create(pod: dict) -> None:
    """A new pod's status is Pending with its QoS class; nothing a client sent survives."""
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod.get("spec") or {})}


def validate_container(c: dict, path: str, names: set, errs: list, host_ports: set | None = None) -> None:
    """Upstream's container checks; host_ports collects (hostPort, protocol, hostIP) across the pod."""
    if host_ports is None:
        host_ports = set()
    if not isinstance(c, dict):
        errs.append(v.invalid(path, c, "must be an object"))
        return
    name = c.get("name")
    if not name:
        errs.append(v.required(f"{path}.name", ""))
    else:
        for msg in v.is_dns1123_label(name):
            errs.append(v.invalid(f"{path}.name", name, msg))
        if name in names:
            errs.append(v.duplicate(f"{path}.name", name))
        names.add(name)
    if not c.get("image"):
        errs.append(v.required(f"{path}.image", ""))
    pp = c.get("imagePullPolicy")
    if pp is not None and pp not in PULL_POLICIES:
        errs.append(v.not_supported(f"{path}.imagePullPolicy", pp, PULL_POLICIES))
    port_names: set = set()
    for i, p in enumerate(c.get("ports") or []):
        pp_path = f"{path}.ports[{i}]"
        if not isinstance(p, dict):
            errs.append(v.invalid(pp_path, p, "must be an object"))
            continue
        cp = p.get("containerPort")
        if cp is None:
            errs.append(v.required(f"{pp_path}.containerPort", ""))
        else:
            for msg in v.is_valid_port_num(cp):
                errs.append(v.invalid(f"{pp_path}.containerPort", cp, msg))
        proto = p.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            errs.append(v.not_supported(f"{pp_path}.protocol", proto, PROTOCOLS))
        if p.get("name"):
            for msg in v.is_valid_port_name(p["name"]):
                errs.append(v.invalid(f"{pp_path}.name", p["name"], msg))
            if p["name"] in port_names:
                errs.append(v.duplicate(f"{pp_path}.name", p["name"]))
            port_names.add(p["name"])
        if "hostPort" in p and p["hostPort"] not in (None, 0):
            for msg in v.is_valid_port_num(p["hostPort"]):
                errs.append(v.invalid(f"{pp_path}.hostPort", p["hostPort"], msg))
            hp = (p["hostPort"], proto, p.get("hostIP") or "")
            if hp in host_ports:
                errs.append(v.duplicate(f"{pp_path}.hostPort", f"{p['hostPort']}/{proto}"))
            host_ports.add(hp)
    for i, e in enumerate(c.get("env") or []):
        ep = f"{path}.env[{i}]"
        if not isinstance(e, dict) or not e.get("name"):
            errs.append(v.required(f"{ep}.name", ""))
            continue
        for msg in v.is_env_var_name(e["name"]):
            errs.append(v.invalid(f"{ep}.name", e["name"], msg))
    res = c.get("resources") or {}
    for part in ("limits", "requests"):
        for rname, q in (res.get(part) or {}).items():
            try:
                val = parse_quantity(str(q))
            except QuantityError as ex:
                errs.append(v.invalid(f"{path}.resources.{part}[{rname}]", q, str(ex)))
                continue
            if val < 0:
                errs.append(v.invalid(f"{path}.resources.{part}[{rname}]", q,
                                      "must be greater than or equal to 0"))
    lim = res.get("limits") or {}
    req = res.get("requests") or {}
    for rname, q in req.items():
        if rname in lim:
            try:
                if parse_quantity(str(q)) > parse_quantity(str(lim[rname])):
                    errs.append(v.invalid(f"{path}.resources.requests", q,
                                          f"must be less than or equal to {rname} limit of {lim[rname]}"))
            except QuantityError:
                pass
    mounts = set()
    for i, m in enumerate(c.get("volumeMounts") or []):
        mp = f"{path}.volumeMounts[{i}]"
        if not isinstance(m, dict):
            continue
        if not m.get("name"):
            errs.append(v.required(f"{mp}.name", ""))
        if not m.get("mountPath"):
            errs.append(v.required(f"{mp}.mountPath", ""))
        elif m["mountPath"] in mounts:
            errs.append(v.invalid(f"{mp}.mountPath", m["mountPath"], "must be unique"))
        mounts.add(m.get("mountPath"))


def validate_pod_spec(spec, path: str) -> list:
    errs: list = []
    if not isinstance(spec, dict):
        return [v.required(path, "")]
    containers = spec.get("containers")
    if not containers:
        errs.append(v.required(f"{path}.containers", ""))
    names: set = set()
    host_ports: set = set()
    for i, c in enumerate(spec.get("initContainers") or []):
        validate_container(c, f"{path}.initContainers[{i}]", names, errs)
    for i, c in enumerate(containers or []):
        validate_container(c, f"{path}.containers[{i}]", names, errs, host_ports)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        errs.append(v.not_supported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if dp is not None and dp not in DNS_POLICIES:
        errs.append(v.not_supported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    vols = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        vp = f"{path}.volumes[{i}]"
        if not isinstance(vol, dict) or not vol.get("name"):
            errs.append(v.required(f"{vp}.name", ""))
            continue
        for msg in v.is_dns1123_label(vol["name"]):
            errs.append(v.invalid(f"{vp}.name", vol["name"], msg))
        if vol["name"] in vols:
            errs.append(v.duplicate(f"{vp}.name", vol["name"]))
        vols.add(vol["name"])
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            for j, m in enumerate((c.get("volumeMounts") if isinstance(c, dict) else None) or []):
                if isinstance(m, dict) and m.get("name") and m["name"] not in vols:
                    errs.append(v.not_found(f"{path}.{key}[{i}].volumeMounts[{j}].name", m["name"]))
    tg = spec.get("terminationGracePeriodSeconds")
    if tg is not None and (not isinstance(tg, int) or tg < 0):
        errs.append(v.invalid(f"{path}.terminationGracePeriodSeconds", tg, "must be greater than or equal to 0"))
    return errs


def validate_pod(pod: dict) -> list:
    return validate_pod_spec(pod.get("spec"), "spec")


def validate_pod_update(new: dict, old: dict) -> list:
    """Pod updates may change only images, activeDeadlineSeconds, tolerations (additions) and a few more."""
    errs = validate_pod(new)
    ns, os_ = dict(new.get("spec") or {}), dict(old.get("spec") or {})

    def strip(spec: dict) -> dict:
        spec = dict(spec)
        for key in ("containers", "initContainers"):
            spec[key] = [{**c, "image": None} for c in spec.get(key) or [] if isinstance(c, dict)]
        spec.pop("activeDeadlineSeconds", None)
        spec.pop("tolerations", None)
        spec.pop("terminationGracePeriodSeconds", None)
        spec.pop("schedulingGates", None)
        return spec

    if strip(ns) != strip(os_):
        errs.append(v.forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,"
                                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                                "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                                "(allow it to be set to 1 if it was previously negative)"))
    return errs


def pod_field_selectors() -> dict:
    g = field_getter
    return {
        "spec.nodeName": g("spec", "nodeName"),
        "spec.restartPolicy": g("spec", "restartPolicy"),
        "spec.schedulerName": g("spec", "schedulerName"),
        "spec.serviceAccountName": g("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: "true" if (o.get("spec") or {}).get("hostNetwork") else "false",
        "status.phase": g("status", "phase"),
        "status.podIP": g("status", "podIP"),
        "status.nominatedNodeName": g("status", "nominatedNodeName"),
    }
