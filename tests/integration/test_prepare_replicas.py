"""The prepared store with several replicas (issues 15 and 16), against a real Orthanc.

Two BFF instances on one archive database and one prepared directory (a shared volume),
each behind its own counting proxy to the PACS: a publication is prepared once across
both (the lease in the shared database), the replica that did not prepare it opens the
study with no series streamed from the PACS and nothing transcoded (the store's lookup
falls back to the shared directory), a live lease held by another replica is left alone
and a dead replica's expired lease is taken over, the preparation completing without
redoing what is already stored. Every wait is on a fact (a row, a counter).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from bff.archive.store import Preparation, kos_preparation_table
from tests.conftest import Pacs
from tests.integration.test_prepare import bff, open_series, preparation, publish, wait_state
from tests.waiting import poll

pytestmark = pytest.mark.integration


def shared(tmp_path: Path) -> dict[str, Any]:
    return {
        "archive_url": f"sqlite:///{tmp_path / 'archive.db'}",
        "prepared_dir": str(tmp_path / "prepared"),
        "prepare_scan_interval": 0.2,
    }


def set_lease(archive_url: str, kos_sop_uid: str, **values: Any) -> None:
    """What a replica that died mid-preparation leaves in the shared database."""
    engine = create_engine(archive_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(kos_preparation_table)
                .where(kos_preparation_table.c.kos_sop_uid == kos_sop_uid)
                .values(**values)
            )
    finally:
        engine.dispose()


def test_a_publication_is_prepared_once_and_the_other_replica_opens_it_cold_free(
    pacs: Pacs, tmp_path: Path
) -> None:
    study, n = pacs.study, pacs.study.n_instances
    with (
        bff(pacs, **shared(tmp_path)) as a,
        bff(pacs, **shared(tmp_path)) as b,
        httpx.Client(base_url=a.url, timeout=60) as to_a,
        httpx.Client(base_url=b.url, timeout=60) as to_b,
    ):
        assert a.services.preparer is not None and b.services.preparer is not None
        publish(to_a, pacs)
        done = wait_state(a, pacs, "prepared")
        assert done.claimed_by is None  # the lease given back
        # B looks at the archive again after the preparation ended (two whole scans).
        scans = b.services.preparer.stats["scans"]
        assert poll(
            lambda: (
                b.services.preparer is not None and b.services.preparer.stats["scans"] >= scans + 2
            )
        )
        pools = [a.services.retriever._pool, b.services.retriever._pool]
        # Prepared once across the replicas: n background transcodings in all, not 2n.
        assert sum(p.submitted["background"] for p in pools) == n
        claimed = [s.services.preparer.stats["claimed"] for s in (a, b)]  # type: ignore[union-attr]
        assert sorted(claimed) == [0, 1]
        prepared_by = b if claimed[1] else a
        other = a if prepared_by is b else b
        client = to_b if other is b else to_a
        # The replica that did not prepare it opens it: its store index (built at its
        # start, before the preparation) misses and falls back to the shared directory.
        before = len(other.asked)
        background = other.services.retriever._pool.submitted["background"]
        frames = open_series(client, study.study_uid)
        assert len(frames) > 0
        series = [p for p in other.asked[before:] if "/series/" in p]
        assert not [p for p in series if not p.endswith(("/metadata", "/instances"))], series
        assert other.services.retriever._pool.submitted == {
            "interactive": 0,
            "background": background,
        }


def test_a_live_lease_is_left_alone_and_a_dead_replicas_is_taken_over(
    pacs: Pacs, tmp_path: Path
) -> None:
    study, n = pacs.study, pacs.study.n_instances
    settings = shared(tmp_path)
    with bff(pacs, **settings) as first, httpx.Client(base_url=first.url, timeout=60) as client:
        publish(client, pacs)
        done = wait_state(first, pacs, "prepared")
    # The first replica died having prepared all but three instances: its last files and
    # the series' manifest are not there, its row says "preparing" under its lease.
    entries = sorted(Path(settings["prepared_dir"]).rglob("*.prep"))
    assert len(entries) == n
    missing = entries[:3]
    for path in [*missing, *Path(settings["prepared_dir"]).rglob("series.json")]:
        path.unlink()
    kos = study.kos_sop_uid
    live = datetime.now(UTC) + timedelta(hours=1)
    set_lease(
        settings["archive_url"],
        kos,
        state="preparing",
        claimed_by="dead-replica",
        lease_until=live,
        prepared=n - 3,
    )
    with bff(pacs, **settings) as second:
        preparer = second.services.preparer
        assert preparer is not None
        # While the lease holds, the other replica keeps off it (it may still be alive).
        assert poll(lambda: preparer.stats["busy_elsewhere"] >= 2)
        assert second.services.retriever._pool.submitted["background"] == 0
        found = preparation(second, pacs)
        assert found is not None and found.claimed_by == "dead-replica"
        # The lease runs out: the next scan takes it over and finishes the preparation.
        set_lease(settings["archive_url"], kos, lease_until=datetime.now(UTC) - timedelta(1))

        def finished() -> Preparation | None:
            row = preparation(second, pacs)
            return row if row is not None and row.state == "prepared" else None

        row = poll(finished, timeout=120)
        assert row is not None
        assert (row.prepared, row.total, row.claimed_by) == (n, n, None)
        assert row.publication == done.publication
        # Only what was missing was transcoded; what the dead replica stored was kept.
        assert second.services.retriever._pool.submitted["background"] == 3
        assert preparer.stats["instances_prepared"] == 3
        assert preparer.stats["instances_skipped"] == n - 3
        assert all(path.exists() for path in missing)
