"""The global readahead budget (issue 15 item 2): bytes of instances received from the
PACS (or a Source) and not yet transcoded, summed over every series retrieval.

Each retrieval already bounds its own queue (``readahead_bytes``, 384 MiB); with many
viewers at once those bounds add up. A retrieval takes room here before it keeps an
instance and gives it back when the instance leaves its queue for the pool. When the
budget is spent a retrieval does not stop: it keeps one instance in hand at a time
(:meth:`ReadaheadBudget.take` with ``force``) and reads on as the pool frees room, so
every retrieval progresses and the total stays under ``total`` plus one instance per
running retrieval. Counting only, no timing: tests assert the counts.
"""

from __future__ import annotations

import asyncio


class ReadaheadBudget:
    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("the readahead budget must be positive")
        self.total = total
        self.reserved = 0
        #: the most bytes ever reserved at once
        self.peak = 0
        #: times a retrieval went on over the budget with one instance in hand
        self.forced = 0
        self._released = asyncio.Event()

    def try_take(self, nbytes: int) -> bool:
        """Reserve ``nbytes`` if they fit in the budget."""
        if self.reserved + nbytes > self.total:
            return False
        self._add(nbytes)
        return True

    def take(self, nbytes: int) -> None:
        """Reserve ``nbytes`` whatever the budget (one instance in hand, see above)."""
        if self.reserved + nbytes > self.total:
            self.forced += 1
        self._add(nbytes)

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes
        if self.reserved < 0:  # a bug: never hide it in the counts
            raise AssertionError("readahead budget released more than taken")
        released, self._released = self._released, asyncio.Event()
        released.set()

    def next_release(self) -> asyncio.Event:
        """An event set at the next release (take it before checking, then wait)."""
        return self._released

    def _add(self, nbytes: int) -> None:
        self.reserved += nbytes
        self.peak = max(self.peak, self.reserved)
