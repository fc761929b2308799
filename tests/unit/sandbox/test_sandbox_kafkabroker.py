"""The Kafka broker stand-in's pure parts: KRaft's authorization rules and its audit log lines.

The expected lines are written out by hand from apache/kafka's
``StandardAuthorizerData.buildAuditMessage`` and ``StandardAcl.toString`` (Kafka 3.x) under the
default log4j pattern ``[%d] %p %m (%c)%n``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox.kafkabroker import (
    Acl,
    Action,
    Broker,
    audit_line,
    authorize,
    log4j_line,
    parse_acl,
    startup_lines,
)
from sandbox.kafkaclient import request_line
from sandbox.topology import (
    EXPECTED_KAFKA,
    KAFKA,
    KAFKA_ACLS,
    KAFKA_CLIENT_CALLS,
    KAFKA_DENIED,
    KAFKA_GROUPS,
    KAFKA_PRINCIPALS,
)

CLIENT = "User:CN=client,O=Otterize Tutorial"
CLIENT2 = "User:CN=client2,O=Otterize Tutorial"
MOMENT = datetime(2024, 5, 1, 12, 0, 5, 904_321, tzinfo=UTC)
ACLS = [parse_acl(":".join(acl)) for acl in KAFKA_ACLS]


def test_allowed_fetch_is_a_debug_line_in_the_kraft_layout() -> None:
    action = Action("TOPIC", "mytopic", "READ", "Fetch")
    line = audit_line(MOMENT, CLIENT, "10.244.1.40", action, authorize(ACLS, CLIENT, "10.244.1.40", action))
    assert line == (
        "[2024-05-01 12:00:05,904] DEBUG Principal = User:CN=client,O=Otterize Tutorial is Allowed "
        "operation = READ from host = 10.244.1.40 on resource = Topic:LITERAL:mytopic for request = Fetch "
        "with resourceRefCount = 1 based on rule MatchingAcl(acl=StandardAcl(resourceType=TOPIC, "
        "resourceName=mytopic, patternType=LITERAL, principal=User:CN=client,O=Otterize Tutorial, host=*, "
        "operation=READ, permissionType=ALLOW)) (kafka.authorizer.logger)"
    )


def test_denied_fetch_is_an_info_line_with_the_default_rule() -> None:
    action = Action("TOPIC", "payments", "READ", "Fetch")
    decision = authorize(ACLS, CLIENT2, "10.244.1.41", action)
    assert not decision.allowed
    assert audit_line(MOMENT, CLIENT2, "10.244.1.41", action, decision) == (
        "[2024-05-01 12:00:05,904] INFO Principal = User:CN=client2,O=Otterize Tutorial is Denied "
        "operation = READ from host = 10.244.1.41 on resource = Topic:LITERAL:payments for request = Fetch "
        "with resourceRefCount = 1 based on rule DefaultDeny (kafka.authorizer.logger)"
    )


def test_group_resources_print_as_group_literal() -> None:
    action = Action("GROUP", "client-group", "READ", "OffsetCommit")
    line = audit_line(MOMENT, CLIENT, "10.244.1.40", action, authorize(ACLS, CLIENT, "10.244.1.40", action))
    assert " on resource = Group:LITERAL:client-group for request = OffsetCommit " in line
    assert "resourceType=GROUP, resourceName=client-group" in line


def test_kraft_rules_deny_wins_allow_implies_describe_and_wildcards_match() -> None:
    read = Acl("ALLOW", "READ", "TOPIC", "orders", CLIENT)
    deny_host = Acl("DENY", "READ", "TOPIC", "orders", CLIENT, host="10.0.0.9")
    everyone = Acl("ALLOW", "DESCRIBE", "TOPIC", "*", "User:*")
    describe = Action("TOPIC", "orders", "DESCRIBE", "Metadata")
    fetch = Action("TOPIC", "orders", "READ", "Fetch")
    # An ALLOW of READ implies DESCRIBE; the wildcard ACL is visited after the topic's own.
    assert authorize([read], CLIENT, "10.0.0.1", describe).allowed
    assert "resourceName=*" in authorize([everyone, read], CLIENT, "10.0.0.1", describe).rule
    # A DENY for the host wins over any ALLOW, and only for that host.
    denied = authorize([read, deny_host], CLIENT, "10.0.0.9", fetch)
    assert not denied.allowed and "permissionType=DENY" in denied.rule
    assert authorize([read, deny_host], CLIENT, "10.0.0.1", fetch).allowed
    # A DENY of READ does not deny DESCRIBE; WRITE is not implied by anything but itself.
    assert authorize([read, deny_host, everyone], CLIENT, "10.0.0.9", describe).allowed
    assert authorize([read], CLIENT, "10.0.0.1", Action("TOPIC", "orders", "WRITE", "Produce")).rule == (
        "DefaultDeny"
    )
    assert not authorize([read], CLIENT2, "10.0.0.1", fetch).allowed  # another principal


def test_log4j_layout_pads_milliseconds() -> None:
    moment = datetime(2023, 3, 12, 13, 51, 55, 4_000, tzinfo=UTC)
    assert log4j_line(moment, "INFO", "hello", "kafka.server.BrokerServer") == (
        "[2023-03-12 13:51:55,004] INFO hello (kafka.server.BrokerServer)"
    )
    assert ("[StandardAuthorizer 0] Initialized with 6 acl(s).") in [m for m, _ in startup_lines(6, 9092)]


@pytest.mark.parametrize(
    "text",
    [
        "ALLOW:READ:TOPIC:mytopic",
        "PERMIT:READ:TOPIC:t:User:x",
        "ALLOW:READ:TABLE:t:User:x",
        "ALLOW:LOOK:TOPIC:t:User:x",
    ],
)
def test_malformed_acls_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|principal"):
        parse_acl(text)


def test_broker_answers_and_logs_each_decision_with_the_peer_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broker = Broker(ACLS)
    assert broker.serve(CLIENT2, "10.244.1.41", "PRODUCE mytopic message-1") == "OK offset=0"
    assert broker.serve(CLIENT, "10.244.1.40", "CONSUME mytopic client-group") == "OK records=1"
    assert broker.serve(CLIENT, "10.244.1.40", "CONSUME mytopic client-group") == "OK records=0"
    assert broker.serve(CLIENT2, "10.244.1.41", "CONSUME payments client2-group") == (
        "DENIED TOPIC_AUTHORIZATION_FAILED"
    )
    assert broker.serve(CLIENT, "10.244.1.40", "DESCRIBE mytopic") == "OK partitions=1"
    assert broker.serve(CLIENT, "10.244.1.40", "PRODUCE mytopic x") == "DENIED TOPIC_AUTHORIZATION_FAILED"
    assert broker.serve(CLIENT, "10.244.1.40", "FETCH mytopic").startswith("ERR ")
    lines = capsys.readouterr().out.splitlines()
    audit = [ln for ln in lines if ln.endswith("(kafka.authorizer.logger)")]
    assert len(audit) == 8  # produce, 2 x (fetch + offset commit), denied fetch, describe, denied produce
    assert all(" from host = 10.244.1.40 " in ln for ln in audit if CLIENT + " is" in ln)
    assert sum(" INFO Principal = " in ln for ln in audit) == 2  # the two denials
    assert any("(kafka.coordinator.group.GroupCoordinator)" in ln for ln in lines)  # not everything is audit


def test_topology_acls_give_exactly_the_tutorials_expected_result() -> None:
    """Each client's calls, decided by the broker's own rules against the topology's ACL table,
    split into EXPECTED_KAFKA (allowed) and KAFKA_DENIED."""
    verbs = {
        "CONSUME": ("READ", "Fetch"),
        "PRODUCE": ("WRITE", "Produce"),
        "DESCRIBE": ("DESCRIBE", "Metadata"),
    }
    allowed: dict[str, dict[str, set[str]]] = {}
    denied: dict[str, dict[str, set[str]]] = {}
    for client, calls in KAFKA_CLIENT_CALLS.items():
        for verb, topic in calls:
            action = Action("TOPIC", topic, *verbs[verb])
            ok = authorize(ACLS, KAFKA_PRINCIPALS[client], "10.244.1.2", action).allowed
            (allowed if ok else denied).setdefault(client, {}).setdefault(topic, set()).add(verb)
            if ok and verb == "CONSUME":
                group = Action("GROUP", KAFKA_GROUPS[client], "READ", "OffsetCommit")
                assert authorize(ACLS, KAFKA_PRINCIPALS[client], "10.244.1.2", group).allowed
    assert allowed == EXPECTED_KAFKA
    assert denied == KAFKA_DENIED
    broker, *clients = KAFKA
    assert (broker.name, broker.kind, broker.port, broker.service_port) == (
        "kafka",
        "StatefulSet",
        9092,
        9092,
    )
    assert {c.name for c in clients} == set(KAFKA_CLIENT_CALLS)
    assert all(c.args[:2] == ("--bootstrap", "kafka:9092") for c in clients)


def test_client_request_lines() -> None:
    assert request_line("CONSUME mytopic", "client-group", 3) == "CONSUME mytopic client-group"
    assert request_line("PRODUCE mytopic", "g", 7) == "PRODUCE mytopic message-7"
    assert request_line("DESCRIBE mytopic", "g", 1) == "DESCRIBE mytopic"
