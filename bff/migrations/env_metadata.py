"""The models the migrations must produce (every table the BFF writes)."""

from __future__ import annotations

from bff.archive.store import metadata as archive_metadata
from bff.state.audit_log import metadata as audit_metadata
from bff.state.sql import metadata as state_metadata

target_metadata = [archive_metadata, state_metadata, audit_metadata]
