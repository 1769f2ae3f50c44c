"""Run the local identity provider with uvicorn (wired into ``drimbox-viewer idp``).

    python -m bff.idp --port 9000 --users bff/idp/demo-users.json --clients clients.json

Users file: see :mod:`bff.idp.users`; clients file: see :mod:`bff.idp.clients`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_USERS = Path(__file__).with_name("demo-users.json")


def run_idp(
    port: int,
    users: Path,
    clients: Path,
    host: str = "127.0.0.1",
    issuer_base: str | None = None,
) -> None:
    """Serve the provider until interrupted; issuers are ``{issuer_base}/{psc|fcp|fc}``."""
    import uvicorn

    from bff.idp.app import create_idp_app
    from bff.idp.clients import load_clients
    from bff.idp.users import load_users

    base = issuer_base or f"http://{host}:{port}"
    app = create_idp_app(load_users(users), load_clients(clients), issuer_base=base)
    # access_log off: authorization codes travel in query strings of redirects.
    uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bff.idp", description="Local ProSanteConnect/FranceConnect+ look-alike."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--users", type=Path, default=DEMO_USERS)
    parser.add_argument("--clients", type=Path, required=True)
    parser.add_argument("--issuer-base", default=None, help="public base URL (default: host:port)")
    args = parser.parse_args(argv)
    run_idp(args.port, args.users, args.clients, host=args.host, issuer_base=args.issuer_base)
