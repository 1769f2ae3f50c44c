# The BFF's production image (issue 15; docs/deployment.md). Multi-stage: the build stage
# makes the wheel and the locked environment with uv and fetches the pinned stock OHIF
# (checked against its sha512); the runtime stage holds them, runs as a non-root user, and
# installs nothing at start. Debian 12 throughout (Python 3.11, like the checkout).
#
#   docker build -t drimbox-viewer:0.1.0 .        (compose.yaml builds it the same way)

FROM debian:12-slim AS build
ARG UV_VERSION=0.13.9
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
      ca-certificates npm openssl gzip tar \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m pip install --no-cache-dir --break-system-packages "uv==${UV_VERSION}"
WORKDIR /src
ENV UV_PROJECT_ENVIRONMENT=/opt/drimbox/venv UV_PYTHON=/usr/bin/python3 UV_LINK_MODE=copy
# The locked dependencies first (a layer that changes with uv.lock only), no dev extras.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
# The wheel: the BFF without the demo provider and demo tooling (pyproject.toml).
COPY bff ./bff
RUN uv build --wheel --out-dir /wheels \
 && uv pip install --python /opt/drimbox/venv/bin/python --no-deps /wheels/*.whl
# Stock OHIF, fetched and verified; our configuration around it.
COPY scripts/fetch-ohif ./scripts/fetch-ohif
COPY ohif-config/ohif-version.env ohif-config/boot-files.txt ohif-config/app-config.js ./ohif-config/
COPY ohif-config/panel ./ohif-config/panel
RUN scripts/fetch-ohif

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/drimbox --shell /usr/sbin/nologin drimbox \
 && install -d -o drimbox -g drimbox -m 0700 /var/lib/drimbox
COPY --from=build /opt/drimbox/venv /opt/drimbox/venv
COPY --from=build /src/ohif-dist /opt/drimbox/ohif-dist
COPY --from=build /src/ohif-config /opt/drimbox/ohif-config
ENV DRIMBOX_MODE=production \
    DRIMBOX_HOST=0.0.0.0 \
    DRIMBOX_PORT=8080 \
    DRIMBOX_OHIF_DIST=/opt/drimbox/ohif-dist \
    DRIMBOX_OHIF_CONFIG=/opt/drimbox/ohif-config \
    DRIMBOX_FRAME_DISK_CACHE_DIR=/var/lib/drimbox/frame-cache \
    DRIMBOX_AUDIT_LOG=/var/lib/drimbox/audit.jsonl \
    PATH=/opt/drimbox/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Frame cache and audit file: a volume (the data directory).
VOLUME ["/var/lib/drimbox"]
USER drimbox
EXPOSE 8080 8443
# Ready: 200 from /readyz (503 while draining or when the database is down).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DRIMBOX_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["/opt/drimbox/venv/bin/drimbox-viewer"]
CMD ["serve"]
