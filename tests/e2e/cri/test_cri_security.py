"""CRI conformance: what the container's security context and mounts do. Runs unchanged against
kubelab-cri and containerd."""
from __future__ import annotations

import os

import pytest

from kubelab.cri.api import api_pb2 as pb

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _images(cri):
    cri.pull("busybox")


def _run(cri, pods, cconfig, cmd: str, sconfig_kw: dict | None = None) -> tuple[str, int]:
    sid, sconfig = pods.run_sandbox(**(sconfig_kw or {}))
    cconfig.command[:] = ["sh", "-c", "sleep 3600"]
    cid = pods.start(sid, sconfig, cconfig)
    r = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", cmd], timeout=10))
    return (r.stdout + r.stderr).decode(), r.exit_code


def _caps(status: str, which: str = "CapEff") -> int:
    for line in status.splitlines():
        if line.startswith(which + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {which} in {status!r}")


CAP_NET_ADMIN, CAP_NET_RAW, CAP_CHOWN, CAP_SYS_ADMIN = 12, 13, 0, 21


def test_default_capabilities(cri, pods):
    out, _ = _run(cri, pods, pods.container_config("caps", "busybox"), "cat /proc/self/status")
    eff = _caps(out)
    assert eff & (1 << CAP_CHOWN) and eff & (1 << CAP_NET_RAW)
    assert not eff & (1 << CAP_NET_ADMIN) and not eff & (1 << CAP_SYS_ADMIN)


def test_capabilities_add_and_drop(cri, pods):
    c = pods.container_config("caps", "busybox")
    c.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
    c.linux.security_context.capabilities.drop_capabilities.append("CHOWN")
    out, _ = _run(cri, pods, c, "cat /proc/self/status")
    eff = _caps(out)
    assert eff & (1 << CAP_NET_ADMIN) and not eff & (1 << CAP_CHOWN)


def test_drop_all(cri, pods):
    c = pods.container_config("caps", "busybox")
    c.linux.security_context.capabilities.drop_capabilities.append("ALL")
    out, _ = _run(cri, pods, c, "cat /proc/self/status")
    assert _caps(out) == 0


def test_privileged_gets_all_capabilities_and_devices(cri, pods):
    sconfig = pods.sandbox_config()
    sconfig.linux.security_context.privileged = True     # a privileged container needs a privileged pod
    sid, sconfig = pods.run_sandbox(sconfig)
    c = pods.container_config("priv", "busybox", ["sleep", "3600"])
    c.linux.security_context.privileged = True
    cid = pods.start(sid, sconfig, c)
    out = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", "cat /proc/self/status; ls /dev"],
                                             timeout=10)).stdout.decode()
    assert _caps(out) & (1 << CAP_SYS_ADMIN)
    host_only = {"kmsg", "loop0", "loop-control"} & set(os.listdir("/dev"))
    assert host_only and host_only <= set(out.split()), out     # the host's devices


def test_run_as_username_and_groups(cri, pods):
    c = pods.container_config("who", "busybox")
    c.linux.security_context.run_as_username = "nobody"
    c.linux.security_context.supplemental_groups.extend([1234, 5678])
    out, _ = _run(cri, pods, c, "id -u; id -G")
    lines = out.split()
    assert lines[0] == "65534"
    assert {"1234", "5678"} <= set(lines[1:])


def test_run_as_user_and_group(cri, pods):
    c = pods.container_config("who", "busybox", run_as_user=1000)
    c.linux.security_context.run_as_group.value = 2000
    out, _ = _run(cri, pods, c, "id -u; id -g")
    assert out.split() == ["1000", "2000"]


def test_readonly_rootfs(cri, pods):
    c = pods.container_config("ro", "busybox")
    c.linux.security_context.readonly_rootfs = True
    out, code = _run(cri, pods, c, "touch /x")
    assert code != 0 and "Read-only file system" in out


def test_volume_mounts_readonly_and_readwrite(cri, pods, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "data").write_text("from-host\n")
    c = pods.container_config("vol", "busybox")
    c.mounts.append(pb.Mount(container_path="/rw", host_path=str(rw)))
    c.mounts.append(pb.Mount(container_path="/ro", host_path=str(ro), readonly=True))
    out, code = _run(cri, pods, c, "echo written > /rw/out && cat /ro/data && touch /ro/nope")
    assert "from-host" in out and code != 0 and "Read-only file system" in out
    assert (rw / "out").read_text() == "written\n"
    assert not (ro / "nope").exists()


def test_mount_propagation_host_to_container(cri, pods, tmp_path):
    src = tmp_path / "prop"
    src.mkdir()
    os.system(f"mount --bind {src} {src} && mount --make-rshared {src}")
    try:
        c = pods.container_config("prop", "busybox")
        c.mounts.append(pb.Mount(container_path="/prop", host_path=str(src),
                                 propagation=pb.PROPAGATION_HOST_TO_CONTAINER))
        sid, sconfig = pods.run_sandbox()
        c.command[:] = ["sleep", "3600"]
        cid = pods.start(sid, sconfig, c)
        (src / "sub").mkdir()
        os.system(f"mount -t tmpfs kubelab-prop {src / 'sub'}")
        (src / "sub" / "seen").write_text("yes\n")
        r = cri.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/prop/sub/seen"], timeout=10))
        assert r.stdout == b"yes\n", r
    finally:
        os.system(f"umount -l {src / 'sub'} 2>/dev/null; umount -l {src} 2>/dev/null")


def test_masked_and_readonly_paths(cri, pods):
    c = pods.container_config("masked", "busybox")
    c.linux.security_context.masked_paths.extend(["/proc/timer_list", "/proc/kcore"])
    c.linux.security_context.readonly_paths.extend(["/proc/sys"])
    out, _ = _run(cri, pods, c, "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/domainname; echo rc=$?")
    assert out.splitlines()[0].strip() == "0"
    assert "rc=1" in out or "Read-only" in out


def test_seccomp_runtime_default_and_unconfined(cri, pods):
    confined = pods.container_config("sc", "busybox")
    confined.linux.security_context.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    out, _ = _run(cri, pods, confined, "grep Seccomp: /proc/self/status")
    assert out.split()[1] == "2"      # filter mode
    free = pods.container_config("sc2", "busybox")
    free.linux.security_context.seccomp.profile_type = pb.SecurityProfile.Unconfined
    out, _ = _run(cri, pods, free, "grep Seccomp: /proc/self/status")
    assert out.split()[1] == "0"


def test_no_new_privs(cri, pods):
    c = pods.container_config("nnp", "busybox")
    c.linux.security_context.no_new_privs = True
    out, _ = _run(cri, pods, c, "grep NoNewPrivs /proc/self/status")
    assert out.split()[1] == "1"


def test_devices(cri, pods):
    c = pods.container_config("dev", "busybox")
    c.devices.append(pb.Device(container_path="/dev/kubelab-null", host_path="/dev/null", permissions="rwm"))
    out, code = _run(cri, pods, c, "echo hi > /dev/kubelab-null && ls -l /dev/kubelab-null")
    assert code == 0 and out.startswith("c"), out
