"""Issue 15 item 1 in Chromium: a patient's professional signs in on replica A and the
viewer, opened on replica B (another process's memory, the same PostgreSQL state),
shows the images without signing in again: the browser's cookie names a session B reads
from the shared store. (Browsers send cookies whatever the port: the two replicas on
two ports of one host name stand for a balancer's round robin.)"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

import pytest

from bff.app import create_app
from tests.conftest import Pacs
from tests.e2e.test_source_flow import sign_in
from tests.e2e.test_viewer import wait_for_image
from tests.integration.test_archive_postgres import database_url, postgres_url
from tests.integration.test_state_postgres import LOCATION, Replicas, on, replicas, serving

pytestmark = pytest.mark.e2e

__all__ = ["database_url", "postgres_url", "replicas"]


def test_signed_in_on_one_replica_the_viewer_on_another_shows_the_images(
    replicas: Replicas, pacs: Pacs, page: Any
) -> None:
    a = create_app(replicas.settings)
    b = create_app(dataclasses.replace(replicas.settings, port=replicas.ports[1]))
    with serving((a, replicas.ports[0]), (b, replicas.ports[1])):
        sign_in(page, replicas.stack.viewer_link(pacs.study, LOCATION), "psc", "dr.radiologue")
        page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=30_000)
        assert urlsplit(page.url).port == replicas.ports[0]
        page.goto(on(replicas.ports[1], page.url))  # the next request reaches B
        page.get_by_role("button", name="Voir les images").click(timeout=30_000)
        wait_for_image(page)
        assert urlsplit(page.url).port == replicas.ports[1]
        assert page.get_by_text("Votre session a pris fin").count() == 0
