"""What the parser benches share: items per second of contenders measured in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable


def rates(contenders: dict[str, tuple[Callable[[], object], int]], budget: float) -> dict[str, float]:
    """Items per second of each contender (a function, and how many items one call handles): best of
    7 rounds, interleaved so that a change in machine load (this runs on shared CI machines) hits
    all of them alike; the rounds together take about ``budget`` seconds."""
    rounds = {}
    for name, (fn, _) in contenders.items():
        start = time.perf_counter()
        fn()
        rounds[name] = max(1, int(budget / len(contenders) / 7 / max(time.perf_counter() - start, 1e-9)))
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(7):
        for name, (fn, _) in contenders.items():
            start = time.perf_counter()
            for _ in range(rounds[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / rounds[name])
    return {name: items / best[name] for name, (_, items) in contenders.items()}
