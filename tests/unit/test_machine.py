"""CPUs and memory as the container limits them (issue 15 item 2): cgroup v2 and v1 trees
written in tmp dirs, the reader given their root."""

from __future__ import annotations

from pathlib import Path

import pytest

from bff.machine import available_cpus, available_memory, cgroup_cpu_limit
from bff.settings import Settings


def cgroup_v2(root: Path, own: str, files: dict[str, dict[str, str]]) -> Path:
    """A unified hierarchy: ``files`` maps a cgroup path ('' = root) to its files."""
    proc = root / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    for path, contents in files.items():
        directory = root / "fs" / path.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in contents.items():
            (directory / name).write_text(value + "\n")
    return proc


def test_cgroup_v2_quota_of_the_process_group_limits_the_workers(tmp_path: Path) -> None:
    proc = cgroup_v2(tmp_path, "/docker/abc", {"docker/abc": {"cpu.max": "200000 100000"}})
    assert cgroup_cpu_limit(tmp_path / "fs", proc) == 2.0
    # 64 cores by affinity, 2 by quota: 2 workers, not 64 (os.cpu_count() would say 64).
    assert available_cpus(tmp_path / "fs", proc, affinity=64) == 2


def test_a_fractional_quota_rounds_up_and_the_smallest_ancestor_wins(tmp_path: Path) -> None:
    proc = cgroup_v2(
        tmp_path,
        "/kubepods/pod1/ctr",
        {
            "kubepods": {"cpu.max": "max 100000"},
            "kubepods/pod1": {"cpu.max": "150000 100000"},  # 1.5 CPUs for the pod
            "kubepods/pod1/ctr": {"cpu.max": "400000 100000"},
        },
    )
    assert cgroup_cpu_limit(tmp_path / "fs", proc) == 1.5
    assert available_cpus(tmp_path / "fs", proc, affinity=8) == 2


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    proc = cgroup_v2(tmp_path, "/user.slice", {"user.slice": {"cpu.max": "max 100000"}})
    assert cgroup_cpu_limit(tmp_path / "fs", proc) is None
    assert available_cpus(tmp_path / "fs", proc, affinity=3) == 3
    # The affinity is smaller than the quota: it wins.
    proc = cgroup_v2(tmp_path, "/q", {"q": {"cpu.max": "800000 100000"}})
    assert available_cpus(tmp_path / "fs", proc, affinity=3) == 3


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    cpu = tmp_path / "fs" / "cpu" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("300000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    memory = tmp_path / "fs" / "memory" / "docker" / "abc"
    memory.mkdir(parents=True)
    (memory / "memory.limit_in_bytes").write_text(str(512 * 1024**2))
    assert cgroup_cpu_limit(tmp_path / "fs", proc) == 3.0
    assert available_cpus(tmp_path / "fs", proc, affinity=16) == 3
    assert available_memory(tmp_path / "fs", proc) == 512 * 1024**2


def test_unreadable_or_malformed_files_mean_no_limit(tmp_path: Path) -> None:
    proc = cgroup_v2(tmp_path, "/x", {"x": {"cpu.max": "garbage"}})
    assert cgroup_cpu_limit(tmp_path / "fs", proc) is None
    assert cgroup_cpu_limit(tmp_path / "nowhere", tmp_path / "no-proc") is None
    assert available_cpus(tmp_path / "nowhere", tmp_path / "no-proc", affinity=1) == 1


def test_memory_max_bounds_the_default_readahead_budget(tmp_path: Path) -> None:
    proc = cgroup_v2(tmp_path, "/c", {"c": {"memory.max": str(2 * 1024**3)}})
    assert available_memory(tmp_path / "fs", proc) == 2 * 1024**3
    proc = cgroup_v2(tmp_path, "/d", {"d": {"memory.max": "max"}})
    assert available_memory(tmp_path / "fs", proc) > 0


def test_settings_workers_follow_the_machine_unless_set() -> None:
    assert Settings.from_env({}, transcode_workers=3).workers == 3
    assert Settings.from_env({}).workers >= 1
    budget = Settings.from_env({}).readahead_budget
    assert budget >= 64 * 1024**2
    assert Settings.from_env({}, readahead_budget_bytes=10**6).readahead_budget == 10**6
    with pytest.raises(ValueError, match="READAHEAD_BUDGET"):
        Settings.from_env({}, readahead_budget_bytes=-1)
