"""A Kafka broker stand-in: ``python -m sandbox.kafkabroker --port 9092 --acl ...``.

Data in: clients' requests over a real TCP connection, in a line protocol (UTF-8, one request per
line, one answer line each)::

    AUTH <principal>            -> OK                      (an mTLS-style principal, e.g.
                                                            ``User:CN=client,O=Otterize Tutorial``)
    DESCRIBE <topic>            -> OK partitions=1         Kafka's Metadata request, DESCRIBE on the topic
    PRODUCE <topic> <payload>   -> OK offset=<n>           Produce, WRITE on the topic
    CONSUME <topic> <group>     -> OK records=<n>          Fetch, READ on the topic; then OffsetCommit,
                                                           READ on the consumer group
    (denied)                    -> DENIED TOPIC_AUTHORIZATION_FAILED | GROUP_AUTHORIZATION_FAILED
    (malformed, or before AUTH) -> ERR <reason>

and the ACL table from the command line (``--acl PERMISSION:OPERATION:RESOURCE_TYPE:NAME:PRINCIPAL``,
from :data:`sandbox.topology.KAFKA_ACLS`). Each request is decided as KRaft's ``StandardAuthorizer``
decides it (``StandardAuthorizerData.findAclRule``: a matching DENY wins, an ALLOW of READ, WRITE,
DELETE or ALTER implies DESCRIBE, no match is ``DefaultDeny`` as with
``allow.everyone.if.no.acl.found=false``). Data out: the answer to the client, and on stdout (the
pod's log) the broker's log4j lines under Kafka's default pattern ``[%d] %p %m (%c)%n`` (UTC, as in
a container): a few ordinary broker lines, and one ``kafka.authorizer.logger`` line per decision,
worded as ``StandardAuthorizerData.buildAuditMessage`` words it (Kafka 3.x/4.x) — allowed at DEBUG,
denied at INFO — with the client's real peer address as the host.
"""

from __future__ import annotations

import argparse
import socketserver
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.programs import stop_on_signals

AUDIT_LOGGER = "kafka.authorizer.logger"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
NODE_ID = 0
KAFKA_VERSION = "3.7.0"
# Operations an ALLOW acl implies DESCRIBE for (StandardAuthorizerData.IMPLIES_DESCRIBE).
_IMPLIES_DESCRIBE = frozenset({"DESCRIBE", "READ", "WRITE", "DELETE", "ALTER"})
_IMPLIES_DESCRIBE_CONFIGS = frozenset({"DESCRIBE_CONFIGS", "ALTER_CONFIGS"})
# SecurityUtils.resourceTypeName: the enum name as the audit message prints it.
_RESOURCE_TYPE_NAMES = {
    "TOPIC": "Topic",
    "GROUP": "Group",
    "CLUSTER": "Cluster",
    "TRANSACTIONAL_ID": "TransactionalId",
    "DELEGATION_TOKEN": "DelegationToken",
    "USER": "User",
}
_PERMISSIONS = frozenset({"ALLOW", "DENY"})
# AclOperation in declaration order: the authorizer scans a resource's ACLs sorted by it.
_OPERATIONS = (
    "UNKNOWN",
    "ANY",
    "ALL",
    "READ",
    "WRITE",
    "CREATE",
    "DELETE",
    "ALTER",
    "DESCRIBE",
    "CLUSTER_ACTION",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
    "CREATE_TOKENS",
    "DESCRIBE_TOKENS",
)


@dataclass(frozen=True, slots=True)
class Acl:
    """One ACL binding, as ``StandardAcl`` holds it (LITERAL patterns only)."""

    permission: str  # ALLOW | DENY
    operation: str  # READ, WRITE, DESCRIBE, ... ALL (AclOperation names)
    resource_type: str  # TOPIC, GROUP, ... (ResourceType names)
    name: str  # a resource name, or "*" for every resource of the type
    principal: str  # "User:..." or "User:*"
    host: str = WILDCARD

    def describe(self) -> str:
        """``StandardAcl.toString()`` (the class of Kafka 3.x)."""
        return (
            f"StandardAcl(resourceType={self.resource_type}, resourceName={self.name}, "
            f"patternType=LITERAL, principal={self.principal}, host={self.host}, "
            f"operation={self.operation}, permissionType={self.permission})"
        )


def parse_acl(text: str) -> Acl:
    """``PERMISSION:OPERATION:RESOURCE_TYPE:NAME:PRINCIPAL`` (the principal last: it has a colon)."""
    parts = text.split(":", 4)
    if (
        len(parts) != 5
        or parts[0] not in _PERMISSIONS
        or parts[1] not in _OPERATIONS
        or parts[2] not in _RESOURCE_TYPE_NAMES
    ):
        raise ValueError(f"expected PERMISSION:OPERATION:RESOURCE_TYPE:NAME:PRINCIPAL, got {text!r}")
    if ":" not in parts[4]:
        raise ValueError(f"a principal is TYPE:NAME, got {parts[4]!r}")
    return Acl(parts[0], parts[1], parts[2], parts[3], parts[4])


@dataclass(frozen=True, slots=True)
class Action:
    """One authorization the broker makes while serving a request."""

    resource_type: str
    name: str
    operation: str
    request: str  # the Kafka request's ApiKeys name: Fetch, Produce, Metadata, OffsetCommit


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    rule: str  # MatchingAcl(acl=StandardAcl(...)) | DefaultDeny


def _acl_result(acl: Acl, principals: frozenset[str], host: str, operation: str) -> bool | None:
    """``StandardAuthorizerData.findResult``: None when the ACL does not apply, else allowed?"""
    if acl.principal not in principals or acl.host not in (WILDCARD, host):
        return None
    if acl.operation != "ALL":
        if acl.permission == "ALLOW" and operation == "DESCRIBE":
            if acl.operation not in _IMPLIES_DESCRIBE:
                return None
        elif acl.permission == "ALLOW" and operation == "DESCRIBE_CONFIGS":
            if acl.operation not in _IMPLIES_DESCRIBE_CONFIGS:
                return None
        elif operation != acl.operation:
            return None
    return acl.permission == "ALLOW"


def _scan_order(acl: Acl) -> tuple[bool, int, str, str, bool]:
    """The order ``findAclRule`` visits a resource's ACLs in: the resource's own, then the
    wildcard ones; each by operation, principal, host, then DENY before ALLOW."""
    return (
        acl.name == WILDCARD,
        _OPERATIONS.index(acl.operation),
        acl.principal,
        acl.host,
        acl.permission == "ALLOW",
    )


def authorize(acls: Iterable[Acl], principal: str, host: str, action: Action) -> Decision:
    """Allowed or denied, and by which rule (no super users; the default result is DENIED). As in
    Kafka, the first matching DENY decides; otherwise the last matching ALLOW visited is the rule."""
    principals = frozenset({principal, WILDCARD_PRINCIPAL})
    allow: Acl | None = None
    relevant = (
        a for a in acls if a.resource_type == action.resource_type and a.name in (action.name, WILDCARD)
    )
    for acl in sorted(relevant, key=_scan_order):
        result = _acl_result(acl, principals, host, action.operation)
        if result is False:
            return Decision(False, f"MatchingAcl(acl={acl.describe()})")
        if result is True:
            allow = acl
    if allow is not None:
        return Decision(True, f"MatchingAcl(acl={allow.describe()})")
    return Decision(False, "DefaultDeny")


def audit_message(principal: str, host: str, action: Action, decision: Decision) -> str:
    """The message ``StandardAuthorizerData.buildAuditMessage`` builds."""
    resource = f"{_RESOURCE_TYPE_NAMES[action.resource_type]}:LITERAL:{action.name}"
    return (
        f"Principal = {principal} is {'Allowed' if decision.allowed else 'Denied'}"
        f" operation = {action.operation} from host = {host} on resource = {resource}"
        f" for request = {action.request} with resourceRefCount = 1 based on rule {decision.rule}"
    )


def log4j_line(moment: datetime, level: str, message: str, logger: str) -> str:
    """One record under Kafka's default pattern ``[%d] %p %m (%c)`` (``%d``: ISO8601, millis)."""
    stamp = moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"
    return f"[{stamp}] {level} {message} ({logger})"


def audit_line(moment: datetime, principal: str, host: str, action: Action, decision: Decision) -> str:
    """The authorizer's log line: allowed accesses at DEBUG, denied ones at INFO."""
    level = "DEBUG" if decision.allowed else "INFO"
    return log4j_line(moment, level, audit_message(principal, host, action, decision), AUDIT_LOGGER)


def startup_lines(acl_count: int, port: int) -> list[tuple[str, str]]:
    """(message, logger) of a KRaft broker's start, the ACL load included."""
    authorizer = "org.apache.kafka.metadata.authorizer.StandardAuthorizerData"
    return [
        ("Registered kafka:type=kafka.Log4jController MBean", "kafka.utils.Log4jControllerRegistration$"),
        (f"[BrokerServer id={NODE_ID}] Transition from SHUTDOWN to STARTING", "kafka.server.BrokerServer"),
        (f"[StandardAuthorizer {NODE_ID}] Initialized with {acl_count} acl(s).", authorizer),
        (f"[StandardAuthorizer {NODE_ID}] Completed initial ACL load process.", authorizer),
        (f"Awaiting socket connections on 0.0.0.0:{port}.", "kafka.network.DataPlaneAcceptor"),
        (f"[BrokerServer id={NODE_ID}] Transition from STARTING to STARTED", "kafka.server.BrokerServer"),
        (f"Kafka version: {KAFKA_VERSION}", "org.apache.kafka.common.utils.AppInfoParser"),
        (f"[KafkaRaftServer nodeId={NODE_ID}] Kafka Server started", "kafka.server.KafkaRaftServer"),
    ]


# --- the broker ----------------------------------------------------------------------------------


class Broker:
    """Topics (in memory), consumer groups' offsets, the ACL table, and the log."""

    def __init__(self, acls: Sequence[Acl]) -> None:
        self.acls = tuple(acls)
        self._lock = threading.Lock()  # the topics and offsets
        self._out = threading.Lock()  # stdout: one whole line at a time from the connection threads
        self._topics: dict[str, list[str]] = {}
        self._offsets: dict[tuple[str, str], int] = {}

    def log(self, level: str, message: str, logger: str) -> None:
        with self._out:
            print(log4j_line(datetime.now(UTC), level, message, logger), flush=True)

    def check(self, principal: str, host: str, action: Action) -> bool:
        decision = authorize(self.acls, principal, host, action)
        with self._out:
            print(audit_line(datetime.now(UTC), principal, host, action, decision), flush=True)
        return decision.allowed

    def _log_of(self, topic: str) -> list[str]:
        """The topic's records; the first use creates it, as auto.create.topics.enable does."""
        if topic not in self._topics:
            self._topics[topic] = []
            self.log(
                "INFO",
                f"[Partition {topic}-0 broker={NODE_ID}] Log loaded for partition {topic}-0 "
                "with initial high watermark 0",
                "kafka.cluster.Partition",
            )
        return self._topics[topic]

    def serve(self, principal: str, host: str, line: str) -> str:
        """The answer to one request line from an authenticated client."""
        verb, _, rest = line.partition(" ")
        args = rest.split(" ", 1) if rest else []
        if verb == "DESCRIBE" and len(args) == 1:
            return self._describe(principal, host, args[0])
        if verb == "PRODUCE" and len(args) == 2:
            return self._produce(principal, host, args[0], args[1])
        if verb == "CONSUME" and len(args) == 2 and " " not in args[1]:
            return self._consume(principal, host, args[0], args[1])
        return f"ERR unknown request {line!r}"

    def _describe(self, principal: str, host: str, topic: str) -> str:
        if not self.check(principal, host, Action("TOPIC", topic, "DESCRIBE", "Metadata")):
            return "DENIED TOPIC_AUTHORIZATION_FAILED"
        return "OK partitions=1"

    def _produce(self, principal: str, host: str, topic: str, payload: str) -> str:
        if not self.check(principal, host, Action("TOPIC", topic, "WRITE", "Produce")):
            return "DENIED TOPIC_AUTHORIZATION_FAILED"
        with self._lock:
            records = self._log_of(topic)
            records.append(payload)
            return f"OK offset={len(records) - 1}"

    def _consume(self, principal: str, host: str, topic: str, group: str) -> str:
        if not self.check(principal, host, Action("TOPIC", topic, "READ", "Fetch")):
            return "DENIED TOPIC_AUTHORIZATION_FAILED"
        with self._lock:
            first = (group, topic) not in self._offsets
            start = self._offsets.setdefault((group, topic), 0)
            count = len(self._log_of(topic)) - start
        if first:
            self.log(
                "INFO",
                f"[GroupCoordinator {NODE_ID}]: Stabilized group {group} generation 1 "
                "(__consumer_offsets-0) with 1 members",
                "kafka.coordinator.group.GroupCoordinator",
            )
        if not self.check(principal, host, Action("GROUP", group, "READ", "OffsetCommit")):
            return "DENIED GROUP_AUTHORIZATION_FAILED"
        with self._lock:
            self._offsets[(group, topic)] = start + count
        return f"OK records={count}"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        host = str(self.client_address[0])  # the client's own address: Services DNAT, never SNAT
        principal = ""
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("AUTH ") and ":" in line:
                principal, answer = line[5:], "OK"
            elif not principal:
                answer = "ERR authenticate first: AUTH <principal>"
            else:
                answer = self.server.broker.serve(principal, host, line)
            try:
                self.wfile.write(answer.encode() + b"\n")
            except OSError:
                return  # the client went away mid-answer


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, broker: Broker) -> None:
        self.broker = broker
        super().__init__(("0.0.0.0", port), _Handler)


def _acl_arg(value: str) -> Acl:
    try:
        return parse_acl(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.kafkabroker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--acl", action="append", default=[], type=_acl_arg, metavar="ACL")
    args = parser.parse_args(argv)
    broker = Broker(args.acl)
    server = _Server(args.port, broker)
    for message, logger in startup_lines(len(broker.acls), args.port):
        broker.log("INFO", message, logger)
    stop = stop_on_signals()
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    stop.wait()
    broker.log(
        "INFO",
        f"[BrokerServer id={NODE_ID}] Transition from STARTED to SHUTTING_DOWN",
        "kafka.server.BrokerServer",
    )
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
