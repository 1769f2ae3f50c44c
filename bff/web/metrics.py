"""Prometheus metrics (issue 15 item 4), one registry per application (no module-level
singleton: two apps in one test process do not share counts).

Labels are low-cardinality by construction: a route family (:func:`route_family`, never
a UID), a status class, an upstream kind, an error code, a login outcome. What the lower
layers count themselves (frame caches, transcoding pool, readahead budget) is read at
scrape time by a collector, so they stay free of this library.

Series (all prefixed ``drimbox_``):

- ``http_request_duration_seconds{route,method,status}`` histogram;
- ``http_requests_in_flight`` gauge;
- ``frame_wait_seconds`` histogram: frame requests that missed the memory cache;
- ``frame_cache_hits_total`` / ``frame_cache_misses_total{cache="memory"|"disk"}``;
- ``frame_cache_bytes{cache}``;
- ``transcode_pool_jobs`` gauge (queued or running), ``transcode_pool_workers``;
- ``readahead_reserved_bytes``, ``readahead_budget_bytes`` gauges,
  ``readahead_over_budget_total``;
- ``upstream_errors_total{upstream="pacs"|"source",code}``;
- ``logins_total{provider,outcome}``;
- ``draining`` gauge (1 after SIGTERM);
- issue 16: ``prepared_store_bytes``, ``prepared_store_instances`` gauges (the exams
  prepared at publication), ``prepared_instances_total`` (instances this process
  prepared), ``transcode_pool_submitted_total{lane="interactive"|"background"}``,
  ``series_metadata_answers_total{outcome="built"|"reused"}`` (OHIF's series metadata
  answers built, and asks answered with one already built or being built: the grant's,
  another session's of the exam) and
  ``series_metadata_answers_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bff.dicomweb.budget import ReadaheadBudget
from bff.dicomweb.cache import FrameCache
from bff.dicomweb.disk_cache import DiskFrameCache
from bff.dicomweb.metadata_ahead import Answers
from bff.dicomweb.prepared import PreparedStore
from bff.transcode import TranscodePool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROBE_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
LOGIN_OUTCOMES = ("success", "refused", "failed", "error")
_FRAMES = re.compile(r"^/dicomweb/studies/[^/]+/series/[^/]+/instances/[^/]+/frames/")
_METADATA = re.compile(r"^/dicomweb/studies/[^/]+(/series/[^/]+)?/metadata$")
_FILE_LIKE = re.compile(r"\.[A-Za-z0-9]{1,8}$")


def route_family(path: str) -> str:
    """The family of a request path, for metrics and the access log (never a UID)."""
    if path in PROBE_PATHS:
        return "probe"
    if path.startswith("/auth/"):
        return "auth"
    if path.startswith("/dicomweb/"):
        if _FRAMES.match(path):
            return "dicomweb_frames"
        if _METADATA.match(path):
            return "dicomweb_metadata"
        return "dicomweb_other"
    if path.startswith("/api/source/"):
        return "source_api"
    if path.startswith("/api/admin/"):
        return "admin_api"
    if path.startswith("/api/download/"):
        return "download"
    if path.startswith("/api/"):
        return "api"
    if path in ("/IHEInvokeImageDisplay", "/consumer") or path.startswith("/consumer/"):
        return "page"
    if _FILE_LIKE.search(path):
        return "static"
    return "page"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@dataclass
class Sources:
    """What the collector reads at scrape time (set by the lifespan)."""

    cache: FrameCache | None = None
    disk: DiskFrameCache | None = None
    pool: TranscodePool | None = None
    budget: ReadaheadBudget | None = None
    draining: Callable[[], bool] = lambda: False
    #: the exams prepared at publication and the preparer's counters (issue 16)
    prepared: PreparedStore | None = None
    preparation: dict[str, int] | None = None
    #: OHIF's series metadata answers, shared by the sessions of an exam (issue 16)
    answers: Answers | None = None


class _Collector(Collector):
    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        s = self.sources
        hits = CounterMetricFamily(
            "drimbox_frame_cache_hits", "Frame requests answered from a cache.", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "drimbox_frame_cache_misses", "Frame lookups a cache did not hold.", labels=["cache"]
        )
        size = GaugeMetricFamily(
            "drimbox_frame_cache_bytes", "Bytes held by a frame cache.", labels=["cache"]
        )
        if s.cache is not None:
            stats = s.cache.stats()
            hits.add_metric(["memory"], stats["hits"])
            misses.add_metric(["memory"], stats["misses"])
            size.add_metric(["memory"], stats["nbytes"])
        if s.disk is not None:
            hits.add_metric(["disk"], s.disk.hits)
            misses.add_metric(["disk"], s.disk.misses)
            size.add_metric(["disk"], s.disk.nbytes)
        yield from (hits, misses, size)
        if s.pool is not None:
            yield GaugeMetricFamily(
                "drimbox_transcode_pool_jobs",
                "Transcoding pool jobs queued or running (the queue depth).",
                value=s.pool.jobs,
            )
            yield GaugeMetricFamily(
                "drimbox_transcode_pool_workers", "Transcoding worker processes.", s.pool.workers
            )
            submitted = CounterMetricFamily(
                "drimbox_transcode_pool_submitted",
                "Jobs handed to the transcoding workers, by lane (background: preparation).",
                labels=["lane"],
            )
            for lane, count in s.pool.submitted.items():
                submitted.add_metric([lane], count)
            yield submitted
        if s.prepared is not None:
            yield GaugeMetricFamily(
                "drimbox_prepared_store_bytes",
                "Bytes of the exams prepared at publication.",
                value=s.prepared.nbytes,
            )
            yield GaugeMetricFamily(
                "drimbox_prepared_store_instances",
                "Instances prepared at publication, in the store.",
                value=len(s.prepared),
            )
        if s.preparation is not None:
            yield CounterMetricFamily(
                "drimbox_prepared_instances",
                "Instances this process transcoded at publication.",
                value=s.preparation["instances_prepared"],
            )
        if s.budget is not None:
            yield GaugeMetricFamily(
                "drimbox_readahead_reserved_bytes",
                "Instances received and not yet transcoded, all retrievals together.",
                value=s.budget.reserved,
            )
            yield GaugeMetricFamily(
                "drimbox_readahead_budget_bytes", "The readahead budget.", value=s.budget.total
            )
            yield CounterMetricFamily(
                "drimbox_readahead_over_budget",
                "Instances kept over the budget (one in hand per retrieval).",
                value=s.budget.forced,
            )
        if s.answers is not None:
            answers = CounterMetricFamily(
                "drimbox_series_metadata_answers",
                "Series metadata answers built, and asks answered with one already built.",
                labels=["outcome"],
            )
            answers.add_metric(["built"], s.answers.builds)
            answers.add_metric(["reused"], s.answers.reused)
            yield answers
            yield GaugeMetricFamily(
                "drimbox_series_metadata_answers_bytes",
                "Bytes of built series metadata answers kept.",
                value=s.answers.nbytes,
            )
        yield GaugeMetricFamily(
            "drimbox_draining", "1 once SIGTERM was received.", value=int(s.draining())
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sources = Sources()
        self.registry.register(_Collector(self.sources))
        self.request_duration = Histogram(
            "drimbox_http_request_duration_seconds",
            "Time to answer a request (to its last byte), by route family.",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.in_flight = Gauge(
            "drimbox_http_requests_in_flight", "Requests being answered.", registry=self.registry
        )
        self.frame_wait = Histogram(
            "drimbox_frame_wait_seconds",
            "Wait of a frame request for its frame to arrive and be transcoded (cache misses).",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.upstream_errors = Counter(
            "drimbox_upstream_errors",
            "Failed upstream calls: HTTP status or transport failure kind.",
            ["upstream", "code"],
            registry=self.registry,
        )
        self.logins = Counter(
            "drimbox_logins",
            "OIDC login callbacks by provider and outcome.",
            ["provider", "outcome"],
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in {"GET", "HEAD", "POST"} else "other"
        self.request_duration.labels(route, method, status_class(status)).observe(seconds)

    def observe_frame_wait(self, seconds: float) -> None:
        self.frame_wait.observe(seconds)

    def upstream_error(self, upstream: str, code: str) -> None:
        self.upstream_errors.labels(upstream, code).inc()

    def login(self, provider: str, outcome: str) -> None:
        if provider not in {"psc", "fcp", "fc"}:
            provider = "unknown"
        self.logins.labels(provider, outcome if outcome in LOGIN_OUTCOMES else "error").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
