"""The production wheel (issue 15): built from the checkout with ``uv build``, it carries
the BFF, its migrations and OHIF configuration code, and neither the demo identity provider
nor the demo tooling; its CLI says so instead of failing on an import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bff.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (scripts/install installs it)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(PROJECT_ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (built,) = out.glob("drimbox_viewer-*.whl")
    return built


def test_the_wheel_ships_no_demo_provider_and_no_demo_tooling(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bff/app.py" in names
    assert "bff/__main__.py" in names
    assert any(n.startswith("bff/migrations/") for n in names)
    shipped = [n for n in names if n.startswith(("bff/demo/", "bff/idp/"))]
    assert shipped == []


def test_the_wheels_cli_says_the_demo_is_not_installed(wheel: Path, tmp_path: Path) -> None:
    """The installed CLI (the wheel's files first on the path) answers ``demo`` and ``idp``
    with an explanation and status 2, no traceback."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    for command in (["demo"], ["idp", "--clients", "x.json"]):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); from bff.__main__ import main; "
                "raise SystemExit(main(sys.argv[2:]))",
                str(tmp_path),
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "not part of this installation" in done.stderr
        assert "Traceback" not in done.stderr
