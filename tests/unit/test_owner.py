"""The way to a study's owner behind the balancer (bff/web/owner.py): a failure is logged
and answered False, never raised (the owner's first metadata request starts the
retrieval then). The path through a real balancer is tested in tests/stack/."""

from __future__ import annotations

import asyncio

import pytest

from bff.web.owner import StudyOwner
from tests.servers import free_port


def test_an_unreachable_owner_is_a_logged_false(caplog: pytest.LogCaptureFixture) -> None:
    async def ask() -> bool:
        owner = StudyOwner(f"http://127.0.0.1:{free_port()}", timeout=2)
        try:
            return await owner.prefetch(
                host="vi1.example.fr",
                study_uid="1.2.3",
                cookie=("session", "s3cr3t-cookie-value"),
                csrf_token="token",
            )
        finally:
            await owner.aclose()

    assert asyncio.run(ask()) is False
    assert "was not reached" in caplog.text
    assert "s3cr3t" not in caplog.text  # never the session cookie in the log
