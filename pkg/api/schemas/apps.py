"""apps/v1: Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision."""

APPS = """
package apps/v1

Deployment kind: Declarative updates for pods and ReplicaSets: it rolls pods out and back.
  spec DeploymentSpec  Desired behaviour of the Deployment.
  status DeploymentStatus  Most recently observed status of the Deployment. Read-only.

DeploymentSpec: Desired behaviour of a Deployment.
  minReadySeconds int32  Seconds a new pod must be ready, without crashing, to count as available. Defaults to 0.
  paused boolean  Stop rolling out changes of the template while true.
  progressDeadlineSeconds int32  Seconds a rollout may go without progress before it is reported as failed. Defaults to 600.
  replicas int32  Desired number of pods. Defaults to 1.
  revisionHistoryLimit int32  Old ReplicaSets kept for rollback. Defaults to 10.
  selector* LabelSelector  Labels of the pods the Deployment manages; must match the template's labels. Immutable.
  strategy DeploymentStrategy  How old pods are replaced by new ones.
  template* core/v1.PodTemplateSpec  Pods the Deployment creates; its restartPolicy must be Always.

DeploymentStrategy: How a Deployment replaces old pods.
  rollingUpdate RollingUpdateDeployment  Rolling update parameters; only with type RollingUpdate.
  type string{Recreate,RollingUpdate}  Recreate kills all old pods first; RollingUpdate replaces them gradually. Defaults to RollingUpdate.

RollingUpdateDeployment: Parameters of a rolling update.
  maxSurge IntOrString  Pods that may exist above the desired count during the update, as a number or a percentage. Defaults to 25%.
  maxUnavailable IntOrString  Pods that may be unavailable during the update, as a number or a percentage. Defaults to 25%.

DeploymentStatus: Observed state of a Deployment.
  availableReplicas int32  Pods ready for at least minReadySeconds.
  collisionCount int32  Count of hash collisions, used to make the name of the newest ReplicaSet unique.
  conditions []DeploymentCondition  Latest observations (Available, Progressing, ReplicaFailure).
  observedGeneration int64  Generation observed by the controller.
  readyReplicas int32  Pods with a Ready condition.
  replicas int32  Pods targeted by the Deployment (their labels match the selector).
  terminatingReplicas int32  Pods being terminated.
  unavailableReplicas int32  Pods still needed for 100% availability.
  updatedReplicas int32  Pods running the current template.

DeploymentCondition: A condition of a Deployment.
  lastTransitionTime Time  When the status last changed.
  lastUpdateTime Time  When the condition was last updated.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

ReplicaSet kind: Keeps a given number of identical pods running.
  spec ReplicaSetSpec  Desired behaviour of the ReplicaSet.
  status ReplicaSetStatus  Most recently observed status. Read-only.

ReplicaSetSpec: Desired behaviour of a ReplicaSet.
  minReadySeconds int32  Seconds a new pod must be ready to count as available.
  replicas int32  Desired number of pods. Defaults to 1.
  selector* LabelSelector  Labels of the pods counted; must match the template's labels.
  template core/v1.PodTemplateSpec  Pods created when there are too few.

ReplicaSetStatus: Observed state of a ReplicaSet.
  availableReplicas int32  Pods ready for at least minReadySeconds.
  conditions []ReplicaSetCondition  Latest observations.
  fullyLabeledReplicas int32  Pods whose labels match the template's.
  observedGeneration int64  Generation observed by the controller.
  readyReplicas int32  Pods with a Ready condition.
  replicas* int32  Pods currently counted.
  terminatingReplicas int32  Pods being terminated.

ReplicaSetCondition: A condition of a ReplicaSet.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

DaemonSet kind: Runs a copy of a pod on every (selected) node.
  spec DaemonSetSpec  Desired behaviour of the DaemonSet.
  status DaemonSetStatus  Most recently observed status. Read-only.

DaemonSetSpec: Desired behaviour of a DaemonSet.
  minReadySeconds int32  Seconds a new pod must be ready to count as available.
  revisionHistoryLimit int32  Old revisions kept for rollback. Defaults to 10.
  selector* LabelSelector  Labels of the pods the DaemonSet manages; must match the template's labels.
  template* core/v1.PodTemplateSpec  Pod run on each eligible node.
  updateStrategy DaemonSetUpdateStrategy  How pods are replaced when the template changes.

DaemonSetUpdateStrategy: How a DaemonSet replaces its pods.
  rollingUpdate RollingUpdateDaemonSet  Rolling update parameters; only with type RollingUpdate.
  type string{OnDelete,RollingUpdate}  OnDelete waits for pods to be deleted by hand. Defaults to RollingUpdate.

RollingUpdateDaemonSet: Parameters of a DaemonSet rolling update.
  maxSurge IntOrString  Nodes that may run an extra new pod during the update. Defaults to 0.
  maxUnavailable IntOrString  Nodes whose pod may be unavailable during the update. Defaults to 1.

DaemonSetStatus: Observed state of a DaemonSet.
  collisionCount int32  Count of hash collisions of revision names.
  conditions []DaemonSetCondition  Latest observations.
  currentNumberScheduled* int32  Nodes running at least one daemon pod that should.
  desiredNumberScheduled* int32  Nodes that should run the daemon pod.
  numberAvailable int32  Nodes whose daemon pod is available.
  numberMisscheduled* int32  Nodes running the daemon pod that should not.
  numberReady* int32  Nodes whose daemon pod is ready.
  numberUnavailable int32  Nodes whose daemon pod should be available but is not.
  observedGeneration int64  Generation observed by the controller.
  updatedNumberScheduled int32  Nodes running the current template.

DaemonSetCondition: A condition of a DaemonSet.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

StatefulSet kind: Runs pods with stable identities (ordinal names) and stable storage.
  spec StatefulSetSpec  Desired behaviour of the StatefulSet.
  status StatefulSetStatus  Most recently observed status. Read-only.

StatefulSetSpec: Desired behaviour of a StatefulSet.
  minReadySeconds int32  Seconds a new pod must be ready to count as available.
  ordinals StatefulSetOrdinals  Numbering of the replicas.
  persistentVolumeClaimRetentionPolicy StatefulSetPersistentVolumeClaimRetentionPolicy  What happens to claims from volumeClaimTemplates on scale-down and deletion.
  podManagementPolicy string{OrderedReady,Parallel}  Whether pods are created and deleted one at a time in order, or all at once. Defaults to OrderedReady.
  replicas int32  Desired number of pods. Defaults to 1.
  revisionHistoryLimit int32  Old revisions kept. Defaults to 10.
  selector* LabelSelector  Labels of the pods the StatefulSet manages; must match the template's labels.
  serviceName string  Headless service that gives the pods their DNS names.
  template* core/v1.PodTemplateSpec  Pods the StatefulSet creates, named <set>-<ordinal>.
  updateStrategy StatefulSetUpdateStrategy  How pods are replaced when the template changes.
  volumeClaimTemplates []core/v1.PersistentVolumeClaim  Claims made for every pod, named <template>-<pod>.

StatefulSetOrdinals: Numbering of StatefulSet replicas.
  start int32  First ordinal. Defaults to 0.

StatefulSetPersistentVolumeClaimRetentionPolicy: Lifecycle of the claims of a StatefulSet.
  whenDeleted string{Delete,Retain}  What happens to claims when the StatefulSet is deleted. Defaults to Retain.
  whenScaled string{Delete,Retain}  What happens to claims of pods removed by a scale-down. Defaults to Retain.

StatefulSetUpdateStrategy: How a StatefulSet replaces its pods.
  rollingUpdate RollingUpdateStatefulSetStrategy  Rolling update parameters; only with type RollingUpdate.
  type string{OnDelete,RollingUpdate}  OnDelete waits for pods to be deleted by hand. Defaults to RollingUpdate.

RollingUpdateStatefulSetStrategy: Parameters of a StatefulSet rolling update.
  maxUnavailable IntOrString  Pods that may be unavailable during the update. Defaults to 1.
  partition int32  Only pods with an ordinal at or above this are updated. Defaults to 0.

StatefulSetStatus: Observed state of a StatefulSet.
  availableReplicas int32  Pods ready for at least minReadySeconds.
  collisionCount int32  Count of hash collisions of revision names.
  conditions []StatefulSetCondition  Latest observations.
  currentReplicas int32  Pods at currentRevision.
  currentRevision string  Revision used for pods below the update partition.
  observedGeneration int64  Generation observed by the controller.
  readyReplicas int32  Pods with a Ready condition.
  replicas* int32  Pods created by the controller.
  updateRevision string  Latest revision.
  updatedReplicas int32  Pods at updateRevision.

StatefulSetCondition: A condition of a StatefulSet.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

ControllerRevision kind: An immutable snapshot of state, kept by DaemonSet and StatefulSet controllers for rollbacks.
  data RawExtension  The serialized state.
  revision* int64  Revision number.
"""

SOURCES = [APPS]
