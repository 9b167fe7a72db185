"""datajob_core: what the operator and the workers share, grouped by concern.

- ``protocol``: the messages between the operator and its workers (both sides import it).
- ``shards``: the shard ledger and its pure helpers (the bottom layer).
- ``data``: the shape of a job's data, decided without touching it (plans, locations, partitions).
- ``api``: the DataJob resource (models, CRD, pod template policy, conditions).
- ``cluster``: a reconcile pass as a pure function, and the Kubernetes objects it asks for.
- ``storage``: reading and writing data; the only part that performs I/O.

The rules (what may import what) are in docs/architecture.md and held by tests/unit/test_import_rules.py.
"""
