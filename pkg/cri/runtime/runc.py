"""An asyncio wrapper of the runc command line, every call under one `--root` so that several
runtimes share a host without seeing each other's containers.

Failures raise RuncError, a kubelab.proc.CommandError whose message is runc's own error line
("runc start 3f2a…: container does not exist"), never its raw log output.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import psutil

from kubelab import proc


class RuncError(proc.CommandError):
    """runc failed; str() is one line naming the command and runc's message."""

    def __init__(self, args: Sequence[str], returncode: int | None, stdout: bytes, stderr: bytes,
                 reason: str = "", what: str = "", message: str = "") -> None:
        super().__init__(args, returncode, stdout, stderr, reason)
        self.message = message or runc_message(stderr) or runc_message(stdout) or self.reason
        self.what = what
        text = f"runc {what}: {self.message}" if what else f"runc: {self.message}"
        self.args = (text,)

    def __str__(self) -> str:
        return self.args[0]

    @property
    def not_found(self) -> bool:
        return "does not exist" in self.message or "not exist" in self.message

    @property
    def not_running(self) -> bool:
        m = self.message
        return "not running" in m or "process already finished" in m or "container not running" in m


class ExecResult(NamedTuple):
    stdout: bytes
    stderr: bytes
    exit_code: int


_TEXT_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runc_message(output: bytes) -> str:
    """runc's last error message from its log output (json or text format), or the last line."""
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    msgs = []
    for ln in lines:
        if ln.startswith("{"):
            try:
                entry = json.loads(ln)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and "msg" in entry:
                if entry.get("level") in ("error", "fatal", "panic"):
                    msgs.append(str(entry["msg"]))
                continue
        m = _TEXT_MSG.search(ln)
        if m and "level=" in ln:
            if re.search(r"level=(error|fatal|panic)", ln):
                msgs.append(m.group(1).encode().decode("unicode_escape", errors="replace"))
            continue
        msgs.append(ln)
    return msgs[-1] if msgs else ""


def signal_arg(sig: int | str) -> str:
    """A signal as runc kill takes it: 15, "15", "TERM" and "SIGTERM" all give "SIGTERM"."""
    if isinstance(sig, int):
        return signal.Signals(sig).name
    s = sig.strip().upper()
    if s.isdigit():
        return signal.Signals(int(s)).name
    if not s.startswith("SIG"):
        s = "SIG" + s
    signal.Signals[s]          # raises KeyError for an unknown name
    return s


class Runc:
    def __init__(self, binary: str | Path = "/usr/sbin/runc", root: Path = Path("/run/runc"),
                 tmp_dir: Path | None = None) -> None:
        self.binary = str(binary)
        self.root = Path(root)
        self.tmp_dir = tmp_dir       # exec process files; default: the system temp dir

    def _cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), "--log-format", "json", *args]

    async def _run(self, what: str, *args: str, input: bytes | None = None, timeout: float = 60.0) -> proc.Result:
        cmd = self._cmd(*args)
        try:
            res = await proc.run(cmd, input=input, timeout=timeout, check=False)
        except proc.CommandError as e:       # could not start, or timed out
            raise RuncError(cmd, e.returncode, e.stdout, e.stderr, e.reason, what=what, message=e.reason) from None
        if res.returncode != 0:
            raise RuncError(cmd, res.returncode, res.stdout, res.stderr, what=what)
        return res

    async def state(self, id: str) -> dict[str, Any] | None:
        """runc state as a dict (status: creating|created|running|paused|stopped), None if no such container."""
        try:
            res = await self._run(f"state {id}", "state", id)
        except RuncError as e:
            if e.not_found:
                return None
            raise
        return json.loads(res.stdout)

    async def start(self, id: str) -> None:
        await self._run(f"start {id}", "start", id)

    async def kill(self, id: str, sig: int | str = signal.SIGTERM, all: bool = False) -> None:
        """Send sig to the container's init process (all=True: to every process of its cgroup)."""
        args = ["kill"] + (["--all"] if all else []) + [id, signal_arg(sig)]
        await self._run(f"kill {id}", *args)

    async def delete(self, id: str, force: bool = False) -> None:
        """Delete the container; no error if it does not exist (idempotent)."""
        try:
            await self._run(f"delete {id}", "delete", *(["--force"] if force else []), id)
        except RuncError as e:
            if not e.not_found:
                raise

    async def list(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        res = await self._run("list", "list", "--format", "json")
        return json.loads(res.stdout or b"null") or []

    async def ps(self, id: str) -> list[int]:
        """Host pids of the container's processes."""
        res = await self._run(f"ps {id}", "ps", "--format", "json", id)
        return [int(p) for p in (json.loads(res.stdout or b"null") or [])]

    async def update(self, id: str, resources: dict[str, Any]) -> None:
        """runc update --resources - : resources is an OCI linux.resources object."""
        await self._run(f"update {id}", "update", "--resources", "-", id, input=json.dumps(resources).encode())

    async def exec(self, id: str, process_spec: dict[str, Any], timeout: float | None = None,
                   tty: bool = False) -> ExecResult:
        """Run process_spec in the container, wait, and return its output and exit code (ExecSync).

        On timeout the exec'd process, its process group and its descendants are SIGKILLed and a
        RuncError with timed_out True (returncode None) is raised. runc's own failures (no such
        container, executable not found) raise RuncError; the process's failures are its exit code.
        """
        process = dict(process_spec)
        process["terminal"] = bool(tty)
        with self.exec_call(id, process) as call:
            task = asyncio.ensure_future(proc.run(call.args, timeout=10 * 365 * 86400.0, check=False))
            try:
                res = await asyncio.wait_for(asyncio.shield(task), timeout) if timeout else await task
            except asyncio.TimeoutError:
                # kill the process while runc still waits for it (so runc reaps it), then runc
                await call.kill()
                try:
                    await asyncio.wait_for(task, 5)
                except (asyncio.TimeoutError, proc.CommandError):
                    pass
                raise RuncError(call.args, None, b"", b"", f"timed out after {timeout:g}s", what=f"exec {id}",
                                message=f"command timed out after {timeout:g}s") from None
            except proc.CommandError as e:
                raise RuncError(call.args, e.returncode, e.stdout, e.stderr, e.reason, what=f"exec {id}",
                                message=e.reason) from None
            except asyncio.CancelledError:
                kill_tree(call.pid())
                task.cancel()
                raise
            log = call.log()
            err = log_error(log)
            if res.returncode != 0 and err:
                raise RuncError(call.args, res.returncode, res.stdout, log, what=f"exec {id}", message=err)
            return ExecResult(res.stdout, res.stderr, res.returncode)

    @contextlib.contextmanager
    def exec_call(self, id: str, process: dict[str, Any], prefix: str = "runc-exec-") -> Iterator[ExecCall]:
        """Files and arguments for one `runc exec` of process (an OCI process object) in container id,
        in a private temp dir removed on leaving the block. Starting and waiting is the caller's."""
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmp_dir))
        try:
            pfile, pidfile, logfile = work / "process.json", work / "pid", work / "log.json"
            fd = os.open(pfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(process, f)
            args = [self.binary, "--root", str(self.root), "--log", str(logfile), "--log-format", "json",
                    "exec", "--process", str(pfile), "--pid-file", str(pidfile), id]
            yield ExecCall(args, pidfile, logfile)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class ExecCall(NamedTuple):
    """One `runc exec`: the command line, and the pid file and log file runc writes."""
    args: list[str]
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The exec'd process's host pid, once runc has written it."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def log(self) -> bytes:
        try:
            return self.log_file.read_bytes()
        except OSError:
            return b""

    def error(self) -> str:
        """runc's own error (exec failed: executable not found, container not running...) or ""."""
        return log_error(self.log())

    async def kill(self, wait: float = 1.0, exited: Callable[[], bool] | None = None) -> None:
        """SIGKILL the exec'd process tree once runc has written its pid: wait up to `wait` seconds
        for the pid file, or until exited() says runc is gone already."""
        for _ in range(max(1, round(wait / 0.02))):
            if exited is not None and exited():
                return
            pid = self.pid()
            if pid is not None:
                kill_tree(pid)
                return
            await asyncio.sleep(0.02)


def log_error(log: bytes) -> str:
    """runc's error message if its json log holds an error-level entry, else ""."""
    return runc_message(log) if _has_error(log) else ""


def _has_error(log: bytes) -> bool:
    for ln in log.decode(errors="replace").splitlines():
        try:
            entry = json.loads(ln)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            return True
    return False


def kill_tree(pid: int | None) -> None:
    """SIGKILL a process, its descendants and its process group (runc makes an exec'd process a
    session leader, so its group is its own)."""
    if pid is None:
        return
    try:
        p = psutil.Process(pid)
        victims = p.children(recursive=True) + [p]
    except psutil.Error:
        victims = []
    for v in victims:
        try:
            v.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
