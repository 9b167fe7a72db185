"""The DataJob resource: what a user may write, and what the API server and local mode accept.

Owns the pydantic models (``models``), the CRD and API reference generated from them (``crd``), the pod
template policy (``pod_policy``) and status conditions (``conditions``). Pure: may import
:mod:`datajob_core.data` (location rules, byte quantities) and nothing that performs I/O.
"""
