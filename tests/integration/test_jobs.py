"""The Job, CronJob and TTL-after-finished controllers in kubelab-controller-manager against the
real apiserver, with the scheduler and hollow nodes running the pods (they Succeed or Fail through
the hollow.kubelab.dev/exit-after and exit-code annotations): completions and parallelism, a
failing Job stopping after backoffLimit retries with backoff, a podFailurePolicy FailJob rule, an
Indexed Job, suspend, activeDeadlineSeconds, ttlSecondsAfterFinished, a CronJob firing on schedule
and `kubectl create job --from=cronjob/`."""
from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubelab.client.rest import ApiError
from kubelab.lab.controlplane import free_port, spawn
from polling import api, wait

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class Lab:
    def __init__(self, cp, ns: str, profile: str, uid: str) -> None:
        self.cp, self.ns, self.profile, self.uid = cp, ns, profile, uid
        self.cron_created = 0.0

    def template(self, exit_after: str | None = "1s", exit_code: int = 0) -> dict:
        ann = {}
        if exit_after is not None:
            ann = {"hollow.kubelab.dev/exit-after": exit_after, "hollow.kubelab.dev/exit-code": str(exit_code)}
        return {"metadata": {"annotations": ann},
                "spec": {"schedulerName": self.profile, "nodeSelector": {"job-test": self.uid},
                         "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}

    def create_job(self, name: str, spec: dict) -> dict:
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": self.ns},
                "spec": spec}
        return api(self.cp, lambda c: c.create("batch/v1", "jobs", body, self.ns))

    def job(self, name: str) -> dict | None:
        async def get(c):
            try:
                return await c.get("batch/v1", "jobs", self.ns, name)
            except ApiError as e:
                if e.code == 404:
                    return None
                raise
        return api(self.cp, get)

    def pods(self, job_name: str) -> list[dict]:
        return api(self.cp, lambda c: c.list("v1", "pods", self.ns,
                                             label_selector=f"batch.kubernetes.io/job-name={job_name}"))["items"]

    def events(self, name: str) -> list[dict]:
        return api(self.cp, lambda c: c.list("v1", "events", self.ns,
                                             field_selector=f"involvedObject.name={name}"))["items"]

    def condition(self, name: str, ctype: str) -> dict | None:
        j = self.job(name) or {}
        for c in (j.get("status") or {}).get("conditions") or []:
            if c["type"] == ctype and c["status"] == "True":
                return c
        return None


@pytest.fixture(scope="module")
def lab(control_plane, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    uid = uuid.uuid4().hex[:5]
    ns, profile = f"jobs-{uid}", f"job-sched-{uid}"
    (tmp / "sched.yaml").write_text(f"apiVersion: kubescheduler.config.k8s.io/v1\n"
                                    f"kind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: {profile}\n")
    kc = str(control_plane.kubeconfig)
    api(control_plane, lambda c: c.create("v1", "namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": ns}}))
    lab = Lab(control_plane, ns, profile, uid)
    # the CronJob goes first so that its minute passes while the other tests run
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "every-minute", "namespace": ns},
          "spec": {"schedule": "* * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
                   "jobTemplate": {"metadata": {"labels": {"from": "cron"}},
                                   "spec": {"template": lab.template("1s")}}}}
    api(control_plane, lambda c: c.create("batch/v1", "cronjobs", cj, ns))
    lab.cron_created = time.time()
    procs = [spawn([str(BIN / "kubelab-controller-manager"), "--kubeconfig", kc,
                    "--controllers", "job,cronjob,ttl-after-finished,garbagecollector",
                    "--leader-elect-resource-name", f"kcm-{uid}", "--secure-port", "0"], tmp / "cm.log"),
             spawn([str(BIN / "kubelab-scheduler"), "--kubeconfig", kc, "--config", str(tmp / "sched.yaml"),
                    "--leader-elect=false", "--secure-port", str(free_port()), "--bind-address", "127.0.0.1"],
                   tmp / "sched.log"),
             spawn([str(BIN / "kubelab"), "hollow-nodes", "--kubeconfig", kc, "--count", "3", "--prefix", f"j{uid}",
                    "--pod-ready-delay", "200ms", "--node-labels", f"job-test={uid}"], tmp / "hollow.log")]
    try:
        yield lab
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        api(control_plane, lambda c: c.delete("v1", "namespaces", None, ns))
    for log in ("cm.log", "sched.log", "hollow.log"):
        assert "Traceback" not in (tmp / log).read_text(), (tmp / log).read_text()[-3000:]


def test_job_runs_completions_with_parallelism(lab, kubectl):
    lab.create_job("four", {"completions": 4, "parallelism": 2, "template": lab.template("1s")})
    out = kubectl("wait", "--for=condition=complete", "job/four", "-n", lab.ns, "--timeout=60s", timeout=70)
    assert "condition met" in out
    st = lab.job("four")["status"]
    assert st["succeeded"] == 4 and st.get("failed", 0) == 0 and st["active"] == 0
    assert st["startTime"] and st["completionTime"]
    types = [c["type"] for c in st["conditions"]]
    assert types == ["SuccessCriteriaMet", "Complete"]
    assert {c["reason"] for c in st["conditions"]} == {"CompletionsReached"}
    assert not (st.get("uncountedTerminatedPods") or {}).get("succeeded")
    pods = lab.pods("four")
    assert len(pods) == 4 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert not any(p["metadata"].get("finalizers") for p in pods), "tracking finalizers left on counted pods"
    assert all(p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == lab.job("four")["metadata"]["uid"]
               for p in pods)
    # never more than parallelism pods at once: the second two were created after the first two
    # had run their 1.2 s, so in a later second than both
    created = sorted(p["metadata"]["creationTimestamp"] for p in pods)
    assert created[2] > created[1], created
    reasons = [e["reason"] for e in lab.events("four")]
    assert reasons.count("SuccessfulCreate") == 4 and "Completed" in reasons


def test_failing_job_stops_after_backoff_limit(lab):
    t0 = time.monotonic()
    lab.create_job("fails", {"backoffLimit": 2, "template": lab.template("200ms", exit_code=1)})
    cond = wait(lambda: lab.condition("fails", "Failed"), 75, "job failed")
    took = time.monotonic() - t0
    assert cond["reason"] == "BackoffLimitExceeded" and cond["message"] == "Job has reached the specified backoff limit"
    st = lab.job("fails")["status"]
    assert st["failed"] == 3 and st.get("succeeded", 0) == 0 and st["active"] == 0
    assert lab.condition("fails", "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert "completionTime" not in st
    # the retries waited 10 s then 20 s
    assert took >= 29, took
    time.sleep(1)
    pods = lab.pods("fails")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)
    ev = {e["reason"]: e for e in lab.events("fails")}
    assert ev["BackoffLimitExceeded"]["type"] == "Warning"


def test_pod_failure_policy_fails_the_job_at_once(lab):
    lab.create_job("policy", {"backoffLimit": 6, "template": lab.template("200ms", exit_code=42),
                              "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                                  "containerName": "c", "operator": "In", "values": [42]}}]}})
    cond = wait(lambda: lab.condition("policy", "Failed"), 20, "job failed by its pod failure policy")
    pod = lab.pods("policy")[0]["metadata"]["name"]
    assert cond["reason"] == "PodFailurePolicy"
    assert cond["message"] == (f"Container c for pod {lab.ns}/{pod} failed with exit code 42 matching FailJob "
                               "rule at index 0")
    assert lab.job("policy")["status"]["failed"] == 1 and len(lab.pods("policy")) == 1


def test_indexed_job(lab):
    lab.create_job("idx", {"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                           "template": lab.template("500ms")})
    wait(lambda: lab.condition("idx", "Complete"), 45, "indexed job complete")
    st = lab.job("idx")["status"]
    assert st["completedIndexes"] == "0-2" and st["succeeded"] == 3
    pods = lab.pods("idx")
    assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == \
        ["0", "1", "2"]
    for p in pods:
        ix = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        assert p["spec"]["hostname"] == f"idx-{ix}" and p["metadata"]["name"].startswith(f"idx-{ix}-")
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def test_active_deadline_fails_the_job_and_deletes_its_pods(lab):
    lab.create_job("slow", {"parallelism": 2, "completions": 2, "activeDeadlineSeconds": 3,
                            "template": lab.template(None)})
    wait(lambda: (lab.job("slow").get("status") or {}).get("ready") == 2, 30, "two ready pods")
    cond = wait(lambda: lab.condition("slow", "Failed"), 30, "deadline exceeded")
    assert cond["reason"] == "DeadlineExceeded" and cond["message"] == "Job was active longer than specified deadline"
    st = lab.job("slow")["status"]
    assert st["failed"] == 2 and st["active"] == 0 and st.get("terminating", 0) == 0
    wait(lambda: not lab.pods("slow"), 20, "the active pods deleted")
    assert "DeadlineExceeded" in {e["reason"] for e in lab.events("slow")}


def test_suspended_job_starts_when_resumed(lab):
    lab.create_job("later", {"suspend": True, "template": lab.template("300ms")})
    cond = wait(lambda: lab.condition("later", "Suspended"), 20, "Suspended condition")
    assert cond["reason"] == "JobSuspended"
    st = lab.job("later")["status"]
    assert "startTime" not in st and not lab.pods("later")
    api(lab.cp, lambda c: c.patch("batch/v1", "jobs", lab.ns, "later", {"spec": {"suspend": False}}))
    wait(lambda: lab.condition("later", "Complete"), 30, "resumed job complete")
    st = lab.job("later")["status"]
    assert st["startTime"] and st["succeeded"] == 1
    assert [c["status"] for c in st["conditions"] if c["type"] == "Suspended"] == ["False"]
    reasons = {e["reason"] for e in lab.events("later")}
    assert {"Suspended", "Resumed", "Completed"} <= reasons


def test_ttl_after_finished_deletes_the_job(lab):
    lab.create_job("short", {"ttlSecondsAfterFinished": 0, "template": lab.template("300ms")})
    wait(lambda: lab.job("short") is None, 40, "job deleted after it finished")
    # Foreground deletion, as upstream: the garbage collector removed the Job's pods before the Job
    assert not lab.pods("short")


def test_cronjob_fires_on_schedule(lab, kubectl):
    def jobs():
        items = api(lab.cp, lambda c: c.list("batch/v1", "jobs", lab.ns, label_selector="from=cron"))["items"]
        return [j for j in items if j["metadata"]["name"].startswith("every-minute-")]
    first = wait(jobs, max(5.0, lab.cron_created + 70 - time.time()), "a job from the CronJob")[0]
    name = first["metadata"]["name"]
    minutes = int(name.rsplit("-", 1)[1])
    scheduled = dt.datetime.fromtimestamp(minutes * 60, dt.timezone.utc)
    assert lab.cron_created - 1 <= scheduled.timestamp() <= time.time()
    stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert dt.datetime.fromisoformat(stamp) == scheduled
    assert stamp.endswith(("+01:00", "+02:00")), stamp        # RFC 3339 in the CronJob's time zone
    ref = first["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "CronJob" and ref["name"] == "every-minute" and ref["controller"] is True
    cj = api(lab.cp, lambda c: c.get("batch/v1", "cronjobs", lab.ns, "every-minute"))
    last = wait(lambda: (api(lab.cp, lambda c: c.get("batch/v1", "cronjobs", lab.ns, "every-minute"))
                         .get("status") or {}).get("lastScheduleTime"), 10, "lastScheduleTime")
    assert dt.datetime.fromisoformat(last.replace("Z", "+00:00")) >= scheduled
    assert cj["metadata"]["uid"] == ref["uid"]
    # the Job finishes: it leaves .status.active and sets lastSuccessfulTime
    def cj_status():
        return api(lab.cp, lambda c: c.get("batch/v1", "cronjobs", lab.ns, "every-minute")).get("status") or {}
    st = wait(lambda: (lambda s: s if s.get("lastSuccessfulTime") else None)(cj_status()), 20, "lastSuccessfulTime")
    assert name not in [a["name"] for a in st.get("active") or []]
    assert {"SuccessfulCreate", "SawCompletedJob"} <= {e["reason"] for e in lab.events("every-minute")}
    # kubectl create job --from=cronjob/ is client-side and makes a Job the controller runs
    kubectl("create", "job", "manual", "--from=cronjob/every-minute", "-n", lab.ns)
    wait(lambda: lab.condition("manual", "Complete"), 40, "the manual job complete")
