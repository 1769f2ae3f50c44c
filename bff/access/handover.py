"""Consumer hand-overs (spec 4.2.1): a KOS and the user's PSC token, posted server to
server by the Consumer DRIMbox, waiting for the user's browser to open its single-use
URL. Bounded: each lives :data:`HANDOVER_TTL_S`, at most :data:`MAX_HANDOVERS` wait
(the oldest dropped beyond).

Kept in a :class:`~bff.state.backend.StateBackend` (memory, or the database every
replica reads: a hand-over posted to one replica opens on another), under the SHA-256
of its one-time token (the database never holds a usable URL), sealed with AES-GCM
bound to that key (:mod:`bff.state.sealing`: the PSC token is never clear at rest).
The take is atomic: of two browsers opening the URL at once, one gets it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bff.access.policy import RemoteOpening
from bff.state.backend import Entry, MemoryBackend, StateBackend
from bff.state.sealing import Sealer, SealError

log = logging.getLogger(__name__)

HANDOVER_TTL_S = 120.0
MAX_HANDOVERS = 1024


@dataclass(frozen=True)
class Handover:
    opening: RemoteOpening
    access_token: str = field(repr=False)
    series_uid: str | None
    created_at: float


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HandoverStore:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        backend: StateBackend | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._clock = clock
        self._backend: StateBackend = backend if backend is not None else MemoryBackend()
        self._sealer = sealer if sealer is not None else Sealer.ephemeral()

    def __len__(self) -> int:
        return self._backend.count("handover")

    def _purge(self) -> None:
        self._backend.purge("handover", self._clock())

    def add(self, opening: RemoteOpening, access_token: str, series_uid: str | None) -> str:
        """Keep a hand-over; returns its single-use token."""
        self._purge()
        self._backend.trim("handover", MAX_HANDOVERS - 1)
        token = secrets.token_urlsafe(32)
        key, now = _key(token), self._clock()
        payload = {
            "opening": opening.to_json(),
            "access_token": access_token,
            "series_uid": series_uid,
        }
        sealed = self._sealer.seal(json.dumps(payload).encode(), f"handover:{key}")
        self._backend.put("handover", key, Entry(sealed, now, now, now + HANDOVER_TTL_S))
        return token

    def take(self, token: str) -> Handover | None:
        """The hand-over, once; None when unknown, used or expired."""
        key = _key(token)
        entry = self._backend.take("handover", key)
        if entry is None or self._clock() - entry.created_at > HANDOVER_TTL_S:
            return None
        try:
            data = json.loads(self._sealer.open(entry.payload, f"handover:{key}"))
            return Handover(
                RemoteOpening.from_json(data["opening"]),
                str(data["access_token"]),
                data["series_uid"],
                entry.created_at,
            )
        except (SealError, ValueError, KeyError, TypeError):
            log.warning("a stored hand-over did not open: treated as absent")
            return None
