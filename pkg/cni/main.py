"""The kubelab-bridge executable: CNI_* environment and the stdin config in, a result or an error
JSON on stdout, exit 0 or 1 (libcni's skel flow: environment, then config name, container id and
interface name, then the version, then the command).

The runtime execs this for every pod, so imports are kept to what each command needs: VERSION
loads nothing beyond json; ADD/DEL/CHECK load the netlink codec (standard library only), and
asyncio only where a command (iptables, a delegated IPAM plugin) has to be run.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # not typing's: the plugin is exec'd per pod and skips importing typing

if TYPE_CHECKING:
    from typing import BinaryIO, Mapping, TextIO

from kubelab.cni import spec
from kubelab.cni.spec import CNIError

ABOUT = "CNI kubelab-bridge plugin v0.1.0"


def run(env: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, stderr: TextIO) -> int:
    cni_version = ""
    try:
        try:
            args = spec.args_from_env(env, b"")
        except CNIError as e:
            if e.code == spec.ERR_INVALID_ENV and not env.get("CNI_COMMAND"):
                stderr.write(f"{ABOUT}\nCNI protocol versions supported: "
                             f"{', '.join(spec.SUPPORTED_VERSIONS)}\n")
                return 0
            raise
        if args.command == "VERSION":
            stdout.write(spec.version_output())
            return 0
        try:
            args.stdin = stdin.read()
        except OSError as e:
            raise CNIError(spec.ERR_IO, f"error reading from stdin: {e}") from None
        conf = spec.decode_config(args.stdin)
        if isinstance(conf.get("cniVersion"), str):
            cni_version = conf["cniVersion"]  # errors from here on carry the config's version
        spec.validate_network_name(conf.get("name", ""))
        spec.validate_container_id(args.container_id)
        spec.validate_ifname(args.ifname)
        cni_version = spec.config_version(conf)
        if args.command not in ("ADD", "DEL", "CHECK"):
            raise CNIError(spec.ERR_INVALID_ENV, f"unknown CNI_COMMAND: {args.command}")
        if args.command == "CHECK" and not spec.version_at_least(cni_version, "0.4.0"):
            raise CNIError(spec.ERR_INCOMPATIBLE_VERSION, "config version does not allow CHECK")
        spec.check_version(cni_version)

        from kubelab.cni import bridge
        bconf = bridge.parse_conf(conf, args.args, cni_version)
        if args.command == "ADD":
            out = bridge.cmd_add(args, bconf)
        elif args.command == "DEL":
            out = bridge.cmd_del(args, bconf)
        else:
            out = bridge.cmd_check(args, bconf)
        stdout.write(out)
        return 0
    except CNIError as e:
        stdout.write(spec.dumps(e.to_dict(cni_version)))
        return 1
    except KeyboardInterrupt:
        stdout.write(spec.dumps(CNIError(spec.ERR_INTERNAL, "interrupted").to_dict(cni_version)))
        return 1
    except Exception as e:  # noqa: BLE001 - a plugin answers with error JSON, never a traceback
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.strerror:
            msg = f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
        stdout.write(spec.dumps(CNIError(spec.ERR_INTERNAL, msg).to_dict(cni_version)))
        return 1


def main() -> int:
    code = run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
    sys.stdout.flush()
    return code
