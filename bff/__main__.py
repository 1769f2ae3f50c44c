"""Command line: ``drimbox-viewer serve`` (production) and ``drimbox-viewer demo``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import uvicorn

from bff.app import create_app
from bff.settings import PROJECT_ROOT, Settings

log = logging.getLogger("bff")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _serve(settings: Settings, *, ready_lines: list[str]) -> None:
    """Run uvicorn; print ``ready_lines`` on stdout once it accepts connections."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        for line in ready_lines:
            print(line, flush=True)
    await task


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {}
    if args.port is not None:
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    _configure_logging(settings.log_level)
    asyncio.run(_serve(settings, ready_lines=[]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a local Orthanc with the demo study and the BFF in front of it."""
    from bff.demo.dataset import write_demo_study
    from bff.demo.orthanc import OrthancProcess

    settings = Settings.from_env(port=args.port, mode="demo")
    _configure_logging(settings.log_level)
    var = Path(args.var)
    data_dir = var / f"demo-data-{args.slices}-{args.seed}"
    log.info("writing the demo study (%d slices) into %s", args.slices, data_dir)
    study = write_demo_study(data_dir, n_slices=args.slices, seed=args.seed, workers=2)
    with OrthancProcess(var / "orthanc", http_port=args.pacs_port) as pacs:
        if not pacs.has_study(study.study_uid):
            pacs.upload([*study.instance_files, study.kos_path])
        settings = Settings.from_env(port=args.port, mode="demo", upstream_url=pacs.dicomweb_url)
        host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
        base = f"http://{host}:{settings.port}"
        viewer_url = f"{base}/viewer?StudyInstanceUIDs={study.study_uid}"
        lines = [f"PACS_URL={pacs.base_url}", f"VIEWER_URL={viewer_url}"]
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, ready_lines=lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drimbox-viewer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the BFF with settings from the environment")
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="local Orthanc + demo study + BFF, in the foreground")
    demo.add_argument("--port", type=int, default=8080, help="BFF port (default 8080)")
    demo.add_argument("--pacs-port", type=int, default=8042, help="Orthanc HTTP port")
    demo.add_argument("--slices", type=int, default=300, help="CT slices in the demo study")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--var", default=str(PROJECT_ROOT / "var"), help="working directory")
    demo.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
