"""The prober's pure logic, with tables after upstream's cases: thresholds and result transitions
of workers (driven step by step with a fake clock and a scripted ExecSync), port resolution,
$(VAR) expansion of exec commands, the HTTP request a probe sends, grace periods, and the
generated gRPC health protocol."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from kubelab.kubelet.expansion import expand, expand_static, mapping_func_for as mapping_for
from kubelab.kubelet.prober import ProbeManager, Result, probe_grace
from kubelab.kubelet.prober.grpcprobe import go_status_code
from kubelab.kubelet.prober.healthpb import generate as health_generate
from kubelab.kubelet.prober.healthpb import health_pb2, health_pb2_grpc
from kubelab.kubelet.prober.httpprobe import build_request, canonical_header_key, go_url, user_agent
from kubelab.kubelet.prober.ports import resolve_container_port
from kubelab.kubelet.prober.prober import ProbeTiming
from kubelab.kubelet.prober.results import ProbeError
from kubelab.kubelet.prober.worker import ThresholdTracker, Worker

S, F = Result.SUCCESS, Result.FAILURE


# -- thresholds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("success, failure, runs, recorded", [
    (1, 3, [S, F, F, F, F], [S, None, None, F, F]),
    (1, 3, [F, F, S, F, F, F], [None, None, S, None, None, F]),
    (2, 1, [S, S, S, F, S, F], [None, S, S, F, None, F]),
    (3, 2, [S, S, F, S, S, S], [None, None, None, None, None, S]),
    (1, 1, [F, S, F], [F, S, F]),
])
def test_threshold_tracker(success, failure, runs, recorded):
    t = ThresholdTracker(success, failure)
    assert [t.observe(r) for r in runs] == recorded


def test_tracker_reset_starts_a_new_run():
    t = ThresholdTracker(1, 2)
    assert [t.observe(F), t.observe(F)] == [None, F]
    t.reset()
    assert t.observe(F) is None  # a failure after the hold needs the whole threshold again


@pytest.mark.parametrize("spec, timing", [
    ({}, ProbeTiming(0, 1, 10, 1, 3)),
    ({"initialDelaySeconds": 5, "timeoutSeconds": 2, "periodSeconds": 3, "successThreshold": 2,
      "failureThreshold": 4}, ProbeTiming(5, 2, 3, 2, 4)),
    ({"timeoutSeconds": 0, "periodSeconds": -1, "failureThreshold": None}, ProbeTiming(0, 1, 10, 1, 3)),
])
def test_probe_timing_defaults(spec, timing):
    assert ProbeTiming.of(spec) == timing


# -- workers, step by step ---------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedExec:
    """ExecSync answering from a script: an exit code, or an exception to raise."""

    def __init__(self) -> None:
        self.script: list[int | BaseException] = []
        self.calls: list[tuple[str, list[str], float]] = []

    async def __call__(self, container_id: str, cmd: list[str], timeout: float) -> tuple[int, bytes, bytes]:
        self.calls.append((container_id, cmd, timeout))
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step, b"out:" + str(step).encode(), b""


class RecordingEvents:
    """Stands in for an EventRecorder: keeps (type, reason, message, fieldPath)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str | None]] = []

    def event(self, obj, event_type, reason, message, *, annotations=None, field_path=None) -> None:
        self.events.append((event_type, reason, message, field_path))


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock(1000.0)
        self.exec = ScriptedExec()
        self.events = RecordingEvents()
        self.changes: list[str] = []
        self.failures: list[tuple[str, str, str]] = []
        self.manager = ProbeManager(self.exec, on_change=self.changes.append,
                                    on_liveness_failure=lambda *a: self.failures.append(a),
                                    recorder=self.events, clock=self.clock)

    def worker(self, kind: str, container: str = "c") -> Worker:
        return self.manager._workers[("uid-1", container, kind)]

    async def step(self, kind: str, at: float, *script: int | BaseException, container: str = "c") -> bool:
        self.clock.now = at
        self.exec.script.extend(script)
        keep = await self.worker(kind, container).do_probe()
        assert self.exec.script == [], "the probe did not run as many times as scripted"
        return keep


def pod(containers: list[dict], **meta) -> dict:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", **meta},
            "spec": {"containers": containers, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}}


def exec_probe(**timing) -> dict:
    return {"exec": {"command": ["check", "$(MODE)"]}, **timing}


@pytest.fixture
def h(monkeypatch):
    monkeypatch.setattr(Worker, "start", lambda self: None)  # the tests step the workers themselves
    return Harness()


async def test_readiness_waits_for_initial_delay_and_success_threshold(h):
    c = {"name": "c", "env": [{"name": "MODE", "value": "ready"}],
         "readinessProbe": exec_probe(initialDelaySeconds=5, successThreshold=2, failureThreshold=2)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    assert (h.manager.started("uid-1", "c"), h.manager.ready("uid-1", "c")) == (True, False)
    assert h.worker("readiness")._trigger.is_set()  # asking triggers an immediate probe, as upstream

    await h.step("readiness", 1004.9)                 # int(4.9) < 5: no probe yet
    assert h.exec.calls == []
    await h.step("readiness", 1005.0, 0)
    assert h.exec.calls == [("cid-1", ["check", "ready"], 1.0)]
    assert not h.manager.ready("uid-1", "c") and h.changes == []      # 1 of 2 successes
    await h.step("readiness", 1015.0, 0)
    assert h.manager.ready("uid-1", "c") and h.changes == ["uid-1"]
    await h.step("readiness", 1025.0, 0)
    assert h.changes == ["uid-1"]                                      # no flip, no callback
    await h.step("readiness", 1035.0, 1)
    assert h.manager.ready("uid-1", "c")                               # 1 of 2 failures
    await h.step("readiness", 1045.0, 1)
    assert not h.manager.ready("uid-1", "c") and h.changes == ["uid-1", "uid-1"]
    assert h.events.events == [("Warning", "Unhealthy", "Readiness probe failed: out:1", "spec.containers{c}")] * 2
    assert h.failures == []


async def test_liveness_failure_is_reported_once_then_the_worker_holds(h):
    c = {"name": "c", "livenessProbe": exec_probe(failureThreshold=3)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    assert h.manager.result("uid-1", "c", "liveness") == S   # liveness starts as success
    for t, code in ((1010, 1), (1020, 1), (1030, 0), (1040, 1), (1050, 1)):
        await h.step("liveness", t, code)
    assert h.failures == []
    await h.step("liveness", 1060, 1)
    assert h.failures == [("uid-1", "c", "Container c failed liveness probe")]
    assert h.manager.result("uid-1", "c", "liveness") == F
    calls = len(h.exec.calls)
    assert await h.step("liveness", 1070) is True       # on hold: no probe until a new container
    assert len(h.exec.calls) == calls and len(h.failures) == 1
    assert h.changes == []                              # liveness does not touch readiness

    # the restarted container gets fresh workers and results
    h.manager.container_started(pod([c]), "c", "cid-2", 1080.0, "10.0.0.5")
    assert h.manager.result("uid-1", "c", "liveness") == S
    await h.step("liveness", 1090, 1)
    assert h.exec.calls[-1][0] == "cid-2" and len(h.failures) == 1


async def test_startup_gates_liveness_and_readiness(h):
    c = {"name": "c", "startupProbe": exec_probe(failureThreshold=3), "livenessProbe": exec_probe(),
         "readinessProbe": exec_probe()}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    assert not h.manager.started("uid-1", "c") and not h.manager.ready("uid-1", "c")
    await h.step("liveness", 1010)
    await h.step("readiness", 1010)
    assert h.exec.calls == []                           # not before startup succeeded
    await h.step("startup", 1010, 1)
    assert h.changes == [] and not h.manager.started("uid-1", "c")
    await h.step("startup", 1020, 0)
    assert h.manager.started("uid-1", "c") and h.changes == ["uid-1"]
    calls = len(h.exec.calls)
    await h.step("startup", 1030)                       # startup is done probing
    assert len(h.exec.calls) == calls
    assert not h.manager.ready("uid-1", "c")            # readiness has not succeeded yet
    await h.step("readiness", 1030, 0)
    await h.step("liveness", 1030, 0)
    assert h.manager.ready("uid-1", "c") and h.changes == ["uid-1", "uid-1"]


async def test_startup_failure_restarts_with_its_own_message(h):
    c = {"name": "c", "startupProbe": exec_probe(failureThreshold=2)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    await h.step("startup", 1010, 1)
    await h.step("startup", 1020, 1)
    assert h.failures == [("uid-1", "c", "Container c failed startup probe")]
    assert not h.manager.started("uid-1", "c")
    assert h.events.events[-1] == ("Warning", "Unhealthy", "Startup probe failed: out:1", "spec.containers{c}")


async def test_an_errored_probe_is_retried_and_thrown_away(h):
    c = {"name": "c", "readinessProbe": exec_probe(failureThreshold=1)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    await h.step("readiness", 1010, 0)
    assert h.manager.ready("uid-1", "c")
    boom = RuntimeError("rpc error: code = Unknown desc = container is stopping")
    assert await h.step("readiness", 1020, boom, boom, boom) is True   # 3 tries
    assert h.manager.ready("uid-1", "c")                                # the result is kept
    assert h.events.events == [("Warning", "Unhealthy", "Readiness probe errored and resulted in unknown state: "
                                 "rpc error: code = Unknown desc = container is stopping", "spec.containers{c}")]
    await h.step("readiness", 1030, boom, 1)                            # a retry that answers counts
    assert not h.manager.ready("uid-1", "c")


async def test_exec_timeout_is_a_failure(h):
    c = {"name": "c", "livenessProbe": {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 2,
                                        "failureThreshold": 1}}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    await h.step("liveness", 1010, asyncio.TimeoutError())
    assert h.exec.calls == [("cid-1", ["sleep", "5"], 2.0)]
    assert h.events.events == [("Warning", "Unhealthy", 'Liveness probe failed: command "sleep 5" timed out',
                                "spec.containers{c}")]
    assert h.failures == [("uid-1", "c", "Container c failed liveness probe")]


async def test_deletion_quiets_liveness_and_startup(h):
    c = {"name": "c", "livenessProbe": exec_probe(failureThreshold=1), "readinessProbe": exec_probe()}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    h.manager.update_pod(pod([c], deletionTimestamp="2026-12-07T08:00:00Z"))
    assert await h.step("liveness", 1010) is False     # success recorded, the worker ends
    assert h.manager.result("uid-1", "c", "liveness") == S and h.failures == []
    await h.step("readiness", 1010, 1)                 # readiness still probes a terminating pod
    assert h.exec.calls and h.failures == []


async def test_stopped_and_unknown_containers_are_neither_started_nor_ready(h):
    c = {"name": "c"}
    assert not h.manager.started("uid-1", "c") and not h.manager.ready("uid-1", "c")
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    assert h.manager.started("uid-1", "c") and h.manager.ready("uid-1", "c")   # no probes: ready
    h.manager.container_stopped("uid-1", "c")
    assert not h.manager.started("uid-1", "c") and not h.manager.ready("uid-1", "c")


async def test_restart_resets_readiness(h):
    c = {"name": "c", "readinessProbe": exec_probe(failureThreshold=1)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    await h.step("readiness", 1010, 0)
    assert h.manager.ready("uid-1", "c")
    h.manager.container_stopped("uid-1", "c")
    h.manager.container_started(pod([c]), "c", "cid-2", 1020.0, "10.0.0.5")
    assert not h.manager.ready("uid-1", "c")
    h.manager.remove_pod("uid-1")
    assert h.manager._workers == {} and not h.manager.ready("uid-1", "c")
    await h.manager.close()


async def test_starting_the_same_container_again_keeps_its_workers(h):
    c = {"name": "c", "readinessProbe": exec_probe(successThreshold=2)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    worker = h.worker("readiness")
    await h.step("readiness", 1010, 0)
    h.manager.container_started(pod([c], labels={"new": "label"}), "c", "cid-1", 1000.0, "10.0.0.5")
    assert h.worker("readiness") is worker and worker.pod["metadata"]["labels"] == {"new": "label"}
    await h.step("readiness", 1020, 0)                 # the run of successes went on
    assert h.manager.ready("uid-1", "c")


async def test_a_stopped_workers_late_result_is_ignored(h):
    c = {"name": "c", "readinessProbe": exec_probe(failureThreshold=1)}
    h.manager.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    old = h.worker("readiness")
    h.manager.container_started(pod([c]), "c", "cid-2", 1010.0, "10.0.0.5")
    h.manager.set_result(old, S)
    assert not h.manager.ready("uid-1", "c") and h.changes == []


async def test_callback_errors_do_not_stop_probing(monkeypatch):
    monkeypatch.setattr(Worker, "start", lambda self: None)

    def broken(*_):
        raise RuntimeError("bug in the kubelet")

    ex = ScriptedExec()
    m = ProbeManager(ex, on_change=broken, on_liveness_failure=broken, clock=FakeClock(1010.0))
    c = {"name": "c", "readinessProbe": exec_probe(failureThreshold=1)}
    m.container_started(pod([c]), "c", "cid-1", 1000.0, "10.0.0.5")
    ex.script.append(0)
    assert await m._workers[("uid-1", "c", "readiness")].do_probe() is True
    assert m.ready("uid-1", "c")


# -- grace periods -------------------------------------------------------------------------------

@pytest.mark.parametrize("meta, spec_grace, probe_grace_s, kind, want", [
    ({}, 30, None, "liveness", 30),
    ({}, 30, 5, "liveness", 5),
    ({}, 30, 5, "readiness", 30),
    ({}, 30, 7, "startup", 7),
    ({"deletionGracePeriodSeconds": 12}, 30, 5, "liveness", 12),
    ({}, None, 5, "liveness", 2),
])
def test_probe_grace(meta, spec_grace, probe_grace_s, kind, want):
    probe = {"exec": {"command": ["true"]}}
    if probe_grace_s is not None:
        probe["terminationGracePeriodSeconds"] = probe_grace_s
    p = {"metadata": {"name": "p", **meta},
         "spec": {"containers": [{"name": "c", "livenessProbe": probe, "startupProbe": probe}]}}
    if spec_grace is not None:
        p["spec"]["terminationGracePeriodSeconds"] = spec_grace
    assert probe_grace(p, "c", kind) == want
    assert ProbeManager.probe_grace(p, "c", kind) == want


# -- ports -----------------------------------------------------------------------------------------

CONTAINER = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9000}]}


@pytest.mark.parametrize("port, want", [
    (80, 80), ("http", 8080), ("grpc", 9000), ("8081", 8081), (65535, 65535),
    ("foo", 'strconv.Atoi: parsing "foo": invalid syntax'),
    ("", 'strconv.Atoi: parsing "": invalid syntax'),
    (0, "invalid port number: 0"), (65536, "invalid port number: 65536"), ("-1", "invalid port number: -1"),
])
def test_resolve_container_port(port, want):
    if isinstance(want, int):
        assert resolve_container_port(port, CONTAINER) == want
    else:
        with pytest.raises(ProbeError) as err:
            resolve_container_port(port, CONTAINER)
        assert str(err.value) == want


# -- $(VAR) expansion (upstream expand_test.go) -------------------------------------------------

VARS = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize("text, want", [
    ("$(VAR_A)", "A"), ("___$(VAR_B)___", "___B___"), ("$(VAR_A)-$(VAR_A)", "A-A"),
    ("$(VAR_A)-1", "A-1"), ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"), ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("$$(VAR_A)$$(VAR_B)", "$(VAR_A)$(VAR_B)"), ("f000-$$VAR_A", "f000-$VAR_A"),
    ("$(VAR_REF)", "$(VAR_A)"), ("foo$(VAR_EMPTY)bar", "foobar"), ("$(VAR_DNE)", "$(VAR_DNE)"),
    ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"), ("$$$$$$(VAR_A)", "$$$(VAR_A)"), ("$$$$$$$(VAR_A)", "$$$A"),
    ("$(VAR_A", "$(VAR_A"), ("$VAR_A", "$VAR_A"), ("$", "$"), ("foo$", "foo$"), ("$$", "$"),
    ("foo$()bar", "foo$()bar"), ("", ""), ("$(VAR_A)$", "A$"),
])
def test_expand(text, want):
    assert expand(text, mapping_for(VARS)) == want


def test_expand_static_uses_plain_env_values_only():
    env = [{"name": "PORT", "value": "8080"}, {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s"}}}]
    assert expand_static(["curl", "localhost:$(PORT)/$(SECRET)$(NONE)"], env) == \
        ["curl", "localhost:8080/$(NONE)"]


# -- the HTTP request ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, want", [
    ("x-custom-header", "X-Custom-Header"), ("user-agent", "User-Agent"), ("ACCEPT", "Accept"),
    ("host", "Host"), ("bad name", "bad name"),
])
def test_canonical_header_key(name, want):
    assert canonical_header_key(name) == want


def test_build_request_defaults():
    req = build_request({"port": "http"}, CONTAINER, "10.0.0.5")
    assert go_url(req.url) == "http://10.0.0.5:8080/"
    assert go_url(build_request({"port": 80}, CONTAINER, "10.0.0.5").url) == "http://10.0.0.5:80/"
    assert dict(req.headers) == {"User-Agent": user_agent(), "Accept": "*/*"}
    assert user_agent() == "kube-probe/1.36"


def test_build_request_with_everything():
    req = build_request({"scheme": "HTTPS", "host": "example.test", "port": 8443, "path": "healthz?full=1",
                         "httpHeaders": [{"name": "x-token", "value": "a"}, {"name": "X-Token", "value": "b"},
                                         {"name": "user-agent", "value": "mine"}, {"name": "Accept", "value": ""},
                                         {"name": "host", "value": "vhost.test"}]},
                        CONTAINER, "10.0.0.5")
    assert go_url(req.url) == "https://example.test:8443/healthz?full=1"
    assert req.headers.getall("X-Token") == ["a", "b"]
    assert req.headers["User-Agent"] == "mine" and req.headers["Host"] == "vhost.test"
    assert "Accept" not in req.headers


def test_build_request_ipv6_and_bad_port():
    assert go_url(build_request({"port": 80, "path": "/x"}, CONTAINER, "fd00::5").url) == "http://[fd00::5]:80/x"
    with pytest.raises(ProbeError):
        build_request({"port": "nope"}, CONTAINER, "10.0.0.5")


# -- the gRPC health protocol ----------------------------------------------------------------------

def test_regenerating_health_stubs_changes_nothing():
    pytest.importorskip("grpc_tools")
    assert health_generate.stale_files() == []


def test_health_protocol_wire_format():
    assert health_pb2.DESCRIPTOR.package == "grpc.health.v1"
    assert health_pb2.HealthCheckRequest(service="x").SerializeToString() == b"\x0a\x01x"
    assert health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING
                                          ).SerializeToString() == b"\x08\x02"
    enum = health_pb2.HealthCheckResponse.ServingStatus
    assert [(n, enum.Value(n)) for n in enum.keys()] == [("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2),
                                                         ("SERVICE_UNKNOWN", 3)]

    paths = {}

    class Channel:
        def unary_unary(self, path, **_):
            paths[path] = "unary_unary"

        def unary_stream(self, path, **_):
            paths[path] = "unary_stream"

    health_pb2_grpc.HealthStub(Channel())
    assert paths == {"/grpc.health.v1.Health/Check": "unary_unary", "/grpc.health.v1.Health/Watch": "unary_stream"}


@pytest.mark.parametrize("code, name", [
    (grpc.StatusCode.NOT_FOUND, "NotFound"), (grpc.StatusCode.UNAVAILABLE, "Unavailable"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "DeadlineExceeded"), (grpc.StatusCode.OK, "OK"),
    (grpc.StatusCode.PERMISSION_DENIED, "PermissionDenied"),
])
def test_go_status_code_names(code, name):
    assert go_status_code(code) == name


async def test_a_pod_without_an_ip_is_not_probed():
    from kubelab.kubelet.prober.prober import Prober
    p = Prober(ScriptedExec())
    container = {"name": "c", "readinessProbe": {"tcpSocket": {"port": 80}}}
    with pytest.raises(ProbeError) as err:
        await p.run_probe(container["readinessProbe"], pod([container]), container, "cid", "")
    assert str(err.value) == "pod web_ns(uid-1) has no IP address to probe"
    missing = {"name": "c", "readinessProbe": {"periodSeconds": 1}}
    with pytest.raises(ProbeError) as err:
        await p.run_probe(missing["readinessProbe"], pod([missing]), missing, "cid", "10.0.0.5")
    assert str(err.value) == "missing probe handler for web_ns(uid-1):c"
