"""Bounds per user and per client (issue 13): nothing a hostile user does makes a
per-user structure grow without limit, and guessing is slowed down.

- :class:`InFlight`: requests waiting at once per key (a session's frame requests: a
  frame request waits, bounded, for its frame to arrive and be transcoded);
- :class:`RateLimit`: attempts per key over a sliding window (link checks and logins per
  client address and per subject), a fixed-size table of keys.

Both answer :class:`~bff.errors.TooManyRequests` (429, E429) beyond their bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bff.errors import TooManyRequests

#: Keys remembered at once by one limiter (the least recently used goes first).
MAX_KEYS = 10_000


class InFlight:
    def __init__(self, per_key: int) -> None:
        self._per_key = per_key
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    @contextmanager
    def slot(self, key: str) -> Iterator[None]:
        count = self._counts.get(key, 0)
        if count >= self._per_key:
            raise TooManyRequests(f"{count} requests already waiting for {key[:8]}")
        self._counts[key] = count + 1
        try:
            yield
        finally:
            left = self._counts[key] - 1
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]


class RateLimit:
    def __init__(
        self, attempts: int, window_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._attempts = attempts
        self._window = window_s
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def exceeded(self, key: str) -> bool:
        """Has ``key`` used up its attempts in the window? (counts nothing)"""
        times = self._seen.get(key)
        if times is None:
            return False
        cutoff = self._clock() - self._window
        return sum(1 for t in times if t > cutoff) >= self._attempts

    def hit(self, key: str) -> None:
        """Count one attempt for ``key``; 429 when it had ``attempts`` in the window."""
        now = self._clock()
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque()
            while len(self._seen) > MAX_KEYS:
                self._seen.popitem(last=False)
        self._seen.move_to_end(key)
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._attempts:
            raise TooManyRequests(f"more than {self._attempts} attempts in {self._window} s")
        times.append(now)
