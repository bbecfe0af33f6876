# The Treasury Orchestrator image: Ray, this package and its pinned dependencies, run as a
# non-root user. Used by the KubeRay RayService (deploy/kuberay/rayservice.yaml), whose operator
# replaces the command with `ray start ...`; run on its own it is the CLI:
#
#   docker build -t treasury-orch:0.1.0 .
#   docker run --rm -e DATABASE_URL=... treasury-orch:0.1.0 accounts list
#
# Linted by tests/unit/test_deploy_files.py (no Docker engine on the build machines).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# wget: KubeRay's liveness and readiness probes call the Ray agents with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*

# uid 1000, the user KubeRay and the rayproject images expect.
RUN useradd --create-home --uid 1000 --shell /bin/bash ray
WORKDIR /home/ray/app

# Dependencies first (a layer that changes only with the lock), exactly as pinned.
COPY deploy/requirements.lock deploy/requirements.lock
RUN pip install --no-cache-dir -r deploy/requirements.lock

COPY pyproject.toml README.md ./
COPY treasury treasury
COPY schemas schemas
COPY storage storage
COPY risk risk
COPY actors actors
COPY serve_app serve_app
RUN pip install --no-cache-dir --no-deps . && pip check

USER ray
# Serve (REST API), dashboard, GCS, Ray client
EXPOSE 8000 8265 6379 10001
ENTRYPOINT ["treasury-orch"]
CMD ["--help"]
