"""The CNI exec protocol, as libcni runs it for containerd and CRI-O.

- The network is the first file of the conf dir in name order ending in .conflist, .conf or .json;
  a single-plugin .conf/.json is wrapped into a one-plugin list. Unreadable files are skipped.
- Each plugin (an executable named by its "type", looked up in the bin dirs) gets its config on
  stdin with the list's "name" and "cniVersion" injected, the previous plugin's result as
  "prevResult", and "runtimeConfig" holding those capability args it declares in "capabilities"
  (portMappings, dns, bandwidth, ...). Environment: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,
  CNI_IFNAME, CNI_ARGS (K=V;K=V), CNI_PATH.
- ADD runs the plugins in order; the final result is cached in cache_dir as
  <network>-<container id>-<ifname> (libcni's results/ file format). DEL runs them in reverse
  with the cached result as prevResult (CNI >= 0.4.0) and removes the cache; it works without a
  netns, after a crash, and a second time. CHECK runs them in order with the cached result.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from kubelab import proc

CONF_EXTENSIONS = (".conf", ".conflist", ".json")


class CNIError(Exception):
    """A plugin failed (code/msg/details from its error result) or the config is unusable."""

    def __init__(self, code: int, msg: str, details: str = "", plugin: str = "", command: str = "") -> None:
        self.code, self.msg, self.details, self.plugin, self.command = code, msg, details, plugin, command
        where = f'plugin type="{plugin}" failed ({command.lower()}): ' if plugin else ""
        text = msg + (f": {details}" if details and details not in msg else "")
        super().__init__(where + text)


@dataclass
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    source: str = ""
    raw: bytes = b""
    disable_check: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def parse_conf(data: bytes, source: str = "") -> NetworkConfigList:
    """Parse a .conflist, or a single-plugin .conf/.json (wrapped into a list)."""
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise CNIError(6, f"error parsing configuration {source or ''}: {e}".replace("  ", " ")) from None
    if not isinstance(obj, dict):
        raise CNIError(6, f"error parsing configuration {source}: not a JSON object")
    if source.endswith(".conflist") or "plugins" in obj:
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise CNIError(7, f"error parsing configuration list {source}: no name")
        plugins = obj.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise CNIError(7, f"error parsing configuration list {source}: no plugins in list")
        for p in plugins:
            if not isinstance(p, dict) or not p.get("type"):
                raise CNIError(7, f"error parsing configuration list {source}: a plugin has no type")
        return NetworkConfigList(name=name, cni_version=str(obj.get("cniVersion", "0.1.0")), plugins=plugins,
                                 source=source, raw=data, disable_check=bool(obj.get("disableCheck")),
                                 extra={k: v for k, v in obj.items()
                                        if k not in ("name", "cniVersion", "plugins", "disableCheck")})
    if not obj.get("type"):
        raise CNIError(7, f"error parsing configuration {source}: missing 'type'")
    name = obj.get("name") or ""
    if not name:
        raise CNIError(7, f"error parsing configuration {source}: no name")
    version = str(obj.get("cniVersion", "0.1.0"))
    wrapped = {"cniVersion": version, "name": name, "plugins": [obj]}
    return NetworkConfigList(name=name, cni_version=version, plugins=[obj], source=source,
                             raw=json.dumps(wrapped).encode())


def capability_port_mappings(mappings: Iterable[Any]) -> list[dict[str, Any]]:
    """CRI PortMappings (objects with protocol, container_port, host_port, host_ip) as the
    portMappings capability arg; mappings without a host port are skipped (as containerd does)."""
    names = {0: "tcp", 1: "udp", 2: "sctp"}
    out = []
    for m in mappings:
        if m.host_port <= 0:
            continue
        out.append({"hostPort": m.host_port, "containerPort": m.container_port,
                    "protocol": names.get(m.protocol, "tcp"), "hostIP": m.host_ip})
    return out


def result_ips(result: Mapping[str, Any], ifname: str | None = None) -> list[str]:
    """Addresses (no prefix length) of the result's IPs on interfaces inside the sandbox
    (optionally only ifname), IPv4 first."""
    ifaces = result.get("interfaces") or []
    ips = []
    for ip in result.get("ips") or []:
        idx = ip.get("interface")
        if idx is not None and 0 <= idx < len(ifaces):
            iface = ifaces[idx]
            if not iface.get("sandbox") or (ifname and iface.get("name") != ifname):
                continue
        ips.append(str(ip.get("address", "")).split("/")[0])
    return [a for a in ips if a and ":" not in a] + [a for a in ips if ":" in a]


class CNI:
    def __init__(self, conf_dir: Path, bin_dirs: list[Path], cache_dir: Path, timeout: float = 120.0) -> None:
        self.conf_dir = Path(conf_dir)
        self.bin_dirs = [Path(d) for d in bin_dirs]
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.last_error = ""

    # ------------------------------------------------------------------ config

    def conf_files(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.conf_dir))
        except OSError:
            return []
        return [self.conf_dir / n for n in names if n.endswith(CONF_EXTENSIONS) and (self.conf_dir / n).is_file()]

    def load(self) -> NetworkConfigList | None:
        """The network to use: the first valid config file in name order, or None."""
        self.last_error = ""
        for path in self.conf_files():
            try:
                return parse_conf(path.read_bytes(), str(path))
            except (OSError, CNIError) as e:
                self.last_error = str(e)
        return None

    def find_plugin(self, type_: str) -> Path | None:
        for d in self.bin_dirs:
            p = d / type_
            if p.is_file() and os.access(p, os.X_OK):
                return p
        return None

    def ready(self) -> tuple[bool, str]:
        """(True, "") when a network config exists and its plugins are installed, else (False, why)."""
        net = self.load()
        if net is None:
            why = f"no network config found in {self.conf_dir}"
            if self.last_error:
                why += f" ({self.last_error})"
            return False, f"cni config load failed: {why}: cni plugin not initialized"
        for p in net.plugins:
            if self.find_plugin(p["type"]) is None:
                return False, (f'cni plugin not initialized: failed to find plugin "{p["type"]}" in path '
                               f'[{" ".join(str(d) for d in self.bin_dirs)}]')
        return True, ""

    # ------------------------------------------------------------------ cache

    def cache_path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.cache_dir / f"{network}-{container_id}-{ifname}"

    def _cached(self, container_id: str, ifname: str, network: str | None) -> tuple[Path, dict[str, Any]] | None:
        candidates = []
        if network:
            candidates.append(self.cache_path(network, container_id, ifname))
        try:
            suffix = f"-{container_id}-{ifname}"
            candidates += [self.cache_dir / n for n in sorted(os.listdir(self.cache_dir)) if n.endswith(suffix)]
        except OSError:
            pass
        for p in candidates:
            try:
                return p, json.loads(p.read_text())
            except (OSError, ValueError):
                continue
        return None

    def cached_result(self, container_id: str, ifname: str = "eth0") -> dict[str, Any] | None:
        found = self._cached(container_id, ifname, None)
        return found[1].get("result") if found else None

    def _write_cache(self, net: NetworkConfigList, container_id: str, ifname: str, netns: str,
                     args: list[list[str]], caps: Mapping[str, Any], result: dict[str, Any]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        entry = {"kind": "cniCacheV1", "containerId": container_id, "config": base64.b64encode(net.raw).decode(),
                 "ifName": ifname, "networkName": net.name, "netns": netns, "cniArgs": args,
                 "capabilityArgs": dict(caps), "result": result}
        path = self.cache_path(net.name, container_id, ifname)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ exec

    def _env(self, command: str, container_id: str, netns: str, ifname: str, args: list[list[str]]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns, CNI_IFNAME=ifname,
                   CNI_ARGS=";".join(f"{k}={v}" for k, v in args),
                   CNI_PATH=os.pathsep.join(str(d) for d in self.bin_dirs))
        return env

    @staticmethod
    def _plugin_conf(net: NetworkConfigList, plugin: dict[str, Any], prev: dict[str, Any] | None,
                     caps: Mapping[str, Any]) -> bytes:
        conf = dict(plugin)
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        if prev is not None:
            conf["prevResult"] = prev
        declared = plugin.get("capabilities") or {}
        rc = {k: v for k, v in caps.items() if declared.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        else:
            conf.pop("runtimeConfig", None)
        return json.dumps(conf).encode()

    async def _exec(self, command: str, plugin: dict[str, Any], conf: bytes, env: dict[str, str]) -> bytes:
        type_ = plugin["type"]
        binary = self.find_plugin(type_)
        if binary is None:
            raise CNIError(0, f'failed to find plugin "{type_}" in path [{" ".join(str(d) for d in self.bin_dirs)}]',
                           plugin=type_, command=command)
        try:
            res = await proc.run([str(binary)], input=conf, env=env, timeout=self.timeout, check=False)
        except proc.CommandError as e:
            raise CNIError(0, e.reason, plugin=type_, command=command) from None
        if res.returncode == 0:
            return res.stdout
        try:
            err = json.loads(res.stdout)
        except ValueError:
            err = None
        if isinstance(err, dict) and ("msg" in err or "code" in err):
            raise CNIError(int(err.get("code") or 0), str(err.get("msg", "")), str(err.get("details", "")),
                           plugin=type_, command=command)
        out = (res.stderr or res.stdout).decode(errors="replace").strip()
        raise CNIError(0, f"netplugin failed: {out!r}" if out else f"netplugin failed with exit status {res.returncode}",
                       plugin=type_, command=command)

    @staticmethod
    def _args(args: Mapping[str, str]) -> list[list[str]]:
        pairs = [[str(k), str(v)] for k, v in args.items()]
        if "IgnoreUnknown" not in args:
            pairs.insert(0, ["IgnoreUnknown", "1"])
        return pairs

    async def add(self, container_id: str, netns: str | Path, ifname: str = "eth0",
                  args: Mapping[str, str] | None = None, capability_args: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
        """Attach the container's netns to the network; returns (and caches) the final result.
        After a failure the caller should call delete() to undo what the first plugins did."""
        net = self.load()
        if net is None:
            raise CNIError(0, f"no network config found in {self.conf_dir}")
        pairs, caps = self._args(args or {}), dict(capability_args or {})
        env = self._env("ADD", container_id, str(netns), ifname, pairs)
        prev: dict[str, Any] | None = None
        for plugin in net.plugins:
            out = await self._exec("ADD", plugin, self._plugin_conf(net, plugin, prev, caps), env)
            try:
                prev = json.loads(out)
            except ValueError:
                raise CNIError(6, f"decoding the result: {out[:200]!r}", plugin=plugin["type"], command="ADD") from None
        result = prev or {}
        self._write_cache(net, container_id, ifname, str(netns), pairs, caps, result)
        return result

    async def delete(self, container_id: str, netns: str | Path | None, ifname: str = "eth0",
                     args: Mapping[str, str] | None = None, capability_args: Mapping[str, Any] | None = None) -> None:
        """Detach; idempotent. Uses the cached config and result when there is one, so it also works
        after the conf dir changed or the runtime crashed; netns may be None or "" if it is gone."""
        current = self.load()
        found = self._cached(container_id, ifname, current.name if current else None)
        entry = found[1] if found else None
        net = current
        if entry is not None:
            try:        # the config that made the attachment is the one to undo it
                net = parse_conf(base64.b64decode(entry.get("config", "")), "cached config")
            except (CNIError, ValueError):
                pass
        if net is None:
            return
        if args is not None:
            pairs = self._args(args)
        else:
            pairs = (entry or {}).get("cniArgs") or self._args({})
        caps = dict(capability_args) if capability_args is not None else dict((entry or {}).get("capabilityArgs") or {})
        prev = entry.get("result") if entry and _version_tuple(net.cni_version) >= (0, 4, 0) else None
        env = self._env("DEL", container_id, str(netns or ""), ifname, pairs)
        for plugin in reversed(net.plugins):
            await self._exec("DEL", plugin, self._plugin_conf(net, plugin, prev, caps), env)
        if found:
            found[0].unlink(missing_ok=True)

    async def check(self, container_id: str, netns: str | Path, ifname: str = "eth0",
                    args: Mapping[str, str] | None = None) -> None:
        """CNI CHECK against the cached result; raises CNIError if a plugin reports a problem."""
        net = self.load()
        if net is None:
            raise CNIError(0, f"no network config found in {self.conf_dir}")
        if _version_tuple(net.cni_version) < (0, 4, 0):
            raise CNIError(1, f"configuration version {net.cni_version} does not support the CHECK command")
        if net.disable_check:
            return
        found = self._cached(container_id, ifname, net.name)
        if found is None:
            raise CNIError(3, f"no cached result for container {container_id} on network {net.name}")
        entry = found[1]
        pairs = self._args(args) if args is not None else entry.get("cniArgs") or self._args({})
        caps = entry.get("capabilityArgs") or {}
        env = self._env("CHECK", container_id, str(netns), ifname, pairs)
        for plugin in net.plugins:
            await self._exec("CHECK", plugin, self._plugin_conf(net, plugin, entry.get("result"), caps), env)
