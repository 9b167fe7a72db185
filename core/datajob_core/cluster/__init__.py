"""Decisions about the cluster: one reconcile pass as a pure function, and the objects it asks for.

Owns the reconciler (``reconciler``) and the compact form of its state in the DataJob status
(``state_codec``), worker pods, leases and RBAC sized from the spec (``sizing``), Kueue Workloads and
admission (``queueing``) and nodes going away (``node_drain``). Pure: may import
:mod:`datajob_core.api`, :mod:`datajob_core.data`, :mod:`datajob_core.shards` and
:mod:`datajob_core.protocol`; the operator and local mode do the I/O its decisions ask for.
"""
