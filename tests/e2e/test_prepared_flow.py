"""A prepared exam in Chromium (issue 16): the report link of an exam whose KOS was
prepared at publication opens, signed in at the local provider, with its images drawn,
while the BFF transcodes nothing and pulls no series from the PACS for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bff.archive.store import ArchiveStore
from bff.demo.dataset import DemoStudy
from bff.services import Services
from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.source_stack import LOCATION, running_source
from tests.waiting import poll

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _needs_ohif() -> None:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")


def _state(archive_url: str, kos_sop_uid: str) -> str | None:
    archive = ArchiveStore(archive_url)
    try:
        found = archive.preparations().get(kos_sop_uid)
    finally:
        archive.close()
    return found.state if found is not None else None


def test_a_prepared_exam_opens_without_transcoding(
    pacs: Pacs, other_study: DemoStudy, tmp_path: Path, page: Any
) -> None:
    study = pacs.study
    with running_source(pacs, other_study, tmp_path, prepare_at_publication=True) as source:
        # Both KOS were published before the BFF started: its first scan prepares them.
        both = (study.kos_sop_uid, other_study.kos_sop_uid)
        assert poll(lambda: all(_state(source.archive_url, k) == "prepared" for k in both), 120)
        services: Services = source.app.state.services
        pool = services.retriever._pool
        prepared_jobs = pool.submitted["background"]
        assert prepared_jobs >= study.n_instances

        sign_in(page, source.link(), "fcp", "dominique.pat-trois")
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
        wait_for_image(page)
        frames = [
            r
            for r in page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
            if "/frames/" in r
        ]
        assert frames  # OHIF asked for frames, and got them drawn
        assert pool.submitted["interactive"] == 0  # nothing transcoded for the opening
        assert pool.submitted["background"] == prepared_jobs
        retrievals = services.retriever.for_study(LOCATION, study.study_uid)
        assert retrievals and all(r.prepared for r in retrievals)  # no series streamed
