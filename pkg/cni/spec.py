"""The CNI protocol as a plugin sees it (spec 1.0.0, with 0.1.0-0.4.0 results on request).

- The environment (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH) and
  the stdin config are validated the way libcni's skel does it, with its messages and codes.
- Results are handled in the 1.0 shape (dicts ready for JSON, keys in the reference plugins'
  order) and converted on output to the version the config asked for: 0.3.x/0.4.0 add "version" to
  every IP, 0.1.0/0.2.0 fold everything into "ip4"/"ip6". prevResult of any version is read back
  into the 1.0 shape.
- Errors are CNIError(code, msg, details) printed as the spec's error JSON with a non-zero exit.
"""
from __future__ import annotations

from kubelab.cni import cnijson as json  # json's C parts only: see cnijson
TYPE_CHECKING = False  # not typing's: the plugin is exec'd per pod and skips importing typing

if TYPE_CHECKING:
    from typing import Any, Mapping

CURRENT_VERSION = "1.0.0"
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")

# Error codes of the spec (1-99 are reserved to it); plugin-specific codes are >= 100.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_INTERNAL = 999  # what libcni's skel uses for a plugin's own failures

MAX_IFNAME = 15


class CNIError(Exception):
    """A failure reported to the runtime as {"cniVersion", "code", "msg", "details"}."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg + (f": {details}" if details else ""))
        self.code, self.msg, self.details = code, msg, details

    def to_dict(self, cni_version: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if cni_version:
            out["cniVersion"] = cni_version
        out["code"] = self.code
        out["msg"] = self.msg
        if self.details:
            out["details"] = self.details
        return out


def config_error(msg: str) -> CNIError:
    return CNIError(ERR_INVALID_CONFIG, msg)


# -- versions --------------------------------------------------------------------------------

def version_tuple(v: str) -> tuple[int, int, int]:
    """Parse "X.Y.Z" (missing parts are 0); raise CNIError(decode) for anything else."""
    parts = v.split(".")
    if not v or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise CNIError(ERR_DECODE, f"invalid version {v!r}: the version is empty or has too many parts"
                       if not v or len(parts) > 3 else f"invalid version {v!r}: not a number")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def version_at_least(v: str, other: str) -> bool:
    return version_tuple(v) >= version_tuple(other)


def config_version(conf: Mapping[str, Any]) -> str:
    """The config's cniVersion; a config without one is 0.1.0 (libcni's rule)."""
    v = conf.get("cniVersion", "")
    if not isinstance(v, str):
        raise CNIError(ERR_DECODE, "cniVersion must be a string")
    return v or "0.1.0"


def check_version(v: str) -> None:
    version_tuple(v)
    if v not in SUPPORTED_VERSIONS:
        raise CNIError(ERR_INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f'config is "{v}", plugin supports [' +
                       " ".join(f'"{s}"' for s in SUPPORTED_VERSIONS) + "]")


def version_output() -> str:
    return json.dumps({"cniVersion": CURRENT_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)},
                      separators=(",", ":")) + "\n"


# -- environment -----------------------------------------------------------------------------

class CmdArgs:
    """What the runtime passed: CNI_* variables and the stdin config."""

    def __init__(self, command: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: str = "", path: str = "", stdin: bytes = b"") -> None:
        self.command, self.container_id, self.netns, self.ifname = command, container_id, netns, ifname
        self.args, self.path, self.stdin = args, path, stdin


_REQUIRED = {  # variable -> commands that need it (libcni skel)
    "CNI_COMMAND": ("ADD", "CHECK", "DEL"),
    "CNI_CONTAINERID": ("ADD", "CHECK", "DEL"),
    "CNI_NETNS": ("ADD", "CHECK"),
    "CNI_IFNAME": ("ADD", "CHECK", "DEL"),
    "CNI_ARGS": (),
    "CNI_PATH": ("ADD", "CHECK", "DEL"),
}


def args_from_env(env: Mapping[str, str], stdin: bytes) -> CmdArgs:
    """Validate the environment as libcni's skel does (code 4 for missing/invalid variables)."""
    cmd = env.get("CNI_COMMAND", "")
    missing = [k for k, cmds in _REQUIRED.items()
               if not env.get(k) and (cmd in cmds or k == "CNI_COMMAND")]
    if missing:
        raise CNIError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    return CmdArgs(command=cmd, container_id=env.get("CNI_CONTAINERID", ""),
                   netns=env.get("CNI_NETNS", ""), ifname=env.get("CNI_IFNAME", ""),
                   args=env.get("CNI_ARGS", ""), path=env.get("CNI_PATH", ""),
                   stdin=b"" if cmd == "VERSION" else stdin)


def _valid_name(s: str) -> bool:
    """^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"""
    for i, c in enumerate(s):
        if c.isascii() and c.isalnum():
            continue
        if i > 0 and c in "_.-":
            continue
        return False
    return True


def validate_container_id(cid: str) -> None:
    if not cid:
        raise CNIError(ERR_UNKNOWN_CONTAINER, "missing containerID")
    if not _valid_name(cid):
        raise CNIError(ERR_INVALID_ENV, "invalid characters in containerID", cid)


def validate_network_name(name: str) -> None:
    if not name:
        raise CNIError(ERR_INVALID_CONFIG, "missing network name")
    if not _valid_name(name):
        raise CNIError(ERR_INVALID_CONFIG, "invalid characters found in network name", name)


def validate_ifname(ifname: str) -> None:
    if not ifname:
        raise CNIError(ERR_INVALID_ENV, "interface name is empty")
    if len(ifname.encode()) > MAX_IFNAME:
        raise CNIError(ERR_INVALID_ENV, "interface name is too long",
                       f"interface name should be less than {MAX_IFNAME + 1} characters")
    if ifname in (".", ".."):
        raise CNIError(ERR_INVALID_ENV, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in ifname):
        raise CNIError(ERR_INVALID_ENV, "interface name contains / or : or whitespace characters")


def parse_cni_args(s: str, known: tuple[str, ...]) -> dict[str, str]:
    """CNI_ARGS "K=V;K=V". Keys other than `known` are an error unless IgnoreUnknown is true
    (types.LoadArgs)."""
    out: dict[str, str] = {}
    if not s:
        return out
    unknown = []
    ignore = False
    for pair in s.split(";"):
        k, sep, v = pair.partition("=")
        if not sep:
            raise CNIError(ERR_INVALID_ENV, f'ARGS: invalid pair "{pair}"')
        if k == "IgnoreUnknown":
            ignore = v.lower() in ("1", "true")
            continue
        if k in known:
            out[k] = v
        else:
            unknown.append(k)
    if unknown and not ignore:
        raise CNIError(ERR_INVALID_ENV, "ARGS: unknown args [" + " ".join(f'"{k}"' for k in unknown) + "]")
    return out


# -- config ----------------------------------------------------------------------------------

def decode_config(stdin: bytes) -> dict[str, Any]:
    """Decode the stdin config (code 6)."""
    try:
        conf = json.loads(stdin or b"")
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(ERR_DECODE, f"error unmarshall network config: {e}") from None
    if not isinstance(conf, dict):
        raise CNIError(ERR_DECODE, "error unmarshall network config: not a JSON object")
    if not isinstance(conf.get("name", ""), str):
        raise CNIError(ERR_DECODE, "error unmarshall network config: name must be a string")
    return conf


def load_config(stdin: bytes) -> dict[str, Any]:
    """Decode the stdin config (code 6) and check its name (code 7), as skel's validateConfig."""
    conf = decode_config(stdin)
    validate_network_name(conf.get("name", ""))
    return conf


def get_bool(conf: Mapping[str, Any], key: str, default: bool = False, where: str = "") -> bool:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise config_error(f"failed to load netconf: {where}{key} must be true or false, not {json.dumps(v)}")
    return v


def get_int(conf: Mapping[str, Any], key: str, default: int = 0, where: str = "") -> int:
    v = conf.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise config_error(f"failed to load netconf: {where}{key} must be an integer, not {json.dumps(v)}")
    return v


def get_str(conf: Mapping[str, Any], key: str, default: str = "", where: str = "") -> str:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise config_error(f"failed to load netconf: {where}{key} must be a string, not {json.dumps(v)}")
    return v


def get_dict(conf: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = conf.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise config_error(f"failed to load netconf: {where}{key} must be an object, not {json.dumps(v)}")
    return v


_DNS_KEYS = ("nameservers", "domain", "search", "options")


def parse_dns(v: Any, where: str = "dns") -> dict[str, Any]:
    """A DNS object with its keys in the spec's order; empty members dropped."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise config_error(f"failed to load netconf: {where} must be an object")
    out: dict[str, Any] = {}
    for k in _DNS_KEYS:
        x = v.get(k)
        if x in (None, "", []):
            continue
        if k == "domain":
            if not isinstance(x, str):
                raise config_error(f"failed to load netconf: {where}.domain must be a string")
        elif not isinstance(x, list) or not all(isinstance(i, str) for i in x):
            raise config_error(f"failed to load netconf: {where}.{k} must be a list of strings")
        out[k] = x
    return out


# -- results ---------------------------------------------------------------------------------

def ip_version(address: str) -> str:
    return "6" if ":" in address else "4"


def _route(r: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": r["dst"]}
    if r.get("gw"):
        out["gw"] = r["gw"]
    return out


def _ipconf(ip: Mapping[str, Any], with_version: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_version:
        out["version"] = ip_version(ip["address"])
    if ip.get("interface") is not None:
        out["interface"] = ip["interface"]
    out["address"] = ip["address"]
    if ip.get("gateway"):
        out["gateway"] = ip["gateway"]
    return out


def new_result(interfaces: list[dict[str, Any]] | None = None, ips: list[dict[str, Any]] | None = None,
               routes: list[dict[str, Any]] | None = None,
               dns: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 1.0 result; empty lists are left out as libcni does (omitempty), dns is always there."""
    res: dict[str, Any] = {"cniVersion": CURRENT_VERSION}
    if interfaces:
        res["interfaces"] = [dict(i) for i in interfaces]
    if ips:
        res["ips"] = [_ipconf(i, False) for i in ips]
    if routes:
        res["routes"] = [_route(r) for r in routes]
    res["dns"] = dict(dns or {})
    return res


def convert_result(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Convert a 1.0-shaped result to `version` (one of SUPPORTED_VERSIONS)."""
    if version in ("1.0.0", "0.3.0", "0.3.1", "0.4.0"):
        legacy = version != "1.0.0"
        out: dict[str, Any] = {"cniVersion": version}
        if result.get("interfaces"):
            out["interfaces"] = [dict(i) for i in result["interfaces"]]
        if result.get("ips"):
            out["ips"] = [_ipconf(i, legacy) for i in result["ips"]]
        if result.get("routes"):
            out["routes"] = [_route(r) for r in result["routes"]]
        out["dns"] = dict(result.get("dns") or {})
        return out
    if version in ("0.1.0", "0.2.0"):
        out = {"cniVersion": version}
        fam: dict[str, dict[str, Any]] = {}
        for ip in result.get("ips") or []:
            key = "ip" + ip_version(ip["address"])
            if key not in fam:
                fam[key] = {"ip": ip["address"]}
                if ip.get("gateway"):
                    fam[key]["gateway"] = ip["gateway"]
        if not fam:
            raise CNIError(ERR_INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses")
        for r in result.get("routes") or []:
            key = "ip" + ip_version(r["dst"])
            if key in fam:
                fam[key].setdefault("routes", []).append(_route(r))
        for key in ("ip4", "ip6"):
            if key in fam:
                out[key] = fam[key]
        out["dns"] = dict(result.get("dns") or {})
        return out
    raise CNIError(ERR_INCOMPATIBLE_VERSION, f"cannot convert result to version {version}")


def parse_result(obj: Any) -> dict[str, Any]:
    """Read a result of any supported version (e.g. prevResult) into the 1.0 shape."""
    if not isinstance(obj, dict):
        raise CNIError(ERR_DECODE, "failed to parse prevResult: not a JSON object")
    version = obj.get("cniVersion") or "0.2.0"
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise CNIError(ERR_INCOMPATIBLE_VERSION, f"unsupported prevResult version {version!r}")
    try:
        if version in ("0.1.0", "0.2.0"):
            ips, routes = [], []
            for key in ("ip4", "ip6"):
                c = obj.get(key)
                if c:
                    ips.append({"address": c["ip"], "gateway": c.get("gateway")})
                    routes.extend(_route(r) for r in c.get("routes") or [])
            return new_result([], ips, routes, parse_dns(obj.get("dns")))
        interfaces = []
        for i in obj.get("interfaces") or []:
            it = {"name": i["name"]}
            for k in ("mac", "sandbox"):
                if i.get(k):
                    it[k] = i[k]
            interfaces.append(it)
        ips = [{"interface": i.get("interface"), "address": i["address"], "gateway": i.get("gateway")}
               for i in obj.get("ips") or []]
        return new_result(interfaces, ips, [_route(r) for r in obj.get("routes") or []],
                          parse_dns(obj.get("dns")))
    except (KeyError, TypeError, AttributeError) as e:
        raise CNIError(ERR_DECODE, f"failed to parse prevResult: missing or malformed {e}") from None


def dumps(obj: Any) -> str:
    """JSON as the reference plugins print results and errors (4-space indent, no newline)."""
    return json.dumps(obj, indent=4)
