"""A local OpenID Connect provider that behaves like ProSanteConnect and FranceConnect(+).

For the demo and the tests only: the BFF's real OIDC client (authlib) runs against it
unchanged. Three realms, each under its own path and issuer ``{issuer_base}/{realm}``:

* ``/psc``  ProSanteConnect-like (RS256, JSON userinfo, introspection);
* ``/fcp``  FranceConnect+ (ES256 tokens encrypted to the client, RSA-OAEP + A256GCM);
* ``/fc``   FranceConnect (ES256, signed only).

Per realm: ``/.well-known/openid-configuration``, ``/jwks``, ``/authorize`` (GET: the
login form, POST: the username), ``/token``, ``/userinfo``, ``/introspect`` (psc) and
``/logout``. State lives in memory; time comes from ``clock`` (tests move it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bff.idp import authorize, endpoints
from bff.idp.clients import IdpClient, load_clients
from bff.idp.provider import Provider
from bff.idp.store import Clock
from bff.idp.users import IdpUser, load_users

__all__ = ["IdpClient", "IdpUser", "create_idp_app", "load_clients", "load_users"]

Handler = Callable[[Provider, Request], Awaitable[Response]]


def create_idp_app(
    users: dict[str, IdpUser],
    clients: dict[str, IdpClient],
    *,
    issuer_base: str,
    clock: Clock = time.time,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The provider as an ASGI app. ``http_transport`` is used to fetch clients' jwks_uri."""
    provider = Provider(
        users, clients, issuer_base=issuer_base, clock=clock, http_transport=http_transport
    )

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(provider, request)

        return endpoint

    routes = [
        Route(
            "/{realm}/.well-known/openid-configuration",
            bind(endpoints.discovery),
            methods=["GET"],
        ),
        Route("/{realm}/jwks", bind(endpoints.jwks), methods=["GET"]),
        Route("/{realm}/authorize", bind(authorize.authorize_form), methods=["GET"]),
        Route("/{realm}/authorize", bind(authorize.authorize_login), methods=["POST"]),
        Route("/{realm}/token", bind(endpoints.token), methods=["POST"]),
        Route("/{realm}/userinfo", bind(endpoints.userinfo), methods=["GET", "POST"]),
        Route("/{realm}/introspect", bind(endpoints.introspect), methods=["POST"]),
        Route("/{realm}/logout", bind(endpoints.logout), methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.idp = provider
    return app
