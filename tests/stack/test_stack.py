"""The production-like stack (issue 15, item 3): nginx terminating TLS with HTTP/2 in
front of two replicas in production mode, PostgreSQL, Orthanc, the identity provider under
a realistic name. One person's viewing, followed through the balancer: signed in once,
then a replica killed and every replica restarted under it (DB.VI-CS.17: one retrieval per
series, on the replica that owns the study)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.test_viewer import wait_for_image
from tests.production_stack import LOCATION, SOURCE_API_HOST, Stack
from tests.waiting import poll

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

PROGRESS_DONE = """async (study) => {
  const r = await fetch('/api/progress?studyUID=' + study, {credentials: 'same-origin'});
  if (!r.ok) return false;
  const series = (await r.json()).series;
  return series.length > 0 && series.every((s) => s.complete);
}"""


def _sign_in(page: Any, stack: Stack) -> None:
    page.goto(stack.link())
    page.get_by_text("Accès à votre examen d'imagerie").wait_for()
    page.click("button[data-provider=fcp]")
    page.fill("input[name=username]", "dominique.pat-trois")
    page.keyboard.press("Enter")


def _view(page: Any) -> None:
    """The viewer as the person sees it: the identity, then the images."""
    page.wait_for_url("**/viewer?StudyInstanceUIDs=*", timeout=60_000)
    page.get_by_role("button", name="Voir les images").click(timeout=60_000)
    wait_for_image(page)
    assert "Accès à votre examen" not in page.content()


def _whole_study(page: Any, stack: Stack) -> None:
    assert poll(lambda: page.evaluate(PROGRESS_DONE, stack.study.study_uid), 90)


def test_a_patient_signs_in_through_the_balancer_over_http2(stack: Stack, stack_page: Any) -> None:
    _sign_in(stack_page, stack)
    _view(stack_page)
    protocols = stack_page.evaluate(
        "performance.getEntriesByType('navigation').concat("
        "performance.getEntriesByType('resource')).map((e) => e.nextHopProtocol)"
    )
    assert protocols and set(protocols) <= {"h2", ""}, protocols
    assert "h2" in protocols
    # The identity provider was reached by name through the egress proxy, not loopback.
    assert stack.proxy.tunnels > 0


def test_one_replica_owns_the_study_and_streams_each_series_once(
    stack: Stack, stack_page: Any
) -> None:
    """The grant's prefetch went to the study's owner (whichever replica took the login
    callback), and every image request went there: Orthanc was asked each series once."""
    _whole_study(stack_page, stack)
    uid = stack.study.study_uid
    counts = stack.series_retrievals()
    assert set(counts) == set(stack.study.series_uids), counts
    assert all(n == 1 for n in counts.values()), counts
    prefetches = [
        line for line in stack.balancer.access_log() if f"POST /api/prefetch/{uid} " in line
    ]
    assert prefetches and all('" 204 ' in line for line in prefetches), prefetches
    owners = stack.upstreams_of(f"/dicomweb/studies/{uid}/series/")
    assert len(owners) == 1, owners
    assert stack.upstreams_of(f"/api/prefetch/{uid}") == owners
    # The export to the practice's PACS (DB.VI-CO.42) runs its job on one replica: asked
    # four times (round robin would alternate), it is always the owner that answers.
    for _ in range(4):
        stack_page.evaluate(
            "(u) => fetch('/api/pacs-export/' + u, {credentials: 'same-origin'})", uid
        )
    assert stack.upstreams_of(f"/api/pacs-export/{uid}") == owners


def test_the_source_api_passes_through_to_the_replicas_mutual_tls(stack: Stack) -> None:
    """The balancer routes the Source API's name as TCP (SNI read, never decrypted): the
    replica asks the Consumer's certificate itself; without one there is no connection."""
    context = stack.tls_context()
    context.load_verify_locations(str(stack.source_ca))
    url = (
        f"https://{SOURCE_API_HOST}:{stack.balancer.public_port}/api/source/studies/"
        f"{stack.study.study_uid}/series/{stack.study.series_uids[0]}"
    )
    transport = httpx.HTTPTransport(verify=context, local_address="127.0.0.1")
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        _resolve_get(url, transport)
    cert, key = stack.client_tls
    context.load_cert_chain(str(cert), str(key))
    answer = _resolve_get(url, httpx.HTTPTransport(verify=context))
    # The replica's Source API answered (no PSC token: refused by the application, the
    # Tableau 2 status of a bad token).
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "S403"


def _resolve_get(url: str, transport: httpx.HTTPTransport) -> httpx.Response:
    """GET ``url`` at this machine, with the URL's name for SNI and Host."""
    parts = urlsplit(url)
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        request = client.build_request(
            "GET",
            url.replace(parts.hostname or "", "127.0.0.1", 1),
            headers={"Host": parts.netloc},
            extensions={"sni_hostname": parts.hostname},
        )
        return client.send(request)


def test_a_consumer_handover_posted_to_one_replica_opens_on_the_other(stack: Stack) -> None:
    a, b = stack.replicas
    host = f"{LOCATION}:{stack.balancer.public_port}"
    forwarded = {"Host": host, "X-Forwarded-Proto": "https"}
    posted = httpx.post(
        a.url + "/api/consumer/kos",
        content=stack.consumer_kos.read_bytes(),
        headers={
            **forwarded,
            "Authorization": f"Bearer {stack.handover_secret}",
            "X-PSC-Access-Token": "psc-access-token-of-dr-radiologue",
            "Content-Type": "application/dicom",
        },
        trust_env=False,
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    viewer_url = posted.json()["viewer_url"]
    assert viewer_url.startswith(f"https://{host}/consumer/open/")
    path = urlsplit(viewer_url).path
    opened = httpx.get(b.url + path, headers=forwarded, trust_env=False, timeout=30)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"].startswith("/viewer?StudyInstanceUIDs=")
    # Single use across replicas: the same URL again, on either, is refused.
    again = httpx.get(a.url + path, headers=forwarded, trust_env=False, timeout=30)
    assert again.status_code == 401


def test_a_replica_killed_mid_viewing_does_not_sign_the_viewer_out(
    stack: Stack, stack_page: Any
) -> None:
    uid = stack.study.study_uid
    (owner,) = stack.upstreams_of(f"/dicomweb/studies/{uid}/series/")
    victim = next(r for r in stack.replicas if r.address == owner)
    survivor = next(r for r in stack.replicas if r is not victim)
    seen = len(stack.balancer.access_log())
    victim.kill()
    try:
        stack_page.reload()
        _view(stack_page)
        _whole_study(stack_page, stack)
    finally:
        victim.start()
    # The study moved to the other replica (the next on the hash ring).
    after = [
        line.rsplit(" ", 1)[-1]
        for line in stack.balancer.access_log()[seen:]
        if f"/dicomweb/studies/{uid}/series/" in line and '" 200 ' in line
    ]
    assert after and set(after) == {survivor.address}, after


def test_restarting_every_replica_keeps_the_session(stack: Stack, stack_page: Any) -> None:
    for replica in stack.replicas:
        replica.stop()
    for replica in stack.replicas:
        replica.start()
    stack_page.reload()
    _view(stack_page)


def test_the_balancer_refuses_what_is_internal(stack: Stack) -> None:
    """The admin API, the replicas' prefetch, probes and metrics are not reachable from
    outside."""
    context = stack.tls_context()
    for path in (
        "/api/admin/kos",
        f"/api/prefetch/{stack.study.study_uid}",
        "/readyz",
        "/livez",
        "/metrics",
    ):
        answer = _resolve_get(stack.origin + path, httpx.HTTPTransport(verify=context))
        assert answer.status_code == 404, path
    assert isinstance(context, ssl.SSLContext)


def test_the_owner_prefetch_needs_the_session_and_its_csrf_token(
    stack: Stack, stack_page: Any
) -> None:
    """POST /api/prefetch/{study} on a replica: the same access decision as every image
    route, plus the session's CSRF token (bff/facade/routes.py)."""
    replica = stack.replicas[0]
    url = f"{replica.url}/api/prefetch/{stack.study.study_uid}"
    forwarded = {"Host": f"{LOCATION}:{stack.balancer.public_port}", "X-Forwarded-Proto": "https"}
    anonymous = httpx.post(url, headers=forwarded, trust_env=False, timeout=10)
    assert anonymous.status_code == 401
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in stack_page.context.cookies())
    no_csrf = httpx.post(url, headers={**forwarded, "Cookie": cookie}, trust_env=False, timeout=10)
    assert no_csrf.status_code == 400
    assert no_csrf.json()["code"]
    other_study = httpx.post(
        f"{replica.url}/api/prefetch/1.2.3.4",
        headers={**forwarded, "Cookie": cookie, "X-CSRF-Token": "x"},
        trust_env=False,
        timeout=10,
    )
    assert other_study.status_code == 404
