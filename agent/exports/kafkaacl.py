"""Edges → the Kafka ACLs the brokers allowed: Strimzi ``KafkaUser`` documents and the equivalent
``kafka-acls.sh`` command lines.

Data comes from the store's edges (``agent.model.Edge``) whose ``kafka_topics`` the Kafka watcher
filled from the brokers' authorizer log (principal, topic, operations allowed and denied); the
documents and lines go to the CLI (``network-mapper export --format kafka-acl`` and
``--format kafka-acl-commands``) and the cloud's export handler (``format=kafka-acl``). Pure: no I/O.

Only the operations the broker **allowed** are exported; denied ones never are (that would grant
what was refused), and a topic with no allowed operation gives nothing. Operations are normalised by
:func:`agent.exports.clientintents.kafka_operations` (``consume``/``Read`` → ``Read`` ...), and only
those Kafka accepts on a topic are kept (``ClusterAction`` and ``IdempotentWrite`` are cluster
operations: ``kafka-acls.sh`` refuses them with ``--topic``).

``KafkaUser`` (``kafka.strimzi.io/v1beta2``, served by Strimzi 0.22 to 0.51; ``v1`` from 0.49 on):

* one per (Kafka server workload, ``User:`` principal), in the server's namespace, labelled
  ``strimzi.io/cluster``: the server pods' own ``strimzi.io/cluster`` label when ``labels_of``
  knows it (Strimzi labels its brokers so), else the server workload's name;
* ``metadata.name`` is the user name Strimzi will use, derived from the principal: the ``CN`` of an
  X.509 principal (``User:CN=client,O=Otterize Tutorial`` → ``client``, with
  ``authentication: {type: tls}``), else the SASL user name (``User:alice`` → ``alice``, no
  ``authentication``: the user's credentials stay the user's). Lower-cased into a DNS-1123 name;
  names that clash within one server end in 8 hex digits of the principal's hash. The observed
  principal is kept in the annotation ``network-mapper.otterize.com/principal``;
* Strimzi's ACLs name ``User:CN=<metadata.name>`` (tls) or ``User:<metadata.name>``: a certificate
  DN with more than a CN (``O=...``) is not that principal, so under ``tls`` the client moves to the
  certificate the User Operator issues. The command lines grant the observed principal exactly;
* ``spec.authorization`` is ``{type: simple, acls}``, one ACL per observed (topic, operation):
  ``{resource: {type: topic, name, patternType: literal}, operations: [Read], host: "*"}``, topics
  sorted, operations in the CRD's order;
* principals ``User:ANONYMOUS`` (Strimzi manages no ACLs for it), those of another type and DNs
  without a CN get no ``KafkaUser``, only command lines (:func:`without_kafka_user` lists them);
  unknown (empty) principals get neither, and a ``#`` note.

Strimzi names a user by ``metadata.name``, so one namespace holds one ``KafkaUser`` per name: two
Kafka servers in one namespace whose clients share a principal give two documents of one name
(Strimzi's ``spec.username``, which resolves that, is not in the CRD this targets). Names depend on
one server's edges only, so exports paged by server are the same documents as one whole export.
Consumers also need ``Read`` on their consumer group, which the watcher does not record (it keeps
topics): add a group ACL by hand.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from agent.exports.clientintents import DNS_SUBDOMAIN, kafka_operations
from agent.exports.networkpolicy import (
    DEFAULT_SELECTOR_LABEL,
    MANAGED_BY,
    LabelsOf,
    default_labels,
    dns_label,
)
from agent.model import Edge, WorkloadIdentity

API_GROUP = "kafka.strimzi.io"
KIND = "KafkaUser"
VERSIONS = ("v1beta2", "v1")
CLUSTER_LABEL = "strimzi.io/cluster"
PRINCIPAL_ANNOTATION = "network-mapper.otterize.com/principal"
ANONYMOUS = "User:ANONYMOUS"
USER_PREFIX = "User:"
DEFAULT_PORT = 9092
MAX_NAME = 63  # the CN of the certificate Strimzi issues has at most 64 characters

# ClientIntents' operation names (kafka_operations' output) → Kafka's, for the operations Kafka
# accepts on a topic, in the KafkaUser CRD's enum order.
_ACL_OPERATIONS = {
    "consume": "Read",
    "produce": "Write",
    "create": "Create",
    "delete": "Delete",
    "alter": "Alter",
    "describe": "Describe",
    "AlterConfigs": "AlterConfigs",
    "DescribeConfigs": "DescribeConfigs",
    "all": "All",
}
TOPIC_OPERATIONS = tuple(_ACL_OPERATIONS.values())

_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# (server, principal) → topic → Kafka operations
_Allowed = dict[tuple[WorkloadIdentity, str], dict[str, set[str]]]
# (server, client, topic) → operations of accesses whose principal is unknown
_Unknown = dict[tuple[WorkloadIdentity, WorkloadIdentity, str], set[str]]


def acl_operations(operations: Iterable[str]) -> list[str]:
    """Our (or Kafka's) operation names → Kafka's ACL operations valid on a topic, in CRD order."""
    found = {_ACL_OPERATIONS.get(op) for op in kafka_operations(operations)}
    return [op for op in TOPIC_OPERATIONS if op in found]


def _collect(edges: Iterable[Edge]) -> tuple[_Allowed, _Unknown]:
    allowed: _Allowed = defaultdict(lambda: defaultdict(set))
    unknown: _Unknown = defaultdict(set)
    for edge in edges:
        server = edge.target
        if not isinstance(server, WorkloadIdentity):
            continue
        for topic in edge.kafka_topics:
            operations = acl_operations(topic.operations)  # never topic.denied
            if not operations:
                continue
            if topic.principal:
                allowed[(server, topic.principal)][topic.name].update(operations)
            else:
                unknown[(server, edge.client, topic.name)].update(operations)
    return allowed, unknown


def _ordered(operations: set[str]) -> list[str]:
    return [op for op in TOPIC_OPERATIONS if op in operations]


# --------------------------------------------------------------------------- KafkaUser


def user_of(principal: str) -> tuple[str, bool] | None:
    """A principal → (Strimzi user name before DNS-1123 folding, whether it is an X.509 CN); None
    for principals a KafkaUser cannot stand for (``User:ANONYMOUS``, other types, no name, a
    distinguished name without a CN)."""
    if principal == ANONYMOUS or not principal.startswith(USER_PREFIX):
        return None
    user = principal.removeprefix(USER_PREFIX).strip()
    for rdn in _UNESCAPED_COMMA.split(user):
        key, equals, value = rdn.partition("=")
        if equals and key.strip().upper() == "CN" and value.strip():
            return value.strip().replace("\\", ""), True
    return (user, False) if user and "=" not in user else None


def _name(user: str) -> str:
    lowered = user.lower()
    if len(lowered) <= MAX_NAME and DNS_SUBDOMAIN.match(lowered):
        return lowered
    return dns_label(user, MAX_NAME)


def _names(principals: Iterable[str]) -> dict[str, str]:
    """One server's principals → distinct names (all clashing ones qualified by a hash)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for principal in principals:
        found = user_of(principal)
        if found:
            by_name[_name(found[0])].append(principal)
    names = {}
    for name, group in by_name.items():
        for principal in group:
            digest = hashlib.sha256(principal.encode()).hexdigest()[:8]
            names[principal] = name if len(group) == 1 else dns_label(f"{name}-{digest}", MAX_NAME)
    return names


def _acls(topics: dict[str, set[str]]) -> list[dict[str, Any]]:
    return [
        {
            "resource": {"type": "topic", "name": topic, "patternType": "literal"},
            "operations": [operation],
            "host": "*",
        }
        for topic in sorted(topics)
        for operation in _ordered(topics[topic])
    ]


def _cluster(server: WorkloadIdentity, labels_of: LabelsOf | None) -> str:
    """The Strimzi cluster a server's brokers belong to: their label, else the server's name (as a
    label value: names longer than 63 characters are folded)."""
    labels = labels_of(server) if labels_of else {}
    return (
        labels.get(CLUSTER_LABEL)
        or default_labels(server).get(DEFAULT_SELECTOR_LABEL)
        or dns_label(server.name)
    )


def kafka_users(
    edges: Iterable[Edge], version: str = "v1beta2", labels_of: LabelsOf | None = None
) -> list[dict[str, Any]]:
    """Strimzi KafkaUsers, one per (server, principal) with allowed topic operations, sorted by
    server (namespace, name, kind), then principal; see the module docstring."""
    if version not in VERSIONS:
        raise ValueError(f"unsupported KafkaUser version {version!r}; expected one of {VERSIONS}")
    allowed, _ = _collect(edges)
    by_server: dict[WorkloadIdentity, list[str]] = defaultdict(list)
    for server, principal in allowed:
        by_server[server].append(principal)
    documents: list[dict[str, Any]] = []
    for server in sorted(by_server):
        cluster = _cluster(server, labels_of)
        names = _names(by_server[server])
        for principal in sorted(names):
            spec: dict[str, Any] = {}
            if (user_of(principal) or ("", False))[1]:
                spec["authentication"] = {"type": "tls"}
            spec["authorization"] = {"type": "simple", "acls": _acls(allowed[(server, principal)])}
            documents.append(
                {
                    "apiVersion": f"{API_GROUP}/{version}",
                    "kind": KIND,
                    "metadata": {
                        "name": names[principal],
                        "namespace": server.namespace,
                        "labels": {CLUSTER_LABEL: cluster, **MANAGED_BY},
                        "annotations": {PRINCIPAL_ANNOTATION: principal},
                    },
                    "spec": spec,
                }
            )
    return documents


def without_kafka_user(edges: Iterable[Edge]) -> list[str]:
    """The allowed accesses no KafkaUser stands for, one line each, sorted: principals of
    ``User:ANONYMOUS`` or another type (their ACLs are in the command lines) and unknown ones."""
    allowed, unknown = _collect(edges)
    notes = [
        f"{principal} on {server}: no KafkaUser (see the kafka-acls.sh lines)"
        for server, principal in sorted(allowed)
        if user_of(principal) is None
    ]
    notes += [
        f"{client} on topic {topic} of {server}: no principal known" for server, client, topic in unknown
    ]
    return sorted(_CONTROL.sub("?", note) for note in notes)


# --------------------------------------------------------------------------- kafka-acls.sh


def bootstrap_server(server: WorkloadIdentity, port: int = DEFAULT_PORT) -> str:
    """``<server>.<namespace>:<port>``: the server's name as a Service name in its namespace."""
    return f"{server.name}.{server.namespace}:{port}"


def kafka_acl_commands(edges: Iterable[Edge], port: int = DEFAULT_PORT) -> list[str]:
    """``kafka-acls.sh --add`` lines, one per allowed (server, principal, topic, operation), sorted as
    :func:`kafka_users` sorts its documents; after each server's lines, a ``#`` note per client and
    topic whose principal is unknown (no ACL can name it). Each line is shell-quoted."""
    allowed, unknown = _collect(edges)
    by_server: dict[WorkloadIdentity, list[str]] = defaultdict(list)
    for (server, principal), topics in sorted(allowed.items()):
        bootstrap = bootstrap_server(server, port)
        for topic in sorted(topics):
            for operation in _ordered(topics[topic]):
                command = ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--add"]
                command += ["--allow-principal", principal, "--operation", operation, "--topic", topic]
                by_server[server].append(shlex.join(command))
    for (server, client, topic), operations in sorted(unknown.items()):
        note = f"skipped: {client} on topic {topic} of {server} ({', '.join(_ordered(operations))})"
        # Names from the API are not shell-quoted here: a line break would end the comment.
        by_server[server].append(f"# {_CONTROL.sub('?', note)}: the broker logged no principal, so no ACL")
    return [line for server in sorted(by_server) for line in by_server[server]]
