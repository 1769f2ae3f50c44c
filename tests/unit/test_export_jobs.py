"""The bounds of the exports to the practice's PACS (DB.VI-CO.42): one running export per
user, DRIMBOX_EXPORT_MAX_JOBS on the server (E461), and the French job messages."""

from __future__ import annotations

import json

import pytest

from bff.errors import ExportBusy, ExportFailed
from bff.export.jobs import ExportJob, PacsExports
from bff.settings import Settings

DESTINATIONS = json.dumps(
    [{"name": "PACS du cabinet", "protocol": "stow", "url": "http://127.0.0.1:9/dicom-web"}]
)


def exports(max_jobs: int) -> PacsExports:
    return PacsExports(
        Settings.from_env({}, export_destinations=DESTINATIONS, export_max_jobs=max_jobs)
    )


def running(registry: PacsExports, subject: str) -> ExportJob:
    job = ExportJob("j-" + subject, subject, "1.2.3", "", registry.destinations[0], 41)
    registry._jobs[subject] = job  # what start() records, without a Source to read
    return job


def test_one_export_per_user_and_a_bound_per_server() -> None:
    registry = exports(max_jobs=2)
    registry.admit("dr.a")
    running(registry, "dr.a")
    with pytest.raises(ExportBusy) as mine:
        registry.admit("dr.a")
    assert mine.value.code == "E461" and mine.value.status == 429
    assert "déjà en cours" in mine.value.message
    registry.admit("dr.b")  # another user may still export
    running(registry, "dr.b")
    with pytest.raises(ExportBusy) as server:
        registry.admit("dr.c")
    assert "nombre maximal" in server.value.message
    registry._jobs["dr.a"].state = "done"  # a finished job frees its place
    registry.admit("dr.c")
    registry.admit("dr.a")


def test_job_messages_in_french() -> None:
    registry = exports(max_jobs=1)
    job = running(registry, "dr.a")
    job.stored = 12
    assert job.message() == "Export en cours vers PACS du cabinet : 12 images envoyées sur 41."
    job.state, job.stored = "done", 1
    assert job.message() == "Export terminé : 1 image envoyée à PACS du cabinet."
    job.state, job.error, job.stored = "failed", ExportFailed("down"), 0
    assert job.as_json()["code"] == "E462"
    assert job.message() == (
        "Le PACS de destination est injoignable. Vérifiez qu'il est en service, puis "
        "réessayez ; si le problème persiste, prévenez l'administrateur de votre PACS. "
        "(0 image envoyée à PACS du cabinet.)"
    )


def test_no_destination_no_export() -> None:
    """The feature is off (the route answers 404, the viewer shows no button) without
    DRIMBOX_EXPORT_DESTINATIONS."""
    assert not PacsExports(Settings.from_env({})).enabled
    assert exports(max_jobs=1).enabled
