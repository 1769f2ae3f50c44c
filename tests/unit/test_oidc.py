"""The OIDC relying party (bff/auth/oidc.py) against a provider whose every answer a test
shapes: what certified providers do that our look-alike does not (replicated claims and
unknown parameters in JOSE headers, RFC 7516 §4 / RFC 7519 §5.3; client authentication
chosen from discovery and form-encoded, RFC 6749 §2.3.1; key rotation), and each refusal
(crit, azp, iat, auth_time). The real certified provider runs in
tests/e2e/test_oidc_interop.py."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import pytest
from joserfc import jwe, jws, jwt
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter

from bff.auth.oidc import (
    JWKS_REFETCH_INTERVAL_S,
    OidcProvider,
    ProviderConfig,
    client_basic_credentials,
    generate_encryption_key,
)
from bff.errors import LoginFailed

pytestmark = pytest.mark.anyio

ISSUER = "https://op.test"
CLIENT_ID = "drimbox viewer:1"  # a space and a colon: both must be form-encoded
SECRET = "s+cr/t:=%é"  # "+" and "/" are what broke client_secret_basic (issue 13)
REDIRECT = "https://vi1.test/auth/callback"
NONCE = "nonce-0123456789"
CRIT_PARAMETER = {"x-must": HeaderParameter("a test parameter", "str")}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeOp:
    """One provider: discovery, JWKS, token and userinfo, each shaped by the test."""

    clock: Clock
    encryption_key: RSAKey
    signing_key: ECKey = field(
        default_factory=lambda: ECKey.generate_key("P-256", {"kid": "sig-1", "alg": "ES256"})
    )
    auth_methods: list[str] | None = field(
        default_factory=lambda: ["client_secret_basic", "client_secret_post"]
    )
    claims: dict[str, Any] = field(default_factory=dict)  # id_token overrides
    jws_header: dict[str, Any] = field(default_factory=dict)
    jwe_header: dict[str, Any] = field(default_factory=dict)
    end_session: bool = True
    advertise_response_iss: bool = False
    token_requests: list[httpx.Request] = field(default_factory=list)
    jwks_requests: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            meta: dict[str, Any] = {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token",
                "userinfo_endpoint": f"{ISSUER}/userinfo",
                "jwks_uri": f"{ISSUER}/jwks",
            }
            if self.auth_methods is not None:
                meta["token_endpoint_auth_methods_supported"] = self.auth_methods
            if self.end_session:
                meta["end_session_endpoint"] = f"{ISSUER}/session/end"
            if self.advertise_response_iss:
                meta["authorization_response_iss_parameter_supported"] = True
            return httpx.Response(200, json=meta)
        if path == "/jwks":
            self.jwks_requests += 1
            return httpx.Response(200, json={"keys": [self.signing_key.as_dict(private=False)]})
        if path == "/token":
            self.token_requests.append(request)
            return httpx.Response(
                200,
                json={
                    "access_token": "at-1",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "id_token": self.id_token(),
                },
            )
        if path == "/userinfo":
            claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "patient-1", "given_name": "X"}
            return httpx.Response(
                200, content=self.seal(claims), headers={"content-type": "application/jwt"}
            )
        return httpx.Response(404)

    def id_token(self) -> str:
        now = int(self.clock())
        claims = {
            "iss": ISSUER,
            "sub": "patient-1",
            "aud": CLIENT_ID,
            "exp": now + 60,
            "iat": now,
            "auth_time": now - 5,
            "nonce": NONCE,
            "acr": "eidas2",
            **self.claims,
        }
        return self.seal({k: v for k, v in claims.items() if v is not None})

    def seal(self, claims: dict[str, Any]) -> str:
        """Signed ES256 then encrypted RSA-OAEP / A256GCM, as FranceConnect+ does, with
        the headers the test asked for."""
        header = {"alg": "ES256", "kid": self.signing_key.kid, "typ": "JWT", **self.jws_header}
        signing = jws.JWSRegistry(
            header_registry=CRIT_PARAMETER, algorithms=["ES256"], strict_check_header=False
        )
        signed = jwt.encode(header, claims, self.signing_key, registry=signing)
        protected = {
            "alg": "RSA-OAEP",
            "enc": "A256GCM",
            "cty": "JWT",
            "kid": self.encryption_key.kid,
            **self.jwe_header,
        }
        encrypting = jwe.JWERegistry(
            header_registry=CRIT_PARAMETER,
            algorithms=["RSA-OAEP", "A256GCM"],
            strict_check_header=False,
        )
        return jwe.encrypt_compact(protected, signed, self.encryption_key, registry=encrypting)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def op(clock: Clock) -> FakeOp:
    return FakeOp(clock, generate_encryption_key())


def rp(op: FakeOp, **config: Any) -> OidcProvider:
    return OidcProvider(
        ProviderConfig(
            name="fcp",
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            scope="openid given_name",
            acr_values="eidas2",
            accepted_acr=frozenset({"eidas2", "eidas3"}),
            encrypted=True,
            **config,
        ),
        timeout=5,
        decryption_key=op.encryption_key,
        transport=httpx.MockTransport(op.handler),
        clock=op.clock,
    )


async def login(provider: OidcProvider) -> dict[str, Any]:
    result = await provider.finish(
        code="code-1", redirect_uri=REDIRECT, nonce=NONCE, code_verifier="v" * 43
    )
    return result.id_claims


async def refused(provider: OidcProvider, code: str = "E432") -> str:
    with pytest.raises(LoginFailed) as caught:
        await login(provider)
    assert caught.value.code == code
    return caught.value.detail


# -- what certified providers send ------------------------------------------------------


async def test_replicated_claims_and_unknown_header_parameters_are_accepted(op: FakeOp) -> None:
    """panva's oidc-provider copies iss and aud into the JWE header (RFC 7519 §5.3); an
    unknown parameter is ignored (RFC 7516 §4, RFC 7515 §4)."""
    op.jwe_header = {"iss": ISSUER, "aud": CLIENT_ID, "x-vendor": "1"}
    op.jws_header = {"x-vendor": "2"}
    claims = await login(rp(op))
    assert claims["sub"] == "patient-1" and claims["acr"] == "eidas2"


async def test_a_replicated_claim_that_differs_is_refused(op: FakeOp) -> None:
    op.jwe_header = {"iss": "https://another.test"}
    assert "replicated iss" in await refused(rp(op))


async def test_an_unknown_critical_header_parameter_is_refused(op: FakeOp) -> None:
    op.jwe_header = {"crit": ["x-must"], "x-must": "understand me"}
    await refused(rp(op))
    op.jwe_header = {}
    op.jws_header = {"crit": ["x-must"], "x-must": "understand me"}
    await refused(rp(op))


# -- client authentication at the token endpoint ---------------------------------------


async def test_client_secret_basic_is_form_encoded_before_base64(op: FakeOp) -> None:
    await login(rp(op))
    (request,) = op.token_requests
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    raw_id, _, raw_secret = base64.b64decode(value).decode("utf-8").partition(":")
    assert raw_id == "drimbox+viewer%3A1"  # RFC 6749 appendix B: form encoding
    assert (unquote_plus(raw_id), unquote_plus(raw_secret)) == (CLIENT_ID, SECRET)
    body = parse_qs(request.content.decode())
    assert "client_secret" not in body and body["grant_type"] == ["authorization_code"]
    assert client_basic_credentials("a", "b") == "Basic " + base64.b64encode(b"a:b").decode()


async def test_client_secret_post_when_discovery_offers_only_that(op: FakeOp) -> None:
    op.auth_methods = ["client_secret_post", "private_key_jwt"]
    await login(rp(op))
    (request,) = op.token_requests
    assert "authorization" not in request.headers
    body = parse_qs(request.content.decode())
    assert body["client_id"] == [CLIENT_ID] and body["client_secret"] == [SECRET]


async def test_basic_when_discovery_is_silent_and_refusal_when_nothing_fits(op: FakeOp) -> None:
    op.auth_methods = None  # OIDC Discovery: client_secret_basic by default
    await login(rp(op))
    assert op.token_requests[-1].headers["authorization"].startswith("Basic ")
    op.auth_methods = ["private_key_jwt"]
    await refused(rp(op), "E431")


# -- signing keys ------------------------------------------------------------------------


async def test_an_unknown_kid_refetches_the_jwks_at_most_once_a_minute(
    op: FakeOp, clock: Clock
) -> None:
    provider = rp(op)
    await login(provider)
    assert op.jwks_requests == 1
    op.signing_key = ECKey.generate_key("P-256", {"kid": "sig-2", "alg": "ES256"})  # rotation
    clock.now += JWKS_REFETCH_INTERVAL_S
    await login(provider)  # the new kid: fetched again, accepted
    assert op.jwks_requests == 2
    op.signing_key = ECKey.generate_key("P-256", {"kid": "sig-3", "alg": "ES256"})
    clock.now += 1
    await refused(provider)  # a second unknown kid within the minute: no new fetch
    assert op.jwks_requests == 2
    clock.now += JWKS_REFETCH_INTERVAL_S
    await login(provider)
    assert op.jwks_requests == 3


# -- id_token claims ---------------------------------------------------------------------


async def test_azp_must_be_our_client_and_is_required_with_several_audiences(
    op: FakeOp,
) -> None:
    op.claims = {"azp": "another-client"}
    assert "azp" in await refused(rp(op))
    op.claims = {"aud": [CLIENT_ID, "another-client"]}
    assert "azp" in await refused(rp(op))
    op.claims = {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}
    assert (await login(rp(op)))["azp"] == CLIENT_ID
    op.claims = {"aud": ["another-client"], "azp": CLIENT_ID}
    await refused(rp(op))  # not for us at all


async def test_an_old_iat_or_auth_time_is_refused(op: FakeOp, clock: Clock) -> None:
    now = int(clock())
    op.claims = {"iat": now - 400}
    assert "iat" in await refused(rp(op, max_token_age=300))
    op.claims = {"auth_time": now - 4000}
    assert "auth_time" in await refused(rp(op, max_auth_age=3600))
    op.claims = {"auth_time": now + 3600}
    assert "auth_time" in await refused(rp(op))
    op.claims = {"auth_time": None}  # optional: absent is fine
    await login(rp(op, max_auth_age=3600))
    op.claims = {"iat": None}  # required by OIDC Core
    await refused(rp(op))


# -- logout ------------------------------------------------------------------------------


async def test_end_session_url_carries_the_id_token_hint_and_the_way_back(op: FakeOp) -> None:
    url = await rp(op).end_session_url("the.id.token", "https://vi1.test/auth/logged-out")
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{ISSUER}/session/end"
    query = parse_qs(parts.query)
    assert query["id_token_hint"] == ["the.id.token"]
    assert query["post_logout_redirect_uri"] == ["https://vi1.test/auth/logged-out"]
    op.end_session = False
    assert await rp(op).end_session_url("the.id.token", "https://vi1.test/") is None


async def test_the_id_token_kept_for_logout_is_the_signed_one_inside_the_jwe(op: FakeOp) -> None:
    """RP-Initiated Logout 1.0 §2: an encrypted id_token is sent as id_token_hint in its
    signed form (the provider cannot decrypt what was encrypted to us)."""
    result = await rp(op).finish(
        code="code-1", redirect_uri=REDIRECT, nonce=NONCE, code_verifier="v" * 43
    )
    hint = result.tokens["id_token"]
    assert hint.count(".") == 2
    assert jws.extract_compact(hint.encode()).protected["alg"] == "ES256"


async def test_the_authorization_response_iss_must_name_this_provider(op: FakeOp) -> None:
    """RFC 9207 (mix-up defense): an iss in the authorization response is our issuer."""

    async def finish(response_issuer: str | None) -> None:
        await rp(op).finish(
            code="code-1",
            redirect_uri=REDIRECT,
            nonce=NONCE,
            code_verifier="v" * 43,
            response_issuer=response_issuer,
        )

    await finish(ISSUER)
    await finish(None)  # this provider does not say it sends iss
    with pytest.raises(LoginFailed) as caught:
        await finish("https://another-op.test")
    assert caught.value.code == "E431"
    assert op.token_requests and len(op.token_requests) == 2  # the code was not sent on


async def test_a_provider_that_sends_iss_must_send_it(op: FakeOp) -> None:
    op.advertise_response_iss = True
    with pytest.raises(LoginFailed) as caught:
        await login(rp(op))
    assert caught.value.code == "E431" and not op.token_requests
