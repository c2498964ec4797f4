"""Which process is this, and is a recorded process still alive? (host, pid, start time), so that a
pid reused by a later process is not taken for the one that was recorded."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import cache


@cache
def _boot_time() -> float | None:
    """Boot time in seconds since the epoch (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def start_time(pid: int) -> float | None:
    """Start of process ``pid`` in seconds since the epoch (Linux), or None if unknown or gone."""
    boot = _boot_time()
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    if boot is None:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields count from the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def pid_exists(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (perhaps as another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class ProcessId:
    """A process on a host; ``started`` (s since the epoch, None if unknown) tells a reused pid apart:
    the process started then (``exact``) or at the latest then (not ``exact``, e.g. known from an event
    it wrote)."""

    host: str
    pid: int
    started: float | None = None
    exact: bool = True

    @classmethod
    def current(cls) -> ProcessId:
        return cls(socket.gethostname(), os.getpid(), start_time(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        """The inverse of :meth:`text`; None for anything else."""
        try:
            host, pid, started = text.rsplit(" ", 2)
            return cls(host, int(pid), None if started == "-" else float(started))
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return f"{self.host} {self.pid} {'-' if self.started is None else f'{self.started:.2f}'}"

    def alive(self) -> bool | None:
        """True if the process runs, False if it is gone (or its pid now belongs to a later process),
        None when this host cannot tell (another host)."""
        if self.host != socket.gethostname():
            return None
        if not pid_exists(self.pid):
            return False
        if self.started is None:
            return True
        now = start_time(self.pid)
        if now is None:
            return True
        # /proc's start time has clock-tick resolution: allow a second of slack
        return abs(now - self.started) < 1.0 if self.exact else now < self.started + 1.0

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"



def exit_with(pid: int, interval: float = 0.5) -> None:
    """End this process (exit code 1) soon after process ``pid`` is gone: worker processes must not
    outlive a killed run. (The kernel's parent-death signal does not serve: a forkserver's workers
    are the server's children, and the server lives as long as they do.) Polls from a daemon thread."""
    import threading

    def watch() -> None:
        while pid_exists(pid):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()
