"""``/{realm}/authorize``: validate the authorization request, show the login form, issue a code.

Until client_id and redirect_uri are proven (exact match with the registration), errors
are shown as a French page and nobody is redirected (OIDC Core 3.1.2.6, RFC 6749
4.1.2.1); after that, errors go back to the client as ``error=...&state=...``.
"""

from __future__ import annotations

import logging
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from bff.idp.pages import error_page, login_page
from bff.idp.provider import Provider, form_str, redirect_with
from bff.idp.realms import CODE_LIFETIME, PENDING_LIFETIME
from bff.idp.store import AuthCode, PendingLogin, token_key

log = logging.getLogger(__name__)

MIN_STATE_LENGTH = 22  # FranceConnect refuses shorter state values
MAX_PARAM_LENGTH = 1024
CODE_MEMORY = 600  # a used or expired code is remembered this long, to spot replays
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256(verifier))

MSG_UNKNOWN_CLIENT = "Le service en ligne qui vous a redirigé vers cette page est inconnu."
MSG_BAD_REDIRECT = "L'adresse de retour indiquée par le service en ligne n'est pas autorisée."
MSG_BAD_REQUEST = "La demande de connexion est mal formée."
MSG_EXPIRED = "Cette demande de connexion a expiré ou a déjà été utilisée."
MSG_UNKNOWN_USER = "Identifiant inconnu pour ce fournisseur d'identité. Veuillez réessayer."


async def authorize_form(provider: Provider, request: Request) -> Response:
    state_ = provider.realm_of(request)
    realm = state_.realm
    params = request.query_params
    for name in ("client_id", "redirect_uri"):
        if len(params.getlist(name)) > 1:
            return error_page(realm.title, MSG_BAD_REQUEST)
    client = provider.clients.get(params.get("client_id") or "")
    if client is None:
        return error_page(realm.title, MSG_UNKNOWN_CLIENT)
    redirect_uri = params.get("redirect_uri") or ""
    if redirect_uri not in client.redirect_uris:
        return error_page(realm.title, MSG_BAD_REDIRECT)

    # From here on the redirect_uri is trusted: errors go back to the client.
    state = params.get("state")

    def fail(error: str, description: str) -> Response:
        log.info("authorize %s refused for %s: %s", realm.name, client.client_id, error)
        return redirect_with(
            redirect_uri,
            {"error": error, "error_description": description, "state": state},
        )

    if any(len(params.getlist(k)) > 1 for k in params):
        return fail("invalid_request", "repeated parameter")
    if any(len(v) > MAX_PARAM_LENGTH for v in params.values()):
        return fail("invalid_request", "parameter too long")
    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "only response_type=code is supported")
    if not state or len(state) < MIN_STATE_LENGTH:
        return fail("invalid_request", f"state is required ({MIN_STATE_LENGTH} characters min)")
    nonce = params.get("nonce")
    if not nonce:
        return fail("invalid_request", "nonce is required")
    scopes = (params.get("scope") or "").split()
    if "openid" not in scopes:
        return fail("invalid_scope", "the openid scope is required")
    try:
        granted, claims = realm.grant(scopes)
    except ValueError:
        return fail("invalid_scope", "unknown scope")
    code_challenge = params.get("code_challenge") or ""
    if params.get("code_challenge_method") != "S256" or not _CODE_CHALLENGE.fullmatch(
        code_challenge
    ):
        return fail("invalid_request", "PKCE is required: code_challenge with method S256")
    acr = realm.choose_acr(params.get("acr_values"))
    if acr is None:
        supported = " or ".join(realm.acr_values)
        return fail("invalid_request", f"acr_values must include {supported}")
    if realm.encrypts and not client.can_receive_encrypted_tokens:
        return fail("unauthorized_client", "client has no public encryption key registered")
    if "none" in (params.get("prompt") or "").split():
        return fail("login_required", "the user must log in")

    pending = PendingLogin(
        realm=realm.name,
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        state=state,
        nonce=nonce,
        code_challenge=code_challenge,
        scopes=granted,
        claims=claims,
        acr=acr,
    )
    request_id = secrets.token_urlsafe(32)
    provider.pending.put(request_id, pending, PENDING_LIFETIME)
    return login_page(realm.title, request_id)


async def authorize_login(provider: Provider, request: Request) -> Response:
    state_ = provider.realm_of(request)
    realm = state_.realm
    form = await request.form(max_files=0, max_fields=20)
    request_id = form_str(form, "request_id") or ""
    pending = provider.pending.get(request_id)
    if pending is None or pending.realm != realm.name:
        return error_page(realm.title, MSG_EXPIRED)
    username = (form_str(form, "username") or "").strip()
    user = provider.users.get(username)
    if user is None or user.realm != realm.name:
        log.info("login %s: unknown username", realm.name)
        return login_page(realm.title, request_id, error=MSG_UNKNOWN_USER)
    provider.pending.pop(request_id)

    code = secrets.token_urlsafe(32)
    now = provider.clock()
    provider.codes.put(
        token_key(code),
        AuthCode(
            realm=realm.name,
            client_id=pending.client_id,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            nonce=pending.nonce,
            username=user.username,
            acr=user.acr or pending.acr,
            scopes=pending.scopes,
            claims=pending.claims,
            auth_time=int(now),
            expires_at=now + CODE_LIFETIME,
        ),
        CODE_LIFETIME + CODE_MEMORY,
    )
    log.info("login %s: %s for client %s", realm.name, user.username, pending.client_id)
    return redirect_with(pending.redirect_uri, {"code": code, "state": pending.state})
