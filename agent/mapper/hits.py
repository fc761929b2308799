"""What the resolver's parts answer with, and the span-keyed memos they keep the answers in.

A *hit* is one target an observation points at, as `(target, target_service, ambiguous)`; a
*client* is `(identity, ambiguous)`. `agent.mapper.clients`, `agent.mapper.names` and
`agent.mapper.servers` produce them from `agent.mapper.cluster.ClusterState`;
`agent.mapper.resolver` turns them into edges. Each part memoises its answers as
`(generation, start, end, answer)`: valid while the state's `generation` is unchanged and the
observation's time is in [start, end) (the pod's or service's span in the IP history). Pure.
"""

from __future__ import annotations

import math
from typing import Any

from agent.model import Target, WorkloadIdentity

Hit = tuple[Target, str, bool]  # (target, target_service, ambiguous)
Client = tuple[WorkloadIdentity, bool]  # (identity, ambiguous)
Span = tuple[float, float]  # [start, end) an answer holds for
ClientMemo = tuple[int, float, float, Client]  # (generation, start, end, client)
HitsMemo = tuple[int, float, float, list[Hit]]  # (generation, start, end, hits)

ALWAYS: Span = (-math.inf, math.inf)
CACHE_MAX = 200_000  # entries per memo; external names/IPs would otherwise grow it forever


def remember(cache: dict[Any, Any], key: Any, entry: tuple[Any, ...]) -> None:
    """Store `entry` under `key`, emptying `cache` first when it is full.

    Emptied in place (never replaced), so the resolver's bound references to it stay valid.
    """
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = entry
