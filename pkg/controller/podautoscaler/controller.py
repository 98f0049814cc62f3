"""The HorizontalPodAutoscaler controller (upstream's horizontal-pod-autoscaler-controller,
autoscaling/v2): every --horizontal-pod-autoscaler-sync-period (15 s) each HPA reads its target's
scale subresource, computes the replicas its Resource and ContainerResource metrics (CPU and memory,
Utilization or AverageValue targets; 80% CPU when it names none) ask for from the resource metrics
API (metrics.k8s.io/v1beta1 PodMetrics, which the apiserver serves once kubelets report), applies
the scaleUp/scaleDown behavior (stabilization windows and policies, `replicas.py`) and min/max, and
writes the new scale, status (currentMetrics, currentReplicas, desiredReplicas, lastScaleTime) and
upstream's conditions (AbleToScale, ScalingActive, ScalingLimited) and events (SuccessfulRescale,
FailedGetScale, FailedGetResourceMetric, FailedComputeMetricsReplicas).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

from kubelab.api.quota import render, to_units
from kubelab.api.selectors import SelectorError, parse_label_selector
from kubelab.api.timefmt import now_rfc3339
from kubelab.client.discovery import Discovery
from kubelab.client.events import EventRecorder
from kubelab.client.informer import NAMESPACE_INDEX, DeletedFinalStateUnknown, SharedInformerFactory
from kubelab.client.rest import ApiError, Client, is_conflict, is_not_found
from kubelab.client.workqueue import WorkQueue, run_workers

from . import replicas as rc

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAME = "horizontal-pod-autoscaler-controller"
API = "autoscaling/v2"
DEFAULT_METRICS = [{"type": "Resource", "resource": {"name": "cpu",
                                                     "target": {"type": "Utilization", "averageUtilization": 80}}}]


def _key(obj: Any) -> str:
    o = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
    return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"


def set_condition(status: Obj, ctype: str, st: str, reason: str, message: str, now: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)
    when = old["lastTransitionTime"] if old and old.get("status") == st and old.get("lastTransitionTime") else now
    conds.append({"type": ctype, "status": st, "lastTransitionTime": when, "reason": reason, "message": message})
    order = {"AbleToScale": 0, "ScalingActive": 1, "ScalingLimited": 2}
    status["conditions"] = sorted(conds, key=lambda c: order.get(c["type"], 9))


class HPAController:
    def __init__(self, client: Client, factory: SharedInformerFactory, recorder: EventRecorder | None = None, *,
                 sync_period: float = 15.0) -> None:
        self.client = client
        self.recorder = recorder
        self.sync_period = sync_period
        self.hpas = factory.informer(API, "horizontalpodautoscalers")
        self.pods = factory.informer("v1", "pods")
        self.discovery = Discovery(client)
        self.queue = WorkQueue(name="horizontalpodautoscaler")
        self.recommendations: dict[str, list[tuple[float, int]]] = {}
        self.scale_ups: dict[str, list[tuple[float, int]]] = {}
        self.scale_downs: dict[str, list[tuple[float, int]]] = {}

    def _event(self, hpa: Obj, etype: str, reason: str, msg: str) -> None:
        if self.recorder is not None:
            self.recorder.event(hpa, etype, reason, msg)

    async def _scale_resource(self, ref: Obj):
        r = self.discovery.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            await self.discovery.refresh()
            r = self.discovery.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if r is None:
            raise ApiError(404, "NotFound", f"no matches for kind \"{ref.get('kind')}\" in group "
                                            f"\"{ref.get('apiVersion', '').rpartition('/')[0]}\"")
        return r

    async def _pod_metrics(self, ns: str, selector: str, resource: str, container: str | None) -> dict[str, int]:
        try:
            doc = await self.client.request("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
                                            params={"labelSelector": selector or None})
        except ApiError as e:
            raise rc.MetricsError(f"unable to get metrics for resource {resource}: unable to fetch metrics from "
                                  f"resource metrics API: {e}") from None
        out = {}
        for item in (doc or {}).get("items") or []:
            total = 0
            for c in item.get("containers") or []:
                if container is None or c.get("name") == container:
                    total += to_units(resource, (c.get("usage") or {}).get(resource, 0))
            out[item["metadata"]["name"]] = total
        if not out:
            raise rc.MetricsError(f"unable to get metrics for resource {resource}: no metrics returned from "
                                  f"resource metrics API")
        return out

    async def _metric_replicas(self, hpa: Obj, metric: Obj, current: int, selector: str, pods: list[Obj]
                               ) -> tuple[int, Obj, str]:
        t = metric.get("type")
        if t not in ("Resource", "ContainerResource"):
            raise rc.MetricsError(f"unsupported metric source type {t!r} (kubelab serves resource metrics only)")
        src = metric.get("resource" if t == "Resource" else "containerResource") or {}
        name = src.get("name", "")
        container = src.get("container") if t == "ContainerResource" else None
        target = src.get("target") or {}
        ms = await self._pod_metrics(hpa["metadata"]["namespace"], selector, name, container)
        if target.get("type") == "Utilization":
            util_t = int(target.get("averageUtilization") or 0)
            n, util, raw = rc.resource_replicas(current, pods, ms, name, target_utilization=util_t, container=container)
            cur = {"averageUtilization": util, "averageValue": render(name, raw)}
            label = f"{name} resource utilization (percentage of request)"
        else:
            avg_t = to_units(name, target.get("averageValue", "0"))
            n, _, raw = rc.resource_replicas(current, pods, ms, name, target_average=max(1, avg_t), container=container)
            cur = {"averageValue": render(name, raw)}
            label = f"{name} resource"
        entry = {"type": t, ("resource" if t == "Resource" else "containerResource"):
                 {"name": name, **({"container": container} if container else {}), "current": cur}}
        return n, entry, label

    async def sync(self, key: str) -> float | None:
        cached = self.hpas.get(key)
        if cached is None:
            for d in (self.recommendations, self.scale_ups, self.scale_downs):
                d.pop(key, None)
            return None
        hpa = copy.deepcopy(cached)
        ns = hpa["metadata"]["namespace"]
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        now_text, now = now_rfc3339(), time.time()
        status: Obj = copy.deepcopy(hpa.get("status") or {})
        status["observedGeneration"] = hpa["metadata"].get("generation", 1)
        try:
            r = await self._scale_resource(ref)
            scale = await self.client.get(r.api_version, r.resource, ns, ref.get("name"), subresource="scale")
        except ApiError as e:
            msg = f"the HPA controller was unable to get the target's current scale: {e}"
            set_condition(status, "AbleToScale", "False", "FailedGetScale", msg, now_text)
            self._event(hpa, "Warning", "FailedGetScale", str(e))
            await self._write(hpa, status)
            return self.sync_period
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        selector = (scale.get("status") or {}).get("selector") or ""
        min_r = int(spec.get("minReplicas") or 1)
        max_r = int(spec.get("maxReplicas") or 1)
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now_text)
        status["currentReplicas"] = current
        desired, reason = current, ""
        if current == 0 and min_r != 0:
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", now_text)
            desired = 0
        elif current > max_r:
            desired, reason = max_r, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_r:
            desired, reason = min_r, "Current number of replicas below Spec.MinReplicas"
        else:
            try:
                sel = parse_label_selector(selector)
            except SelectorError as e:
                sel = None
                err = f"couldn't convert selector into a corresponding internal selector object: {e}"
            pods = [p for p in self.pods.by_index(NAMESPACE_INDEX, ns)
                    if sel is not None and sel.matches(p["metadata"].get("labels") or {})]
            best, label, metrics_out, errors = -1, "", [], []
            for metric in spec.get("metrics") or DEFAULT_METRICS:
                try:
                    if sel is None:
                        raise rc.MetricsError(err)
                    n, entry, what = await self._metric_replicas(hpa, metric, current, selector, pods)
                except rc.MetricsError as e:
                    errors.append(str(e))
                    continue
                metrics_out.append(entry)
                if n > best:
                    best, label = n, what
            if best < 0:
                msg = f"the HPA was unable to compute the replica count: {errors[0]}"
                set_condition(status, "ScalingActive", "False", "FailedGetResourceMetric", msg, now_text)
                self._event(hpa, "Warning", "FailedGetResourceMetric", errors[0])
                self._event(hpa, "Warning", "FailedComputeMetricsReplicas",
                            f"invalid metrics ({len(errors)} invalid out of {len(errors)}), first error is: "
                            f"{errors[0]}")
                status["desiredReplicas"] = current
                await self._write(hpa, status)
                return self.sync_period
            status["currentMetrics"] = metrics_out
            set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                          f"the HPA was able to successfully calculate a replica count from {label}", now_text)
            up, down = rc.behavior(hpa)
            stabilized, self.recommendations[key] = rc.stabilize(
                current, best, self.recommendations.get(key, []), now,
                int(up.get("stabilizationWindowSeconds") or 0), int(down.get("stabilizationWindowSeconds") or 0))
            desired = stabilized
            if desired > current:
                desired = rc.scale_limit(current, desired, up, self.scale_ups.get(key, []), now, True)
            elif desired < current:
                desired = rc.scale_limit(current, desired, down, self.scale_downs.get(key, []), now, False)
            desired, lim_reason, lim_msg = rc.within_bounds(desired, min_r, max_r)
            set_condition(status, "ScalingLimited", "True" if lim_reason != "DesiredWithinRange" else "False",
                          lim_reason, lim_msg, now_text)
            reason = f"{label} above target" if desired > current else "All metrics below target"
            if desired == current and stabilized != best:
                set_condition(status, "AbleToScale", "True", "ScaleDownStabilized",
                              "recent recommendations were higher than current one, applying the highest recent "
                              "recommendation", now_text)
            elif desired == current:
                set_condition(status, "AbleToScale", "True", "ReadyForNewScale",
                              "recommended size matches current size", now_text)
        status["desiredReplicas"] = desired
        if desired != current:
            scale = copy.deepcopy(scale)
            scale["spec"]["replicas"] = desired
            try:
                await self.client.update(r.api_version, r.resource, scale, ns, subresource="scale")
            except ApiError as e:
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {e}", now_text)
                self._event(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {reason}; error: {e}")
                await self._write(hpa, status)
                return self.sync_period
            (self.scale_ups if desired > current else self.scale_downs).setdefault(key, []).append(
                (now, abs(desired - current)))
            self._event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}", now_text)
            status["lastScaleTime"] = now_text
            status["currentReplicas"] = current
        await self._write(hpa, status)
        return self.sync_period

    async def _write(self, hpa: Obj, status: Obj) -> None:
        if status == (hpa.get("status") or {}):
            return
        try:
            await self.client.update_status(API, "horizontalpodautoscalers", dict(hpa, status=status),
                                            hpa["metadata"]["namespace"])
        except ApiError as e:
            if is_conflict(e):
                raise RuntimeError(f"hpa {_key(hpa)} changed meanwhile; retrying") from e
            if not is_not_found(e):
                raise

    async def run(self, workers: int = 5) -> None:
        add = lambda *objs: self.queue.add(_key(objs[-1]))     # noqa: E731
        self.hpas.add_event_handler(add, add, add)
        for inf in (self.hpas, self.pods):
            if not await inf.wait_for_sync():
                return
        await run_workers(self.queue, self.sync, workers, log)
