"""Reading and writing a job's data: the only part of ``datajob_core`` that performs I/O.

Owns the small ``Store`` interface over a directory or an object-store prefix (``stores``), the
exactly-once commit (``committer``), checkpoints (``checkpoint_store``), listing input
(``inputs``) and output ownership (``output_identity``). May import :mod:`datajob_core.data`,
:mod:`datajob_core.shards` and :mod:`datajob_core.protocol`; never the cluster decisions or the API.
Which locations may be reached, and with whose identity, is decided (purely) in
:mod:`datajob_core.data.storage_access`.
"""
