"""The cluster DNS server's answer logic, on plain state objects (no sockets, no API server)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sandbox.clusterdns import (
    Answer,
    ClusterState,
    Pod,
    Record,
    Service,
    Zone,
    answer,
    pod_from_api,
    service_from_api,
)

ZONE = Zone.from_flags(
    "cluster.local",
    externals=["api.example.com=198.51.100.10", "multi.example.com=198.51.100.11,198.51.100.12"],
    cnames=[
        "www.example.com=edge.example.net",
        "edge.example.net=api.example.com",
        "loop.example=loop.example",
    ],
)
STATE = ClusterState(
    services={
        ("shop", "cartservice"): Service("shop", "cartservice", "10.96.0.12", {"app": "cartservice"}),
        ("shop", "kafka"): Service("shop", "kafka", None, {"app": "kafka"}),
        ("shop", "manual"): Service("shop", "manual", None, {}),
    },
    pods={
        ("shop", "cart-1"): Pod("shop", "cart-1", "10.244.0.7", {"app": "cartservice"}),
        ("shop", "kafka-1"): Pod("shop", "kafka-1", "10.244.0.21", {"app": "kafka"}),
        ("shop", "kafka-0"): Pod("shop", "kafka-0", "10.244.0.3", {"app": "kafka"}),
        ("shop", "kafka-2"): Pod("shop", "kafka-2", "10.244.0.22", {"app": "kafka"}, ready=False),
        ("other", "kafka-x"): Pod("other", "kafka-x", "10.244.0.30", {"app": "kafka"}),
        ("shop", "pending"): Pod("shop", "pending", None, {"app": "kafka"}),
    },
)


def a(name: str, ip: str, ttl: int = 5) -> Record:
    return Record(name, "A", ip, ttl)


def test_service_resolves_to_its_cluster_ip() -> None:
    name = "cartservice.shop.svc.cluster.local"
    assert answer(name, "A", STATE, ZONE) == Answer("NOERROR", (a(name, "10.96.0.12"),))


def test_headless_service_resolves_to_ready_selected_pods_of_its_namespace_in_order() -> None:
    name = "kafka.shop.svc.cluster.local"
    result = answer(name, "A", STATE, ZONE)
    assert result == Answer("NOERROR", (a(name, "10.244.0.3"), a(name, "10.244.0.21")))


def test_headless_service_without_selector_exists_but_has_no_addresses() -> None:
    assert answer("manual.shop.svc.cluster.local", "A", STATE, ZONE) == Answer("NOERROR", ())


def test_pod_record_of_an_existing_pod() -> None:
    name = "10-244-0-7.shop.pod.cluster.local"
    assert answer(name, "A", STATE, ZONE) == Answer("NOERROR", (a(name, "10.244.0.7"),))


@pytest.mark.parametrize(
    "name",
    [
        "10-244-0-7.other.pod.cluster.local",  # the pod is in another namespace
        "10-244-9-9.shop.pod.cluster.local",  # no such pod
        "cartservice.other.svc.cluster.local",
        "cartservice.shop.svc.cluster.local.shop.svc.cluster.local",  # a search-list expansion
        "api.example.com.shop.svc.cluster.local",
        "x.cartservice.shop.svc.cluster.local",
        "cluster.local",
        "example.org",
    ],
)
def test_unknown_names_are_nxdomain(name: str) -> None:
    assert answer(name, "A", STATE, ZONE) == Answer("NXDOMAIN", ())


def test_external_names_answer_every_configured_address() -> None:
    assert answer("api.example.com.", "A", STATE, ZONE) == Answer(
        "NOERROR", (a("api.example.com", "198.51.100.10", 30),)
    )
    assert [r.value for r in answer("multi.example.com", "A", STATE, ZONE).records] == [
        "198.51.100.11",
        "198.51.100.12",
    ]


def test_cname_chain_is_followed_and_returned_whole() -> None:
    assert answer("www.example.com", "A", STATE, ZONE) == Answer(
        "NOERROR",
        (
            Record("www.example.com", "CNAME", "edge.example.net", 30),
            Record("edge.example.net", "CNAME", "api.example.com", 30),
            a("api.example.com", "198.51.100.10", 30),
        ),
    )


def test_cname_loop_is_servfail() -> None:
    assert answer("loop.example", "A", STATE, ZONE).rcode == "SERVFAIL"


def test_cname_to_an_unknown_name_keeps_the_chain_with_nxdomain() -> None:
    zone = Zone.from_flags("cluster.local", [], ["a.example=b.example"])
    assert answer("a.example", "A", STATE, zone) == Answer(
        "NXDOMAIN", (Record("a.example", "CNAME", "b.example", 30),)
    )


@pytest.mark.parametrize(
    "name", ["cartservice.shop.svc.cluster.local", "api.example.com", "10-244-0-7.shop.pod.cluster.local"]
)
def test_aaaa_for_a_known_name_is_noerror_without_records(name: str) -> None:
    assert answer(name, "AAAA", STATE, ZONE) == Answer("NOERROR", ())


def test_aaaa_for_a_cname_returns_the_chain_but_no_address() -> None:
    result = answer("www.example.com", "AAAA", STATE, ZONE)
    assert result.rcode == "NOERROR"
    assert [r.rtype for r in result.records] == ["CNAME", "CNAME"]


def test_aaaa_for_an_unknown_name_is_nxdomain() -> None:
    assert answer("nothing.shop.svc.cluster.local", "AAAA", STATE, ZONE).rcode == "NXDOMAIN"


def test_names_are_case_insensitive_everywhere() -> None:
    assert answer("CartService.SHOP.svc.Cluster.Local.", "A", STATE, ZONE).records == (
        a("cartservice.shop.svc.cluster.local", "10.96.0.12"),
    )
    assert answer("WWW.Example.COM", "A", STATE, ZONE).records[-1] == a(
        "api.example.com", "198.51.100.10", 30
    )
    zone = Zone.from_flags("Cluster.Local.", ["API.Example.com=198.51.100.10"], [])
    assert answer("cartservice.shop.svc.cluster.local", "A", STATE, zone).rcode == "NOERROR"
    assert answer("api.example.com", "A", STATE, zone).rcode == "NOERROR"


def test_cluster_names_are_servfail_until_the_first_list_external_names_are_not() -> None:
    unsynced = ClusterState(synced=False)
    assert answer("cartservice.shop.svc.cluster.local", "A", unsynced, ZONE).rcode == "SERVFAIL"
    assert answer("api.example.com", "A", unsynced, ZONE).rcode == "NOERROR"
    assert answer("example.org", "A", unsynced, ZONE).rcode == "NXDOMAIN"


def test_other_cluster_domain() -> None:
    zone = Zone(cluster_domain="corp.internal")
    assert answer("cartservice.shop.svc.corp.internal", "A", STATE, zone).rcode == "NOERROR"
    assert answer("cartservice.shop.svc.cluster.local", "A", STATE, zone).rcode == "NXDOMAIN"


@pytest.mark.parametrize("flag", ["noequals", "=1.2.3.4", "name=", "name=not-an-ip"])
def test_bad_external_flags_are_rejected(flag: str) -> None:
    with pytest.raises(ValueError):
        Zone.from_flags("cluster.local", [flag], [])


def test_api_objects_are_converted() -> None:
    meta = SimpleNamespace(namespace="shop", name="kafka", labels={"app": "kafka"})
    headless = SimpleNamespace(
        metadata=meta, spec=SimpleNamespace(cluster_ip="None", selector={"app": "kafka"})
    )
    assert service_from_api(headless) == Service("shop", "kafka", None, {"app": "kafka"})
    not_ready = SimpleNamespace(
        metadata=meta,
        status=SimpleNamespace(
            pod_ip="10.244.0.3", phase="Running", conditions=[SimpleNamespace(type="Ready", status="False")]
        ),
    )
    assert pod_from_api(not_ready) == Pod("shop", "kafka", "10.244.0.3", {"app": "kafka"}, ready=False)
    # A minimal API server may set no conditions: Running counts as ready.
    running = SimpleNamespace(
        metadata=meta, status=SimpleNamespace(pod_ip="10.244.0.3", phase="Running", conditions=None)
    )
    assert pod_from_api(running).ready


SUFFIX_ZONE = Zone.from_flags(
    "cluster.local",
    externals=["s3.amazonaws.com=198.51.100.40"],
    cnames=["alias.amazonaws.com=s3.amazonaws.com"],
    suffixes=["amazonaws.com=198.51.100.30", "Special.US-East-1.amazonaws.com.=198.51.100.31,198.51.100.32"],
)


@pytest.mark.parametrize(
    "name",
    [
        "amazonaws.com",  # the suffix itself
        "sts.amazonaws.com",
        "sqs.us-east-1.amazonaws.com",
        "network-mapper-demo.s3.us-east-1.amazonaws.com",
        "a.b.c.d.e.f.amazonaws.com.",
        "STS.AmazonAWS.com",
    ],
)
def test_every_name_under_a_suffix_gets_its_address_with_the_external_ttl(name: str) -> None:
    result = answer(name, "A", STATE, SUFFIX_ZONE)
    assert result == Answer("NOERROR", (a(name.rstrip(".").lower(), "198.51.100.30", 30),))


@pytest.mark.parametrize(
    "name",
    [
        "notamazonaws.com",  # a suffix matches whole labels only
        "amazonaws.com.evil.example",
        "com",
        "sts.amazonaws.com.shop.svc.cluster.local",  # a search-list expansion stays in the cluster
        "sts.amazonaws.com.cluster.local",
    ],
)
def test_names_not_under_a_suffix_are_nxdomain(name: str) -> None:
    assert answer(name, "A", STATE, SUFFIX_ZONE) == Answer("NXDOMAIN", ())


def test_the_longest_suffix_wins_and_exact_names_and_cnames_win_over_suffixes() -> None:
    assert [
        r.value for r in answer("x.special.us-east-1.amazonaws.com", "A", STATE, SUFFIX_ZONE).records
    ] == [
        "198.51.100.31",
        "198.51.100.32",
    ]
    assert answer("x.us-east-1.amazonaws.com", "A", STATE, SUFFIX_ZONE).records[0].value == "198.51.100.30"
    assert answer("s3.amazonaws.com", "A", STATE, SUFFIX_ZONE).records == (
        a("s3.amazonaws.com", "198.51.100.40", 30),
    )
    assert answer("alias.amazonaws.com", "A", STATE, SUFFIX_ZONE).records == (
        Record("alias.amazonaws.com", "CNAME", "s3.amazonaws.com", 30),
        a("s3.amazonaws.com", "198.51.100.40", 30),
    )


def test_a_cname_into_a_suffix_is_followed() -> None:
    zone = Zone.from_flags(
        "cluster.local", [], ["www.example.com=bucket.s3.amazonaws.com"], ["amazonaws.com=198.51.100.30"]
    )
    assert answer("www.example.com", "A", STATE, zone) == Answer(
        "NOERROR",
        (
            Record("www.example.com", "CNAME", "bucket.s3.amazonaws.com", 30),
            a("bucket.s3.amazonaws.com", "198.51.100.30", 30),
        ),
    )


def test_suffix_names_answer_aaaa_without_records_and_ignore_sync() -> None:
    assert answer("sts.amazonaws.com", "AAAA", STATE, SUFFIX_ZONE) == Answer("NOERROR", ())
    assert answer("sts.amazonaws.com", "A", ClusterState(synced=False), SUFFIX_ZONE).rcode == "NOERROR"


def test_a_suffix_never_captures_cluster_names() -> None:
    zone = Zone.from_flags("cluster.local", [], [], ["local=198.51.100.50"])
    assert answer("cartservice.shop.svc.cluster.local", "A", STATE, zone).records == (
        a("cartservice.shop.svc.cluster.local", "10.96.0.12"),
    )
    assert answer("nothing.shop.svc.cluster.local", "A", STATE, zone).rcode == "NXDOMAIN"
    assert answer("printer.local", "A", STATE, zone).records[0].value == "198.51.100.50"


@pytest.mark.parametrize("flag", ["amazonaws.com", "=198.51.100.30", "amazonaws.com=", "amazonaws.com=::1"])
def test_bad_suffix_flags_are_rejected(flag: str) -> None:
    with pytest.raises(ValueError):
        Zone.from_flags("cluster.local", [], [], [flag])
