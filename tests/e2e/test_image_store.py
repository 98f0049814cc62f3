"""The image store for real: content store, archive import (OCI layout and docker save), overlay mounts of
snapshots, removal rules, and crash safety (a process SIGKILLed mid-import leaves a usable store)."""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from kubelab.cri.image.archive import ArchiveError, import_archive, write_oci_layout
from kubelab.cri.image.build import DEFAULT_CACHE, build
from kubelab.cri.image.cli import images_main
from kubelab.cri.image.content import ContentStore, DigestMismatch, InvalidDigest, sha256_bytes
from kubelab.cri.image.snapshots import chain_ids, is_mounted
from kubelab.cri.image.store import ImageInUse, ImageStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """busybox and nginx built from Debian packages (cached in the default cache across runs)."""
    out = tmp_path_factory.mktemp("archives")

    async def go() -> dict[str, Path]:
        return {n: await build(n, out / f"{n}.tar", DEFAULT_CACHE) for n in ("busybox", "nginx")}
    return asyncio.run(go())


def read_layout(tar: Path) -> dict:
    """index, manifest, config and blobs of a one-image OCI layout tar."""
    with tarfile.open(tar) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    index = json.loads(files["index.json"])
    mdesc = index["manifests"][0]
    manifest = files["blobs/sha256/" + mdesc["digest"].split(":")[1]]
    m = json.loads(manifest)
    config = files["blobs/sha256/" + m["config"]["digest"].split(":")[1]]
    layers = [files["blobs/sha256/" + ld["digest"].split(":")[1]] for ld in m["layers"]]
    return {"index": index, "manifest": manifest, "m": m, "config": config, "layers": layers, "files": files}


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ---- content store ----
def test_content_store_commit_verify_and_resume(tmp_path):
    cs = ContentStore(tmp_path / "content")
    d = cs.write_bytes(b"hello")
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert cs.has(d) and cs.read(d) == b"hello" and cs.size(d) == 5
    assert cs.write_bytes(b"hello", expected=d) == d
    with pytest.raises(DigestMismatch, match="expected sha256:0000"):
        cs.write_bytes(b"other", expected="sha256:" + "0" * 64)

    data = os.urandom(300_000)
    want = sha256_bytes(data)
    part = cs.ingest_path(want)
    part.write_bytes(data[:1000])                 # a download that stopped part way ...
    with open(part, "ab") as f:                   # ... resumed from where it was
        f.write(data[1000:])
    cs.commit(want, part, size=len(data))
    assert cs.read(want) == data and not part.exists()

    bad = cs.ingest_path("sha256:" + "1" * 64)
    bad.write_bytes(b"corrupt")
    with pytest.raises(DigestMismatch, match="content digest mismatch"):
        cs.commit("sha256:" + "1" * 64, bad)
    assert not bad.exists() and not cs.has("sha256:" + "1" * 64)

    for digest in ("md5:" + "0" * 32, "sha256:abc", "sha256:" + "G" * 64, "nothing"):
        with pytest.raises(InvalidDigest):
            cs.has(digest)
    cs.delete(d)
    cs.delete(d)  # idempotent
    assert not cs.has(d)
    assert cs.list() == [want]


# ---- import and queries ----
def test_import_built_archives_and_find_images(tmp_path, archives):
    store = ImageStore(tmp_path / "root")
    [bb] = asyncio.run(import_archive(store, archives["busybox"]))
    [ng] = asyncio.run(import_archive(store, archives["nginx"]))
    lay = read_layout(archives["nginx"])

    assert ng.id == lay["m"]["config"]["digest"] == sha256_bytes(lay["config"])
    assert ng.repo_tags == ["localhost/kubelab/nginx:1.22"]
    assert bb.repo_tags == ["localhost/kubelab/busybox:1.35"]
    assert ng.repo_digests == []      # as after `ctr import`: tags only
    assert ng.manifest_digest == sha256_bytes(lay["manifest"])
    assert ng.size == len(lay["manifest"]) + len(lay["config"]) + sum(len(b) for b in lay["layers"])
    assert ng.config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert ng.layers[0] == bb.layers[0]          # nginx is busybox + one layer

    for name in ("localhost/kubelab/nginx:1.22", ng.id, ng.id[7:19], "sha256:" + ng.id[7:30]):
        assert store.get(name).id == ng.id, name
    for name in ("nginx", "localhost/kubelab/nginx", ng.id[7:18], "sha256:" + "0" * 64, "Not A Ref", ""):
        assert store.get(name) is None, name
    assert [i.id for i in store.list()] == [bb.id, ng.id]

    # every layer unpacked, the shared one once
    cids = chain_ids(ng.diff_ids)
    assert cids[0] == chain_ids(bb.diff_ids)[0]
    assert sorted(store.snapshots.list()) == sorted(cids)
    lowers = asyncio.run(store.ensure_unpacked(ng))
    assert lowers == [store.snapshots.fs(c) for c in reversed(cids)]
    assert os.readlink(lowers[1] / "bin/sh") == "busybox"
    assert (lowers[0] / "usr/sbin/nginx").is_file()
    used, inodes, mountpoint = store.fs_info()
    assert used > 4_000_000 and inodes > 300 and mountpoint == str(tmp_path / "root/snapshots")

    # persisted: another instance (another process, e.g. the CLI) sees the same; re-import changes nothing
    again = ImageStore(tmp_path / "root")
    assert [(i.id, i.repo_tags, i.size) for i in again.list()] == [(i.id, i.repo_tags, i.size) for i in store.list()]
    blobs = store.content.list()
    asyncio.run(import_archive(again, archives["nginx"]))
    assert again.content.list() == blobs
    assert len(store.list()) == 2


def _docker_save_classic(src: Path, out: Path) -> str:
    """A `docker save` tarball in the classic format (uncompressed layer.tar per layer, a duplicate layer
    as a symlink) made from an OCI layout; returns the config digest."""
    lay = read_layout(src)
    cfg_hex = lay["m"]["config"]["digest"].split(":")[1]
    layer = gzip.decompress(lay["layers"][0])
    layer_id = hashlib.sha256(b"v1-id" + layer).hexdigest()
    files = {f"{cfg_hex}.json": lay["config"], f"{layer_id}/layer.tar": layer, f"{layer_id}/VERSION": b"1.0",
             f"{layer_id}/json": b'{"id": "%s"}' % layer_id.encode(),
             "manifest.json": json.dumps([
                 {"Config": f"{cfg_hex}.json", "RepoTags": ["bbsave:1"], "Layers": [f"{layer_id}/layer.tar"]},
                 {"Config": f"{cfg_hex}.json", "RepoTags": ["example.com/team/bbsave:2"], "Layers": ["dup/layer.tar"]},
             ]).encode(),
             "repositories": json.dumps({"bbsave": {"1": layer_id}}).encode()}
    with tarfile.open(out, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("dup/layer.tar")
        ti.type, ti.linkname = tarfile.SYMTYPE, f"../{layer_id}/layer.tar"
        tf.addfile(ti)
    return lay["m"]["config"]["digest"]


def test_import_docker_save_classic_and_oci_variants(tmp_path, archives):
    store = ImageStore(tmp_path / "root")
    saved = tmp_path / "save.tar"
    cfg = _docker_save_classic(archives["busybox"], saved)
    imgs = asyncio.run(import_archive(store, saved))
    assert {i.id for i in imgs} == {cfg}
    img = store.get("bbsave:1")
    assert img.repo_tags == ["docker.io/library/bbsave:1", "example.com/team/bbsave:2"]
    m = json.loads(store.content.read(img.manifest_digest))
    assert m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert m["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar"
    assert img.layers == img.diff_ids          # uncompressed layers: digest = diff ID
    [lower] = asyncio.run(store.ensure_unpacked(img))
    assert (lower / "bin/busybox").is_file()
    # the layer's legacy v1 json and VERSION files were not kept as blobs
    assert len(store.content.list()) == 3

    # OCI layout directory named only by a tag + --base-name; newer docker save (OCI + manifest.json)
    lay = read_layout(archives["busybox"])
    d = tmp_path / "layout"
    for name, data in lay["files"].items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)
    idx = lay["index"]
    idx["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "7.1"}
    (d / "index.json").write_text(json.dumps(idx))
    [img2] = asyncio.run(import_archive(store, d, base_name="localhost:5000/tools/bb"))
    assert img2.id == cfg    # the same image as the docker save one: the tags add up
    assert img2.repo_tags == ["docker.io/library/bbsave:1", "example.com/team/bbsave:2", "localhost:5000/tools/bb:7.1"]
    (d / "manifest.json").write_text(json.dumps([{"Config": "blobs/sha256/" + cfg.split(":")[1],
                                                  "RepoTags": ["newsave:3"], "Layers": []}]))
    [img3] = asyncio.run(import_archive(store, d))
    assert "docker.io/library/newsave:3" in img3.repo_tags

    # a blob that does not match its name is refused and leaves nothing behind
    before = store.content.list()
    victim = d / "blobs/sha256" / lay["m"]["layers"][0]["digest"].split(":")[1]
    victim.write_bytes(b"tampered")
    store2 = ImageStore(tmp_path / "root2")
    with pytest.raises(ArchiveError, match="does not match its digest"):
        asyncio.run(import_archive(store2, d))
    assert store2.list() == [] and store2.content.list() == []
    assert store.content.list() == before
    with pytest.raises(ArchiveError, match="not an OCI layout or a docker save archive"):
        (tmp_path / "empty").mkdir()
        asyncio.run(import_archive(store, tmp_path / "empty"))


# ---- overlay ----
def _layer(*entries: tuple[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _two_layer_image(tmp_path: Path) -> Path:
    l1 = _layer(("keep.txt", b"1"), ("gone.txt", b"1"), ("data", None), ("data/old.txt", b"1"),
                ("data/sub", None), ("data/sub/deep.txt", b"1"), ("etc", None), ("etc/a", b"1"))
    l2 = _layer((".wh.gone.txt", b""), ("data", None), ("data/.wh..wh..opq", b""), ("data/new.txt", b"2"),
                ("etc", None), ("etc/b", b"2"), ("keep.txt", b"2"))
    paths = []
    for i, raw in enumerate((l1, l2)):
        p = tmp_path / f"l{i}.tar.gz"
        p.write_bytes(gzip.compress(raw))
        paths.append(p)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256_bytes(l1), sha256_bytes(l2)]}}).encode()
    out = tmp_path / "two.tar"
    write_oci_layout(out, ["localhost/test/two:1"], config, paths)
    return out


def test_overlay_mount_of_a_two_layer_image_honours_whiteouts(tmp_path):
    store = ImageStore(tmp_path / "root")
    [img] = asyncio.run(import_archive(store, _two_layer_image(tmp_path)))
    lowers = asyncio.run(store.ensure_unpacked(img))
    target, upper, work = tmp_path / "rootfs", tmp_path / "c/upper", tmp_path / "c/work"
    ro = tmp_path / "ro"
    try:
        asyncio.run(store.snapshots.mount_overlay(lowers, upper, work, target))
        asyncio.run(store.snapshots.mount_overlay(lowers, None, None, ro))
        assert is_mounted(target) and is_mounted(ro)
        for root in (target, ro):
            assert sorted(os.listdir(root)) == ["data", "etc", "keep.txt"]        # gone.txt deleted by layer 2
            assert (root / "keep.txt").read_text() == "2"
            assert sorted(os.listdir(root / "data")) == ["new.txt"]              # opaque: layer 1's content hidden
            assert sorted(os.listdir(root / "etc")) == ["a", "b"]                # not opaque: merged
        (target / "etc/a").unlink()
        (target / "written").write_text("upper")
        assert (upper / "written").read_text() == "upper"
        assert (lowers[1] / "etc/a").exists()                                   # lowers untouched
        with pytest.raises(OSError):
            (ro / "x").write_text("read-only")
    finally:
        asyncio.run(store.snapshots.unmount(target))
        asyncio.run(store.snapshots.unmount(ro))
    asyncio.run(store.snapshots.unmount(target))  # idempotent
    assert not is_mounted(target) and not is_mounted(ro)


# ---- removal ----
def test_remove_refused_in_use_idempotent_and_retag(tmp_path, archives):
    store = ImageStore(tmp_path / "root")
    [bb] = asyncio.run(import_archive(store, archives["busybox"]))
    [ng] = asyncio.run(import_archive(store, archives["nginx"]))
    with pytest.raises(ImageInUse) as e:
        store.remove("localhost/kubelab/nginx:1.22", lambda image_id: "c0ffee" if image_id == ng.id else None)
    assert str(e.value) == (f"image localhost/kubelab/nginx:1.22 ({ng.id}) is in use by container c0ffee; "
                            "remove the container first")
    assert store.get(ng.id) is not None

    store.remove(ng.id[7:19], lambda image_id: False)
    assert store.get("localhost/kubelab/nginx:1.22") is None
    store.remove("localhost/kubelab/nginx:1.22", lambda image_id: True)   # gone: nothing to refuse
    # nginx's own blobs and snapshot are gone; the busybox layer it shared is kept
    assert not store.content.has(ng.layers[1]) and not store.content.has(ng.manifest_digest)
    assert store.content.has(bb.layers[0])
    assert store.snapshots.list() == chain_ids(bb.diff_ids)
    assert ImageStore(tmp_path / "root").get(ng.id) is None

    # a tag moves to the image that takes it; the old image stays, untagged
    man = store.content.read(bb.manifest_digest)
    cfg = store.content.read(bb.config_digest)
    store.add(man, cfg, ["localhost/kubelab/busybox:latest"], "localhost/kubelab/busybox@" + bb.manifest_digest)
    two = _two_layer_image(tmp_path)
    [other] = asyncio.run(import_archive(store, two))
    store.add(store.content.read(other.manifest_digest), store.content.read(other.config_digest),
              ["localhost/kubelab/busybox:latest"])
    assert store.get("localhost/kubelab/busybox:latest").id == other.id
    bb_now = store.get(bb.id)
    assert bb_now.repo_tags == ["localhost/kubelab/busybox:1.35"]
    assert bb_now.repo_digests == ["localhost/kubelab/busybox@" + bb.manifest_digest]
    assert store.get("localhost/kubelab/busybox@" + bb.manifest_digest).id == bb.id


# ---- crash safety ----
KILLED_IMPORT = """
import asyncio, sys
from pathlib import Path
from kubelab.cri.image.archive import import_archive
from kubelab.cri.image.store import ImageStore
print("ready", flush=True)
asyncio.run(import_archive(ImageStore(Path(sys.argv[1])), Path(sys.argv[2])))
print("done", flush=True)
"""


def test_leftovers_of_crashes_are_swept_and_the_store_works(tmp_path, archives):
    root = tmp_path / "root"
    store = ImageStore(root)
    [bb] = asyncio.run(import_archive(store, archives["busybox"]))
    pid = dead_pid()
    junk = [root / f"content/ingest/.tmp-{pid}-abc", root / f"images.json.tmp-{pid}-abc",
            root / "content/ingest" / bb.layers[0].split(":")[1]]     # partial of a blob already committed
    for j in junk:
        j.write_bytes(b"partial")
    tmpsnap = root / f"snapshots/.tmp-{pid}-abc/fs/usr/bin"
    tmpsnap.mkdir(parents=True)
    (tmpsnap / "half").write_bytes(b"x")
    partial = root / "content/ingest" / ("f" * 64)                     # resumable download: kept
    partial.write_bytes(b"prefix")
    store = ImageStore(root)
    assert not any(j.exists() for j in junk) and not tmpsnap.parent.parent.parent.exists()
    assert partial.exists()
    assert [i.id for i in store.list()] == [bb.id]

    # SIGKILL an import at several points; whatever it left, the store is consistent and usable
    for delay in (0.0, 0.15, 0.3, 0.45):
        r2 = tmp_path / f"kill-{delay}"
        p = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, str(r2), str(archives["nginx"])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        s = ImageStore(r2)
        leftovers = [str(x) for x in r2.rglob("*.tmp-*")]
        assert not leftovers, leftovers
        for img in s.list():      # an image in the index always has all its blobs and snapshots
            assert all(s.content.has(d) for d in img.layers + [img.manifest_digest, img.config_digest])
            assert all(s.snapshots.has(c) for c in chain_ids(img.diff_ids))
        [ng] = asyncio.run(import_archive(s, archives["nginx"]))
        lowers = asyncio.run(s.ensure_unpacked(ng))
        assert (lowers[0] / "usr/sbin/nginx").stat().st_size > 100_000

    # what a killed import left unreferenced is collected by gc (here without the age guard)
    s = ImageStore(tmp_path / "kill-0.0")
    orphan = s.content.write_bytes(b"left by a killed pull")
    orphan_snap = s.snapshots.root / ("e" * 64)
    (orphan_snap / "fs").mkdir(parents=True)
    assert s.gc(min_age=3600) == ([], [])          # too young: may be another process's work in progress
    blobs, snaps = s.gc(min_age=0)
    assert blobs == [orphan] and snaps == ["sha256:" + "e" * 64]
    [ng] = s.list()
    assert all(s.content.has(d) for d in ng.layers) and all(s.snapshots.has(c) for c in chain_ids(ng.diff_ids))


# ---- CLI ----
def test_cli_import_list_and_errors(tmp_path, archives, capsys):
    root = tmp_path / "root"
    assert images_main(["import", str(archives["busybox"]), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported localhost/kubelab/busybox:1.35 sha256:")
    assert images_main(["list", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert lines[1].split()[:2] == ["localhost/kubelab/busybox", "1.35"]
    assert images_main(["import", str(tmp_path / "missing.tar"), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.tar: no such file or directory" in err
    assert images_main(["build", "nope"]) == 2
    assert images_main(["import", str(archives["busybox"]), "--root", str(root), "--base-name", "Bad Name"]) == 1
    assert "invalid reference format" in capsys.readouterr().err
