# tailguard runtime image: `make image` (buildah, podman or docker, whichever is installed).
# Two stages: the build stage installs the hash-locked dependencies and the project into a venv
# at /opt/tailguard; the runtime stage copies that venv alone and runs as a non-root user.
# Every dependency file is checked against requirements/runtime.lock (pip --require-hashes);
# regenerate the lock with `make lock` after changing pyproject.toml.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tailguard
WORKDIR /src
COPY requirements/build.lock requirements/runtime.lock requirements/
# torch is the CPU build (2.13.0+cpu), from PyTorch's own index; its hash is in the lock.
RUN /opt/tailguard/bin/pip install --require-hashes --no-deps -r requirements/build.lock \
 && /opt/tailguard/bin/pip install --require-hashes --no-deps \
      --extra-index-url https://download.pytorch.org/whl/cpu -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
# The project itself: no dependency resolution (all locked above), no isolated build env
# (its setuptools and wheel came from build.lock).
RUN /opt/tailguard/bin/pip install --no-deps --no-build-isolation . \
 && /opt/tailguard/bin/pip check

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 tailguard \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tailguard \
 && mkdir -p /var/lib/tailguard \
 && chown 10001:10001 /var/lib/tailguard
COPY --from=build /opt/tailguard /opt/tailguard
ENV PATH=/opt/tailguard/bin:$PATH \
    TAILGUARD_HOME=/var/lib/tailguard \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/tailguard
EXPOSE 8000
# Live while the process answers; Kubernetes uses its own probes (readiness on /v2/health/ready).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=4).status != 200)"]
ENTRYPOINT ["tailguard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
