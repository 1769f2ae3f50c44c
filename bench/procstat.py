"""Peak memory and CPU time of a process tree, from /proc (psutil is not installed).

The sampler walks the tree (the BFF and its transcoding workers) every ``interval``
seconds. Peak RSS: the kernel's high-water mark (``VmHWM``) of each process, summed
over every process seen (an upper bound of the tree's simultaneous peak). CPU seconds:
``utime + stime`` of each live process, plus ``cutime + cstime`` (children already reaped).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def _status_bytes(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _hwm_bytes(pid: int) -> int:
    return _status_bytes(pid, "VmHWM:")


def rss_bytes(root_pid: int) -> int:
    """The tree's resident memory now (sum of each process's ``VmRSS``)."""
    return sum(_status_bytes(pid, "VmRSS:") for pid in (root_pid, *children(root_pid)))


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                by_parent.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class TreeSampler:
    root_pid: int
    interval: float = 0.25
    hwm: dict[int, int] = field(default_factory=dict)
    cpu_ticks: dict[int, int] = field(default_factory=dict)
    #: the largest tree RSS seen at one sampling instant (a true simultaneous peak)
    peak_rss_now: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        now = 0
        for pid in (self.root_pid, *children(self.root_pid)):
            now += _status_bytes(pid, "VmRSS:")
            fields = _stat(pid)
            if fields is None:
                continue
            # fields[11:15] = utime stime cutime cstime (stat fields 14-17)
            ticks = sum(int(v) for v in fields[11:15])
            self.cpu_ticks[pid] = max(self.cpu_ticks.get(pid, 0), ticks)
            self.hwm[pid] = max(self.hwm.get(pid, 0), _hwm_bytes(pid))
        self.peak_rss_now = max(self.peak_rss_now, now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> TreeSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def peak_rss_bytes(self) -> int:
        return sum(self.hwm.values())

    @property
    def main_peak_rss_bytes(self) -> int:
        return self.hwm.get(self.root_pid, 0)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / TICKS

    def snapshot(self) -> tuple[int, float]:
        """(peak RSS bytes, CPU seconds) so far."""
        self.sample()
        return self.peak_rss_bytes, self.cpu_seconds
