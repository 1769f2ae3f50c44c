"""compose.yaml and the Dockerfile describe a deployment that starts (issue 15): no
container registry is reachable here, so they are checked, not run. The BFF services'
environment, with their secrets replaced by generated files, passes the production
settings checks (the compose sketch of before failed them three times in a row); every
``_FILE`` setting names a declared secret; every long-running service has a healthcheck;
nothing mounts the checkout or installs at start; the image runs as a non-root user with
no dev extras. The balancer's environment fills every marker of its template."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from bff.settings import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "compose.yaml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "drimbox-viewer.conf"
SECRET_PATH = re.compile(r"^/run/secrets/([a-z_]+)$")
#: Settings whose value is a file path (not read through the _FILE form).
PATH_SETTINGS = {
    "DRIMBOX_TLS_CERT",
    "DRIMBOX_TLS_KEY",
    "DRIMBOX_TLS_CLIENT_CA",
    "DRIMBOX_WHITELIST_FILE",
    "DRIMBOX_WHITELIST_SIGNER_CERT",
    "DRIMBOX_STATE_KEY_FILE",
    "DRIMBOX_AUDIT_KEY_FILE",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def _bff_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("drimbox-viewer:")
    }


def test_two_replicas_a_migration_and_the_stack_around_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replicas = [n for n, s in _bff_services(compose).items() if "command" not in s]
    assert len(replicas) == 2
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert {"balancer", "postgres", "orthanc"} <= set(services)
    for name in replicas:
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["postgres"]["condition"] == "service_healthy"
    assert services["balancer"]["ports"] == ["443:443"]


def _secret_contents(name: str, directory: Path) -> str:
    """A generated value of the right shape for each secret."""
    if name == "database_url":
        return "postgresql+psycopg://drimbox:generated@postgres/drimbox"
    return secrets.token_urlsafe(48)


@pytest.mark.parametrize("service", ["bff-a", "bff-b", "migrate"])
def test_the_bff_environment_passes_the_production_checks(
    compose: dict[str, Any], service: str, tmp_path: Path
) -> None:
    spec = _bff_services(compose)[service]
    declared = set(compose["secrets"])
    mounted = set(spec["secrets"])
    assert mounted <= declared
    env: dict[str, str] = {}
    for key, value in spec["environment"].items():
        value = str(value)
        match = SECRET_PATH.match(value)
        if key.endswith("_FILE") or key in PATH_SETTINGS:
            assert match, f"{key} must be a secret file: {value}"
        if match:
            name = match.group(1)
            assert name in mounted, f"{key}: secret {name} not given to {service}"
            path = tmp_path / name
            if not path.exists():
                path.write_text(_secret_contents(name, tmp_path), encoding="utf-8")
            value = str(path)
        env[key] = value
    # The data directory is the image's volume; here a temporary one.
    env["DRIMBOX_FRAME_DISK_CACHE_DIR"] = str(tmp_path / "frame-cache")
    env["DRIMBOX_AUDIT_LOG"] = str(tmp_path / "audit.jsonl")
    settings = Settings.from_env(env)
    assert settings.mode == "production"
    assert settings.secure_cookie
    assert settings.owner_url and settings.forwarded_allow_ips != "*"


def test_no_checkout_mounted_no_install_at_start(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert not source.startswith((".", "/")), f"{name} mounts {volume}"
        command = " ".join(map(str, service.get("command", []) or []))
        assert not re.search(r"\b(pip|uv sync|apt-get)\b", command), name


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "migrate":
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    for name in _bff_services(compose):
        if name != "migrate":
            assert "/readyz" in " ".join(compose["services"][name]["healthcheck"]["test"])


def test_the_balancer_environment_fills_its_template(compose: dict[str, Any]) -> None:
    markers = set(re.findall(r"@([A-Z_]+)@", TEMPLATE.read_text(encoding="utf-8")))
    given = {k.removeprefix("BALANCER_") for k in compose["services"]["balancer"]["environment"]}
    assert markers - {"EXTRA"} <= given


def _stages(text: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), by stage."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    stages: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_image_runs_as_a_user_with_no_dev_extras() -> None:
    stages = _stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2  # build stage, runtime stage
    runtime = stages[-1]
    users = [line.split(None, 1)[1] for line in runtime if line.upper().startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert any(line.upper().startswith("HEALTHCHECK ") and "/readyz" in line for line in runtime)
    assert any(line.upper().startswith("VOLUME ") for line in runtime)
    build = " ".join(line for stage in stages[:-1] for line in stage)
    assert "uv sync --frozen --no-dev" in build
    assert "scripts/fetch-ohif" in build
    text = " ".join(line for stage in stages for line in stage)
    assert "--all-extras" not in text and "--extra dev" not in text
