"""Discovery, JWKS, token, userinfo, introspection and logout endpoints of each realm."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bff.idp.keys import ClientKeyError, encrypt_jwt, half_hash
from bff.idp.pages import error_page, logged_out_page
from bff.idp.provider import (
    ID_TOKEN_MEMORY,
    NO_STORE,
    Provider,
    form_str,
    oauth_error,
    redirect_with,
)
from bff.idp.store import AccessToken, IssuedIdToken, token_key

log = logging.getLogger(__name__)

_CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 4.1
MSG_BAD_LOGOUT = "La demande de déconnexion est invalide."


async def discovery(provider: Provider, request: Request) -> Response:
    return JSONResponse(provider.metadata(provider.realm_of(request)))


async def jwks(provider: Provider, request: Request) -> Response:
    state = provider.realm_of(request)
    return JSONResponse({"keys": [state.signing_key.public_jwk()]})


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def token(provider: Provider, request: Request) -> Response:
    state = provider.realm_of(request)
    realm = state.realm
    form = await request.form(max_files=0, max_fields=20)
    client = provider.authenticate_client(request, form)
    if isinstance(client, Response):
        return client
    if form_str(form, "grant_type") != "authorization_code":
        return oauth_error("unsupported_grant_type", "only authorization_code is supported")
    code = form_str(form, "code")
    if not code:
        return oauth_error("invalid_request", "code is required")
    client_key = None
    if realm.encrypts:  # before the code is consumed: a failing jwks_uri must not burn it
        try:
            client_key = await provider.client_encryption_key(client)
        except ClientKeyError as exc:
            log.warning("token %s: %s", realm.name, exc)
            return oauth_error("invalid_client", "no usable public encryption key")

    record = provider.codes.get(token_key(code))
    if record is None or record.realm != realm.name:
        return oauth_error("invalid_grant", "unknown or expired code")
    if record.used:
        # RFC 6749 4.1.2: a replayed code revokes the tokens issued from it.
        provider.revoke(record.access_tokens)
        log.warning("token %s: code replay by %s, tokens revoked", realm.name, client.client_id)
        return oauth_error("invalid_grant", "code already used")
    record.used = True  # single use, whatever the outcome below
    if record.client_id != client.client_id:
        return oauth_error("invalid_grant", "code issued to another client")
    if provider.clock() >= record.expires_at:
        return oauth_error("invalid_grant", "code expired")
    if form_str(form, "redirect_uri") != record.redirect_uri:
        return oauth_error("invalid_grant", "redirect_uri does not match")
    verifier = form_str(form, "code_verifier") or ""
    if not _CODE_VERIFIER.fullmatch(verifier) or not hmac.compare_digest(
        _s256(verifier), record.code_challenge
    ):
        return oauth_error("invalid_grant", "PKCE verification failed")
    user = provider.users.get(record.username)
    if user is None:
        return oauth_error("invalid_grant", "unknown user")

    now = provider.now()
    lifetime = realm.access_token_lifetime
    access_token = secrets.token_urlsafe(32)
    sub = provider.subject(realm.name, user, client.client_id)
    provider.tokens.put(
        token_key(access_token),
        AccessToken(
            realm=realm.name,
            client_id=client.client_id,
            username=user.username,
            sub=sub,
            scopes=record.scopes,
            claims=record.claims,
            acr=record.acr,
            issued_at=now,
            expires_at=now + lifetime,
            client_key=client_key,
        ),
        lifetime,
    )
    record.access_tokens.append(token_key(access_token))

    claims: dict[str, Any] = {
        "iss": state.issuer,
        "sub": sub,
        "aud": client.client_id,
        "exp": now + lifetime,
        "iat": now,
        "auth_time": record.auth_time,
        "nonce": record.nonce,
        "acr": record.acr,
        "at_hash": half_hash(access_token),
    }
    if realm.sends_amr:
        claims["amr"] = ["pwd", "mfa"] if record.acr in ("eidas2", "eidas3") else ["pwd"]
    signed = state.signing_key.sign(claims)
    id_token = encrypt_jwt(signed, client_key) if client_key is not None else signed
    issued = IssuedIdToken(realm=realm.name, client_id=client.client_id, sub=sub)
    for form_of_token in {signed, id_token}:
        provider.id_tokens.put(token_key(form_of_token), issued, ID_TOKEN_MEMORY)
    log.info("token %s: issued to %s", realm.name, client.client_id)
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "id_token": id_token,
            "scope": " ".join(record.scopes),
        },
        headers=NO_STORE,
    )


def _bearer_error(issuer: str, error: str | None = None) -> Response:
    challenge = f'Bearer realm="{issuer}"'
    if error:
        challenge += f', error="{error}", error_description="invalid or expired access token"'
    return Response(status_code=401, headers={"WWW-Authenticate": challenge, **NO_STORE})


async def userinfo(provider: Provider, request: Request) -> Response:
    state = provider.realm_of(request)
    realm = state.realm
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer " or not header[7:].strip():
        return _bearer_error(state.issuer)  # RFC 6750 3.1: no error code without a token
    record = provider.tokens.get(token_key(header[7:].strip()))
    user = provider.users.get(record.username) if record else None
    if record is None or user is None or record.realm != realm.name:
        return _bearer_error(state.issuer, "invalid_token")
    claims: dict[str, Any] = {k: v for k, v in user.claims.items() if k in record.claims}
    claims["sub"] = record.sub
    if realm.name == "psc":
        return JSONResponse(claims, headers=NO_STORE)
    # OIDC Core 5.3.2: a signed UserInfo response carries iss and aud.
    signed = state.signing_key.sign({"iss": state.issuer, "aud": record.client_id, **claims})
    body = encrypt_jwt(signed, record.client_key) if record.client_key is not None else signed
    return Response(body, media_type="application/jwt", headers=NO_STORE)


async def introspect(provider: Provider, request: Request) -> Response:
    """RFC 7662: any registered client may ask (a Source DRIMbox checks a Consumer's token)."""
    state = provider.realm_of(request)
    if not state.realm.introspection:
        raise HTTPException(404)
    form = await request.form(max_files=0, max_fields=20)
    client = provider.authenticate_client(request, form)
    if isinstance(client, Response):
        return client
    value = form_str(form, "token")
    if not value:
        return oauth_error("invalid_request", "token is required")
    record = provider.tokens.get(token_key(value))
    if record is None or record.realm != state.realm.name:
        return JSONResponse({"active": False}, headers=NO_STORE)
    return JSONResponse(
        {
            "active": True,
            "sub": record.sub,
            "scope": " ".join(record.scopes),
            "client_id": record.client_id,
            "exp": record.expires_at,
            "iat": record.issued_at,
            "iss": state.issuer,
            "token_type": "Bearer",
            "acr": record.acr,
        },
        headers=NO_STORE,
    )


async def logout(provider: Provider, request: Request) -> Response:
    """RP-initiated logout: id_token_hint, post_logout_redirect_uri (registered), state."""
    state = provider.realm_of(request)
    title = state.realm.title
    params = request.query_params
    hint = params.get("id_token_hint")
    issued = provider.id_tokens.get(token_key(hint)) if hint else None
    if hint and (issued is None or issued.realm != state.realm.name):
        return error_page(title, MSG_BAD_LOGOUT)
    client_id = params.get("client_id")
    if issued is not None:
        if client_id and client_id != issued.client_id:
            return error_page(title, MSG_BAD_LOGOUT)
        client_id = issued.client_id
        # The provider session ends: tokens of this person for this client die with it.
        provider.revoke(
            [
                token_key_
                for token_key_, record in provider.tokens.items()
                if record.client_id == issued.client_id and record.sub == issued.sub
            ]
        )
    target = params.get("post_logout_redirect_uri")
    if not target:
        return logged_out_page(title)
    client = provider.clients.get(client_id or "")
    if client is None or target not in client.post_logout_redirect_uris:
        return error_page(title, MSG_BAD_LOGOUT)
    return redirect_with(target, {"state": params.get("state")})
