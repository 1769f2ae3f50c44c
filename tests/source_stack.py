"""The Source stack for access-path tests: Orthanc (session fixture), the local identity
provider and the BFF with two locations, the demo KOS published on the first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from bff.app import create_app
from bff.archive.store import ArchiveStore
from bff.demo.dataset import ANS_TEST_PATIENT, DemoStudy, write_demo_study
from bff.demo.stack import DEMO_CDA_ID, DEMO_USERS_FILE, Stack, new_stack, publish_demo_kos
from bff.idp.app import create_idp_app
from bff.idp.users import load_users
from tests.conftest import Pacs, make_settings
from tests.servers import free_port, live_server

LOCATION = "vi1.localhost"
OTHER_LOCATION = "vi2.localhost"
OTHER_CDA_ID = "1.2.250.1.999.1.1.102"

#: Test patients for DB.VI-SO.152: each trait of the ANS test patient wrong in turn,
#: and spellings that must still match.
PIVOT = {
    "given_name": "DOMINIQUE",
    "family_name": "PAT-TROIS",
    "birthdate": "1979-03-28",
    "gender": "female",
    "birthplace": "63220",
    "birthcountry": "99100",
}
VARIANTS = {
    "wrong.birth_name": {"family_name": "PAT-QUATRE"},
    "wrong.given_names": {"given_name": "DOMINIQUE MARIE"},
    "wrong.sex": {"gender": "male"},
    "wrong.birth_date": {"birthdate": "1979-03-29"},
    "wrong.birthplace": {"birthplace": "63113"},
    "same.spelling": {"family_name": "Pat Trois", "given_name": "dominique"},
    "same.accents": {"family_name": "PÂT-TROÏS", "given_name": "Dominique"},
}


@dataclass(frozen=True)
class SourceStack:
    stack: Stack
    study: DemoStudy
    other_study: DemoStudy  # same patient, published with OTHER_CDA_ID
    app: Starlette
    archive_url: str
    audit_log: Path

    def link(self, host: str = LOCATION, **changes: str) -> str:
        link = self.stack.viewer_link(self.study, host)
        for key, value in changes.items():
            link = link.replace(key, value)
        return link

    def audit(self) -> list[dict[str, Any]]:
        lines = self.audit_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def other_study(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    study = write_demo_study(
        tmp_path_factory.mktemp("other-study"),
        n_slices=4,
        seed=99,
        patient=ANS_TEST_PATIENT,
        accession="ACN102",
    )
    pacs.process.upload([*study.instance_files, study.kos_path])
    return study


@pytest.fixture(scope="module")
def source(
    pacs: Pacs, other_study: DemoStudy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourceStack]:
    with running_source(pacs, other_study, tmp_path_factory.mktemp("source")) as stack:
        yield stack


@contextmanager
def running_source(
    pacs: Pacs,
    other_study: DemoStudy,
    work: Path,
    *,
    pacs_url: str | None = None,
    **overrides: object,
) -> Iterator[SourceStack]:
    """The stack in ``work``; ``pacs_url``: what the first location's PACS is (a server
    in front of the real Orthanc, for faults; default the Orthanc itself);
    ``overrides``: more settings (timeouts)."""
    bff_port, idp_port = free_port(), free_port()
    stack = new_stack(bff_port, idp_port, (LOCATION, OTHER_LOCATION))
    archive_url = f"sqlite:///{work / 'archive.db'}"
    publish_demo_kos(archive_url, pacs.study.kos_path, location=LOCATION, cda_id=DEMO_CDA_ID)
    publish_demo_kos(archive_url, other_study.kos_path, location=LOCATION, cda_id=OTHER_CDA_ID)
    users = json.loads(DEMO_USERS_FILE.read_text(encoding="utf-8"))
    for username, changes in VARIANTS.items():
        users["users"].append(
            {"username": username, "realm": "fcp", "claims": {**PIVOT, **changes}}
        )
    users_file = work / "users.json"
    users_file.write_text(json.dumps(users), encoding="utf-8")
    idp = create_idp_app(load_users(users_file), stack.idp_clients(), issuer_base=stack.issuer_base)
    first = pacs_url or pacs.dicomweb_url
    settings = make_settings(
        pacs.dicomweb_url,
        **{
            **stack.bff_overrides(),
            "open_access": False,
            "locations": f"{LOCATION}={first},{OTHER_LOCATION}={pacs.dicomweb_url}",
            "archive_url": archive_url,
            "audit_log": work / "audit.jsonl",
            **overrides,
        },
    )
    app = create_app(settings)
    with live_server(idp, port=idp_port), live_server(app, port=bff_port):
        yield SourceStack(stack, pacs.study, other_study, app, archive_url, work / "audit.jsonl")


def set_state(archive_url: str, sop_uid: str, *, published: bool, cda_id: str) -> None:
    store = ArchiveStore(archive_url)
    try:
        if published:
            record = store.get(sop_uid)
            assert record is not None
            store.publish(record.record, cda_id=cda_id, location=record.location)
        else:
            store.unpublish(sop_uid)
    finally:
        store.close()
