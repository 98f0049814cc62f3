"""core/v1 beyond pods: nodes, services, config, storage, quotas, events, namespaces."""

CORE = """
package core/v1

Namespace kind: A scope for names; most objects live in one.
  spec NamespaceSpec  Desired state of the namespace.
  status NamespaceStatus  Observed state of the namespace. Read-only.

NamespaceSpec: Desired state of a namespace.
  finalizers []string  Finalizers that must be cleared before the namespace is removed from storage.

NamespaceStatus: Observed state of a namespace.
  conditions []NamespaceCondition  Conditions of the namespace.
  phase string{Active,Terminating}  Lifecycle phase of the namespace.

NamespaceCondition: A condition of a namespace.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

Node kind: A worker machine that runs pods.
  spec NodeSpec  Configuration of the node.
  status NodeStatus  Most recently observed state of the node, reported by its kubelet. Read-only.

NodeSpec: Configuration of a node.
  podCIDR string  Pod IP range assigned to the node.
  podCIDRs []string  Pod IP ranges assigned to the node, at most one per family; the first equals podCIDR.
  providerID string  ID of the node in the cloud provider, as <provider>://<id>.
  taints []Taint  Taints that repel pods that do not tolerate them.
  unschedulable boolean  Keep new pods off the node (kubectl cordon sets it).

Taint: A mark on a node that repels pods without a matching toleration.
  effect* string{NoExecute,NoSchedule,PreferNoSchedule}  What happens to pods that do not tolerate the taint.
  key* string  Taint key.
  timeAdded Time  When a NoExecute taint was added.
  value string  Taint value.

NodeStatus: Observed state of a node.
  addresses []NodeAddress  Addresses of the node.
  allocatable map[string]Quantity  Resources available to pods; capacity minus reservations.
  capacity map[string]Quantity  Total resources of the node.
  conditions []NodeCondition  Conditions of the node (Ready, MemoryPressure, DiskPressure, PIDPressure, ...).
  daemonEndpoints NodeDaemonEndpoints  Endpoints of the daemons on the node.
  images []ContainerImage  Images present on the node.
  nodeInfo NodeSystemInfo  Versions and identifiers of the node's software and machine.
  phase string  Deprecated and not set.
  runtimeHandlers []NodeRuntimeHandler  Runtime handlers the container runtime offers.
  volumesAttached []AttachedVolume  Volumes attached to the node.
  volumesInUse []string  Attachable volumes in use (mounted) on the node.

NodeAddress: An address of a node.
  address* string  The address.
  type* string{ExternalDNS,ExternalIP,Hostname,InternalDNS,InternalIP}  Kind of address.

NodeCondition: A condition of a node.
  lastHeartbeatTime Time  When the condition was last reported.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

NodeDaemonEndpoints: Ports of the daemons running on a node.
  kubeletEndpoint DaemonEndpoint  The kubelet's endpoint.

DaemonEndpoint: A port of a daemon.
  Port* int32  Port number.

ContainerImage: A container image on a node.
  names []string  Names (tags and digests) of the image.
  sizeBytes int64  Size of the image in bytes.

NodeSystemInfo: Identifiers and versions of a node.
  architecture* string  CPU architecture.
  bootID* string  Boot ID of the machine.
  containerRuntimeVersion* string  Container runtime name and version (runtime://version).
  kernelVersion* string  Kernel release (uname -r).
  kubeProxyVersion* string  Deprecated: version of kube-proxy.
  kubeletVersion* string  Version of the kubelet.
  machineID* string  Machine ID of the host.
  operatingSystem* string  Operating system (linux).
  osImage* string  Operating system image (from /etc/os-release).
  systemUUID* string  System UUID of the machine.

NodeRuntimeHandler: A runtime handler and its features.
  features NodeRuntimeHandlerFeatures  Supported features.
  name string  Handler name; empty for the default.

NodeRuntimeHandlerFeatures: Features of a runtime handler.
  recursiveReadOnlyMounts boolean  Recursive read-only mounts are supported.
  userNamespaces boolean  User namespaces are supported.

AttachedVolume: A volume attached to a node.
  devicePath* string  Device path where the volume is available.
  name* string  Name of the volume.

Service kind: A named, stable network endpoint for a set of pods, with load balancing across them.
  spec ServiceSpec  Desired behaviour of the service.
  status ServiceStatus  Most recently observed status of the service. Read-only.

ServiceSpec: Desired behaviour of a service.
  allocateLoadBalancerNodePorts boolean  Whether NodePorts are allocated for a LoadBalancer service. Defaults to true.
  clusterIP string  Virtual IP of the service, allocated when empty; None makes a headless service. Cannot be changed.
  clusterIPs []string  Cluster IPs of the service, at most one per family; the first equals clusterIP.
  externalIPs []string  IPs on which nodes also accept traffic for the service.
  externalName string  DNS name an ExternalName service is an alias (CNAME) of.
  externalTrafficPolicy string{Cluster,Local}  Whether external traffic may go to endpoints on other nodes (Cluster) or only local ones.
  healthCheckNodePort int32  Node port serving health checks for Local external traffic policy.
  internalTrafficPolicy string{Cluster,Local}  Whether in-cluster traffic may go to endpoints on any node or only the local one.
  ipFamilies []string{IPv4,IPv6}  IP families of the service.
  ipFamilyPolicy string{PreferDualStack,RequireDualStack,SingleStack}  How many IP families the service gets.
  loadBalancerClass string  Load balancer implementation that handles this service.
  loadBalancerIP string  Deprecated: requested load balancer IP.
  loadBalancerSourceRanges []string  Client CIDRs allowed through the load balancer.
  ports []ServicePort  Ports the service exposes.
  publishNotReadyAddresses boolean  Publish endpoints of pods that are not ready.
  selector map[string]string  Pods whose labels match receive the traffic; endpoints are managed by hand when empty.
  sessionAffinity string{ClientIP,None}  Keep a client on one endpoint (ClientIP). Defaults to None.
  sessionAffinityConfig SessionAffinityConfig  Settings of session affinity.
  trafficDistribution string  Preference for how traffic is spread over endpoints (e.g. PreferClose).
  type string{ClusterIP,ExternalName,LoadBalancer,NodePort}  How the service is exposed. Defaults to ClusterIP.

ServicePort: A port of a service.
  appProtocol string  Application protocol of the port (e.g. http, kubernetes.io/h2c).
  name string  Name of the port; required when there are several, unique within the service.
  nodePort int32  Port on every node for NodePort and LoadBalancer services; allocated when unset.
  port* int32  Port the service listens on.
  protocol string{SCTP,TCP,UDP}  Protocol of the port. Defaults to TCP.
  targetPort IntOrString  Port number or name on the pods; defaults to port.

SessionAffinityConfig: Settings of session affinity.
  clientIP ClientIPConfig  Settings of ClientIP affinity.

ClientIPConfig: Settings of ClientIP session affinity.
  timeoutSeconds int32  Seconds a session sticks (1-86400). Defaults to 10800.

ServiceStatus: Observed state of a service.
  conditions []Condition  Conditions of the service.
  loadBalancer LoadBalancerStatus  The load balancer, if any.

LoadBalancerStatus: Status of a load balancer.
  ingress []LoadBalancerIngress  Ingress points of the load balancer.

LoadBalancerIngress: An ingress point of a load balancer.
  hostname string  Host name of the ingress point.
  ip string  IP of the ingress point.
  ipMode string{Proxy,VIP}  How traffic reaches the service through this IP.
  ports []PortStatus  Status of the ports.

PortStatus: Status of a service port.
  error string  Problem with the port, in CamelCase.
  port* int32  Port number.
  protocol* string{SCTP,TCP,UDP}  Protocol of the port.

Endpoints kind: The addresses that implement a service (superseded by EndpointSlice).
  subsets []EndpointSubset  Groups of addresses that share the same ports.

EndpointSubset: Addresses and the ports they all serve.
  addresses []EndpointAddress  Ready addresses.
  notReadyAddresses []EndpointAddress  Addresses that are not ready yet.
  ports []EndpointPort  Ports served by the addresses.

EndpointAddress: One endpoint address.
  hostname string  Host name of the endpoint.
  ip* string  IP of the endpoint.
  nodeName string  Node hosting the endpoint.
  targetRef ObjectReference  Object (usually a pod) behind the endpoint.

EndpointPort: A port of an endpoint.
  appProtocol string  Application protocol of the port.
  name string  Name of the port, matching the service port name.
  port* int32  Port number.
  protocol string{SCTP,TCP,UDP}  Protocol. Defaults to TCP.

ConfigMap kind: Non-confidential configuration data for pods, as key/value pairs.
  binaryData map[string]byte  Binary values, base64-encoded; keys must not repeat those of data.
  data map[string]string  UTF-8 values.
  immutable boolean  When true, data cannot change (the ConfigMap can only be deleted).

Secret kind: Confidential data, such as passwords, tokens or keys.
  data map[string]byte  Values, base64-encoded.
  immutable boolean  When true, data cannot change (the Secret can only be deleted).
  stringData map[string]string  Write-only convenience: plain values merged into data on write.
  type string  Type of the secret (Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, ...). Defaults to Opaque.

ServiceAccount kind: An identity for processes that run in pods.
  automountServiceAccountToken boolean  Whether pods using the account get a token mounted automatically.
  imagePullSecrets []LocalObjectReference  Registry credentials added to pods using the account.
  secrets []ObjectReference  Deprecated: secrets holding tokens of the account.

ObjectReference: A reference to any object (or a field of one).
  apiVersion string  API version of the referent.
  fieldPath string  Path of a field within the referent (e.g. spec.containers{name}).
  kind string  Kind of the referent.
  name string  Name of the referent.
  namespace string  Namespace of the referent.
  resourceVersion string  Version of the referent the reference was made to.
  uid string  UID of the referent.

TypedLocalObjectReference: A reference to an object of some kind in the same namespace.
  apiGroup string  API group of the referent; the core group when empty.
  kind* string  Kind of the referent.
  name* string  Name of the referent.

TypedObjectReference: A reference to an object of some kind, possibly in another namespace.
  apiGroup string  API group of the referent; the core group when empty.
  kind* string  Kind of the referent.
  name* string  Name of the referent.
  namespace string  Namespace of the referent.

SecretReference: A reference to a Secret in any namespace.
  name string  Name of the Secret.
  namespace string  Namespace of the Secret.

Event kind: A report of something that happened to an object (core group version).
  action string  What was done (or failed) about the object.
  count int32  Number of times the event occurred.
  eventTime MicroTime  When the event was first observed.
  firstTimestamp Time  When the event was first recorded.
  involvedObject* ObjectReference  Object the event is about.
  lastTimestamp Time  When the event was last recorded.
  message string  Human-readable description.
  reason string  Short CamelCase reason.
  related ObjectReference  A second object involved.
  reportingComponent string  Controller that emitted the event (e.g. kubernetes.io/kubelet).
  reportingInstance string  Instance of the controller that emitted the event.
  series EventSeries  The series this event belongs to, when repeated.
  source EventSource  Component that reported the event.
  type string  Normal or Warning.

EventSeries: A repeated event.
  count int32  Occurrences in the series.
  lastObservedTime MicroTime  Time of the last occurrence.

EventSource: Component that reported an event.
  component string  Reporting component.
  host string  Node name the event was generated on.

LimitRange kind: Default and bounding resource values for pods, containers and claims in a namespace.
  spec LimitRangeSpec  The limits.

LimitRangeSpec: The limits of a LimitRange.
  limits* []LimitRangeItem  One entry per object kind.

LimitRangeItem: Resource limits for one kind of object.
  default map[string]Quantity  Limits applied to containers that set none.
  defaultRequest map[string]Quantity  Requests applied to containers that set none.
  max map[string]Quantity  Largest allowed values.
  maxLimitRequestRatio map[string]Quantity  Largest allowed limit/request ratio.
  min map[string]Quantity  Smallest allowed values.
  type* string{Container,PersistentVolumeClaim,Pod}  Kind of object the entry applies to.

ResourceQuota kind: Caps on the total resources and object counts in a namespace.
  spec ResourceQuotaSpec  The caps.
  status ResourceQuotaStatus  Current usage. Read-only.

ResourceQuotaSpec: Caps of a quota.
  hard map[string]Quantity  Cap per resource name (requests.cpu, pods, count/deployments.apps, ...).
  scopeSelector ScopeSelector  Scopes the quota applies to, as expressions.
  scopes []string  Scopes the quota applies to (Terminating, BestEffort, PriorityClass, ...).

ScopeSelector: Scope expressions, ANDed.
  matchExpressions []ScopedResourceSelectorRequirement  The expressions.

ScopedResourceSelectorRequirement: A quota scope expression.
  operator* string{DoesNotExist,Exists,In,NotIn}  How the scope relates to the values.
  scopeName* string  Name of the scope.
  values []string  Values for In and NotIn.

ResourceQuotaStatus: Usage of a quota.
  hard map[string]Quantity  Enforced caps.
  used map[string]Quantity  Current usage.

PersistentVolume kind: A piece of storage in the cluster, provisioned by an admin or dynamically.
  spec PersistentVolumeSpec  Description of the volume.
  status PersistentVolumeStatus  Current state of the volume. Read-only.

PersistentVolumeSpec: Description of a persistent volume.
  accessModes []string{ReadOnlyMany,ReadWriteMany,ReadWriteOnce,ReadWriteOncePod}  Ways the volume can be mounted.
  capacity map[string]Quantity  Capacity of the volume (storage).
  claimRef ObjectReference  The claim bound to the volume.
  csi CSIPersistentVolumeSource  Storage from a CSI driver.
  hostPath HostPathVolumeSource  A directory on one node (testing only).
  local LocalVolumeSource  A local disk or directory of a node; needs nodeAffinity.
  mountOptions []string  Mount options used when the volume is mounted.
  nfs NFSVolumeSource  An NFS export.
  nodeAffinity VolumeNodeAffinity  Nodes the volume can be reached from.
  persistentVolumeReclaimPolicy string{Delete,Recycle,Retain}  What happens to the volume once released by its claim.
  storageClassName string  StorageClass of the volume; empty for none.
  volumeAttributesClassName string  VolumeAttributesClass of the volume.
  volumeMode string{Block,Filesystem}  Whether the volume is a filesystem or a raw block device. Defaults to Filesystem.

LocalVolumeSource: A local disk or directory.
  fsType string  Filesystem type of a block device.
  path* string  Path on the node.

CSIPersistentVolumeSource: Storage managed by a CSI driver.
  controllerExpandSecretRef SecretReference  Secret for ControllerExpandVolume calls.
  controllerPublishSecretRef SecretReference  Secret for ControllerPublishVolume calls.
  driver* string  Name of the driver.
  fsType string  Filesystem type.
  nodeExpandSecretRef SecretReference  Secret for NodeExpandVolume calls.
  nodePublishSecretRef SecretReference  Secret for NodePublishVolume calls.
  nodeStageSecretRef SecretReference  Secret for NodeStageVolume calls.
  readOnly boolean  Mount read-only.
  volumeAttributes map[string]string  Driver-specific attributes.
  volumeHandle* string  Volume ID from the driver.

VolumeNodeAffinity: Nodes a volume can be accessed from.
  required NodeSelector  Nodes that can reach the volume.

PersistentVolumeStatus: Current state of a persistent volume.
  lastPhaseTransitionTime Time  When the phase last changed.
  message string  Human-readable details.
  phase string{Available,Bound,Failed,Pending,Released}  Phase of the volume.
  reason string  CamelCase reason for a failure.

PersistentVolumeClaim kind: A user's request for storage.
  spec PersistentVolumeClaimSpec  Desired characteristics of the volume.
  status PersistentVolumeClaimStatus  Current state of the claim. Read-only.

PersistentVolumeClaimSpec: Desired characteristics of a claimed volume.
  accessModes []string{ReadOnlyMany,ReadWriteMany,ReadWriteOnce,ReadWriteOncePod}  Access modes the volume must support.
  dataSource TypedLocalObjectReference  Snapshot or claim to populate the volume from.
  dataSourceRef TypedObjectReference  Populator object to fill the volume from.
  resources VolumeResourceRequirements  Minimum (and maximum) storage.
  selector LabelSelector  Labels of volumes that may be bound.
  storageClassName string  StorageClass of the claim; empty for none, unset for the default class.
  volumeAttributesClassName string  VolumeAttributesClass of the claim.
  volumeMode string{Block,Filesystem}  Filesystem or raw block. Defaults to Filesystem.
  volumeName string  Name of the PersistentVolume to bind to.

VolumeResourceRequirements: Storage requested by a claim.
  limits map[string]Quantity  Largest amount allowed.
  requests map[string]Quantity  Amount requested.

PersistentVolumeClaimStatus: Current state of a claim.
  accessModes []string  Access modes of the bound volume.
  allocatedResourceStatuses map[string]string  Status of resize operations per resource.
  allocatedResources map[string]Quantity  Resources allocated to the claim, resizes included.
  capacity map[string]Quantity  Capacity of the bound volume.
  conditions []PersistentVolumeClaimCondition  Conditions of the claim.
  currentVolumeAttributesClassName string  VolumeAttributesClass currently applied.
  phase string{Bound,Lost,Pending}  Phase of the claim.

PersistentVolumeClaimCondition: A condition of a claim.
  lastProbeTime Time  When the condition was last probed.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

ReplicationController kind: Keeps a number of pod replicas running (the predecessor of ReplicaSet).
  spec ReplicationControllerSpec  Desired behaviour.
  status ReplicationControllerStatus  Most recently observed status. Read-only.

ReplicationControllerSpec: Desired behaviour of a replication controller.
  minReadySeconds int32  Seconds a new pod must be ready before it counts as available.
  replicas int32  Desired number of pods. Defaults to 1.
  selector map[string]string  Labels of the pods counted; defaults to the template's labels.
  template PodTemplateSpec  Pods created when there are too few.

ReplicationControllerStatus: Observed state of a replication controller.
  availableReplicas int32  Pods available for at least minReadySeconds.
  conditions []ReplicationControllerCondition  Conditions.
  fullyLabeledReplicas int32  Pods whose labels match the template's.
  observedGeneration int64  Most recent generation observed.
  readyReplicas int32  Ready pods.
  replicas* int32  Pods currently counted.

ReplicationControllerCondition: A condition of a replication controller.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.
"""

SOURCES = [CORE]
