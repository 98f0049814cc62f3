"""kubelab: the operator CLI (up, down, status, images)."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from kubelab.lab.local import DEFAULT_STATE, Lab, LabError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["images"]:
        from kubelab.cri.image.cli import images_main
        sys.exit(images_main(args[1:]))
    p = argparse.ArgumentParser(prog="kubelab", description="Run a kubelab lab on this host.")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the lab keeps its state")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the lab")
    up.add_argument("--apiserver-port", type=int, default=6443)
    up.add_argument("--etcd-port", type=int, default=23790)
    sub.add_parser("down", help="stop the lab and remove everything it made")
    sub.add_parser("status", help="show what is running")
    sub.add_parser("images", help="build, import and list container images (kubelab images --help)")
    a = p.parse_args(args)
    lab = Lab(a.state_dir, **({"etcd_port": a.etcd_port, "apiserver_port": a.apiserver_port}
                              if a.cmd == "up" else {}))
    try:
        if a.cmd == "up":
            lab.up()
            kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
            print(f"kubelab is up: etcd and the apiserver at https://127.0.0.1:{a.apiserver_port}")
            out = subprocess.run([kubectl, "--kubeconfig", str(lab.kubeconfig), "get", "namespaces"],
                                 capture_output=True, text=True, timeout=30)
            print(out.stdout or out.stderr, end="")
            print(f"\nUse it with the real kubectl:\n  export KUBECONFIG={lab.kubeconfig}\n"
                  f"  export PATH={Path(sys.executable).parent}:$PATH\n  kubectl get all -A\n"
                  f"Stop it with: {Path(sys.executable).parent}/kubelab down")
        elif a.cmd == "down":
            lab.down()
            print("kubelab is down")
        else:
            state = lab.running()
            if not state:
                print("no lab")
                sys.exit(1)
            for name, ok in state.items():
                print(f"{name}: {'running' if ok else 'stopped'}")
    except LabError as e:
        print(f"kubelab: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
