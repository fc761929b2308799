"""How the mapper's process uses Python's cyclic garbage collector, once its cluster state is built.

Called by :mod:`agent.mapper.__main__` after the first sync of the cluster state (and by the
benchmarks that stand in for the mapper, so they measure the same process). The reports'
observations and the edges resolved from them are acyclic, short-lived and numerous (about two
allocations per observation at 100k+ observations/s): with the default thresholds a young
collection runs every 700 allocations and the older generations are traversed again and again,
which ``bench/bench_ingest.py`` measured at about a fifth of the ingest path's CPU.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (Python's default: 700); cycles are rare here."""
OLDER_THRESHOLDS = (50, 50)


def settle() -> None:
    """Move what exists now (the listed cluster, the modules) out of the collector's reach, and
    collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
