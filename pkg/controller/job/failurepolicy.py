"""podFailurePolicy matching, as upstream's pod_failure_policy.go: the first rule that matches a
failed pod decides whether the Job fails at once (FailJob, with upstream's message), the failure
is ignored (Ignore: not counted against backoffLimit) or counted (Count, FailIndex). A rule matches
on a terminated container with a non-zero exit code In/NotIn its values (containers first, then
init containers), or on a pod condition with the given type and status (status defaults to True)."""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _exit_code_match(status: Obj, req: Obj) -> Obj | None:
    values = set(req.get("values") or [])
    op = req.get("operator")
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            term = (cs.get("state") or {}).get("terminated")
            if term is None:
                continue
            if req.get("containerName") and req["containerName"] != cs.get("name"):
                continue
            code = int(term.get("exitCode") or 0)
            if code == 0:
                continue
            if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                return cs
    return None


def _condition_match(status: Obj, patterns: list[Obj]) -> Obj | None:
    for cond in status.get("conditions") or []:
        for pat in patterns:
            if cond.get("type") == pat.get("type") and cond.get("status") == (pat.get("status") or "True"):
                return cond
    return None


def match(policy: Obj | None, pod: Obj) -> tuple[str | None, bool, str | None]:
    """(job failure message for FailJob, whether the failure counts, the matched action)."""
    if not policy:
        return None, True, None
    status = pod.get("status") or {}
    m = pod.get("metadata") or {}
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            cs = _exit_code_match(status, rule["onExitCodes"])
            if cs is None:
                continue
            what = (f"Container {cs.get('name')} for pod {m.get('namespace')}/{m.get('name')} failed with exit code "
                    f"{cs['state']['terminated'].get('exitCode')} matching {action} rule at index {index}")
        elif rule.get("onPodConditions") is not None:
            cond = _condition_match(status, rule["onPodConditions"])
            if cond is None:
                continue
            what = (f"Pod {m.get('namespace')}/{m.get('name')} has condition {cond.get('type')} matching {action} "
                    f"rule at index {index}")
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action in ("Count", "FailIndex"):
            return None, True, action
        if action == "FailJob":
            return what, True, action
    return None, True, None
