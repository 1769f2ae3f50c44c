"""Grants re-checked against the KOS archive on use (issue 13, item 2).

A grant is given because a published KOS matched the report link (DB.VI-SO.115, .33). When
the KOS is unpublished (``drimbox-viewer kos remove``, the admin API), every live session
loses the study: the access decision asks here whether the grant's KOS is still
published. The answer is remembered :data:`TTL_S` at most, so an unpublication made by
another process (another replica, the CLI) takes effect within that delay; one made by
this process (the admin API) takes effect at once (:meth:`PublishedKos.forget`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

#: How long a "still published" answer is trusted.
TTL_S = 60.0
#: KOS states remembered at once (the least recently asked goes first).
MAX_ENTRIES = 4096

PUBLISHED = "published"


class PublishedKos:
    def __init__(
        self,
        state_of: Callable[[str], Awaitable[str | None]],
        *,
        ttl: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``state_of(kos_sop_uid)``: the KOS's state in the archive, None if unknown."""
        self._state_of = state_of
        self._ttl = ttl
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    async def published(self, kos_sop_uid: str) -> bool:
        now = self._clock()
        entry = self._known.get(kos_sop_uid)
        if entry is not None and entry[0] > now:
            self._known.move_to_end(kos_sop_uid)
            return entry[1]
        published = await self._state_of(kos_sop_uid) == PUBLISHED
        self._known[kos_sop_uid] = (now + self._ttl, published)
        self._known.move_to_end(kos_sop_uid)
        while len(self._known) > MAX_ENTRIES:
            self._known.popitem(last=False)
        return published

    def forget(self, kos_sop_uid: str) -> None:
        """The KOS changed state here: ask the archive again next time."""
        self._known.pop(kos_sop_uid, None)
