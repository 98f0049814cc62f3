"""Pulling images the real way: Debian's docker-registry on loopback, our RegistryClient and Puller.

Images are made here (small tar layers, configs, manifests, indexes), written as OCI layouts and
pushed with RegistryClient.push_layout; then pulled into a real ImageStore (content, snapshots).
A RecordingProxy in front of the registry counts blob GETs, sees Range requests and throttles.
"""
from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import tarfile
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from kubelab.cri.image import pull as pull_mod
from kubelab.cri.image import reference
from kubelab.cri.image.pull import Puller
from kubelab.cri.image.registry import (DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Auth, ImageNotFound,
                                        Platform, RegistryClient, RegistryError, Unauthorized, host_platform,
                                        normalize_platform, parse_challenges, select_platform)
from kubelab.cri.image.store import ImageStore
from kubelab.lab.controlplane import free_port

from e2e.registry import (REFRESH_TOKENS, USERS, LocalRegistry, RecordingProxy, async_wait_for,  # noqa: E402
                      htpasswd_supported, sha256, write_layout)

pytestmark = pytest.mark.e2e

HOST = host_platform()
OTHER_ARCH = "arm64" if HOST.architecture != "arm64" else "amd64"
USER, PASSWORD = next(iter(USERS.items()))


# --- images ------------------------------------------------------------------------------------------

def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class BuiltImage:
    blobs: dict[str, bytes]          # config and layers
    manifest: bytes
    media_type: str
    config_digest: str
    layers: list[str]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    def descriptor(self, **extra: object) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest), **extra}


def make_image(layers: list[dict[str, bytes]], *, docker: bool = False, gzip_layers: bool = True,
               arch: str = HOST.architecture, variant: str = "", label: str = "") -> BuiltImage:
    blobs: dict[str, bytes] = {}
    descs, diff_ids = [], []
    for files in layers:
        raw = tar_bytes(files)
        diff_ids.append(sha256(raw))
        blob = gzip.compress(raw, compresslevel=1, mtime=0) if gzip_layers else raw
        if docker:
            mt = "application/vnd.docker.image.rootfs.diff.tar" + (".gzip" if gzip_layers else "")
        else:
            mt = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        blobs[sha256(blob)] = blob
        descs.append({"mediaType": mt, "digest": sha256(blob), "size": len(blob)})
    config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/true"], "Labels": {"t": label}},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        config["variant"] = variant
    cfg = json.dumps(config).encode()
    blobs[sha256(cfg)] = cfg
    mtype = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mtype,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker
                   else "application/vnd.oci.image.config.v1+json", "digest": sha256(cfg), "size": len(cfg)},
        "layers": descs}).encode()
    return BuiltImage(blobs, manifest, mtype, sha256(cfg), [d["digest"] for d in descs])


def layout_of(dest: Path, image: BuiltImage) -> Path:
    return write_layout(dest, {**image.blobs, image.digest: image.manifest}, [image.descriptor()])


def index_of(images: list[tuple[BuiltImage, dict]], docker: bool = False) -> tuple[bytes, str]:
    mtype = DOCKER_LIST if docker else OCI_INDEX
    body = json.dumps({"schemaVersion": 2, "mediaType": mtype,
                       "manifests": [img.descriptor(platform=plat) for img, plat in images]}).encode()
    return body, mtype


async def push(client: RegistryClient, host: str, name: str, image: BuiltImage, tmp: Path,
               auth: Auth | None = None, as_tar: bool = False) -> str:
    layout = layout_of(Path(tempfile.mkdtemp(dir=tmp)), image)
    if as_tar:
        tar_path = layout.with_suffix(".tar")
        with tarfile.open(tar_path, "w") as tf:
            for p in sorted(layout.rglob("*")):
                tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
        layout = tar_path
    return await client.push_layout(layout, reference.parse(f"{host}/{name}"), auth)


def blobs_valid(store: ImageStore) -> None:
    for d in store.content.list():
        assert sha256(store.content.path(d).read_bytes()) == d, f"committed blob {d} is corrupt"


# --- fixtures ---------------------------------------------------------------------------------------------

def _servers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name in ("TokenServer", "RecordingProxy")}


@pytest.fixture(autouse=True)
def no_leaks():
    """Every registry process, server thread and registry temp dir is gone after each test."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    threads = _servers()
    n_dirs = len(LocalRegistry.temp_dirs)
    yield
    leaked = {p.pid for p in me.children(recursive=True)} - before
    assert not leaked, f"processes leaked: {leaked}"
    assert not (_servers() - threads), "server threads leaked"
    left = [d for d in LocalRegistry.temp_dirs[n_dirs:] if d.exists()]
    assert not left, f"temp dirs leaked: {left}"


@pytest.fixture
def registry():
    with LocalRegistry() as r:
        yield r


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store")


@pytest.fixture
async def client():
    c = RegistryClient()
    yield c
    await c.close()


@pytest.fixture
def proxies():
    made: list[RecordingProxy] = []

    def make(upstream: str, **kw) -> RecordingProxy:
        p = RecordingProxy(upstream, **kw)
        p.start()
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


# --- pure logic ----------------------------------------------------------------------------------------------

def test_challenge_parsing_and_platforms():
    ch = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                          'scope="repository:library/nginx:pull",error="insufficient_scope"')
    assert ch == [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                              "scope": "repository:library/nginx:pull", "error": "insufficient_scope"})]
    assert parse_challenges('Basic realm="x, y"') == [("basic", {"realm": "x, y"})]
    assert normalize_platform("linux", "x86_64") == Platform("linux", "amd64")
    assert normalize_platform("linux", "aarch64", "v8") == Platform("linux", "arm64")
    assert normalize_platform("linux", "armv7l") == Platform("linux", "arm", "v7")
    descs = [{"digest": "a", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
             {"digest": "b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
             {"digest": "c", "platform": {"os": "windows", "architecture": "amd64"}},
             {"digest": "d", "platform": {"os": "linux", "architecture": "amd64"}},
             {"digest": "e", "platform": {"os": "unknown", "architecture": "unknown"}}]
    assert select_platform(descs, Platform("linux", "amd64"))["digest"] == "d"
    assert select_platform(descs, Platform("linux", "arm64"))["digest"] == "b"
    assert select_platform(descs[:1], Platform("linux", "arm64"))["digest"] == "a"  # arm64 runs arm/v7
    assert select_platform(descs[1:], Platform("linux", "arm", "v7")) is None
    c = RegistryClient(mirrors={"docker.io": ["https://mirror.example:5000/"]}, insecure=["10.0.0.0/8", "reg:5000"])
    assert [(e.host, e.mirror) for e in c.endpoints("docker.io")] == \
        [("mirror.example:5000", True), ("registry-1.docker.io", False)]
    assert c.is_insecure("localhost:5000") and c.is_insecure("127.0.0.1:1") and c.is_insecure("[::1]:5000")
    assert c.is_insecure("10.1.2.3:443") and c.is_insecure("reg:5000") and not c.is_insecure("reg.example")
    assert Auth(auth=base64.b64encode(b"u:p:w").decode()).credentials() == ("u", "p:w")


# --- pulls ---------------------------------------------------------------------------------------------------

async def test_push_and_pull(registry, store, client, tmp_path):
    """Docker schema 2 with gzip layers pushed from a layout dir, OCI with plain tar layers from a
    layout tar; both pulled into the store with names, repo digests and unpacked snapshots."""
    docker_img = make_image([{"etc/hello": b"hello\n"}, {"bin/tool": b"#!/bin/sh\n"}], docker=True, label="d")
    oci_img = make_image([{"srv/data": os.urandom(4096)}], gzip_layers=False, label="o")
    assert await push(client, registry.host, "test/app:v1", docker_img, tmp_path) == docker_img.digest
    assert await push(client, registry.host, "test/oci:v2", oci_img, tmp_path, as_tar=True) == oci_img.digest
    # pushing again skips the blobs the registry has (HEAD) and still succeeds
    assert await push(client, registry.host, "test/app:v1", docker_img, tmp_path) == docker_img.digest

    puller = Puller(store, client)
    img = await puller.pull(f"{registry.host}/test/app:v1")
    assert img.id == docker_img.config_digest
    assert img.repo_tags == [f"{registry.host}/test/app:v1"]
    assert img.repo_digests == [f"{registry.host}/test/app@{docker_img.digest}"]
    assert img.layers == docker_img.layers and img.config["config"]["Labels"] == {"t": "d"}
    assert store.get(f"{registry.host}/test/app:v1").id == img.id
    lowers = await store.snapshots.ensure(img.layers, img.diff_ids)
    assert (lowers[-1] / "etc/hello").read_bytes() == b"hello\n"
    assert (lowers[0] / "bin/tool").read_bytes() == b"#!/bin/sh\n"

    img2 = await puller.pull(f"{registry.host}/test/oci:v2")
    assert img2.id == oci_img.config_digest
    assert img2.repo_digests == [f"{registry.host}/test/oci@{oci_img.digest}"]
    # by digest: no tag is added, the repo digest finds it
    img3 = await puller.pull(f"{registry.host}/test/oci@{oci_img.digest}")
    assert img3.id == img2.id and img3.repo_tags == [f"{registry.host}/test/oci:v2"]
    blobs_valid(store)
    assert not list(store.content.ingest.iterdir()), "ingest dir not empty after successful pulls"


async def test_missing_image_and_unreachable_registry(registry, store, client, tmp_path):
    puller = Puller(store, client)
    name = f"{registry.host}/nope:latest"
    with pytest.raises(ImageNotFound) as ei:
        await puller.pull(f"{registry.host}/nope")
    assert str(ei.value) == f'failed to resolve reference "{name}": {name}: not found'
    await push(client, registry.host, "test/app:v1", make_image([{"a": b"a"}]), tmp_path)
    with pytest.raises(ImageNotFound, match=r"test/app:v9: not found"):
        await puller.pull(f"{registry.host}/test/app:v9")
    with pytest.raises(ImageNotFound, match="not found"):
        await puller.pull(f"{registry.host}/test/app@sha256:{'0' * 64}")
    assert store.list() == []

    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError) as ei:
        await puller.pull(f"{dead}/x:1")
    assert not isinstance(ei.value, ImageNotFound)
    assert str(ei.value) == f'failed to resolve reference "{dead}/x:1": registry {dead}: connection refused'


async def test_token_auth(store, tmp_path):
    """The Bearer flow against docker-registry trusting our token server."""
    with LocalRegistry(token_auth=True) as reg:
        good = Auth(username=USER, password=PASSWORD)
        image = make_image([{"secret/file": b"classified"}])
        async with _client() as c:
            with pytest.raises(Unauthorized):  # anonymous push
                await push(c, reg.host, "private/app:v1", image, tmp_path)
        assert await reg.push(layout_of(tmp_path / "private", image), "private/app:v1") == image.digest
        ts = reg.token_server
        name = f"{reg.host}/private/app:v1"

        async with _client() as c:
            puller = Puller(store, c)
            with pytest.raises(Unauthorized) as ei:
                await puller.pull(name)
            assert str(ei.value).startswith(f'failed to resolve reference "{name}": registry {reg.host}: access denied')
            assert "insufficient_scope" in str(ei.value)
            with pytest.raises(Unauthorized, match="failed to fetch token .*401"):
                await puller.pull(name, Auth(username=USER, password="wrong"))
            assert store.list() == []

            ts.requests.clear()
            img = await puller.pull(name, good)
            assert img.repo_tags == [name]
            # one token for the pull scope served the manifest and every blob
            pulls = [r for r in ts.requests if r["scopes"] == ["repository:private/app:pull"]]
            assert [(r["user"], r["status"]) for r in pulls] == [(USER, 200)]
            await puller.pull(name, good)  # the cached token again
            assert len([r for r in ts.requests if r["status"] == 200]) == 1
            # the base64 `auth` field is the same credentials (another cache key: one more token)
            await puller.pull(name, Auth(auth=base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()))
            assert len([r for r in ts.requests if r["status"] == 200]) == 2

        async with _client() as c:  # identity token: OAuth2 refresh-token POST; answer has access_token
            ts.requests.clear()
            await Puller(store, c).pull(name, Auth(identity_token=next(iter(REFRESH_TOKENS))))
            assert [(r["method"], r["kind"], r["status"]) for r in ts.requests] == \
                [("POST", "oauth-refresh_token", 200)]
            with pytest.raises(Unauthorized):
                await Puller(store, c).pull(name, Auth(identity_token="bogus"))

        # registry_token: a bearer token obtained elsewhere, sent as is
        req = urllib.request.Request(f"{ts.realm}?service={reg.service}&scope=repository:private/app:pull",
                                     headers={"Authorization": "Basic " + base64.b64encode(
                                         f"{USER}:{PASSWORD}".encode()).decode()})
        token = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=5).read()))["token"]
        async with _client() as c:
            ts.requests.clear()
            resolved = await c.resolve(reference.parse(name), Auth(registry_token=token))
            assert resolved[0] == image.digest and ts.requests == []
            with pytest.raises(Unauthorized):
                await c.resolve(reference.parse(name), Auth(registry_token="not-a-token"))


@pytest.mark.skipif(not htpasswd_supported(), reason="no bcrypt for docker-registry's htpasswd")
async def test_basic_auth_htpasswd(store, tmp_path):
    with LocalRegistry(htpasswd=True) as reg:
        good = Auth(username=USER, password=PASSWORD)
        image = make_image([{"f": b"basic"}])
        async with _client() as c:
            await push(c, reg.host, "b/app:v1", image, tmp_path, auth=good)
            puller = Puller(store, c)
            with pytest.raises(Unauthorized, match="no credentials given"):
                await puller.pull(f"{reg.host}/b/app:v1")
            with pytest.raises(Unauthorized, match="access denied"):
                await puller.pull(f"{reg.host}/b/app:v1", Auth(username=USER, password="nope"))
            img = await puller.pull(f"{reg.host}/b/app:v1", good)
            assert img.id == image.config_digest
            # credentials limited to another server are not sent here
            with pytest.raises(Unauthorized):
                await c.resolve(reference.parse(f"{reg.host}/b/app:v1"),
                                Auth(username=USER, password=PASSWORD, server_address="other.example:5000"))


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
async def test_index_picks_host_platform(registry, store, client, tmp_path, proxies, docker):
    mine = make_image([{"arch": HOST.architecture.encode()}], docker=docker, label="mine")
    other = make_image([{"arch": OTHER_ARCH.encode()}], docker=docker, arch=OTHER_ARCH, label="other")
    windows = make_image([{"arch": b"windows"}], docker=docker, label="windows")
    index, mtype = index_of([(other, {"os": "linux", "architecture": OTHER_ARCH}),
                             (windows, {"os": "windows", "architecture": HOST.architecture}),
                             (mine, {"os": "linux", "architecture": HOST.architecture})], docker)
    blobs = {**mine.blobs, **other.blobs, **windows.blobs, mine.digest: mine.manifest,
             other.digest: other.manifest, windows.digest: windows.manifest, sha256(index): index}
    layout = write_layout(tmp_path / "layout", blobs, [{"mediaType": mtype, "digest": sha256(index),
                                                        "size": len(index)}])
    await client.push_layout(layout, reference.parse(f"{registry.host}/multi/app:v1"))
    proxy = proxies(registry.host)
    name = f"{proxy.host}/multi/app:v1"

    img = await Puller(store, client).pull(name)
    assert img.config["architecture"] == HOST.architecture and img.config["config"]["Labels"]["t"] == "mine"
    assert img.repo_digests == [f"{proxy.host}/multi/app@{sha256(index)}"]   # the index digest, as Docker shows
    assert img.manifest_digest == mine.digest
    assert not any(store.content.has(d) for d in other.layers + windows.layers)
    assert proxy.blob_gets(other.layers[0]) == [] and proxy.blob_gets(mine.layers[0]) != []
    # another platform on request; none at all for a platform the index lacks
    got = await client.resolve(reference.parse(name), None, ("linux", OTHER_ARCH))
    assert got[:2] == (other.digest, other.media_type) and got[2] == other.manifest
    with pytest.raises(ImageNotFound, match="no match for platform linux/s390x"):
        await client.resolve(reference.parse(name), None, ("linux", "s390x"))


async def test_concurrent_pulls_fetch_each_blob_once(registry, store, client, tmp_path, proxies):
    image = make_image([{"big": os.urandom(3 << 20)}, {"small": b"s"}, {"other": os.urandom(1 << 20)}])
    await push(client, registry.host, "shared/app:v1", image, tmp_path)
    await push(client, registry.host, "shared/app:alias", image, tmp_path)
    proxy = proxies(registry.host, throttle=8 << 20)
    puller = Puller(store, client)
    base = f"{proxy.host}/shared/app"
    results = await asyncio.gather(puller.pull(f"{base}:v1"), puller.pull(f"{base}:v1"), puller.pull(base + ":v1"),
                                   puller.pull(f"{base}:alias"), Puller(store, client).pull(f"{base}:v1"))
    assert {r.id for r in results} == {image.config_digest}
    for d in [image.config_digest, *image.layers]:
        assert len(proxy.blob_gets(d)) == 1, f"blob {d} fetched {len(proxy.blob_gets(d))} times"
    manifests_v1 = [r for r in proxy.log if r.method == "GET" and r.path.endswith("/manifests/v1")]
    assert len(manifests_v1) <= 2, "one Puller resolved the same reference more than once"
    assert sorted(store.get(image.config_digest).repo_tags) == [f"{base}:alias", f"{base}:v1"]
    # pulling again resolves the manifest but fetches no blob
    n = len(proxy.log)
    await puller.pull(f"{base}:v1")
    assert all("/manifests/" in r.path for r in proxy.log[n:])


async def test_mirrors(registry, store, tmp_path):
    image = make_image([{"m": b"mirrored"}])
    team = make_image([{"m": b"team"}])
    async with _client() as c:
        await push(c, registry.host, "library/kubelab-mirror-test:v1", image, tmp_path)
        await push(c, registry.host, "team/app:v1", team, tmp_path)
    dead = f"127.0.0.1:{free_port()}"
    # docker.io maps to registry-1.docker.io, never reached here: the mirror answers first
    async with _client(mirrors={"docker.io": [f"http://{dead}", registry.url]}) as c:
        img = await Puller(store, c).pull("kubelab-mirror-test:v1")
        assert img.repo_tags == ["docker.io/library/kubelab-mirror-test:v1"]
        assert store.get("kubelab-mirror-test:v1").id == image.config_digest
    # a mirror with a path prefix, for a host that does not exist
    async with _client(mirrors={"registry.invalid": [f"{registry.url}/v2/"]}) as c:
        img = await Puller(store, c).pull("registry.invalid/team/app:v1")
        assert img.repo_digests == [f"registry.invalid/team/app@{team.digest}"]
    # mirrors that do not have the image, then an upstream that does not exist: upstream's error counts
    async with _client(mirrors={"registry.invalid": [registry.url]}) as c:
        with pytest.raises(RegistryError, match="registry registry.invalid"):
            await Puller(store, c).pull("registry.invalid/absent/app:v1")


async def test_tls_registry(store, tmp_path):
    """HTTPS: loopback is insecure (no verification, as Docker); a non-loopback address is verified
    with ca_file, and an insecure one falls back to plain HTTP."""
    image = make_image([{"t": b"tls"}])
    with LocalRegistry(tls=True) as reg:
        async with _client() as c:
            await push(c, reg.host, "tls/app:v1", image, tmp_path)
            assert (await Puller(store, c).pull(f"{reg.host}/tls/app:v1")).id == image.config_digest
    ip = _non_loopback_ip()
    if ip is None:
        return
    with LocalRegistry(tls=True, listen=ip) as reg:
        ref = reference.parse(f"{reg.host}/tls/app:v1")
        async with _client(ca_file=reg.ca_file) as c:
            await push(c, reg.host, "tls/app:v1", image, tmp_path)
            assert (await c.resolve(ref))[0] == image.digest
        async with _client() as c:
            with pytest.raises(RegistryError, match=f"registry {reg.host}: TLS certificate verification failed"):
                await c.resolve(ref)
        async with _client(insecure=[ip]) as c:
            assert (await c.resolve(ref))[0] == image.digest
    with LocalRegistry(listen=ip) as reg:
        ref = reference.parse(f"{reg.host}/plain/app:v1")
        async with _client(insecure=[f"{ip}/32"]) as c:
            await push(c, reg.host, "plain/app:v1", image, tmp_path)
            assert (await c.resolve(ref))[0] == image.digest
        async with _client() as c:
            with pytest.raises(RegistryError, match=f"registry {reg.host}: TLS handshake failed"):
                await c.resolve(ref)


async def test_digests_are_verified(registry, store, client, tmp_path, proxies):
    """A lying Docker-Content-Digest and a corrupt blob in the registry's storage are refused,
    and nothing of them reaches the store."""
    image = make_image([{"x": b"x" * 5000}, {"y": b"y"}])
    await push(client, registry.host, "verify/app:v1", image, tmp_path)
    liar = proxies(registry.host, manifest_headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
    with pytest.raises(RegistryError, match="manifest digest mismatch: Docker-Content-Digest says sha256:1111"):
        await Puller(store, client).pull(f"{liar.host}/verify/app:v1")
    assert store.content.list() == []

    layer = image.layers[0]
    data_file = (registry.tmp / "storage/docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data")
    data_file.write_bytes(gzip.compress(tar_bytes({"x": b"X" * 5000}), mtime=0)[:len(image.blobs[layer])]
                          .ljust(len(image.blobs[layer]), b"\0"))
    with pytest.raises(RegistryError, match=f"blob {layer} of {registry.host}/verify/app: content digest mismatch"):
        await Puller(store, client).pull(f"{registry.host}/verify/app:v1")
    assert not store.content.has(layer) and store.list() == [] and store.snapshots.list() == []
    assert not store.content.ingest_path(layer).exists()
    blobs_valid(store)


async def test_stale_partials_and_registries_that_cannot_resume(registry, store, client, tmp_path, proxies):
    one = make_image([{"a": os.urandom(1 << 20)}], gzip_layers=False)
    two = make_image([{"b": os.urandom(1 << 20)}], gzip_layers=False)
    await push(client, registry.host, "partial/one:v1", one, tmp_path)
    await push(client, registry.host, "partial/two:v1", two, tmp_path)
    # a garbage prefix: the registry resumes after it, the digest check fails, the blob is fetched again whole
    a = one.layers[0]
    store.content.ingest_path(a).write_bytes(b"garbage!" * 1000)
    proxy = proxies(registry.host)
    await Puller(store, client).pull(f"{proxy.host}/partial/one:v1")
    assert [(r.range, r.status) for r in proxy.blob_gets(a)] == [("bytes=8000-", 206), (None, 200)]
    # a good prefix, but a registry that ignores Range: the download restarts from zero
    b = two.layers[0]
    store.content.ingest_path(b).write_bytes(two.blobs[b][:1000])
    no_range = proxies(registry.host, strip_range=True)
    await Puller(store, client).pull(f"{no_range.host}/partial/two:v1")
    # asked to resume, answered 200 with the whole blob: one GET, restarted from zero, verified
    assert [(r.range, r.status) for r in no_range.blob_gets(b)] == [("bytes=1000-", 200)]
    assert store.content.has(a) and store.content.has(b)
    blobs_valid(store)


async def test_registry_killed_mid_pull_then_resumed(store, client, tmp_path, proxies, monkeypatch, caplog):
    monkeypatch.setattr(pull_mod, "PROGRESS_INTERVAL", 0.2)
    caplog.set_level(logging.INFO, logger="kubelab.cri.image")
    big_data = os.urandom(40 << 20)
    image = make_image([{"small": b"small layer"}, {"big.bin": big_data}], gzip_layers=False)
    big = image.layers[1]
    with LocalRegistry() as reg:
        await push(client, reg.host, "big/app:v1", image, tmp_path)
        proxy = proxies(reg.host, throttle=12 << 20)
        name = f"{proxy.host}/big/app:v1"
        puller = Puller(store, client)
        task = asyncio.ensure_future(puller.pull(name))
        partial = store.content.ingest_path(big)
        assert await async_wait_for(lambda: partial.exists() and partial.stat().st_size > (5 << 20), 15)
        await asyncio.to_thread(reg.kill)
        with pytest.raises(RegistryError) as ei:
            await asyncio.wait_for(task, 20)
        assert not isinstance(ei.value, (ImageNotFound, Unauthorized))
        assert f"registry {proxy.host}" in str(ei.value), str(ei.value)
        # the store is consistent: no image, no snapshot, only verified blobs, a partial download
        assert store.get(name) is None and store.list() == []
        assert store.snapshots.list() == []
        assert not store.content.has(big)
        blobs_valid(store)
        assert image.config_digest in store.content.list()
        got = partial.stat().st_size
        assert 0 < got < len(big_data)
        assert any("progress=" in r.getMessage() and "%)" in r.getMessage() for r in caplog.records), \
            "no progress logged"

        reg.start()  # same port, same storage
        proxy.throttle = None
        img = await puller.pull(name)
        assert img.id == image.config_digest
        resumed = [r for r in proxy.blob_gets(big) if r.range]
        assert [(r.range, r.status) for r in resumed] == [(f"bytes={got}-", 206)]
        assert resumed[0].bytes < len(big_data) - got + (1 << 16)  # only the rest came over the wire
        lowers = await store.snapshots.ensure(img.layers, img.diff_ids)
        assert hashlib.sha256((lowers[0] / "big.bin").read_bytes()).digest() == hashlib.sha256(big_data).digest()
        assert not partial.exists()
        blobs_valid(store)


# --- helpers -----------------------------------------------------------------------------------------------

class _client:
    """async with _client(**kw) as c: a RegistryClient closed at exit."""

    def __init__(self, **kw) -> None:
        self.c = RegistryClient(**kw)

    async def __aenter__(self) -> RegistryClient:
        return self.c

    async def __aexit__(self, *exc: object) -> None:
        await self.c.close()


def _non_loopback_ip() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                return a.address
    return None
