"""Relying parties registered with the local provider, and their JSON file.

File format::

    {"clients": [
        {"client_id": "drimbox-viewer",
         "client_secret": "...",                       # demo secret, not a real one
         "redirect_uris": ["http://127.0.0.1:8080/auth/callback/fcp"],
         "post_logout_redirect_uris": ["http://127.0.0.1:8080/"],   # optional
         "jwks_uri": "http://127.0.0.1:8080/auth/jwks",             # optional
         "jwks": {"keys": [...]}}                                   # optional, PUBLIC keys
    ]}

FranceConnect+ (realm ``fcp``) needs ``jwks`` or ``jwks_uri``: its tokens are encrypted
to the client's public RSA key (``use: enc``, ``alg: RSA-OAEP``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@dataclass(frozen=True)
class IdpClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None  # the client's PUBLIC encryption keys
    post_logout_redirect_uris: tuple[str, ...] = ()

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"IdpClient(client_id={self.client_id!r}, redirect_uris={self.redirect_uris!r})"

    @property
    def can_receive_encrypted_tokens(self) -> bool:
        return bool(self.jwks_uri or self.jwks)


def load_clients(path: Path) -> dict[str, IdpClient]:
    """Read and check a clients file; client_id -> client. Raises ValueError on bad content."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
        raise ValueError(f"{path}: expected an object with a 'clients' list")
    clients: dict[str, IdpClient] = {}
    for index, entry in enumerate(data["clients"]):
        client = parse_client(entry, where=f"{path}: clients[{index}]")
        if client.client_id in clients:
            raise ValueError(f"{path}: duplicate client_id {client.client_id!r}")
        clients[client.client_id] = client
    return clients


def parse_client(entry: Any, *, where: str = "client") -> IdpClient:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object")
    client_id, secret = entry.get("client_id"), entry.get("client_secret")
    if not isinstance(client_id, str) or not client_id:
        raise ValueError(f"{where}: 'client_id' must be a non-empty string")
    if not isinstance(secret, str) or len(secret) < 16:
        raise ValueError(f"{where}: 'client_secret' must be a string of 16 characters or more")
    redirect_uris = _uris(entry.get("redirect_uris"), f"{where}: redirect_uris", required=True)
    logout_uris = _uris(
        entry.get("post_logout_redirect_uris", []), f"{where}: post_logout_redirect_uris"
    )
    jwks_uri = entry.get("jwks_uri")
    if jwks_uri is not None:
        _uris([jwks_uri], f"{where}: jwks_uri")
    jwks = entry.get("jwks")
    if jwks is not None:
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise ValueError(f"{where}: 'jwks' must be a JWK set")
        if any(member in k for k in keys for member in _PRIVATE_MEMBERS):
            raise ValueError(f"{where}: 'jwks' must hold public keys only")
    return IdpClient(
        client_id=client_id,
        client_secret=secret,
        redirect_uris=redirect_uris,
        jwks_uri=jwks_uri,
        jwks=jwks,
        post_logout_redirect_uris=logout_uris,
    )


def _uris(value: Any, where: str, *, required: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of URLs")
    if required and not value:
        raise ValueError(f"{where}: at least one URL is needed")
    for uri in value:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"{where}: {uri!r} is not an absolute http(s) URL without fragment")
    return tuple(value)
