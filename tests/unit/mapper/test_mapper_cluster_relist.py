"""A (re)list streamed into ClusterState: readers are not held up while pages arrive, and a relist
still deletes what it no longer contains."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from agent.mapper.cluster import ClusterState

T = 1_700_000_000.0


def pod(i: int) -> dict[str, object]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": f"p{i}",
            "uid": f"u{i}",
            "creationTimestamp": "2023-11-14T00:00:00Z",
        },
        "spec": {"nodeName": "n1"},
        "status": {"podIP": f"10.0.{i // 250}.{i % 250 + 1}", "phase": "Running"},
    }


def test_readers_get_the_lock_between_chunks_of_a_long_list() -> None:
    state = ClusterState()
    answered: list[bool] = []

    def pages() -> Iterator[dict[str, object]]:
        for i in range(1200):
            if i == 1100:  # mid-list, as if waiting for the next page: a locking reader must get in
                reader = threading.Thread(
                    target=lambda: answered.append(state.pod_named("ns", "p0") is not None)
                )
                reader.start()
                reader.join(5)
                assert not reader.is_alive(), "the state lock was held while the list was read"
            yield pod(i)

    state.replace_all("Pod", pages(), T)
    assert answered == [True]
    assert state.counts()["pods"] == 1200


def test_a_streamed_relist_deletes_what_it_no_longer_holds() -> None:
    state = ClusterState()
    state.replace_all("Pod", (pod(i) for i in range(600)), T)
    state.replace_all("Pod", (pod(i) for i in range(1, 600)), T + 10)
    assert state.pod_named("ns", "p0") is None
    assert state.pod_at("10.0.0.1", T + 5) is not None  # kept for earlier times
    assert state.pod_at("10.0.0.1", T + 20) is None
    assert state.counts()["pods"] == 599
