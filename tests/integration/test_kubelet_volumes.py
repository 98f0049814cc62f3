"""The kubelet's VolumeManager against the real apiserver: payload volumes (a configMap update reaches
the mounted file through resync), secrets and memory emptyDirs on tmpfs and nothing left after
teardown, hostPath type errors, subPath, PVCs bound to hostPath and local PVs, projected volumes and
the service account token request."""
from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import ApiError, Client
from kubelab.kubelet.volumes import Mount, VolumeError, VolumeManager
from kubelab.kubelet.volumes.tmpfs import mounts_under

pytestmark = pytest.mark.integration


def tmpfs_options(path: Path) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == str(path):
                return parts[-1] if parts[parts.index("-") + 1] == "tmpfs" else None
    return None


@pytest.fixture
async def vm(control_plane, tmp_path):
    root = tmp_path / "kubelet"
    async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="kvol-test") as c:
        mgr = VolumeManager(c, root, "kvol-node")
        try:
            yield mgr
        finally:
            for uid in mgr.pod_uids_on_disk():
                await mgr.teardown(uid)
    assert mounts_under(root) == [], "mounts left behind"
    assert not (root / "pods").exists() or not any((root / "pods").iterdir())


def pod(ns: str, volumes: list, containers: list | None = None, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "namespace": ns, "uid": str(uuid.uuid4()), **meta},
            "spec": {"volumes": volumes, "containers": containers or [{"name": "c", "image": "busybox"}]}}


async def test_configmap_update_reaches_file(vm, namespace):
    c = vm.client
    await c.create("v1", "configmaps", {"metadata": {"name": "cfg"}, "data": {"a.conf": "one", "b": "bee"}}, namespace)
    p = pod(namespace, [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o440,
                                                      "items": [{"key": "a.conf", "path": "conf/a.conf"},
                                                                {"key": "b", "path": "b", "mode": 0o600}]}}],
            [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}])
    await vm.setup(p)
    d = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert (d / "conf" / "a.conf").read_text() == "one"
    assert os.readlink(d / "conf") == "..data/conf"
    assert oct(os.stat(d / "conf" / "a.conf").st_mode & 0o777) == oct(0o440)
    assert oct(os.stat(d / "b").st_mode & 0o777) == oct(0o600)
    assert vm.mounts(p, p["spec"]["containers"][0]) == [Mount("/etc/cfg", str(d), True, "private")]
    assert await vm.resync(p) is False

    await c.patch("v1", "configmaps", namespace, "cfg", {"data": {"a.conf": "two"}})
    assert await vm.resync(p) is True
    assert (d / "conf" / "a.conf").read_text() == "two"
    assert await vm.resync(p) is False
    await c.patch("v1", "configmaps", namespace, "cfg", {"data": {"b": None}})
    with pytest.raises(VolumeError) as e:
        await vm.resync(p)
    assert e.value.reason == "FailedMount"
    assert e.value.message == ('MountVolume.SetUp failed for volume "cfg" : configmap references non-existent '
                               'config key: b')
    assert (d / "b").read_text() == "bee", "a failed update leaves the last payload"


async def test_missing_and_optional_sources(vm, namespace):
    p = pod(namespace, [{"name": "cfg", "configMap": {"name": "nope"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(p)
    assert (e.value.reason, e.value.message) == (
        "FailedMount", 'MountVolume.SetUp failed for volume "cfg" : configmap "nope" not found')
    p = pod(namespace, [{"name": "s", "secret": {"secretName": "nope"}}])
    with pytest.raises(VolumeError, match='volume "s" : secret "nope" not found'):
        await vm.setup(p)
    p = pod(namespace, [{"name": "cfg", "configMap": {"name": "later", "optional": True}},
                        {"name": "s", "secret": {"secretName": "nope", "optional": True}}])
    await vm.setup(p)
    d = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert [x.name for x in d.iterdir() if not x.name.startswith("..")] == []
    await vm.client.create("v1", "configmaps", {"metadata": {"name": "later"}, "data": {"k": "v"}}, namespace)
    assert await vm.resync(p) is True
    assert (d / "k").read_text() == "v"


async def test_secret_and_memory_volumes_on_tmpfs(vm, namespace):
    data = {"password": base64.b64encode(b"s3cr3t").decode()}
    await vm.client.create("v1", "secrets", {"metadata": {"name": "db"}, "data": data}, namespace)
    p = pod(namespace, [{"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400}},
                        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        {"name": "disk", "emptyDir": {}}],
            [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "64Mi"}},
              "volumeMounts": [{"name": "db", "mountPath": "/db"}, {"name": "scratch", "mountPath": "/tmp"},
                               {"name": "disk", "mountPath": "/data", "subPath": "sub/dir"}]}])
    await vm.setup(p)
    await vm.setup(p)     # idempotent: no second mount
    vols = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes"
    sec = vols / "kubernetes.io~secret" / "db"
    assert (sec / "password").read_bytes() == b"s3cr3t"
    assert oct(os.stat(sec / "password").st_mode & 0o777) == oct(0o400)
    assert "size=65536k" in (tmpfs_options(sec) or ""), "secret tmpfs sized by the pod's memory limit"
    assert "size=16384k" in (tmpfs_options(vols / "kubernetes.io~empty-dir" / "scratch") or "")
    assert tmpfs_options(vols / "kubernetes.io~empty-dir" / "disk") is None
    assert len(mounts_under(vols)) == 2
    assert oct(os.stat(vols / "kubernetes.io~empty-dir" / "disk").st_mode & 0o777) == oct(0o777)
    ms = vm.mounts(p, p["spec"]["containers"][0])
    assert ms[0] == Mount("/db", str(sec), True, "private")
    assert ms[2].host_path == str(vols / "kubernetes.io~empty-dir" / "disk" / "sub" / "dir")
    assert Path(ms[2].host_path).is_dir()

    await vm.teardown(p["metadata"]["uid"])
    assert mounts_under(vols) == []
    assert not vols.exists()
    assert p["metadata"]["uid"] not in vm.pod_uids_on_disk()
    await vm.teardown(p["metadata"]["uid"])   # idempotent
    assert await vm.resync(p) is False         # a late resync does not bring the volumes back
    assert not vols.exists() and mounts_under(vols) == []


async def test_fsgroup_ownership(vm, namespace):
    await vm.client.create("v1", "configmaps", {"metadata": {"name": "cfg"}, "data": {"k": "v"}}, namespace)
    p = pod(namespace, [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}},
                        {"name": "scratch", "emptyDir": {}}])
    p["spec"]["securityContext"] = {"fsGroup": 2345}
    await vm.setup(p)
    vols = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes"
    st = os.stat(vols / "kubernetes.io~configmap" / "cfg" / "k")
    assert (st.st_gid, oct(st.st_mode & 0o777)) == (2345, oct(0o440))
    st = os.stat(vols / "kubernetes.io~empty-dir" / "scratch")
    assert st.st_gid == 2345 and st.st_mode & 0o2000


async def test_hostpath_types_and_subpaths(vm, namespace, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "file").write_text("x")
    os.symlink("/etc", host / "escape")
    p = pod(namespace, [{"name": "h", "hostPath": {"path": str(host / "missing"), "type": "Directory"}}])
    with pytest.raises(VolumeError) as e:
        await vm.setup(p)
    assert e.value.message == (f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: '
                               f'{host}/missing is not a directory')
    p = pod(namespace, [{"name": "h", "hostPath": {"path": str(host / "file"), "type": "Socket"}}])
    with pytest.raises(VolumeError, match="is not a socket file"):
        await vm.setup(p)

    c = {"name": "c", "image": "busybox", "env": [{"name": "POD", "value": "web-0"}],
         "volumeMounts": [{"name": "h", "mountPath": "/h", "mountPropagation": "HostToContainer"},
                          {"name": "h", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
                          {"name": "new", "mountPath": "/new", "readOnly": True,
                           "mountPropagation": "Bidirectional"}]}
    p = pod(namespace, [{"name": "h", "hostPath": {"path": str(host / "made"), "type": "DirectoryOrCreate"}},
                        {"name": "new", "hostPath": {"path": str(host / "f2"), "type": "FileOrCreate"}}], [c])
    await vm.setup(p)
    assert (host / "made").is_dir() and (host / "f2").is_file()
    assert vm.mounts(p, c) == [Mount("/h", str(host / "made"), False, "rslave"),
                               Mount("/logs", str(host / "made" / "logs" / "web-0"), False, "private"),
                               Mount("/new", str(host / "f2"), True, "rshared")]
    assert (host / "made" / "logs" / "web-0").is_dir()
    assert vm.mounts(p, c, env=[("POD", "web-1")])[1].host_path == str(host / "made" / "logs" / "web-1")

    whole = pod(namespace, [{"name": "h", "hostPath": {"path": str(host)}}])
    await vm.setup(whole)

    def mount_error(vm_entry: dict) -> VolumeError:
        cc = {"name": "c", "image": "busybox", "volumeMounts": [vm_entry]}
        with pytest.raises(VolumeError) as e:
            vm.mounts({**whole, "spec": {**whole["spec"], "containers": [cc]}}, cc)
        assert e.value.reason == "CreateContainerConfigError"
        return e.value

    assert "not within volume path" in mount_error({"name": "h", "mountPath": "/x", "subPath": "escape"}).message
    assert mount_error({"name": "h", "mountPath": "/x", "subPathExpr": "$(NOPE)"}).message == "missing value for NOPE"
    assert mount_error({"name": "zz", "mountPath": "/x"}).message == 'cannot find volume "zz" to mount into container "c"'


async def test_pvc_bound_to_hostpath_and_local_pv(vm, namespace, tmp_path):
    c = vm.client
    data = tmp_path / "pvdata"
    data.mkdir()
    pvs = []
    try:
        for kind, src in [("hp", {"hostPath": {"path": str(data), "type": "Directory"}}),
                          ("loc", {"local": {"path": str(data)},
                                   "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                       {"key": "kubernetes.io/hostname", "operator": "In", "values": ["kvol-node"]}]}]}}})]:
            claim = await c.create("v1", "persistentvolumeclaims", {
                "metadata": {"name": f"claim-{kind}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                         "volumeName": f"pv-{kind}-{namespace}", "storageClassName": ""}}, namespace)
            pv_name = f"pv-{kind}-{namespace}"
            await c.create("v1", "persistentvolumes", {
                "metadata": {"name": pv_name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                         "claimRef": {"namespace": namespace, "name": f"claim-{kind}", "uid": claim["metadata"]["uid"]},
                         **src}})
            pvs.append(pv_name)
        p = pod(namespace, [{"name": "d", "persistentVolumeClaim": {"claimName": "claim-hp"}}],
                [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}])
        with pytest.raises(VolumeError) as e:
            await vm.setup(p)
        assert e.value.message == f"error processing PVC {namespace}/claim-hp: PVC is not bound"
        for kind in ("hp", "loc"):
            pvc = await c.get("v1", "persistentvolumeclaims", namespace, f"claim-{kind}")
            pvc["status"] = {"phase": "Bound"}
            await c.update_status("v1", "persistentvolumeclaims", pvc)
        await vm.setup(p)
        assert vm.mounts(p, p["spec"]["containers"][0]) == [Mount("/d", str(data), False, "private")]
        p = pod(namespace, [{"name": "d", "persistentVolumeClaim": {"claimName": "claim-loc", "readOnly": True}}],
                [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}])
        await vm.setup(p)
        assert vm.mounts(p, p["spec"]["containers"][0]) == [Mount("/d", str(data), True, "private")]
        p = pod(namespace, [{"name": "d", "persistentVolumeClaim": {"claimName": "ghost"}}])
        with pytest.raises(VolumeError, match=f"error processing PVC {namespace}/ghost: failed to fetch PVC from API"):
            await vm.setup(p)
    finally:
        for name in pvs:
            await c.delete("v1", "persistentvolumes", None, name)


async def test_downward_api_and_projected(vm, namespace):
    c = vm.client
    await c.create("v1", "configmaps", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA"}}, namespace)
    await c.create("v1", "secrets", {"metadata": {"name": "tls"},
                                     "data": {"tls.key": base64.b64encode(b"KEY").decode()}}, namespace)
    p = pod(namespace, [
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
        {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"secret": {"name": "tls"}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
        [{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "32Mi"}}}], labels={"app": "a"})
    await vm.setup(p)
    vols = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes"
    info, proj = vols / "kubernetes.io~downward-api" / "info", vols / "kubernetes.io~projected" / "all"
    assert (info / "labels").read_text() == 'app="a"' and (info / "mem").read_text() == "32"
    assert (proj / "ca.crt").read_text() == "CA" and (proj / "tls.key").read_text() == "KEY"
    assert (proj / "namespace").read_text() == namespace
    assert oct(os.stat(proj / "ca.crt").st_mode & 0o777) == oct(0o440)
    assert tmpfs_options(info) and tmpfs_options(proj)
    p["metadata"]["labels"] = {"app": "b", "x": "y"}
    assert await vm.resync(p) is True
    assert (info / "labels").read_text() == 'app="b"\nx="y"'


def token_volume(sa_audience: str | None = None) -> dict:
    tok = {"path": "token", "expirationSeconds": 3607}
    if sa_audience:
        tok["audience"] = sa_audience
    return {"name": "kube-api-access", "projected": {"sources": [
        {"serviceAccountToken": tok},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}


async def test_token_request_failure_writes_nothing(vm, namespace):
    c = vm.client
    await c.create("v1", "configmaps", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA"}}, namespace)
    p = pod(namespace, [token_volume()])
    p["spec"]["serviceAccountName"] = "no-such-sa"
    with pytest.raises(VolumeError) as e:
        await vm.setup(p)
    assert e.value.reason == "FailedMount"
    assert e.value.message.startswith('MountVolume.SetUp failed for volume "kube-api-access" : failed to fetch token: ')
    d = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes" / "kubernetes.io~projected" / "kube-api-access"
    assert not (d / "..data").exists() and not (d / "token").exists()


async def test_service_account_token_projected_and_rotated(vm, namespace):
    c = vm.client
    await c.create("v1", "serviceaccounts", {"metadata": {"name": "probe"}}, namespace)
    await c.create("v1", "configmaps", {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA"}}, namespace)
    api_pod = await c.create("v1", "pods", {"metadata": {"name": "tok"}, "spec": {
        "serviceAccountName": "probe", "containers": [{"name": "c", "image": "busybox"}]}}, namespace)
    p = {**api_pod, "spec": {**api_pod["spec"], "volumes": [token_volume("api")]}}
    await vm.setup(p)
    d = vm.root_dir / "pods" / p["metadata"]["uid"] / "volumes" / "kubernetes.io~projected" / "kube-api-access"
    first = (d / "token").read_text()
    assert first and (d / "ca.crt").read_text() == "CA"
    assert await vm.resync(p) is False, "a fresh token is not requested again"
    [key] = list(vm.tokens.cache)
    vm.tokens.cache[key].expiration -= vm.tokens.cache[key].ttl * 0.85   # past 80% of its lifetime
    aged = vm.tokens.cache[key]
    await vm.resync(p)
    fresh = vm.tokens.cache[key]
    assert fresh is not aged and fresh.expiration > time.time() + fresh.ttl * 0.5, "the token was re-requested"
    assert (d / "token").read_text() == fresh.token
