"""libcni's behaviour in kubelab.cri.runtime.cni: config dir scanning, what each plugin receives
(stdin and CNI_* environment), ADD/DEL ordering, the result cache and error results.

The plugins here are fakes (a Python script that records what it got and answers like a plugin);
the real reference plugins are exercised in tests/e2e/test_runtime_parts.py.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kubelab.cri.runtime.cni import CNI, CNIError, capability_port_mappings, parse_conf, result_ips

FAKE = f"""#!{sys.executable}
import json, os, sys
conf = json.load(sys.stdin)
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(conf["log"], "a") as f:
    f.write(json.dumps({{"plugin": os.path.basename(sys.argv[0]), "env": env, "conf": conf}}) + "\\n")
if conf.get("fail"):
    print(json.dumps({{"cniVersion": conf["cniVersion"], "code": 11, "msg": "try later", "details": "busy"}}))
    sys.exit(1)
if conf.get("garbage"):
    sys.stderr.write("panic: something\\n")
    sys.exit(2)
if env["CNI_COMMAND"] == "ADD":
    res = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [], "ips": []}}
    if conf.get("addr"):
        res["interfaces"].append({{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": env["CNI_NETNS"]}})
        res["ips"].append({{"address": conf["addr"], "interface": len(res["interfaces"]) - 1}})
    print(json.dumps(res))
"""


@pytest.fixture
def env(tmp_path):
    bins, conf, cache = tmp_path / "bin", tmp_path / "net.d", tmp_path / "cache"
    for d in (bins, conf):
        d.mkdir()
    for name in ("first", "second"):
        (bins / name).write_text(FAKE)
        (bins / name).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    return SimpleNamespace(cni=CNI(conf, [tmp_path / "nobin", bins], cache), conf=conf, cache=cache, log=log,
                           bins=bins)


def calls(log: Path) -> list[dict]:
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def write_list(env, name="net1", version="1.0.0", plugins=None, file="10-net.conflist"):
    plugins = plugins if plugins is not None else [
        {"type": "first", "addr": "10.1.0.5/24", "log": str(env.log)},
        {"type": "second", "log": str(env.log), "capabilities": {"portMappings": True, "bandwidth": False}}]
    (env.conf / file).write_text(json.dumps({"cniVersion": version, "name": name, "plugins": plugins}))


def test_conf_dir_scanning_picks_the_first_valid_file_by_name(env):
    assert env.cni.load() is None
    ok, msg = env.cni.ready()
    assert not ok and msg == f"cni config load failed: no network config found in {env.conf}: cni plugin not initialized"
    (env.conf / "README").write_text("not a config")
    (env.conf / "05-broken.conflist").write_text("{")
    (env.conf / "20-single.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "single", "type": "first"}))
    write_list(env, file="30-list.conflist")
    net = env.cni.load()
    assert net.name == "single" and net.cni_version == "0.4.0" and [p["type"] for p in net.plugins] == ["first"]
    assert json.loads(net.raw)["plugins"][0]["type"] == "first"          # a .conf is wrapped into a list
    (env.conf / "01-a.json").write_text(json.dumps({"cniVersion": "1.0.0", "name": "j", "type": "second"}))
    assert env.cni.load().name == "j"
    assert env.cni.ready() == (True, "")


def test_ready_is_false_while_a_plugin_binary_is_missing(env):
    write_list(env, plugins=[{"type": "first"}, {"type": "nosuch"}])
    ok, msg = env.cni.ready()
    assert not ok and 'failed to find plugin "nosuch"' in msg


@pytest.mark.parametrize("data,match", [
    (b"[]", "not a JSON object"),
    (b'{"plugins": [{"type": "x"}]}', "no name"),
    (b'{"name": "n", "plugins": []}', "no plugins"),
    (b'{"name": "n", "plugins": [{"bridge": "x"}]}', "has no type"),
])
def test_bad_lists_are_refused(data, match):
    with pytest.raises(CNIError, match=match):
        parse_conf(data, "x.conflist")


async def test_add_runs_plugins_in_order_with_injected_config_and_caches_the_result(env):
    write_list(env)
    caps = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}],
            "bandwidth": {"ingressRate": 1}, "dns": {"servers": ["10.0.0.10"]}}
    args = {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web"}
    result = await env.cni.add("ctr1", "/run/netns/x", "eth0", args, caps)
    assert result["ips"] == [{"address": "10.1.0.5/24", "interface": 0}]
    first, second = calls(env.log)
    assert (first["plugin"], second["plugin"]) == ("first", "second")
    assert first["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/run/netns/x",
                            "CNI_IFNAME": "eth0", "CNI_PATH": f"{env.cni.bin_dirs[0]}:{env.bins}",
                            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"}
    assert first["conf"]["name"] == "net1" and first["conf"]["cniVersion"] == "1.0.0"
    assert "prevResult" not in first["conf"] and "runtimeConfig" not in first["conf"]
    assert second["conf"]["prevResult"] == result
    # only the capabilities the plugin declares (and enables)
    assert second["conf"]["runtimeConfig"] == {"portMappings": caps["portMappings"]}
    cached = json.loads((env.cache / "net1-ctr1-eth0").read_text())
    assert cached["kind"] == "cniCacheV1" and cached["result"] == result and cached["ifName"] == "eth0"
    assert cached["containerId"] == "ctr1" and cached["networkName"] == "net1"
    assert env.cni.cached_result("ctr1") == result
    assert result_ips(result) == ["10.1.0.5"]


async def test_del_runs_in_reverse_with_the_cached_result_and_is_idempotent(env):
    write_list(env)
    result = await env.cni.add("ctr1", "/run/netns/x", "eth0", {"A": "1"}, {})
    env.log.unlink()
    await env.cni.delete("ctr1", None, "eth0")
    second, first = calls(env.log)
    assert (second["plugin"], first["plugin"]) == ("second", "first")
    assert second["env"]["CNI_COMMAND"] == "DEL" and second["env"]["CNI_NETNS"] == ""
    assert second["env"]["CNI_ARGS"] == "IgnoreUnknown=1;A=1"          # the args of the ADD, from the cache
    assert second["conf"]["prevResult"] == result == first["conf"]["prevResult"]
    assert not (env.cache / "net1-ctr1-eth0").exists()
    env.log.unlink()
    await env.cni.delete("ctr1", "", "eth0")                              # again: no cache, no prevResult
    assert [c["plugin"] for c in calls(env.log)] == ["second", "first"]
    assert all("prevResult" not in c["conf"] for c in calls(env.log))


async def test_del_uses_the_cached_config_when_the_conf_dir_changed(env):
    write_list(env)
    await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})
    for f in env.conf.iterdir():
        f.unlink()
    env.log.unlink()
    await env.cni.delete("ctr1", None, "eth0")
    assert [c["conf"]["name"] for c in calls(env.log)] == ["net1", "net1"]
    env.log.unlink()
    await env.cni.delete("ctr1", None, "eth0")        # no config and no cache: nothing to do
    assert calls(env.log) == []


async def test_old_versions_get_no_prev_result_on_del(env):
    write_list(env, version="0.3.1")
    await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})
    env.log.unlink()
    await env.cni.delete("ctr1", "/run/netns/x", "eth0")
    assert all("prevResult" not in c["conf"] for c in calls(env.log))
    with pytest.raises(CNIError, match="does not support the CHECK"):
        await env.cni.check("ctr1", "/run/netns/x", "eth0")


async def test_check_uses_the_cached_result(env):
    write_list(env)
    with pytest.raises(CNIError, match="no cached result"):
        await env.cni.check("ctr1", "/run/netns/x")
    result = await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})
    env.log.unlink()
    await env.cni.check("ctr1", "/run/netns/x")
    assert [(c["env"]["CNI_COMMAND"], c["plugin"]) for c in calls(env.log)] == [("CHECK", "first"), ("CHECK", "second")]
    assert calls(env.log)[0]["conf"]["prevResult"] == result


async def test_plugin_errors(env):
    write_list(env, plugins=[{"type": "first", "log": str(env.log)},
                             {"type": "second", "log": str(env.log), "fail": True}])
    with pytest.raises(CNIError) as e:
        await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})
    assert (e.value.code, e.value.msg, e.value.details, e.value.plugin) == (11, "try later", "busy", "second")
    assert str(e.value) == 'plugin type="second" failed (add): try later: busy'
    assert not (env.cache / "net1-ctr1-eth0").exists()
    write_list(env, plugins=[{"type": "first", "log": str(env.log), "garbage": True}])
    with pytest.raises(CNIError, match="netplugin failed: 'panic: something'"):
        await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})
    write_list(env, plugins=[{"type": "ghost"}])
    with pytest.raises(CNIError, match='failed to find plugin "ghost" in path'):
        await env.cni.add("ctr1", "/run/netns/x", "eth0", {}, {})


def test_port_mappings_and_result_ips():
    pm = [SimpleNamespace(protocol=1, container_port=53, host_port=5353, host_ip="127.0.0.1"),
          SimpleNamespace(protocol=0, container_port=80, host_port=0, host_ip="")]
    assert capability_port_mappings(pm) == [{"hostPort": 5353, "containerPort": 53, "protocol": "udp",
                                             "hostIP": "127.0.0.1"}]
    result = {"interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
              "ips": [{"address": "fd00::5/64", "interface": 2}, {"address": "10.0.0.1/24", "interface": 0},
                      {"address": "10.0.0.5/24", "interface": 2}]}
    assert result_ips(result) == ["10.0.0.5", "fd00::5"]
    assert result_ips(result, "eth1") == []
