"""The shard ledger and its pure helpers: what is known about every shard, and how it may change.

Owns the ledger and its transitions (``ledger``), byte/row range sets (``rangeset``), which shard goes to
which worker (``assignment``), retry and backoff (``retry``), how a worker's end is judged
(``failure_policy``), map/reduce/commit stages (``stages``) and progress and stall detection
(``progress``). Pure, and the bottom layer: imports nothing else of ``datajob_core``.
"""
