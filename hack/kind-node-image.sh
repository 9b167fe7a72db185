#!/usr/bin/env bash
# Assembles a kind node image with no registry: what `kind build node-image` makes from kindest/base and
# images it pulls, made here from Debian packages, the pinned Go modules and kind's own base files (read
# from the kind Go module at build time). Cached by tag: a second run only checks the tag.
#
#   hack/kind-node-image.sh            # prints the node image's name on its last line
#
# The node: Debian bookworm with systemd, Debian's containerd 1.6 / runc / CNI plugins, kind's entrypoint,
# units and kubelet drop-ins, kubeadm/kubelet/kubectl v1.36.3 and crictl; its containerd holds, pinned, the
# images kubeadm v1.36.3 runs (apiserver, controller-manager, scheduler, proxy, etcd, CoreDNS, pause) and
# the pod network: a small DaemonSet of ours (hack/kind/node-network.yaml, ptp + host-local from the
# node's podCIDR, routes to the other nodes) in place of kindnetd, whose Go module the proxy does not serve.
# No default StorageClass provisioner (kind falls back to a host-path StorageClass); the examples use a
# static PersistentVolume.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="v1.36.3"
KIND_VERSION="v0.33.0"
ETCD_IMAGE_TAG="3.6.8-0"    # kubeadm v1.36's etcd image tag (the etcd built by hack/build-tools.sh)
COREDNS_VERSION="v1.14.2"
PAUSE_VERSION="3.10.2"
SUITE="bookworm"
# Bump when the recipe changes, so a stale node image is not reused.
RECIPE="1"
NODE_IMAGE="datajob-local/kind-node:$K8S_VERSION-r$RECIPE"
NETWORK_IMAGE="datajob-local/kind-node-network:r$RECIPE"
DOCKER="${DOCKER:-/usr/bin/docker}"
export DOCKER_BUILDKIT=0

log() { echo "kind-node-image: $*" >&2; }
mirror() { bash "$here/hack/debian-mirror.sh"; }

if $DOCKER image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  log "$NODE_IMAGE is cached"
  echo "$NODE_IMAGE"
  exit 0
fi
t0=$(date +%s)
tools="$(DATAJOB_NODE_TOOLS=1 DATAJOB_KIND_TOOLS=1 bash "$here/hack/build-tools.sh" | tail -1)"
kind_src="$(cd "$here/hack/tools" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
work="$(mktemp -d /var/tmp/kind-node.XXXXXX)"
cleanup() {
  [ -n "${ctrd_pid:-}" ] && kill "$ctrd_pid" 2>/dev/null && wait "$ctrd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# -- the small images kubeadm and the node network run -------------------------------------------
binary_image() { # image binary-path-in-tools [entrypoint]
  local image="$1" binary="$2" dir
  dir="$(mktemp -d "$work/img.XXXX")"
  mkdir -p "$dir/usr/local/bin"
  cp "$tools/$binary" "$dir/usr/local/bin/$binary"
  # Static pods run `command: [<binary>, ...]`, found through PATH.
  tar -C "$dir" -c . | $DOCKER import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "ENTRYPOINT [\"/usr/local/bin/$binary\"]" - "$image" >/dev/null
}
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  binary_image "registry.k8s.io/$component:$K8S_VERSION" "$component"
done
binary_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" etcd
binary_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns
$DOCKER tag "datajob-local/pause:$PAUSE_VERSION" "registry.k8s.io/pause:$PAUSE_VERSION"

# kube-proxy and the node network need iptables/nftables/ip: a minimal Debian with those.
netroot="$work/netroot"
debootstrap --variant=minbase --include=iptables,nftables,conntrack,iproute2 "$SUITE" "$netroot" "$(mirror)" >/dev/null
rm -rf "$netroot"/var/cache/apt/archives/*.deb "$netroot"/var/lib/apt/lists/*
cp "$tools/kube-proxy" "$netroot/usr/local/bin/kube-proxy"
cp "$tools/kubectl" "$netroot/usr/local/bin/kubectl"
tar -C "$netroot" -c . | $DOCKER import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "registry.k8s.io/kube-proxy:$K8S_VERSION" >/dev/null
$DOCKER tag "registry.k8s.io/kube-proxy:$K8S_VERSION" "$NETWORK_IMAGE"
log "component images made in $(( $(date +%s) - t0 ))s"

# -- the node's root file system -------------------------------------------------------------------
root="$work/root"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,e2fsprogs,ca-certificates,procps,jq,containerd,runc,containernetworking-plugins \
  "$SUITE" "$root" "$(mirror)" >/dev/null
log "node root file system made in $(( $(date +%s) - t0 ))s"
files="$kind_src/images/base/files"
install -m 0755 "$files"/usr/local/bin/* "$root/usr/local/bin/"
mkdir -p "$root/kind/bin" "$root/etc/kubernetes/manifests" "$root/kind/manifests" "$root/opt/cni"
install -m 0755 "$files"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$files/etc/crictl.yaml" "$root/etc/crictl.yaml"
install -m 0644 "$files"/etc/default/* "$root/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$root/etc/sysctl.d/"
install -m 0644 "$files"/etc/systemd/system/{containerd.service,kubelet.service,kubelet.slice,undo-mount-hacks.service} \
  "$root/etc/systemd/system/"
mkdir -p "$root/etc/systemd/system/kubelet.service.d" "$root/etc/containerd"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
# kind's containerd config, for Debian's containerd 1.6 here: our pause version, no fuse-overlayfs plugin.

# restrict_oom_score_adj: runc cannot raise oom_score_adj where root lacks CAP_SYS_RESOURCE ("can't get final
# child's PID from pipe"); pods then keep the node's own score, which is all a kind node needs.
sed -e "s#registry.k8s.io/pause:[0-9.]*#registry.k8s.io/pause:$PAUSE_VERSION#" \
    -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
    -e '/^\[proxy_plugins/,/^$/d' -e '/fuse-overlayfs is used for rootless/d' \
    "$files/etc/containerd/config.toml" > "$root/etc/containerd/config.toml"
ln -sfn /usr/bin/containerd "$root/usr/local/bin/containerd"
ln -sfn /usr/lib/cni "$root/opt/cni/bin"
ctr oci spec | python3 -c '
import json, sys
spec = json.load(sys.stdin)
spec.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
spec["process"].pop("rlimits", None)
json.dump(spec, sys.stdout, indent=2)' > "$root/etc/containerd/cri-base.json"
# systemd as in kindest/base: nothing but containerd, the kubelet and kind's mount fix-up at boot.
find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "$root"/lib/systemd/system/multi-user.target.wants/* "$root"/etc/systemd/system/*.wants/* \
  "$root"/lib/systemd/system/local-fs.target.wants/* "$root"/lib/systemd/system/sockets.target.wants/*udev* \
  "$root"/lib/systemd/system/sockets.target.wants/*initctl* "$root"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> "$root/etc/systemd/journald.conf"
chroot "$root" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$root" systemctl mask systemd-binfmt.service >/dev/null 2>&1
for binary in kubeadm kubelet kubectl; do install -m 0755 "$tools/$binary" "$root/usr/bin/$binary"; done
install -m 0755 "$tools/crictl" "$root/usr/local/bin/crictl"
echo "$K8S_VERSION" > "$root/kind/version"
sed "s#NETWORK_IMAGE#$NETWORK_IMAGE#" "$here/hack/kind/node-network.yaml" > "$root/kind/manifests/default-cni.yaml"
install -m 0755 "$here/hack/kind/cgroup-rw" "$root/usr/local/bin/cgroup-rw"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

# -- the images, pinned in the node's containerd (Debian's containerd, the same version the node runs) ----
state="$work/ctrd-state"
mkdir -p "$state"
cat > "$work/ctrd.toml" <<EOF
version = 2
root = "$root/var/lib/containerd"
state = "$state"
[grpc]
  address = "$state/c.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_cgroup = true
EOF
containerd --config "$work/ctrd.toml" >"$work/ctrd.log" 2>&1 &
ctrd_pid=$!
for _ in $(seq 1 30); do ctr --address "$state/c.sock" version >/dev/null 2>&1 && break; sleep 1; done
for image in "registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION" \
  "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION" \
  "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
  "registry.k8s.io/pause:$PAUSE_VERSION" "$NETWORK_IMAGE"; do
  $DOCKER save "$image" | ctr --address "$state/c.sock" -n k8s.io images import --no-unpack - >/dev/null
  # Pinned: the kubelet's image garbage collection must never delete what no registry can give back.
  first="${image%%/*}"
  case "$image" in
    */*) if [[ $first == *.* || $first == *:* || $first == localhost ]]; then ref="$image"; else ref="docker.io/$image"; fi ;;
    *) ref="docker.io/library/$image" ;;
  esac
  ctr --address "$state/c.sock" -n k8s.io images label "$ref" io.cri-containerd.pinned=pinned >/dev/null
done
kill "$ctrd_pid"; wait "$ctrd_pid" 2>/dev/null || true
ctrd_pid=""
log "images imported in $(( $(date +%s) - t0 ))s"

tar -C "$root" -c . | $DOCKER import - "$NODE_IMAGE-rootfs" >/dev/null
mkdir "$work/context"
cat > "$work/context/Dockerfile" <<EOF
FROM $NODE_IMAGE-rootfs
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/cgroup-rw", "/usr/local/bin/entrypoint", "/sbin/init"]
EOF
$DOCKER build --quiet --network none -t "$NODE_IMAGE" "$work/context" >/dev/null
$DOCKER rmi "$NODE_IMAGE-rootfs" >/dev/null
log "made $NODE_IMAGE in $(( $(date +%s) - t0 ))s"
echo "$NODE_IMAGE"
