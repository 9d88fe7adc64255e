# syntax=docker/dockerfile:1
#
# The ringwatch API and ingest-worker image (docker-compose.yml runs both from the `api` target).
#
#   docker build --target api -t ringwatch:local .
#   docker run --rm ringwatch:local --help
#
# It installs the package without extras on purpose: the `gnn` extra pulls in PyTorch (gigabytes),
# and neither the API nor the ingest workers import it. GNN training runs elsewhere.

# --- build: install the package and its dependencies into a self-contained virtualenv ---------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# Only what the build needs (README.md is the package's long description).
COPY pyproject.toml README.md ./
COPY ringwatch ./ringwatch
RUN pip install --no-cache-dir .

# --- api: the runtime image, no compilers, no build tree, not root ---------------------------
FROM python:3.11-slim AS api

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    RINGWATCH_CYPHER_DIR=/app/cypher

# A fixed numeric UID/GID so that orchestrators can verify "not root" (runAsNonRoot).
RUN groupadd --system --gid 10001 ringwatch \
    && useradd --system --uid 10001 --gid ringwatch --create-home \
        --home-dir /home/ringwatch --shell /usr/sbin/nologin ringwatch

# Code and queries stay owned by root: the service user can read them but not change them.
COPY --from=build /opt/venv /opt/venv
COPY cypher /app/cypher

WORKDIR /app
USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).close()"]

ENTRYPOINT ["ringwatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
