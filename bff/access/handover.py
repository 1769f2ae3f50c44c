"""Consumer hand-overs (spec 4.2.1): a KOS and the user's PSC token, posted server to
server by the Consumer DRIMbox, waiting for the user's browser to open its single-use
URL. Bounded: each lives :data:`HANDOVER_TTL_S`, at most :data:`MAX_HANDOVERS` wait."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bff.access.policy import RemoteOpening

HANDOVER_TTL_S = 120.0
MAX_HANDOVERS = 1024


@dataclass(frozen=True)
class Handover:
    opening: RemoteOpening
    access_token: str = field(repr=False)
    series_uid: str | None
    created_at: float


class HandoverStore:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: OrderedDict[str, Handover] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, h in self._items.items() if now - h.created_at > HANDOVER_TTL_S]:
            del self._items[key]

    def add(self, opening: RemoteOpening, access_token: str, series_uid: str | None) -> str:
        """Keep a hand-over; returns its single-use token."""
        self._purge()
        while len(self._items) >= MAX_HANDOVERS:
            self._items.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._items[token] = Handover(opening, access_token, series_uid, self._clock())
        return token

    def take(self, token: str) -> Handover | None:
        """The hand-over, once; None when unknown, used or expired."""
        self._purge()
        return self._items.pop(token, None)
