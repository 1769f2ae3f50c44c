"""bff.idp: the local ProSanteConnect / FranceConnect+ / FranceConnect look-alike.

The client side is authlib itself (the library the BFF uses), so these tests prove the
provider speaks a protocol authlib accepts: discovery, PKCE S256, client_secret_basic,
id_token signature + claims (iss, aud, nonce, at_hash), and for FranceConnect+ the JWE
layer (RSA-OAEP + A256GCM) the BFF must remove before authlib's checks.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import pytest
from joserfc import jwe, jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette

from bff.idp.app import IdpClient, create_idp_app
from bff.idp.clients import load_clients
from bff.idp.users import IdpUser, load_users, parse_user

with warnings.catch_warnings():
    # authlib 1.9 warns when it falls back from `httpx2` to `httpx` (the locked dependency);
    # importing authlib.deprecate installs an "always" filter, so ours goes in after it.
    import authlib.deprecate  # noqa: F401

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from authlib.integrations.starlette_client import OAuth

pytestmark = pytest.mark.anyio

BASE = "http://idp.test"
REDIRECT = "http://viewer.test/auth/callback"
LOGOUT_REDIRECT = "http://viewer.test/au-revoir"
SECRET = "s3cret-for-tests-only-0123456789"
OTHER_SECRET = "another-secret-for-the-source-box"
DEMO_USERS = Path(__file__).resolve().parents[2] / "bff" / "idp" / "demo-users.json"
ENC_KEY = RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"})
URI_KEY = RSAKey.generate_key(2048, parameters={"kid": "enc-uri", "use": "enc"})
SIG_DECOY = RSAKey.generate_key(2048, parameters={"kid": "sig-1", "use": "sig"})
STATE = "state-0123456789abcdefghij"  # 26 characters
PKCE_VERIFIER = "v" * 43
PKCE_CHALLENGE = "7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM"  # S256 of "v" * 43


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # authlib checks exp against the real time

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _clients() -> dict[str, IdpClient]:
    return {
        "viewer": IdpClient(
            "viewer",
            SECRET,
            (REDIRECT,),
            jwks={"keys": [SIG_DECOY.as_dict(private=False), ENC_KEY.as_dict(private=False)]},
            post_logout_redirect_uris=(LOGOUT_REDIRECT,),
        ),
        "by-uri": IdpClient("by-uri", SECRET, (REDIRECT,), jwks_uri="http://keys.test/jwks"),
        "source": IdpClient("source", OTHER_SECRET, ("http://source.test/cb",)),
    }


def _client_jwks_server(request: httpx.Request) -> httpx.Response:
    if request.url.host == "keys.test":
        return httpx.Response(200, json={"keys": [URI_KEY.as_dict(private=False)]})
    return httpx.Response(503)


@pytest.fixture
def idp(clock: Clock) -> Starlette:
    return create_idp_app(
        load_users(DEMO_USERS),
        _clients(),
        issuer_base=BASE,
        clock=clock,
        http_transport=httpx.MockTransport(_client_jwks_server),
    )


@pytest.fixture
async def browser(idp: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=idp), base_url=BASE) as c:
        yield c


def _authlib(idp: Starlette, realm: str, scope: str, client_id: str = "viewer") -> Any:
    oauth = OAuth()
    return oauth.register(
        realm,
        client_id=client_id,
        client_secret=SECRET,
        server_metadata_url=f"{BASE}/{realm}/.well-known/openid-configuration",
        client_kwargs={
            "scope": scope,
            "code_challenge_method": "S256",
            # authlib's clients are built on httpx2 (the successor of httpx).
            "transport": httpx2.ASGITransport(app=idp),
        },
    )


async def _login(browser: httpx.AsyncClient, url: str, username: str) -> dict[str, str]:
    """Follow the authorization URL like a person: GET the form, POST the username."""
    form = await browser.get(url)
    assert form.status_code == 200, form.text
    assert "<script" not in form.text.lower()
    assert 'name="username"' in form.text
    match = re.search(r'name="request_id" value="([^"]+)"', form.text)
    assert match
    realm = urlsplit(url).path.split("/")[1]
    done = await browser.post(
        f"/{realm}/authorize", data={"request_id": match.group(1), "username": username}
    )
    assert done.status_code == 302, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _authorize_url(realm: str, **overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "client_id": "viewer",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid scope_all" if realm == "psc" else "openid identite_pivot",
        "state": STATE,
        "nonce": "nonce-123",
        "code_challenge": PKCE_CHALLENGE,
        "code_challenge_method": "S256",
        "acr_values": {"psc": "eidas1", "fcp": "eidas2", "fc": "eidas1"}[realm],
    }
    params.update(overrides)
    return f"{BASE}/{realm}/authorize?" + urlencode({k: v for k, v in params.items() if v})


async def _code(browser: httpx.AsyncClient, realm: str, username: str, **kw: str | None) -> str:
    answer = await _login(browser, _authorize_url(realm, **kw), username)
    assert answer["state"] == STATE
    return answer["code"]


async def _exchange(
    browser: httpx.AsyncClient, realm: str, code: str, **overrides: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": PKCE_VERIFIER,
    }
    data.update(overrides)
    return await browser.post(f"/{realm}/token", data=data, auth=("viewer", SECRET))


def _decrypt(token: str, key: RSAKey = ENC_KEY) -> str:
    assert token.count(".") == 4, "FranceConnect+ tokens are JWE (5 parts)"
    clear = jwe.decrypt_compact(token, key, algorithms=["RSA-OAEP", "A256GCM"])
    assert clear.protected["alg"] == "RSA-OAEP"
    assert clear.protected["enc"] == "A256GCM"
    assert clear.protected["cty"] == "JWT"
    assert clear.protected["kid"] == key.kid
    assert clear.plaintext is not None
    return clear.plaintext.decode("ascii")


async def _verify(browser: httpx.AsyncClient, realm: str, signed: str, alg: str) -> Any:
    keys = KeySet.import_key_set((await browser.get(f"/{realm}/jwks")).json())
    return jwt.decode(signed, keys, algorithms=[alg])


# --- discovery and keys ------------------------------------------------------------------


async def test_discovery_describes_each_realm(browser: httpx.AsyncClient) -> None:
    psc = (await browser.get("/psc/.well-known/openid-configuration")).json()
    fcp = (await browser.get("/fcp/.well-known/openid-configuration")).json()
    fc = (await browser.get("/fc/.well-known/openid-configuration")).json()
    assert psc["issuer"] == f"{BASE}/psc"
    assert psc["token_endpoint"] == f"{BASE}/psc/token"
    assert psc["introspection_endpoint"] == f"{BASE}/psc/introspect"
    assert psc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert psc["acr_values_supported"] == ["eidas1"]
    assert fcp["acr_values_supported"] == ["eidas2", "eidas3"]
    assert fc["acr_values_supported"] == ["eidas1", "eidas2"]
    assert fcp["id_token_signing_alg_values_supported"] == ["ES256"]
    assert fcp["id_token_encryption_alg_values_supported"] == ["RSA-OAEP"]
    assert fcp["id_token_encryption_enc_values_supported"] == ["A256GCM"]
    assert "id_token_encryption_alg_values_supported" not in fc
    assert "introspection_endpoint" not in fcp
    for meta in (psc, fcp, fc):
        assert meta["code_challenge_methods_supported"] == ["S256"]
        assert meta["response_types_supported"] == ["code"]
        assert meta["end_session_endpoint"].endswith("/logout")
        assert set(meta["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
        }
    assert "identite_pivot" in fcp["scopes_supported"]
    assert (await browser.get("/nope/.well-known/openid-configuration")).status_code == 404


async def test_jwks_publish_public_signing_keys_only(browser: httpx.AsyncClient) -> None:
    psc = (await browser.get("/psc/jwks")).json()["keys"]
    fcp = (await browser.get("/fcp/jwks")).json()["keys"]
    assert [(k["kty"], k["alg"], k["use"]) for k in psc] == [("RSA", "RS256", "sig")]
    assert [(k["kty"], k["crv"], k["alg"]) for k in fcp] == [("EC", "P-256", "ES256")]
    for key in psc + fcp:
        assert key["kid"]
        assert "d" not in key


# --- full flows through authlib -----------------------------------------------------------


async def test_psc_flow_with_authlib(idp: Starlette, browser: httpx.AsyncClient) -> None:
    client = _authlib(idp, "psc", "openid scope_all")
    request = await client.create_authorization_url(REDIRECT, acr_values="eidas1")
    answer = await _login(browser, request["url"], "dr.radiologue")
    assert answer["state"] == request["state"]
    token = await client.fetch_access_token(
        redirect_uri=REDIRECT, code=answer["code"], code_verifier=request["code_verifier"]
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 120
    assert token["id_token"].count(".") == 2
    claims = await client.parse_id_token(token, nonce=request["nonce"])  # iss, aud, at_hash
    assert claims["iss"] == f"{BASE}/psc"
    assert claims["aud"] == "viewer"
    assert claims["acr"] == "eidas1"
    assert claims["sub"].startswith("f:") and claims["sub"].endswith(":810001234567")
    info = await client.userinfo(token=token)
    assert info["SubjectNameID"] == "810001234567"
    assert info["sub"] == claims["sub"]
    exercise = info["SubjectRefPro"]["exercices"][0]
    assert (exercise["codeProfession"], exercise["codeSavoirFaire"]) == ("10", "SM44")
    assert exercise["activities"][0]["raisonSocialeSite"]


async def test_fcp_flow_tokens_are_encrypted_to_the_client(
    idp: Starlette, browser: httpx.AsyncClient
) -> None:
    scope = "openid given_name family_name birthdate gender birthplace birthcountry"
    client = _authlib(idp, "fcp", scope)
    request = await client.create_authorization_url(REDIRECT, acr_values="eidas2 eidas3")
    answer = await _login(browser, request["url"], "dominique.pat-trois")
    token = await client.fetch_access_token(
        redirect_uri=REDIRECT, code=answer["code"], code_verifier=request["code_verifier"]
    )
    assert token["expires_in"] == 60
    token["id_token"] = _decrypt(token["id_token"])  # what the BFF does before authlib
    claims = await client.parse_id_token(token, nonce=request["nonce"])
    assert claims["acr"] == "eidas3"  # the strongest level asked for
    assert claims["amr"] == ["pwd", "mfa"]
    assert re.fullmatch(r"[0-9a-f]{64}v1", claims["sub"])

    response = await browser.get(
        "/fcp/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.headers["content-type"] == "application/jwt"
    info = (await _verify(browser, "fcp", _decrypt(response.text), "ES256")).claims
    assert info["sub"] == claims["sub"]
    assert info["iss"] == f"{BASE}/fcp" and info["aud"] == "viewer"
    expected = {
        "given_name": "DOMINIQUE",
        "family_name": "PAT-TROIS",
        "birthdate": "1979-03-28",
        "gender": "female",
        "birthplace": "63220",
        "birthcountry": "99100",
    }
    assert {k: info[k] for k in expected} == expected


async def test_fcp_userinfo_releases_only_granted_scopes(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "fcp", "jean.martin", scope="openid given_name family_name")
    token = (await _exchange(browser, "fcp", code)).json()
    assert token["scope"] == "openid given_name family_name"
    response = await browser.get(
        "/fcp/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    info = (await _verify(browser, "fcp", _decrypt(response.text), "ES256")).claims
    assert info["given_name"] == "JEAN PIERRE"
    assert "birthdate" not in info and "preferred_username" not in info


async def test_fcp_identite_pivot_alias_adds_usage_name(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "fcp", "jean.martin", scope="openid identite_pivot")
    token = (await _exchange(browser, "fcp", code)).json()
    response = await browser.get(
        "/fcp/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    info = (await _verify(browser, "fcp", _decrypt(response.text), "ES256")).claims
    assert info["birthplace"] == "75056" and info["birthcountry"] == "99100"
    assert info["preferred_username"] == "DURAND"


async def test_fcp_encryption_key_fetched_from_jwks_uri(browser: httpx.AsyncClient) -> None:
    url = _authorize_url("fcp", client_id="by-uri")
    code = (await _login(browser, url, "dominique.pat-trois"))["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": PKCE_VERIFIER,
    }
    response = await browser.post("/fcp/token", data=data, auth=("by-uri", SECRET))
    assert response.status_code == 200, response.text
    signed = _decrypt(response.json()["id_token"], URI_KEY)
    assert (await _verify(browser, "fcp", signed, "ES256")).claims["aud"] == "by-uri"


async def test_fc_tokens_are_signed_not_encrypted(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "fc", "dominique.fc", acr_values="eidas1 eidas2")
    token = (await _exchange(browser, "fc", code)).json()
    assert token["id_token"].count(".") == 2
    claims = (await _verify(browser, "fc", token["id_token"], "ES256")).claims
    assert claims["acr"] == "eidas2" and claims["nonce"] == "nonce-123"
    response = await browser.get(
        "/fc/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.headers["content-type"] == "application/jwt"
    info = (await _verify(browser, "fc", response.text, "ES256")).claims
    assert info["family_name"] == "PAT-TROIS"


async def test_acr_override_simulates_weaker_assurance(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "fcp", "dominique.faible", acr_values="eidas2")
    token = (await _exchange(browser, "fcp", code)).json()
    claims = (await _verify(browser, "fcp", _decrypt(token["id_token"]), "ES256")).claims
    assert claims["acr"] == "eidas1"  # the BFF must refuse it


# --- token endpoint ------------------------------------------------------------------------


async def test_wrong_code_verifier_is_invalid_grant(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    response = await _exchange(browser, "psc", code, code_verifier="w" * 43)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    # the code was consumed by the failed attempt
    response = await _exchange(browser, "psc", code)
    assert response.json()["error"] == "invalid_grant"


async def test_code_replay_is_refused_and_revokes_tokens(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    first = await _exchange(browser, "psc", code)
    assert first.status_code == 200
    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await browser.get("/psc/userinfo", headers=bearer)).status_code == 200
    replay = await _exchange(browser, "psc", code)
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")
    assert (await browser.get("/psc/userinfo", headers=bearer)).status_code == 401


async def test_code_expires_after_30_seconds(browser: httpx.AsyncClient, clock: Clock) -> None:
    code = await _code(browser, "fcp", "dominique.pat-trois")
    clock.now += 31
    response = await _exchange(browser, "fcp", code)
    assert response.json()["error"] == "invalid_grant"


async def test_redirect_uri_must_match_at_token_time(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    response = await _exchange(browser, "psc", code, redirect_uri="http://viewer.test/other")
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth", ["basic", "post", "unknown-client"])
async def test_wrong_client_secret_is_invalid_client(browser: httpx.AsyncClient, auth: str) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    data["code_verifier"] = PKCE_VERIFIER
    if auth == "basic":
        response = await browser.post("/psc/token", data=data, auth=("viewer", SECRET + "x"))
    else:
        client_id = "viewer" if auth == "post" else "nobody"
        data.update(client_id=client_id, client_secret=SECRET[:-1])
        response = await browser.post("/psc/token", data=data)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in response.headers
    # the code is still good for the real client
    assert (await _exchange(browser, "psc", code)).status_code == 200


async def test_client_secret_post_is_accepted(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": PKCE_VERIFIER,
        "client_id": "viewer",
        "client_secret": SECRET,
    }
    response = await browser.post("/psc/token", data=data)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


# --- authorization request validation -----------------------------------------------------


async def test_unknown_redirect_uri_shows_french_page(browser: httpx.AsyncClient) -> None:
    response = await browser.get(_authorize_url("fcp", redirect_uri="http://evil.test/cb"))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "adresse de retour" in response.text
    assert 'lang="fr"' in response.text
    assert "evil.test" not in response.text


async def test_unknown_client_shows_french_page(browser: httpx.AsyncClient) -> None:
    response = await browser.get(_authorize_url("psc", client_id="intrus"))
    assert response.status_code == 400 and "location" not in response.headers
    assert "inconnu" in response.text


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"state": None}, "invalid_request"),
        ({"state": "too-short"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "given_name"}, "invalid_scope"),
        ({"scope": "openid address"}, "invalid_scope"),
        ({"acr_values": "eidas1"}, "invalid_request"),
        ({"acr_values": None}, "invalid_request"),
    ],
)
async def test_bad_fcp_request_is_sent_back_with_error(
    browser: httpx.AsyncClient, override: dict[str, str | None], error: str
) -> None:
    response = await browser.get(_authorize_url("fcp", **override))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == [error]
    assert "code" not in query


async def test_psc_defaults_to_eidas1(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue", acr_values=None)
    token = (await _exchange(browser, "psc", code)).json()
    assert (await _verify(browser, "psc", token["id_token"], "RS256")).claims["acr"] == "eidas1"


async def test_login_refuses_unknown_user_and_other_realm(browser: httpx.AsyncClient) -> None:
    form = await browser.get(_authorize_url("fcp"))
    match = re.search(r'name="request_id" value="([^"]+)"', form.text)
    assert match
    for username in ("personne", "dr.radiologue", "dominique.fc"):
        again = await browser.post(
            "/fcp/authorize", data={"request_id": match.group(1), "username": username}
        )
        assert again.status_code == 401 and "location" not in again.headers
        assert "Identifiant inconnu" in again.text
    ok = await browser.post(
        "/fcp/authorize", data={"request_id": match.group(1), "username": "dominique.pat-trois"}
    )
    assert ok.status_code == 302
    # the pending request is single use
    stale = await browser.post(
        "/fcp/authorize", data={"request_id": match.group(1), "username": "dominique.pat-trois"}
    )
    assert stale.status_code == 400 and "expiré" in stale.text


async def test_xss_attempts_are_never_reflected(browser: httpx.AsyncClient) -> None:
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    for url in (
        _authorize_url("fcp", redirect_uri=f"http://viewer.test/{evil}"),
        _authorize_url("fcp", client_id=evil),
        _authorize_url("fcp", state=STATE + evil, redirect_uri=evil),
    ):
        response = await browser.get(url)
        assert response.status_code == 400
        assert "<script" not in response.text and "onerror" not in response.text
        assert "script-src" not in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]
    # trusted redirect_uri: the state goes back URL-encoded, never as markup
    response = await browser.get(_authorize_url("fcp", state=STATE + evil, nonce=None))
    location = response.headers["location"]
    assert "<" not in location and '"' not in location
    assert parse_qs(urlsplit(location).query)["state"] == [STATE + evil]
    form = await browser.get(_authorize_url("fcp", state=STATE + evil))
    assert "<script" not in form.text and "alert" not in form.text
    match = re.search(r'name="request_id" value="([^"]+)"', form.text)
    assert match
    again = await browser.post(
        "/fcp/authorize", data={"request_id": match.group(1), "username": evil}
    )
    assert "<script" not in again.text and "onerror" not in again.text


# --- userinfo, introspection, logout -------------------------------------------------------


async def test_userinfo_with_expired_token_is_401(browser: httpx.AsyncClient, clock: Clock) -> None:
    code = await _code(browser, "fcp", "dominique.pat-trois")
    token = (await _exchange(browser, "fcp", code)).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await browser.get("/fcp/userinfo", headers=bearer)).status_code == 200
    clock.now += 61
    response = await browser.get("/fcp/userinfo", headers=bearer)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    missing = await browser.get("/fcp/userinfo")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")


async def test_psc_introspection(browser: httpx.AsyncClient, clock: Clock) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    token = (await _exchange(browser, "psc", code)).json()["access_token"]
    source = ("source", OTHER_SECRET)  # the Source DRIMbox checks the Consumer's token
    answer = (await browser.post("/psc/introspect", data={"token": token}, auth=source)).json()
    assert answer["active"] is True
    assert answer["client_id"] == "viewer" and answer["iss"] == f"{BASE}/psc"
    assert answer["scope"] == "openid scope_all" and answer["token_type"] == "Bearer"
    assert answer["sub"].endswith(":810001234567")
    assert answer["exp"] - answer["iat"] == 120
    unknown = await browser.post("/psc/introspect", data={"token": "nope"}, auth=source)
    assert unknown.json() == {"active": False}
    anonymous = await browser.post("/psc/introspect", data={"token": token})
    assert anonymous.status_code == 401
    clock.now += 121
    expired = await browser.post("/psc/introspect", data={"token": token}, auth=source)
    assert expired.json() == {"active": False}
    assert (await browser.post("/fcp/introspect", data={"token": token})).status_code == 404


async def test_logout_redirects_only_to_registered_uri(browser: httpx.AsyncClient) -> None:
    code = await _code(browser, "psc", "dr.radiologue")
    token = (await _exchange(browser, "psc", code)).json()
    params = {"id_token_hint": token["id_token"], "state": "bye-state"}
    bad = await browser.get(
        "/psc/logout", params={**params, "post_logout_redirect_uri": "http://evil.test/"}
    )
    assert bad.status_code == 400 and "location" not in bad.headers
    good = await browser.get(
        "/psc/logout", params={**params, "post_logout_redirect_uri": LOGOUT_REDIRECT}
    )
    assert good.status_code == 302
    assert good.headers["location"] == f"{LOGOUT_REDIRECT}?state=bye-state"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await browser.get("/psc/userinfo", headers=bearer)).status_code == 401
    forged = await browser.get("/psc/logout", params={"id_token_hint": "a.b.c"})
    assert forged.status_code == 400


# --- files ---------------------------------------------------------------------------------


def test_demo_users_file() -> None:
    users = load_users(DEMO_USERS)
    ans = users["dominique.pat-trois"]
    assert ans.realm == "fcp" and ans.acr is None
    assert ans.claims["family_name"] == "PAT-TROIS" and ans.claims["birthplace"] == "63220"
    assert users["dominique.faible"].acr == "eidas1"
    assert users["dominique.fc"].realm == "fc"
    assert users["jean.martin"].claims["birthdate"] != ans.claims["birthdate"]
    assert users["dr.radiologue"].realm == "psc"


def test_users_are_checked() -> None:
    claims = dict(load_users(DEMO_USERS)["dominique.pat-trois"].claims)
    good: dict[str, Any] = {"username": "x", "realm": "fcp", "claims": claims}
    assert isinstance(parse_user(good), IdpUser)
    for bad in (
        {**good, "realm": "google"},
        {**good, "acr": "eidas9"},
        {**good, "claims": {**claims, "birthcountry": "France"}},
        {**good, "claims": {**claims, "birthcountry": "99134"}},  # abroad + INSEE
        {**good, "claims": {**claims, "sub": "chosen"}},
    ):
        with pytest.raises(ValueError):
            parse_user(bad)


def test_clients_file(tmp_path: Path) -> None:
    entry = {
        "client_id": "drimbox-viewer",
        "client_secret": SECRET,
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGOUT_REDIRECT],
        "jwks_uri": "http://viewer.test/jwks",
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [entry]}), encoding="utf-8")
    client = load_clients(path)["drimbox-viewer"]
    assert client.post_logout_redirect_uris == (LOGOUT_REDIRECT,)
    assert SECRET not in repr(client)
    private = {**entry, "jwks": {"keys": [ENC_KEY.as_dict(private=True)]}}
    path.write_text(json.dumps({"clients": [private]}), encoding="utf-8")
    with pytest.raises(ValueError, match="public"):
        load_clients(path)
