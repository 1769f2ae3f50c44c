"""What this process may use of the machine (issue 15 item 2): CPUs and memory as the
container or systemd unit limits them, not as the host has them.

``os.cpu_count()`` counts the host's cores; a container limited to 2 CPUs on a 64-core
host would start 64 transcoding workers. The limits read here, the smallest winning:

- cgroup v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of the process's
  cgroup and of each of its ancestors;
- cgroup v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the ``cpu`` controller;
- the CPU affinity (``taskset``, ``cpuset``): ``os.sched_getaffinity``.

Memory: ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1), else the physical memory.
Readers take their roots as arguments so that tests give them fake trees. A shared
foundation: imports nothing of the app.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
#: cgroup v1 reports "no limit" as a huge number (a page-rounded LONG_MAX).
V1_UNLIMITED = 1 << 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def own_cgroups(proc_self_cgroup: Path = PROC_SELF_CGROUP) -> dict[str, str]:
    """Controller -> this process's cgroup path ('' key: the v2 unified hierarchy)."""
    groups: dict[str, str] = {}
    for line in (_read(proc_self_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def _ancestry(root: Path, relative: str) -> Iterator[Path]:
    """``root/relative`` then each parent up to ``root`` itself."""
    parts = [p for p in relative.split("/") if p and p != ".."]
    for depth in range(len(parts), -1, -1):
        yield root.joinpath(*parts[:depth])


def _v2_cpu_limit(directory: Path) -> float | None:
    raw = _read(directory / "cpu.max")
    if raw is None:
        return None
    fields = raw.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_cpu_limit(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota of this process's cgroups (in CPUs, maybe fractional); None when
    unlimited or unreadable."""
    groups = own_cgroups(proc_self_cgroup)
    limits: list[float] = []
    if "" in groups:
        limits += filter(None, (_v2_cpu_limit(d) for d in _ancestry(root, groups[""])))
    for controller in ("cpu", "cpu,cpuacct"):
        base = root / controller
        if base.is_dir():
            path = groups.get("cpu", "/")
            limits += filter(None, (_v1_cpu_limit(d) for d in _ancestry(base, path)))
    return min(limits) if limits else None


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def available_cpus(
    root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
    affinity: int | None = None,
) -> int:
    """Whole CPUs this process may use: the smallest of the cgroup quota (rounded up: a
    quota of 1.5 CPUs keeps two workers busy part of the time) and the affinity; at
    least 1."""
    cpus = affinity if affinity is not None else affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_self_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_memory_limit(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> int | None:
    """The memory limit of this process's cgroups in bytes; None when unlimited."""
    groups = own_cgroups(proc_self_cgroup)
    limits: list[int] = []
    if "" in groups:
        for directory in _ancestry(root, groups[""]):
            raw = _read(directory / "memory.max")
            if raw and raw.isdigit():
                limits.append(int(raw))
    base = root / "memory"
    if base.is_dir():
        for directory in _ancestry(base, groups.get("memory", "/")):
            raw = _read(directory / "memory.limit_in_bytes")
            if raw and raw.isdigit() and int(raw) < V1_UNLIMITED:
                limits.append(int(raw))
    return min(limits) if limits else None


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def available_memory(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """Bytes this process may use: the cgroup limit, else the physical memory."""
    limit = cgroup_memory_limit(root, proc_self_cgroup)
    physical = physical_memory()
    return min(limit, physical) if limit is not None else physical
