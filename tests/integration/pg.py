"""A throw-away PostgreSQL cluster from Debian's binaries, for tests of the KOS archive.

``temporary_postgres(tmp_path)`` runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` (``scripts/install`` installs them and stops the
packaged cluster, which we never use), trust authentication, a unix socket in the
cluster's directory and TCP on a free 127.0.0.1 port, and yields a SQLAlchemy URL.
The cluster is stopped and its files removed on exit, whatever happened.

As root the server runs as the unprivileged ``postgres`` system user (``initdb`` refuses
root). Its directory is then a fresh one in the system temp directory, owned by postgres:
pytest's ``tmp_path`` lives under ``/tmp/pytest-of-root`` (mode 0700), which postgres
cannot even traverse. The server log is copied to ``tmp_path`` when the cluster stops.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT = 30  # seconds, pg_ctl -w -t
STOP_TIMEOUT = 30
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; the socket file is <dir>/.s.PGSQL.<port>


def find_bin_dir() -> Path | None:
    """The bin directory of the newest Debian PostgreSQL with initdb and pg_ctl."""
    candidates = [
        path.parent
        for path in PG_ROOT.glob("*/bin/initdb")
        if (path.parent / "pg_ctl").is_file() and re.fullmatch(r"\d+", path.parent.parent.name)
    ]
    return max(candidates, key=lambda p: int(p.parent.name), default=None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_server_user(argv: list[str], run_as: str | None) -> list[str]:
    return ["runuser", "-u", run_as, "--", *argv] if run_as else argv


def _run(argv: list[str], run_as: str | None, cwd: Path, timeout: float) -> None:
    done = subprocess.run(
        _as_server_user(argv, run_as),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _kill_postmaster(data: Path) -> None:
    """Last resort when ``pg_ctl stop`` failed: SIGQUIT, then SIGKILL, our postmaster
    (the pid ``pg_ctl start`` wrote in ``postmaster.pid``)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@contextlib.contextmanager
def temporary_postgres(tmp_path: Path) -> Iterator[str]:
    """Start a throw-away cluster; yield ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL is not installed (no {PG_ROOT}/*/bin/initdb; scripts/install)")
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            server_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' system user for initdb")
        run_as = "postgres"
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser (util-linux) is missing")
        base = Path(tempfile.mkdtemp(prefix="drimbox-pg-"))
        os.chown(base, server_user.pw_uid, server_user.pw_gid)
    else:
        base = tmp_path / "pg"
        base.mkdir()
        if len(str(base)) + len("/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
            base = Path(tempfile.mkdtemp(prefix="drimbox-pg-"))
    data, log = base / "data", base / "server.log"
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            run_as,
            base,
            timeout=120,
        )
        for attempt in range(3):  # a free port can be taken before the server binds it
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {base}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    [
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-w",
                        "-t",
                        str(START_TIMEOUT),
                        "-o",
                        options,
                    ],
                    run_as,
                    base,
                    timeout=START_TIMEOUT + 10,
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                _kill_postmaster(data)
                if attempt == 2 or "could not bind" not in _log_tail(log):
                    raise RuntimeError(
                        f"PostgreSQL did not start: {exc}\n{_log_tail(log)}"
                    ) from exc
                continue
            started = True
            break
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        try:
            if started:
                try:
                    _run(
                        [
                            str(bin_dir / "pg_ctl"),
                            "stop",
                            "-D",
                            str(data),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(STOP_TIMEOUT),
                        ],
                        run_as,
                        base,
                        timeout=STOP_TIMEOUT + 10,
                    )
                except (RuntimeError, subprocess.TimeoutExpired):
                    _kill_postmaster(data)
            if log.is_file():
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, tmp_path / "postgres-server.log")
        finally:
            shutil.rmtree(base, ignore_errors=True)
