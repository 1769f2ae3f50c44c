"""Waiting FOR something to become true, under a bounded deadline (never a timing assert:
the deadline only keeps a broken feature from hanging the suite)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float = 15, interval: float = 0.25) -> T:
    """``check()`` every ``interval`` s until it is truthy or ``timeout`` s passed; its
    last value. (Playwright's sync API delivers the page's events during each evaluate.)"""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value
