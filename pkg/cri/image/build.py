"""Build small images from Debian packages: busybox, pause and nginx, as OCI layout tarballs.

Everything in an image comes out of .deb files fetched with `apt-get download` and unpacked with
`dpkg-deb -x`; nothing is copied from the host. The .debs and the finished archives are cached in
cache_dir, keyed by the recipe version and the package versions, so a second build is a file copy.
Builds are reproducible: layers are tars sorted by name, owned by root, with one fixed mtime (that of
the main binary in its package), gzip-compressed with no timestamp.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from kubelab import proc
from kubelab.cri.image.archive import host_platform, write_oci_layout
from kubelab.cri.image.content import sweep_tmp, tmp_name

log = logging.getLogger("kubelab.cri.image")

DEFAULT_CACHE = Path("/var/cache/kubelab/images")
RECIPE_VERSION = "1"
REPO_PREFIX = "localhost/kubelab/"
IMAGES = ("busybox", "nginx", "pause")
PAUSE_TAG = "3.9"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian's nginx-light is only a metapackage in bookworm; the binary is in "nginx"
NGINX_PACKAGE = "nginx"
LIB_SEARCH = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
              "usr/lib/aarch64-linux-gnu", "lib64", "lib", "usr/lib")
APT_OPTS = ["-o", "APT::Sandbox::User=root", "-q"]

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
NGINX_PASSWD = PASSWD + "www-data:x:33:33:www-data:/var/www:/bin/false\n"
NGINX_GROUP = GROUP + "www-data:x:33:\n"
NGINX_CONF = """\
daemon off;
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr notice;

events {
    worker_connections 256;
}

http {
    types {
        text/html html htm;
        text/css css;
        text/plain txt;
        application/javascript js;
        application/json json;
        image/png png;
    }
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;

    server {
        listen 80 default_server;
        listen [::]:80 default_server;
        server_name _;
        root /usr/share/nginx/html;
        index index.html;
        location / {
            try_files $uri $uri/ =404;
        }
    }
}
"""
INDEX_HTML = """\
<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>Served by Debian's nginx in a kubelab image.</p>
</body>
</html>
"""
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done"


class BuildError(Exception):
    """An image cannot be built; one line saying why."""


@dataclass
class Package:
    name: str
    version: str
    arch: str
    section: str
    depends: list[str]

    @property
    def deb_name(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"

    @property
    def upstream(self) -> str:
        v = self.version.split(":", 1)[-1]
        return v.rsplit("-", 1)[0] if "-" in v else v


def major_minor(version: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else version


# ---- apt ----
def _parse_deps(value: str) -> list[str]:
    out = []
    for clause in value.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(\[]", first, maxsplit=1)[0].split(":")[0]
        if name:
            out.append(name)
    return out


async def apt_show(names: list[str]) -> dict[str, Package]:
    """Candidate versions of packages (virtual or unknown names are left out)."""
    if not names:
        return {}
    res = await proc.run(["apt-cache", "show", "--no-all-versions", *names], check=False, timeout=120)
    pkgs: dict[str, Package] = {}
    for para in res.stdout.decode(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, val = line.partition(":")
                fields[key] = val.strip()
        if "Package" in fields and "Version" in fields and fields["Package"] not in pkgs:
            deps = _parse_deps(fields.get("Pre-Depends", "")) + _parse_deps(fields.get("Depends", ""))
            pkgs[fields["Package"]] = Package(fields["Package"], fields["Version"],
                                              fields.get("Architecture", "all"), fields.get("Section", ""), deps)
    return pkgs


async def resolve(roots: list[str], libraries: bool) -> dict[str, Package]:
    """The packages `roots`, plus (with libraries) the closure of their Depends limited to shared
    library packages (Section libs): what their binaries need at run time, nothing else."""
    found = await apt_show(roots)
    missing = [r for r in roots if r not in found]
    if missing:
        raise BuildError(f"package {missing[0]} is not known to apt (run `apt-get update`?)")
    if not libraries:
        return found
    todo = [d for p in found.values() for d in p.depends]
    seen = set(found)
    while todo:
        batch = sorted({d for d in todo if d not in seen})
        seen.update(batch)
        todo = []
        for p in (await apt_show(batch)).values():
            if p.section.split("/")[-1] == "libs":
                found[p.name] = p
                todo.extend(p.depends)
    return found


async def fetch_debs(pkgs: list[Package], debs_dir: Path) -> list[Path]:
    """The .deb of each package, downloaded (into the cache) unless already there."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    sweep_tmp(debs_dir)
    want = [p for p in pkgs if not (debs_dir / p.deb_name).is_file()]
    if want:
        tmp = debs_dir / tmp_name("dl")
        tmp.mkdir()
        try:
            try:
                await proc.run(["apt-get", "download", *APT_OPTS, *[f"{p.name}={p.version}" for p in want]],
                               cwd=str(tmp), timeout=600)
            except proc.CommandError as e:
                raise BuildError(f"downloading packages failed: {e}") from None
            for p in want:
                got = tmp / p.deb_name
                if not got.is_file():
                    cands = list(tmp.glob(f"{p.name}_*.deb"))
                    if len(cands) != 1:
                        raise BuildError(f"apt-get download did not produce {p.deb_name}")
                    got = cands[0]
                os.rename(got, debs_dir / p.deb_name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [debs_dir / p.deb_name for p in pkgs]


async def unpack_debs(debs: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        try:
            await proc.run(["dpkg-deb", "-x", str(deb), str(dest)], timeout=300)
        except proc.CommandError as e:
            raise BuildError(f"unpacking {deb.name} failed: {e}") from None


# ---- ELF: which shared libraries a binary needs ----
def elf_needs(path: Path) -> tuple[str | None, list[str]]:
    """(PT_INTERP, DT_NEEDED sonames) of a 64-bit little-endian ELF file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        return None, []
    if data[4] != 2 or data[5] != 1:
        raise BuildError(f"{path.name}: only 64-bit little-endian ELF files are supported")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, interp, dynamic = [], None, None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 3:
            interp = data[p_offset:p_offset + p_filesz].split(b"\0", 1)[0].decode()
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return interp, []

    def off(vaddr: int) -> int:
        for v, o, sz in loads:
            if v <= vaddr < v + sz:
                return vaddr - v + o
        raise BuildError(f"{path.name}: malformed ELF dynamic section")

    needed_offsets, strtab = [], None
    for i in range(dynamic[1] // 16):
        tag, val = struct.unpack_from("<qQ", data, dynamic[0] + i * 16)
        if tag == 0:
            break
        if tag == 1:
            needed_offsets.append(val)
        elif tag == 5:
            strtab = off(val)
    if strtab is None:
        return interp, []
    names = [data[strtab + o:data.index(b"\0", strtab + o)].decode() for o in needed_offsets]
    return interp, names


def _resolve_in(stage: Path, rel: str) -> list[str]:
    """The chain of paths (relative to stage) from rel to a regular file, following symlinks inside
    stage (absolute targets are relative to stage)."""
    chain = []
    cur = rel.lstrip("/")
    for _ in range(20):
        p = stage / cur
        chain.append(cur)
        if p.is_symlink():
            target = os.readlink(p)
            cur = (target.lstrip("/") if target.startswith("/")
                   else os.path.normpath(os.path.join(os.path.dirname(cur), target)))
            continue
        if not p.exists():
            raise FileNotFoundError(cur)
        return chain
    raise BuildError(f"too many symlinks at {rel}")


def copy_with_libraries(stage: Path, root: Path, binaries: list[str]) -> list[str]:
    """Copy binaries (paths relative to stage) into root with the shared libraries they need, looked
    up in the unpacked packages only. Returns what was copied."""
    copied: list[str] = []
    todo = list(binaries)
    done: set[str] = set()

    def copy_chain(rel: str) -> str:
        chain = _resolve_in(stage, rel)
        for c in chain:
            src, dst = stage / c, root / c
            if dst.exists() or dst.is_symlink():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst)
            copied.append(c)
        return chain[-1]

    while todo:
        rel = todo.pop()
        if rel in done:
            continue
        done.add(rel)
        real = copy_chain(rel)
        interp, needed = elf_needs(stage / real)
        if interp:
            todo.append(interp.lstrip("/"))
        for soname in needed:
            for d in LIB_SEARCH:
                if (stage / d / soname).exists() or (stage / d / soname).is_symlink():
                    todo.append(f"{d}/{soname}")
                    break
            else:
                raise BuildError(f"{os.path.basename(rel)} needs {soname}, which none of the unpacked packages provide")
    return copied


# ---- layers ----
class _HashWriter:
    def __init__(self, f) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.n += len(data)
        self.f.write(data)
        return len(data)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self.f.flush()


def make_layer(root: Path, out: Path, mtime: int) -> tuple[str, str]:
    """Tar root (sorted, root-owned, fixed mtime) gzip-compressed into out. Returns (diff_id, digest)."""
    with open(out, "wb") as raw:
        compressed = _HashWriter(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:  # type: ignore[arg-type]
            plain = _HashWriter(gz)
            with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[arg-type]
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames.sort()
                    rel_dir = os.path.relpath(dirpath, root)
                    for n in sorted(dirnames + filenames):
                        full = os.path.join(dirpath, n)
                        arc = n if rel_dir == "." else f"{rel_dir}/{n}"
                        ti = tf.gettarinfo(full, arc)
                        ti.uid = ti.gid = 0
                        ti.uname = ti.gname = "root"
                        ti.mtime = mtime
                        if ti.isreg():
                            with open(full, "rb") as f:
                                tf.addfile(ti, f)
                        else:
                            tf.addfile(ti)
    return "sha256:" + plain.h.hexdigest(), "sha256:" + compressed.h.hexdigest()


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)


def _dirs(root: Path, *rels: str, mode: int = 0o755) -> None:
    for rel in rels:
        p = root / rel
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, mode)


async def _busybox_root(stage: Path, root: Path) -> None:
    bb = stage / "bin" / "busybox"
    if not bb.is_file():
        raise BuildError("busybox-static did not provide /bin/busybox")
    _dirs(root, "bin", "dev", "etc", "proc", "sys", "run", "var", "usr/bin", "usr/sbin", "sbin", "home")
    _dirs(root, "root", mode=0o700)
    _dirs(root, "tmp", mode=0o1777)
    shutil.copy2(bb, root / "bin" / "busybox")
    os.chmod(root / "bin" / "busybox", 0o755)
    res = await proc.run([str(bb), "--list"], timeout=30)
    for applet in sorted(set(res.text.split())):
        if applet != "busybox" and "/" not in applet and not (root / "bin" / applet).exists():
            os.symlink("busybox", root / "bin" / applet)
    _write(root, "etc/passwd", PASSWD)
    _write(root, "etc/group", GROUP)


def _config(diff_ids: list[str], created: str, cfg: dict, history: str) -> bytes:
    os_, arch = host_platform()
    doc = {"created": created, "architecture": arch, "os": os_, "config": cfg,
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": created, "created_by": history}]}
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _rfc3339(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def build(name: str, out: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Build image `name` (busybox, nginx or pause) into the OCI layout tar `out`; return out."""
    if name not in IMAGES:
        raise BuildError(f"unknown image {name!r}: choose one of {', '.join(IMAGES)}")
    out, cache_dir = Path(out), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sweep_tmp(cache_dir)
    roots = ["busybox-static"] + ([NGINX_PACKAGE] if name == "nginx" else [])
    pkgs = await _resolve_cached(name, roots, cache_dir)
    key = hashlib.sha256(json.dumps({"recipe": RECIPE_VERSION, "image": name, "arch": host_platform()[1],
                                     "packages": {p.name: p.version for p in pkgs.values()}},
                                    sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir / f"{name}-{key}.tar"
    if not cached.is_file():
        await _build_uncached(name, pkgs, cached, cache_dir)
    if out.resolve() != cached.resolve():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / tmp_name(out.name)
        try:
            shutil.copyfile(cached, tmp)
            os.rename(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def _apt_lists_stamp() -> str:
    """Changes whenever `apt-get update` brings new package lists."""
    h = hashlib.sha256()
    lists = Path("/var/lib/apt/lists")
    try:
        for e in sorted(os.scandir(lists), key=lambda e: e.name):
            if e.is_file() and e.name not in ("lock",):
                st = e.stat()
                h.update(f"{e.name} {st.st_mtime_ns} {st.st_size}\n".encode())
    except FileNotFoundError:
        pass
    return h.hexdigest()


async def _resolve_cached(name: str, roots: list[str], cache_dir: Path) -> dict[str, Package]:
    """resolve(), remembered in cache_dir until apt's package lists change (apt-cache is slow)."""
    path = cache_dir / f"packages-{name}.json"
    stamp = _apt_lists_stamp()
    try:
        data = json.loads(path.read_text())
        if data.get("stamp") == stamp and data.get("recipe") == RECIPE_VERSION:
            return {n: Package(**p) for n, p in data["packages"].items()}
    except (OSError, ValueError, TypeError, KeyError):
        pass
    pkgs = await resolve(roots, libraries=(name == "nginx"))
    tmp = cache_dir / tmp_name(path.name)
    tmp.write_text(json.dumps({"stamp": stamp, "recipe": RECIPE_VERSION,
                               "packages": {n: p.__dict__ for n, p in pkgs.items()}}))
    os.rename(tmp, path)
    return pkgs


def image_ref(name: str, pkgs: dict[str, Package]) -> str:
    if name == "pause":
        return f"{REPO_PREFIX}pause:{PAUSE_TAG}"
    main = pkgs[NGINX_PACKAGE if name == "nginx" else "busybox-static"]
    return f"{REPO_PREFIX}{name}:{major_minor(main.upstream)}"


async def _build_uncached(name: str, pkgs: dict[str, Package], cached: Path, cache_dir: Path) -> None:
    started = time.monotonic()
    debs = await fetch_debs(sorted(pkgs.values(), key=lambda p: p.name), cache_dir / "debs")
    by_name = dict(zip(sorted(pkgs), debs))
    work = cache_dir / tmp_name("build")
    try:
        bb_stage = work / "stage-busybox"
        await unpack_debs([by_name["busybox-static"]], bb_stage)
        mtime = int((bb_stage / "bin" / "busybox").stat().st_mtime)
        bb_root = work / "busybox"
        await _busybox_root(bb_stage, bb_root)
        layers = [work / "layer0.tar.gz"]
        diff_ids = [make_layer(bb_root, layers[0], mtime)[0]]
        bb = pkgs["busybox-static"]
        if name == "busybox":
            cfg = {"Env": [PATH_ENV], "Cmd": ["sh"]}
            history = f"kubelab images build busybox (busybox-static {bb.version})"
        elif name == "pause":
            cfg = {"Env": [PATH_ENV], "Entrypoint": ["/bin/sh", "-c", PAUSE_SCRIPT], "WorkingDir": "/"}
            history = f"kubelab images build pause (busybox-static {bb.version})"
        else:
            stage = work / "stage-nginx"
            await unpack_debs([by_name[n] for n in sorted(pkgs) if n != "busybox-static"], stage)
            if not (stage / "usr/sbin/nginx").is_file():
                raise BuildError(f"package {NGINX_PACKAGE} did not provide /usr/sbin/nginx")
            mtime = int((stage / "usr/sbin/nginx").stat().st_mtime)
            ng_root = work / "nginx"
            copy_with_libraries(stage, ng_root, ["usr/sbin/nginx"])
            _write(ng_root, "etc/nginx/nginx.conf", NGINX_CONF)
            _write(ng_root, "usr/share/nginx/html/index.html", INDEX_HTML)
            _write(ng_root, "etc/passwd", NGINX_PASSWD)
            _write(ng_root, "etc/group", NGINX_GROUP)
            _dirs(ng_root, "var/log/nginx", "var/lib/nginx", "var/www", "run", "etc")
            for d in ("lib", "usr", "usr/lib", "usr/sbin", "usr/share", "usr/share/nginx", "lib64"):
                if (ng_root / d).is_dir():
                    os.chmod(ng_root / d, 0o755)
            layers.append(work / "layer1.tar.gz")
            diff_ids.append(make_layer(ng_root, layers[1], mtime)[0])
            ng = pkgs[NGINX_PACKAGE]
            cfg = {"Env": [PATH_ENV], "Cmd": ["nginx"], "ExposedPorts": {"80/tcp": {}},
                   "StopSignal": "SIGQUIT", "WorkingDir": "/"}
            history = (f"kubelab images build nginx ({NGINX_PACKAGE} {ng.version}; "
                       + ", ".join(f"{p.name} {p.version}" for p in sorted(pkgs.values(), key=lambda p: p.name)
                                   if p.name != NGINX_PACKAGE) + ")")
        config = _config(diff_ids, _rfc3339(mtime), cfg, history)
        ref = image_ref(name, pkgs)
        write_oci_layout(cached, [ref], config, layers)
        log.info("built image=%s ref=%s in %.1fs", name, ref, time.monotonic() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
