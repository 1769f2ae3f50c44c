"""Signing keys of the provider, JWT signing, and JWE encryption to a client's key.

FranceConnect+ signs its id_token and userinfo (ES256) then encrypts them to one of the
client's public keys (JWE, RSA-OAEP + A256GCM here), taken from the client's JWKS
(registered inline or served at its ``jwks_uri``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwe, jwt
from joserfc.jwk import ECKey, KeyParameters, RSAKey

ENC_ALG = "RSA-OAEP"
ENC_ENC = "A256GCM"
JWKS_FETCH_TIMEOUT = 5.0


class ClientKeyError(Exception):
    """The client has no usable public RSA encryption key (or its jwks_uri failed)."""


@dataclass(frozen=True)
class SigningKey:
    key: RSAKey | ECKey
    alg: str

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    def sign(self, claims: Mapping[str, Any]) -> str:
        header = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, dict(claims), self.key, algorithms=[self.alg])


def generate_signing_key(alg: str) -> SigningKey:
    """A fresh key for ``alg`` (RS256: RSA 2048; ES256: P-256); kid = RFC 7638 thumbprint."""
    parameters: KeyParameters = {"use": "sig", "alg": alg}
    key: RSAKey | ECKey
    if alg == "RS256":
        key = RSAKey.generate_key(2048, parameters=parameters, auto_kid=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=parameters, auto_kid=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    return SigningKey(key, alg)


def half_hash(value: str) -> str:
    """``at_hash`` for RS256/ES256 (OIDC Core 3.1.3.6): left half of SHA-256, base64url."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def select_encryption_key(jwks: Any) -> RSAKey | None:
    """The client's public RSA key meant for RSA-OAEP encryption, if any.

    Keys tagged ``use: enc`` and ``alg: RSA-OAEP`` win over untagged ones; keys tagged
    for another use or algorithm are never chosen."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        return None
    candidates: list[tuple[int, dict[str, Any]]] = []
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        if jwk.get("use") not in (None, "enc") or jwk.get("alg") not in (None, ENC_ALG):
            continue
        score = (jwk.get("use") == "enc") + (jwk.get("alg") == ENC_ALG)
        candidates.append((score, jwk))
    if not candidates:
        return None
    best = max(candidates, key=lambda item: item[0])[1]
    public = {k: v for k, v in best.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
    try:
        return RSAKey.import_key(public)
    except Exception:  # malformed JWK
        return None


async def fetch_client_jwks(
    jwks_uri: str, transport: httpx.AsyncBaseTransport | None = None
) -> Any:
    try:
        async with httpx.AsyncClient(
            timeout=JWKS_FETCH_TIMEOUT, transport=transport, follow_redirects=False
        ) as client:
            response = await client.get(jwks_uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ClientKeyError(f"client jwks_uri failed: {type(exc).__name__}") from exc


def encrypt_jwt(signed_jwt: str, client_key: RSAKey) -> str:
    """Nest a signed JWT in a JWE (compact) for the client's key: ``cty: JWT``, RFC 7519 5.2."""
    header: dict[str, Any] = {"alg": ENC_ALG, "enc": ENC_ENC, "cty": "JWT"}
    if client_key.kid:
        header["kid"] = client_key.kid
    return jwe.encrypt_compact(header, signed_jwt, client_key, algorithms=[ENC_ALG, ENC_ENC])
