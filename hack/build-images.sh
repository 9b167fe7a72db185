#!/usr/bin/env bash
# Builds the operator and worker images on a machine with Docker but no registry and no package index in
# builds: a base image made with debootstrap from Debian's mirror, Python packages from a wheelhouse built
# on the host. Idempotent: the base image is made once per Debian suite (its tag is checked), the wheelhouse
# is refreshed by pip (cached), and Docker's layer cache keeps rebuilds to the changed layers.
# Usage: hack/build-images.sh [OPERATOR_IMAGE] [WORKER_IMAGE]   (defaults datajob-operator:dev datajob-worker:dev)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
operator_image="${1:-datajob-operator:dev}"
worker_image="${2:-datajob-worker:dev}"
SUITE="bookworm"
# Bump when the base image's package list changes, so a stale base is not reused.
BASE_RECIPE="1"
base_image="datajob-local/python:$SUITE-r$BASE_RECIPE"
K8S_VERSION="v1.36.3"   # as in hack/build-tools.sh
PAUSE_VERSION="3.10.2"  # k8s.io/kubernetes's build/pause/Makefile at that version
PAUSE_IMAGE="datajob-local/pause:$PAUSE_VERSION"
PYTHON="${PYTHON:-$here/.venv/bin/python}"
# Debian's docker client: the legacy builder needs no buildx plugin (see docs/testing.md).
DOCKER="${DOCKER:-docker}"
export DOCKER_BUILDKIT=0

log() { echo "build-images: $*" >&2; }

mirror() { bash "$here/hack/debian-mirror.sh"; }

t0=$(date +%s)
if ! $DOCKER image inspect "$base_image" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' EXIT
  log "making $base_image with debootstrap from $(mirror) ..."
  # python3-venv gives `python -m venv` (ensurepip); python-is-python3 the `python` the Dockerfiles call.
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    "$SUITE" "$rootfs" "$(mirror)" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | $DOCKER import --change 'CMD ["python"]' - "$base_image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "base image made in $(( $(date +%s) - t0 ))s"
fi

# The pod sandbox image a real node's containerd needs (what registry.k8s.io/pause is): pause.c from the
# pinned k8s.io/kubernetes module, linked statically, alone in an image.
if ! $DOCKER image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  src="$(cd "$here/hack/tools" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c"
  pause_root="$(mktemp -d)"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$pause_root/pause" "$src"
  strip "$pause_root/pause"
  tar -C "$pause_root" -c pause | $DOCKER import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$pause_root"
  log "made $PAUSE_IMAGE from $src"
fi

# Wheels for the image's Python (Debian's 3.11, same ABI as the host's CPython 3.11): the project's
# dependencies and the build backend pip needs to install the sources with --no-index.
wheelhouse="$here/images/wheelhouse"
t1=$(date +%s)
# Refreshed only when the dependency list changes: rewritten wheels would invalidate Docker's layer cache.
key="$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)"
if [ "$(cat "$wheelhouse/.key" 2>/dev/null)" != "$key" ]; then
  rm -f "$wheelhouse"/*.whl
  "$PYTHON" -m pip wheel --quiet --wheel-dir "$wheelhouse" "$here[operator]" "setuptools>=77" wheel
  rm -f "$wheelhouse"/datajob_operator-*.whl  # the sources are installed from /src
  echo "$key" > "$wheelhouse/.key"
fi
log "wheelhouse ready in $(( $(date +%s) - t1 ))s ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"

for spec in "operator.Dockerfile $operator_image" "worker.Dockerfile $worker_image"; do
  set -- $spec
  t1=$(date +%s)
  # --network none: the build needs nothing but the context, which proves the images build offline.
  $DOCKER build --quiet --network none -f "$here/images/$1" -t "$2" \
    --build-arg BASE_IMAGE="$base_image" \
    --build-arg PIP_INSTALL_OPTIONS="--no-index --find-links /wheelhouse" "$here" >/dev/null
  log "built $2 in $(( $(date +%s) - t1 ))s"
done
log "images ready in $(( $(date +%s) - t0 ))s"
