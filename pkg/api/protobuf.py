"""Decode Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

client-go's typed clients (and so ``kubectl create ...``, ``kubectl drain``,
``kubectl auth ...``) send bodies as the 4 magic bytes ``k8s\\x00`` followed by a
``runtime.Unknown`` envelope whose ``raw`` holds the protobuf encoding of the typed
object. :func:`decode_body` turns such a body into the JSON dict a JSON client would
have sent: ``{"apiVersion", "kind", ...camelCase fields...}``.

One converter walks any message through its descriptor. Field facts the proto
schema does not carry come from the ``kubelab.ptr`` / ``kubelab.inline`` field
options of ``proto/k8s/*.proto``:

* a scalar (or IntOrString) field marked ``ptr`` is a Go pointer: present means set,
  so a present zero value is kept; an unmarked scalar at its zero value is omitted,
  as Go's ``omitempty`` would (Go writes non-pointer fields to the wire always);
* a message field marked ``inline`` is an embedded struct whose JSON fields are
  merged into the parent object;
* a handful of well-known types have their own JSON forms (:data:`_SPECIAL`).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from kubelab.api.pb import (
    apps_v1_pb2,
    authentication_v1_pb2,
    authorization_v1_pb2,
    autoscaling_v1_pb2,
    autoscaling_v2_pb2,
    batch_v1_pb2,
    certificates_v1_pb2,
    coordination_v1_pb2,
    core_v1_pb2,
    discovery_v1_pb2,
    events_v1_pb2,
    meta_v1_pb2,
    options_pb2,
    policy_v1_pb2,
    rbac_v1_pb2,
    runtime_pb2,
    scheduling_v1_pb2,
)

__all__ = [
    "MAGIC",
    "CONTENT_TYPE",
    "ProtobufError",
    "TYPES",
    "decode_body",
    "encode_body",
    "message_to_dict",
]

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """A protobuf body that cannot be decoded; ``str(err)`` is the message for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------
# (apiVersion, kind) -> message class

_KINDS: list[tuple[str, ModuleType, tuple[str, ...]]] = [
    ("v1", core_v1_pb2, (
        "Binding", "ComponentStatus", "ConfigMap", "Endpoints", "Event", "LimitRange", "Namespace",
        "Node", "PersistentVolume", "PersistentVolumeClaim", "Pod", "PodTemplate",
        "ReplicationController", "ResourceQuota", "Secret", "Service", "ServiceAccount",
    )),
    ("apps/v1", apps_v1_pb2, ("ControllerRevision", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet")),
    ("batch/v1", batch_v1_pb2, ("CronJob", "Job")),
    ("policy/v1", policy_v1_pb2, ("Eviction", "PodDisruptionBudget")),
    # Eviction is wire-identical in policy/v1beta1 (older clients fall back to it).
    ("policy/v1beta1", policy_v1_pb2, ("Eviction",)),
    ("rbac.authorization.k8s.io/v1", rbac_v1_pb2, ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")),
    ("scheduling.k8s.io/v1", scheduling_v1_pb2, ("PriorityClass",)),
    ("coordination.k8s.io/v1", coordination_v1_pb2, ("Lease",)),
    ("events.k8s.io/v1", events_v1_pb2, ("Event",)),
    ("discovery.k8s.io/v1", discovery_v1_pb2, ("EndpointSlice",)),
    ("autoscaling/v1", autoscaling_v1_pb2, ("Scale",)),
    ("autoscaling/v2", autoscaling_v2_pb2, ("HorizontalPodAutoscaler",)),
    ("certificates.k8s.io/v1", certificates_v1_pb2, ("CertificateSigningRequest",)),
    ("authentication.k8s.io/v1", authentication_v1_pb2, ("SelfSubjectReview", "TokenRequest", "TokenReview")),
    ("authorization.k8s.io/v1", authorization_v1_pb2, (
        "LocalSubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview",
    )),
]


def _build_types() -> dict[tuple[str, str], type[Message]]:
    types: dict[tuple[str, str], type[Message]] = {}
    for api_version, module, kinds in _KINDS:
        for kind in kinds:
            types[(api_version, kind)] = getattr(module, kind)
        # DeleteOptions is registered in every group version (a DELETE body is
        # encoded with the client's group version) and in meta.k8s.io/v1.
        types[(api_version, "DeleteOptions")] = meta_v1_pb2.DeleteOptions
    types[("meta.k8s.io/v1", "DeleteOptions")] = meta_v1_pb2.DeleteOptions
    return types


TYPES: dict[tuple[str, str], type[Message]] = _build_types()


# ---------------------------------------------------------------------------
# well-known types with their own JSON form

_OMIT = object()
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Go's zero time.Time (0001-01-01T00:00:00Z) as Unix seconds.
_GO_ZERO_SECONDS = -62135596800


def _timestamp(msg: Message, micro: bool) -> Any:
    if not msg.HasField("seconds") and not msg.HasField("nanos"):
        return _OMIT  # Go encodes the zero Time as an empty message; JSON says null
    seconds, nanos = msg.seconds, msg.nanos
    if seconds == _GO_ZERO_SECONDS and nanos == 0:
        return _OMIT
    try:
        when = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ProtobufError(f"timestamp out of range: {seconds} seconds") from None
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if micro:
        if not 0 <= nanos < 1_000_000_000:
            raise ProtobufError(f"timestamp nanos out of range: {nanos}")
        text += f".{nanos // 1000:06d}"
    return text + "Z"


def _time(msg: Message) -> Any:
    # metav1.Time keeps whole seconds (its JSON form has no fraction).
    return _timestamp(msg, micro=False)


def _micro_time(msg: Message) -> Any:
    return _timestamp(msg, micro=True)


def _fraction(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    text = str(whole)
    if frac:
        text += "." + f"{frac:0{digits}d}".rstrip("0")
    return text


def go_duration(ns: int) -> str:
    """Format nanoseconds the way Go's ``time.Duration.String`` does ("1h0m0s", "1.5s", "300ms")."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 6)}ms"
    minutes, rest = divmod(u, 60 * 1_000_000_000)
    hours, minutes = divmod(minutes, 60)
    text = _fraction(rest, 9) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _duration(msg: Message) -> Any:
    return go_duration(msg.duration)


def _json_bytes(raw: bytes, what: str) -> Any:
    if raw.startswith(MAGIC):
        return decode_body(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtobufError(f"{what} does not hold JSON: {err}") from None


def _fields_v1(msg: Message) -> Any:
    if not msg.Raw:
        return _OMIT
    return _json_bytes(msg.Raw, "FieldsV1")


def _raw_extension(msg: Message) -> Any:
    if not msg.raw:
        return _OMIT  # Go's empty RawExtension marshals as null
    return _json_bytes(msg.raw, "RawExtension")


def _quantity(msg: Message) -> Any:
    return msg.string


def _int_or_string(msg: Message) -> Any:
    if msg.type == 0:
        return msg.intVal
    if msg.type == 1:
        return msg.strVal
    raise ProtobufError(f"IntOrString has an invalid type {msg.type}")


def _extra_value(msg: Message) -> Any:
    return list(msg.items)


_SPECIAL: dict[str, Callable[[Message], Any]] = {
    _META + "Time": _time,
    _META + "MicroTime": _micro_time,
    _META + "Duration": _duration,
    _META + "FieldsV1": _fields_v1,
    "k8s.io.apimachinery.pkg.runtime.RawExtension": _raw_extension,
    "k8s.io.apimachinery.pkg.api.resource.Quantity": _quantity,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
    "k8s.io.api.authentication.v1.ExtraValue": _extra_value,
    "k8s.io.api.authorization.v1.ExtraValue": _extra_value,
    "k8s.io.api.certificates.v1.ExtraValue": _extra_value,
}


def _special_is_zero(full_name: str, msg: Message) -> bool:
    """A non-pointer IntOrString left at its zero value is unset, like an unset scalar."""
    if full_name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        return msg.type == 0 and msg.intVal == 0 and not msg.strVal
    return False


# ---------------------------------------------------------------------------
# the generic converter

@dataclass(frozen=True)
class _Field:
    attr: str  # the proto field name (Python attribute)
    name: str  # the JSON name
    fd: FieldDescriptor
    ptr: bool
    inline: bool
    is_map: bool
    repeated: bool
    value_fd: FieldDescriptor | None  # a map's value field


_PLANS: dict[str, list[_Field]] = {}


def _plan(desc: Descriptor) -> list[_Field]:
    plan = _PLANS.get(desc.full_name)
    if plan is not None:
        return plan
    plan = []
    for fd in desc.fields:
        opts = fd.GetOptions()
        is_map = bool(fd.message_type is not None and fd.message_type.GetOptions().map_entry)
        plan.append(_Field(
            attr=fd.name,
            name=fd.json_name,
            fd=fd,
            ptr=opts.Extensions[options_pb2.ptr],
            inline=opts.Extensions[options_pb2.inline],
            is_map=is_map,
            repeated=fd.is_repeated,
            value_fd=fd.message_type.fields_by_name["value"] if is_map else None,
        ))
    _PLANS[desc.full_name] = plan
    return plan


def _element(fd: FieldDescriptor, value: Any) -> Any:
    """One value of a repeated field or a map: no omission inside collections."""
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        special = _SPECIAL.get(fd.message_type.full_name)
        if special is None:
            return message_to_dict(value)
        converted = special(value)
        return None if converted is _OMIT else converted
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def message_to_dict(msg: Message) -> dict[str, Any]:
    """The JSON form of a decoded wire message (no apiVersion/kind)."""
    out: dict[str, Any] = {}
    for f in _plan(msg.DESCRIPTOR):
        if f.is_map:
            entries = getattr(msg, f.attr)
            if entries:
                out[f.name] = {k: _element(f.value_fd, entries[k]) for k in sorted(entries)}
        elif f.repeated:
            items = getattr(msg, f.attr)
            if items:
                out[f.name] = [_element(f.fd, v) for v in items]
        elif f.fd.type == FieldDescriptor.TYPE_MESSAGE:
            if not msg.HasField(f.attr):
                continue
            sub = getattr(msg, f.attr)
            full_name = f.fd.message_type.full_name
            special = _SPECIAL.get(full_name)
            if special is None:
                value = message_to_dict(sub)
            else:
                if not f.ptr and _special_is_zero(full_name, sub):
                    continue
                value = special(sub)
                if value is _OMIT:
                    continue
            if f.inline:
                out.update(value)
            else:
                out[f.name] = value
        elif f.ptr:
            if msg.HasField(f.attr):
                out[f.name] = _element(f.fd, getattr(msg, f.attr))
        else:
            value = getattr(msg, f.attr)
            if value:
                out[f.name] = _element(f.fd, value)
    return out


# ---------------------------------------------------------------------------
# the envelope

def decode_body(raw: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf body into the JSON dict a JSON client would send.

    Raises :class:`ProtobufError` for a missing magic prefix, a malformed or
    truncated envelope or object, and an unknown apiVersion/kind.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ProtobufError("protobuf body must be bytes")
    raw = bytes(raw)
    if not raw.startswith(MAGIC):
        raise ProtobufError("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]")
    envelope = runtime_pb2.Unknown()
    try:
        envelope.ParseFromString(raw[len(MAGIC):])
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ProtobufError(f"unable to decode the protobuf envelope: {err}") from None
    if envelope.contentEncoding:
        raise ProtobufError(f"unsupported protobuf content encoding {envelope.contentEncoding!r}")
    if envelope.contentType and envelope.contentType != CONTENT_TYPE:
        raise ProtobufError(f"unsupported content type {envelope.contentType!r} in the protobuf envelope")
    api_version = envelope.typeMeta.apiVersion
    kind = envelope.typeMeta.kind
    if not kind:
        raise ProtobufError("Object 'Kind' is missing in the protobuf envelope")
    if not api_version:
        raise ProtobufError(f"Object 'apiVersion' is missing in the protobuf envelope of kind {kind!r}")
    cls = TYPES.get((api_version, kind))
    if cls is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{api_version}"')
    obj = cls()
    try:
        obj.ParseFromString(envelope.raw)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ProtobufError(f"unable to decode {api_version}, Kind={kind}: {err}") from None
    try:
        fields = message_to_dict(obj)
    except ProtobufError:
        raise
    except (UnicodeDecodeError, ValueError, TypeError) as err:
        raise ProtobufError(f"unable to decode {api_version}, Kind={kind}: {err}") from None
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    body.update(fields)
    return body


def encode_body(api_version: str, kind: str, obj: Message) -> bytes:
    """Wrap an encoded typed object in the envelope, as client-go does (for tests and tools)."""
    envelope = runtime_pb2.Unknown()
    envelope.typeMeta.apiVersion = api_version
    envelope.typeMeta.kind = kind
    envelope.raw = obj.SerializeToString()
    return MAGIC + envelope.SerializeToString()
