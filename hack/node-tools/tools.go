//go:build tools

// Package tools pins the node commands hack/build-tools.sh builds for the real-container node
// (a separate module so that adding them does not change the control-plane tools' cache key).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
