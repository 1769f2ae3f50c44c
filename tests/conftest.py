"""Shared fixtures: a real Orthanc loaded with a small demo study, and the BFF in front."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bff.app import create_app
from bff.demo.dataset import DemoStudy, write_demo_study
from bff.demo.orthanc import OrthancProcess
from bff.settings import Settings
from tests.servers import live_server

#: Small enough for a quick suite, large enough to stream while frames are asked for.
TEST_SLICES = 40


@dataclass(frozen=True)
class Pacs:
    process: OrthancProcess
    study: DemoStudy

    @property
    def dicomweb_url(self) -> str:
        return self.process.dicomweb_url


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    return write_demo_study(tmp_path_factory.mktemp("demo-data"), n_slices=TEST_SLICES, seed=7)


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory, demo_study: DemoStudy) -> Iterator[Pacs]:
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (scripts/install installs it)")
    with OrthancProcess(tmp_path_factory.mktemp("orthanc")) as process:
        process.upload([*demo_study.instance_files, demo_study.kos_path])
        yield Pacs(process, demo_study)


def make_settings(upstream_url: str, **overrides: object) -> Settings:
    """Settings for a test BFF; open access unless a test asks otherwise (the facade's
    own tests: the access path has its own)."""
    scratch = Path(tempfile.mkdtemp(prefix="drimbox-test-"))
    values: dict[str, object] = {
        "upstream_url": upstream_url,
        "mode": "demo",
        "open_access": True,
        "archive_url": f"sqlite:///{scratch / 'archive.db'}",
        "audit_log": scratch / "audit.jsonl",
        "frame_disk_cache_dir": str(scratch / "frame-cache"),  # cold for each app
        # Issue 16: off unless a test asks for it (tests/integration/test_prepare.py):
        # the other tests count what an opening asks of the PACS and of the pool.
        "prepare_at_publication": False,
        "prepared_dir": str(scratch / "prepared"),
        "transcode_workers": 2,
        "frame_wait_timeout": 20.0,
        "upstream_read_timeout": 10.0,
        "upstream_connect_timeout": 2.0,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture()
def bff_url(pacs: Pacs) -> Iterator[str]:
    """A fresh BFF (empty cache) in front of the session's Orthanc."""
    with live_server(create_app(make_settings(pacs.dicomweb_url))) as url:
        yield url


def original_frames(study: DemoStudy) -> dict[str, Path]:
    """SOP Instance UID -> file of the lossless original, for comparisons."""
    import pydicom

    files = {}
    for path in study.instance_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files[str(ds.SOPInstanceUID)] = path
    return files


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[object]:
    """One Playwright driver for the whole run: its sync API runs an event loop that stays
    up while it is open, and a second one started beside it (the stack's browser, after
    the Chromium tests' browser) is refused. Every browser of the run is launched from it."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


# The Source stack (identity provider + BFF with two locations), for integration and e2e.
from tests.consumer_stack import drimm  # noqa: E402, F401
from tests.source_stack import other_study, source  # noqa: E402, F401
