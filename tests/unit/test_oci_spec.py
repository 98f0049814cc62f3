"""OCI specs built from CRI messages, checked against what containerd's CRI plugin builds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubelab.cri.api import api_pb2 as pb
from kubelab.cri.runtime import seccomp
from kubelab.cri.runtime import spec as s

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "# a comment\n"
          "nobody:x:65534:65534::/:/bin/false\n")
GROUP = ("root:x:0:\n"
         "wheel:x:10:root\n"
         "app:x:1000:\n"
         "extra:x:2000:app,nobody\n"
         "more:x:2001:nobody, app\n")


@pytest.fixture
def rootfs(tmp_path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text(PASSWD)
    (r / "etc" / "group").write_text(GROUP)
    return r


@pytest.fixture
def sandbox(tmp_path) -> s.SandboxInfo:
    d = tmp_path / "sandbox"
    d.mkdir()
    for name in ("hostname", "hosts", "resolv.conf"):
        (d / name).write_text(name + "\n")
    (d / "shm").mkdir()
    cfg = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web", namespace="prod", uid="uid-1", attempt=0),
                              hostname="web-0", linux=pb.LinuxPodSandboxConfig(cgroup_parent="/kubepods/podUID"))
    return s.SandboxInfo(id="sb1", config=cfg, netns="/run/netns/sb1", uts=str(d / "uts"), ipc=str(d / "ipc"),
                         shm=str(d / "shm"), hostname_file=str(d / "hostname"), hosts_file=str(d / "hosts"),
                         resolv_file=str(d / "resolv.conf"))


IMAGE = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
         "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C", "IMG=1"], "Entrypoint": ["/entry"],
                    "Cmd": ["--serve"], "WorkingDir": "/srv"}}


def container(**kw) -> pb.ContainerConfig:
    kw.setdefault("metadata", pb.ContainerMetadata(name="app"))
    kw.setdefault("image", pb.ImageSpec(image="docker.io/library/nginx:latest"))
    return pb.ContainerConfig(**kw)


def build(rootfs, sandbox, cfg=None, image=IMAGE, **kw):
    kw.setdefault("container_id", "c1")
    kw.setdefault("oom_score_adj_floor", 0)
    kw.setdefault("cgroup_v2", False)
    kw.setdefault("swap_available", True)
    kw.setdefault("hugetlb_available", True)
    kw.setdefault("mount_lookup", lambda p: ("/", ""))
    kw.setdefault("host_caps", list(s.CAP_NAMES))
    spec = s.build_spec(image, cfg or container(), sandbox, rootfs, **kw)
    json.dumps(spec)                    # what runc reads: must be plain JSON
    return spec


def mount(spec, dest):
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) <= 1, f"{dest} mounted twice"
    return found[0] if found else None


# ---------------------------------------------------------------- process

@pytest.mark.parametrize("entry,cmd,command,args,want", [
    (["/entry"], ["--serve"], [], [], ["/entry", "--serve"]),
    (["/entry"], ["--serve"], [], ["--debug"], ["/entry", "--debug"]),
    (["/entry"], ["--serve"], ["/bin/sh"], [], ["/bin/sh"]),               # command drops the image Cmd too
    (["/entry"], ["--serve"], ["/bin/sh"], ["-c", "x"], ["/bin/sh", "-c", "x"]),
    ([], ["nginx", "-g", "daemon off;"], [], [], ["nginx", "-g", "daemon off;"]),
    ([""], ["run"], [], [], ["run"]),                                      # Entrypoint [""] means none
    (None, None, [], ["echo", "hi"], ["echo", "hi"]),
])
def test_process_args_follow_kubernetes_command_and_args(entry, cmd, command, args, want):
    image = {"config": {k: v for k, v in (("Entrypoint", entry), ("Cmd", cmd)) if v is not None}}
    assert s.process_args(image, command, args) == want


def test_no_command_at_all_is_an_error(rootfs, sandbox):
    with pytest.raises(s.SpecError, match="no command specified"):
        build(rootfs, sandbox, image={"config": {}})


def test_env_merges_image_then_config_with_hostname_and_default_path(rootfs, sandbox):
    cfg = container(envs=[pb.KeyValue(key="IMG", value="2"), pb.KeyValue(key="NEW", value="x=y")])
    env = build(rootfs, sandbox, cfg)["process"]["env"]
    assert env == ["PATH=/usr/bin:/bin", "HOSTNAME=web-0", "LANG=C", "IMG=2", "NEW=x=y"]
    env = build(rootfs, sandbox, cfg, image={"config": {"Cmd": ["x"]}})["process"]["env"]
    assert env[0] == s.DEFAULT_PATH_ENV
    assert s.merge_env(["A=1", "B=2"], ["A", "C=3"]) == ["B=2", "C=3"]


def test_working_dir_config_then_image_then_root(rootfs, sandbox):
    assert build(rootfs, sandbox, container(working_dir="/w"))["process"]["cwd"] == "/w"
    assert build(rootfs, sandbox)["process"]["cwd"] == "/srv"
    assert build(rootfs, sandbox, image={"config": {"Cmd": ["x"]}})["process"]["cwd"] == "/"


def test_tty_rlimits_and_no_new_privs(rootfs, sandbox):
    p = build(rootfs, sandbox)["process"]
    assert p["terminal"] is False and p["noNewPrivileges"] is False and "rlimits" not in p
    sc = pb.LinuxContainerSecurityContext(no_new_privs=True)
    p = build(rootfs, sandbox, container(tty=True, linux=pb.LinuxContainerConfig(security_context=sc)))["process"]
    assert p["terminal"] is True and p["noNewPrivileges"] is True


# ---------------------------------------------------------------- users

def sc_cfg(**kw) -> pb.ContainerConfig:
    return container(linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**kw)))


def test_default_user_is_root_with_its_groups(rootfs, sandbox):
    assert build(rootfs, sandbox)["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}


def test_user_by_uid_takes_the_primary_gid_from_passwd(rootfs, sandbox):
    user = build(rootfs, sandbox, sc_cfg(run_as_user=pb.Int64Value(value=1000)))["process"]["user"]
    assert user == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 2000, 2001]}
    unknown = build(rootfs, sandbox, sc_cfg(run_as_user=pb.Int64Value(value=4242)))["process"]["user"]
    assert unknown == {"uid": 4242, "gid": 0, "additionalGids": [0]}


def test_user_by_name_group_and_supplemental_groups(rootfs, sandbox):
    user = build(rootfs, sandbox, sc_cfg(run_as_username="app", run_as_group=pb.Int64Value(value=3000),
                                         supplemental_groups=[5000, 2000]))["process"]["user"]
    assert user == {"uid": 1000, "gid": 3000, "additionalGids": [2000, 2001, 3000, 5000]}
    strict = build(rootfs, sandbox, sc_cfg(run_as_username="app", supplemental_groups=[5000],
                                           supplemental_groups_policy=1))["process"]["user"]
    assert strict == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 5000]}


def test_image_user_strings(rootfs, sandbox):
    def user_of(u):
        image = {"config": {"Cmd": ["x"], "User": u}}
        return build(rootfs, sandbox, image=image)["process"]["user"]
    assert user_of("app")["uid"] == 1000
    assert user_of("app:extra")[("gid")] == 2000
    assert user_of("1000:7") == {"uid": 1000, "gid": 7, "additionalGids": [7, 2000, 2001]}
    assert user_of("nobody")["uid"] == 65534
    with pytest.raises(s.SpecError, match="unable to find user ghost"):
        user_of("ghost")
    with pytest.raises(s.SpecError, match="unable to find group nogroup"):
        user_of("app:nogroup")
    # the CRI's user wins over the image's
    image = {"config": {"Cmd": ["x"], "User": "app"}}
    assert build(rootfs, sandbox, sc_cfg(run_as_user=pb.Int64Value(value=0)), image=image)["process"]["user"]["uid"] == 0


def test_group_without_user_is_an_error(rootfs, sandbox):
    with pytest.raises(s.SpecError, match="without user"):
        build(rootfs, sandbox, sc_cfg(run_as_group=pb.Int64Value(value=5)))


def test_passwd_symlinks_resolve_inside_the_rootfs(rootfs, sandbox):
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "lib").mkdir()
    (rootfs / "lib" / "pw").write_text("root:x:0:0::/:/bin/sh\nweb:x:33:33::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").symlink_to("/../../lib/pw")     # absolute, climbing: stays in rootfs
    user = build(rootfs, sandbox, sc_cfg(run_as_username="web"))["process"]["user"]
    assert user["uid"] == 33 and user["gid"] == 33


# ---------------------------------------------------------------- capabilities, privileged

def caps_of(spec):
    c = spec["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == c["permitted"]
    assert "inheritable" not in c and "ambient" not in c
    return c["bounding"]


def test_default_capabilities_are_upstreams_fourteen(rootfs, sandbox):
    assert len(s.DEFAULT_CAPS) == 14
    assert caps_of(build(rootfs, sandbox)) == s.DEFAULT_CAPS


@pytest.mark.parametrize("add,drop,check", [
    (["NET_ADMIN"], ["CHOWN"], lambda c: "CAP_NET_ADMIN" in c and "CAP_CHOWN" not in c and len(c) == 14),
    (["ALL"], ["CHOWN"], lambda c: "CAP_SYS_ADMIN" in c and "CAP_CHOWN" not in c),
    (["NET_BIND_SERVICE"], ["ALL"], lambda c: c == ["CAP_NET_BIND_SERVICE"]),
    (["all"], ["all"], lambda c: c == []),
    (["CAP_SYS_TIME"], [], lambda c: "CAP_SYS_TIME" in c and "CAP_CAP_SYS_TIME" not in c),
])
def test_capability_add_and_drop(rootfs, sandbox, add, drop, check):
    cfg = sc_cfg(capabilities=pb.Capability(add_capabilities=add, drop_capabilities=drop))
    assert check(caps_of(build(rootfs, sandbox, cfg)))


def test_privileged_needs_a_privileged_sandbox(rootfs, sandbox):
    with pytest.raises(s.SpecError, match="no privileged container allowed in sandbox"):
        build(rootfs, sandbox, sc_cfg(privileged=True))


def test_privileged_gets_everything(rootfs, sandbox):
    sandbox.config.linux.security_context.privileged = True
    cfg = sc_cfg(privileged=True, seccomp=pb.SecurityProfile(profile_type=0),
                 capabilities=pb.Capability(drop_capabilities=["ALL"]))
    spec = build(rootfs, sandbox, cfg, host_caps=["CAP_CHOWN", "CAP_SYS_ADMIN"])
    assert caps_of(spec) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    lin = spec["linux"]
    assert "maskedPaths" not in lin and "readonlyPaths" not in lin and "seccomp" not in lin
    assert lin["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" and d["type"] == "c" for d in lin["devices"])
    assert "ro" not in mount(spec, "/sys")["options"]
    assert "ro" not in mount(spec, "/sys/fs/cgroup")["options"]


# ---------------------------------------------------------------- paths and mounts

def test_masked_and_readonly_paths_default_or_from_cri(rootfs, sandbox):
    lin = build(rootfs, sandbox)["linux"]
    assert lin["maskedPaths"] == s.DEFAULT_MASKED_PATHS and "/proc/kcore" in lin["maskedPaths"]
    assert lin["readonlyPaths"] == s.DEFAULT_READONLY_PATHS
    lin = build(rootfs, sandbox, sc_cfg(masked_paths=["/proc/x"], readonly_paths=["/proc/y"]))["linux"]
    assert lin["maskedPaths"] == ["/proc/x"] and lin["readonlyPaths"] == ["/proc/y"]


def test_default_mounts_and_sandbox_files(rootfs, sandbox):
    spec = build(rootfs, sandbox)
    dests = [m["destination"] for m in spec["mounts"]]
    for d in ("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm", "/etc/hosts",
              "/etc/hostname", "/etc/resolv.conf"):
        assert d in dests
    assert "/run" not in dests
    assert dests.index("/dev") < dests.index("/dev/pts")
    assert mount(spec, "/sys")["options"][-1] == "ro" and "ro" in mount(spec, "/sys/fs/cgroup")["options"]
    shm = mount(spec, "/dev/shm")
    assert shm == {"destination": "/dev/shm", "type": "bind", "source": sandbox.shm,
                   "options": ["rbind", "rprivate", "rw"]}
    assert mount(spec, "/etc/hosts")["source"] == sandbox.hosts_file
    assert mount(spec, "/etc/resolv.conf")["options"] == ["rbind", "rprivate", "rw"]
    assert spec["root"] == {"path": str(rootfs), "readonly": False}


def test_readonly_rootfs_makes_the_sandbox_files_readonly(rootfs, sandbox):
    spec = build(rootfs, sandbox, sc_cfg(readonly_rootfs=True))
    assert spec["root"]["readonly"] is True
    for d in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        assert mount(spec, d)["options"][-1] == "ro"
    assert mount(spec, "/dev/shm")["options"][-1] == "rw"


def test_volume_mounts_readonly_propagation_and_order(rootfs, sandbox, tmp_path):
    data, logs, hosts = tmp_path / "data", tmp_path / "logs", tmp_path / "myhosts"
    data.mkdir()
    hosts.write_text("x")
    shared = {str(data): ("/", "shared:1"), str(logs): ("/", "master:3")}
    cfg = container(mounts=[
        pb.Mount(container_path="/var/lib/data/sub", host_path=str(data), propagation=pb.PROPAGATION_PRIVATE),
        pb.Mount(container_path="/var/lib/data", host_path=str(data), readonly=True,
                 propagation=pb.PROPAGATION_BIDIRECTIONAL),
        pb.Mount(container_path="/logs", host_path=str(logs), propagation=pb.PROPAGATION_HOST_TO_CONTAINER),
        pb.Mount(container_path="/etc/hosts", host_path=str(hosts), readonly=True),
    ])
    spec = build(rootfs, sandbox, cfg, mount_lookup=lambda p: shared.get(str(p), ("/", "")))
    assert logs.is_dir()                          # created, as containerd does
    assert mount(spec, "/var/lib/data")["options"] == ["rbind", "rshared", "ro"]
    assert mount(spec, "/logs")["options"] == ["rbind", "rslave", "rw"]
    assert mount(spec, "/etc/hosts")["source"] == str(hosts)          # the CRI's mount wins
    dests = [m["destination"] for m in spec["mounts"]]
    assert dests.index("/var/lib/data") < dests.index("/var/lib/data/sub")
    assert spec["linux"]["rootfsPropagation"] == "rshared"


def test_propagation_needs_a_shared_or_slave_source(rootfs, sandbox, tmp_path):
    cfg = container(mounts=[pb.Mount(container_path="/m", host_path=str(tmp_path),
                                     propagation=pb.PROPAGATION_HOST_TO_CONTAINER)])
    with pytest.raises(s.SpecError, match="not a shared or slave mount"):
        build(rootfs, sandbox, cfg)
    cfg.mounts[0].propagation = pb.PROPAGATION_BIDIRECTIONAL
    with pytest.raises(s.SpecError, match="not a shared mount"):
        build(rootfs, sandbox, cfg, mount_lookup=lambda p: ("/", "master:1"))


def test_devices(rootfs, sandbox):
    cfg = container(devices=[pb.Device(container_path="/dev/mynull", host_path="/dev/null", permissions="rw")])
    lin = build(rootfs, sandbox, cfg)["linux"]
    assert lin["devices"][0]["path"] == "/dev/mynull"
    assert (lin["devices"][0]["type"], lin["devices"][0]["major"], lin["devices"][0]["minor"]) == ("c", 1, 3)
    assert lin["resources"]["devices"] == [{"allow": False, "access": "rwm"},
                                           {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    with pytest.raises(s.SpecError, match="not a device node"):
        build(rootfs, sandbox, container(devices=[pb.Device(container_path="/x", host_path=str(rootfs))]))


# ---------------------------------------------------------------- namespaces

def ns_of(spec):
    return {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}


def test_pod_namespaces_are_joined_by_path(rootfs, sandbox):
    ns = ns_of(build(rootfs, sandbox))
    assert ns == {"pid": None, "network": "/run/netns/sb1", "ipc": sandbox.ipc, "uts": sandbox.uts, "mount": None}
    assert "cgroup" in ns_of(build(rootfs, sandbox, cgroup_v2=True))


@pytest.mark.parametrize("mode,pod_ns,target,want", [
    (pb.CONTAINER, "", "", None),
    (pb.POD, "/proc/42/ns/pid", "", "/proc/42/ns/pid"),
    (pb.POD, "", "", None),
    (pb.TARGET, "", "/proc/7/ns/pid", "/proc/7/ns/pid"),
])
def test_pid_namespace_modes(rootfs, sandbox, mode, pod_ns, target, want):
    sandbox.pid_ns = pod_ns
    spec = build(rootfs, sandbox, sc_cfg(namespace_options=pb.NamespaceOption(pid=mode)), target_pid_ns=target)
    assert ns_of(spec)["pid"] == want


def test_host_pid_and_host_network_and_ipc(rootfs, sandbox):
    ns = ns_of(build(rootfs, sandbox, sc_cfg(namespace_options=pb.NamespaceOption(pid=pb.NODE))))
    assert "pid" not in ns
    with pytest.raises(s.SpecError, match="TARGET"):
        build(rootfs, sandbox, sc_cfg(namespace_options=pb.NamespaceOption(pid=pb.TARGET)))
    sandbox.netns = sandbox.ipc = sandbox.uts = sandbox.shm = ""
    spec = build(rootfs, sandbox)
    assert set(ns_of(spec)) == {"pid", "mount"}
    assert mount(spec, "/dev/shm")["source"] == "/dev/shm"


# ---------------------------------------------------------------- resources

def res_cfg(**kw) -> pb.ContainerConfig:
    return container(linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(**kw)))


def test_resources(rootfs, sandbox):
    cfg = res_cfg(cpu_shares=512, cpu_quota=50000, cpu_period=100000, cpuset_cpus="0", cpuset_mems="0",
                  memory_limit_in_bytes=1 << 28, memory_swap_limit_in_bytes=1 << 29,
                  hugepage_limits=[pb.HugepageLimit(page_size="2MB", limit=0)], oom_score_adj=100)
    spec = build(rootfs, sandbox, cfg, pids_limit=1024)
    r = spec["linux"]["resources"]
    assert r["cpu"] == {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}
    assert r["memory"] == {"limit": 1 << 28, "swap": 1 << 29}
    assert r["hugepageLimits"] == [{"pageSize": "2MB", "limit": 0}]
    assert r["pids"] == {"limit": 1024}
    assert spec["process"]["oomScoreAdj"] == 100
    r = build(rootfs, sandbox, cfg, swap_available=False, hugetlb_available=False)["linux"]["resources"]
    assert r["memory"] == {"limit": 1 << 28} and "hugepageLimits" not in r
    assert "oomScoreAdj" not in build(rootfs, sandbox)["process"]
    assert s.linux_resources(cfg.linux.resources, swap_available=True, hugetlb_available=False)["cpu"]["shares"] == 512


def test_oom_score_adj_never_below_the_runtimes_own(rootfs, sandbox):
    assert build(rootfs, sandbox, res_cfg(oom_score_adj=-998), oom_score_adj_floor=0)["process"]["oomScoreAdj"] == 0
    assert build(rootfs, sandbox, res_cfg(oom_score_adj=-998),
                 oom_score_adj_floor=-999)["process"]["oomScoreAdj"] == -998
    assert s.oom_score_adj(-1000) >= s.own_oom_score_adj()


def test_unified_resources_need_cgroup_v2(rootfs, sandbox):
    cfg = res_cfg(unified={"memory.high": "1000000"})
    with pytest.raises(s.SpecError, match="cgroup v2"):
        build(rootfs, sandbox, cfg)
    assert build(rootfs, sandbox, cfg, cgroup_v2=True)["linux"]["resources"]["unified"] == {"memory.high": "1000000"}


# ---------------------------------------------------------------- seccomp

def test_seccomp_unset_unconfined_and_runtime_default(rootfs, sandbox):
    assert "seccomp" not in build(rootfs, sandbox)["linux"]
    assert "seccomp" not in build(rootfs, sandbox, sc_cfg(seccomp=pb.SecurityProfile(profile_type=1)))["linux"]
    prof = build(rootfs, sandbox, sc_cfg(seccomp=pb.SecurityProfile(profile_type=0)))["linux"]["seccomp"]
    assert prof["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = {n for r in prof["syscalls"] if r["action"] == "SCMP_ACT_ERRNO" and "args" not in r for n in r["names"]}
    assert {"mount", "unshare", "kexec_load", "init_module", "bpf", "ptrace", "keyctl", "clone3"} <= denied
    assert any(r["names"] == ["clone"] and r["args"][0]["value"] == 0x10000000 for r in prof["syscalls"])
    # a capability re-allows what it is for
    cfg = sc_cfg(seccomp=pb.SecurityProfile(profile_type=0),
                 capabilities=pb.Capability(add_capabilities=["SYS_ADMIN", "SYS_PTRACE"]))
    prof = build(rootfs, sandbox, cfg)["linux"]["seccomp"]
    names = {n for r in prof["syscalls"] for n in r["names"]}
    assert "mount" not in names and "ptrace" not in names and "clone" not in names and "kexec_load" in names
    prof = build(rootfs, sandbox, sc_cfg(seccomp_profile_path="runtime/default"))["linux"]["seccomp"]
    assert prof == seccomp.default_profile(s.DEFAULT_CAPS)


def test_seccomp_localhost_profiles(rootfs, sandbox, tmp_path):
    p = tmp_path / "profile.json"
    p.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                             "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                          "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
                             "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "x"}]}))
    prof = build(rootfs, sandbox, sc_cfg(seccomp=pb.SecurityProfile(profile_type=2, localhost_ref=str(p))))
    prof = prof["linux"]["seccomp"]
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO" and prof["defaultErrnoRet"] == 1
    assert prof["syscalls"] == [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
    if os.uname().machine == "x86_64":
        assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    same = build(rootfs, sandbox, sc_cfg(seccomp_profile_path=f"localhost/{p}"))["linux"]["seccomp"]
    assert same == prof
    with pytest.raises(s.SpecError, match="does not exist"):
        build(rootfs, sandbox, sc_cfg(seccomp=pb.SecurityProfile(profile_type=2, localhost_ref=str(p) + ".no")))
    with pytest.raises(s.SpecError, match="localhost_ref"):
        build(rootfs, sandbox, sc_cfg(seccomp=pb.SecurityProfile(profile_type=0, localhost_ref="x")))
    with pytest.raises(s.SpecError, match="invalid seccomp profile"):
        build(rootfs, sandbox, sc_cfg(seccomp_profile_path="bogus"))


# ---------------------------------------------------------------- the rest

def test_annotations_cgroups_path_and_sysctls(rootfs, sandbox):
    sandbox.config.linux.sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
    spec = build(rootfs, sandbox, container_id="abc")
    assert spec["ociVersion"] == "1.0.2"
    assert spec["annotations"] == {
        "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "sb1",
        "io.kubernetes.cri.sandbox-namespace": "prod", "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "docker.io/library/nginx:latest"}
    assert spec["linux"]["cgroupsPath"] == "/kubepods/podUID/abc"
    assert build(rootfs, sandbox, cgroups_path="/x/y")["linux"]["cgroupsPath"] == "/x/y"
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert "hostname" not in spec              # the UTS namespace is joined, not made


def test_exec_process_is_the_containers_process_with_other_args(rootfs, sandbox):
    spec = build(rootfs, sandbox, sc_cfg(run_as_username="app", no_new_privs=True))
    p = s.exec_process(spec, ["ls", "-l"], tty=True)
    assert p["args"] == ["ls", "-l"] and p["terminal"] is True
    assert p["user"] == spec["process"]["user"] and p["env"] == spec["process"]["env"]
    assert p["capabilities"] == spec["process"]["capabilities"] and p["noNewPrivileges"] is True
    assert spec["process"]["args"] == ["/entry", "--serve"]            # the spec itself is untouched
    with pytest.raises(s.SpecError):
        s.exec_process(spec, [])


def test_stop_signal():
    assert s.stop_signal(IMAGE, container()) == "SIGTERM"
    assert s.stop_signal({"config": {"StopSignal": "SIGQUIT"}}, container()) == "SIGQUIT"
    assert s.stop_signal({"config": {"StopSignal": "3"}}, container()) == "SIGQUIT"
    assert s.stop_signal({"config": {"StopSignal": "usr1"}}, container()) == "SIGUSR1"
    assert s.stop_signal({"config": {"StopSignal": "SIGQUIT"}}, container(stop_signal=pb.SIGKILL)) == "SIGKILL"
    with pytest.raises(s.SpecError):
        s.stop_signal({"config": {"StopSignal": "SIGNOPE"}}, container())
