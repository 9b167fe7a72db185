"""The shape of a job's data, decided without touching it: locations and who may reach them.

Owns location rules and credential names (``locations``), whose identity may act on a location
(``storage_access``), planning input into shards (``planning``) and storing the plan compactly
(``plan_store``), the reduce stage's key partitioning (``shuffle``) and which checkpoints are redundant
(``checkpoint_gc``). Pure: may import :mod:`datajob_core.shards`; reading and writing data is
:mod:`datajob_core.storage`'s.
"""
