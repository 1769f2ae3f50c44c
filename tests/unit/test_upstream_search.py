"""DicomwebUpstream.search: identical QIDO searches share one upstream request for a
short while (issue 5: OHIF repeats its study search while the PACS is busy streaming),
each caller gets its own rows, failures are not kept."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bff.dicomweb.upstream import SEARCH_TTL_S, DicomwebUpstream
from bff.errors import UpstreamError
from tests.clock import ManualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pacs(
    answers: list[httpx.Response], clock: ManualClock | None = None
) -> tuple[DicomwebUpstream, list[str]]:
    asked: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        await asyncio.sleep(0.05)
        return answers.pop(0) if answers else httpx.Response(200, json=[{"n": len(asked)}])

    return (
        DicomwebUpstream(
            "http://pacs/dicom-web",
            origin="p",
            transport=httpx.MockTransport(handler),
            clock=clock or ManualClock(),
        ),
        asked,
    )


@pytest.mark.anyio
async def test_same_search_shares_one_request_and_copies_rows() -> None:
    upstream, asked = pacs([])
    one, two = await asyncio.gather(
        upstream.search("/studies", {"StudyInstanceUID": "1.2", "limit": "101"}),
        upstream.search("/studies", {"limit": "101", "StudyInstanceUID": "1.2"}),
    )
    assert len(asked) == 1 and one == two == [{"n": 1}]
    one[0]["n"] = "changed by a caller"
    assert await upstream.search("/studies", {"StudyInstanceUID": "1.2", "limit": "101"}) == [
        {"n": 1}
    ]
    assert len(asked) == 1
    await upstream.search("/studies", {"StudyInstanceUID": "9.9"})  # another search
    assert len(asked) == 2
    await upstream.aclose()


@pytest.mark.anyio
async def test_answers_expire_and_failures_are_asked_again() -> None:
    clock = ManualClock()
    upstream, asked = pacs([httpx.Response(503)], clock)
    with pytest.raises(UpstreamError):
        await upstream.search("/studies/1.2/series")
    assert await upstream.search("/studies/1.2/series") == [{"n": 2}]  # not the failure
    await upstream.search("/studies/3/series")
    clock.advance(SEARCH_TTL_S)
    await upstream.search("/studies/3/series")
    assert len(asked) == 3  # shared until it expires
    clock.advance(0.001)
    await upstream.search("/studies/3/series")
    assert len(asked) == 4  # expired
    empty, _ = pacs([httpx.Response(204)])
    assert await empty.search("/studies") == []
    await upstream.aclose()
    await empty.aclose()
