"""The smaller groups: discovery, coordination, events, rbac, policy, autoscaling, scheduling,
certificates and authentication."""

DISCOVERY = """
package discovery.k8s.io/v1

EndpointSlice kind: A subset of the endpoints of a service, grouped by address type.
  addressType* string{FQDN,IPv4,IPv6}  Type of the addresses in the slice. Immutable.
  endpoints* []Endpoint  The endpoints; at most 1000.
  ports []EndpointPort  Ports every endpoint serves; an empty list means no ports, a missing one all ports.

Endpoint: One backend of a service.
  addresses* []string  Addresses of the endpoint (usually exactly one).
  conditions EndpointConditions  Current state of the endpoint.
  deprecatedTopology map[string]string  Deprecated topology labels.
  hints EndpointHints  Hints for topology aware routing.
  hostname string  Host name of the endpoint.
  nodeName string  Node hosting the endpoint.
  targetRef core/v1.ObjectReference  Object (usually a pod) behind the endpoint.
  zone string  Zone the endpoint is in.

EndpointConditions: State of an endpoint.
  ready boolean  Ready to receive traffic (serving and not terminating).
  serving boolean  Passing readiness, regardless of termination.
  terminating boolean  Being terminated.

EndpointHints: Hints about which clients should use an endpoint.
  forNodes []ForNode  Nodes that should use the endpoint.
  forZones []ForZone  Zones that should use the endpoint.

ForNode: A node an endpoint is meant for.
  name* string  Node name.

ForZone: A zone an endpoint is meant for.
  name* string  Zone name.

EndpointPort: A port served by the endpoints of a slice.
  appProtocol string  Application protocol of the port.
  name string  Name of the port, matching the service port name.
  port int32  Port number.
  protocol string{SCTP,TCP,UDP}  Protocol. Defaults to TCP.
"""

COORDINATION = """
package coordination.k8s.io/v1

Lease kind: A lease, used for leader election and node heartbeats.
  spec LeaseSpec  The lease.

LeaseSpec: Holder and timing of a lease.
  acquireTime MicroTime  When the current holder acquired the lease.
  holderIdentity string  Identity of the current holder.
  leaseDurationSeconds int32  Seconds candidates wait after renewTime before they may take the lease.
  leaseTransitions int32  Times the lease changed holders.
  preferredHolder string  Holder that should take the lease next (coordinated election).
  renewTime MicroTime  When the holder last renewed the lease.
  strategy string  Strategy for picking leaders in coordinated election.
"""

EVENTS = """
package events.k8s.io/v1

Event kind: A report of something that happened to an object.
  action string  What was done (or failed) about the regarding object.
  deprecatedCount int32  Count, for compatibility with core/v1 events.
  deprecatedFirstTimestamp Time  First timestamp, for compatibility with core/v1 events.
  deprecatedLastTimestamp Time  Last timestamp, for compatibility with core/v1 events.
  deprecatedSource core/v1.EventSource  Source, for compatibility with core/v1 events.
  eventTime* MicroTime  When the event was first observed.
  note string  Human-readable description (at most 1 kB).
  reason string  Short CamelCase reason.
  regarding core/v1.ObjectReference  Object the event is about.
  related core/v1.ObjectReference  A second object involved.
  reportingController string  Controller that emitted the event (e.g. kubernetes.io/kubelet).
  reportingInstance string  Instance of the controller that emitted the event.
  series EventSeries  The series this event belongs to, when repeated.
  type string  Normal or Warning.

EventSeries: A repeated event.
  count* int32  Occurrences in the series.
  lastObservedTime* MicroTime  Time of the last occurrence.
"""

RBAC = """
package rbac.authorization.k8s.io/v1

Role kind: A namespaced set of permissions.
  rules []PolicyRule  The permissions.

ClusterRole kind: A cluster-wide set of permissions.
  aggregationRule AggregationRule  Builds the rules from other ClusterRoles; the rules are then managed by the controller.
  rules []PolicyRule  The permissions.

PolicyRule: Actions allowed on resources or non-resource URLs.
  apiGroups []string  API groups of the resources; "" is the core group, "*" all groups.
  nonResourceURLs []string  URL paths (like /healthz) allowed, for ClusterRoles only; "*" as a final segment matches any suffix.
  resourceNames []string  Names of the objects the rule is limited to.
  resources []string  Resources (and resource/subresource); "*" for all.
  verbs* []string  Verbs allowed (get, list, watch, create, update, patch, delete, ...); "*" for all.

AggregationRule: How a ClusterRole collects rules.
  clusterRoleSelectors []LabelSelector  Labels of the ClusterRoles whose rules are aggregated.

RoleBinding kind: Grants the permissions of a Role or ClusterRole within a namespace.
  roleRef* RoleRef  The role granted. Cannot be changed.
  subjects []Subject  Who gets the permissions.

ClusterRoleBinding kind: Grants the permissions of a ClusterRole across the cluster.
  roleRef* RoleRef  The ClusterRole granted. Cannot be changed.
  subjects []Subject  Who gets the permissions.

RoleRef: The role a binding grants.
  apiGroup* string  API group of the role (rbac.authorization.k8s.io).
  kind* string{ClusterRole,Role}  Kind of the role.
  name* string  Name of the role.

Subject: A user, group or service account.
  apiGroup string  API group: empty for ServiceAccount, rbac.authorization.k8s.io for User and Group.
  kind* string{Group,ServiceAccount,User}  Kind of subject.
  name* string  Name of the subject.
  namespace string  Namespace of a ServiceAccount.
"""

POLICY = """
package policy/v1

PodDisruptionBudget kind: Limits how many pods of a set voluntary disruptions (evictions) may take down at once.
  spec PodDisruptionBudgetSpec  Desired budget.
  status PodDisruptionBudgetStatus  Most recently observed status. Read-only.

PodDisruptionBudgetSpec: Desired budget.
  maxUnavailable IntOrString  Pods that may be unavailable after an eviction, as a number or a percentage.
  minAvailable IntOrString  Pods that must stay available after an eviction, as a number or a percentage.
  selector LabelSelector  Pods the budget covers.
  unhealthyPodEvictionPolicy string{AlwaysAllow,IfHealthyBudget}  When running but unhealthy pods may be evicted.

PodDisruptionBudgetStatus: Observed state of a budget.
  conditions []Condition  Conditions (DisruptionAllowed).
  currentHealthy* int32  Healthy pods now.
  desiredHealthy* int32  Healthy pods needed.
  disruptedPods map[string]Time  Pods being evicted, with the time the eviction was processed.
  disruptionsAllowed* int32  Evictions allowed now.
  expectedPods* int32  Pods counted by the budget.
  observedGeneration int64  Generation observed when the status was updated.
"""

AUTOSCALING_V2 = """
package autoscaling/v2

HorizontalPodAutoscaler kind: Scales a workload's replicas from observed metrics.
  spec HorizontalPodAutoscalerSpec  Desired behaviour of the autoscaler.
  status HorizontalPodAutoscalerStatus  Current information about the autoscaler. Read-only.

HorizontalPodAutoscalerSpec: Desired behaviour of an autoscaler.
  behavior HorizontalPodAutoscalerBehavior  Scaling speed in each direction.
  maxReplicas* int32  Most replicas the autoscaler may set.
  metrics []MetricSpec  Metrics the desired replica count is computed from; the largest result wins. Defaults to 80% average CPU utilization.
  minReplicas int32  Fewest replicas the autoscaler may set. Defaults to 1.
  scaleTargetRef* CrossVersionObjectReference  The scaled resource.

CrossVersionObjectReference: A reference to a scalable object.
  apiVersion string  API version of the referent.
  kind* string  Kind of the referent.
  name* string  Name of the referent.

HorizontalPodAutoscalerBehavior: Scaling policies per direction.
  scaleDown HPAScalingRules  Rules for scaling down.
  scaleUp HPAScalingRules  Rules for scaling up.

HPAScalingRules: Rules for one scaling direction.
  policies []HPAScalingPolicy  Policies limiting the change per period.
  selectPolicy string{Disabled,Max,Min}  Which policy applies when several do. Defaults to Max.
  stabilizationWindowSeconds int32  Seconds of past recommendations considered to avoid flapping.
  tolerance Quantity  Relative metric change below which no scaling happens.

HPAScalingPolicy: A limit on the change within a period.
  periodSeconds* int32  Length of the period in seconds (1-1800).
  type* string{Percent,Pods}  Whether value is a pod count or a percentage.
  value* int32  Amount of change allowed.

MetricSpec: One metric to scale on; type names the field that is set.
  containerResource ContainerResourceMetricSource  A resource of one container of each pod.
  external ExternalMetricSource  A metric from outside the cluster.
  object ObjectMetricSource  A metric of one object.
  pods PodsMetricSource  A metric averaged over the pods.
  resource ResourceMetricSource  A resource (cpu, memory) of the pods.
  type* string{ContainerResource,External,Object,Pods,Resource}  Kind of metric source.

MetricTarget: Target value of a metric.
  averageUtilization int32  Target average utilization, as a percentage of the requests.
  averageValue Quantity  Target value averaged over the pods.
  type* string{AverageValue,Utilization,Value}  Which target field is used.
  value Quantity  Target value.

MetricIdentifier: A metric by name and labels.
  name* string  Metric name.
  selector LabelSelector  Labels narrowing the metric.

ResourceMetricSource: A resource metric of the pods.
  name* string  Resource name.
  target* MetricTarget  Target value.

ContainerResourceMetricSource: A resource metric of one container in each pod.
  container* string  Container name.
  name* string  Resource name.
  target* MetricTarget  Target value.

PodsMetricSource: A per-pod metric.
  metric* MetricIdentifier  The metric.
  target* MetricTarget  Target value.

ObjectMetricSource: A metric describing one object.
  describedObject* CrossVersionObjectReference  The object.
  metric* MetricIdentifier  The metric.
  target* MetricTarget  Target value.

ExternalMetricSource: A metric from outside the cluster.
  metric* MetricIdentifier  The metric.
  target* MetricTarget  Target value.

HorizontalPodAutoscalerStatus: Current state of an autoscaler.
  conditions []HorizontalPodAutoscalerCondition  Conditions (AbleToScale, ScalingActive, ScalingLimited).
  currentMetrics []MetricStatus  Last read values of the metrics.
  currentReplicas int32  Replicas of the target as last seen.
  desiredReplicas* int32  Replicas the autoscaler last asked for.
  lastScaleTime Time  When the autoscaler last changed the replica count.
  observedGeneration int64  Generation observed by the autoscaler.

HorizontalPodAutoscalerCondition: A condition of an autoscaler.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

MetricStatus: The current value of one metric.
  containerResource ContainerResourceMetricStatus  A container resource metric.
  external ExternalMetricStatus  An external metric.
  object ObjectMetricStatus  An object metric.
  pods PodsMetricStatus  A per-pod metric.
  resource ResourceMetricStatus  A resource metric.
  type* string{ContainerResource,External,Object,Pods,Resource}  Kind of metric source.

MetricValueStatus: Current value of a metric.
  averageUtilization int32  Current average utilization, as a percentage of the requests.
  averageValue Quantity  Current value averaged over the pods.
  value Quantity  Current value.

ResourceMetricStatus: Current value of a resource metric.
  current* MetricValueStatus  The value.
  name* string  Resource name.

ContainerResourceMetricStatus: Current value of a container resource metric.
  container* string  Container name.
  current* MetricValueStatus  The value.
  name* string  Resource name.

PodsMetricStatus: Current value of a per-pod metric.
  current* MetricValueStatus  The value.
  metric* MetricIdentifier  The metric.

ObjectMetricStatus: Current value of an object metric.
  current* MetricValueStatus  The value.
  describedObject* CrossVersionObjectReference  The object.
  metric* MetricIdentifier  The metric.

ExternalMetricStatus: Current value of an external metric.
  current* MetricValueStatus  The value.
  metric* MetricIdentifier  The metric.
"""

AUTOSCALING_V1 = """
package autoscaling/v1

Scale kind without list: The scale subresource of a scalable resource.
  spec ScaleSpec  Desired scale.
  status ScaleStatus  Current scale. Read-only.

ScaleSpec: Desired scale.
  replicas int32  Desired number of instances.

ScaleStatus: Current scale.
  replicas* int32  Observed number of instances.
  selector string  Label selector of the instances, in query-string form.
"""

SCHEDULING = """
package scheduling.k8s.io/v1

PriorityClass kind: Maps a class name to a pod priority value.
  description string  When the class should be used.
  globalDefault boolean  Use this class for pods without priorityClassName; only one class may set it.
  preemptionPolicy string{Never,PreemptLowerPriority}  Whether pods of the class may preempt lower-priority pods. Defaults to PreemptLowerPriority.
  value* int32  Priority given to the pods; higher is more important. Cannot be changed.
"""

CERTIFICATES = """
package certificates.k8s.io/v1

CertificateSigningRequest kind: A request for a certificate signed by a named signer.
  spec* CertificateSigningRequestSpec  The request. Immutable.
  status CertificateSigningRequestStatus  Approval state and the issued certificate.

CertificateSigningRequestSpec: A certificate request.
  expirationSeconds int32  Requested validity of the certificate, at least 600 seconds.
  extra map[string][]string  Extra attributes of the requesting user. Set by the server.
  groups []string  Groups of the requesting user. Set by the server.
  request* byte  PEM-encoded PKCS#10 certificate request.
  signerName* string  Signer asked to sign (e.g. kubernetes.io/kube-apiserver-client).
  uid string  UID of the requesting user. Set by the server.
  usages []string  Key usages requested (digital signature, key encipherment, client auth, server auth, ...).
  username string  Name of the requesting user. Set by the server.

CertificateSigningRequestStatus: State of a certificate request.
  certificate byte  The issued certificate chain, PEM-encoded.
  conditions []CertificateSigningRequestCondition  Approved, Denied and Failed conditions.

CertificateSigningRequestCondition: A condition of a certificate request.
  lastTransitionTime Time  When the status last changed.
  lastUpdateTime Time  When the condition was last updated.
  message string  Human-readable details.
  reason string  CamelCase reason.
  status* string{False,True,Unknown}  Status of the condition.
  type* string{Approved,Denied,Failed}  Type of the condition.
"""

AUTHENTICATION = """
package authentication.k8s.io/v1

SelfSubjectReview kind without list: Tells the caller who the server takes them to be.
  status SelfSubjectReviewStatus  The caller's identity. Set by the server.

SelfSubjectReviewStatus: The identity of the caller.
  userInfo UserInfo  User attributes.

UserInfo: Attributes of an authenticated user.
  extra map[string][]string  Extra attributes from the authenticator.
  groups []string  Groups of the user.
  uid string  Unique ID of the user.
  username string  Name of the user.
"""

METRICS = """
package metrics.k8s.io/v1beta1

NodeMetrics kind: Resource usage of a node (served from its kubelet's resource metrics).
  timestamp Time  When the usage was measured (the end of the window).
  window string  The interval the CPU usage rate was computed over.
  usage map[string]Quantity  Memory working set and CPU usage of the node.

PodMetrics kind: Resource usage of a pod's containers (served from its kubelet's resource metrics).
  timestamp Time  When the usage was measured (the end of the window).
  window string  The interval the CPU usage rate was computed over.
  containers* []ContainerMetrics  Usage of each container.

ContainerMetrics: Resource usage of a container.
  name* string  The container's name.
  usage* map[string]Quantity  Memory working set and CPU usage of the container.
"""

SOURCES = [DISCOVERY, COORDINATION, EVENTS, RBAC, POLICY, AUTOSCALING_V2, AUTOSCALING_V1, SCHEDULING,
           CERTIFICATES, AUTHENTICATION, METRICS]
