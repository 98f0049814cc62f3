"""From a pod to the CRI requests that run it (pure; upstream's kuberuntime_sandbox.go,
kuberuntime_container.go, the QoS and cgroup naming of the container manager, and the DNS
configurer): QoS class, the pod's cgroup parent, the PodSandboxConfig and ContainerConfig (as dicts
in the protobuf's JSON form, turned into messages with json_format), and the container hash that
detects a changed container spec.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from kubelab.api.resources import resource_list
from kubelab.kubelet.hostsfile import pod_hostname

Obj = dict[str, Any]

POD_NAME, POD_NAMESPACE, POD_UID = "io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
TERMINATION_GRACE = "io.kubernetes.pod.terminationGracePeriod"
KUBELET_MANAGED = "io.kubernetes.kubelab.managed"

MIN_SHARES, SHARES_PER_CPU, QUOTA_PERIOD = 2, 1024, 100000
NS_POD, NS_CONTAINER, NS_NODE = 0, 1, 2
PROPAGATION = {"private": 0, "rslave": 1, "rshared": 2}     # CRI MountPropagation
MAX_DNS_SEARCH = 32


def qos_class(pod: Obj) -> str:
    """Guaranteed (every container limits = requests for cpu and memory), BestEffort (no requests or
    limits at all), else Burstable (upstream's GetPodQOS)."""
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = resource_list(res.get("requests")), resource_list(res.get("limits"))
        for r in ("cpu", "memory"):
            if req.get(r) or lim.get(r):
                any_set = True
            if not lim.get(r) or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_cgroup_parent(pod: Obj, cgroup_root: str = "/") -> str:
    """<root>/kubepods[/burstable|/besteffort]/pod<uid> (cgroupfs driver naming)."""
    qos = qos_class(pod)
    parts = [cgroup_root.rstrip("/"), "kubepods"]
    if qos != "Guaranteed":
        parts.append(qos.lower())
    parts.append(f"pod{pod['metadata']['uid']}")
    return "/".join(parts) if parts[0] else "/" + "/".join(parts[1:])


def host_resolv(path: Path = Path("/etc/resolv.conf")) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf."""
    servers, searches, options = [], [], []
    try:
        text = path.read_text()
    except OSError:
        return servers, searches, options
    for line in text.splitlines():
        f = line.split()
        if not f or f[0].startswith(("#", ";")):
            continue
        if f[0] == "nameserver" and len(f) > 1:
            servers.append(f[1])
        elif f[0] in ("search", "domain"):
            searches = f[1:]
        elif f[0] == "options":
            options += f[1:]
    return servers, searches, options


def dns_config(pod: Obj, cluster_dns: list[str], cluster_domain: str,
               host: tuple[list[str], list[str], list[str]]) -> Obj | None:
    """The sandbox's DNSConfig for the pod's dnsPolicy (upstream's dns.Configurer): ClusterFirst
    (Default for hostNetwork pods), ClusterFirstWithHostNet, Default (the node's resolv.conf), None
    (only dnsConfig); dnsConfig's nameservers, searches and options are merged in."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    ns = pod["metadata"].get("namespace", "default")
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        servers = list(cluster_dns)
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain] + list(host[1])
        options = ["ndots:5"]
    elif policy == "None":
        servers, searches, options = [], [], []
    else:
        servers, searches, options = list(host[0]), list(host[1]), list(host[2])
    extra = spec.get("dnsConfig") or {}
    servers += [s for s in extra.get("nameservers") or [] if s not in servers]
    searches += [s for s in extra.get("searches") or [] if s not in searches]
    opts = {o.split(":")[0]: o for o in options}
    for o in extra.get("options") or []:
        name = o.get("name", "")
        opts[name] = f"{name}:{o['value']}" if o.get("value") is not None else name
    return {"servers": servers[:3], "searches": searches[:MAX_DNS_SEARCH], "options": list(opts.values())}


def _namespace_options(spec: Obj) -> Obj:
    return {"network": NS_NODE if spec.get("hostNetwork") else NS_POD,
            "pid": NS_NODE if spec.get("hostPID") else (NS_POD if spec.get("shareProcessNamespace") else NS_CONTAINER),
            "ipc": NS_NODE if spec.get("hostIPC") else NS_POD}


def sandbox_config(pod: Obj, *, attempt: int, pod_logs_dir: Path, cgroup_root: str, cluster_dns: list[str],
                   cluster_domain: str, host_dns: tuple[list[str], list[str], list[str]]) -> Obj:
    m, spec = pod["metadata"], pod.get("spec") or {}
    labels = {**(m.get("labels") or {}), POD_NAME: m["name"], POD_NAMESPACE: m["namespace"], POD_UID: m["uid"],
              KUBELET_MANAGED: "true"}
    ports = []
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.append({"protocol": {"TCP": 0, "UDP": 1, "SCTP": 2}.get(p.get("protocol") or "TCP", 0),
                              "containerPort": p["containerPort"], "hostPort": p["hostPort"],
                              "hostIp": p.get("hostIP", "")})
    sc = spec.get("securityContext") or {}
    linux: Obj = {"cgroupParent": pod_cgroup_parent(pod, cgroup_root),
                  "securityContext": {"namespaceOptions": _namespace_options(spec)},
                  "sysctls": {s["name"]: s["value"] for s in sc.get("sysctls") or []}}
    if sc.get("runAsUser") is not None:
        linux["securityContext"]["runAsUser"] = {"value": sc["runAsUser"]}
    if sc.get("supplementalGroups"):
        linux["securityContext"]["supplementalGroups"] = list(sc["supplementalGroups"])
    hostname, _ = pod_hostname(pod, cluster_domain)
    cfg: Obj = {"metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "attempt": attempt},
                "hostname": hostname if not spec.get("hostNetwork") else "",
                "logDirectory": str(pod_logs_dir / f"{m['namespace']}_{m['name']}_{m['uid']}"),
                "portMappings": ports, "labels": labels,
                "annotations": dict(m.get("annotations") or {}), "linux": linux}
    dns = dns_config(pod, cluster_dns, cluster_domain, host_dns)
    if dns is not None:
        cfg["dnsConfig"] = dns
    return cfg


def container_hash(container: Obj) -> str:
    """A hash of the container's spec; a changed hash restarts the container (upstream HashContainer)."""
    return hashlib.sha256(json.dumps(container, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _resources(container: Obj, pod: Obj) -> Obj:
    res = container.get("resources") or {}
    req, lim = resource_list(res.get("requests")), resource_list(res.get("limits"))
    cpu_req = req.get("cpu") or lim.get("cpu") or 0
    out: Obj = {"cpuShares": max(MIN_SHARES, cpu_req * SHARES_PER_CPU // 1000) if cpu_req else MIN_SHARES}
    if lim.get("cpu"):
        out["cpuPeriod"] = QUOTA_PERIOD
        out["cpuQuota"] = max(1000, lim["cpu"] * QUOTA_PERIOD // 1000)
    if lim.get("memory"):
        out["memoryLimitInBytes"] = lim["memory"]
    return out


def _security(container: Obj, pod: Obj) -> Obj:
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    out: Obj = {"namespaceOptions": _namespace_options(pod.get("spec") or {})}
    user = csc.get("runAsUser", psc.get("runAsUser"))
    if user is not None:
        out["runAsUser"] = {"value": user}
    group = csc.get("runAsGroup", psc.get("runAsGroup"))
    if group is not None:
        out["runAsGroup"] = {"value": group}
    if psc.get("supplementalGroups"):
        out["supplementalGroups"] = list(psc["supplementalGroups"])
    if csc.get("privileged"):
        out["privileged"] = True
    if csc.get("readOnlyRootFilesystem"):
        out["readonlyRootfs"] = True
    if csc.get("allowPrivilegeEscalation") is False:
        out["noNewPrivs"] = True
    caps = csc.get("capabilities") or {}
    if caps.get("add") or caps.get("drop"):
        out["capabilities"] = {"addCapabilities": list(caps.get("add") or []),
                               "dropCapabilities": list(caps.get("drop") or [])}
    prof = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if prof == "RuntimeDefault":
        out["seccomp"] = {"profileType": 0}
    elif prof == "Localhost":
        out["seccomp"] = {"profileType": 2, "localhostRef": (csc.get("seccompProfile") or
                                                            psc.get("seccompProfile"))["localhostProfile"]}
    else:
        out["seccomp"] = {"profileType": 1}      # Unconfined, the kubelet's default
    return out


def container_config(pod: Obj, container: Obj, *, attempt: int, image_ref: str, env: Iterable[tuple[str, str]],
                     mounts: Iterable[Any] = ()) -> Obj:
    """The ContainerConfig: command and args (the image's entrypoint otherwise), working dir, env,
    mounts (objects with container_path, host_path, readonly, propagation), resources, security
    context, stdin/tty, labels and annotations the kubelet reads back, log path <name>/<attempt>.log."""
    m = pod["metadata"]
    name = container["name"]
    cfg: Obj = {"metadata": {"name": name, "attempt": attempt}, "image": {"image": image_ref},
                "command": list(container.get("command") or []), "args": list(container.get("args") or []),
                "workingDir": container.get("workingDir", ""),
                "envs": [{"key": k, "value": v} for k, v in env],
                "mounts": [{"containerPath": mt.container_path, "hostPath": mt.host_path, "readonly": mt.readonly,
                            "propagation": PROPAGATION.get(getattr(mt, "propagation", "private"), 0)} for mt in mounts],
                "labels": {POD_NAME: m["name"], POD_NAMESPACE: m["namespace"], POD_UID: m["uid"],
                           CONTAINER_NAME: name, KUBELET_MANAGED: "true"},
                "annotations": {CONTAINER_HASH: container_hash(container), RESTART_COUNT: str(attempt),
                                TERMINATION_MESSAGE_PATH: container.get("terminationMessagePath",
                                                                        "/dev/termination-log"),
                                TERMINATION_GRACE: str((pod.get("spec") or {}).get("terminationGracePeriodSeconds",
                                                                                   30))},
                "logPath": f"{name}/{attempt}.log", "stdin": bool(container.get("stdin")),
                "stdinOnce": bool(container.get("stdinOnce")), "tty": bool(container.get("tty")),
                "linux": {"resources": _resources(container, pod), "securityContext": _security(container, pod)}}
    return cfg


def image_pull_policy(container: Obj) -> str:
    p = container.get("imagePullPolicy")
    if p:
        return p
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    return "Always" if "@" not in image and (":" not in tag or tag.endswith(":latest")) else "IfNotPresent"
