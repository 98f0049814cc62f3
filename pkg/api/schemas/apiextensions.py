"""apiextensions.k8s.io/v1: CustomResourceDefinition and the structural schema it carries."""

APIEXTENSIONS = """
package apiextensions.k8s.io/v1

CustomResourceDefinition kind: Adds a custom resource kind to the API, served at /apis/<group>/<version>/<plural>.
  spec* CustomResourceDefinitionSpec  The resource to serve.
  status CustomResourceDefinitionStatus  Observed state of the definition. Read-only.

CustomResourceDefinitionSpec: The custom resource to serve.
  conversion CustomResourceConversion  How objects are converted between versions.
  group* string  API group of the resource (e.g. stable.example.com); the definition's name is <plural>.<group>.
  names* CustomResourceDefinitionNames  Names of the resource and its kind.
  preserveUnknownFields boolean  Deprecated: keep fields the schema does not declare; must be false in v1.
  scope* string{Cluster,Namespaced}  Whether objects are namespaced or cluster-scoped.
  versions* []CustomResourceDefinitionVersion  Served versions; exactly one is the storage version.

CustomResourceDefinitionNames: Names of a custom resource.
  categories []string  Groups of resources it belongs to (e.g. all), used by kubectl get <category>.
  kind* string  Kind name, in CamelCase.
  listKind string  Kind of lists. Defaults to <kind>List.
  plural* string  Plural name used in URLs (lowercase).
  shortNames []string  Short names for kubectl.
  singular string  Singular name (lowercase). Defaults to the lowercased kind.

CustomResourceDefinitionVersion: One served version of a custom resource.
  additionalPrinterColumns []CustomResourceColumnDefinition  Extra columns for kubectl get.
  deprecated boolean  Whether the version is deprecated; requests get a warning.
  deprecationWarning string  Warning sent instead of the default one.
  name* string  Version name (v1, v1beta1, ...).
  schema CustomResourceValidation  Schema objects of this version are validated and pruned against.
  selectableFields []SelectableField  Fields usable in field selectors.
  served* boolean  Whether the version is served.
  storage* boolean  Whether objects are stored in this version; exactly one version is.
  subresources CustomResourceSubresources  Status and scale subresources.

CustomResourceColumnDefinition: A column of kubectl get output.
  description string  Description of the column.
  format string  Format of the values.
  jsonPath* string  JSON path of the value, relative to the object.
  name* string  Column header.
  priority int32  0 for the default view, higher only with -o wide.
  type* string{boolean,date,integer,number,string}  Type of the values.

CustomResourceValidation: The schema of a version.
  openAPIV3Schema JSONSchemaProps  Structural OpenAPI v3 schema of the objects.

SelectableField: A field usable in field selectors.
  jsonPath* string  JSON path of the field (a string, integer or boolean).

CustomResourceSubresources: Subresources of a custom resource.
  scale CustomResourceSubresourceScale  The scale subresource.
  status object  The status subresource (an empty object enables it).

CustomResourceSubresourceScale: Where the scale subresource reads and writes.
  labelSelectorPath string  JSON path of the label selector in string form, under .status or .spec.
  specReplicasPath* string  JSON path of the desired replicas, under .spec.
  statusReplicasPath* string  JSON path of the observed replicas, under .status.

CustomResourceConversion: How versions are converted.
  strategy* string{None,Webhook}  None only changes apiVersion; Webhook calls a conversion webhook.
  webhook WebhookConversion  The webhook, for Webhook.

WebhookConversion: A conversion webhook.
  clientConfig WebhookClientConfig  How to reach the webhook.
  conversionReviewVersions* []string  ConversionReview versions the webhook understands.

WebhookClientConfig: How to reach a webhook.
  caBundle byte  PEM CA bundle to verify the webhook's certificate.
  service ServiceReference  An in-cluster service.
  url string  An HTTPS URL.

ServiceReference: A reference to a service.
  name* string  Name of the service.
  namespace* string  Namespace of the service.
  path string  URL path of requests.
  port int32  Port of the service. Defaults to 443.

CustomResourceDefinitionStatus: Observed state of a definition.
  acceptedNames CustomResourceDefinitionNames  Names actually served.
  conditions []CustomResourceDefinitionCondition  Conditions (Established, NamesAccepted, ...).
  observedGeneration int64  Generation observed.
  storedVersions []string  Versions objects have ever been stored in.

CustomResourceDefinitionCondition: A condition of a definition.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  observedGeneration int64  Generation the condition was computed from.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

JSONSchemaProps: A JSON schema (OpenAPI v3 subset, structural) with Kubernetes extensions.
  $ref string  Not allowed in structural schemas.
  $schema string  Schema dialect.
  additionalItems JSONSchemaPropsOrBool  Not allowed in structural schemas.
  additionalProperties JSONSchemaPropsOrBool  Schema of the values of a map (or false).
  allOf []JSONSchemaProps  Schemas that must all match.
  anyOf []JSONSchemaProps  Schemas of which at least one must match.
  default JSON  Default value, applied when the field is missing.
  definitions map[string]JSONSchemaProps  Not allowed in structural schemas.
  dependencies map[string]JSONSchemaPropsOrStringArray  Property dependencies.
  description string  Description of the value.
  enum []JSON  Allowed values.
  example JSON  Example value.
  exclusiveMaximum boolean  Whether maximum itself is excluded.
  exclusiveMinimum boolean  Whether minimum itself is excluded.
  externalDocs ExternalDocumentation  Further documentation.
  format string  Format of the value (int32, date-time, byte, ...).
  id string  Schema ID.
  items JSONSchemaPropsOrArray  Schema of the items of an array.
  maxItems int64  Most items.
  maxLength int64  Longest string length.
  maxProperties int64  Most properties.
  maximum number  Largest number.
  minItems int64  Fewest items.
  minLength int64  Shortest string length.
  minProperties int64  Fewest properties.
  minimum number  Smallest number.
  multipleOf number  The number must be a multiple of this.
  not JSONSchemaProps  Schema that must not match.
  nullable boolean  Whether null is allowed (and kept).
  oneOf []JSONSchemaProps  Schemas of which exactly one must match.
  pattern string  Regular expression strings must match.
  patternProperties map[string]JSONSchemaProps  Schemas of properties by name pattern.
  properties map[string]JSONSchemaProps  Schemas of the properties of an object.
  required []string  Properties that must be present.
  title string  Title of the schema.
  type string  Type of the value (object, array, string, integer, number, boolean).
  uniqueItems boolean  Whether array items must be unique.
  x-kubernetes-embedded-resource boolean  The value is a whole Kubernetes object (apiVersion, kind, metadata).
  x-kubernetes-int-or-string boolean  The value may be an integer or a string.
  x-kubernetes-list-map-keys []string  Keys identifying items of a map-type list.
  x-kubernetes-list-type string{atomic,map,set}  How a list is merged by server-side apply.
  x-kubernetes-map-type string{atomic,granular}  How a map is merged by server-side apply.
  x-kubernetes-preserve-unknown-fields boolean  Keep fields the schema does not declare.
  x-kubernetes-validations []ValidationRule  CEL validation rules.

ExternalDocumentation: A link to further documentation.
  description string  Description of the link.
  url string  The URL.

ValidationRule: A CEL expression a value must satisfy.
  fieldPath string  Field the error is reported on.
  message string  Message shown when the rule fails.
  messageExpression string  CEL expression producing the message.
  optionalOldSelf boolean  Evaluate on create too, with oldSelf unset.
  reason string{FieldValueDuplicate,FieldValueForbidden,FieldValueInvalid,FieldValueRequired}  Reason reported when the rule fails.
  rule* string  The CEL expression; self is the value, oldSelf the previous one.
"""

SOURCES = [APIEXTENSIONS]
