"""OpenID Connect relying party for ProSantéConnect and FranceConnect(+).

- ProSantéConnect (DB.VI-CS.03): ``scope=openid scope_all``, ``acr_values=eidas1``; the
  issuer is configurable so that an editor's Proxy e-Santé can stand in front.
- FranceConnect+ (DB.VI-SO.114): ``acr_values`` eidas2/eidas3 and the returned ``acr``
  checked; identity scopes; id_token and userinfo signed (ES256) then encrypted to our
  RSA key (RSA-OAEP / A256GCM), signing keys from the provider's JWKS.
- FranceConnect with two factors (DB.VI-SO.137), optional: same as FC+, signed only.

state, nonce and PKCE (S256) on every round trip. Tokens stay in the server-side
session. Every provider failure becomes a :class:`~bff.errors.LoginFailed` here.

Interoperability with certified providers (issue 13, item 9; FranceConnect+ runs on
panva's ``oidc-provider``, tested against it in ``tests/e2e/test_oidc_interop.py``):

- JWE and JWS headers: parameters we do not know are ignored (RFC 7516 §4, RFC 7515 §4),
  unless the header lists them in ``crit`` (then refused); claims replicated in the JWE
  header (RFC 7519 §5.3: ``iss``, ``sub``, ``aud``) must equal the token's own.
- Client authentication at the token endpoint: ``client_secret_basic`` or
  ``client_secret_post``, as the discovery's ``token_endpoint_auth_methods_supported``
  says (OIDC Discovery: basic when absent); the Basic credentials are form-encoded before
  Base64 (RFC 6749 §2.3.1), so a secret with ``+``, ``/`` or ``:`` works.
- Signing keys: an unknown ``kid`` refetches the provider's JWKS (key rotation), at most
  once per :data:`JWKS_REFETCH_INTERVAL_S`.
- id_token claims (OIDC Core §3.1.3.7): ``iss``, ``aud`` (contains our client id), ``azp``
  (when present, our client id; required with several audiences), ``exp``, ``iat`` (not
  older than ``max_token_age``), ``auth_time`` (when present, not older than
  ``max_auth_age``), ``nonce``, then the ``acr``.
- The authorization response's ``iss`` (RFC 9207, sent by panva's provider): our issuer.
- Logout (OIDC RP-Initiated Logout 1.0): :meth:`OidcProvider.end_session_url` sends the
  browser to the provider's ``end_session_endpoint`` with ``id_token_hint`` and
  ``post_logout_redirect_uri``; the id_token is kept server side until then.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
from joserfc import jwe, jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from bff.errors import LoginFailed

log = logging.getLogger(__name__)

PSC_SCOPE = "openid scope_all"
IDENTITY_SCOPE = (
    "openid given_name family_name birthdate gender birthplace birthcountry preferred_username"
)
DISCOVERY_TTL_S = 3600.0
#: An unknown signing key id refetches the provider's JWKS at most this often.
JWKS_REFETCH_INTERVAL_S = 60.0
#: Clock skew tolerated on exp / iat / auth_time.
LEEWAY_S = 30
#: Client authentication methods we can use at the token endpoint, preferred first.
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True)
class ProviderConfig:
    name: str  # 'psc' | 'fcp' | 'fc'
    issuer: str
    client_id: str
    client_secret: str
    scope: str
    acr_values: str  # what we ask for
    accepted_acr: frozenset[str]  # what we accept back
    encrypted: bool  # id_token and userinfo are JWE (FC+)
    #: the id_token's auth_time, when present, must not be older than this (seconds)
    max_auth_age: float = 43200.0
    #: the id_token's iat must not be older than this (seconds)
    max_token_age: float = 300.0


@dataclass(frozen=True)
class LoginRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class LoginResult:
    id_claims: dict[str, Any]
    userinfo: dict[str, Any]
    #: the token answer; its ``id_token`` is the signed id_token, decrypted when the
    #: provider encrypted it (RP-Initiated Logout 1.0 §2: the id_token_hint the RP sends
    #: is the signed id_token contained within the encrypted one)
    tokens: dict[str, Any]


ENCRYPTION_KEY_PARAMETERS = {"use": "enc", "alg": "RSA-OAEP"}
#: JWE algorithms FC+ may use towards us (joserfc only allows the recommended ones unless told).
JWE_ALGORITHMS = ["RSA-OAEP", "RSA-OAEP-256", "A256GCM"]
JWS_ALGORITHMS = ["ES256", "RS256", "PS256"]


def generate_encryption_key() -> RSAKey:
    """A throw-away RSA key for FC+ encryption (demo and tests only)."""
    parameters: Any = {**ENCRYPTION_KEY_PARAMETERS, "kid": secrets.token_urlsafe(9)}
    return RSAKey.generate_key(2048, parameters, private=True)


def load_encryption_key(pem_or_jwk: str) -> RSAKey:
    """Our FC+ decryption key from a PEM or JSON JWK text (production: a secret file)."""
    text = pem_or_jwk.strip()
    data: Any = json.loads(text) if text.startswith("{") else text
    parameters: Any = dict(ENCRYPTION_KEY_PARAMETERS)
    key = RSAKey.import_key(data, parameters)
    if not key.is_private:
        raise ValueError("the FranceConnect+ encryption key must be a private key")
    return key


def client_basic_credentials(client_id: str, client_secret: str) -> str:
    """``Authorization`` value of client_secret_basic: id and secret form-encoded, then
    Base64 (RFC 6749 §2.3.1 and appendix B)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def token_auth_method(metadata: dict[str, Any]) -> str:
    """The client authentication method at the token endpoint, from discovery."""
    supported = metadata.get("token_endpoint_auth_methods_supported")
    if supported is None:
        supported = ["client_secret_basic"]  # OIDC Discovery 1.0 §3: the default
    if not isinstance(supported, list):
        raise LoginFailed("token_endpoint_auth_methods_supported is not a list", code="E431")
    for method in TOKEN_AUTH_METHODS:
        if method in supported:
            return method
    raise LoginFailed(f"no client authentication method in common: {supported!r}", code="E431")


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _add_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """Our public JWKS (what FC+ encrypts to), published at ``/auth/jwks``."""
    public = dict(key.as_dict(private=False))
    public.setdefault("use", "enc")
    public.setdefault("alg", "RSA-OAEP")
    if "kid" not in public:
        public["kid"] = key.thumbprint()
    return {"keys": [public]}


class OidcProvider:
    def __init__(
        self,
        config: ProviderConfig,
        *,
        timeout: float,
        decryption_key: Any = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.encrypted and decryption_key is None:
            raise ValueError(f"{config.name}: an encryption key is required")
        self.config = config
        self._timeout = timeout
        self._key = decryption_key
        self._transport = transport
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None
        self._fetched_at = 0.0
        self._jwks_fetched_at = 0.0

    # -- discovery ----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, transport=self._transport)

    async def _get(self, url: str) -> httpx.Response:
        try:
            async with self._http() as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            raise LoginFailed(f"{self.config.name}: {url}: {exc!r}", code="E431") from exc
        if response.status_code != 200:
            raise LoginFailed(
                f"{self.config.name}: {url}: HTTP {response.status_code}", code="E431"
            )
        return response

    async def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        stale = self._clock() - self._fetched_at > DISCOVERY_TTL_S
        if self._metadata is None or refresh or stale:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = (await self._get(url)).json()
            if metadata.get("issuer") != self.config.issuer:
                raise LoginFailed(f"{self.config.name}: issuer mismatch", code="E431")
            self._metadata = metadata
            await self._fetch_jwks()
            self._fetched_at = self._clock()
        return self._metadata

    async def _fetch_jwks(self) -> None:
        assert self._metadata is not None
        try:
            keys = KeySet.import_key_set((await self._get(self._metadata["jwks_uri"])).json())
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise LoginFailed(f"{self.config.name}: unusable JWKS: {exc!r}", code="E431") from exc
        self._jwks = keys
        self._jwks_fetched_at = self._clock()

    async def _signing_keys(self, kid: Any) -> KeySet:
        """The provider's keys; refetched once when ``kid`` is unknown (key rotation),
        at most once per :data:`JWKS_REFETCH_INTERVAL_S`."""
        if self._jwks is None:
            raise LoginFailed(f"{self.config.name}: no signing keys", code="E432")
        known = {key.kid for key in self._jwks.keys}
        if isinstance(kid, str) and kid not in known:
            if self._clock() - self._jwks_fetched_at >= JWKS_REFETCH_INTERVAL_S:
                log.info("%s: unknown signing key id, JWKS fetched again", self.config.name)
                await self._fetch_jwks()
            else:
                log.warning("%s: unknown signing key id, JWKS fetched recently", self.config.name)
        return self._jwks

    # -- the round trip -------------------------------------------------------------------

    async def start(self, redirect_uri: str) -> LoginRequest:
        metadata = await self.metadata()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        url = _add_query(
            metadata["authorization_endpoint"],
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.config.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
                "acr_values": self.config.acr_values,
            },
        )
        return LoginRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)

    async def finish(
        self,
        *,
        code: str,
        redirect_uri: str,
        nonce: str,
        code_verifier: str,
        response_issuer: str | None = None,
    ) -> LoginResult:
        """The callback's code exchanged and every token checked. ``response_issuer``: the
        ``iss`` parameter of the authorization response (RFC 9207), which must name this
        provider when sent, and be sent when discovery says the provider sends it."""
        metadata = await self.metadata()
        if response_issuer is not None and response_issuer != self.config.issuer:
            raise LoginFailed(f"{self.config.name}: authorization response iss", code="E431")
        if (
            response_issuer is None
            and metadata.get("authorization_response_iss_parameter_supported") is True
        ):
            raise LoginFailed(f"{self.config.name}: response without iss", code="E431")
        tokens = await self._token(
            metadata, code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        if not isinstance(tokens.get("id_token"), str) or not isinstance(
            tokens.get("access_token"), str
        ):
            raise LoginFailed(f"{self.config.name}: token answer incomplete", code="E432")
        claims, tokens["id_token"] = await self._verify_jwt(tokens["id_token"], nonce=nonce)
        acr = claims.get("acr")
        if acr not in self.config.accepted_acr:
            raise LoginFailed(f"{self.config.name}: acr {acr!r} not accepted", code="E433")
        userinfo = await self._userinfo(metadata["userinfo_endpoint"], tokens["access_token"])
        if userinfo.get("sub") != claims.get("sub"):
            raise LoginFailed(f"{self.config.name}: userinfo sub differs", code="E432")
        return LoginResult(id_claims=claims, userinfo=userinfo, tokens=tokens)

    async def _token(
        self, metadata: dict[str, Any], *, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token request (RFC 6749 §4.1.3, PKCE), authenticated as discovery says."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        if token_auth_method(metadata) == "client_secret_basic":
            headers["Authorization"] = client_basic_credentials(
                self.config.client_id, self.config.client_secret
            )
        else:
            data["client_id"] = self.config.client_id
            data["client_secret"] = self.config.client_secret
        name = self.config.name
        try:
            async with self._http() as client:
                response = await client.post(metadata["token_endpoint"], data=data, headers=headers)
        except httpx.HTTPError as exc:
            raise LoginFailed(f"{name}: token request: {exc!r}", code="E431") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            raise LoginFailed(
                f"{name}: token request: HTTP {response.status_code} {error!r}", code="E431"
            )
        if str(body.get("token_type", "")).lower() != "bearer":
            raise LoginFailed(f"{name}: token_type is not Bearer", code="E432")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            body["expires_at"] = int(self._clock() + expires_in)
        return body

    async def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            async with self._http() as client:
                response = await client.get(
                    endpoint, headers={"Authorization": f"Bearer {access_token}"}
                )
        except httpx.HTTPError as exc:
            raise LoginFailed(f"{self.config.name}: userinfo: {exc!r}", code="E431") from exc
        if response.status_code != 200:
            raise LoginFailed(
                f"{self.config.name}: userinfo HTTP {response.status_code}", code="E431"
            )
        if response.headers.get("content-type", "").startswith("application/jwt"):
            claims, _ = await self._verify_jwt(response.text.strip(), nonce=None)
            return claims
        if self.config.encrypted:
            raise LoginFailed(f"{self.config.name}: userinfo not encrypted", code="E432")
        data = response.json()
        if not isinstance(data, dict):
            raise LoginFailed(f"{self.config.name}: userinfo not an object", code="E432")
        return data

    async def _verify_jwt(self, token: str, *, nonce: str | None) -> tuple[dict[str, Any], str]:
        """Decrypt (FC+) then verify signature and claims of an id_token (``nonce`` given)
        or a userinfo JWT: its claims and the signed JWT."""
        name = self.config.name
        try:
            replicated: dict[str, Any] = {}
            if token.count(".") == 4:  # JWE compact serialization
                if self._key is None:
                    raise LoginFailed(f"{name}: unexpected JWE", code="E432")
                # RFC 7516 §4: header parameters we do not know are ignored, unless
                # listed in "crit" (joserfc refuses an unknown crit parameter).
                registry = jwe.JWERegistry(algorithms=JWE_ALGORITHMS, strict_check_header=False)
                decrypted = jwe.decrypt_compact(token, self._key, registry=registry)
                header = decrypted.protected
                replicated = {k: header[k] for k in ("iss", "sub", "aud") if k in header}
                token = (decrypted.plaintext or b"").decode("ascii")
            elif self.config.encrypted:
                raise LoginFailed(f"{name}: token not encrypted", code="E432")
            # RFC 7515 §4: the same for the JWS header.
            signatures = jws.JWSRegistry(algorithms=JWS_ALGORITHMS, strict_check_header=False)
            kid = jws.extract_compact(token.encode("ascii"), registry=signatures).protected.get(
                "kid"
            )
            keys = await self._signing_keys(kid)
            decoded = jwt.decode(token, keys, registry=signatures)
            claims = dict(decoded.claims)
            for claim, value in replicated.items():
                # RFC 7519 §5.3: a replicated claim must equal the claim it replicates.
                if claims.get(claim) != value:
                    raise LoginFailed(f"{name}: replicated {claim} differs", code="E432")
            self._validate_claims(claims, nonce=nonce)
        except LoginFailed:
            raise
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise LoginFailed(f"{name}: invalid JWT: {exc!r}", code="E432") from exc
        return claims, token

    def _validate_claims(self, claims: dict[str, Any], *, nonce: str | None) -> None:
        name, client_id = self.config.name, self.config.client_id
        options: dict[str, Any] = {"iss": {"essential": True, "value": self.config.issuer}}
        if nonce is None:  # userinfo (OIDC Core §5.3.2): aud, when signed, is our client
            if "aud" in claims:
                options["aud"] = {"value": client_id}
            jwt.JWTClaimsRegistry(now=self._now, leeway=LEEWAY_S, **options).validate(claims)
            return
        options["aud"] = {"essential": True, "value": client_id}
        options["nonce"] = {"essential": True, "value": nonce}
        options["exp"] = {"essential": True}
        options["iat"] = {"essential": True}
        jwt.JWTClaimsRegistry(now=self._now, leeway=LEEWAY_S, **options).validate(claims)
        # OIDC Core §3.1.3.7 items 4-5: azp is our client id when present, and must be
        # present when the token has several audiences.
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if "azp" in claims and claims["azp"] != client_id:
            raise LoginFailed(f"{name}: azp is another client", code="E432")
        if len(audiences) > 1 and "azp" not in claims:
            raise LoginFailed(f"{name}: several audiences without azp", code="E432")
        now = self._clock()
        iat = claims["iat"]
        if not _numeric(iat) or now - float(iat) > self.config.max_token_age + LEEWAY_S:
            raise LoginFailed(f"{name}: id_token too old (iat)", code="E432")
        if "auth_time" in claims:
            auth_time = claims["auth_time"]
            if not _numeric(auth_time) or float(auth_time) > now + LEEWAY_S:
                raise LoginFailed(f"{name}: auth_time invalid", code="E432")
            if now - float(auth_time) > self.config.max_auth_age + LEEWAY_S:
                raise LoginFailed(f"{name}: authentication too old (auth_time)", code="E432")

    def _now(self) -> int:
        return int(self._clock())

    # -- logout -------------------------------------------------------------------------

    async def end_session_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to end the session at the provider too (OIDC
        RP-Initiated Logout 1.0 §2), or None when the provider offers no
        ``end_session_endpoint`` (or cannot be reached: the local logout stands)."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except LoginFailed as exc:
            log.warning("%s: logout at the provider skipped: %s", self.config.name, exc.detail)
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        return _add_query(
            endpoint,
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": post_logout_redirect_uri,
                "client_id": self.config.client_id,
            },
        )


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
