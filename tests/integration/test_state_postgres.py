"""Shared state on a real PostgreSQL (issue 15, item 1): the store suite of
tests/unit/test_state.py unchanged, the migrations, and two BFF replicas over one
database behind no balancer (the browser picks the replica by port, as a balancer would
by round robin): a login on A views images on B with the same cookie, a login round
trip started on A finishes on B, a Consumer hand-over posted to A opens on B and a
replica that never saw the study serves its images (the remote state rebuilt lazily
from the stored session), and a restart of every replica keeps the session.

Real parts only: the throw-away cluster of tests/integration/pg.py, Orthanc, the local
identity provider (real OIDC code flow with PKCE), this project's Source over mutual TLS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from bff.app import create_app
from bff.demo.stack import DEMO_CDA_ID, DEMO_USERS_FILE, Stack, new_stack, publish_demo_kos
from bff.idp.app import create_idp_app
from bff.idp.users import load_users
from bff.migrations import SchemaNotCurrent, current, head, require_head, upgrade
from bff.services import services_of
from bff.settings import Settings
from bff.state.backend import StateBackend
from tests.access import HIDDEN, LoopbackTransport, ScriptedBrowser, psc_access_token
from tests.conftest import Pacs, make_settings
from tests.consumer_stack import CONSUMER_HOST, DrimmStack
from tests.integration.test_archive_postgres import database_url, postgres_url
from tests.integration.test_facade import FRAME_ACCEPT
from tests.servers import free_port, live_server
from tests.state_backends import sql_backend
from tests.unit.test_migrations import schema_diff
from tests.unit.test_state import (
    clock,
    sealer,
    test_a_database_outage_is_a_503_not_a_crash_or_an_endless_wait,
    test_a_handover_posted_to_one_replica_opens_on_another_once,
    test_a_login_started_on_one_replica_finishes_on_another_once,
    test_a_session_written_by_one_replica_is_read_by_another,
    test_a_tampered_or_swapped_row_is_no_session,
    test_activity_is_written_at_most_every_touch_interval,
    test_an_idle_session_ends_for_every_replica_and_its_logout_stays_possible,
    test_backend_keeps_takes_once_expires_and_bounds,
    test_no_token_or_identity_in_a_stored_row,
    test_old_keys_still_open_during_a_rotation,
    test_renew_and_logout_on_one_replica_end_the_session_on_the_other,
    test_sessions_are_bounded,
)

pytestmark = pytest.mark.integration

# The fixtures and the store suite shared with the unit tests, here on PostgreSQL.
__all__ = [
    "clock",
    "database_url",
    "postgres_url",
    "sealer",
    "test_a_database_outage_is_a_503_not_a_crash_or_an_endless_wait",
    "test_a_handover_posted_to_one_replica_opens_on_another_once",
    "test_a_login_started_on_one_replica_finishes_on_another_once",
    "test_a_session_written_by_one_replica_is_read_by_another",
    "test_a_tampered_or_swapped_row_is_no_session",
    "test_activity_is_written_at_most_every_touch_interval",
    "test_an_idle_session_ends_for_every_replica_and_its_logout_stays_possible",
    "test_backend_keeps_takes_once_expires_and_bounds",
    "test_no_token_or_identity_in_a_stored_row",
    "test_old_keys_still_open_during_a_rotation",
    "test_renew_and_logout_on_one_replica_end_the_session_on_the_other",
    "test_sessions_are_bounded",
]

LOCATION = "vi1.localhost"


@pytest.fixture
def backend(database_url: str) -> Iterator[StateBackend]:
    with sql_backend(database_url) as made:
        yield made


# -- migrations ------------------------------------------------------------------------------


def test_migrations_on_an_empty_postgresql_match_the_models(database_url: str) -> None:
    upgrade(database_url)
    assert current(database_url) == head()
    assert schema_diff(database_url) == []
    require_head(database_url)


def test_a_postgresql_database_behind_is_refused(database_url: str) -> None:
    upgrade(database_url, "0001")
    with pytest.raises(SchemaNotCurrent):
        require_head(database_url)


# -- two replicas ----------------------------------------------------------------------------


@dataclasses.dataclass
class Replicas:
    stack: Stack
    settings: Settings  # replica A's; B differs by its port
    ports: tuple[int, int]

    def url(self, replica: int, path: str, host: str = LOCATION) -> str:
        return f"http://{host}:{self.ports[replica]}{path}"


def on(replica_port: int, url: str) -> str:
    """``url`` sent to another replica (what a balancer does with any request)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{replica_port}"))


def shared_state(database_url: str, work: Path) -> dict[str, object]:
    key = work / "state.key"
    key.write_bytes(os.urandom(32))
    return {
        "archive_url": database_url,
        "state_url": database_url,
        "state_key_file": str(key),
        "session_secret": "replicas-share-this-secret-" + "x" * 16,
    }


@contextlib.contextmanager
def serving(*apps_and_ports: tuple[object, int]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for app, port in apps_and_ports:
            stack.enter_context(live_server(app, port=port))
        yield


@pytest.fixture
def replicas(pacs: Pacs, database_url: str, tmp_path: Path) -> Iterator[Replicas]:
    port_a, port_b, idp_port = free_port(), free_port(), free_port()
    stack = new_stack(port_a, idp_port, (LOCATION,))
    upgrade(database_url)  # the operator's 'drimbox-viewer db upgrade'
    publish_demo_kos(database_url, pacs.study.kos_path, location=LOCATION, cda_id=DEMO_CDA_ID)
    settings = make_settings(
        pacs.dicomweb_url,
        **stack.bff_overrides(),
        open_access=False,
        locations=f"{LOCATION}={pacs.dicomweb_url}",
        **shared_state(database_url, tmp_path),
    )
    idp = create_idp_app(
        load_users(DEMO_USERS_FILE), stack.idp_clients(), issuer_base=stack.issuer_base
    )
    with live_server(idp, port=idp_port):
        yield Replicas(stack, settings, (port_a, port_b))


def frame_path(pacs: Pacs) -> tuple[str, str]:
    study = pacs.study
    series = f"/dicomweb/studies/{study.study_uid}/series/{study.series_uids[-1]}"
    return series + "/metadata", series


def view_images(client: httpx.Client | ScriptedBrowser, base: str, pacs: Pacs) -> None:
    """The series metadata and a frame, as OHIF asks them."""
    metadata, series = frame_path(pacs)
    meta = client.get(base + metadata)
    assert meta.status_code == 200, meta.text
    sop = meta.json()[0]["00080018"]["Value"][0]
    frame = client.get(f"{base}{series}/instances/{sop}/frames/1", headers={"Accept": FRAME_ACCEPT})
    assert frame.status_code == 200 and len(frame.content) > 1000


def test_a_login_on_one_replica_views_images_on_the_other_and_survives_a_restart(
    replicas: Replicas, pacs: Pacs
) -> None:
    a = create_app(replicas.settings)
    b = create_app(dataclasses.replace(replicas.settings, port=replicas.ports[1]))
    browser = ScriptedBrowser()
    try:
        with serving((a, replicas.ports[0]), (b, replicas.ports[1])):
            link = replicas.stack.viewer_link(pacs.study, LOCATION)
            assert browser.sign_in(link, "psc", "dr.radiologue").status_code == 303
            view_images(browser, f"http://{LOCATION}:{replicas.ports[1]}", pacs)
            info = browser.get(replicas.url(1, "/api/session"))
            assert [s["study_uid"] for s in info.json()["studies"]] == [pacs.study.study_uid]
        # Every replica stopped, new ones started: the session is still there.
        again = create_app(replicas.settings)
        with serving((again, replicas.ports[0])):
            assert browser.get(replicas.url(0, "/api/session")).status_code == 200
            view_images(browser, f"http://{LOCATION}:{replicas.ports[0]}", pacs)
    finally:
        browser.close()


def test_a_login_started_on_one_replica_finishes_on_the_other(
    replicas: Replicas, pacs: Pacs
) -> None:
    """The OIDC round trip (state, nonce, PKCE verifier) is kept in the shared store: the
    callback reaching another replica than the one the login started on still signs in,
    once (a replay on the first replica is refused)."""
    a = create_app(replicas.settings)
    b = create_app(dataclasses.replace(replicas.settings, port=replicas.ports[1]))
    browser = ScriptedBrowser()
    try:
        with serving((a, replicas.ports[0]), (b, replicas.ports[1])):
            link = replicas.stack.viewer_link(pacs.study, LOCATION)
            started = browser.choose(browser.open_link(link), "psc")  # on A
            assert started.status_code == 303
            form = browser.client.get(started.headers["location"])
            fields = dict(HIDDEN.findall(form.text))
            fields["username"] = "dr.radiologue"
            back = browser.client.post(form.url.join("authorize"), data=fields)
            callback = back.headers["location"]  # A's callback URL
            assert urlsplit(callback).port == replicas.ports[0]
            done = browser.client.get(on(replicas.ports[1], callback))  # reaches B
            assert done.status_code == 303, done.text
            assert browser.get(replicas.url(0, "/api/session")).status_code == 200
            replay = browser.client.get(callback)  # the same state again, on A
            assert replay.status_code == 401
    finally:
        browser.close()


def test_a_handover_posted_to_one_consumer_replica_opens_on_another(
    drimm: DrimmStack, database_url: str, tmp_path: Path
) -> None:
    """DB.VI-CS.05 hand-over across replicas: posted to A, opened on B, and the images
    served by C, a replica that never saw the study (its Source client and retrieval
    rebuilt from the stored RemoteOpening and the session's PSC token)."""
    upgrade(database_url)
    base = services_of(drimm.consumer_app).settings
    shared = shared_state(database_url, tmp_path)
    ports = (free_port(), free_port(), free_port())
    a, b, c = (
        create_app(dataclasses.replace(base, port=port, **shared))  # type: ignore[arg-type]
        for port in ports
    )
    client = httpx.Client(transport=LoopbackTransport(), timeout=60)
    try:
        with serving((a, ports[0]), (b, ports[1])):
            answer = client.post(
                f"http://{CONSUMER_HOST}:{ports[0]}/api/consumer/kos",
                content=drimm.kos_for(drimm.source_api),
                headers={
                    "Authorization": f"Bearer {drimm.handover_secret}",
                    "X-PSC-Access-Token": psc_access_token(drimm.stack),
                    "Content-Type": "application/dicom",
                },
            )
            assert answer.status_code == 201, answer.text
            url = answer.json()["viewer_url"]
            opened = client.get(on(ports[1], url))
            assert opened.status_code == 303, opened.text
            assert client.get(url).status_code == 401  # single use, on A too
        with serving((c, ports[2])):
            study = drimm.study
            series = f"/dicomweb/studies/{study.study_uid}/series/{study.series_uids[-1]}"
            meta = client.get(f"http://{CONSUMER_HOST}:{ports[2]}{series}/metadata")
            assert meta.status_code == 200, meta.text
            sop = meta.json()[0]["00080018"]["Value"][0]
            frame = client.get(
                f"http://{CONSUMER_HOST}:{ports[2]}{series}/instances/{sop}/frames/1",
                headers={"Accept": FRAME_ACCEPT},
            )
            assert frame.status_code == 200 and len(frame.content) > 1000
    finally:
        client.close()
