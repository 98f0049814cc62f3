"""exec probes, as upstream's pkg/probe/exec: the command runs in the container through the
runtime's ExecSync with the probe's timeout; exit status 0 is success, any other a failure whose
output (stdout then stderr, at most 10 KiB) is quoted in the event; a timeout is a failure with
the message ``command "<cmd>" timed out`` (the ExecProbeTimeout behaviour, on since 1.20)."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from .results import Outcome, ProbeError, ProbeRun

ExecSync = Callable[[str, list[str], float], Awaitable[tuple[int, bytes, bytes]]]

MAX_OUTPUT = 10 * 1024


async def probe_exec(exec_sync: ExecSync, container_id: str, command: list[str], timeout: float) -> ProbeRun:
    """Run ``command`` in ``container_id``; ProbeError when the runtime could not run it."""
    try:
        code, stdout, stderr = await exec_sync(container_id, list(command), timeout)
    except asyncio.TimeoutError:
        return ProbeRun(Outcome.FAILURE, f'command "{" ".join(command)}" timed out')
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - any runtime error is the probe's "errored" case
        raise ProbeError(str(e) or type(e).__name__) from e
    output = ((stdout or b"") + (stderr or b""))[:MAX_OUTPUT].decode(errors="replace")
    return ProbeRun(Outcome.SUCCESS if code == 0 else Outcome.FAILURE, output)
