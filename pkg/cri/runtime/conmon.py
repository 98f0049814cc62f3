"""Containers are created through conmon (the Debian package, 2.1): conmon runs `runc create`,
holds the container's stdio and writes it to the log path in the CRI format, waits for the
container's init process and records its exit code, OOM kills and exit time.

What conmon leaves on disk, and what this module reads back:
  <exits_dir>/<id>          exit code of the container's init (128+N when killed by signal N);
                            its mtime is the finish time (conmon writes it atomically)
  <persist_dir>/exit        the same code; <persist_dir>/oom exists when the cgroup saw an OOM kill
  <persist_dir>/conmon.pid  conmon's own pid (from --conmon-pidfile)
  <bundle>/ctl, winsz       conmon's control fifos: "2 0 0\\n" on ctl reopens the log (ReopenContainerLog),
                            "1 H W\\n" resizes the tty
  <bundle>/attach           the attach socket (SOCK_SEQPACKET; --full-attach: no symlink dir needed)

Attach (the streaming server's): `--stdin` (and `--leave-stdin-open` unless the kubelet asked for
stdin_once) at create; a client connects to <bundle>/attach (through /proc/self/fd/<dirfd>/attach,
as conmon binds it, when the path is longer than a sockaddr_un holds), sends stdin bytes as they
come (conmon writes them to the container's stdin; when the client shuts its side down conmon
closes that stdin unless told to leave it open) and reads packets whose first byte names the pipe
(ATTACH_PIPE_STDOUT 2, ATTACH_PIPE_STDERR 3; with a terminal everything is stdout); a terminal is
resized with "1 H W\n" on the ctl fifo (resize_terminal).
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import signal
import time
from pathlib import Path

from kubelab import proc
from kubelab.cri.runtime.runc import Runc, runc_message

REOPEN_LOGS_EVENT = 2
WIN_RESIZE_EVENT = 1
ATTACH_PIPE_STDOUT = 2      # conmon's stdpipe_t: NO_PIPE, STDIN_PIPE, STDOUT_PIPE, STDERR_PIPE
ATTACH_PIPE_STDERR = 3


class ConmonError(RuntimeError):
    """conmon could not create the container; str() is one line with the runtime's reason."""


class Conmon:
    def __init__(self, binary: str | Path, runc: Runc, exits_dir: Path, log_level: str = "info") -> None:
        self.binary = str(binary)
        self.runc = runc
        self.exits_dir = Path(exits_dir)
        self.log_level = log_level

    async def create(self, id: str, bundle: Path, log_path: str, persist_dir: Path, stdin: bool = False,
                     tty: bool = False, timeout: float = 60.0, log_size_max: int | None = None,
                     name: str | None = None, stdin_once: bool = False) -> int:
        """Create the container (runc create, under conmon) and return the host pid of its init process.

        The container is left in runc's "created" state: `runc start` runs it. On failure the
        half-made container is deleted and ConmonError raised with runc's message.
        """
        bundle, persist_dir = Path(bundle), Path(persist_dir)
        self.exits_dir.mkdir(parents=True, exist_ok=True)
        persist_dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.exits_dir / id, persist_dir / "exit", persist_dir / "oom"):
            stale.unlink(missing_ok=True)
        args = [self.binary, "--api-version", "--cid", id, "--cuuid", id, "--name", name or id,
                "--runtime", self.runc.binary, "--bundle", str(bundle),
                "--container-pidfile", str(bundle / "pidfile"), "--conmon-pidfile", str(persist_dir / "conmon.pid"),
                "--log-path", f"k8s-file:{log_path}", "--exit-dir", str(self.exits_dir),
                "--persist-dir", str(persist_dir), "--socket-dir-path", str(bundle), "--full-attach",
                "--syslog", "--log-level", self.log_level, "--runtime-arg", f"--root={self.runc.root}"]
        if log_size_max:
            args += ["--log-size-max", str(log_size_max)]
        if stdin:
            args += ["--stdin"] + ([] if stdin_once else ["--leave-stdin-open"])
        if tty:
            args.append("--terminal")
        env = {k: v for k, v in os.environ.items() if not k.startswith("_OCI_")}
        r, w = os.pipe()
        env["_OCI_SYNCPIPE"] = str(w)
        deadline = time.monotonic() + timeout
        try:
            try:
                # conmon also writes an "oom" file into its working directory
                await proc.run(args, env=env, timeout=timeout, pass_fds=(w,), cwd=str(persist_dir))
            finally:
                os.close(w)
            line = await _read_line(r, max(0.1, deadline - time.monotonic()))
        except BaseException as e:
            os.close(r)
            await self._abandon(id, persist_dir)
            if isinstance(e, proc.CommandError):
                raise ConmonError(f"conmon failed to create container {id}: {_conmon_reason(e)}") from None
            if isinstance(e, asyncio.TimeoutError):
                raise ConmonError(f"conmon did not create container {id} within {timeout:g}s") from None
            raise
        os.close(r)
        pid, message = _parse_sync(line)
        if pid is None or pid <= 0:
            await self._abandon(id, persist_dir)
            reason = runc_message(message.encode()) if message else ""
            if not reason:
                reason = "conmon exited without reporting the container's pid" if not line else "runtime create failed"
            raise ConmonError(f"failed to create container {id}: {reason}")
        return pid

    async def _abandon(self, id: str, persist_dir: Path) -> None:
        """Undo a create that failed or timed out: stop conmon, delete what runc made."""
        pid = conmon_pid(persist_dir)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            await self.runc.delete(id, force=True)
        except proc.CommandError:
            pass
        (self.exits_dir / id).unlink(missing_ok=True)

    def exited(self) -> set[str]:
        """The ids of the containers whose exit conmon has recorded (one directory listing)."""
        try:
            return set(os.listdir(self.exits_dir))
        except FileNotFoundError:
            return set()

    def read_exit(self, id: str) -> tuple[int, int] | None:
        """(exit code, finish time in ns) once conmon saw the container's init exit, else None."""
        path = self.exits_dir / id
        try:
            text = path.read_text().strip()
            st = path.stat()
        except FileNotFoundError:
            return None
        try:
            code = int(text)
        except ValueError:
            return None
        return code, st.st_mtime_ns

    @staticmethod
    def oom_killed(persist_dir: Path) -> bool:
        return (Path(persist_dir) / "oom").exists()

    def forget(self, id: str) -> None:
        """Remove what conmon left for a container outside its bundle and persist dir (the exit file)."""
        (self.exits_dir / id).unlink(missing_ok=True)

    async def reopen_log(self, id: str, bundle: Path | None = None, log_path: str | None = None,
                         timeout: float = 2.0) -> None:
        """Ask the container's conmon to reopen its log file (after the kubelet rotated it), and wait
        until the file exists again. Raises ConmonError if conmon is gone (container not running)."""
        if bundle is None:
            st = await self.runc.state(id)
            if st is None:
                raise ConmonError(f"container {id} does not exist")
            bundle = Path(st["bundle"])
        if log_path is None:
            log_path = _log_path_of(Path(bundle))
        _send_ctl(id, Path(bundle), REOPEN_LOGS_EVENT, 0, 0, "ask conmon to reopen the log")
        if log_path:
            end = time.monotonic() + timeout
            while not os.path.exists(log_path):
                if time.monotonic() > end:
                    raise ConmonError(f"conmon of container {id} did not reopen its log {log_path}")
                await asyncio.sleep(0.01)


def attach_socket_path(bundle: Path) -> Path:
    """Where the conmon of a container created with this bundle listens for attach clients."""
    return Path(bundle) / "attach"


def resize_terminal(id: str, bundle: Path, height: int, width: int) -> None:
    """Ask the container's conmon to resize its terminal; ConmonError if conmon is gone."""
    _send_ctl(id, Path(bundle), WIN_RESIZE_EVENT, max(0, height), max(0, width), "resize the terminal")


def _send_ctl(id: str, bundle: Path, event: int, height: int, width: int, doing: str) -> None:
    """Write one control message ("<event> <height> <width>") to the ctl FIFO of the container's
    conmon; ConmonError if conmon is gone or the write fails (doing names the request)."""
    try:
        fd = os.open(bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            raise ConmonError(f"container {id} is not running: its conmon is gone") from None
        raise ConmonError(f"cannot reach conmon of container {id}: {e.strerror}") from None
    try:
        os.write(fd, f"{event} {height} {width}\n".encode())
    except OSError as e:
        raise ConmonError(f"cannot {doing} of container {id}: {e.strerror}") from None
    finally:
        os.close(fd)


def conmon_pid(persist_dir: Path) -> int | None:
    """The pid of the conmon monitoring the container whose persist dir this is, if it still runs."""
    try:
        pid = int((Path(persist_dir) / "conmon.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"conmon" in cmdline.split(b"\0", 1)[0] else None


def _log_path_of(bundle: Path) -> str | None:
    """The log path the running conmon of this bundle writes (read from its command line)."""
    for persist in (bundle.parent / "persist",):
        pid = conmon_pid(persist)
        if pid:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for i, a in enumerate(argv[:-1]):
                if a in (b"-l", b"--log-path"):
                    v = argv[i + 1].decode()
                    return v.split(":", 1)[1] if v.startswith("k8s-file:") else v
    return None


async def _read_line(fd: int, timeout: float) -> bytes:
    """One newline-terminated message from conmon's sync pipe (b"" if it closed without one)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            if not done.done():
                done.set_exception(e)
            return
        buf.extend(chunk)
        if (not chunk or b"\n" in buf) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(fd)
    return bytes(buf).split(b"\n", 1)[0]


def _parse_sync(line: bytes) -> tuple[int | None, str]:
    """conmon's sync message: {"pid": N} or {"data": N, "message": "..."} (N < 0: failure)."""
    if not line:
        return None, ""
    text = line.decode(errors="replace")
    try:
        msg = json.loads(text)
    except ValueError:
        # older conmons do not escape every control character: fall back to a regex
        m = re.search(r'"(?:pid|data|exit_code)"\s*:\s*(-?\d+)', text)
        mm = re.search(r'"message"\s*:\s*"(.*)"\s*}', text, re.S)
        return (int(m.group(1)) if m else None), (mm.group(1) if mm else "")
    for key in ("data", "pid", "exit_code"):
        if key in msg:
            return int(msg[key]), str(msg.get("message", ""))
    return None, str(msg.get("message", ""))


def _conmon_reason(e: proc.CommandError) -> str:
    lines = [ln for ln in (e.stderr or b"").decode(errors="replace").splitlines()
             if ln.strip() and "oom_score_adj" not in ln]
    return lines[-1].strip() if lines else e.reason
