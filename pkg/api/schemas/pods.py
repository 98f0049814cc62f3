"""core/v1: Pod, its spec (containers, probes, security, scheduling), volumes and status."""

# Fields Container and EphemeralContainer share (EphemeralContainer adds targetContainerName).
_CONTAINER_FIELDS = """\
  args []string  Arguments to the entrypoint; the image's CMD is used when empty. $(VAR) references are expanded from the container's environment.
  command []string  Entrypoint array, run without a shell; the image's ENTRYPOINT is used when empty. $(VAR) references are expanded.
  env []EnvVar  Environment variables to set in the container.
  envFrom []EnvFromSource  Sources (ConfigMaps, Secrets) whose keys become environment variables; env entries win on conflicts.
  image string  Container image reference (registry/repository:tag or @digest).
  imagePullPolicy string{Always,IfNotPresent,Never}  When to pull the image. Defaults to Always for :latest (or no tag), IfNotPresent otherwise.
  lifecycle Lifecycle  Actions the kubelet runs right after the container starts and before it stops.
  livenessProbe Probe  Periodic check of container liveness; the container is restarted when it fails.
  name* string  Name of the container (a DNS label), unique within the pod.
  ports []ContainerPort  Ports the container exposes; informational, a listening port is reachable whether listed or not.
  readinessProbe Probe  Periodic check of container readiness; a failing container is taken out of Service endpoints.
  resizePolicy []ContainerResizePolicy  How each resource may be resized in place.
  resources ResourceRequirements  Compute resources (cpu, memory, ...) the container requests and is limited to.
  restartPolicy string  Per-container restart policy; set to Always on an init container to make it a sidecar.
  securityContext SecurityContext  Security options of the container; they override the pod-level settings.
  startupProbe Probe  Check that must succeed before the other probes start; failing it restarts the container.
  stdin boolean  Allocate a buffer for stdin in the runtime; otherwise reads from stdin get EOF.
  stdinOnce boolean  Close stdin after the first attach session ends.
  terminationMessagePath string  File whose contents become the termination message. Defaults to /dev/termination-log.
  terminationMessagePolicy string{FallbackToLogsOnError,File}  Where the termination message comes from. Defaults to File.
  tty boolean  Allocate a TTY for the container; needs stdin too.
  volumeDevices []VolumeDevice  Block devices from the pod's volumes to expose in the container.
  volumeMounts []VolumeMount  Pod volumes to mount into the container's filesystem.
  workingDir string  Working directory of the entrypoint; the image's default when empty.
"""

POD = f"""
package core/v1

Pod kind: A group of containers that are scheduled together onto one node and share its network and storage.
  spec PodSpec  Desired behaviour of the pod.
  status PodStatus  Most recently observed state of the pod, written by the system. Read-only.

PodTemplate kind: A stored pod template for controllers to copy.
  template PodTemplateSpec  The pod template.

PodTemplateSpec: The pods a controller creates: their metadata and spec.
  metadata ObjectMeta  Metadata (labels above all) given to the created pods.
  spec PodSpec  Spec of the created pods.

PodSpec: Description of a pod: its containers, volumes and how and where it runs.
  activeDeadlineSeconds int64  Seconds the pod may be active (counted from its start) before the system fails it.
  affinity Affinity  Node affinity, pod affinity and anti-affinity scheduling rules.
  automountServiceAccountToken boolean  Whether a service account token is mounted automatically.
  containers* []Container  The containers of the pod; at least one. Cannot be added or removed once created.
  dnsConfig PodDNSConfig  DNS settings merged into the generated resolv.conf.
  dnsPolicy string{{ClusterFirst,ClusterFirstWithHostNet,Default,None}}  How the pod's DNS is set up. Defaults to ClusterFirst.
  enableServiceLinks boolean  Whether Service environment variables (docker link style) are injected. Defaults to true.
  ephemeralContainers []EphemeralContainer  Debug containers added to a running pod through the ephemeralcontainers subresource.
  hostAliases []HostAlias  Extra entries for the pod's /etc/hosts.
  hostIPC boolean  Use the node's IPC namespace.
  hostNetwork boolean  Use the node's network namespace; ports then bind on the node.
  hostPID boolean  Use the node's PID namespace.
  hostUsers boolean  Use the node's user namespace (true, the default) or a new one for the pod (false).
  hostname string  Hostname of the pod; defaults to the pod's name.
  imagePullSecrets []LocalObjectReference  Secrets in the pod's namespace with registry credentials for pulling images.
  initContainers []Container  Containers run to completion, one at a time and in order, before the app containers start.
  nodeName string  Node the pod is bound to; set by the scheduler (setting it bypasses scheduling).
  nodeSelector map[string]string  Labels a node must have for the pod to be scheduled onto it.
  os PodOS  Operating system the pod's containers need.
  overhead map[string]Quantity  Resources used by the pod sandbox on top of the containers' requests; set from the RuntimeClass.
  preemptionPolicy string{{Never,PreemptLowerPriority}}  Whether the pod may preempt lower-priority pods. Defaults to PreemptLowerPriority.
  priority int32  Priority value, resolved from priorityClassName by the admission controller.
  priorityClassName string  Name of the PriorityClass giving the pod its priority.
  readinessGates []PodReadinessGate  Extra pod conditions that must be True for the pod to be ready.
  resourceClaims []PodResourceClaim  Dynamic resource claims the containers may use.
  resources ResourceRequirements  Pod-level resource requests and limits shared by all containers.
  restartPolicy string{{Always,Never,OnFailure}}  Restart policy of the containers. Defaults to Always.
  runtimeClassName string  RuntimeClass used to run the pod.
  schedulerName string  Scheduler that places the pod. Defaults to default-scheduler.
  schedulingGates []PodSchedulingGate  Gates that keep the pod from being scheduled while any remains.
  securityContext PodSecurityContext  Pod-level security attributes and common container settings.
  serviceAccount string  Deprecated alias of serviceAccountName.
  serviceAccountName string  Service account the pod runs as. Defaults to default.
  setHostnameAsFQDN boolean  Set the kernel hostname to the pod's fully qualified domain name.
  shareProcessNamespace boolean  Share one process namespace among all the pod's containers.
  subdomain string  Subdomain; the pod's FQDN becomes <hostname>.<subdomain>.<namespace>.svc.<cluster domain>.
  terminationGracePeriodSeconds int64  Seconds between the stop signal and the kill on deletion. Defaults to 30.
  tolerations []Toleration  Taints the pod tolerates.
  topologySpreadConstraints []TopologySpreadConstraint  How the pod's replicas spread across topology domains.
  volumes []Volume  Volumes the containers can mount.

Container: A single application container of a pod.
{_CONTAINER_FIELDS}
EphemeralContainer: A temporary container added to a running pod, usually for debugging; it has no ports, probes or resources and is never restarted.
{_CONTAINER_FIELDS}  targetContainerName string  Container whose namespaces (PID, IPC) the ephemeral container joins.

ContainerPort: A network port of a container.
  containerPort* int32  Port number on the pod's IP address (1-65535).
  hostIP string  Node IP to bind the host port to.
  hostPort int32  Port number to expose on the node (1-65535); most containers do not need one.
  name string  Name of the port (an IANA service name), unique within the pod; Services can refer to it.
  protocol string{{SCTP,TCP,UDP}}  Protocol of the port. Defaults to TCP.

EnvVar: An environment variable of a container.
  name* string  Name of the variable.
  value string  Value; $(VAR) references to earlier variables are expanded, $$ escapes a dollar sign.
  valueFrom EnvVarSource  Source of the value; cannot be used together with value.

EnvVarSource: Where an environment variable's value comes from.
  configMapKeyRef ConfigMapKeySelector  A key of a ConfigMap.
  fieldRef ObjectFieldSelector  A field of the pod: metadata.name, metadata.namespace, metadata.labels['k'], spec.nodeName, status.podIP, ...
  fileKeyRef FileKeySelector  A key in an env file on a volume.
  resourceFieldRef ResourceFieldSelector  A resource request or limit of a container.
  secretKeyRef SecretKeySelector  A key of a Secret.

ConfigMapKeySelector: A key of a ConfigMap in the pod's namespace.
  key* string  The key.
  name string  Name of the ConfigMap.
  optional boolean  Whether a missing ConfigMap or key is allowed.

SecretKeySelector: A key of a Secret in the pod's namespace.
  key* string  The key.
  name string  Name of the Secret.
  optional boolean  Whether a missing Secret or key is allowed.

FileKeySelector: A key in an env-format file on one of the pod's volumes.
  key* string  The key (variable name) in the file.
  optional boolean  Whether a missing file or key is allowed.
  path* string  Path of the file inside the volume.
  volumeName* string  Name of the volume holding the file.

ObjectFieldSelector: Selects a field of the pod.
  apiVersion string  Version of the schema the path is written against. Defaults to v1.
  fieldPath* string  Path of the field to select.

ResourceFieldSelector: Selects a resource of a container (limits.cpu, requests.memory, ...).
  containerName string  Container name; required for volumes, optional for environment variables.
  divisor Quantity  Unit the value is expressed in. Defaults to 1.
  resource* string  The resource to select.

EnvFromSource: A source whose keys all become environment variables.
  configMapRef ConfigMapEnvSource  A ConfigMap to read from.
  prefix string  Prefix added to every key.
  secretRef SecretEnvSource  A Secret to read from.

ConfigMapEnvSource: A ConfigMap whose keys become environment variables.
  name string  Name of the ConfigMap.
  optional boolean  Whether the ConfigMap may be missing.

SecretEnvSource: A Secret whose keys become environment variables.
  name string  Name of the Secret.
  optional boolean  Whether the Secret may be missing.

ResourceRequirements: Compute resources requested by and limited for a container (or pod).
  claims []ResourceClaim  Dynamic resource claims (from spec.resourceClaims) the container uses.
  limits map[string]Quantity  Maximum amount of each resource allowed.
  requests map[string]Quantity  Amount of each resource reserved for scheduling; defaults to the limits when omitted.

ResourceClaim: A reference to one of the pod's resource claims.
  name* string  Name of an entry in the pod's spec.resourceClaims.
  request string  A single request within the claim; all of the claim when empty.

ContainerResizePolicy: How one resource of a container is resized in place.
  resourceName* string  Name of the resource (cpu, memory).
  restartPolicy* string{{NotRequired,RestartContainer}}  Whether the container is restarted to apply a resize.

VolumeMount: A volume mounted into a container.
  mountPath* string  Path inside the container; must not contain ':'.
  mountPropagation string{{Bidirectional,HostToContainer,None}}  How mounts propagate between host and container. Defaults to None.
  name* string  Name of the pod volume.
  readOnly boolean  Mount read-only.
  recursiveReadOnly string{{Disabled,Enabled,IfPossible}}  Whether a read-only mount is made read-only recursively.
  subPath string  Path within the volume to mount instead of its root.
  subPathExpr string  Like subPath with $(VAR) references expanded from the container environment.

VolumeDevice: A raw block volume exposed in a container.
  devicePath* string  Path of the device inside the container.
  name* string  Name of the pod's PersistentVolumeClaim volume.

Probe: A check the kubelet runs against a container.
  exec ExecAction  Run a command in the container; exit status 0 is success.
  failureThreshold int32  Consecutive failures that make the probe failed. Defaults to 3.
  grpc GRPCAction  Call the gRPC health checking service.
  httpGet HTTPGetAction  Send an HTTP GET; a 2xx or 3xx answer is success.
  initialDelaySeconds int32  Seconds after the container starts before the first probe.
  periodSeconds int32  Seconds between probes. Defaults to 10.
  successThreshold int32  Consecutive successes that make a failed probe pass again. Defaults to 1 (and must be 1 for liveness and startup).
  tcpSocket TCPSocketAction  Open a TCP connection; success when it connects.
  terminationGracePeriodSeconds int64  Grace period used when a failed probe kills the container, overriding the pod's.
  timeoutSeconds int32  Seconds after which the probe times out. Defaults to 1.

ExecAction: Run a command in the container.
  command []string  Command line, run directly (not in a shell) in the container's root directory.

HTTPGetAction: An HTTP GET request.
  host string  Host to connect to; the pod IP by default (use the Host header to set the virtual host).
  httpHeaders []HTTPHeader  Extra request headers.
  path string  Path of the request.
  port* IntOrString  Port number or name on the container.
  scheme string{{HTTP,HTTPS}}  Scheme. Defaults to HTTP.

HTTPHeader: An HTTP header.
  name* string  Header name.
  value* string  Header value.

TCPSocketAction: A TCP connection attempt.
  host string  Host to connect to; the pod IP by default.
  port* IntOrString  Port number or name on the container.

GRPCAction: A gRPC health check call.
  port* int32  Port number of the gRPC service.
  service string  Service name sent in the HealthCheckRequest.

SleepAction: Sleep before continuing.
  seconds* int64  Seconds to sleep.

Lifecycle: Actions run by the kubelet at container lifecycle events.
  postStart LifecycleHandler  Run right after the container is created; the container is restarted if it fails.
  preStop LifecycleHandler  Run before the container is stopped by an API request or management event.
  stopSignal string  Signal used to stop the container; the image's STOPSIGNAL or SIGTERM by default.

LifecycleHandler: One lifecycle action; exactly one of the fields is set.
  exec ExecAction  Run a command in the container.
  httpGet HTTPGetAction  Send an HTTP GET.
  sleep SleepAction  Sleep for a while.
  tcpSocket TCPSocketAction  Deprecated; kept for compatibility and not run.

SecurityContext: Security options of one container; they override the pod's security context.
  allowPrivilegeEscalation boolean  Whether a process may gain more privileges than its parent (no_new_privs off).
  appArmorProfile AppArmorProfile  AppArmor profile of the container.
  capabilities Capabilities  Linux capabilities to add and drop.
  privileged boolean  Run privileged, equivalent to root on the node.
  procMount string{{Default,Unmasked}}  How /proc is mounted. Defaults to Default.
  readOnlyRootFilesystem boolean  Mount the root filesystem read-only.
  runAsGroup int64  GID of the container process.
  runAsNonRoot boolean  Refuse to start the container if it would run as UID 0.
  runAsUser int64  UID of the container process.
  seLinuxOptions SELinuxOptions  SELinux context of the container.
  seccompProfile SeccompProfile  Seccomp profile of the container.
  windowsOptions WindowsSecurityContextOptions  Windows-specific settings.

PodSecurityContext: Pod-level security attributes and defaults for the containers' security contexts.
  appArmorProfile AppArmorProfile  AppArmor profile of the containers.
  fsGroup int64  Supplemental group that owns the pod's volumes and is added to every container process.
  fsGroupChangePolicy string{{Always,OnRootMismatch}}  When volume ownership is changed to the fsGroup.
  runAsGroup int64  GID of the container processes.
  runAsNonRoot boolean  Refuse to start containers that would run as UID 0.
  runAsUser int64  UID of the container processes.
  seLinuxChangePolicy string  How SELinux labels are applied to volumes.
  seLinuxOptions SELinuxOptions  SELinux context of the containers.
  seccompProfile SeccompProfile  Seccomp profile of the containers.
  supplementalGroups []int64  Extra GIDs for the first process of each container.
  supplementalGroupsPolicy string{{Merge,Strict}}  How the supplementary groups of the first process are computed.
  sysctls []Sysctl  Namespaced sysctls set for the pod.
  windowsOptions WindowsSecurityContextOptions  Windows-specific settings.

Capabilities: Linux capabilities to add to and drop from the default set.
  add []string  Capabilities to add.
  drop []string  Capabilities to drop.

SELinuxOptions: SELinux labels.
  level string  SELinux level label.
  role string  SELinux role label.
  type string  SELinux type label.
  user string  SELinux user label.

SeccompProfile: A seccomp profile.
  localhostProfile string  Profile file on the node, relative to the kubelet's seccomp directory; for Localhost only.
  type* string{{Localhost,RuntimeDefault,Unconfined}}  Kind of profile.

AppArmorProfile: An AppArmor profile.
  localhostProfile string  Name of a profile loaded on the node; for Localhost only.
  type* string{{Localhost,RuntimeDefault,Unconfined}}  Kind of profile.

WindowsSecurityContextOptions: Windows-specific security settings.
  gmsaCredentialSpec string  Inlined GMSA credential spec.
  gmsaCredentialSpecName string  Name of the GMSA credential spec.
  hostProcess boolean  Run as a host process container.
  runAsUserName string  Windows user name to run the entrypoint as.

Sysctl: A kernel parameter to set.
  name* string  Name of the parameter.
  value* string  Value of the parameter.

Affinity: Affinity scheduling rules.
  nodeAffinity NodeAffinity  Node affinity rules.
  podAffinity PodAffinity  Rules to co-locate the pod with other pods.
  podAntiAffinity PodAntiAffinity  Rules to keep the pod away from other pods.

NodeAffinity: Rules on the labels of the node a pod may run on.
  preferredDuringSchedulingIgnoredDuringExecution []PreferredSchedulingTerm  Weighted preferences; the scheduler favours nodes matching more weight.
  requiredDuringSchedulingIgnoredDuringExecution NodeSelector  Hard requirement at scheduling time; not re-checked afterwards.

NodeSelector: Terms over node labels and fields; a node matches when any term matches.
  nodeSelectorTerms* []NodeSelectorTerm  The terms, ORed.

NodeSelectorTerm: Requirements on a node that are ANDed; an empty term matches no node.
  matchExpressions []NodeSelectorRequirement  Requirements on node labels.
  matchFields []NodeSelectorRequirement  Requirements on node fields (metadata.name).

NodeSelectorRequirement: One requirement on a node label or field.
  key* string  Label key or field name.
  operator* string{{DoesNotExist,Exists,Gt,In,Lt,NotIn}}  How the value relates to the values.
  values []string  Values; one integer for Gt and Lt, none for Exists and DoesNotExist.

PreferredSchedulingTerm: A weighted node selector term.
  preference* NodeSelectorTerm  The term.
  weight* int32  Weight (1-100) added for nodes matching the term.

PodAffinity: Rules to place the pod in the same topology domain as other pods.
  preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm  Weighted preferences.
  requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm  Hard requirements at scheduling time.

PodAntiAffinity: Rules to keep the pod out of topology domains holding other pods.
  preferredDuringSchedulingIgnoredDuringExecution []WeightedPodAffinityTerm  Weighted preferences.
  requiredDuringSchedulingIgnoredDuringExecution []PodAffinityTerm  Hard requirements at scheduling time.

PodAffinityTerm: A set of pods and the topology key that defines being together.
  labelSelector LabelSelector  The pods.
  matchLabelKeys []string  Label keys whose values on the incoming pod are added to labelSelector with In.
  mismatchLabelKeys []string  Label keys whose values on the incoming pod are added to labelSelector with NotIn.
  namespaceSelector LabelSelector  Namespaces to look in, by label; together with namespaces.
  namespaces []string  Namespaces to look in; the pod's own when both this and namespaceSelector are empty.
  topologyKey* string  Node label whose value defines a topology domain (e.g. kubernetes.io/hostname).

WeightedPodAffinityTerm: A weighted pod affinity term.
  podAffinityTerm* PodAffinityTerm  The term.
  weight* int32  Weight (1-100) added for nodes satisfying the term.

Toleration: Lets the pod be scheduled onto (or stay on) nodes with a matching taint.
  effect string{{NoExecute,NoSchedule,PreferNoSchedule}}  Taint effect to match; empty matches every effect.
  key string  Taint key to match; empty with operator Exists matches every taint.
  operator string{{Equal,Exists}}  How key and value are compared. Defaults to Equal.
  tolerationSeconds int64  For NoExecute: seconds the pod stays bound after the taint appears; forever when unset.
  value string  Taint value to match with Equal.

TopologySpreadConstraint: How matching pods are spread across the domains of a topology.
  labelSelector LabelSelector  Pods counted in each domain.
  matchLabelKeys []string  Label keys whose values on the incoming pod narrow the selector.
  maxSkew* int32  Largest allowed difference between the pod counts of two domains.
  minDomains int32  Minimum number of eligible domains.
  nodeAffinityPolicy string{{Honor,Ignore}}  Whether the pod's node affinity limits the domains counted.
  nodeTaintsPolicy string{{Honor,Ignore}}  Whether node taints limit the domains counted.
  topologyKey* string  Node label key that defines the domains.
  whenUnsatisfiable* string{{DoNotSchedule,ScheduleAnyway}}  What to do when the constraint cannot be met.

PodDNSConfig: DNS settings of a pod.
  nameservers []string  Name server IPs, added to those from the DNS policy.
  options []PodDNSConfigOption  Resolver options; they override those from the policy.
  searches []string  Search domains, added to those from the policy.

PodDNSConfigOption: A resolver option.
  name string  Option name.
  value string  Option value.

HostAlias: An /etc/hosts entry.
  hostnames []string  Host names for the IP.
  ip* string  IP address.

LocalObjectReference: A reference to an object in the same namespace.
  name string  Name of the referent.

PodOS: Operating system of the pod.
  name* string{{linux,windows}}  Operating system name.

PodReadinessGate: An extra condition required for pod readiness.
  conditionType* string  Type of a pod condition that must be True.

PodResourceClaim: A named dynamic resource claim of the pod.
  name* string  Name of the claim inside the pod.
  resourceClaimName string  Name of an existing ResourceClaim.
  resourceClaimTemplateName string  Name of a ResourceClaimTemplate from which a claim is made for the pod.

PodSchedulingGate: A gate that blocks scheduling.
  name* string  Name of the gate.

Volume: A named volume of the pod and its source; exactly one source is set.
  configMap ConfigMapVolumeSource  Keys of a ConfigMap as files.
  csi CSIVolumeSource  An ephemeral volume from a CSI driver.
  downwardAPI DownwardAPIVolumeSource  Pod fields and container resources as files.
  emptyDir EmptyDirVolumeSource  An empty directory that lives as long as the pod.
  ephemeral EphemeralVolumeSource  A PersistentVolumeClaim created for the pod and deleted with it.
  hostPath HostPathVolumeSource  A file or directory of the node.
  image ImageVolumeSource  The contents of an OCI image or artifact, read-only.
  name* string  Name of the volume (a DNS label), unique within the pod.
  nfs NFSVolumeSource  An NFS export.
  persistentVolumeClaim PersistentVolumeClaimVolumeSource  A PersistentVolumeClaim in the pod's namespace.
  projected ProjectedVolumeSource  Several sources (secrets, config maps, downward API, tokens) in one directory.
  secret SecretVolumeSource  Keys of a Secret as files.

ConfigMapVolumeSource: A ConfigMap projected into a volume.
  defaultMode int32  Permission bits of the files (0000-0777). Defaults to 0644.
  items []KeyToPath  Keys to project and where; all keys, as files named after them, when empty.
  name string  Name of the ConfigMap.
  optional boolean  Whether the ConfigMap (and listed keys) may be missing.

SecretVolumeSource: A Secret projected into a volume.
  defaultMode int32  Permission bits of the files (0000-0777). Defaults to 0644.
  items []KeyToPath  Keys to project and where; all keys when empty.
  optional boolean  Whether the Secret (and listed keys) may be missing.
  secretName string  Name of the Secret in the pod's namespace.

KeyToPath: A key projected to a file path.
  key* string  The key.
  mode int32  Permission bits of this file; defaults to the volume's defaultMode.
  path* string  Relative path of the file; may not contain '..'.

EmptyDirVolumeSource: A temporary directory that shares the pod's lifetime.
  medium string  Storage medium: empty for the node's default, or Memory for a tmpfs.
  sizeLimit Quantity  Most local storage the volume may use.

HostPathVolumeSource: A path on the node.
  path* string  Path on the node; a symlink is followed.
  type string{{"",BlockDevice,CharDevice,Directory,DirectoryOrCreate,File,FileOrCreate,Socket}}  What must exist at the path; no check when empty.

PersistentVolumeClaimVolumeSource: A reference to a PersistentVolumeClaim in the pod's namespace.
  claimName* string  Name of the claim.
  readOnly boolean  Mount read-only.

NFSVolumeSource: An NFS export.
  path* string  Exported path.
  readOnly boolean  Mount read-only.
  server* string  Host name or IP of the NFS server.

CSIVolumeSource: An ephemeral inline volume provided by a CSI driver.
  driver* string  Name of the CSI driver.
  fsType string  Filesystem type, passed to the driver.
  nodePublishSecretRef LocalObjectReference  Secret with credentials for the publish calls.
  readOnly boolean  Mount read-only.
  volumeAttributes map[string]string  Driver-specific properties.

ImageVolumeSource: An OCI image or artifact mounted as a volume.
  pullPolicy string{{Always,IfNotPresent,Never}}  When to pull the reference.
  reference string  Image or artifact reference.

DownwardAPIVolumeSource: Pod information as files.
  defaultMode int32  Permission bits of the files. Defaults to 0644.
  items []DownwardAPIVolumeFile  The files.

DownwardAPIVolumeFile: A file holding a pod field or a container resource.
  fieldRef ObjectFieldSelector  A pod field: metadata annotations, labels, name, namespace or uid.
  mode int32  Permission bits of the file.
  path* string  Relative path of the file.
  resourceFieldRef ResourceFieldSelector  A container resource limit or request.

ProjectedVolumeSource: Several sources projected into one directory.
  defaultMode int32  Permission bits of the files. Defaults to 0644.
  sources []VolumeProjection  The sources.

VolumeProjection: One source of a projected volume; exactly one field is set.
  configMap ConfigMapProjection  Keys of a ConfigMap.
  downwardAPI DownwardAPIProjection  Pod fields.
  secret SecretProjection  Keys of a Secret.
  serviceAccountToken ServiceAccountTokenProjection  A bound service account token.

ConfigMapProjection: Keys of a ConfigMap in a projected volume.
  items []KeyToPath  Keys to project; all when empty.
  name string  Name of the ConfigMap.
  optional boolean  Whether the ConfigMap may be missing.

SecretProjection: Keys of a Secret in a projected volume.
  items []KeyToPath  Keys to project; all when empty.
  name string  Name of the Secret.
  optional boolean  Whether the Secret may be missing.

DownwardAPIProjection: Pod fields in a projected volume.
  items []DownwardAPIVolumeFile  The files.

ServiceAccountTokenProjection: A token of the pod's service account, refreshed by the kubelet.
  audience string  Intended audience of the token; the API server's by default.
  expirationSeconds int64  Requested lifetime of the token. Defaults to one hour; at least 10 minutes.
  path* string  Relative path of the token file.

EphemeralVolumeSource: A volume backed by a claim created for the pod.
  volumeClaimTemplate PersistentVolumeClaimTemplate  Template of the claim, named <pod>-<volume>.

PersistentVolumeClaimTemplate: The claim an ephemeral volume creates.
  metadata ObjectMeta  Labels and annotations copied to the claim.
  spec* PersistentVolumeClaimSpec  Spec of the claim.

PodStatus: Observed state of a pod.
  conditions []PodCondition  Current service state of the pod (PodScheduled, Initialized, ContainersReady, Ready, ...).
  containerStatuses []ContainerStatus  Status of each app container.
  ephemeralContainerStatuses []ContainerStatus  Status of each ephemeral container.
  hostIP string  Primary IP of the node the pod runs on.
  hostIPs []HostIP  IPs of the node, at most one per family.
  initContainerStatuses []ContainerStatus  Status of each init container.
  message string  Human-readable reason for the pod's state.
  nominatedNodeName string  Node the pod is expected to go to once preemption frees room.
  observedGeneration int64  metadata.generation the status was computed from.
  phase string{{Failed,Pending,Running,Succeeded,Unknown}}  Summary of where the pod is in its lifecycle.
  podIP string  Primary IP address of the pod.
  podIPs []PodIP  IP addresses of the pod, at most one per family.
  qosClass string{{BestEffort,Burstable,Guaranteed}}  Quality of service class derived from the resource requirements.
  reason string  CamelCase reason for the pod's state (e.g. Evicted).
  resize string  Status of an in-place resize.
  resourceClaimStatuses []PodResourceClaimStatus  Names of the ResourceClaims made for the pod.
  startTime Time  When the kubelet acknowledged the pod, before images were pulled.

PodCondition: A condition of a pod.
  lastProbeTime Time  When the condition was last probed.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  observedGeneration int64  metadata.generation the condition was computed from.
  reason string  CamelCase reason of the last transition.
  status* string{{False,True,Unknown}}  Status of the condition.
  type* string  Type of the condition.

PodIP: An IP address of a pod.
  ip* string  The address.

HostIP: An IP address of the pod's node.
  ip* string  The address.

PodResourceClaimStatus: The ResourceClaim made for one of the pod's claims.
  name* string  Name of the entry in spec.resourceClaims.
  resourceClaimName string  Name of the ResourceClaim made for it.

ContainerStatus: Observed state of one container.
  allocatedResources map[string]Quantity  Resources allocated to the container on the node.
  containerID string  Runtime ID of the container, as <type>://<id>.
  image* string  Image the container runs.
  imageID* string  ID (digest) of the image.
  lastState ContainerState  State of the previous termination, if any.
  name* string  Name of the container.
  ready* boolean  Whether the container passes its readiness probe.
  resources ResourceRequirements  Resources actually applied to the running container.
  restartCount* int32  Times the container has been restarted.
  started boolean  Whether the container has passed its startup probe.
  state ContainerState  Current state of the container.
  stopSignal string  Signal that stops the container.
  user ContainerUser  Identity of the container's first process.
  volumeMounts []VolumeMountStatus  Status of the container's volume mounts.

ContainerState: State of a container; exactly one field is set (waiting by default).
  running ContainerStateRunning  The container is running.
  terminated ContainerStateTerminated  The container has terminated.
  waiting ContainerStateWaiting  The container is waiting to start.

ContainerStateRunning: A running container.
  startedAt Time  When the container last (re)started.

ContainerStateTerminated: A terminated container.
  containerID string  Runtime ID of the container.
  exitCode* int32  Exit status of the last termination.
  finishedAt Time  When the container last terminated.
  message string  Message about the termination.
  reason string  Short reason for the termination (Completed, Error, OOMKilled, ...).
  signal int32  Signal that ended the container.
  startedAt Time  When the execution that terminated had started.

ContainerStateWaiting: A container that is not running yet.
  message string  Why the container is not running yet.
  reason string  Short reason (ContainerCreating, CrashLoopBackOff, ErrImagePull, ...).

ContainerUser: Identity of a container's first process.
  linux LinuxContainerUser  Linux identity.

LinuxContainerUser: Linux identity of a container's first process.
  gid* int64  Primary GID.
  supplementalGroups []int64  Supplementary GIDs.
  uid* int64  UID.

VolumeMountStatus: Status of a volume mount.
  mountPath* string  Path of the mount in the container.
  name* string  Name of the volume.
  readOnly boolean  Whether the mount is read-only.
  recursiveReadOnly string  Whether the read-only mount is recursive.
"""

SOURCES = [POD]
