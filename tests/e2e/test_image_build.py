"""Images built from Debian packages: their content, reproducibility and caching, and that they really run:
nginx under `runc run` in a fresh network namespace serves its page; pause exits 0 on SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from kubelab import proc
from kubelab.cri.image.build import DEFAULT_CACHE, build
from kubelab.cri.image.unpack import unpack_layer

pytestmark = pytest.mark.e2e

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE"]
CGROUP_CONTROLLERS = ("memory", "pids", "cpu", "devices")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("built")

    async def go() -> dict[str, Path]:
        return {n: await build(n, out / f"{n}.tar", DEFAULT_CACHE) for n in ("busybox", "pause", "nginx")}
    return asyncio.run(go())


def layout(tar: Path) -> dict:
    with tarfile.open(tar) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}
    index = json.loads(files["index.json"])
    m = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]])
    config = json.loads(files["blobs/sha256/" + m["config"]["digest"].split(":")[1]])
    layers = [files["blobs/sha256/" + ld["digest"].split(":")[1]] for ld in m["layers"]]
    return {"index": index, "manifest": m, "config": config, "layers": layers, "files": files}


def members(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tf:
        return {m.name: m for m in tf}


def test_image_contents(built):
    bb, pause, ng = (layout(built[n]) for n in ("busybox", "pause", "nginx"))
    refs = {n: lay["index"]["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            for n, lay in (("busybox", bb), ("pause", pause), ("nginx", ng))}
    assert refs == {"busybox": "localhost/kubelab/busybox:1.35", "pause": "localhost/kubelab/pause:3.9",
                    "nginx": "localhost/kubelab/nginx:1.22"}
    assert bb["config"]["config"]["Cmd"] == ["sh"]
    assert bb["manifest"]["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    files = members(bb["layers"][0])
    assert files["bin/busybox"].isreg() and files["bin/busybox"].mode == 0o755
    assert files["bin/sh"].issym() and files["bin/sh"].linkname == "busybox"
    assert files["bin/wget"].linkname == "busybox" and files["tmp"].mode == 0o1777
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bb["layers"][0]))) as tf:
        passwd = tf.extractfile("etc/passwd").read().decode()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
    # pause and nginx sit on the very same busybox layer (one blob in a registry)
    assert pause["layers"][0] == bb["layers"][0] == ng["layers"][0]
    assert "trap" in " ".join(pause["config"]["config"]["Entrypoint"])
    cfg = ng["config"]["config"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["StopSignal"] == "SIGQUIT" and cfg["Cmd"][0] == "nginx"
    assert ng["config"]["rootfs"]["diff_ids"] == [
        "sha256:" + __import__("hashlib").sha256(gzip.decompress(x)).hexdigest() for x in ng["layers"]]
    nfiles = members(ng["layers"][1])
    assert "usr/sbin/nginx" in nfiles and "etc/nginx/nginx.conf" in nfiles
    assert any(n.startswith("lib/x86_64-linux-gnu/libc.so") for n in nfiles)
    assert not any(n.startswith(("usr/share/doc", "etc/init.d", "lib/systemd")) for n in nfiles)


async def test_builds_are_cached_and_reproducible(built, tmp_path):
    # a cached build is a copy
    t = time.monotonic()
    again = await build("nginx", tmp_path / "again.tar", DEFAULT_CACHE)
    assert time.monotonic() - t < 2
    assert again.read_bytes() == built["nginx"].read_bytes()
    # a fresh build from the same .debs gives the same bytes (same digests in every registry)
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    for deb in (DEFAULT_CACHE / "debs").glob("busybox-static_*.deb"):
        os.link(deb, cache / "debs" / deb.name)
    fresh = await build("busybox", tmp_path / "fresh.tar", cache)
    assert fresh.read_bytes() == built["busybox"].read_bytes()
    assert not list(cache.rglob("*.tmp-*"))


def rootfs_from(archive: Path, dest: Path) -> dict:
    lay = layout(archive)
    dest.mkdir()
    for i, layer in enumerate(lay["layers"]):
        blob = dest.parent / f"layer{i}"
        blob.write_bytes(layer)
        assert unpack_layer(blob, dest) == lay["config"]["rootfs"]["diff_ids"][i]
        blob.unlink()
    return lay["config"]["config"]


@contextlib.asynccontextmanager
async def container(archive: Path, tmp_path: Path, netns: str | None = None):
    """`runc run` of the image in a bundle under tmp_path; yields (id, runc root, process, log path)."""
    cid = "imgtest-" + uuid.uuid4().hex[:8]
    bundle, root = tmp_path / "bundle", tmp_path / "runc"
    bundle.mkdir()
    cfg = rootfs_from(archive, bundle / "rootfs")
    await proc.run(["runc", "spec", "--bundle", str(bundle)])
    spec = json.loads((bundle / "config.json").read_text())
    p = spec["process"]
    p["terminal"] = False
    p["args"] = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
    p["env"] = cfg.get("Env", [])
    p["cwd"] = cfg.get("WorkingDir") or "/"
    p["capabilities"] = {k: list(CAPS) for k in ("bounding", "effective", "permitted")}
    spec["root"] = {"path": "rootfs", "readonly": False}
    spec["hostname"] = cid
    spec["linux"]["cgroupsPath"] = f"/kubelab-test/{cid}"
    if netns:
        spec["linux"]["namespaces"] = [n if n["type"] != "network" else {"type": "network",
                                                                          "path": f"/run/netns/{netns}"}
                                       for n in spec["linux"]["namespaces"]]
    (bundle / "config.json").write_text(json.dumps(spec))
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        runc = await asyncio.create_subprocess_exec("runc", "--root", str(root), "run", "--bundle", str(bundle), cid,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield cid, root, runc, log
    finally:
        if runc.returncode is None:
            await proc.run(["runc", "--root", str(root), "kill", "--all", cid, "KILL"], check=False)
            await asyncio.wait_for(runc.wait(), 10)
        await proc.run(["runc", "--root", str(root), "delete", "--force", cid], check=False)
        res = await proc.run(["runc", "--root", str(root), "list", "-q"])
        assert res.text.strip() == "", f"runc still knows {res.text!r}"
        for ctrl in CGROUP_CONTROLLERS:
            assert not Path(f"/sys/fs/cgroup/{ctrl}/kubelab-test/{cid}").exists(), f"{ctrl} cgroup left"
            with contextlib.suppress(OSError):
                os.rmdir(f"/sys/fs/cgroup/{ctrl}/kubelab-test")
        shutil.rmtree(bundle)
        shutil.rmtree(root, ignore_errors=True)


async def wait_running(root: Path, cid: str, runc) -> None:
    for _ in range(100):
        assert runc.returncode is None, "the container exited early"
        res = await proc.run(["runc", "--root", str(root), "state", cid], check=False)
        if res.returncode == 0 and json.loads(res.stdout)["status"] == "running":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("container did not start")


GET = ("import urllib.request, sys\n"
       "r = urllib.request.urlopen('http://127.0.0.1/', timeout=2)\n"
       "sys.stdout.write(str(r.status) + ' ' + r.read().decode())\n")


async def test_nginx_serves_its_page_under_runc(built, tmp_path):
    ns = "kl-imgtest-" + uuid.uuid4().hex[:6]
    await proc.run(["ip", "netns", "add", ns])
    try:
        await proc.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        async with container(built["nginx"], tmp_path, netns=ns) as (cid, root, runc, log):
            await wait_running(root, cid, runc)
            body = ""
            for _ in range(50):
                res = await proc.run(["ip", "netns", "exec", ns, sys.executable, "-c", GET], check=False)
                if res.returncode == 0:
                    body = res.text
                    break
                await asyncio.sleep(0.1)
            assert body.startswith("200 ") and "<h1>Welcome to nginx!</h1>" in body, log.read_text()
            ps = await proc.run(["runc", "--root", str(root), "ps", cid])
            assert "www-data" in ps.text or " 33 " in ps.text, ps.text   # workers dropped to www-data
            await proc.run(["runc", "--root", str(root), "kill", cid, "QUIT"])     # the image's StopSignal
            assert await asyncio.wait_for(runc.wait(), 10) == 0
            out = log.read_text()
            assert '"GET / HTTP/1.1" 200' in out, out       # access_log /dev/stdout
            assert "[emerg]" not in out and "[alert]" not in out, out
    finally:
        await proc.run(["ip", "netns", "delete", ns], check=False)
    assert ns not in (await proc.run(["ip", "netns", "list"])).text


@pytest.mark.parametrize("sig", ["TERM", "INT"])
async def test_pause_waits_and_exits_0_on_term(built, tmp_path, sig):
    async with container(built["pause"], tmp_path) as (cid, root, runc, log):
        await wait_running(root, cid, runc)
        await asyncio.sleep(0.3)
        assert runc.returncode is None          # waits forever
        await proc.run(["runc", "--root", str(root), "kill", cid, sig])
        assert await asyncio.wait_for(runc.wait(), 5) == 0, log.read_text()
