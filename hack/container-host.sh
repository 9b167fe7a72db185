#!/usr/bin/env bash
# Prepares (up) or releases (down) what the real-container tests need on this machine, as root:
# Debian's Docker engine, debootstrap, containerd, runc, CNI plugins and nftables (installed once), and a
# running dockerd (started only if none answers; `down` stops only the one `up` started).
# Docker runs without its own networking (--bridge=none, no iptables): image builds need no network.
set -euo pipefail
state_dir="${DATAJOB_CONTAINER_HOST_STATE:-/tmp/datajob-container-host}"
packages=(docker.io debootstrap containerd runc containernetworking-plugins nftables iproute2 gcc libc6-dev)

log() { echo "container-host: $*" >&2; }

case "${1:-up}" in
up)
  [ "$(id -u)" = 0 ] || { log "needs root (kubelet, containerd, network namespaces)"; exit 1; }
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if /usr/bin/docker info >/dev/null 2>&1; then
    log "dockerd already running"
    exit 0
  fi
  # A packaged dockerd may have been started by the package's post-install; only ours is ours to stop.
  mkdir -p "$state_dir"
  dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
    --pidfile "$state_dir/dockerd.pid" >"$state_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    /usr/bin/docker info >/dev/null 2>&1 && { log "dockerd started"; exit 0; }
    sleep 1
  done
  log "dockerd did not start; see $state_dir/dockerd.log"; tail -20 "$state_dir/dockerd.log" >&2; exit 1
  ;;
down)
  if [ -s "$state_dir/dockerd.pid" ]; then
    kill "$(cat "$state_dir/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 30); do [ -e "$state_dir/dockerd.pid" ] || break; sleep 1; done
    log "dockerd stopped"
  fi
  ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
