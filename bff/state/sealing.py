"""AES-GCM of the state payloads (issue 15, item 1): tokens at rest are never clear.

Every payload a state store writes (a session with its OIDC tokens, a pending login with
its PKCE verifier and nonce, a hand-over with the user's PSC access token) is sealed
with AES-256-GCM under ``DRIMBOX_STATE_KEY_FILE``. The associated data is the row's
kind and key, so that a ciphertext moved to another row (another session id) fails to
open: rows cannot be swapped. A payload that does not open is no entry at all.

Sealed form: ``key id (4 bytes) | nonce (12 bytes) | ciphertext and tag``. The key id
(the first bytes of the key's SHA-256) picks the key to open with: keys listed after
the first one (old keys, during a rotation) still open what they sealed; only the
first one seals.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_ID_BYTES = 4
_NONCE_BYTES = 12


class SealError(Exception):
    """A payload that does not open (tampered, moved to another row, unknown key)."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"drimbox-state-key:" + key).digest()[:_ID_BYTES]


class Sealer:
    """Seals with ``keys[0]``; opens with whichever of ``keys`` sealed."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"state keys must be {KEY_BYTES} bytes each")
        self._sealing_id = _key_id(keys[0])
        self._seal = AESGCM(keys[0])
        self._by_id = {_key_id(k): AESGCM(k) for k in reversed(keys)}

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A random key for this process (the demo with the in-memory store)."""
        return cls([os.urandom(KEY_BYTES)])

    def seal(self, plaintext: bytes, bound_to: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._seal.encrypt(nonce, plaintext, bound_to.encode())
        return self._sealing_id + nonce + sealed

    def open(self, sealed: bytes, bound_to: str) -> bytes:
        aead = self._by_id.get(bytes(sealed[:_ID_BYTES]))
        if aead is None or len(sealed) < _ID_BYTES + _NONCE_BYTES + 16:
            raise SealError("unknown key or truncated payload")
        nonce = bytes(sealed[_ID_BYTES : _ID_BYTES + _NONCE_BYTES])
        try:
            return aead.decrypt(nonce, bytes(sealed[_ID_BYTES + _NONCE_BYTES :]), bound_to.encode())
        except InvalidTag:
            raise SealError("payload altered or bound to another row") from None


def parse_key(data: bytes) -> bytes:
    """32 raw bytes, or their base64 (standard or URL-safe, padding optional)."""
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    try:
        key = base64.urlsafe_b64decode(
            text.replace(b"+", b"-").replace(b"/", b"_") + b"=" * (-len(text) % 4)
        )
    except (binascii.Error, ValueError):
        raise ValueError("the state key is neither 32 bytes nor their base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError("the state key is neither 32 bytes nor their base64")
    return key


def load_keys(key_file: str, old_key_files: str = "") -> list[bytes]:
    """The current key from ``key_file``, then the old ones (comma-separated files)."""
    paths = [key_file, *(p.strip() for p in old_key_files.split(",") if p.strip())]
    return [parse_key(Path(p).read_bytes()) for p in paths]
