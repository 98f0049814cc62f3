"""meta/v1: object and list metadata, selectors, owner references, conditions."""

META = """
package meta/v1

ObjectMeta: Metadata every persisted object carries: identity, labels, annotations, ownership and lifecycle.
  annotations map[string]string  Free-form key/value data for tools and people; not used to select objects.
  creationTimestamp Time  When the server created the object (UTC). Read-only.
  deletionGracePeriodSeconds int64  Seconds the object is given to terminate gracefully once deletion is requested. Read-only.
  deletionTimestamp Time  When the object will be (or was asked to be) deleted; set by the server on a graceful delete. Read-only.
  finalizers []string  Keys that must be removed (by their controllers) before the object is finally deleted.
  generateName string  Prefix from which the server generates a unique name when name is empty.
  generation int64  Sequence number of the desired state; bumped by the server on spec changes. Read-only.
  labels map[string]string  Identifying key/value pairs used by selectors to group and find objects.
  managedFields []ManagedFieldsEntry  Which manager owns which fields (server-side apply bookkeeping).
  name string  Unique name within the namespace (or the cluster for cluster-scoped kinds); cannot be changed.
  namespace string  Namespace the object lives in; empty for cluster-scoped objects.
  ownerReferences []OwnerReference  Objects this one depends on; when every owner is gone the object is garbage collected.
  resourceVersion string  Opaque version of the object, used for optimistic concurrency and watches. Read-only.
  selfLink string  Deprecated and no longer set.
  uid string  Unique identifier of this incarnation of the object, assigned by the server. Read-only.

ListMeta: Metadata of a list response.
  continue string  Token that fetches the next chunk when the list was limited; empty on the last chunk.
  remainingItemCount int64  Number of items after this chunk, when the server can tell.
  resourceVersion string  Version of the collection at the time of the list; a watch can start from it.
  selfLink string  Deprecated and no longer set.

ManagedFieldsEntry: The fields one manager owns and the operation that made it their owner.
  apiVersion string  Version of the object the field set was recorded against.
  fieldsType string  Format of fieldsV1; only FieldsV1 exists.
  fieldsV1 FieldsV1  The owned fields.
  manager string  Name of the manager (the field manager of the requests).
  operation string{Apply,Update}  Apply for server-side apply, Update for other writes.
  subresource string  Subresource the owning request went to (status, scale, ...), empty for the main resource.
  time Time  When the entry last changed.

OwnerReference: Identifies an owning object; owners must be in the same namespace or cluster-scoped.
  apiVersion* string  API version of the owner.
  blockOwnerDeletion boolean  When true, a foreground deletion of the owner waits for this object to go first.
  controller boolean  True for the one owner that manages this object.
  kind* string  Kind of the owner.
  name* string  Name of the owner.
  uid* string  UID of the owner.

LabelSelector: A label query; the conditions of matchLabels and matchExpressions are ANDed. An empty selector matches everything, a missing one nothing.
  matchExpressions []LabelSelectorRequirement  Requirements on label values.
  matchLabels map[string]string  Labels that must be present with exactly these values.

LabelSelectorRequirement: One requirement of a label selector: a key, an operator and values.
  key* string  Label key the requirement applies to.
  operator* string{DoesNotExist,Exists,In,NotIn}  How the label relates to the values.
  values []string  Values for In and NotIn (must not be empty); must be empty for Exists and DoesNotExist.

Condition: One aspect of an object's current state, in the standard condition shape.
  lastTransitionTime* Time  When the status last changed.
  message* string  Human-readable details of the transition.
  observedGeneration int64  metadata.generation the condition was computed from.
  reason* string  CamelCase machine-readable cause of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition, in CamelCase.

Status: The result of an operation that returns no object, and of every failed request.
  apiVersion string  v1.
  code int32  HTTP status code of the result.
  details StatusDetails  Extra data about the result (the object, causes of a failure).
  kind string  Status.
  message string  Human-readable description of the result.
  metadata ListMeta  Standard list metadata.
  reason string  Machine-readable reason (NotFound, AlreadyExists, Conflict, Invalid, ...).
  status string{Failure,Success}  Outcome of the operation.

StatusDetails: Details of a Status.
  causes []StatusCause  Individual causes of a failure (for Invalid: one per field).
  group string  API group of the object concerned.
  kind string  Kind of the object concerned.
  name string  Name of the object concerned.
  retryAfterSeconds int32  Seconds to wait before retrying.
  uid string  UID of the object concerned.

StatusCause: One cause of a failure.
  field string  Path of the field that caused it (e.g. spec.containers[0].image).
  message string  Human-readable description of the cause.
  reason string  Machine-readable reason (FieldValueRequired, FieldValueInvalid, ...).
"""

SOURCES = [META]
