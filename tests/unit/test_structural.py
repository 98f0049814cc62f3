"""Structural schema validation, pruning and defaulting of custom resources."""
from kubelab.api import structural

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["small", "large"]},
                "replicas": {"type": "integer", "minimum": 0, "default": 1, "format": "int32"},
                "port": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 3}},
                "name": {"type": "string", "pattern": "^[a-z]+$"},
            },
        }
    },
}


def messages(obj):
    return [e.message() for e in structural.validate(SCHEMA, obj)]


def test_valid_object_has_no_errors():
    assert messages({"spec": {"size": "small", "replicas": 3, "port": "http", "labels": {"a": "b"}}}) == []


def test_type_enum_required_bounds():
    assert messages({"spec": {"replicas": "x"}}) == [
        "spec.size: Required value",
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
    ]
    assert messages({"spec": {"size": "huge"}}) == [
        'spec.size: Unsupported value: "huge": supported values: "small", "large"']
    assert messages({"spec": {"size": "small", "replicas": -1}}) == [
        "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"]
    assert messages({"spec": {"size": "small", "replicas": 2 ** 31}}) == [
        "spec.replicas: Invalid value: 2147483648: spec.replicas in body must be of type int32"]
    assert messages({"spec": {"size": "small", "port": 1.5}})[0].startswith("spec.port: Invalid value: \"number\"")
    assert messages({"spec": {"size": "small", "labels": {"a": 1}}})[0].startswith("spec.labels.a: Invalid value")
    assert messages({"spec": {"size": "small", "name": "A1"}}) == [
        "spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'"]
    errs = messages({"spec": {"size": "small", "items": ["a", "b", "toolong"]}})
    assert len(errs) == 2 and errs[0].startswith("spec.items: Too many: 3: must have at most 2 items")


def test_prune_drops_unknown_fields_and_keeps_preserved():
    unknown: list[str] = []
    obj = {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
           "spec": {"size": "small", "color": "red", "free": {"any": {"thing": 1}}}, "extra": 1}
    out = structural.prune(SCHEMA, obj, "", unknown)
    assert out == {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
                   "spec": {"size": "small", "free": {"any": {"thing": 1}}}}
    assert sorted(unknown) == ["extra", "spec.color"]
    assert obj["spec"]["color"] == "red"  # the input is not changed


def test_defaults_fill_missing_fields_only():
    obj = {"spec": {"size": "small"}}
    structural.apply_defaults(SCHEMA, obj)
    assert obj == {"spec": {"size": "small", "replicas": 1}}
    obj = {"spec": {"size": "small", "replicas": 0}}
    structural.apply_defaults(SCHEMA, obj)
    assert obj["spec"]["replicas"] == 0


def test_structural_errors_name_untyped_fields():
    assert structural.structural_errors({"type": "object", "properties": {"a": {}}}) == [
        "spec.validation.openAPIV3Schema.properties[a].type: Required value: must not be empty for specified "
        "object fields"]
    assert structural.structural_errors({"type": "object"}) == []
