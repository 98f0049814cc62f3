"""kubelab.api.objcopy.deep_copy: a copy that shares nothing mutable, for any object."""
from kubelab.api.objcopy import deep_copy


def test_copy_is_equal_and_shares_nothing() -> None:
    obj = {"metadata": {"labels": {"a": "b"}, "finalizers": ["x"]}, "spec": {"n": 1, "f": 0.5, "on": True,
                                                                         "none": None, "items": [{"k": [1, 2]}]}}
    out = deep_copy(obj)
    assert out == obj
    out["metadata"]["labels"]["a"] = "changed"
    out["metadata"]["finalizers"].append("y")
    out["spec"]["items"][0]["k"].append(3)
    assert obj == {"metadata": {"labels": {"a": "b"}, "finalizers": ["x"]},
                   "spec": {"n": 1, "f": 0.5, "on": True, "none": None, "items": [{"k": [1, 2]}]}}
    assert type(out["spec"]["on"]) is bool and type(out["spec"]["n"]) is int


def test_values_marshal_cannot_carry_fall_back_to_deepcopy() -> None:
    class Thing:
        def __init__(self) -> None:
            self.v = [1]

    class Mapping(dict):
        pass

    t = Thing()
    out = deep_copy({"thing": t, "m": Mapping(a=[1])})
    assert isinstance(out["thing"], Thing) and out["thing"] is not t and out["thing"].v == [1]
    assert type(out["m"]) is Mapping and out["m"] == {"a": [1]}
