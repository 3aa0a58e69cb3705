"""Start, recognise and stop the lab's own processes, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process identified by pid *and* start time, so a recycled pid is never mistaken for ours."""

    pid: int
    start_ticks: int

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRef:
        return cls(int(data["pid"]), int(data["start_ticks"]))

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        ticks = start_ticks(pid)
        if ticks is None:
            raise ProcessLookupError(pid)
        return cls(pid, ticks)

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.start_ticks


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def spawn(argv: list[str], log: IO[bytes]) -> ProcessRef:
    """Start a long-running helper in its own session so a Ctrl-C of the caller leaves it to us."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    for _ in range(50):
        ticks = start_ticks(proc.pid)
        if ticks is not None:
            return ProcessRef(proc.pid, ticks)
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError(f"{argv[0]} exited immediately (exit code {proc.poll()})")


def reap() -> None:
    """Collect exited children so they do not linger as zombies in a long-lived caller."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def stop(ref: ProcessRef, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` and wait; escalate to SIGKILL after ``timeout``. Returns True if it was ours and alive."""
    if not ref.alive():
        return False
    try:
        os.kill(ref.pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not ref.alive():
            return True
        time.sleep(0.05)
    if ref.alive():
        os.kill(ref.pid, signal.SIGKILL)
        while ref.alive():
            reap()
            time.sleep(0.05)
    return True
