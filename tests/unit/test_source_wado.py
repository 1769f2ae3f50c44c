"""Source WADO-RS API pieces without servers: Accept negotiation, PSC introspection cache,
and the stream closing the PACS answer when the Consumer goes away."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from bff.access.source_api import PscToken, check_psc_token
from bff.auth.introspect import PscIntrospector
from bff.demo.dataset import write_demo_study
from bff.dicomweb.multipart import Part
from bff.errors import SourceIntrospectionUnavailable, SourceTokenInvalid
from bff.source.accept import EXPLICIT_VR_LE, parse_accept
from bff.source.wado import _body, _Encoder, _Upstream

JLS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.91"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- Accept ------------------------------------------------------------------------------


def test_accept_ranges_quoted_or_not_any_order_sorted_by_q() -> None:
    accepted = parse_accept(
        [
            f'multipart/related; type="application/dicom"; transfer-syntax="{J2K}"; q=0.5, '
            f"multipart/related; q=0.9; transfer-syntax={JLS}; type=application/dicom",
            f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LE}',
        ]
    )
    assert accepted.ranked == ((EXPLICIT_VR_LE, 1.0), (JLS, 0.9), (J2K, 0.5))
    assert accepted.choose(JLS, can_decode=True) == EXPLICIT_VR_LE  # q 1 beats 0.9
    assert accepted.only is None


def test_accept_stored_syntax_kept_on_a_tie_and_when_not_decodable() -> None:
    accepted = parse_accept([f"multipart/related; type=application/dicom; transfer-syntax={JLS}"])
    assert accepted.choose(JLS, can_decode=True) == JLS
    assert accepted.only == JLS
    native_only = parse_accept(["multipart/related; type=application/dicom"])  # default 1.2.1
    assert native_only.only == EXPLICIT_VR_LE
    assert native_only.choose(JLS, can_decode=True) == EXPLICIT_VR_LE
    # Nothing acceptable can be made: the stored syntax (never 406, reserved for E209).
    assert native_only.choose("1.2.840.10008.1.2.4.100", can_decode=False).endswith(".100")


def test_accept_wildcards_q_zero_and_garbage() -> None:
    assert parse_accept([]).choose(JLS, can_decode=True) == JLS
    assert parse_accept(["*/*"]).accepts(JLS)
    star = parse_accept(
        [
            'multipart/related; type="application/dicom"; transfer-syntax=*, '
            f"multipart/related; type=application/dicom; transfer-syntax={JLS}; q=0"
        ]
    )
    assert star.accepts(J2K) and not star.accepts(JLS)  # the specific range wins
    junk = parse_accept(
        ['multipart/related; type="application/octet-stream", text/html, ;;;, a/b; q=7']
    )
    assert junk.ranked == ()


# -- introspection -----------------------------------------------------------------------


class FakePsc:
    def __init__(self, *, exp_in: float = 120.0, active: bool = True) -> None:
        self.now = 1_000_000.0
        self.exp_in = exp_in
        self.active = active
        self.introspections = 0
        self.tokens_seen: list[str] = []

    def clock(self) -> float:
        return self.now

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"introspection_endpoint": "https://psc/introspect"})
        assert request.headers["authorization"].startswith("Basic ")
        self.introspections += 1
        self.tokens_seen.append(request.content.decode())
        if not self.active:
            return httpx.Response(200, json={"active": False})
        return httpx.Response(
            200,
            json={
                "active": True,
                "exp": self.now + self.exp_in,
                "iss": "https://psc",
                "client_id": "client",
                "scope": "openid scope_all",
                "acr": "eidas1",
                "sub": "f:uuid:899700218896",
            },
        )

    def introspector(self) -> PscIntrospector:
        return PscIntrospector(
            "https://psc",
            "client",
            "secret",
            timeout=1,
            clock=self.clock,
            transport=httpx.MockTransport(self.handler),
        )


@pytest.mark.anyio
async def test_positive_answers_cached_min_60s_exp() -> None:
    psc = FakePsc(exp_in=30)
    introspector = psc.introspector()
    assert await introspector.is_active("tok")
    psc.now += 29
    assert await introspector.is_active("tok")
    assert psc.introspections == 1
    psc.now += 2  # past exp - now (30 s), well before 60 s
    psc.active = False
    assert not await introspector.is_active("tok")
    assert psc.introspections == 2


@pytest.mark.anyio
async def test_cache_never_longer_than_60s_and_negative_not_cached() -> None:
    psc = FakePsc(exp_in=3600)
    introspector = psc.introspector()
    assert await introspector.is_active("tok")
    psc.now += 61
    assert await introspector.is_active("tok")
    assert psc.introspections == 2
    psc.active = False
    assert not await introspector.is_active("other")
    assert not await introspector.is_active("other")
    assert psc.introspections == 4


@pytest.mark.anyio
async def test_concurrent_checks_share_one_request_and_psc_down_fails_closed() -> None:
    psc = FakePsc()
    introspector = psc.introspector()
    results = await asyncio.gather(*(introspector.is_active("tok") for _ in range(20)))
    assert all(results) and psc.introspections == 1

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    broken = PscIntrospector(
        "https://psc", "c", "s", timeout=1, transport=httpx.MockTransport(down)
    )
    with pytest.raises(SourceIntrospectionUnavailable):
        await broken.is_active("tok")


# -- the stream closes the PACS answer -----------------------------------------------------


@pytest.mark.anyio
async def test_consumer_going_away_closes_the_pacs_stream(tmp_path: Path) -> None:
    study = write_demo_study(tmp_path, n_slices=2, seed=3)
    body = study.instance_files[-1].read_bytes()
    closed: list[bool] = []
    stack = AsyncExitStack()
    stack.callback(lambda: closed.append(True))

    async def endless() -> AsyncIterator[Part]:
        while True:
            await asyncio.sleep(0)
            yield Part({}, body)

    opened = _Upstream(stack, endless(), Part({}, body))
    encoder = _Encoder(parse_accept([]), "out", frozenset(), None)
    stream = _body(opened, encoder, "test")
    first = await stream.__anext__()
    assert first.startswith(b"--out\r\n") and body in first
    assert not closed
    await stream.aclose()  # what the response does when the client is gone
    assert closed == [True]


# -- what the token must be (issue 13 item 5) ----------------------------------------------

PSC_ISSUER = "https://psc.test/auth/realms/esante-wallet"
GOOD_TOKEN = PscToken(
    issuer=PSC_ISSUER,
    client_id="consumer-editor",
    scopes=frozenset({"openid", "scope_all"}),
    acr="eidas1",
    subject="f:uuid:899700218896",
    rpps="899700218896",
)


def test_an_acceptable_psc_token_passes() -> None:
    check_psc_token(GOOD_TOKEN, issuer=PSC_ISSUER + "/", allowed_clients={"consumer-editor"})
    strong = dataclasses.replace(GOOD_TOKEN, acr="eidas3")
    check_psc_token(strong, issuer=PSC_ISSUER, allowed_clients={"consumer-editor"})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"issuer": "https://elsewhere.test/realm"}, "issuer"),
        ({"issuer": None}, "issuer"),
        ({"client_id": "unknown-client"}, "client"),
        ({"client_id": None}, "client"),
        ({"scopes": frozenset({"openid"})}, "scope_all"),
        ({"acr": None}, "acr"),
        ({"acr": "eidas0"}, "acr"),
        ({"acr": "substantial"}, "acr"),
    ],
)
def test_each_unacceptable_psc_token_is_s403(change: dict[str, Any], reason: str) -> None:
    token = dataclasses.replace(GOOD_TOKEN, **change)
    with pytest.raises(SourceTokenInvalid) as caught:
        check_psc_token(token, issuer=PSC_ISSUER, allowed_clients={"consumer-editor"})
    assert caught.value.status == 403 and caught.value.code == "S403"
    assert reason in caught.value.detail
    assert caught.value.message == "Jeton d'accès invalide ou expiré."  # nothing else said


def test_an_empty_allow_list_refuses_every_client() -> None:
    with pytest.raises(SourceTokenInvalid):
        check_psc_token(GOOD_TOKEN, issuer=PSC_ISSUER, allowed_clients=frozenset())


def test_introspection_fields_read_and_kept_with_the_cached_answer() -> None:
    token = PscToken.from_introspection(
        {
            "active": True,
            "iss": PSC_ISSUER,
            "azp": "consumer-editor",  # Keycloak names the client azp
            "scope": "openid scope_all",
            "acr": "eidas1",
            "sub": "f:uuid:899700218896",
            "SubjectNameID": "899700218896",
        }
    )
    assert token == GOOD_TOKEN
    bare = PscToken.from_introspection({"active": True, "scope": 7, "client_id": ""})
    assert bare.scopes == frozenset() and bare.client_id is None and bare.rpps is None


@pytest.mark.anyio
async def test_introspection_answer_is_what_psc_said_and_cached() -> None:
    psc = FakePsc(exp_in=120)
    introspector = psc.introspector()
    first = await introspector.introspect("tok")
    assert first is not None and first.issuer == "https://psc" and first.acr == "eidas1"
    assert await introspector.introspect("tok") == first
    assert psc.introspections == 1
