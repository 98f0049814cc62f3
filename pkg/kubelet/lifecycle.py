"""Container lifecycle hooks (upstream's lifecycle.handlerRunner): postStart after a container
starts and preStop before it is stopped, each an exec command (through CRI ExecSync), an httpGet
(built and sent as the prober's, with User-Agent kube-lifecycle/<version>) or a sleep. The result is
None on success, else upstream's message for the FailedPostStartHook / FailedPreStopHook events."""
from __future__ import annotations

import asyncio
from typing import Any

from .expansion import expand_static
from .prober.execprobe import ExecSync, probe_exec
from .prober.httpprobe import build_request, probe_http
from .prober.results import Outcome, ProbeError

Obj = dict[str, Any]


async def run_hook(handler: Obj, container: Obj, container_id: str, pod_ip: str, exec_sync: ExecSync,
                   timeout: float) -> str | None:
    try:
        if handler.get("exec"):
            cmd = expand_static(handler["exec"].get("command") or [], container.get("env"))
            run = await probe_exec(exec_sync, container_id, cmd, timeout)
            if run.outcome not in (Outcome.SUCCESS, Outcome.WARNING):
                return f"Exec lifecycle hook ({cmd}) for Container \"{container['name']}\" failed - " \
                       f"error: {run.output.strip() or 'command exited with a non-zero code'}"
        elif handler.get("httpGet"):
            req = build_request(handler["httpGet"], container, pod_ip, purpose="lifecycle")
            run = await probe_http(req, timeout)
            if run.outcome not in (Outcome.SUCCESS, Outcome.WARNING):
                return f"HTTP lifecycle hook ({handler['httpGet'].get('path', '')}) for Container " \
                       f"\"{container['name']}\" failed - error: {run.output.strip()}"
        elif handler.get("sleep"):
            await asyncio.sleep(min(timeout, float(handler["sleep"].get("seconds") or 0)))
        return None
    except (ProbeError, asyncio.TimeoutError) as e:
        return f"lifecycle hook for Container \"{container['name']}\" failed - error: {e or 'timed out'}"
