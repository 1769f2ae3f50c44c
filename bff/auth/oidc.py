"""OpenID Connect relying party for ProSantéConnect and FranceConnect(+), with authlib.

- ProSantéConnect (DB.VI-CS.03): ``scope=openid scope_all``, ``acr_values=eidas1``; the
  issuer is configurable so that an editor's Proxy e-Santé can stand in front.
- FranceConnect+ (DB.VI-SO.114): ``acr_values`` eidas2/eidas3 and the returned ``acr``
  checked; identity scopes; id_token and userinfo signed (ES256) then encrypted to our
  RSA key (RSA-OAEP / A256GCM), signing keys from the provider's JWKS.
- FranceConnect with two factors (DB.VI-SO.137), optional: same as FC+, signed only.

state, nonce and PKCE (S256) on every round trip. Tokens stay in the server-side
session. Every provider failure becomes a :class:`~bff.errors.LoginFailed` here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwe, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from bff.errors import LoginFailed

log = logging.getLogger(__name__)

PSC_SCOPE = "openid scope_all"
IDENTITY_SCOPE = (
    "openid given_name family_name birthdate gender birthplace birthcountry preferred_username"
)
DISCOVERY_TTL_S = 3600.0


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
    tokens: dict[str, Any]


ENCRYPTION_KEY_PARAMETERS = {"use": "enc", "alg": "RSA-OAEP"}
#: JWE algorithms FC+ may use towards us (joserfc only allows the recommended ones unless told).
JWE_ALGORITHMS = ["RSA-OAEP", "RSA-OAEP-256", "A256GCM"]
JWS_ALGORITHMS = ["ES256", "RS256", "PS256"]


def generate_encryption_key() -> RSAKey:
    """A throw-away RSA key for FC+ encryption (demo and tests only)."""
    parameters: Any = {**ENCRYPTION_KEY_PARAMETERS, "kid": generate_token(12)}
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
        self, config: ProviderConfig, *, timeout: float, decryption_key: Any = None
    ) -> None:
        if config.encrypted and decryption_key is None:
            raise ValueError(f"{config.name}: an encryption key is required")
        self.config = config
        self._timeout = timeout
        self._key = decryption_key
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None
        self._fetched_at = 0.0

    # -- discovery ----------------------------------------------------------------------

    async def _get(self, url: str) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            raise LoginFailed(f"{self.config.name}: {url}: {exc!r}", code="E431") from exc
        if response.status_code != 200:
            raise LoginFailed(
                f"{self.config.name}: {url}: HTTP {response.status_code}", code="E431"
            )
        return response

    async def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        stale = time.monotonic() - self._fetched_at > DISCOVERY_TTL_S
        if self._metadata is None or refresh or stale:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = (await self._get(url)).json()
            if metadata.get("issuer") != self.config.issuer:
                raise LoginFailed(f"{self.config.name}: issuer mismatch", code="E431")
            self._jwks = KeySet.import_key_set((await self._get(metadata["jwks_uri"])).json())
            self._metadata = metadata
            self._fetched_at = time.monotonic()
        return self._metadata

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.config.client_id,
            client_secret=self.config.client_secret,
            scope=self.config.scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
            timeout=self._timeout,
        )

    # -- the round trip -------------------------------------------------------------------

    async def start(self, redirect_uri: str) -> LoginRequest:
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                nonce=nonce,
                code_verifier=verifier,
                acr_values=self.config.acr_values,
            )
        return LoginRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)

    async def finish(
        self, *, code: str, redirect_uri: str, nonce: str, code_verifier: str
    ) -> LoginResult:
        metadata = await self.metadata()
        try:
            async with self._client(redirect_uri) as client:
                tokens = dict(
                    await client.fetch_token(
                        metadata["token_endpoint"], code=code, code_verifier=code_verifier
                    )
                )
        except Exception as exc:  # authlib raises OAuthError, httpx errors, JSON errors...
            raise LoginFailed(f"{self.config.name}: token request: {exc!r}", code="E431") from exc
        if "id_token" not in tokens or "access_token" not in tokens:
            raise LoginFailed(f"{self.config.name}: token answer incomplete", code="E432")
        claims = self._verify_jwt(tokens["id_token"], nonce=nonce)
        acr = claims.get("acr")
        if acr not in self.config.accepted_acr:
            raise LoginFailed(f"{self.config.name}: acr {acr!r} not accepted", code="E433")
        userinfo = await self._userinfo(metadata["userinfo_endpoint"], tokens["access_token"])
        if userinfo.get("sub") != claims.get("sub"):
            raise LoginFailed(f"{self.config.name}: userinfo sub differs", code="E432")
        return LoginResult(id_claims=claims, userinfo=userinfo, tokens=tokens)

    async def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
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
            return self._verify_jwt(response.text.strip(), nonce=None)
        if self.config.encrypted:
            raise LoginFailed(f"{self.config.name}: userinfo not encrypted", code="E432")
        data = response.json()
        if not isinstance(data, dict):
            raise LoginFailed(f"{self.config.name}: userinfo not an object", code="E432")
        return data

    def _verify_jwt(self, token: str, *, nonce: str | None) -> dict[str, Any]:
        """Decrypt (FC+) then verify signature and claims of an id_token or userinfo JWT."""
        try:
            if token.count(".") == 4:  # JWE compact serialization
                if self._key is None:
                    raise LoginFailed(f"{self.config.name}: unexpected JWE", code="E432")
                registry = jwe.JWERegistry(algorithms=JWE_ALGORITHMS)
                plaintext = jwe.decrypt_compact(token, self._key, registry=registry).plaintext
                token = (plaintext or b"").decode("ascii")
            elif self.config.encrypted:
                raise LoginFailed(f"{self.config.name}: token not encrypted", code="E432")
            if self._jwks is None:
                raise LoginFailed(f"{self.config.name}: no signing keys", code="E432")
            decoded = jwt.decode(token, self._jwks, algorithms=JWS_ALGORITHMS)
            options: dict[str, Any] = {"iss": {"essential": True, "value": self.config.issuer}}
            if nonce is not None:
                options["aud"] = {"essential": True, "value": self.config.client_id}
                options["nonce"] = {"essential": True, "value": nonce}
                options["exp"] = {"essential": True}
            jwt.JWTClaimsRegistry(leeway=30, **options).validate(decoded.claims)
        except LoginFailed:
            raise
        except (JoseError, ValueError, KeyError) as exc:
            raise LoginFailed(f"{self.config.name}: invalid JWT: {exc!r}", code="E432") from exc
        return dict(decoded.claims)
