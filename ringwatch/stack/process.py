"""Starting, finding and stopping one server process that the stack owns.

A pid file alone is not proof of ownership (pids are reused), so the process must also carry the
stack's own marker in its command line: ``down`` never signals a process it did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ringwatch.stack.exceptions import PortInUseError


@dataclass(frozen=True)
class PortSpec:
    port: int
    purpose: str  # e.g. "Neo4j Bolt"
    setting: str  # the environment variable that moves it


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections left in TIME_WAIT by a server that just stopped must
        # not count as "in use"; only a socket that is still bound does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure_ports_free(ports: list[PortSpec]) -> None:
    for spec in ports:
        if not port_is_free(spec.port):
            raise PortInUseError(
                f"port {spec.port} ({spec.purpose}) is already in use by another process; "
                f"stop it or choose another port with {spec.setting}"
            )


class ManagedProcess:
    """One server: its pid file, its console log and the marker that identifies it."""

    def __init__(self, name: str, run_dir: Path, console_log: Path, marker: str) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.console_log = console_log
        self.marker = marker
        self._popen: subprocess.Popen[bytes] | None = None

    def _read_pid(self) -> int | None:
        try:
            return int(json.loads(self.pid_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _owns(self, pid: int) -> bool:
        if self._popen is not None and self._popen.pid == pid:
            return self._popen.poll() is None
        proc = Path(f"/proc/{pid}")
        for _ in range(10):
            try:
                if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                    return False  # exited, waiting to be reaped
                cmdline = proc.joinpath("cmdline").read_bytes()
            except (OSError, IndexError):
                return False
            if cmdline:
                return self.marker.encode() in cmdline
            # A live process shows an empty command line while it execs (the JVM launcher
            # re-executes itself at start): look again shortly.
            time.sleep(0.05)
        return False

    def pid(self) -> int | None:
        """The pid of the running server this stack started, else None (stale files removed)."""
        pid = self._read_pid()
        if pid is None:
            return None
        if self._owns(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as log:
            # A session of its own: the server outlives the CLI and ignores the terminal's Ctrl-C.
            self._popen = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self.pid_file.write_text(
            json.dumps({"pid": self._popen.pid, "started_at": time.time(), "cmd": cmd[:1]})
        )
        return self._popen.pid

    def exit_code(self) -> int | None:
        """The exit code if the process this object started has already exited."""
        if self._popen is None:
            return None
        return self._popen.poll()

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns False when nothing was running."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.2)
        if self._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _alive(self, pid: int) -> bool:
        if self._popen is not None and self._popen.pid == pid:
            return self._popen.poll() is None
        # Reap it if it happens to be our child (started earlier in this process).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return self._owns(pid)


def tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]
