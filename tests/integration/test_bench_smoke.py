"""``scripts/bench --load 2 --slices 20`` end to end (issue 16 items 5 and 6): a real
Orthanc, the exam prepared at publication by a real BFF, two viewers signed in through the
local identity provider replaying OHIF's requests, then Debian's nginx serving the same
frames; the JSON has the issue's keys. The numbers are never asserted (speed lives in the
benchmark, not in tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.__main__ import LOAD_KEYS, main
from bench.load import NGINX
from bench.wrk import available as wrk_available

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    not NGINX.exists() or not shutil.which("Orthanc"), reason="needs nginx, Orthanc"
)
def test_the_load_benchmark_runs_end_to_end_and_reports_the_keys(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert (
        main(
            ["--load", "2", "--slices", "20", "--data", str(tmp_path / "data"), "--json", str(out)]
        )
        == 0
    )
    load = json.loads(out.read_text(encoding="utf-8"))["load"]
    assert "error" not in load, load
    assert set(LOAD_KEYS) <= set(load)
    assert load["viewers"] == 2
    assert load["frames"] == 2 * 20  # every frame of the series, for each viewer
    assert load["errors"] == [] and load["nginx"]["errors"] == []
    assert load["nginx"]["frames"] == 2 * 20
    assert load["preparation"]["state"] == "prepared"
    assert load["preparation"]["instances"] == 20
    # the frames replayed by wrk when it is installed (scripts/install puts it there),
    # else by the Python client; the client's CPU beside the BFF's
    assert load["client"] == ("wrk" if wrk_available() else "python")
    for key in ("frames_per_s", "p50_ms", "p99_ms", "bff_cpu_s", "nginx_frames_per_s"):
        assert isinstance(load[key], (int, float)), key
    assert isinstance(load["client_cpu_s"], (int, float))
