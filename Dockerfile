# syntax=docker/dockerfile:1
# The agent server, self-hosted (Cartesia stopped hosting Line SDK code on 2026-12-01: README, "From zero
# to a real call on your own host").
#
#   docker build -t vox-line-agent .
#   docker run --rm -p 8000:8000 --env-file agent.env --stop-timeout 1830 vox-line-agent
#
# --stop-timeout: on SIGTERM the server drains, live calls go on up to AGENT_DRAIN_TIMEOUT_S (1800 s)
# plus each call's flush (VOX_DRAIN_TIMEOUT_S, 12 s); docker's default of 10 s would cut them off.
# Kubernetes: deploy/k8s/ (terminationGracePeriodSeconds).
#
# Checked without a docker engine by tests/unit/test_dockerfile.py: the recipe is parsed, and its
# install steps run in a clean venv (the slow test). Not checked there: the base image itself, the
# built image, the HEALTHCHECK under a real engine.

# The Python of the lock (requirements.lock was resolved on 3.11). Pin a digest in production:
# docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock pyproject.toml ./
COPY deploy/image_deps.py deploy/
# Only the runtime dependencies (pyproject.toml), at the lock's versions; the lock also pins the lab,
# benchmark and test tools, which the image does not need. `verify` fails the build if anything
# installed is not pinned by the lock.
RUN python -m venv /opt/venv \
 && python deploy/image_deps.py requirements > /tmp/runtime.txt \
 && /opt/venv/bin/pip install --requirement /tmp/runtime.txt --constraint requirements.lock \
 && /opt/venv/bin/python deploy/image_deps.py verify

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it (deploy/k8s/deployment.yaml).
RUN groupadd --system --gid 10001 agent \
 && useradd --system --uid 10001 --gid agent --no-create-home --home-dir /nonexistent agent
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# What the deployed agent is (tests/unit/test_deploy.py: it imports nothing of lab/, bench/, tests/).
COPY main.py ./
COPY agent/ agent/
COPY telemetry/ telemetry/
RUN /opt/venv/bin/python -m compileall -q /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    HOST=0.0.0.0 \
    PORT=8000
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# /status answers 503 once the server drains: the container reports unhealthy while it finishes its
# calls, as load balancers should see it (plain docker restarts nothing for that). No curl in slim
# images: python's urllib, proxies ignored, the port from PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/status' % os.environ.get('PORT', '8000'), timeout=2)"]
# Exec form: python is PID 1 and gets SIGTERM itself (main.py drains; a second SIGTERM exits at once).
CMD ["python", "main.py"]
