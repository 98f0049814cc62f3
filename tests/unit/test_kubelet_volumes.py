"""Pure pieces of the kubelet's volumes: the AtomicWriter (upstream's atomic_writer_test.go cases:
path validation, updates, removals, nested paths), payload projection (items, modes, optional),
downward API payloads, hostPath type checks, tmpfs sizing and token refresh."""
from __future__ import annotations

import base64
import os
import socket
import stat

import pytest

from kubelab.kubelet.volumes.atomic_writer import AtomicWriter, FileProjection, PayloadError, validate_path
from kubelab.kubelet.volumes.hostpath import HostPathError, check_type
from kubelab.kubelet.volumes.payload import (PayloadSourceError, configmap_payload, downward_api_payload,
                                             secret_payload)
from kubelab.kubelet.volumes.tmpfs import memory_size, pod_memory_limit
from kubelab.kubelet.volumes.token import Token, requires_refresh


@pytest.mark.parametrize("path,err", [
    ("i/am/well/behaved.txt", None), ("keepyourheaddownandfollowtherules.txt", None),
    ("a..b", None), ("...", "must not start with '..'"), ("", "must not be empty"),
    ("/dev/null", "must be relative path"), ("../../dev/null", "must not contain '..'"),
    ("foo/../bar", "must not contain '..'"), ("..foo", "must not start with '..'"),
    ("a/" * 2048 + "b", "must be less than or equal to 4096 characters"),
    ("x" * 256, "filenames must be less than or equal to 255 characters"), ("x" * 255, None),
])
def test_validate_path(path, err):
    if err is None:
        validate_path(path)
    else:
        with pytest.raises(PayloadError, match=err):
            validate_path(path)


def _visible(d):
    out = {}
    for dirpath, dirnames, files in os.walk(d, followlinks=True):
        rel = os.path.relpath(dirpath, d)
        if rel.split(os.sep)[0].startswith(".."):
            continue
        dirnames[:] = [n for n in dirnames if not n.startswith("..")]
        for f in files:
            if f.startswith(".."):
                continue
            p = os.path.join(dirpath, f)
            out[os.path.normpath(os.path.join(rel, f))] = (open(p, "rb").read(), stat.S_IMODE(os.stat(p).st_mode))
    return out


def fp(data, mode=0o644):
    return FileProjection(data.encode() if isinstance(data, str) else data, mode)


@pytest.mark.parametrize("first,second", [
    ({"foo": fp("foo")}, {"foo": fp("foo2")}),                                  # update
    ({"foo": fp("foo"), "bar": fp("bar")}, {"foo": fp("foo")}),                 # removal
    ({"foo/bar.txt": fp("x"), "foo/baz.txt": fp("y")}, {"foo/bar.txt": fp("z")}),  # nested
    ({"a/b/c/d": fp("1"), "e": fp("2", 0o400)}, {"x/y": fp("3", 0o600), "e": fp("2", 0o440)}),  # modes
    ({"foo": fp("foo")}, {}),                                                   # everything removed
    ({}, {"foo": fp(b"\x00\xff")}),
])
def test_atomic_writer_updates(tmp_path, first, second):
    w = AtomicWriter(tmp_path)
    assert w.write(first) is True
    assert _visible(tmp_path) == {k: (v.data, v.mode) for k, v in first.items()}
    old = w.current_dir()
    assert w.write(second) is True
    assert _visible(tmp_path) == {k: (v.data, v.mode) for k, v in second.items()}
    assert not old.exists(), "the previous timestamped dir is removed"
    data_dirs = [p.name for p in tmp_path.iterdir() if p.name.startswith("..") and p.name != "..data"]
    assert data_dirs == [w.current_dir().name]
    assert w.write(second) is False, "an unchanged payload is not written again"


def test_atomic_writer_layout(tmp_path):
    w = AtomicWriter(tmp_path)
    w.write({"key": fp("v"), "dir/file": fp("w")})
    assert os.readlink(tmp_path / "key") == "..data/key"
    assert os.readlink(tmp_path / "dir") == "..data/dir"
    target = os.readlink(tmp_path / "..data")
    assert target.startswith("..") and "/" not in target and (tmp_path / target).is_dir()
    assert stat.S_IMODE(os.stat(tmp_path / target).st_mode) == 0o755
    assert not (tmp_path / "..data_tmp").exists()
    os.unlink(tmp_path / "key")                       # a lost user-visible link comes back
    assert w.write({"key": fp("v"), "dir/file": fp("w")}) is False
    assert (tmp_path / "key").read_text() == "v"


def test_atomic_writer_refuses_bad_payload(tmp_path):
    w = AtomicWriter(tmp_path)
    w.write({"ok": fp("1")})
    with pytest.raises(PayloadError, match="must not contain '..'"):
        w.write({"../escape": fp("x")})
    assert _visible(tmp_path) == {"ok": (b"1", 0o644)}


CM = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}


@pytest.mark.parametrize("items,mode,optional,want,err", [
    (None, 0o644, False, {"a": (b"1", 0o644), "b": (b"2", 0o644), "bin": (b"\x00\x01", 0o644)}, None),
    (None, 0o400, False, {"a": (b"1", 0o400), "b": (b"2", 0o400), "bin": (b"\x00\x01", 0o400)}, None),
    ([{"key": "a", "path": "x/a.txt"}], 0o644, False, {"x/a.txt": (b"1", 0o644)}, None),
    ([{"key": "a", "path": "a", "mode": 0o600}, {"key": "bin", "path": "b"}], 0o444, False,
     {"a": (b"1", 0o600), "b": (b"\x00\x01", 0o444)}, None),
    ([{"key": "missing", "path": "m"}], 0o644, False, None, "configmap references non-existent config key: missing"),
    ([{"key": "missing", "path": "m"}, {"key": "a", "path": "a"}], 0o644, True, {"a": (b"1", 0o644)}, None),
])
def test_configmap_payload(items, mode, optional, want, err):
    if err:
        with pytest.raises(PayloadSourceError, match=err):
            configmap_payload(items, CM, mode, optional)
        return
    got = configmap_payload(items, CM, mode, optional)
    assert {k: (v.data, v.mode) for k, v in got.items()} == want


def test_configmap_payload_optional_missing_object():
    assert configmap_payload(None, None, 0o644, True) == {}
    assert configmap_payload([{"key": "k", "path": "k"}], None, 0o644, True) == {}


def test_secret_payload():
    sec = {"data": {"user": base64.b64encode(b"admin").decode(), "empty": ""}}
    got = secret_payload(None, sec, 0o400, False)
    assert {k: (v.data, v.mode) for k, v in got.items()} == {"user": (b"admin", 0o400), "empty": (b"", 0o400)}
    got = secret_payload([{"key": "user", "path": "u/name", "mode": 0o600}], sec, 0o400, False)
    assert {k: (v.data, v.mode) for k, v in got.items()} == {"u/name": (b"admin", 0o600)}
    with pytest.raises(PayloadSourceError, match="references non-existent secret key: nope"):
        secret_payload([{"key": "nope", "path": "n"}], sec, 0o644, False)


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"b": "2", "a": "1"},
                    "annotations": {"note": 'say "x"'}},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]}}


def test_downward_api_payload():
    items = [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
             {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o600},
             {"path": "./name", "fieldRef": {"fieldPath": "metadata.name"}},
             {"path": "cpu_limit", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu",
                                                        "divisor": "1m"}},
             {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                  "divisor": "1Mi"}}]
    got = downward_api_payload(items, POD, 0o644)
    assert {k: (v.data, v.mode) for k, v in got.items()} == {
        "labels": (b'a="1"\nb="2"', 0o644), "annotations": (b'note="say \\"x\\""', 0o600),
        "name": (b"p", 0o644), "cpu_limit": (b"250", 0o644), "mem": (b"64", 0o644)}
    with pytest.raises(PayloadSourceError, match=r"\[unsupported fieldPath: spec.nodeName, container nope not found\]"):
        downward_api_payload([{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}},
                              {"path": "y", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}],
                             POD, 0o644)


def test_hostpath_types(tmp_path):
    d, f = tmp_path / "dir", tmp_path / "file"
    d.mkdir()
    f.write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        for path, t in [(d, "Directory"), (f, "File"), (tmp_path / "sock", "Socket"), ("/dev/null", "CharDevice"),
                        (tmp_path / "nothing", ""), (d, "DirectoryOrCreate"), (f, "FileOrCreate")]:
            check_type(str(path), t)
        for path, t, msg in [
            (f, "Directory", "is not a directory"), (tmp_path / "missing", "Directory", "is not a directory"),
            (d, "File", "is not a file"), (f, "Socket", "is not a socket file"),
            (f, "CharDevice", "is not a character device"), ("/dev/null", "BlockDevice", "is not a block device"),
            (f, "DirectoryOrCreate", "is not a directory"), (d, "FileOrCreate", "is not a file")]:
            with pytest.raises(HostPathError) as e:
                check_type(str(path), t)
            assert str(e.value) == f"hostPath type check failed: {path} {msg}"
        with pytest.raises(HostPathError, match="^Weird is an invalid volume type$"):
            check_type(str(d), "Weird")
    finally:
        sock.close()
    check_type(str(tmp_path / "new" / "sub"), "DirectoryOrCreate")
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "sub").st_mode) & 0o755 == 0o755
    check_type(str(tmp_path / "newfile"), "FileOrCreate")
    assert (tmp_path / "newfile").is_file()


def _pod(*limits):
    return {"spec": {"containers": [{"name": f"c{i}", "resources": {"limits": {"memory": m}} if m else {}}
                                    for i, m in enumerate(limits)]}}


@pytest.mark.parametrize("pod,size_limit,alloc,want", [
    (_pod(None), None, 8 << 30, 8 << 30),                      # no pod limit: node allocatable
    (_pod("1Gi"), None, 8 << 30, 1 << 30),                     # the pod's memory limit
    (_pod("1Gi", None), None, 8 << 30, 8 << 30),               # not every container has a limit
    (_pod("1Gi", "1Gi"), None, 8 << 30, 2 << 30),
    (_pod("1Gi"), "64Mi", 8 << 30, 64 << 20),                  # sizeLimit below the pod limit
    (_pod("1Gi"), "2Gi", 8 << 30, 1 << 30),                    # sizeLimit above: ignored
    (_pod(None), "0", 8 << 30, 8 << 30),
])
def test_memory_size(pod, size_limit, alloc, want):
    assert memory_size(pod, size_limit, alloc) == want


def test_pod_memory_limit_init_containers():
    pod = _pod("100Mi")
    pod["spec"]["initContainers"] = [{"name": "i", "resources": {"limits": {"memory": "300Mi"}}}]
    assert pod_memory_limit(pod) == 300 << 20


@pytest.mark.parametrize("age_fraction,ttl,want", [
    (0.5, 3600, False), (0.79, 3600, False), (0.81, 3600, True), (1.2, 3600, True),
    (0.5, 3 * 86400, True),         # older than 24 h
    (0.3, 3 * 86400, False),
])
def test_token_requires_refresh(age_fraction, ttl, want):
    issued = 1_000_000.0
    tok = Token("t", issued + ttl, ttl)
    assert requires_refresh(tok, issued + ttl * age_fraction) is want


def test_atomic_writer_fsgroup_ownership(tmp_path):
    from kubelab.kubelet.volumes.ownership import set_volume_ownership
    w = AtomicWriter(tmp_path)
    assert w.write({"a": fp("1", 0o400), "d/b": fp("2", 0o600)},
                   lambda ts: set_volume_ownership(ts, 4321, True)) is True
    for rel, mode in [("a", 0o440), ("d/b", 0o640)]:
        st = os.stat(tmp_path / rel)
        assert (st.st_gid, oct(stat.S_IMODE(st.st_mode))) == (4321, oct(mode))
    st = os.stat(tmp_path / "d")
    assert st.st_gid == 4321 and st.st_mode & stat.S_ISGID and stat.S_IMODE(st.st_mode) & 0o070 == 0o050
    # modes changed by the hook do not make the same payload look changed
    assert w.write({"a": fp("1", 0o400), "d/b": fp("2", 0o600)},
                   lambda ts: set_volume_ownership(ts, 4321, True)) is False
    set_volume_ownership(tmp_path / "rw", None, False)     # no fsGroup: nothing to do, no error
