"""The sandbox API server at cluster size: paged lists (``limit`` + ``continue``, through the real
``kubernetes`` client), bulk preloading, and the owner/UID indexes behind delete's garbage collection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.apiserver import ApiServer
from sandbox.apiserver.errors import ApiError
from sandbox.apiserver.store import Store

FIXED = datetime(2024, 6, 1, tzinfo=UTC)


def pod(namespace: str, name: str, owner: str | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"namespace": namespace, "name": name}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}]
    spec = {"containers": [{"name": "app", "image": "app:1"}]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def test_paged_store_list_returns_every_object_once_in_order() -> None:
    store = Store(clock=lambda: FIXED)
    for i in range(7):
        store.create("pods", pod(f"ns-{i % 2}", f"p{i}"))
    pages, after = [], None
    while True:
        items, _ = store.list("pods", limit=3, after=after)
        page = items[:3]
        pages.append([(o["metadata"]["namespace"], o["metadata"]["name"]) for o in page])
        if len(items) <= 3:
            break
        after = pages[-1][-1]
    keys = [key for page in pages for key in page]
    assert keys == sorted(keys) and len(keys) == len(set(keys)) == 7
    assert [len(p) for p in pages] == [3, 3, 1]


def test_preload_keeps_timestamps_indexes_owners_and_starts_the_history_after() -> None:
    store = Store(clock=lambda: FIXED)
    objs = [pod("a", f"p{i}", owner="rs-1") for i in range(3)]
    objs[0]["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"  # type: ignore[index]
    assert store.preload("pods", objs) == 3
    first = store.get("pods", "a", "p0")
    assert first["metadata"]["creationTimestamp"] == "2020-01-01T00:00:00Z"
    assert store.get("pods", "a", "p1")["metadata"]["creationTimestamp"] == "2024-06-01T00:00:00Z"
    assert store.owned_by("rs-1") == [("pods", "a", "p0"), ("pods", "a", "p1"), ("pods", "a", "p2")]
    assert store.uid_exists(first["metadata"]["uid"])
    with pytest.raises(ApiError):  # no events for preloaded objects: older versions are expired
        store.check_watchable(0)
    store.delete("pods", "a", "p0")
    assert store.owned_by("rs-1") == [("pods", "a", "p1"), ("pods", "a", "p2")]
    assert not store.uid_exists(first["metadata"]["uid"])


def test_an_update_that_changes_owners_moves_the_object_in_the_index() -> None:
    store = Store(clock=lambda: FIXED)
    store.create("pods", pod("a", "p", owner="old"))

    def adopt(obj: dict[str, object]) -> dict[str, object]:
        obj["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "n", "uid": "new"}]  # type: ignore[index]
        return obj

    store.update("pods", "a", "p", adopt)
    assert store.owned_by("old") == []
    assert store.owned_by("new") == [("pods", "a", "p")]


@pytest.fixture
def api() -> Iterator[client.CoreV1Api]:
    server = ApiServer()
    server.start()
    try:
        configuration = client.Configuration()
        configuration.host = server.url
        with client.ApiClient(configuration) as api_client:
            yield client.CoreV1Api(api_client)
    finally:
        server.stop()


def test_the_real_client_pages_through_a_list_with_continue(api: client.CoreV1Api) -> None:
    for i in range(5):
        api.create_namespaced_pod("default", pod("default", f"p{i}"))
    first = api.list_pod_for_all_namespaces(limit=2)
    names, token = [p.metadata.name for p in first.items], first.metadata._continue
    while token:
        page = api.list_pod_for_all_namespaces(limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert names == [f"p{i}" for i in range(5)]
    assert api.list_pod_for_all_namespaces().metadata._continue is None


def test_a_malformed_continue_token_is_a_bad_request(api: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        api.list_pod_for_all_namespaces(limit=2, _continue="not-a-token")
    assert raised.value.status == 400
