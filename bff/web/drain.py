"""Graceful drain (issue 15 item 2): what SIGTERM starts (bff/__main__.py drives it).

At once: readiness answers 503 (:mod:`bff.web.probes`), so the balancer's next probe
takes this replica out of rotation; requests are still served meanwhile (a balancer
needs a probe interval or two to notice). The process stops taking connections once
``DRIMBOX_DRAIN_NOTICE_S`` have passed AND the requests in flight (a study download, a
series stream) have finished, or at the latest after ``DRIMBOX_DRAIN_GRACE_S``.
:class:`Drain` holds the flag and the count of requests in flight (kept by
:class:`bff.web.observe.Observe`).
"""

from __future__ import annotations

import asyncio
import contextlib


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._changed = asyncio.Event()

    def start(self) -> None:
        self.draining = True
        self._notify()

    def entered(self) -> None:
        self.in_flight += 1

    def left(self) -> None:
        self.in_flight -= 1
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def idle(self, timeout: float) -> bool:
        """Until no request is in flight (True), or ``timeout`` s passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight > 0:
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True
