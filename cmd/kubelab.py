"""kubelab: the operator CLI (up, down, status, images, hollow-nodes)."""
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
    if args[:1] == ["hollow-nodes"]:
        sys.exit(hollow_main(args[1:]))
    p = argparse.ArgumentParser(prog="kubelab", description="Run a kubelab lab on this host.")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the lab keeps its state")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the lab")
    up.add_argument("--apiserver-port", type=int, default=6443)
    up.add_argument("--etcd-port", type=int, default=23790)
    up.add_argument("--nodes", type=int, default=2, help="lab nodes (network namespaces); 0: only etcd and the "
                                                         "apiserver")
    sub.add_parser("down", help="stop the lab and remove everything it made")
    sub.add_parser("status", help="show what is running")
    sub.add_parser("images", help="build, import and list container images (kubelab images --help)")
    sub.add_parser("hollow-nodes", help="run fake nodes for scale tests (kubelab hollow-nodes --help)")
    a = p.parse_args(args)
    if a.cmd == "up" and not 0 <= a.nodes <= 8:
        p.error("--nodes must be within 0-8")
    lab = Lab(a.state_dir, **({"etcd_port": a.etcd_port, "apiserver_port": a.apiserver_port, "nodes": a.nodes}
                              if a.cmd == "up" else {}))
    try:
        if a.cmd == "up":
            fetched = lab.up(log=lambda m: print(f"kubelab: {m}", flush=True))
            kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or "kubectl"
            if a.nodes:
                from kubelab.lab.nodes import HOST_IP
                print(f"kubelab is up: the control plane at https://{HOST_IP}:{a.apiserver_port} and {a.nodes} nodes")
                what = ["get", "nodes,pods,services", "-o", "wide"]
            else:
                print(f"kubelab is up: etcd and the apiserver at https://127.0.0.1:{a.apiserver_port}")
                what = ["get", "namespaces"]
            out = subprocess.run([kubectl, "--kubeconfig", str(lab.kubeconfig), *what],
                                 capture_output=True, text=True, timeout=30)
            print(out.stdout or out.stderr, end="")
            for where, answer in fetched.items():
                print(f"curl {where}:\n  {answer}")
            print(f"\nUse it with the real kubectl:\n  export KUBECONFIG={lab.kubeconfig}\n"
                  f"  export PATH={Path(sys.executable).parent}:$PATH\n  kubectl get all -A\n"
                  f"Stop it with: {Path(sys.executable).parent}/kubelab"
                  f"{'' if a.state_dir == DEFAULT_STATE else f' --state-dir {a.state_dir}'} down")
        elif a.cmd == "down":
            problems = lab.down()
            for pr in problems:
                print(f"kubelab: {pr}", file=sys.stderr)
            print("kubelab is down")
            if problems:
                sys.exit(1)
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


def hollow_main(argv: list[str]) -> int:
    import asyncio
    import logging
    import signal

    from kubelab import logs
    from kubelab.cliflags import duration, labels, taint
    from kubelab.lab.hollow import HollowConfig
    p = argparse.ArgumentParser(prog="kubelab hollow-nodes",
                                description="Register fake nodes and play their kubelets (no containers).")
    p.add_argument("--kubeconfig", default="", help="kubeconfig of the API server")
    p.add_argument("--count", type=int, required=True, help="how many nodes")
    p.add_argument("--prefix", default="hollow", help="node names are <prefix>-00000, <prefix>-00001, ...")
    p.add_argument("--cpu", default="8", help="each node's CPU capacity")
    p.add_argument("--memory", default="32Gi", help="each node's memory capacity")
    p.add_argument("--max-pods", type=int, default=110, help="each node's pod capacity")
    p.add_argument("--node-labels", type=labels, default={}, help="extra labels: k=v,k2=v2")
    p.add_argument("--register-with-taints", type=taint, action="append", default=[],
                   help="a taint for every node: key[=value]:Effect (repeatable)")
    p.add_argument("--pod-ready-delay", type=duration, default=1.0, help="bound pod -> Running and Ready after this")
    p.add_argument("--node-lease-renew-interval", type=duration, default=10.0, help="how often each Lease is renewed")
    p.add_argument("--keep-nodes", action="store_true", help="leave the nodes registered on exit")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity")
    a = p.parse_args(argv)
    if not 0 < a.count <= 100000:
        p.error("--count must be within 1-100000")
    logs.setup("hollow-nodes", a.verbosity)
    cfg = HollowConfig(count=a.count, prefix=a.prefix, cpu=a.cpu, memory=a.memory, pods=a.max_pods,
                       labels=a.node_labels, taints=a.register_with_taints, pod_ready_delay=a.pod_ready_delay,
                       renew_interval=a.node_lease_renew_interval)

    async def run() -> int:
        from kubelab.client.informer import SharedInformerFactory
        from kubelab.client.rest import Client
        from kubelab.lab.hollow import HollowNodes
        client = Client.from_kubeconfig(a.kubeconfig or None, component="hollow-nodes")
        factory = SharedInformerFactory(client)
        nodes = HollowNodes(client, cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        work = asyncio.create_task(nodes.run(factory))
        waiter = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if work in done:
                work.result()
        finally:
            work.cancel()
            waiter.cancel()
            await asyncio.gather(work, waiter, return_exceptions=True)
            await factory.shutdown()
            if not a.keep_nodes:
                await nodes.remove()
            await client.close()
        logging.getLogger("kubelab.lab.hollow").info("stopped; pods run=%d deleted=%d", nodes.ready_pods,
                                                      nodes.deleted_pods)
        return 0

    from kubelab.client.kubeconfig import ConfigError
    from kubelab.client.rest import ApiError
    try:
        return asyncio.run(run())
    except (ConfigError, ApiError, OSError) as e:
        print(f"kubelab hollow-nodes: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    main()
