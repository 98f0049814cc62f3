"""The real kubectl against a LabCluster, for the e2e tests that drive a lab with kubelets."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from polling import wait

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def kubectl(lab: Any, cache: Path) -> Callable[..., str]:
    """run(*args, input=, check=, timeout=) -> stdout; a failure names the command and shows the end
    of node1's kubelet log."""
    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        p = subprocess.run([KUBECTL, "--kubeconfig", str(lab.kubeconfig), "--cache-dir", str(cache), *args],
                           input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise AssertionError(f"kubectl {shlex.join(args)}: {p.stdout}\n{p.stderr}\n"
                                 + (lab.tmp / "node1" / "kubelet.log").read_text()[-3000:])
        return p.stdout
    return run


def kjson(k: Callable[..., str], *args: str) -> dict:
    return json.loads(k(*args, "-o", "json"))


def wait_phase(k: Callable[..., str], pod: str, phase: str, timeout: float, what: str) -> dict:
    """The pod's status once it shows `phase`."""
    return wait(lambda: (lambda s: s if s.get("phase") == phase else None)(kjson(k, "get", "pod", pod)["status"]),
                timeout, what)
