"""A real Kubernetes control plane for tests and local development.

Starts etcd, kube-apiserver, kube-scheduler and kube-controller-manager (built from Go modules by
``hack/build-tools.sh``), kwok for fake nodes with real capacity, and a node agent that runs pods
as local processes. See docs/testing.md.
"""
