"""The balancer's image renders its template from compose.yaml's environment
(deploy/nginx/render.sh) into a configuration Debian's nginx accepts (``nginx -t``), with
the replicas' names replaced by loopback addresses (nginx resolves them when it reads the
file) and generated certificates; a variable left unset stops the rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bff.demo.pki import issue, make_ca
from bff.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

RENDER = PROJECT_ROOT / "deploy" / "nginx" / "render.sh"
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "drimbox-viewer.conf"
NGINX = Path("/usr/sbin/nginx")


def _environment(tmp_path: Path) -> dict[str, str]:
    compose = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text(encoding="utf-8"))
    env = {k: str(v) for k, v in compose["services"]["balancer"]["environment"].items()}
    ca = make_ca(tmp_path / "ca")
    cert = issue(
        tmp_path, ca, common_name="vi1.example", dns_names=["vi1.example"], server=True, name="lb"
    )
    prefix = tmp_path / "prefix"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / sub).mkdir(parents=True)
    env.update(
        BALANCER_CERT=str(cert.cert),
        BALANCER_KEY=str(cert.key),
        BALANCER_PREFIX=str(prefix),
        BALANCER_INTERNAL_LISTEN="127.0.0.1:8081",
        BALANCER_REPLICAS=env["BALANCER_REPLICAS"]
        .replace("bff-a", "127.0.0.1")
        .replace("bff-b", "127.0.0.2"),
        BALANCER_SOURCE_API_REPLICAS=env["BALANCER_SOURCE_API_REPLICAS"]
        .replace("bff-a", "127.0.0.1")
        .replace("bff-b", "127.0.0.2"),
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DRIMBOX_BALANCER_TEMPLATE": str(TEMPLATE),
        "DRIMBOX_BALANCER_CONF": str(tmp_path / "nginx.conf"),
        **env,
    }


def test_compose_environment_renders_a_configuration_nginx_accepts(tmp_path: Path) -> None:
    if not NGINX.exists() or shutil.which("sh") is None:
        pytest.skip("nginx is not installed (scripts/install installs it)")
    env = _environment(tmp_path)
    conf = tmp_path / "nginx.conf"
    rendered = subprocess.run(
        ["sh", str(RENDER), str(NGINX), "-t", "-q", "-c", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    text = conf.read_text(encoding="utf-8")
    assert "@" not in text.replace("@@", "")
    assert "hash $study_uid consistent;" in text
    assert "listen 443;" in text


def test_an_unset_marker_stops_the_rendering(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    del env["BALANCER_SERVER_NAMES"]
    done = subprocess.run(
        ["sh", str(RENDER), "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "BALANCER_SERVER_NAMES is not set" in done.stderr
    assert not (tmp_path / "nginx.conf").exists()
