"""Liveness and readiness (issue 15 item 4), for balancers and orchestrators.

- ``/livez``: the process answers (its event loop runs); no dependency is asked.
- ``/readyz``: 200 when this replica can serve: the KOS archive's database answers, the
  transcoding pool answers (a busy pool is alive), the disk frame cache's directory is
  writable. The PACS of each location and each identity provider's discovery document
  are asked too, as *warnings*: their outage is reported (the JSON's ``warnings``) but
  does not take the replica out of rotation, as every replica would fail alike and
  the users would rather see the French error page than a balancer's. 503 while the
  lifespan has not started, when a hard check fails, and while draining (SIGTERM).

Checks are bounded (each under :data:`CHECK_TIMEOUT_S`), run together, and the result
is shared for :data:`TTL_S` (a probe storm costs the PACS one request per second or
two), one run at a time. The answer names checks and short outcomes (``ok``,
``timeout``, an error code): never a URL, a credential or an exception text (those go
to the log).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bff.errors import ViewerError
from bff.transcode import TranscodePool

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
TTL_S = 1.5
Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Result:
    checks: dict[str, str]
    warnings: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(outcome == "ok" for outcome in self.checks.values())


async def _outcome(name: str, check: Check, timeout: float) -> str:
    try:
        await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        log.warning("readiness check %s: no answer in %.1f s", name, timeout)
        return "timeout"
    except ViewerError as exc:
        log.warning("readiness check %s: %s %s", name, exc.code, exc.detail)
        return exc.code or "error"
    except Exception as exc:
        log.warning("readiness check %s failed: %r", name, exc)
        return "error"
    return "ok"


class Readiness:
    """``hard``: checks that fail readiness; ``soft``: reported as warnings."""

    def __init__(
        self,
        hard: Mapping[str, Check],
        soft: Mapping[str, Check],
        *,
        timeout: float = CHECK_TIMEOUT_S,
        ttl: float = TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hard = dict(hard)
        self.soft = dict(soft)
        self.timeout = timeout
        self.ttl = ttl
        self._clock = clock
        self._last: tuple[float, Result] | None = None
        self._running: asyncio.Task[Result] | None = None
        #: how many times the checks actually ran (a probe storm shares them)
        self.runs = 0

    async def result(self) -> Result:
        now = self._clock()
        if self._last is not None and now - self._last[0] < self.ttl:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run(), name="readiness checks")
        return await asyncio.shield(self._running)

    async def _run(self) -> Result:
        self.runs += 1
        names = [*self.hard, *self.soft]
        checks = [*self.hard.values(), *self.soft.values()]
        outcomes = await asyncio.gather(
            *(_outcome(n, c, self.timeout) for n, c in zip(names, checks, strict=True))
        )
        by_name = dict(zip(names, outcomes, strict=True))
        result = Result(
            checks={n: by_name[n] for n in self.hard},
            warnings={n: by_name[n] for n in self.soft if by_name[n] != "ok"},
        )
        self._last = (self._clock(), result)
        return result


def writable_dir(directory: Path) -> Check:
    """The directory takes a new file (created and removed)."""

    def probe() -> None:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".readyz-"):
            pass

    async def check() -> None:
        await asyncio.to_thread(probe)

    return check


def pool_answers(pool: TranscodePool, timeout: float) -> Check:
    """The pool is open and a no-op job comes back; a pool too busy to answer within
    ``timeout`` is alive (a dead worker fails the job at once)."""

    async def check() -> None:
        if pool.closed:
            raise RuntimeError("transcoding pool closed")
        try:
            await asyncio.wait_for(pool.ping(), timeout)
        except TimeoutError:
            log.info("readiness: transcoding pool busy (alive)")

    return check


def http_get(client: httpx.AsyncClient, url: str) -> Check:
    """A GET answered below 500 (a PACS's 4xx still proves it reachable)."""

    async def check() -> None:
        response = await client.get(url)
        if response.status_code >= 500:
            raise RuntimeError(f"HTTP {response.status_code}")

    return check


def answer(result: Result | None, *, draining: bool) -> tuple[int, dict[str, Any]]:
    """The /readyz status code and JSON body."""
    if draining:
        return 503, {"status": "draining"}
    if result is None:
        return 503, {"status": "starting"}
    body: dict[str, Any] = {
        "status": "ready" if result.ready else "not_ready",
        "checks": result.checks,
        "warnings": result.warnings,
    }
    return (200 if result.ready else 503), body
