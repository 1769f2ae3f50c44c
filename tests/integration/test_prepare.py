"""Transcode once, at publication (issue 16), against a real Orthanc.

Publishing a KOS (admin API or ``kos add``) has the BFF prepare the served form of every
instance of its series in the background; an opening of a prepared study then transcodes
nothing and asks the PACS for no series; the prepared frame is byte for byte the frame the
live path serves; unpublishing drops it; the store's bound holds; the setting turns it off.
Every wait is on a fact (the archive's preparation row, the store's count), never a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from bff.app import create_app
from bff.archive.cli import format_table
from bff.archive.store import ArchiveStore, Preparation
from bff.services import Services
from tests.conftest import Pacs, make_settings
from tests.integration.test_facade import FRAME_ACCEPT, ct_series, read_frame
from tests.servers import counting_proxy, live_server
from tests.waiting import poll

pytestmark = pytest.mark.integration

ADMIN_SECRET = "admin-secret-for-the-preparation-test"
CDA_ID = "1.2.250.1.999.1.1.16"
AUTH = {"authorization": f"Bearer {ADMIN_SECRET}"}


@dataclass
class Bff:
    url: str
    app: Starlette
    asked: list[str]  # what the PACS was asked (paths), in order

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def archive(self) -> ArchiveStore:
        return self.services.archive


@contextmanager
def bff(pacs: Pacs, **overrides: Any) -> Iterator[Bff]:
    asked: list[str] = []
    values: dict[str, Any] = {
        "admin_secret": ADMIN_SECRET,
        "prepare_at_publication": True,
        **overrides,
    }
    with (
        live_server(counting_proxy(pacs.process.base_url, asked), lifespan="off") as proxy,
    ):
        app = create_app(make_settings(proxy + "/dicom-web", **values))
        with live_server(app) as url:
            yield Bff(url, app, asked)


def publish(client: httpx.Client, pacs: Pacs) -> None:
    response = client.post(
        "/api/admin/kos",
        content=pacs.study.kos_path.read_bytes(),
        headers={**AUTH, "content-type": "application/dicom"},
        params={"cda_id": CDA_ID},
    )
    assert response.status_code == 201, response.text


def preparation(server: Bff, pacs: Pacs) -> Preparation | None:
    return server.archive().preparations().get(pacs.study.kos_sop_uid)


def wait_state(server: Bff, pacs: Pacs, *states: str) -> Preparation:
    def done() -> Preparation | None:
        found = preparation(server, pacs)
        return found if found is not None and found.state in states else None

    found = poll(done, timeout=120)
    assert found is not None, preparation(server, pacs)
    return found


def open_series(client: httpx.Client, study_uid: str) -> dict[str, bytes]:
    """What OHIF does: the series search, the CT's metadata, then every frame."""
    series_uid, _ = ct_series(client, study_uid)
    metadata = client.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata")
    assert metadata.status_code == 200
    frames = {}
    for row in metadata.json():
        sop_uid = row["00080018"]["Value"][0]
        url = f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
        response = client.get(url, headers={"Accept": FRAME_ACCEPT})
        assert response.status_code == 200
        syntax, data = read_frame(response)
        frames[sop_uid] = syntax.encode() + b"|" + data
    return frames


def test_publication_prepares_and_an_opening_transcodes_and_streams_nothing(
    pacs: Pacs,
) -> None:
    study = pacs.study
    with bff(pacs) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        publish(client, pacs)
        done = wait_state(server, pacs, "prepared")
        store = server.services.retriever.prepared
        assert store is not None
        assert done.prepared == done.total == study.n_instances
        assert len(store) == study.n_instances
        assert done.nbytes == store.nbytes > 0
        pool = server.services.retriever._pool
        assert pool.submitted["background"] == study.n_instances
        assert pool.submitted["interactive"] == 0
        listing = format_table(
            server.archive().list(), preparations=server.archive().preparations()
        )
        assert f"prepared {study.n_instances}/{study.n_instances}" in listing
        # The metrics say it too (issue 15's /metrics).
        exposition = server.services.metrics.exposition().decode()
        assert f"drimbox_prepared_store_instances {float(study.n_instances)}" in exposition
        assert f"drimbox_prepared_instances_total {float(study.n_instances)}" in exposition
        assert (
            f'drimbox_transcode_pool_submitted_total{{lane="background"}} '
            f"{float(study.n_instances)}" in exposition
        )

        # The opening of the prepared study: no transcoding, no series from the PACS.
        asked_before = len(server.asked)
        prepared_frames = open_series(client, study.study_uid)
        assert pool.submitted["interactive"] == 0
        assert pool.submitted["background"] == study.n_instances
        retrievals = [p for p in server.asked[asked_before:] if "/series/" in p]
        assert not [p for p in retrievals if not p.endswith(("/metadata", "/instances"))], (
            retrievals
        )
        # Item 2: the prepared answer is sent as stored, framing included (the live path
        # frames each answer anew, with a new random boundary).
        series_uid, _ = ct_series(client, study.study_uid)
        sop_uid = next(iter(prepared_frames))
        url = (
            f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
        )
        first, again = (client.get(url, headers={"Accept": FRAME_ACCEPT}) for _ in range(2))
        assert first.content == again.content
        assert first.headers["content-type"] == again.headers["content-type"]
        # The pixel data as bulk data (its frames) of a prepared instance: from the store.
        bulk = client.get(url.replace("/frames/1", "/bulk/7fe00010"))
        assert bulk.status_code == 200
        syntax, data = read_frame(bulk)
        assert syntax.encode() + b"|" + data == prepared_frames[sop_uid]
        assert pool.submitted["interactive"] == 0
    # The same frames from a BFF that prepares nothing: the live path's answer.
    with (
        bff(pacs, prepare_at_publication=False) as live,
        httpx.Client(base_url=live.url, timeout=60) as client,
    ):
        live_frames = open_series(client, study.study_uid)
        assert live.services.retriever._pool.submitted["interactive"] > 0
    assert prepared_frames == live_frames  # same syntax, same bytes


def test_the_setting_off_prepares_nothing(pacs: Pacs) -> None:
    with (
        bff(pacs, prepare_at_publication=False) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        publish(client, pacs)
        assert server.services.preparer is None
        assert preparation(server, pacs) is None
        store = server.services.retriever.prepared
        assert store is not None and len(store) == 0
        assert server.services.retriever._pool.submitted["background"] == 0


def test_unpublishing_drops_the_prepared_study(pacs: Pacs) -> None:
    with bff(pacs) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        publish(client, pacs)
        wait_state(server, pacs, "prepared")
        store = server.services.retriever.prepared
        assert store is not None and len(store) == pacs.study.n_instances
        response = client.delete(f"/api/admin/kos/{pacs.study.kos_sop_uid}", headers=AUTH)
        assert response.status_code == 200
        assert poll(lambda: len(store) == 0 and preparation(server, pacs) is None, timeout=60)
        assert store.nbytes == 0


def test_the_store_bound_holds(pacs: Pacs) -> None:
    """A bound smaller than the study: the preparation stops ('full'), never past it."""
    bound = 150_000
    with (
        bff(pacs, prepared_bytes=bound) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        publish(client, pacs)
        done = wait_state(server, pacs, "full")
        store = server.services.retriever.prepared
        assert store is not None
        assert 0 < done.prepared < done.total
        assert 0 < store.nbytes <= bound
        # What is not prepared is served live; the opening still works.
        frames = open_series(client, pacs.study.study_uid)
        assert len(frames) > 0


def kos_cli(archive_url: str, *args: str) -> str:
    """``drimbox-viewer kos ...`` as an operator runs it (another process)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DRIMBOX_ARCHIVE_URL": archive_url}
    done = subprocess.run(
        [sys.executable, "-m", "bff", "kos", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_a_cli_publication_is_prepared_and_survives_a_restart(pacs: Pacs, tmp_path: Path) -> None:
    """``kos add`` (another process) is seen by the BFF's scan; ``kos list`` shows the
    progress; a restarted BFF serves the prepared study from its store, transcoding
    nothing and preparing nothing again."""
    study = pacs.study
    archive_url = f"sqlite:///{tmp_path / 'archive.db'}"
    shared: dict[str, Any] = {
        "archive_url": archive_url,
        "prepared_dir": str(tmp_path / "prepared"),
        "prepare_scan_interval": 0.5,
    }
    with bff(pacs, **shared) as server:
        kos_cli(archive_url, "add", str(study.kos_path), "--cda-id", CDA_ID)
        wait_state(server, pacs, "prepared")
    n = study.n_instances
    assert f"prepared {n}/{n}" in kos_cli(archive_url, "list")
    with bff(pacs, **shared) as again, httpx.Client(base_url=again.url, timeout=60) as client:
        assert len(open_series(client, study.study_uid)) > 0
        assert poll(
            lambda: (
                again.services.preparer is not None and again.services.preparer.stats["scans"] > 0
            )
        )
        pool = again.services.retriever._pool
        assert pool.submitted == {"interactive": 0, "background": 0}
