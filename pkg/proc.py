"""The one way kubelab runs a short-lived command from asyncio code: with a timeout, captured
output, and an error that says which command failed and what it printed.

Long-running daemons (etcd, the apiserver, conmon) are started elsewhere; this is for commands that
finish: runc, CNI plugins, iptables-restore, mount helpers, apt-get download.
"""
from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import Mapping, Sequence


class CommandError(Exception):
    """A command exited non-zero, timed out or could not be started."""

    def __init__(self, args: Sequence[str], returncode: int | None, stdout: bytes, stderr: bytes,
                 reason: str = "") -> None:
        self.cmd = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.reason = reason or f"exit status {returncode}"
        detail = (stderr or stdout).decode(errors="replace").strip().splitlines()
        tail = detail[-1] if detail else ""
        super().__init__(f"{os.path.basename(self.cmd[0])} {' '.join(self.cmd[1:3])}: {self.reason}"
                         + (f": {tail}" if tail else ""))

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


async def run(args: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None,
              timeout: float = 60.0, check: bool = True, cwd: str | None = None,
              pass_fds: Sequence[int] = ()) -> Result:
    """Run args to completion. On timeout the process group is killed and CommandError raised
    (returncode None); with check, a non-zero exit raises CommandError carrying stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
            pass_fds=tuple(pass_fds))
    except OSError as e:
        raise CommandError(args, -1, b"", b"", reason=e.strerror or str(e)) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise CommandError(args, None, b"", b"", reason=f"timed out after {timeout:g}s") from None
    res = Result(proc.returncode or 0, out, err)
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, out, err)
    return res
