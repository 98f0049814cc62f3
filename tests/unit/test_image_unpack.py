"""Layer unpacking: tarballs made here with tarfile, unpacked into a temp dir (as root, like the runtime)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from kubelab.cri.image.unpack import LayerError, unpack_layer

MTIME = 1_600_000_000


def entry(name: str, kind: str = "file", data: bytes = b"", mode: int = 0o644, link: str = "", uid: int = 0,
          gid: int = 0, mtime: int = MTIME, pax: dict | None = None, dev: tuple[int, int] = (0, 0)):
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
               "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = mode, uid, gid, mtime, link
    ti.devmajor, ti.devminor = dev
    if pax:
        ti.pax_headers = pax
    ti.size = len(data) if kind == "file" else 0
    return ti, data


def make_tar(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def blob_of(tmp_path: Path, data: bytes) -> Path:
    """Store the layer like the content store does, so messages name it by digest."""
    d = tmp_path / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    p = d / hashlib.sha256(data).hexdigest()
    p.write_bytes(data)
    return p


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    # deep enough that "../.." from dest still lands inside tmp_path, where we can look for leaks
    d = tmp_path / "a" / "b" / "dest"
    d.mkdir(parents=True)
    return d


def test_files_dirs_links_metadata(tmp_path, dest):
    tar = make_tar(
        entry("etc", "dir", mode=0o755, mtime=MTIME - 10),
        entry("etc/conf", data=b"hello\n", mode=0o640, uid=1000, gid=1001, pax={"SCHILY.xattr.user.note": "hi"}),
        entry("bin", "dir", mode=0o755),
        entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755),
        entry("bin/alias", "hard", link="bin/tool"),
        entry("bin/sh", "sym", link="tool", mtime=MTIME - 5),
        entry("etc/hostpasswd", "sym", link="/etc/passwd"),   # may point anywhere: it is only a link
        entry("etc/up", "sym", link="../../../../outside"),
        entry("run", "dir", mode=0o1777, mtime=MTIME - 20),
        entry("run/pipe", "fifo", mode=0o600),
        entry("usr/lib/deep/file", data=b"x"),                 # parents not in the archive
    )
    diff_id = unpack_layer(blob_of(tmp_path, tar), dest)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()

    st = os.stat(dest / "etc/conf")
    assert (dest / "etc/conf").read_bytes() == b"hello\n"
    assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == MTIME
    assert os.getxattr(dest / "etc/conf", "user.note") == b"hi"
    assert stat.S_IMODE(os.stat(dest / "bin/tool").st_mode) == 0o4755        # setuid kept after chown
    assert os.stat(dest / "bin/alias").st_ino == os.stat(dest / "bin/tool").st_ino
    assert os.readlink(dest / "bin/sh") == "tool"
    assert os.lstat(dest / "bin/sh").st_mtime == MTIME - 5
    assert os.readlink(dest / "etc/hostpasswd") == "/etc/passwd"
    assert os.readlink(dest / "etc/up") == "../../../../outside"
    assert os.stat(dest / "etc").st_mtime == MTIME - 10                       # set after its children
    assert stat.S_IMODE(os.stat(dest / "run").st_mode) == 0o1777
    assert os.stat(dest / "run").st_mtime == MTIME - 20
    assert stat.S_ISFIFO(os.lstat(dest / "run/pipe").st_mode)
    assert (dest / "usr/lib/deep/file").read_bytes() == b"x"

    # the same layer gzip-compressed: same diff ID (the digest of the uncompressed tar)
    dest2 = tmp_path / "gz"
    assert unpack_layer(blob_of(tmp_path, gzip.compress(tar)), dest2) == diff_id
    assert (dest2 / "etc/conf").read_bytes() == b"hello\n"


def test_whiteouts_and_opaque_dirs_become_overlay_whiteouts(tmp_path, dest):
    tar = make_tar(
        entry("gone.txt", data=b"will be whited out in this layer"),
        entry(".wh.gone.txt"),
        entry("etc", "dir", mode=0o755),
        entry("etc/.wh.removed"),
        entry("data", "dir", mode=0o755),
        entry("data/.wh..wh..opq"),
        entry("data/kept", data=b"new"),
        entry(".wh..wh.plnk", "dir"),  # aufs metadata: ignored
    )
    unpack_layer(blob_of(tmp_path, tar), dest)
    for wh in ("gone.txt", "etc/removed"):
        st = os.lstat(dest / wh)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0), wh
    assert os.getxattr(dest / "data", "trusted.overlay.opaque") == b"y"
    assert (dest / "data/kept").read_bytes() == b"new"
    assert not (dest / "data/.wh..wh..opq").exists()
    assert sorted(os.listdir(dest)) == ["data", "etc", "gone.txt"]


def test_trusted_xattrs_from_the_archive_are_dropped(tmp_path, dest):
    tar = make_tar(entry("d", "dir", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                                          "SCHILY.xattr.trusted.overlay.redirect": "/etc"}))
    unpack_layer(blob_of(tmp_path, tar), dest)
    with pytest.raises(OSError):
        os.getxattr(dest / "d", "trusted.overlay.opaque")


def test_later_entries_replace_earlier_ones(tmp_path, dest):
    tar = make_tar(
        entry("x", "dir"), entry("x/child", data=b"1"),
        entry("x", data=b"now a file"),           # a file replaces the dir
        entry("y", data=b"file"), entry("y", "dir", mode=0o700),
    )
    unpack_layer(blob_of(tmp_path, tar), dest)
    assert (dest / "x").read_bytes() == b"now a file"
    assert (dest / "y").is_dir()


def _no_leak(tmp_path: Path) -> None:
    leaked = [p for p in tmp_path.rglob("*") if p.name in ("x", "passwd", "pwned")
              and "dest" not in p.relative_to(tmp_path).parts]
    assert not leaked, leaked


@pytest.mark.parametrize("name", ["../../x", "a/../../../x", "../x", "./../x"])
def test_dotdot_is_refused_with_a_message_naming_the_entry(tmp_path, dest, name):
    tar = make_tar(entry(name, data=b"pwned"))
    blob = blob_of(tmp_path, tar)
    with pytest.raises(LayerError) as e:
        unpack_layer(blob, dest)
    assert str(e.value) == f'layer sha256:{blob.name}: entry "{name}" escapes the root'
    _no_leak(tmp_path)


def test_absolute_path_is_refused(tmp_path, dest):
    with pytest.raises(LayerError, match=r'entry "/tmp/pwned" escapes the root \(absolute path\)'):
        unpack_layer(blob_of(tmp_path, make_tar(entry("/tmp/pwned", data=b"x"))), dest)
    assert not Path("/tmp/pwned").exists()


def test_write_through_a_symlinked_parent_that_climbs_out_is_refused(tmp_path, dest):
    tar = make_tar(entry("evil", "sym", link="../../.."), entry("evil/x", data=b"pwned"))
    with pytest.raises(LayerError, match=r'entry "evil/x" escapes the root through a symlink'):
        unpack_layer(blob_of(tmp_path, tar), dest)
    _no_leak(tmp_path)


def test_absolute_symlinked_parent_stays_inside_the_root(tmp_path, dest):
    outside = tmp_path / "a" / "hostetc"
    outside.mkdir()
    (outside / "passwd").write_text("host\n")
    tar = make_tar(entry("etc", "sym", link=str(outside)), entry("etc/passwd", data=b"container\n"))
    unpack_layer(blob_of(tmp_path, tar), dest)
    # /<outside> is taken inside the layer root, as the container will see it
    assert (outside / "passwd").read_text() == "host\n"
    assert (dest / str(outside).lstrip("/") / "passwd").read_text() == "container\n"


def test_a_file_entry_replaces_a_symlink_instead_of_writing_through_it(tmp_path, dest):
    victim = tmp_path / "victim"
    victim.write_text("original")
    tar = make_tar(entry("f", "sym", link=str(victim)), entry("f", data=b"pwned"))
    unpack_layer(blob_of(tmp_path, tar), dest)
    assert victim.read_text() == "original"
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"pwned"


@pytest.mark.parametrize("link,why", [
    ("../../../victim", 'is a hard link to "../../../victim" which escapes the root'),
    ("/etc/passwd", 'is a hard link to "/etc/passwd" which escapes the root (absolute path)'),
    ("missing", 'is a hard link to "missing" which is not in the layer'),
])
def test_hard_links_out_of_the_layer_are_refused(tmp_path, dest, link, why):
    (tmp_path / "victim").write_text("secret")
    with pytest.raises(LayerError) as e:
        unpack_layer(blob_of(tmp_path, make_tar(entry("h", "hard", link=link))), dest)
    assert f'entry "h" {why}' in str(e.value)
    assert os.stat(tmp_path / "victim").st_nlink == 1


def test_hard_link_through_a_symlink_resolves_inside_the_root(tmp_path, dest):
    tar = make_tar(entry("s", "sym", link="/etc"), entry("h", "hard", link="s/passwd"))
    with pytest.raises(LayerError, match='refers to "etc" which is not in the layer'):
        unpack_layer(blob_of(tmp_path, tar), dest)
    assert os.stat("/etc/passwd").st_nlink == 1


def test_device_nodes_are_skipped(tmp_path, dest):
    tar = make_tar(entry("dev", "dir"), entry("dev/sda", "blk", dev=(8, 0)), entry("dev/null", "chr", dev=(1, 3)),
                   entry("dev/kept", data=b"ok"))
    unpack_layer(blob_of(tmp_path, tar), dest)
    assert sorted(os.listdir(dest / "dev")) == ["kept"]


def test_zstd_is_refused_clearly(tmp_path, dest):
    blob = blob_of(tmp_path, b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(LayerError, match=f"layer sha256:{blob.name}: zstd-compressed layers are not supported"):
        unpack_layer(blob, dest)


@pytest.mark.parametrize("data", [gzip.compress(b"x" * 5000)[:-20], b"\x1f\x8bgarbage", b"not a tar at all" * 100])
def test_corrupt_layers_raise_layer_error(tmp_path, dest, data):
    with pytest.raises(LayerError, match="corrupt or truncated"):
        unpack_layer(blob_of(tmp_path, data), dest)
