"""Pure tests of the sandbox API server's in-memory parts: store, selectors, patches, CRI logs, tables."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sandbox.apiserver import admission, discovery, streams, tables
from sandbox.apiserver.errors import ApiError
from sandbox.apiserver.logs import LogOptions, LogReader, parse_record
from sandbox.apiserver.patch import json_patch, merge_patch
from sandbox.apiserver.selectors import parse_field_selector, parse_label_selector
from sandbox.apiserver.store import Store, parse_resource_version

FIXED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, ns: str = "shop", labels: dict[str, str] | None = None, ip: str = "") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip},
    }


@pytest.fixture
def store() -> Store:
    return Store(history_limit=5, clock=lambda: FIXED)


def test_create_assigns_identity_and_increasing_resource_versions(store: Store) -> None:
    first = store.create("pods", pod("a"))
    second = store.create("pods", pod("b"))
    meta = first["metadata"]
    assert meta["uid"] and meta["uid"] != second["metadata"]["uid"]
    assert meta["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert meta["generation"] == 1
    assert int(second["metadata"]["resourceVersion"]) == int(meta["resourceVersion"]) + 1
    assert store.resource_version == int(second["metadata"]["resourceVersion"])


def test_duplicate_create_is_409_already_exists(store: Store) -> None:
    store.create("pods", pod("a"))
    with pytest.raises(ApiError) as caught:
        store.create("pods", pod("a"))
    assert (caught.value.code, caught.value.reason) == (409, "AlreadyExists")
    assert caught.value.details == {"name": "a", "kind": "pods"}


def test_generate_name_gets_a_unique_suffix(store: Store) -> None:
    body = pod("")
    body["metadata"]["generateName"] = "web-"
    names = {store.create("pods", body)["metadata"]["name"] for _ in range(5)}
    assert len(names) == 5
    assert all(n.startswith("web-") and len(n) == len("web-") + 5 for n in names)


def test_get_missing_is_404_with_details(store: Store) -> None:
    with pytest.raises(ApiError) as caught:
        store.get("apps/deployments", "shop", "nope")
    assert caught.value.code == 404
    assert caught.value.details == {"name": "nope", "kind": "deployments", "group": "apps"}
    assert caught.value.message == 'deployments.apps "nope" not found'


def test_returned_objects_are_copies(store: Store) -> None:
    created = store.create("pods", pod("a", labels={"app": "web"}))
    created["metadata"]["labels"]["app"] = "changed"
    store.get("pods", "shop", "a")["metadata"]["labels"]["app"] = "changed"
    assert store.get("pods", "shop", "a")["metadata"]["labels"] == {"app": "web"}


def test_list_filters_by_namespace_and_sorts(store: Store) -> None:
    store.create("pods", pod("b", "shop"))
    store.create("pods", pod("a", "shop"))
    store.create("pods", pod("a", "other"))
    items, rv = store.list("pods", "shop")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert rv == store.resource_version
    everything, _ = store.list("pods")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everything] == [
        ("other", "a"),
        ("shop", "a"),
        ("shop", "b"),
    ]


def test_update_keeps_identity_bumps_generation_on_spec_change_and_skips_no_ops(store: Store) -> None:
    created = store.create("pods", pod("a"))

    def relabel(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"]["labels"] = {"v": "2"}
        obj["metadata"]["uid"] = "forged"
        return obj

    relabelled = store.update("pods", "shop", "a", relabel)
    assert relabelled["metadata"]["uid"] == created["metadata"]["uid"]
    assert relabelled["metadata"]["generation"] == 1
    assert int(relabelled["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    def respec(obj: dict[str, Any]) -> dict[str, Any]:
        obj["spec"]["nodeName"] = "node-2"
        return obj

    assert store.update("pods", "shop", "a", respec)["metadata"]["generation"] == 2
    rv = store.resource_version
    unchanged = store.update("pods", "shop", "a", lambda obj: obj)
    assert store.resource_version == rv
    assert unchanged["metadata"]["resourceVersion"] == str(rv)


def test_delete_returns_final_state_with_new_resource_version(store: Store) -> None:
    created = store.create("pods", pod("a"))
    deleted = store.delete("pods", "shop", "a")
    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(deleted["metadata"]["resourceVersion"]) == store.resource_version
    assert not store.exists("pods", "shop", "a")
    with pytest.raises(ApiError):
        store.delete("pods", "shop", "a")


def test_wait_for_events_replays_history_for_one_resource(store: Store) -> None:
    start = store.resource_version
    store.create("pods", pod("a"))
    store.create("services", {"metadata": {"name": "s", "namespace": "shop"}})
    store.delete("pods", "shop", "a")
    events, cursor = store.wait_for_events("pods", start, timeout=0)
    assert [e.type for e in events] == ["ADDED", "DELETED"]
    assert cursor == store.resource_version
    assert store.wait_for_events("pods", cursor, timeout=0) == ([], cursor)


def test_wait_for_events_wakes_on_a_new_event(store: Store) -> None:
    start = store.resource_version
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait_for_events("pods", start, timeout=10)))
    waiter.start()
    store.create("pods", pod("a"))
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert [e.obj["metadata"]["name"] for e in result[0][0]] == ["a"]


def test_close_wakes_waiters_with_no_events(store: Store) -> None:
    result: list[Any] = []
    waiter = threading.Thread(
        target=lambda: result.append(store.wait_for_events("pods", store.resource_version, timeout=30))
    )
    waiter.start()
    store.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and result[0][0] == []


def test_history_limit_and_compact_make_old_versions_expire(store: Store) -> None:
    start = store.resource_version
    for i in range(5):  # exactly history_limit events: all still retained
        store.create("pods", pod(f"p{i}"))
    store.check_watchable(start)
    store.create("pods", pod("p5"))  # evicts the first event
    with pytest.raises(ApiError) as caught:
        store.wait_for_events("pods", start, timeout=0)
    assert caught.value.code == 410
    assert caught.value.message == f"too old resource version: {start} ({start + 2})"
    store.check_watchable(start + 1)
    store.compact()
    with pytest.raises(ApiError):
        store.check_watchable(store.resource_version - 1)
    store.check_watchable(store.resource_version)


def test_parse_resource_version() -> None:
    assert parse_resource_version(None) is None
    assert parse_resource_version("") is None
    assert parse_resource_version("12") == 12
    for bad in ("abc", "-1", "1.5"):
        with pytest.raises(ApiError) as caught:
            parse_resource_version(bad)
        assert caught.value.code == 400


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", {"web-canary", "web"}),
        ("app==web,tier=front", {"web"}),
        ("app!=web", {"db", "bare"}),
        ("tier in (front, back)", {"web", "db"}),
        ("tier notin (front)", {"db", "bare", "web-canary"}),
        ("canary", {"web-canary"}),
        ("!canary,app", {"web", "db"}),
        ("app in (web),!canary", {"web"}),
        ("replicas>2", {"db"}),
        ("", {"web", "web-canary", "db", "bare"}),
    ],
)
def test_label_selectors(selector: str, expected: set[str]) -> None:
    labels = {
        "web": {"app": "web", "tier": "front"},
        "web-canary": {"app": "web", "canary": "true"},
        "db": {"app": "db", "tier": "back", "replicas": "3"},
        "bare": {},
    }
    parsed = parse_label_selector(selector)
    assert {name for name, value in labels.items() if parsed.matches(value)} == expected


def test_bad_label_selector_is_400() -> None:
    with pytest.raises(ApiError) as caught:
        parse_label_selector("app in web")
    assert caught.value.code == 400


def test_field_selectors_and_store_list_with_selectors(store: Store) -> None:
    store.create("pods", pod("a", labels={"app": "web"}, ip="10.244.0.5"))
    store.create("pods", pod("b", labels={"app": "web"}, ip="10.244.0.6"))
    store.create("pods", pod("c", labels={"app": "db"}, ip="10.244.0.7"))
    by_ip = parse_field_selector("status.podIP=10.244.0.6")
    assert [p["metadata"]["name"] for p in store.list("pods", fields=by_ip)[0]] == ["b"]
    not_a = parse_field_selector("metadata.name!=a,status.phase==Running")
    web = parse_label_selector("app=web")
    assert [p["metadata"]["name"] for p in store.list("pods", "shop", web, not_a)[0]] == ["b"]
    assert parse_field_selector("spec.hostNetwork=false").matches({"spec": {"hostNetwork": False}})
    with pytest.raises(ApiError):
        parse_field_selector("metadata.name")


def test_watch_translation_follows_selector_transitions(store: Store) -> None:
    rt = discovery.lookup("", "v1", "pods")
    assert rt is not None
    request = streams.WatchRequest(
        rt, "shop", parse_label_selector("app=web"), parse_field_selector(None), None, timeout=1
    )
    start = store.resource_version
    store.create("pods", pod("a", labels={"app": "db"}))
    store.update(
        "pods", "shop", "a", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"app": "web"}}}
    )
    store.update("pods", "shop", "a", lambda o: {**o, "metadata": {**o["metadata"], "labels": {"app": "x"}}})
    store.create("pods", pod("b", ns="other", labels={"app": "web"}))
    events, _ = store.wait_for_events("pods", start, timeout=0)
    seen = [streams.translate(e, request) for e in events]
    assert [s[0] if s else None for s in seen] == [None, "ADDED", "DELETED", None]


def test_merge_patch() -> None:
    target = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"list": [1, 2]}}
    patched = merge_patch(target, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"list": [9]}})
    assert patched == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"list": [9]}}
    assert target["metadata"]["labels"] == {"a": "1", "b": "2"}  # untouched


def test_json_patch() -> None:
    doc = {"metadata": {"labels": {"a/b": "1"}}, "spec": {"ports": [{"port": 80}]}}
    patched = json_patch(
        doc,
        [
            {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
            {"op": "add", "path": "/spec/ports/-", "value": {"port": 443}},
            {"op": "replace", "path": "/spec/ports/0/port", "value": 8080},
            {"op": "move", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/moved"},
            {"op": "copy", "from": "/metadata/labels/moved", "path": "/metadata/labels/copied"},
            {"op": "remove", "path": "/metadata/labels/moved"},
        ],
    )
    assert patched == {
        "metadata": {"labels": {"copied": "1"}},
        "spec": {"ports": [{"port": 8080}, {"port": 443}]},
    }
    with pytest.raises(ApiError) as caught:
        json_patch(doc, [{"op": "test", "path": "/spec/ports/0/port", "value": 1}])
    assert caught.value.code == 422
    with pytest.raises(ApiError) as caught:
        json_patch(doc, {"op": "add"})
    assert caught.value.code == 400


def test_cri_log_parsing_and_filtering(tmp_path: Path) -> None:
    log = tmp_path / "shop_a.log"
    log.write_text(
        "2024-05-01T12:00:00.000000001Z stdout F first\n"
        "2024-05-01T12:00:01.5Z stderr P sec\n"
        "2024-05-01T12:00:01.6Z stderr F ond\n"
        "2024-05-01T12:00:02Z stdout F third\n"
        "2024-05-01T12:00:03Z stdout F incomplete"  # still being written: not returned yet
    )
    assert LogReader(log, LogOptions()).initial() == b"first\nsecond\nthird\n"
    since = datetime(2024, 5, 1, 12, 0, 1, 600000, tzinfo=UTC)
    assert LogReader(log, LogOptions(since=since)).initial() == b"ond\nthird\n"
    assert LogReader(log, LogOptions(tail=1, timestamps=True)).initial() == b"2024-05-01T12:00:02Z third\n"
    assert LogReader(log, LogOptions(stream="stderr")).initial() == b"second\n"
    reader = LogReader(log, LogOptions())
    reader.initial()
    assert reader.poll() == b""
    with log.open("a") as handle:
        handle.write("\n")
    assert reader.poll() == b"incomplete\n"
    assert parse_record("not cri").message == "not cri"


def test_cluster_ip_allocator_skips_reserved_and_used() -> None:
    allocator = admission.ClusterIPAllocator("10.96.0.0/29")  # .2-.6 usable
    allocator.reserve("10.96.0.3")
    assert [allocator.allocate() for _ in range(4)] == ["10.96.0.2", "10.96.0.4", "10.96.0.5", "10.96.0.6"]
    with pytest.raises(ApiError):
        allocator.allocate()
    allocator.release("10.96.0.4")
    assert allocator.allocate() == "10.96.0.4"
    with pytest.raises(ValueError, match="already allocated"):
        allocator.reserve("10.96.0.4")


def test_tables_render_pods_and_detect_accept() -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"
    assert tables.table_version(accept) == "v1"
    assert tables.table_version("application/json") is None
    obj = pod("a", ip="10.244.0.9")
    obj["metadata"]["creationTimestamp"] = "2024-05-01T11:55:00Z"
    table = tables.render_table("pods", [obj], "7", now=FIXED)
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns[:5] == [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0)]
    assert ("IP", 1) in columns and ("Node", 1) in columns
    assert table["rows"][0]["cells"][:7] == ["a", "0/1", "Running", "0", "5m", "10.244.0.9", "node-1"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert [tables.human_duration(s) for s in (5, 150, 3600 * 5, 86400 * 3)] == ["5s", "2m30s", "5h", "3d"]
