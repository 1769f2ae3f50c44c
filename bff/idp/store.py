"""In-memory state of the provider: pending logins, codes, access tokens, issued id_tokens.

Every entry expires; time comes from an injectable clock so tests can move it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from joserfc.jwk import RSAKey

Clock = Callable[[], float]
T = TypeVar("T")


class ExpiringStore(Generic[T]):
    """A dict whose entries vanish after their time to live."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, T]] = {}

    def put(self, key: str, value: T, ttl: float) -> None:
        self.purge()
        self._items[key] = (self._clock() + ttl, value)

    def get(self, key: str) -> T | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() >= item[0]:
            del self._items[key]
            return None
        return item[1]

    def pop(self, key: str) -> T | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value

    def items(self) -> list[tuple[str, T]]:
        self.purge()
        return [(key, value) for key, (_, value) in self._items.items()]

    def purge(self) -> None:
        now = self._clock()
        for key in [k for k, (expires, _) in self._items.items() if now >= expires]:
            del self._items[key]

    def __len__(self) -> int:
        self.purge()
        return len(self._items)


def token_key(token: str) -> str:
    """Stores are keyed by a hash, so that a dump of the state shows no usable token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PendingLogin:
    """A validated authorization request waiting for the login form."""

    realm: str
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    code_challenge: str
    scopes: tuple[str, ...]
    claims: frozenset[str]
    acr: str  # the level the realm grants for this request


@dataclass
class AuthCode:
    realm: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    username: str
    acr: str
    scopes: tuple[str, ...]
    claims: frozenset[str]
    auth_time: int
    expires_at: float
    used: bool = False
    access_tokens: list[str] = field(default_factory=list)  # token_key() of each


@dataclass(frozen=True)
class AccessToken:
    realm: str
    client_id: str
    username: str
    sub: str
    scopes: tuple[str, ...]
    claims: frozenset[str]
    acr: str
    issued_at: int
    expires_at: int
    client_key: RSAKey | None  # FranceConnect+: userinfo is encrypted to this key


@dataclass(frozen=True)
class IssuedIdToken:
    """Remembered for logout: which client an id_token_hint belongs to."""

    realm: str
    client_id: str
    sub: str
