# The worker image: datajob_core + datajob_worker with the base dependencies (pydantic, pyarrow, fsspec,
# s3fs); no kopf, no Kubernetes client library. Add other fsspec backends (gs://, az://) with
#   --build-arg EXTRA_PACKAGES="gcsfs adlfs"
# Build from the repository root: docker build -f images/worker.Dockerfile -t datajob-worker:dev .
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRA_PACKAGES=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/datajob
COPY pyproject.toml README.md LICENSE* /src/
COPY core /src/core
COPY operator /src/operator
COPY worker /src/worker
RUN /opt/datajob/bin/pip install /src ${EXTRA_PACKAGES} \
    && /opt/datajob/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true
COPY --from=build /opt/datajob /opt/datajob
ENV PATH=/opt/datajob/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "datajob_worker"]
