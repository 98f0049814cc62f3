"""kubelab-controller-manager as a process against the real apiserver: --controllers, leader
election on its Lease, the HTTPS health/metrics server, and the node IPAM controller giving every
Node a pod CIDR (kept across restarts, never handed out twice, CIDRNotAvailable when exhausted)."""
from __future__ import annotations

import asyncio
import ipaddress
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import Client, is_not_found
from kubelab.lab.controlplane import free_port, spawn

pytestmark = pytest.mark.integration

CM = str(Path(sys.executable).parent / "kubelab-controller-manager")


class CMProc:
    def __init__(self, control_plane, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.lease = f"kcm-{uuid.uuid4().hex[:6]}"
        self.log = tmp / f"cm-{self.port}.log"
        self.args = [CM, "--kubeconfig", str(control_plane.kubeconfig), "--secure-port", str(self.port),
                     "--bind-address", "127.0.0.1", "--leader-elect-resource-name", self.lease,
                     "--leader-elect-retry-period", "0.5s", "--leader-elect-renew-deadline", "3s",
                     "--leader-elect-lease-duration", "4s", *args]
        self.proc: subprocess.Popen | None = None

    def start(self, lease: str | None = None) -> "CMProc":
        if lease:
            self.lease = lease
            i = self.args.index("--leader-elect-resource-name")
            self.args[i + 1] = lease
        self.proc = spawn(self.args, self.log)
        return self

    def get(self, path: str) -> tuple[int, str]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{self.port}{path}", context=ctx, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"controller-manager not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("controller-manager did not stop on SIGTERM")


def api(control_plane, fn):
    async def go():
        async with Client.from_kubeconfig(str(control_plane.kubeconfig), component="cm-test") as c:
            return await fn(c)
    return asyncio.run(go())


def make_nodes(control_plane, names: list[str]) -> None:
    async def go(c):
        for n in names:
            await c.create("v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
    api(control_plane, go)


def delete_nodes(control_plane, names: list[str]) -> None:
    async def go(c):
        for n in names:
            try:
                await c.delete("v1", "nodes", None, n)
            except Exception as e:
                if not is_not_found(e):
                    raise
    api(control_plane, go)


def cidrs(control_plane, names: list[str], timeout: float = 15) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = api(control_plane, lambda c: asyncio.gather(*(c.get("v1", "nodes", None, n) for n in names)))
        got = {n["metadata"]["name"]: (n.get("spec") or {}).get("podCIDR") for n in nodes}
        if all(got.values()) or time.monotonic() > deadline:
            for n in nodes:
                if (n.get("spec") or {}).get("podCIDR"):
                    assert n["spec"]["podCIDRs"] == [n["spec"]["podCIDR"]]
            return got
        time.sleep(0.1)


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def test_node_ipam_assigns_distinct_cidrs_and_survives_restart(control_plane, tmp):
    uid = uuid.uuid4().hex[:5]
    names = [f"ipam-{uid}-{i}" for i in range(3)]
    cm = CMProc(control_plane, tmp, "--allocate-node-cidrs", "--cluster-cidr", "10.244.0.0/16",
                "--service-cluster-ip-range", "10.96.0.0/12")
    try:
        cm.start().wait_ready()
        make_nodes(control_plane, names)
        got = cidrs(control_plane, names)
        assert all(got.values()), got
        nets = [ipaddress.ip_network(c) for c in got.values()]
        assert len(set(nets)) == 3
        assert all(n.prefixlen == 24 and n.subnet_of(ipaddress.ip_network("10.244.0.0/16")) for n in nets)

        # health, readiness and metrics over HTTPS; the Lease names us
        assert cm.get("/healthz") == (200, "ok")
        status, body = cm.get("/metrics")
        assert status == 200 and "python_info" in body
        lease = api(control_plane, lambda c: c.get("coordination.k8s.io/v1", "leases", "kube-system", cm.lease))
        assert lease["spec"]["holderIdentity"]
        assert cm.stop() == 0
        lease = api(control_plane, lambda c: c.get("coordination.k8s.io/v1", "leases", "kube-system", cm.lease))
        assert not lease["spec"].get("holderIdentity"), "the lease was not released on SIGTERM"

        # while it is down: one node goes, one comes; after the restart the survivors keep their
        # CIDRs and the newcomer gets one nobody holds
        delete_nodes(control_plane, names[1:2])
        names.append(f"ipam-{uid}-3")
        make_nodes(control_plane, names[3:])
        cm.start().wait_ready()
        after = cidrs(control_plane, [names[0], names[2], names[3]])
        assert after[names[0]] == got[names[0]] and after[names[2]] == got[names[2]]
        assert after[names[3]] not in (got[names[0]], got[names[2]])
        assert after[names[3]] and ipaddress.ip_network(after[names[3]]).prefixlen == 24
    finally:
        cm.stop()
        delete_nodes(control_plane, names)
    log = cm.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "assigned pod CIDRs" in log


def test_exhausted_range_gets_cidr_not_available_event(control_plane, tmp):
    uid = uuid.uuid4().hex[:5]
    names = [f"ipamx-{uid}-{i}" for i in range(3)]
    cm = CMProc(control_plane, tmp, "--allocate-node-cidrs", "--cluster-cidr", "10.251.0.0/23",
                "--node-cidr-mask-size", "24")
    try:
        cm.start().wait_ready()
        make_nodes(control_plane, names)
        time.sleep(1)
        got = cidrs(control_plane, names, timeout=5)
        held = sorted(v for v in got.values() if v and v.startswith("10.251."))
        assert held == ["10.251.0.0/24", "10.251.1.0/24"], got
        starved = [n for n, v in got.items() if not v]
        assert len(starved) == 1

        def events():
            return api(control_plane, lambda c: c.list("v1", "events", "default",
                                                       field_selector=f"involvedObject.name={starved[0]}"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reasons = {(e["reason"], e["message"]) for e in events()["items"]}
            if reasons:
                break
            time.sleep(0.2)
        assert ("CIDRNotAvailable", f"Node {starved[0]} status is now: CIDRNotAvailable") in reasons

        # a freed CIDR goes to the waiting node
        holder = next(n for n, v in got.items() if v == "10.251.0.0/24")
        delete_nodes(control_plane, [holder])
        # the retry backs off exponentially; a node update brings it back at once
        api(control_plane, lambda c: c.patch("v1", "nodes", None, starved[0], {"metadata": {"labels": {"x": "y"}}}))
        assert cidrs(control_plane, [starved[0]])[starved[0]] == "10.251.0.0/24"
    finally:
        cm.stop()
        delete_nodes(control_plane, names)
    assert "Traceback" not in cm.log.read_text()


def test_bad_flags_are_one_line_errors(control_plane, tmp):
    for args, msg in ((["--controllers", "*,bogus"], '"bogus" is not in the list of known controllers'),
                      (["--allocate-node-cidrs"], "--allocate-node-cidrs needs --cluster-cidr"),
                      (["--allocate-node-cidrs", "--cluster-cidr", "10.0.0.0/8", "--node-cidr-mask-size", "28"],
                       "subnet mask size is too big"),
                      (["--leader-elect-retry-period", "soon"], "invalid duration 'soon'")):
        r = subprocess.run([CM, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r
        assert msg in r.stderr.strip().splitlines()[-1]
        assert "Traceback" not in r.stderr


def test_controllers_off_means_nothing_runs(control_plane, tmp):
    uid = uuid.uuid4().hex[:5]
    name = f"ipamoff-{uid}"
    cm = CMProc(control_plane, tmp, "--allocate-node-cidrs", "--cluster-cidr", "10.252.0.0/16",
                "--controllers", "*,-nodeipam")
    try:
        cm.start().wait_ready()
        make_nodes(control_plane, [name])
        time.sleep(1.5)
        assert cidrs(control_plane, [name], timeout=0)[name] is None
    finally:
        cm.stop()
        delete_nodes(control_plane, [name])
