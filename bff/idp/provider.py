"""The provider's state and the helpers its endpoints share (client auth, subjects, errors)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import httpx
from joserfc.jwk import RSAKey
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from bff.idp.clients import IdpClient
from bff.idp.keys import (
    ENC_ALG,
    ENC_ENC,
    ClientKeyError,
    SigningKey,
    fetch_client_jwks,
    generate_signing_key,
    select_encryption_key,
)
from bff.idp.realms import REALMS, Realm
from bff.idp.store import (
    AccessToken,
    AuthCode,
    Clock,
    ExpiringStore,
    IssuedIdToken,
    PendingLogin,
)
from bff.idp.users import IdpUser

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ID_TOKEN_MEMORY = 12 * 3600  # how long an id_token_hint is recognised at logout


@dataclass(frozen=True)
class RealmState:
    realm: Realm
    issuer: str
    signing_key: SigningKey

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/{name}"


class Provider:
    """Everything one provider instance knows; one per application, nothing global."""

    def __init__(
        self,
        users: dict[str, IdpUser],
        clients: dict[str, IdpClient],
        *,
        issuer_base: str,
        clock: Clock,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = issuer_base.rstrip("/")
        if urlsplit(base).scheme not in ("http", "https"):
            raise ValueError("issuer_base must be an absolute http(s) URL")
        self.users = users
        self.clients = clients
        self.clock = clock
        self.http_transport = http_transport
        self.realms = {
            name: RealmState(realm, f"{base}/{name}", generate_signing_key(realm.signing_alg))
            for name, realm in REALMS.items()
        }
        self.pending: ExpiringStore[PendingLogin] = ExpiringStore(clock)
        self.codes: ExpiringStore[AuthCode] = ExpiringStore(clock)
        self.tokens: ExpiringStore[AccessToken] = ExpiringStore(clock)
        self.id_tokens: ExpiringStore[IssuedIdToken] = ExpiringStore(clock)

    def now(self) -> int:
        return int(self.clock())

    def realm_of(self, request: Request) -> RealmState:
        state = self.realms.get(request.path_params.get("realm", ""))
        if state is None:
            raise HTTPException(404)
        return state

    def subject(self, realm: str, user: IdpUser, client_id: str) -> str:
        """A stable, per-client (pairwise) subject in each provider's own shape."""
        digest = hashlib.sha256(f"{realm}\x00{user.username}\x00{client_id}".encode()).digest()
        if realm == "psc":
            # Keycloak federated id: f:<provider uuid>:<national id>
            national_id = str(user.claims.get("SubjectNameID", user.username))
            return f"f:{uuid.UUID(bytes=digest[:16], version=4)}:{national_id}"
        return f"{digest.hex()}v1"  # FranceConnect: 64 hex characters + "v1"

    def revoke(self, token_keys: list[str]) -> None:
        for key in token_keys:
            self.tokens.pop(key)

    async def client_encryption_key(self, client: IdpClient) -> RSAKey:
        jwks: Any = client.jwks
        if jwks is None and client.jwks_uri:
            jwks = await fetch_client_jwks(client.jwks_uri, self.http_transport)
        key = select_encryption_key(jwks)
        if key is None:
            raise ClientKeyError(f"no {ENC_ALG} encryption key for client {client.client_id}")
        return key

    def metadata(self, state: RealmState) -> dict[str, Any]:
        realm = state.realm
        meta: dict[str, Any] = {
            "issuer": state.issuer,
            "authorization_endpoint": state.endpoint("authorize"),
            "token_endpoint": state.endpoint("token"),
            "userinfo_endpoint": state.endpoint("userinfo"),
            "jwks_uri": state.endpoint("jwks"),
            "end_session_endpoint": state.endpoint("logout"),
            "scopes_supported": list(realm.scopes),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": list(realm.acr_values),
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [realm.signing_alg],
            "userinfo_signing_alg_values_supported": (
                ["none"] if realm.name == "psc" else [realm.signing_alg]
            ),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": list(realm.claims),
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "ui_locales_supported": ["fr"],
        }
        if realm.encrypts:
            meta["id_token_encryption_alg_values_supported"] = [ENC_ALG]
            meta["id_token_encryption_enc_values_supported"] = [ENC_ENC]
            meta["userinfo_encryption_alg_values_supported"] = [ENC_ALG]
            meta["userinfo_encryption_enc_values_supported"] = [ENC_ENC]
        if realm.introspection:
            meta["introspection_endpoint"] = state.endpoint("introspect")
            meta["introspection_endpoint_auth_methods_supported"] = [
                "client_secret_basic",
                "client_secret_post",
            ]
        return meta

    def authenticate_client(self, request: Request, form: FormData) -> IdpClient | JSONResponse:
        """client_secret_basic or client_secret_post (RFC 6749 2.3.1); one method only."""
        header = request.headers.get("authorization", "")
        body_id, body_secret = form.get("client_id"), form.get("client_secret")
        client_id: str | None = None
        secret: str | None = None
        if header[:6].lower() == "basic ":
            if body_secret is not None:
                return oauth_error("invalid_request", "more than one client authentication")
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
                raw_id, raw_secret = decoded.split(":", 1)
            except ValueError:
                return invalid_client()
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if isinstance(body_id, str) and body_id != client_id:
                return invalid_client()
        elif isinstance(body_id, str) and isinstance(body_secret, str):
            client_id, secret = body_id, body_secret
        if client_id is None or secret is None:
            return invalid_client()
        client = self.clients.get(client_id)
        expected = client.client_secret if client else "\x00" * 32
        ok = hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8"))
        if client is None or not ok:
            return invalid_client()
        return client


def oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    """RFC 6749 5.2 error body (descriptions are fixed ASCII texts, never request input)."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def invalid_client() -> JSONResponse:
    return oauth_error(
        "invalid_client",
        "client authentication failed",
        401,
        {"WWW-Authenticate": 'Basic realm="token", charset="UTF-8"'},
    )


def redirect_with(uri: str, params: dict[str, str | None], status: int = 302) -> RedirectResponse:
    """``uri`` (already validated against the client's registration) plus query parameters."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    return RedirectResponse(location, status_code=status, headers={"Cache-Control": "no-store"})


def form_str(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None
