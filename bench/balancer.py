"""The ``source_http2`` row (issue 16 item 3): the browser reaches the Source BFF through
the production balancer, Debian's nginx on the template of ``deploy/nginx`` rendered by
the stack tests' own code (tests.production_stack: TLS 1.2/1.3, HTTP/2, the SNI router,
the study hash), with one replica: the bench's BFF. OHIF's many small frame requests then
share one HTTP/2 connection instead of the browser's six HTTP/1.1 ones.

Chromium trusts the balancer's test certificate by its public key only
(``--ignore-certificate-errors-spki-list``, a second browser process with that flag): the
page is a secure context as in production (the boot worker installs, the HTTP cache
works). The certificate is generated at run time under the bench's work directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bench.browser import CHROMIUM, CHROMIUM_ARGS
from bench.stacks import SOURCE_LOCATION, free_port
from bff.demo.pki import issue, make_ca

if TYPE_CHECKING:
    from bench.run import World


def balancer_origin(world: World) -> str:
    """The https origin the browser uses in the HTTP/2 row (registered at the provider
    when the bench starts)."""
    return f"https://{SOURCE_LOCATION}:{world.balancer_port}"


def protocols(access_log: list[str]) -> dict[str, int]:
    """Requests by protocol in the balancer's access log (its ``"METHOD URI PROTOCOL"``)."""
    counts: dict[str, int] = {}
    for line in access_log:
        match = re.search(r'"[A-Z]+ \S+ (HTTP/[0-9.]+)"', line)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


@contextmanager
def through_balancer(world: World) -> Iterator[tuple[Any, str, Callable[[], dict[str, int]]]]:
    """nginx (the rendered production template) in front of the running BFF; yields a
    browser that trusts its certificate, the report link on the balancer's origin, and a
    count of the requests nginx served by protocol (its access log: the proof that the
    browser spoke HTTP/2)."""
    try:
        from tests.production_stack import TEMPLATE, Balancer, render_balancer, spki_pin
    except ImportError as exc:  # the balancer comes with the stack branch (issue 15)
        raise RuntimeError(
            "source_http2 needs the production balancer (deploy/nginx, "
            "tests/production_stack.py) of the stack branch"
        ) from exc
    if not TEMPLATE.exists():
        raise RuntimeError(f"no balancer template at {TEMPLATE}")
    if not world.balancer_port:
        raise RuntimeError("no balancer port reserved for the HTTP/2 row")
    pki = world.work / "balancer-pki"
    ca = make_ca(pki / "ca", "DRIMbox bench balancer CA")
    cert = issue(
        pki,
        ca,
        common_name=SOURCE_LOCATION,
        dns_names=[SOURCE_LOCATION],
        server=True,
        name="balancer",
    )
    prefix = world.work / f"nginx-h2-{free_port()}"
    prefix.mkdir(parents=True)
    balancer = Balancer(prefix, world.balancer_port, free_port())
    text = render_balancer(
        {
            "PUBLIC_PORT": f"127.0.0.1:{world.balancer_port}",
            "HTTP_INTERNAL_PORT": str(free_port()),
            "SOURCE_API_INTERNAL_PORT": str(free_port()),
            "INTERNAL_LISTEN": f"127.0.0.1:{balancer.internal_port}",
            "PREFIX": str(prefix),
            "SERVER_NAMES": SOURCE_LOCATION,
            # The bench's Consumer rows do not go through it: a name nobody asks for.
            "SOURCE_API_NAME": "db1.unused.localhost",
            "CERT": str(cert.cert),
            "KEY": str(cert.key),
            "REPLICAS": f"server 127.0.0.1:{world.stack.bff_port} max_fails=1 fail_timeout=10s;",
            "SOURCE_API_REPLICAS": "server 127.0.0.1:9;",
            "MAX_BODY": str(16 * 1024**2 + 64 * 1024),
            "EXTRA": "",
        }
    )
    balancer.start(text)
    browser = world.browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=False,
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(cert.cert)}"],
        timeout=60_000,
    )
    try:
        link = world.stack.viewer_link(world.study, SOURCE_LOCATION).replace(
            world.stack.bff_url(SOURCE_LOCATION), balancer_origin(world)
        )
        yield browser, link, lambda: protocols(balancer.access_log())
    finally:
        browser.close()
        balancer.stop()
