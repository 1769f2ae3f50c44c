"""Settings: typed, validated, secret files, and documented (each one in the docs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bff.settings import PROJECT_ROOT, SETTINGS, Settings, markdown_table


def test_defaults_work_for_the_demo() -> None:
    settings = Settings.from_env({})
    assert settings.mode == "demo"
    assert settings.port == 8080
    assert settings.workers >= 1


def test_environment_and_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("user:s3cret\n")
    settings = Settings.from_env(
        {"DRIMBOX_PORT": "9000", "DRIMBOX_UPSTREAM_AUTH_FILE": str(secret)}
    )
    assert settings.port == 9000
    assert settings.upstream_auth == "user:s3cret"
    assert "s3cret" not in repr(settings)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"DRIMBOX_MODE": "open-bar"})
    with pytest.raises(ValueError):
        Settings.from_env({"DRIMBOX_LOSSY_QUALITY": "ultra"})
    with pytest.raises(TypeError):
        Settings.from_env({}, no_such_setting=1)


def test_every_setting_is_a_field_and_documented() -> None:
    field_names = set(Settings.__dataclass_fields__)
    assert {s.name.lower() for s in SETTINGS} == field_names
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, (
        "run: python -c 'from bff.settings import markdown_table; print(markdown_table())'"
    )
