"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bff.state.backend import StateBackend
from tests.state_backends import backend_named


@pytest.fixture(params=["memory", "sqlite"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateBackend]:
    """A state backend (issue 15 item 1): each test using it runs on each embedded one."""
    with backend_named(request.param, tmp_path_factory.mktemp("state")) as made:
        yield made
