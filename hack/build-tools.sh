#!/usr/bin/env bash
# Builds the pinned binaries the test control plane needs from Go modules and caches them
# outside the work tree, keyed by version, so only the first run on a machine pays for it.
# Prints the directory holding the binaries on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="v1.36.3"
ETCD_VERSION="v3.6.8"
KWOK_VERSION="v0.8.0"
HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.8.0"
# MinIO, the S3 server the object-store tests run against, has no tagged Go module versions: a pseudo-version
# pins one commit. Cached in its own directory (keyed by that version) and linked into the tools directory.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# kind and what its node image needs beyond the Kubernetes binaries (DATAJOB_KIND_TOOLS=1; hack/kind-node-image.sh).
KIND_VERSION="v0.33.0"
CRICTL_VERSION="v1.36.0"   # sigs.k8s.io/cri-tools, the release matching Kubernetes 1.36
COREDNS_VERSION="v1.14.2"  # the CoreDNS kubeadm v1.36 deploys
# Kueue (https://kueue.sigs.k8s.io), the queueing tests' real queue manager: its controller manager, and its
# CRDs and webhook manifests copied from the module. promtool checks the chart's PrometheusRule alerts.
KUEUE_VERSION="v0.17.0"
PROMETHEUS_VERSION="v0.316.0"  # the Go module version of Prometheus v3.x's promtool
# Bump when the way the binaries are built changes, so caches built the old way are not reused.
RECIPE="2"

cache_root="${DATAJOB_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/datajob-operator/tools}"
# The key includes go.sum so a changed dependency set never reuses stale binaries.
sum_key="$(sha256sum "$here/tools/go.sum" | cut -c1-12)"
bin_dir="$cache_root/r$RECIPE-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-kubeconform-$KUBECONFORM_VERSION-$sum_key"
mkdir -p "$bin_dir"

log() { echo "build-tools: $*" >&2; }
# Which tools: "all" (default: every test tier), "control-plane" (etcd, the Kubernetes control plane, kubectl
# and kwok: enough for most cluster tests; those needing helm, Kueue, promtool or MinIO are then skipped, saying
# so), or "none" (make test-fast: build nothing; a test needing a tool not built yet is skipped, saying so).
TOOLS_SET="${DATAJOB_TOOLS_SET:-all}"
case "$TOOLS_SET" in all|control-plane|none) ;; *) log "DATAJOB_TOOLS_SET=$TOOLS_SET: one of all, control-plane, none"; exit 2;; esac
# Seconds each build took cold on the 2-core CI machine (docs/testing.md), to say how long to wait.
declare -A usual=([etcd]=53 [kube-apiserver]=175 [kube-scheduler]=17 [kube-controller-manager]=34 [kubectl]=18
  [kwok]=68 [helm]=52 [kubeconform]=4 [kueue]=140 [promtool]=253 [minio]=203 [kubelet]=27 [kube-proxy]=7
  [kubeadm]=11 [kind]=4 [crictl]=33 [coredns]=105)
usually() { local s="${usual[$1]:-0}"; [ "$s" -ge 60 ] && echo "usually ~$(( (s + 30) / 60 )) min cold" || echo "usually ~${s}s cold"; }

start=$(date +%s)
built=0
build_in_module() { # name package [ldflags] [module directory, default tools] [target directory]
  local name="$1" pkg="$2" ldflags="${3:-}" module="${4:-tools}" dest="${5:-$bin_dir}"
  [ -x "$dest/$name" ] && return 0
  log "building $name from $pkg ($(usually "$name")) ..."
  local t0=$(date +%s)
  mkdir -p "$dest"
  (cd "$here/$module" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $ldflags" -o "$dest/$name.tmp" "$pkg")
  mv "$dest/$name.tmp" "$dest/$name"
  log "built $name in $(( $(date +%s) - t0 ))s"
  built=1
}
install_module() { # name module@version [ldflags] [directory, default: the tools directory]
  local name="$1" mod="$2" ldflags="${3:-}" dest="${4:-$bin_dir}"
  [ -x "$dest/$name" ] && return 0
  log "installing $name from $mod ($(usually "$name")) ..."
  local t0=$(date +%s) tmp
  mkdir -p "$dest"
  tmp="$(mktemp -d)"
  GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags="-s -w $ldflags" "$mod"
  mv "$tmp/$name" "$dest/$name"
  rm -rf "$tmp"
  log "installed $name in $(( $(date +%s) - t0 ))s"
  built=1
}

# Stamp the release versions, as release builds do: clients (helm's kubeVersion checks, kubectl's skew
# warning) read them from /version.
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

if [ "$TOOLS_SET" = none ]; then
  echo "$bin_dir"
  exit 0
fi
build_in_module etcd go.etcd.io/etcd/server/v3
build_in_module kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build_in_module kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build_in_module kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build_in_module kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
install_module kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
if [ "$TOOLS_SET" = all ]; then
  install_module helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  install_module kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"

  kueue_dir="$cache_root/kueue-$KUEUE_VERSION"
  install_module kueue "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION" \
    "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" "$kueue_dir"
  if [ ! -d "$kueue_dir/config" ]; then
    module="$(cd "$here/tools" && go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION"
    [ -d "$module" ] || (cd "$(mktemp -d)" && go mod download -x "sigs.k8s.io/kueue@$KUEUE_VERSION" >/dev/null 2>&1) || true
    [ -d "$module" ] || { log "kueue module source not found in $module"; exit 1; }
    mkdir -p "$kueue_dir/config.tmp"
    cp -r "$module/config/components/crd/bases" "$kueue_dir/config.tmp/crd"
    cp "$module/config/components/webhook/manifests.yaml" "$kueue_dir/config.tmp/webhooks.yaml"
    chmod -R u+w "$kueue_dir/config.tmp"
    mv "$kueue_dir/config.tmp" "$kueue_dir/config"
  fi
  ln -sfn "$kueue_dir/kueue" "$bin_dir/kueue"
  ln -sfn "$kueue_dir/config" "$bin_dir/kueue-config"
  install_module promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" "" \
    "$cache_root/promtool-$PROMETHEUS_VERSION"
  ln -sfn "$cache_root/promtool-$PROMETHEUS_VERSION/promtool" "$bin_dir/promtool"

  minio_dir="$cache_root/minio-$MINIO_VERSION"
  install_module minio "github.com/minio/minio@$MINIO_VERSION" "" "$minio_dir"
  ln -sfn "$minio_dir/minio" "$bin_dir/minio"
fi

# The kubelet and kube-proxy of the real-container node (tests/datajob_testenv/realnode.py), only when asked:
# the fast suite does not need them. Their own module (hack/node-tools), so they have their own cache key.
if [ "${DATAJOB_NODE_TOOLS:-0}" = 1 ]; then
  node_dir="$cache_root/node-k8s-$K8S_VERSION-$(sha256sum "$here/node-tools/go.sum" | cut -c1-12)"
  build_in_module kubelet k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags" node-tools "$node_dir"
  build_in_module kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags" node-tools "$node_dir"
  ln -sfn "$node_dir/kubelet" "$bin_dir/kubelet"
  ln -sfn "$node_dir/kube-proxy" "$bin_dir/kube-proxy"
fi

# kind, kubeadm, crictl and CoreDNS for the kind node image built offline, only when asked.
if [ "${DATAJOB_KIND_TOOLS:-0}" = 1 ]; then
  node_dir="$cache_root/node-k8s-$K8S_VERSION-$(sha256sum "$here/node-tools/go.sum" | cut -c1-12)"
  build_in_module kubeadm k8s.io/kubernetes/cmd/kubeadm "$k8s_ldflags" node-tools "$node_dir"
  kind_dir="$cache_root/kind-$KIND_VERSION-crictl-$CRICTL_VERSION-coredns-$COREDNS_VERSION"
  install_module kind "sigs.k8s.io/kind@$KIND_VERSION" "" "$kind_dir"
  install_module crictl "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" "$kind_dir"
  install_module coredns "github.com/coredns/coredns@$COREDNS_VERSION" "" "$kind_dir"
  for name in kind crictl coredns; do ln -sfn "$kind_dir/$name" "$bin_dir/$name"; done
  ln -sfn "$node_dir/kubeadm" "$bin_dir/kubeadm"
fi

if [ "$built" = 1 ]; then
  log "tool build took $(( $(date +%s) - start ))s (cold)"
else
  log "all tools cached in $bin_dir"
fi
echo "$bin_dir"
