"""The Istio sidecar stand-in's telemetry: its exposition parses with prometheus_client's own
parser and counts what was recorded; peer metadata and Service names; the mesh workloads' calls."""

from __future__ import annotations

import random
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.istiometrics import (
    REQUEST_LABELS,
    STANDARD_LABELS,
    Peer,
    Telemetry,
    decode_peer,
    encode_peer,
    request_labels,
    service_fqdn,
)
from sandbox.meshapp import answer, fill_call
from sandbox.topology import EXPECTED_ISTIO, ISTIO, ISTIO_CALLS, ISTIO_NS

NS = "otterize-tutorial-istio"
SERVICE = f"server.{NS}.svc.cluster.local"
CLIENT = Peer("client", NS, "client", "client", "client")
SERVER = Peer("server", NS, "server", "server", "server")


def _record(
    t: Telemetry, reporter: str, method: str, path: str, code: int, source: Peer | None = CLIENT
) -> None:
    labels = request_labels(reporter, source, SERVER, SERVICE, response_code=code)
    cluster = "inbound|8080||" if reporter == "destination" else f"outbound|80||{SERVICE}"
    t.record(labels, method, path, millis=3.5, request_bytes=40, response_bytes=120, upstream_cluster=cluster)


def _families(t: Telemetry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = t.exposition().decode()
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)
    }


def test_a_fresh_sidecar_exposes_no_request_series() -> None:
    families = _families(Telemetry())
    assert families["istio_requests"] == []
    assert families["envoy_server_live"] == [("envoy_server_live", {}, 1.0)]


def test_requests_are_counted_with_istios_labels_and_the_path_and_method_overrides() -> None:
    t = Telemetry()
    _record(t, "destination", "GET", "/api/cart?user=3", 200)
    _record(t, "destination", "GET", "/api/cart?user=3", 200)
    _record(t, "destination", "POST", "/api/orders/1234", 201)
    _record(t, "destination", "GET", "/api/cart", 200, source=None)  # a caller without a sidecar
    families = _families(t)
    requests = {
        (s["source_workload"], s["request_method"], s["request_path"]): (s, v)
        for name, s, v in families["istio_requests"]
        if name == "istio_requests_total"
    }
    assert {k: v for k, (_, v) in requests.items()} == {
        ("client", "GET", "/api/cart?user=3"): 2.0,
        ("client", "POST", "/api/orders/1234"): 1.0,
        ("unknown", "GET", "/api/cart"): 1.0,
    }
    labels, _ = requests[("client", "GET", "/api/cart?user=3")]
    assert set(labels) == set(REQUEST_LABELS)
    assert labels["reporter"] == "destination"
    assert labels["source_principal"] == f"spiffe://cluster.local/ns/{NS}/sa/client"
    assert labels["destination_principal"] == f"spiffe://cluster.local/ns/{NS}/sa/server"
    assert (labels["destination_service"], labels["destination_service_name"]) == (SERVICE, "server")
    assert labels["destination_service_namespace"] == NS
    assert (labels["response_code"], labels["connection_security_policy"]) == ("200", "mutual_tls")
    unknown, _ = requests[("unknown", "GET", "/api/cart")]
    assert (unknown["source_principal"], unknown["connection_security_policy"]) == ("unknown", "none")
    # No _created series: Envoy has none, and a watcher must not mistake them for counters.
    assert not [n for n, _, _ in families["istio_requests"] if n != "istio_requests_total"]


def test_histograms_and_envoy_series_come_along() -> None:
    t = Telemetry()
    _record(t, "source", "GET", "/api/cart", 200)
    families = _families(t)
    buckets = [
        (s["le"], v) for n, s, v in families["istio_request_duration_milliseconds"] if n.endswith("_bucket")
    ]
    assert ("5.0", 1.0) in buckets and ("1.0", 0.0) in buckets and ("+Inf", 1.0) in buckets
    histogram_labels = next(s for _, s, _ in families["istio_request_duration_milliseconds"])
    assert set(histogram_labels) - {"le"} == set(STANDARD_LABELS)  # the tag overrides are on the count only
    assert families["envoy_cluster_upstream_cx"] == [
        ("envoy_cluster_upstream_cx_total", {"cluster_name": f"outbound|80||{SERVICE}"}, 1.0)
    ]
    source = next(s for n, s, _ in families["istio_requests"])
    assert (source["reporter"], source["connection_security_policy"]) == ("source", "unknown")


def test_peer_metadata_round_trips_and_garbage_is_no_peer() -> None:
    assert decode_peer(encode_peer(CLIENT)) == CLIENT
    assert decode_peer(None) is None
    assert decode_peer("not base64!") is None
    assert decode_peer("eyJ3b3JrbG9hZCI6IDF9") is None  # base64 of JSON missing fields


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("server", SERVICE),
        ("server:80", SERVICE),
        (f"server.{NS}", SERVICE),
        (f"server.{NS}.svc", SERVICE),
        (f"{SERVICE}.", SERVICE),
        ("api.example.com", "api.example.com"),
    ],
)
def test_service_names_are_completed_like_the_pods_search_path(host: str, expected: str) -> None:
    assert service_fqdn(host, NS, "cluster.local") == expected


def test_mesh_calls_and_answers() -> None:
    rng = random.Random(7)
    filled = fill_call("http://server/api/orders/<1000-1999>?user=<1-5>", rng)
    match = re.fullmatch(r"http://server/api/orders/(\d+)\?user=(\d)", filled)
    assert match and 1000 <= int(match.group(1)) <= 1999 and 1 <= int(match.group(2)) <= 5
    assert answer("GET", "/api/cart?user=2")[0] == 200
    assert answer("POST", "/api/orders/1500") == (201, {"order": 1500, "status": "created"})
    assert answer("POST", "/api/cart")[0] == 404


def _normalized(path: str) -> str:
    route = path.partition("?")[0]
    return "/".join("{id}" if part.isdigit() or part.startswith("<") else part for part in route.split("/"))


def test_topology_istio_calls_give_the_expected_result() -> None:
    seen: dict[tuple[str, str], dict[str, set[str]]] = {}
    for client, calls in ISTIO_CALLS.items():
        for call in calls:
            method, url = call.split(" ")
            host, _, path = url.removeprefix("http://").partition("/")
            seen.setdefault((client, host), {}).setdefault(_normalized("/" + path), set()).add(method)
    assert seen == EXPECTED_ISTIO
    assert {w.namespace for w in ISTIO} == {ISTIO_NS}
    for w in ISTIO:
        assert [c.name for c in w.containers] == [w.name, "istio-proxy"]
        assert w.pod_labels["security.istio.io/tlsMode"] == "istio"
        assert w.pod_labels["service.istio.io/canonical-name"] == w.name
