"""The single-host lab. For now: etcd and the apiserver, with a kubeconfig for the real kubectl.

Later issues add the scheduler, controllers and nodes (network namespaces with their own
runtime, kubelet and proxy). Everything it starts is recorded in the state directory, and
`down` stops it and removes the directory.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .controlplane import APIServerProc, Etcd, Pki, stop

DEFAULT_STATE = Path("/var/lib/kubelab/lab")


class LabError(Exception):
    pass


class Lab:
    def __init__(self, state: Path = DEFAULT_STATE, *, etcd_port: int = 23790, apiserver_port: int = 6443) -> None:
        self.state = state
        self.etcd_port = etcd_port
        self.apiserver_port = apiserver_port

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    def _pids(self) -> dict[str, int]:
        try:
            return json.loads((self.state / "pids.json").read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, pids: dict[str, int]) -> None:
        (self.state / "pids.json").write_text(json.dumps(pids))

    def running(self) -> dict[str, bool]:
        out = {}
        for name, pid in self._pids().items():
            try:
                os.kill(pid, 0)
                out[name] = True
            except ProcessLookupError:
                out[name] = False
        return out

    def up(self) -> None:
        if any(self.running().values()):
            raise LabError(f"a lab is already running (state in {self.state}); run `kubelab down` first")
        self.state.mkdir(parents=True, exist_ok=True)
        pids: dict[str, int] = {}
        try:
            etcd = Etcd(self.state / "etcd", self.etcd_port, self.etcd_port + 1)
            etcd.start(self.state / "logs" / "etcd.log", detach=True)
            pids["etcd"] = etcd.proc.pid
            self._save(pids)
            pki = Pki(self.state / "pki")
            pki.ensure(("127.0.0.1",))
            api = APIServerProc(etcd.url, self.apiserver_port, pki)
            api.start(self.state / "logs" / "apiserver.log", detach=True)
            pids["apiserver"] = api.proc.pid
            self._save(pids)
            pki.kubeconfig(f"https://127.0.0.1:{self.apiserver_port}", self.kubeconfig)
        except Exception as e:
            self.down()
            raise LabError(f"lab did not come up: {e}") from e

    def down(self) -> None:
        for name in ("apiserver", "etcd"):
            pid = self._pids().get(name)
            if pid:
                stop(pid)
        if self.state.exists():
            shutil.rmtree(self.state)
        if self.state == DEFAULT_STATE:
            try:
                DEFAULT_STATE.parent.rmdir()  # /var/lib/kubelab, made by `up`, if nothing else is there
            except OSError:
                pass
