"""Command line: ``drimbox-viewer serve | demo | kos | db | audit | idp``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from bff.app import create_app
from bff.logs import ACCESS_LOGGER, configure_logging
from bff.settings import PROJECT_ROOT, Settings
from bff.source.listener import source_api_options
from bff.web.drain import Drain
from bff.web.observe import Operations, operations_app

log = logging.getLogger("bff")


def _configure_logging(level: str, fmt: str = "text") -> None:
    configure_logging(level, fmt, sys.stderr)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: :func:`_serve` handles SIGTERM
    (the drain) and SIGINT for every listener of the process at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: Any, host: str, port: int, level: str, **extra: Any) -> uvicorn.Server:
    options: dict[str, Any] = {"proxy_headers": True, **extra}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=level.lower(),
        log_config=None,  # uvicorn's loggers go to ours (bff/logs.py: text or JSON)
        timeout_graceful_shutdown=5,
        # Our access log (bff/web/observe.py) never records a query string: OIDC codes
        # and states travel in those of /auth/callback.
        access_log=False,
        **options,
    )
    return _Server(config)


def _servers(app: Any, settings: Settings, ops: Operations | None = None) -> list[uvicorn.Server]:
    """The BFF's listener, plus (Source role) the mutual-TLS listener for Consumers:
    same event loop, the Source API only, client certificates required
    (bff/source/listener.py), plus the internal metrics listener (DRIMBOX_METRICS_PORT:
    /metrics, /livez, /readyz only)."""
    # X-Forwarded-For / -Proto believed from the balancer only (docs/deployment.md).
    servers = [
        _server(
            app,
            settings.host,
            settings.port,
            settings.log_level,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    ]
    if settings.metrics_port and ops is not None:
        servers.append(
            _server(
                operations_app(ops),
                settings.metrics_host,
                settings.metrics_port,
                settings.log_level,
                lifespan="off",
                proxy_headers=False,
            )
        )
    if settings.source_api_port:
        options = source_api_options(app, settings)
        servers.append(
            _server(
                options.pop("app"),
                settings.host,
                options.pop("port"),
                settings.log_level,
                **options,
            )
        )
    return servers


@contextlib.contextmanager
def _signals(
    servers: list[uvicorn.Server], drain: Drain | None, settings: Settings | None
) -> Iterator[None]:
    """SIGTERM drains (bff/web/drain.py) when ``drain`` is given; SIGINT, a second
    SIGTERM, or SIGTERM without a drain stop every listener at once (uvicorn's own
    graceful shutdown: connections closed, requests given a few seconds)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    def on_sigterm() -> None:
        if drain is None or settings is None or drain.draining:
            stop()
            return
        drain.start()
        task = loop.create_task(_drain_then_stop(drain, settings, stop))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, stop)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)
        for task in tasks:
            task.cancel()


async def _drain_then_stop(drain: Drain, settings: Settings, stop: Any) -> None:
    """Issue 15 item 2: readiness is 503 now; requests are served for the notice (the
    balancer's probe sees it), in-flight ones until they finish or the grace is spent."""
    grace = max(settings.drain_grace_s, settings.drain_notice_s)
    log.info(
        "SIGTERM: draining (readiness 503), %d request(s) in flight, grace %.0f s",
        drain.in_flight,
        grace,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    await asyncio.sleep(settings.drain_notice_s)
    finished = await drain.idle(max(0.0, deadline - loop.time()))
    if finished:
        log.info("drained: no request in flight, stopping")
    else:
        log.warning("drain grace spent with %d request(s) in flight, stopping", drain.in_flight)
    stop()


async def _serve(
    servers: list[uvicorn.Server],
    *,
    ready_lines: list[str],
    drain: Drain | None = None,
    settings: Settings | None = None,
) -> None:
    """Run the servers together; print ``ready_lines`` once all accept connections."""
    with _signals(servers, drain, settings):
        await _serve_all(servers, ready_lines)


async def _serve_all(servers: list[uvicorn.Server], ready_lines: list[str]) -> None:
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    if all(s.started for s in servers):
        for line in ready_lines:
            print(line, flush=True)
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {"port": args.port} if args.port is not None else {}
    settings = Settings.from_env(**overrides)
    _configure_logging(settings.log_level, settings.resolved_log_format)
    ops = Operations()
    app = create_app(settings, operations=ops)
    servers = _servers(app, settings, ops)
    asyncio.run(_serve(servers, ready_lines=[], drain=ops.drain, settings=settings))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Local Orthanc with the demo study, the local identity provider, the Source BFF
    (with its mutual-TLS listener for Consumers) and a Consumer BFF beside it."""
    import secrets as secrets_module

    from bff.demo.dataset import write_demo_study
    from bff.demo.kos import retarget_kos
    from bff.demo.orthanc import OrthancProcess
    from bff.demo.pki import make_test_pki, make_whitelist_signer
    from bff.demo.practice import DEMO_LOCAL_ID, practice_instance
    from bff.demo.stack import DEMO_CDA_ID, DEMO_USERS, DEMO_USERS_FILE, new_stack, publish_demo_kos
    from bff.demo.whitelist import write_test_whitelist
    from bff.idp.app import create_idp_app
    from bff.idp.users import load_users

    _configure_logging("INFO")
    # The demo's terminal shows what happens, not a line per frame (serve logs them all).
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    var = Path(args.var)
    data_dir = var / f"demo-data-{args.slices}-{args.seed}"
    log.info("writing the demo study (%d slices) into %s", args.slices, data_dir)
    study = write_demo_study(data_dir, n_slices=args.slices, seed=args.seed, workers=2)
    host = args.location
    consumer_origin = f"http://{args.consumer_location}:{args.consumer_port}"
    stack = new_stack(args.port, args.idp_port, (host,), extra_origins=(consumer_origin,))
    archive_url = f"sqlite:///{var / 'demo-archive.db'}"
    # Throw-away PKI and whitelist for the DRIMbox-to-DRIMbox link (never committed): the
    # list names the Source ('localhost', its server certificate) and the Consumer (its
    # client certificate), signed by a throw-away key both pin in place of ANS's.
    pki = make_test_pki(var / "pki", server_names=("localhost",))
    signer = make_whitelist_signer(var / "pki")
    whitelist = var / "demo-whitelist.xml"
    write_test_whitelist(whitelist, ["localhost", "consumer.localhost"], signer)
    trust = {"whitelist_file": str(whitelist), "whitelist_signer_cert": str(signer.cert)}
    consumer_kos = var / "demo-kos-for-consumer.dcm"
    source_api = f"https://localhost:{args.source_api_port}/api/source"
    consumer_kos.write_bytes(retarget_kos(study.kos_path.read_bytes(), source_api))
    # The Consumer's practice holds the demo patient under its own local id, the INS in
    # OtherPatientIDsSequence (DB.VI-CS.32): in the same Orthanc, beside the demo study.
    practice_patient = var / "demo-practice-patient.dcm"
    if not practice_patient.is_file():
        practice_instance(practice_patient, local_id=DEMO_LOCAL_ID, ins=study.patient.ins)
    # DB.VI-CO.42: the practice's PACS the Consumer exports to, a second Orthanc (empty at
    # start, kept between runs), reached by STOW-RS and by C-STORE.
    practice = OrthancProcess(
        var / "orthanc-cabinet",
        http_port=args.practice_pacs_port,
        dicom_port=args.practice_dicom_port,
        aet="CABINET",
        name="CABINET",
    )
    destinations = json.dumps(
        [
            {"name": "PACS du cabinet", "protocol": "stow", "url": practice.dicomweb_url},
            {
                "name": "Station du cabinet (DICOM)",
                "protocol": "cstore",
                "host": "127.0.0.1",
                "port": args.practice_dicom_port,
                "called_ae": "CABINET",
                "calling_ae": "DRIMBOX",
            },
        ]
    )
    with OrthancProcess(var / "orthanc", http_port=args.pacs_port) as pacs, practice:
        if not pacs.has_study(study.study_uid):
            pacs.upload([*study.instance_files, study.kos_path])
        pacs.upload([practice_patient])  # the same instance again: Orthanc keeps it once
        publish_demo_kos(archive_url, study.kos_path, location=host, cda_id=DEMO_CDA_ID)
        source = Settings.from_env(
            None,
            **stack.bff_overrides(),
            locations=f"{host}={pacs.dicomweb_url}",
            archive_url=archive_url,
            audit_log=var / "demo-audit.jsonl",
            source_api_port=args.source_api_port,
            tls_cert=str(pki["server"].cert),
            tls_key=str(pki["server"].key),
            tls_client_ca=str(pki["client"].ca_cert),
            **trust,
        )
        consumer = Settings.from_env(
            None,
            **{**stack.bff_overrides(), "port": args.consumer_port},
            locations=f"{args.consumer_location}={pacs.dicomweb_url}",
            archive_url=f"sqlite:///{var / 'demo-consumer-archive.db'}",
            audit_log=var / "demo-consumer-audit.jsonl",
            # A Consumer publishes nothing: no preparation, no store (issue 16).
            prepare_at_publication=False,
            prepared_dir="",
            consumer_enabled=True,
            consumer_handover_secret=secrets_module.token_urlsafe(24),
            source_client_cert=str(pki["client"].cert),
            source_client_key=str(pki["client"].key),
            source_ca_bundle=str(pki["server"].ca_cert),
            **trust,
            source_ports=str(args.source_api_port),
            consumer_demo_kos=str(consumer_kos),
            local_patient_id_url=pacs.dicomweb_url,
            export_destinations=destinations,
        )
        idp = create_idp_app(
            load_users(DEMO_USERS_FILE), stack.idp_clients(), issuer_base=stack.issuer_base
        )
        servers = [
            _server(idp, "127.0.0.1", args.idp_port, "warning"),
            *_servers(create_app(source), source),
            *_servers(create_app(consumer), consumer),
        ]
        lines = [f"PACS_URL={pacs.base_url}", f"IDP_URL={stack.issuer_base}"]
        lines += [f"DEMO_USER={profile}:{username}" for profile, username in DEMO_USERS]
        lines.append(f"CONSUMER_URL={consumer_origin}/consumer")
        lines.append(f"PRACTICE_PACS_URL={practice.base_url}")
        lines.append(f"VIEWER_URL={stack.viewer_link(study, host)}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(servers, ready_lines=lines))
    return 0


def cmd_idp(args: argparse.Namespace) -> int:
    from bff.idp.cli import run_idp

    settings = Settings.from_env()
    if settings.mode != "demo":
        print("the local identity provider only runs in demo mode", file=sys.stderr)
        return 1
    _configure_logging("INFO")
    run_idp(args.port, Path(args.users), Path(args.clients), issuer_base=args.issuer_base)
    return 0


#: The demo's users (bff/idp/demo-users.json: in the checkout only, not in the wheel).
DEMO_USERS_FILE = PROJECT_ROOT / "bff" / "idp" / "demo-users.json"


def _has_demo() -> bool:
    """The demo tooling and identity provider are in the checkout, not in the production
    wheel (issue 15; pyproject.toml excludes them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("bff.demo", "bff.idp"))


def _without_demo(_args: argparse.Namespace) -> int:
    print(
        "the demo and the local identity provider are not part of this installation "
        "(production wheel): run them from the source checkout",
        file=sys.stderr,
    )
    return 2


def main(argv: list[str] | None = None) -> int:
    from bff.archive.cli import register as register_kos
    from bff.migrations.cli import register as register_db
    from bff.migrations.cli import register_audit

    demo_here = _has_demo()

    parser = argparse.ArgumentParser(prog="drimbox-viewer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the BFF with settings from the environment")
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", help="Orthanc + demo study + identity provider + BFF")
    demo.add_argument("--port", type=int, default=8080, help="BFF port (default 8080)")
    demo.add_argument("--pacs-port", type=int, default=8042, help="Orthanc HTTP port")
    demo.add_argument("--idp-port", type=int, default=9000, help="identity provider port")
    demo.add_argument("--location", default="vi1.localhost", help="the viewer's host name")
    demo.add_argument("--source-api-port", type=int, default=8443, help="mutual-TLS listener")
    demo.add_argument("--consumer-port", type=int, default=8081, help="Consumer BFF port")
    demo.add_argument("--consumer-location", default="co.localhost", help="Consumer host name")
    demo.add_argument(
        "--practice-pacs-port", type=int, default=8043, help="export destination's HTTP port"
    )
    demo.add_argument(
        "--practice-dicom-port", type=int, default=4243, help="export destination's DICOM port"
    )
    demo.add_argument("--slices", type=int, default=300, help="CT slices in the demo study")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--var", default=str(PROJECT_ROOT / "var"), help="working directory")
    demo.set_defaults(func=cmd_demo if demo_here else _without_demo)
    idp = sub.add_parser("idp", help="the local identity provider alone (demo mode only)")
    idp.add_argument("--port", type=int, default=9000)
    idp.add_argument("--users", default=str(DEMO_USERS_FILE))
    idp.add_argument("--clients", required=True, help="clients JSON file (bff/idp/clients.py)")
    idp.add_argument("--issuer-base", default=None)
    idp.set_defaults(func=cmd_idp if demo_here else _without_demo)
    register_kos(sub)
    register_db(sub)
    register_audit(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
