"""Admission: the mutating and validating plugins of the request chain, and Service allocation.

Built in: NamespaceLifecycle (in the handler's namespace check), DefaultTolerationSeconds,
ServiceAccount (upstream's plugin/pkg/admission/serviceaccount: the default service account, the
kube-api-access-<random> projected volume, image pull secrets), Priority, Service ClusterIP/NodePort
allocation, ResourceQuota, and the PodDisruptionBudgets of the eviction subresource. RBAC and the
rest of upstream's plugins plug in here later. --enable-admission-plugins and
--disable-admission-plugins choose among upstream's plugin names (`plugins_from_flags`).
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable

from ..api import quota
from ..api import validation as v
from ..api.registry import Kind
from ..api.selectors import SelectorError, label_selector_from_api
from ..api.taints import TAINT_NOT_READY, TAINT_UNREACHABLE
from ..storage.cacher import Cacher
from ..storage.errors import NotFound
from . import status
from .allocators import AllocationError, NodePortAllocator, ServiceIPAllocator, owner_of, service_ports_of
from .objects import generate_name

log = logging.getLogger(__name__)

Release = Callable[[], Awaitable[None]]

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")

# upstream's plugin names (kube-apiserver --help); the ones this apiserver implements, and its defaults
KNOWN_PLUGINS = frozenset((
    "AlwaysAdmit", "AlwaysDeny", "AlwaysPullImages", "CertificateApproval", "CertificateSigning",
    "CertificateSubjectRestriction", "ClusterTrustBundleAttest", "DefaultIngressClass", "DefaultStorageClass",
    "DefaultTolerationSeconds", "DenyServiceExternalIPs", "EventRateLimit", "ExtendedResourceToleration",
    "ImagePolicyWebhook", "LimitPodHardAntiAffinityTopology", "LimitRanger", "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook", "NamespaceAutoProvision", "NamespaceExists", "NamespaceLifecycle",
    "NodeRestriction", "OwnerReferencesPermissionEnforcement", "PersistentVolumeClaimResize",
    "PodNodeSelector", "PodSecurity", "PodTolerationRestriction", "PodTopologyLabels", "Priority",
    "ResourceQuota", "RuntimeClass", "ServiceAccount", "StorageObjectInUseProtection", "TaintNodesByCondition",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook"))
IMPLEMENTED_PLUGINS = frozenset(("NamespaceLifecycle", "ServiceAccount", "Priority", "DefaultTolerationSeconds",
                                 "ResourceQuota"))
DEFAULT_PLUGINS = frozenset(("NamespaceLifecycle", "LimitRanger", "ServiceAccount", "TaintNodesByCondition",
                             "PodSecurity", "Priority", "DefaultTolerationSeconds", "DefaultStorageClass",
                             "StorageObjectInUseProtection", "PersistentVolumeClaimResize", "RuntimeClass",
                             "CertificateApproval", "CertificateSigning", "ClusterTrustBundleAttest",
                             "CertificateSubjectRestriction", "DefaultIngressClass", "PodTopologyLabels",
                             "MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy",
                             "ValidatingAdmissionWebhook", "ResourceQuota"))

# the ServiceAccount plugin's constants
DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def plugins_from_flags(enable: list[str], disable: list[str]) -> frozenset[str]:
    """The plugins that run: upstream's defaults plus --enable-admission-plugins less
    --disable-admission-plugins; ValueError with upstream's message for unknown or overlapping names."""
    for flag, names in (("enable-admission-plugins", enable), ("disable-admission-plugins", disable)):
        for n in names:
            if n not in KNOWN_PLUGINS:
                raise ValueError(f"{flag} plugin {n!r} is unknown".replace("'", '"'))
    both = sorted(set(enable) & set(disable))
    if both:
        raise ValueError(f"{both} in enable-admission-plugins and disable-admission-plugins overlapped"
                         .replace("'", ""))
    return frozenset((DEFAULT_PLUGINS | set(enable)) - set(disable))


def token_volume_source() -> dict:
    """Upstream's TokenVolumeSource: the service account token, the cluster CA and the namespace."""
    return {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}


def should_automount(sa: dict, pod: dict) -> bool:
    """The pod's automountServiceAccountToken, else the service account's, else true."""
    p = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if p is not None:
        return bool(p)
    s = sa.get("automountServiceAccountToken")
    return True if s is None else bool(s)


def mount_service_account_token(pod: dict) -> None:
    """Upstream's mountServiceAccountToken: every container and init container without a mount at
    the token path mounts the kube-api-access-<random> volume (reusing one the pod has) read-only
    there; the volume is added when one was mounted."""
    spec = pod["spec"]
    volumes = spec.get("volumes") or []
    existing = next((vol.get("name") for vol in volumes if isinstance(vol, dict)
                     and str(vol.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)), None)
    name = existing or generate_name(TOKEN_VOLUME_PREFIX)
    needs = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts") or []
            if any(isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = list(mounts) + [{"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}]
            needs = True
    if existing is None and needs:
        spec["volumes"] = list(volumes) + [{"name": name, "projected": token_volume_source()}]


async def _noop() -> None:
    return None


class Admission:
    def __init__(self, cacher: Cacher, service_ips: ServiceIPAllocator, node_ports: NodePortAllocator,
                 default_toleration_seconds: int = 300, store: Any = None,
                 plugins: frozenset[str] | None = None) -> None:
        self.plugins = DEFAULT_PLUGINS if plugins is None else plugins
        self.cacher = cacher
        self.store = store
        self.service_ips = service_ips
        self.node_ports = node_ports
        self.default_toleration_seconds = default_toleration_seconds

    async def mutate(self, request, k: Kind, obj: dict, old: dict | None, op: str) -> None:
        if k.group == "certificates.k8s.io" and k.plural == "certificatesigningrequests" and op == "CREATE":
            # the requester is whoever sent it, never what the body claims (as upstream's strategy)
            user = (request.get("user") if request is not None else None) or {}
            spec = obj.setdefault("spec", {})
            for f in ("username", "uid", "groups", "extra"):
                spec.pop(f, None)
            if user.get("username"):
                spec["username"] = user["username"]
            if user.get("uid"):
                spec["uid"] = user["uid"]
            if user.get("groups"):
                spec["groups"] = list(user["groups"])
        if k.group == "" and k.plural == "pods" and op == "CREATE":
            spec = obj.setdefault("spec", {})
            if "ServiceAccount" in self.plugins:
                await self._service_account(obj)
            if "Priority" in self.plugins:
                self._priority(obj)
            if "DefaultTolerationSeconds" in self.plugins:
                tols = spec.setdefault("tolerations", [])
                for key in (TAINT_NOT_READY, TAINT_UNREACHABLE):
                    if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "") or
                               (t.get("operator") == "Exists" and not t.get("key")) for t in tols):
                        tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                     "tolerationSeconds": self.default_toleration_seconds})

    async def _service_account(self, pod: dict) -> None:
        """The ServiceAccount admission plugin on pod creation."""
        spec = pod["spec"]
        name = pod["metadata"].get("name") or pod["metadata"].get("generateName") or "Unknown"
        if MIRROR_ANNOTATION in (pod["metadata"].get("annotations") or {}):
            if spec.get("serviceAccountName"):
                raise status.forbidden("", "pods", name, "a mirror pod may not reference service accounts")
            return
        if not spec.get("serviceAccountName"):
            # the deprecated serviceAccount stands in for it, as v1's conversion does
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
        spec["serviceAccount"] = spec["serviceAccountName"]
        ns = pod["metadata"].get("namespace", "")
        sa = await self._get_service_account(ns, spec["serviceAccountName"])
        if sa is None:
            sa_name = spec["serviceAccountName"]
            raise status.forbidden("", "pods", name, f"error looking up service account {ns}/{sa_name}: "
                                                     f'serviceaccount "{sa_name}" not found')
        if should_automount(sa, pod):
            mount_service_account_token(pod)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]
                                        if isinstance(s, dict)]

    async def _get_service_account(self, namespace: str, name: str) -> dict | None:
        """From the watch cache, else live: the default account is tried 10 times 100-200 ms apart,
        since the serviceaccount controller creates it right after the namespace (as upstream)."""
        key = f"/registry/serviceaccounts/{namespace}/{name}"
        sa = self.cacher.get("/registry/serviceaccounts/", key)
        if sa is not None or self.store is None:
            return sa
        attempts = 10 if name == DEFAULT_SERVICE_ACCOUNT else 1
        interval = random.uniform(0.1, 0.2)
        for i in range(attempts):
            if i:
                await asyncio.sleep(interval)
            try:
                return await self.store.get(key)
            except NotFound:
                continue
        return None

    def _priority(self, pod: dict) -> None:
        """The Priority admission plugin: spec.priority and preemptionPolicy from the pod's
        PriorityClass (or the global default class; else priority 0)."""
        spec = pod["spec"]
        name = spec.get("priorityClassName") or ""
        classes, _ = self.cacher.list("/registry/priorityclasses/", "/registry/priorityclasses/")
        pc = None
        if name:
            pc = next((c for c in classes if c["metadata"]["name"] == name), None)
            if pc is None:
                raise status.forbidden("", "pods", pod["metadata"].get("name", ""),
                                       f"no PriorityClass with name {name} was found")
        else:
            defaults = sorted((c for c in classes if c.get("globalDefault")), key=lambda c: c.get("value", 0))
            if defaults:
                pc = defaults[0]
                spec["priorityClassName"] = pc["metadata"]["name"]
        value = int(pc.get("value", 0)) if pc else 0
        if spec.get("priority") is not None and spec["priority"] != value:
            raise status.forbidden("", "pods", pod["metadata"].get("name", ""),
                                   f"the integer value of priority ({spec['priority']}) must not be provided in pod "
                                   f"spec; priority admission controller computed {value} from the given "
                                   f"PriorityClass name")
        spec["priority"] = value
        policy = (pc.get("preemptionPolicy") if pc else None) or "PreemptLowerPriority"
        if spec.get("preemptionPolicy") and spec["preemptionPolicy"] != policy:
            raise status.forbidden("", "pods", pod["metadata"].get("name", ""),
                                   f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be "
                                   f"provided in pod spec; priority admission controller computed {policy} from "
                                   f"the given PriorityClass name")
        spec["preemptionPolicy"] = policy

    async def validate(self, request, k: Kind, obj: dict, old: dict | None, op: str) -> None:
        if op == "CREATE" and k.namespaced and self.store is not None and "ResourceQuota" in self.plugins:
            await self.charge_quota(k, obj, dry=bool(request is not None and request.query.get("dryRun")))

    # --- ResourceQuota -----------------------------------------------------------------------

    async def charge_quota(self, k: Kind, obj: dict, dry: bool = False) -> None:
        """The ResourceQuota admission plugin: every quota of the namespace the object falls under
        must admit its usage; then the usage is added to each quota's status.used in a guaranteed
        update that checks again, so concurrent creations never overshoot (the controller's
        recount corrects what a failed creation leaves charged)."""
        ns = obj["metadata"].get("namespace")
        quotas, _ = self.cacher.list("/registry/resourcequotas/", f"/registry/resourcequotas/{ns}/")
        if not quotas:
            return
        name = obj["metadata"].get("name", "")
        use = quota.usage(k.plural, k.group, obj)
        charges = []
        for q in quotas:
            if not quota.quota_matches(q, k.plural, k.group, obj):
                continue
            hard = (q.get("spec") or {}).get("hard") or {}
            delta = {r: n for r, n in use.items() if r in hard}
            if k.group == "" and k.plural == "pods":
                missing = quota.missing_limits(q, obj)
                if missing:
                    raise status.forbidden(k.group, k.plural, name,
                                           f"failed quota: {q['metadata']['name']}: must specify {missing}")
            if not delta:
                continue
            unknown = sorted(r for r in delta if r not in ((q.get("status") or {}).get("hard") or {}))
            if unknown:
                raise status.forbidden(k.group, k.plural, name, f"status unknown for quota: {q['metadata']['name']}, "
                                                                f"resources: {','.join(unknown)}")
            why = quota.exceeded(q, delta)
            if why:
                raise status.forbidden(k.group, k.plural, name, why)
            charges.append((q, delta))
        if dry:
            return
        for q, delta in charges:
            def fn(cur: dict, delta=delta) -> dict:
                why = quota.exceeded(cur, delta)
                if why:
                    raise status.forbidden(k.group, k.plural, name, why)
                used = quota.used(cur)
                for r, n in delta.items():
                    used[r] = used.get(r, 0) + n
                st = dict(cur.get("status") or {})
                st["used"] = {**(st.get("used") or {}), **quota.rendered({r: used[r] for r in delta})}
                return dict(cur, status=st)
            try:
                await self.store.guaranteed_update(f"/registry/resourcequotas/{ns}/{q['metadata']['name']}", fn)
            except NotFound:
                continue

    def validate_delete(self, k: Kind, name: str) -> None:
        """NamespaceLifecycle: the system namespaces may not be deleted."""
        if k.group == "" and k.plural == "namespaces" and name in IMMORTAL_NAMESPACES and \
                "NamespaceLifecycle" in self.plugins:
            raise status.forbidden("", "namespaces", name, "this namespace may not be deleted")

    # --- Service allocation ----------------------------------------------------------------

    async def allocate(self, k: Kind, svc: dict, old: dict | None) -> Release:
        if not (k.group == "" and k.plural == "services"):
            return _noop
        owner = owner_of(svc)
        spec = svc.setdefault("spec", {})
        typ = spec.get("type", "ClusterIP")
        errs = []
        try:
            if typ != "ExternalName":
                if spec.get("clusterIP") == "None":
                    spec["clusterIPs"] = ["None"]
                else:
                    wanted = spec.get("clusterIP") or None
                    try:
                        ip = await self.service_ips.allocate(owner, wanted)
                    except AllocationError as e:
                        errs.append(v.invalid("spec.clusterIPs", [wanted] if wanted else [],
                                              f"failed to allocate IP {wanted}: {e}"))
                    else:
                        spec["clusterIP"] = ip
                        spec["clusterIPs"] = [ip]
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            if typ in ("NodePort", "LoadBalancer"):
                for i, p in enumerate(spec.get("ports") or []):
                    wanted = str(p["nodePort"]) if p.get("nodePort") else None
                    try:
                        p["nodePort"] = int(await self.node_ports.allocate(owner, wanted))
                    except AllocationError as e:
                        errs.append(v.invalid(f"spec.ports[{i}].nodePort", p.get("nodePort"), str(e)))
                if typ == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and \
                        not spec.get("healthCheckNodePort"):
                    spec["healthCheckNodePort"] = int(await self.node_ports.allocate(owner))
        except BaseException:
            await self._release(svc)
            raise
        if errs:
            await self._release(svc, keep_old=old)
            raise status.invalid("", "Service", svc["metadata"].get("name", ""), errs)

        async def release() -> None:
            await self._release(svc)
        return release

    async def _release(self, svc: dict, keep_old: dict | None = None) -> None:
        ips, ports = service_ports_of(keep_old) if keep_old else (set(), set())
        try:
            await self.service_ips.release(owner_of(svc), ips)
            await self.node_ports.release(owner_of(svc), ports)
        except Exception as e:  # the repair at start mends what this could not
            log.warning("release of service allocations failed svc=%s err=%r", owner_of(svc), e)

    async def after_update(self, k: Kind, new: dict, old: dict) -> None:
        if k.group == "" and k.plural == "services":
            ips, ports = service_ports_of(new)
            await self.service_ips.release(owner_of(new), ips)
            await self.node_ports.release(owner_of(new), ports)

    async def after_delete(self, k: Kind, obj: dict) -> None:
        if k.group == "" and k.plural == "services":
            await self._release(obj)

    # --- eviction --------------------------------------------------------------------------

    def pdbs_for(self, pod: dict) -> list[dict]:
        """The PodDisruptionBudgets whose selector matches the pod (an empty selector matches none)."""
        ns = pod["metadata"].get("namespace")
        labels = pod["metadata"].get("labels") or {}
        pdbs, _ = self.cacher.list("/registry/poddisruptionbudgets/", f"/registry/poddisruptionbudgets/{ns}/")
        out = []
        for pdb in pdbs:
            try:
                sel = label_selector_from_api((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if not sel.empty and sel.matches(labels):
                out.append(pdb)
        return out
