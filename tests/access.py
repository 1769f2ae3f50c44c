"""A scripted browser for the access path: any HTTP client can log in at the local
provider (plain HTML forms, no JavaScript), with ``*.localhost`` names on loopback."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from bff.demo.stack import CLIENT_ID, Stack

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


class LoopbackTransport(httpx.BaseTransport):
    """Connects ``localhost`` and ``*.localhost`` to 127.0.0.1, keeping the Host header
    (Python does not resolve ``*.localhost``; Chromium does). ``verify``: the TLS
    context (a client certificate for the Source API's mutual TLS)."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._inner = httpx.HTTPTransport(verify=verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == "localhost" or host.endswith(".localhost"):
            request = httpx.Request(
                request.method,
                request.url.copy_with(host="127.0.0.1"),
                headers=request.headers,
                stream=request.stream,
            )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class ScriptedBrowser:
    def __init__(self) -> None:
        self.client = httpx.Client(transport=LoopbackTransport(), timeout=30)

    def close(self) -> None:
        self.client.close()

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        return self.client.get(url, **kwargs)  # type: ignore[arg-type]

    def open_link(self, link: str) -> httpx.Response:
        return self.client.get(link)

    def choose(self, profile_page: httpx.Response, provider: str) -> httpx.Response:
        """Submit the profile choice form of ``provider`` (returns the BFF's answer)."""
        html = profile_page.text
        start = html.index(f'name="provider" value="{provider}"')
        form_start = html.rindex("<form", 0, start)
        fields = dict(HIDDEN.findall(html[form_start : html.index("</form>", start)]))
        return self.client.post(urljoin(str(profile_page.url), "/auth/login"), data=fields)

    def login(self, authorize: httpx.Response, username: str) -> httpx.Response:
        """At the provider: GET the form, POST the username; returns the BFF callback answer."""
        assert authorize.status_code == 303, authorize.text
        form = self.client.get(authorize.headers["location"])
        assert form.status_code == 200, form.text
        fields = dict(HIDDEN.findall(form.text))
        fields["username"] = username
        back = self.client.post(urljoin(str(form.url), "authorize"), data=fields)
        assert back.status_code in (302, 303), back.text
        return self.client.get(back.headers["location"])

    def sign_in(self, link: str, provider: str, username: str) -> httpx.Response:
        return self.login(self.choose(self.open_link(link), provider), username)


def psc_access_token(
    stack: Stack, username: str = "dr.radiologue", scope: str = "openid scope_all"
) -> str:
    """A real ProSantéConnect access token from the local provider: the authorization
    code flow with PKCE driven directly (authorize form, username, token endpoint)."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        .rstrip(b"=")
        .decode("ascii")
    )
    issuer = f"{stack.issuer_base}/psc"
    redirect_uri = f"{stack.bff_url(stack.hosts[0])}/auth/callback"
    with httpx.Client(transport=LoopbackTransport(), timeout=30) as client:
        form = client.get(
            f"{issuer}/authorize",
            params={
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": redirect_uri,
                "scope": scope,
                "acr_values": "eidas1",
                "state": secrets.token_urlsafe(32),
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert form.status_code == 200, form.text
        fields = dict(HIDDEN.findall(form.text))
        fields["username"] = username
        back = client.post(f"{issuer}/authorize", data=fields)
        assert back.status_code in (302, 303), back.text
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        tokens = client.post(
            f"{issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(CLIENT_ID, stack.client_secret),
        )
        assert tokens.status_code == 200, tokens.text
        token: str = tokens.json()["access_token"]
        return token
