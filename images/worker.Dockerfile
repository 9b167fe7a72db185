# The worker image: datajob_core + datajob_worker with the base dependencies (pydantic, pyarrow, fsspec,
# s3fs, pykube-ng for its Lease); no kopf, no official Kubernetes client. Add other fsspec backends (gs://, az://) with
#   --build-arg EXTRA_PACKAGES="gcsfs adlfs"
# Build from the repository root: docker build -f images/worker.Dockerfile -t datajob-worker:dev .
# BASE_IMAGE and PIP_INSTALL_OPTIONS: as in operator.Dockerfile.
ARG BASE_IMAGE=python:3.12.8-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG EXTRA_PACKAGES=""
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/datajob
COPY images/wheelhouse /wheelhouse
COPY pyproject.toml README.md LICENSE* /src/
COPY core /src/core
COPY operator /src/operator
COPY worker /src/worker
RUN /opt/datajob/bin/pip install ${PIP_INSTALL_OPTIONS} /src ${EXTRA_PACKAGES} \
    && /opt/datajob/bin/pip uninstall --yes pip setuptools wheel

FROM ${BASE_IMAGE}
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true
COPY --from=build /opt/datajob /opt/datajob
ENV PATH=/opt/datajob/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "datajob_worker"]
