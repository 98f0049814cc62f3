"""Strategic-merge-patch metadata of the built-in types.

Facts taken from upstream's Go struct tags (``patchStrategy`` / ``patchMergeKey``,
published in OpenAPI as ``x-kubernetes-patch-strategy`` /
``x-kubernetes-patch-merge-key``) of k8s.io/api.

The table is deliberately sparse: a type lists only the fields that carry a patch
strategy or that lead (through nested structs or list elements) to one.  A field
that is not listed is a plain field: maps are merged key by key, lists are
replaced as a whole.  Every path from a root kind to a list with a strategy is
present, e.g. Deployment.spec.template.spec.containers[].env.

Each field is ``(child type name or None, patch strategy or None, merge key or None)``;
for a list the child type is the element type.  Strategies are the upstream
strings: ``"merge"``, ``"retainKeys"``, ``"merge,retainKeys"``, ``"replace"``.

Upstream quirks kept on purpose (they are what kubectl and the real apiserver do):

* Container ``ports`` merge on ``containerPort`` alone, so the same port number with
  two protocols (TCP and UDP) collapses into one entry when patched; Service
  ``ports`` likewise merge on ``port`` alone (kubernetes/kubernetes#39188).
* Node ``status.addresses`` merge on ``type``, so two addresses of one type collapse.
* ``tolerations``, Node ``spec.taints``, ``readinessGates``, container statuses,
  EndpointSlice ``endpoints`` and RBAC ``rules``/``subjects`` have no strategy:
  a patch replaces them as a whole.
* CertificateSigningRequest ``status.conditions`` is a list-map for server-side
  apply but has no patch strategy, so strategic merge replaces it.
"""

from __future__ import annotations

Field = tuple[str | None, str | None, str | None]

MERGE = "merge"
RETAIN_KEYS = "retainKeys"
MERGE_RETAIN_KEYS = "merge,retainKeys"

OBJECT_META = "meta/v1.ObjectMeta"
_META: dict[str, Field] = {"metadata": (OBJECT_META, None, None)}

# List fields that recur in many types.
_CONDITIONS: Field = (None, MERGE, "type")
_TEMPLATE: Field = ("core/v1.PodTemplateSpec", None, None)


def _kind(**fields: Field) -> dict[str, Field]:
    """A root kind: ObjectMeta under metadata plus the given fields."""
    return {**_META, **fields}


def _status_with_conditions(kind: str, status_type: str) -> dict[str, dict[str, Field]]:
    return {
        kind: _kind(status=(status_type, None, None)),
        status_type: {"conditions": _CONDITIONS},
    }


# Fields shared by Container and EphemeralContainer (EphemeralContainerCommon
# carries the same tags as Container).
_CONTAINER_FIELDS: dict[str, Field] = {
    "ports": (None, MERGE, "containerPort"),
    "env": (None, MERGE, "name"),
    "volumeMounts": (None, MERGE, "mountPath"),
    "volumeDevices": (None, MERGE, "devicePath"),
}

TYPES: dict[str, dict[str, Field]] = {
    # --- meta/v1 -----------------------------------------------------------
    OBJECT_META: {
        "finalizers": (None, MERGE, None),
        "ownerReferences": (None, MERGE, "uid"),
    },
    # --- core/v1: pods --------------------------------------------------------
    "core/v1.Pod": _kind(spec=("core/v1.PodSpec", None, None),
                         status=("core/v1.PodStatus", None, None)),
    "core/v1.PodSpec": {
        "volumes": (None, MERGE_RETAIN_KEYS, "name"),
        "initContainers": ("core/v1.Container", MERGE, "name"),
        "containers": ("core/v1.Container", MERGE, "name"),
        "ephemeralContainers": ("core/v1.EphemeralContainer", MERGE, "name"),
        "imagePullSecrets": (None, MERGE, "name"),
        "hostAliases": (None, MERGE, "ip"),
        "topologySpreadConstraints": (None, MERGE, "topologyKey"),
        "schedulingGates": (None, MERGE, "name"),
        "resourceClaims": (None, MERGE_RETAIN_KEYS, "name"),
    },
    "core/v1.Container": dict(_CONTAINER_FIELDS),
    "core/v1.EphemeralContainer": dict(_CONTAINER_FIELDS),
    "core/v1.PodStatus": {
        "conditions": _CONDITIONS,
        "podIPs": (None, MERGE, "ip"),
        "hostIPs": (None, MERGE, "ip"),
        "resourceClaimStatuses": (None, MERGE_RETAIN_KEYS, "name"),
    },
    "core/v1.PodTemplate": _kind(template=_TEMPLATE),
    "core/v1.PodTemplateSpec": _kind(spec=("core/v1.PodSpec", None, None)),
    "core/v1.ReplicationController": _kind(
        spec=("core/v1.ReplicationControllerSpec", None, None),
        status=("core/v1.ReplicationControllerStatus", None, None)),
    "core/v1.ReplicationControllerSpec": {"template": _TEMPLATE},
    "core/v1.ReplicationControllerStatus": {"conditions": _CONDITIONS},
    # --- core/v1: nodes, services, the rest -------------------------------------
    "core/v1.Node": _kind(spec=("core/v1.NodeSpec", None, None),
                          status=("core/v1.NodeStatus", None, None)),
    "core/v1.NodeSpec": {"podCIDRs": (None, MERGE, None)},
    "core/v1.NodeStatus": {
        "conditions": _CONDITIONS,
        "addresses": (None, MERGE, "type"),
    },
    "core/v1.Service": _kind(spec=("core/v1.ServiceSpec", None, None),
                             status=("core/v1.ServiceStatus", None, None)),
    "core/v1.ServiceSpec": {"ports": (None, MERGE, "port")},
    "core/v1.ServiceStatus": {"conditions": _CONDITIONS},
    "core/v1.ServiceAccount": _kind(secrets=(None, MERGE, "name")),
    "core/v1.ComponentStatus": _kind(conditions=_CONDITIONS),
    "core/v1.Endpoints": _kind(),
    "core/v1.ConfigMap": _kind(),
    "core/v1.Secret": _kind(),
    "core/v1.Event": _kind(),
    "core/v1.LimitRange": _kind(),
    "core/v1.ResourceQuota": _kind(),
    "core/v1.PersistentVolume": _kind(),
    **_status_with_conditions("core/v1.Namespace", "core/v1.NamespaceStatus"),
    **_status_with_conditions("core/v1.PersistentVolumeClaim",
                              "core/v1.PersistentVolumeClaimStatus"),
    # --- apps/v1 ------------------------------------------------------------------
    "apps/v1.Deployment": _kind(spec=("apps/v1.DeploymentSpec", None, None),
                                status=("apps/v1.DeploymentStatus", None, None)),
    "apps/v1.DeploymentSpec": {
        "template": _TEMPLATE,
        "strategy": (None, RETAIN_KEYS, None),
    },
    "apps/v1.DeploymentStatus": {"conditions": _CONDITIONS},
    "apps/v1.ReplicaSet": _kind(spec=("apps/v1.ReplicaSetSpec", None, None),
                                status=("apps/v1.ReplicaSetStatus", None, None)),
    "apps/v1.ReplicaSetSpec": {"template": _TEMPLATE},
    "apps/v1.ReplicaSetStatus": {"conditions": _CONDITIONS},
    "apps/v1.DaemonSet": _kind(spec=("apps/v1.DaemonSetSpec", None, None),
                               status=("apps/v1.DaemonSetStatus", None, None)),
    "apps/v1.DaemonSetSpec": {"template": _TEMPLATE},
    "apps/v1.DaemonSetStatus": {"conditions": _CONDITIONS},
    "apps/v1.StatefulSet": _kind(spec=("apps/v1.StatefulSetSpec", None, None),
                                 status=("apps/v1.StatefulSetStatus", None, None)),
    # volumeClaimTemplates has no strategy: replaced as a whole.
    "apps/v1.StatefulSetSpec": {"template": _TEMPLATE},
    "apps/v1.StatefulSetStatus": {"conditions": _CONDITIONS},
    "apps/v1.ControllerRevision": _kind(),
    # --- batch/v1 -----------------------------------------------------------------
    "batch/v1.Job": _kind(spec=("batch/v1.JobSpec", None, None),
                          status=("batch/v1.JobStatus", None, None)),
    "batch/v1.JobSpec": {"template": _TEMPLATE},
    "batch/v1.JobStatus": {"conditions": _CONDITIONS},
    "batch/v1.CronJob": _kind(spec=("batch/v1.CronJobSpec", None, None)),
    "batch/v1.CronJobSpec": {"jobTemplate": ("batch/v1.JobTemplateSpec", None, None)},
    "batch/v1.JobTemplateSpec": _kind(spec=("batch/v1.JobSpec", None, None)),
    # --- other groups ---------------------------------------------------------------
    "discovery.k8s.io/v1.EndpointSlice": _kind(),
    "coordination.k8s.io/v1.Lease": _kind(),
    "rbac.authorization.k8s.io/v1.Role": _kind(),
    "rbac.authorization.k8s.io/v1.ClusterRole": _kind(),
    "rbac.authorization.k8s.io/v1.RoleBinding": _kind(),
    "rbac.authorization.k8s.io/v1.ClusterRoleBinding": _kind(),
    **_status_with_conditions("policy/v1.PodDisruptionBudget",
                              "policy/v1.PodDisruptionBudgetStatus"),
    **_status_with_conditions("autoscaling/v2.HorizontalPodAutoscaler",
                              "autoscaling/v2.HorizontalPodAutoscalerStatus"),
    "autoscaling/v1.Scale": _kind(),
    "scheduling.k8s.io/v1.PriorityClass": _kind(),
    "certificates.k8s.io/v1.CertificateSigningRequest": _kind(),
    "events.k8s.io/v1.Event": _kind(),
    "networking.k8s.io/v1.Ingress": _kind(),
    "networking.k8s.io/v1.IngressClass": _kind(),
    "networking.k8s.io/v1.NetworkPolicy": _kind(),
    "storage.k8s.io/v1.StorageClass": _kind(),
    "storage.k8s.io/v1.CSIDriver": _kind(),
    "storage.k8s.io/v1.VolumeAttachment": _kind(),
    "storage.k8s.io/v1.CSINode": _kind(spec=("storage.k8s.io/v1.CSINodeSpec", None, None)),
    "storage.k8s.io/v1.CSINodeSpec": {"drivers": (None, MERGE, "name")},
    "node.k8s.io/v1.RuntimeClass": _kind(),
    "admissionregistration.k8s.io/v1.MutatingWebhookConfiguration": _kind(
        webhooks=("admissionregistration.k8s.io/v1.MutatingWebhook", MERGE, "name")),
    "admissionregistration.k8s.io/v1.MutatingWebhook": {
        "matchConditions": (None, MERGE, "name")},
    "admissionregistration.k8s.io/v1.ValidatingWebhookConfiguration": _kind(
        webhooks=("admissionregistration.k8s.io/v1.ValidatingWebhook", MERGE, "name")),
    "admissionregistration.k8s.io/v1.ValidatingWebhook": {
        "matchConditions": (None, MERGE, "name")},
    "apiextensions.k8s.io/v1.CustomResourceDefinition": _kind(),
}

# (API group, kind) -> root type.  The core group is "".
ROOT_TYPES: dict[tuple[str, str], str] = {
    ("", "Pod"): "core/v1.Pod",
    ("", "PodTemplate"): "core/v1.PodTemplate",
    ("", "ReplicationController"): "core/v1.ReplicationController",
    ("", "Node"): "core/v1.Node",
    ("", "Service"): "core/v1.Service",
    ("", "Endpoints"): "core/v1.Endpoints",
    ("", "ConfigMap"): "core/v1.ConfigMap",
    ("", "Secret"): "core/v1.Secret",
    ("", "ServiceAccount"): "core/v1.ServiceAccount",
    ("", "Namespace"): "core/v1.Namespace",
    ("", "Event"): "core/v1.Event",
    ("", "LimitRange"): "core/v1.LimitRange",
    ("", "ResourceQuota"): "core/v1.ResourceQuota",
    ("", "PersistentVolume"): "core/v1.PersistentVolume",
    ("", "PersistentVolumeClaim"): "core/v1.PersistentVolumeClaim",
    ("", "ComponentStatus"): "core/v1.ComponentStatus",
    ("apps", "Deployment"): "apps/v1.Deployment",
    ("apps", "ReplicaSet"): "apps/v1.ReplicaSet",
    ("apps", "DaemonSet"): "apps/v1.DaemonSet",
    ("apps", "StatefulSet"): "apps/v1.StatefulSet",
    ("apps", "ControllerRevision"): "apps/v1.ControllerRevision",
    ("batch", "Job"): "batch/v1.Job",
    ("batch", "CronJob"): "batch/v1.CronJob",
    ("discovery.k8s.io", "EndpointSlice"): "discovery.k8s.io/v1.EndpointSlice",
    ("coordination.k8s.io", "Lease"): "coordination.k8s.io/v1.Lease",
    ("rbac.authorization.k8s.io", "Role"): "rbac.authorization.k8s.io/v1.Role",
    ("rbac.authorization.k8s.io", "ClusterRole"): "rbac.authorization.k8s.io/v1.ClusterRole",
    ("rbac.authorization.k8s.io", "RoleBinding"): "rbac.authorization.k8s.io/v1.RoleBinding",
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        "rbac.authorization.k8s.io/v1.ClusterRoleBinding",
    ("policy", "PodDisruptionBudget"): "policy/v1.PodDisruptionBudget",
    ("autoscaling", "HorizontalPodAutoscaler"): "autoscaling/v2.HorizontalPodAutoscaler",
    ("autoscaling", "Scale"): "autoscaling/v1.Scale",
    ("scheduling.k8s.io", "PriorityClass"): "scheduling.k8s.io/v1.PriorityClass",
    ("certificates.k8s.io", "CertificateSigningRequest"):
        "certificates.k8s.io/v1.CertificateSigningRequest",
    ("events.k8s.io", "Event"): "events.k8s.io/v1.Event",
    ("networking.k8s.io", "Ingress"): "networking.k8s.io/v1.Ingress",
    ("networking.k8s.io", "IngressClass"): "networking.k8s.io/v1.IngressClass",
    ("networking.k8s.io", "NetworkPolicy"): "networking.k8s.io/v1.NetworkPolicy",
    ("storage.k8s.io", "StorageClass"): "storage.k8s.io/v1.StorageClass",
    ("storage.k8s.io", "CSIDriver"): "storage.k8s.io/v1.CSIDriver",
    ("storage.k8s.io", "CSINode"): "storage.k8s.io/v1.CSINode",
    ("storage.k8s.io", "VolumeAttachment"): "storage.k8s.io/v1.VolumeAttachment",
    ("node.k8s.io", "RuntimeClass"): "node.k8s.io/v1.RuntimeClass",
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"):
        "admissionregistration.k8s.io/v1.MutatingWebhookConfiguration",
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"):
        "admissionregistration.k8s.io/v1.ValidatingWebhookConfiguration",
    ("apiextensions.k8s.io", "CustomResourceDefinition"):
        "apiextensions.k8s.io/v1.CustomResourceDefinition",
}

_NO_META: Field = (None, None, None)
_ROOTS = frozenset(ROOT_TYPES.values())


def root_type_for(group: str, kind: str) -> str | None:
    """The root type of a built-in kind, or None (custom resources, unknown kinds).

    The core group may be given as "" or "core".
    """
    if group == "core":
        group = ""
    return ROOT_TYPES.get((group, kind))


def is_root_type(type_name: str | None) -> bool:
    """True for the root type of a built-in kind."""
    return type_name in _ROOTS


def field_meta(type_name: str | None, field: str) -> Field:
    """(child type, strategy, merge key) of a field; all None when unknown."""
    if type_name is None:
        return _NO_META
    return TYPES.get(type_name, {}).get(field, _NO_META)
