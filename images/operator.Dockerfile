# The operator image: kopf + the Kubernetes clients + datajob_core/datajob_operator. No build tools in the
# final stage, runs as a non-root numeric user (restricted Pod Security).
# Build from the repository root: docker build -f images/operator.Dockerfile -t datajob-operator:dev .
# BASE_IMAGE: any image with python3 (>= 3.11, with venv) on PATH as `python`; hack/build-images.sh passes
# one made locally with debootstrap, and PIP_INSTALL_OPTIONS="--no-index --find-links /wheelhouse" to install
# from images/wheelhouse where no package index is reachable.
ARG BASE_IMAGE=python:3.12.8-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_INSTALL_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/datajob
COPY images/wheelhouse /wheelhouse
COPY pyproject.toml README.md LICENSE* /src/
COPY core /src/core
COPY operator /src/operator
COPY worker /src/worker
RUN /opt/datajob/bin/pip install ${PIP_INSTALL_OPTIONS} "/src[operator]" \
    && /opt/datajob/bin/pip uninstall --yes pip setuptools wheel

FROM ${BASE_IMAGE}
# pip is not needed at run time; the venv holds everything.
RUN python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true
COPY --from=build /opt/datajob /opt/datajob
# HOME: the uid below has no passwd entry; libraries that look for per-user files get a writable place.
ENV PATH=/opt/datajob/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["datajob-operator"]
